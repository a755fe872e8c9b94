//! `iodrift baseline`: the rules' lookups over a window, merged from the hours' rollups (those
//! missing or stale computed from raw rows and stored) or recomputed from every raw row.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::RecordBatch;
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::lookup::{Baseline, cast_batches};
use crate::rollup::{self, Stale, Summary};
use crate::rules::Rule;
use crate::session::{Engine, Session, SessionBuilder};
use crate::store::{HourPartition, Store};
use crate::time::Window;

/// How many rollup files are read at once.
const CONCURRENT_READS: usize = 16;

/// How [`compute_over`] got its statistics.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// Every raw row of the window (`--full`, or a window that is not whole hours).
    RawRows,
    /// The hours' rollups, stored ones merged and missing ones computed.
    Rollups(Summary),
}

/// The baselines of `rules` over `window`: merged from the hours' rollups, or with `full` (or
/// a window that is not whole hours) recomputed from every raw row.
pub async fn compute_over(
    store: Store,
    window: Window,
    rules: &[Rule],
    full: bool,
    engine: &Engine,
) -> Result<(Vec<Baseline>, Source)> {
    if !full && window.is_whole_hours() {
        let (baselines, summary) = incremental(&store, &window, rules, engine, Utc::now()).await?;
        return Ok((baselines, Source::Rollups(summary)));
    }
    let session = SessionBuilder::new(store)
        .window(window)
        .engine(engine)
        .build()
        .await?;
    session.warn_about_empty_hours();
    let mut baselines = Vec::new();
    for rule in rules {
        baselines.push(compute(&session, *rule).await?);
    }
    Ok((baselines, Source::RawRows))
}

/// Runs the rule's baseline view (`sql/baseline_*.sql`) over the session's window.
pub async fn compute(session: &Session, rule: Rule) -> Result<Baseline> {
    let context = || Error::query(format!("compute baseline {}", rule.name));
    let sql = format!("SELECT * FROM {} ORDER BY key", rule.baseline_view);
    let batches = session
        .ctx
        .sql(&sql)
        .await
        .map_err(context())?
        .collect()
        .await
        .map_err(context())?;
    Baseline::from_batches(rule, &batches)
}

/// Both rules' baselines over `window`, from the hours' rollups; hours without a current one
/// are computed from raw rows and, once closed (before `now`), stored for the next run.
/// `window` must start and end on whole hours.
pub async fn incremental(
    store: &Store,
    window: &Window,
    rules: &[Rule],
    engine: &Engine,
    now: DateTime<Utc>,
) -> Result<(Vec<Baseline>, Summary)> {
    // A bad DATAFUSION_* setting is an error even when every hour has a current rollup.
    crate::session::session_config()?;
    if !window.is_whole_hours() {
        return Err(Error::Usage(
            "an incremental baseline needs a window of whole hours; use --full".into(),
        ));
    }
    let scan = store.scan_window(window).await?;
    if scan.is_empty() && store.is_empty().await? {
        return Err(Error::Store {
            location: store.location().to_string(),
            reason: "holds no dt=YYYY-MM-DD/hour=HH partitions".into(),
        });
    }
    let mut hours: BTreeMap<DateTime<Utc>, Vec<RecordBatch>> = BTreeMap::new();
    let mut stale = Vec::new();
    let mut summary = Summary::default();
    let computed_by: Vec<String> = rules.iter().map(rollup::computed_by).collect();
    let computed_by = &computed_by;
    // One request per hour and rule; on S3 their latency, not their size, is the cost.
    let stored: Vec<std::result::Result<Vec<RecordBatch>, Stale>> =
        futures::stream::iter(&scan.partitions)
            .map(|partition| async move {
                let source = rollup::source(partition);
                let mut found = Vec::new();
                for (rule, logic) in rules.iter().zip(computed_by) {
                    found.push(
                        rollup::read_rollup(store, rule, partition.hour, &source, logic).await?,
                    );
                }
                Ok(found)
            })
            .buffered(CONCURRENT_READS)
            .collect()
            .await;
    for (partition, found) in scan.partitions.iter().zip(stored) {
        match found {
            Ok(found) => {
                summary.reused += 1;
                hours.insert(partition.hour, found);
            }
            Err(why) => {
                summary.count(why);
                stale.push(partition);
            }
        }
    }
    for run in contiguous(&stale) {
        let run_window = Window {
            earliest: run[0].hour,
            latest: run[run.len() - 1].hour + chrono::Duration::hours(1),
        };
        let session = SessionBuilder::new(store.clone())
            .window(run_window)
            .engine(engine)
            .build()
            .await?;
        let mut per_rule = Vec::new();
        for rule in rules {
            per_rule.push(compute_rollups(&session.ctx, rule).await?);
        }
        for partition in run {
            let hour_start = partition.hour.timestamp();
            let source = rollup::source(partition);
            let mut found = Vec::new();
            for ((rule, batch), logic) in rules.iter().zip(&per_rule).zip(computed_by) {
                let hour = rollup::rows_of_hour(batch, hour_start)?;
                if rollup::is_closed(partition.hour, now)
                    && let Err(e) =
                        rollup::write_rollup(store, rule, partition.hour, &source, logic, &hour)
                            .await
                {
                    // A store the user may only read still gets its baseline, just not faster
                    // next time.
                    tracing::warn!("rollup not stored: {e}");
                }
                found.push(hour);
            }
            hours.insert(partition.hour, found);
        }
    }
    let baselines = rules
        .iter()
        .enumerate()
        .map(|(i, rule)| rollup::merge(*rule, hours.values().map(|batches| &batches[i])))
        .collect::<Result<Vec<_>>>()?;
    Ok((baselines, summary))
}

/// Runs of consecutive hours.
fn contiguous<'a>(partitions: &[&'a HourPartition]) -> Vec<Vec<&'a HourPartition>> {
    let mut runs: Vec<Vec<&HourPartition>> = Vec::new();
    for partition in partitions {
        match runs.last_mut() {
            Some(run) if run[run.len() - 1].hour + chrono::Duration::hours(1) == partition.hour => {
                run.push(partition)
            }
            _ => runs.push(vec![partition]),
        }
    }
    runs
}

/// The rule's rollup view over the session's window, in the rollup schema (the view's
/// columns are in its order).
async fn compute_rollups(
    ctx: &datafusion::prelude::SessionContext,
    rule: &Rule,
) -> Result<RecordBatch> {
    let context = || Error::query(format!("compute rollups of {}", rule.name));
    let batches = ctx
        .sql(&format!("SELECT * FROM {}", rule.rollup_view))
        .await
        .map_err(context())?
        .collect()
        .await
        .map_err(context())?;
    cast_batches(&rollup::rollup_schema(), &batches).map_err(|e| context()(e.into()))
}
