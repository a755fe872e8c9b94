//! Findings: what a detection reports, one row per pod whose anomalies persisted, and the query
//! that selects them from the `findings` view for the chosen rules, window and `--filter`.

use datafusion::arrow::array::RecordBatch;
use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::{Expr, SortExpr};
use datafusion::prelude::{DataFrame, lit};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rule::Rule;
use crate::session::Session;
use crate::time::rfc3339;

/// One finding, with the field names of ESCU's output and of its risk event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    #[serde(rename = "k8s.cluster.name")]
    pub cluster: String,
    /// The node: ESCU's risk object.
    pub host: String,
    #[serde(rename = "k8s.pod.name")]
    pub pod: String,
    #[serde(rename = "k8s.service")]
    pub service: String,
    /// Anomalous 10 s buckets in the window.
    pub count: i64,
    /// Distinct anomaly texts, in lexical order.
    pub anomalies: Vec<String>,
    pub rule: String,
    pub risk_score: i64,
    pub risk_message: String,
    pub mitre_attack_id: String,
    pub window_start: String,
    pub window_end: String,
}

/// The findings of `rule` over the session's window, after the user's filter (ESCU's
/// `..._filter` macro: a SQL predicate over the output fields), in a stable order.
pub async fn query(session: &Session, rule: &Rule, filter: Option<&str>) -> Result<DataFrame> {
    let context = || Error::query("plan findings");
    let window = session
        .window
        .ok_or_else(|| Error::Usage("findings need a window".into()))?;
    let findings = session
        .rule_view(rule, "findings")
        .await
        .map_err(context())?;
    let mut selected = findings
        .with_column("window_start", lit(rfc3339(window.earliest)))
        .map_err(context())?
        .with_column("window_end", lit(rfc3339(window.latest)))
        .map_err(context())?;
    if let Some(filter) = filter {
        let refuse = |reason: String| Error::Filter {
            filter: filter.to_string(),
            reason,
        };
        let bad = |e: datafusion::error::DataFusionError| refuse(e.strip_backtrace());
        let depth = nesting_depth(filter);
        if depth > MAX_FILTER_NESTING {
            return Err(refuse(format!(
                "parentheses nest {depth} deep; at most {MAX_FILTER_NESTING}"
            )));
        }
        let predicate = selected.parse_sql_expr(filter).map_err(bad)?;
        let aggregates = predicate
            .exists(|e| {
                Ok(matches!(
                    e,
                    Expr::AggregateFunction(_) | Expr::WindowFunction(_)
                ))
            })
            .map_err(bad)?;
        if aggregates {
            return Err(refuse(
                "aggregate and window functions compare findings with each other; a filter \
                 keeps or drops one finding at a time"
                    .into(),
            ));
        }
        selected = selected.filter(predicate).map_err(bad)?;
    }
    selected.sort(order()).map_err(context())
}

/// How deep a filter's parentheses may nest: SQL parsers' time grows with it (sqlparser's
/// PostgreSQL dialect doubles it with each nested call, apache/datafusion-sqlparser-rs#2378),
/// and no predicate over a finding's fields needs more.
const MAX_FILTER_NESTING: usize = 16;

/// The deepest nesting of parentheses and brackets in `sql`, outside quotes.
fn nesting_depth(sql: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, ')' | ']') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Findings in cluster, host and pod order (one finding per pod and rule).
fn order() -> Vec<SortExpr> {
    ["k8s.cluster.name", "host", "k8s.pod.name"]
        .map(|name| SortExpr::new(datafusion::prelude::ident(name), true, false))
        .to_vec()
}

/// The rows of [`query`] for each rule, run, in rule order. One query per rule rather than one
/// over their union: Ballista (55) repeats rows of a union of three rules' plans.
pub async fn batches(
    session: &Session,
    rules: &[Rule],
    filter: Option<&str>,
) -> Result<Vec<RecordBatch>> {
    if rules.is_empty() {
        return Err(Error::Usage("no rule chosen".into()));
    }
    let mut rules: Vec<&Rule> = rules.iter().collect();
    rules.sort_by(|a, b| a.name.cmp(&b.name));
    rules.dedup_by(|a, b| a.name == b.name);
    let mut batches = Vec::new();
    for rule in rules {
        batches.extend(
            query(session, rule, filter)
                .await?
                .collect()
                .await
                .map_err(Error::query("run detection"))?,
        );
    }
    Ok(batches)
}

/// The findings of `rules` over the session's window, as [`Finding`]s.
pub async fn collect(
    session: &Session,
    rules: &[Rule],
    filter: Option<&str>,
) -> Result<Vec<Finding>> {
    from_batches(&batches(session, rules, filter).await?)
}

/// The rows of `findings` views as [`Finding`]s.
pub fn from_batches(batches: &[RecordBatch]) -> Result<Vec<Finding>> {
    let mut json = Vec::new();
    crate::output::write_batches(&mut json, batches, crate::output::Format::Json)?;
    serde_json::from_slice(&json)
        .map_err(|e| Error::Usage(format!("findings do not read back as findings: {e}")))
}
