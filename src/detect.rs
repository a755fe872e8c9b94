//! `iodrift detect`: the findings of rules over a window, against the lookups of a baselines
//! location, after the user's filter. One session serves every rule of a detection.

use datafusion::arrow::array::RecordBatch;

use crate::error::{Error, Result};
use crate::finding;
use crate::location::Location;
use crate::output::{Format, write_batches};
use crate::rule::{Rule, Rules};
use crate::session::{Engine, Held, Session, SessionBuilder};
use crate::store::Store;
use crate::time::Window;

/// A detection ready to run: the store's window and the lookups of its rules, in one session.
pub struct Detection {
    session: Session,
}

impl Detection {
    /// Opens the store's `window` with the lookups in `baselines`; those of `rules` must be there.
    /// Warns about the hours of the window that hold no data.
    pub async fn open(
        store: Store,
        window: Window,
        baselines: Location,
        rules: &[Rule],
        engine: &Engine,
    ) -> Result<Detection> {
        let session = SessionBuilder::new(store)
            .window(window)
            .baselines(baselines, rules)
            .rules(&Rules::of(rules))
            .engine(engine)
            .hold(Held::DetectionViews)
            .build()
            .await?;
        session.warn_about_empty_hours();
        Ok(Detection { session })
    }

    /// The session the detection runs in: its scan says what the window read.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// For each of `rules` that declares an `unscored` view, how many rows it holds in the
    /// window: what the rule could not score (workloads with too little history).
    pub async fn unscored(&self, rules: &[Rule]) -> Result<Vec<(String, usize)>> {
        let mut counts = Vec::new();
        for rule in rules {
            let Some(view) = &rule.unscored else {
                continue;
            };
            let context = || Error::query(format!("count {}.{view}", rule.namespace));
            let frame = (self.session.rule_view(rule, view).await).map_err(context())?;
            counts.push((rule.name.clone(), frame.count().await.map_err(context())?));
        }
        Ok(counts)
    }

    /// The findings of `rules` that pass `filter`, in the findings' order.
    pub async fn findings(&self, rules: &[Rule], filter: Option<&str>) -> Result<Vec<RecordBatch>> {
        finding::batches(&self.session, rules, filter).await
    }

    /// `findings` (of `rules`, from [`Detection::findings`]) written in `format`. OCSF events
    /// also read each finding's pod and evidence from the detection's window.
    pub async fn render(
        &self,
        rules: &[Rule],
        findings: &[RecordBatch],
        format: Format,
    ) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        match format {
            Format::Ocsf => {
                let findings = finding::from_batches(findings)?;
                let events = crate::ocsf::events(&self.session, rules, &findings).await?;
                crate::ocsf::write(&mut bytes, &events)?;
            }
            format => write_batches(&mut bytes, findings, format)?,
        }
        Ok(bytes)
    }
}
