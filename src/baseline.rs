//! `iodrift baseline`: the rules' baseline tables over a window, merged by each rule's SQL from
//! the hours' rollups (those missing or stale computed from raw rows and stored) or recomputed
//! from every raw row.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::RecordBatch;
use datafusion::common::TableReference;
use datafusion::prelude::{DataFrame, SessionContext, ident};
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::lookup::Baseline;
use crate::rollup::{self, Stale, Summary};
use crate::rule::{Rule, Rules, Table};
use crate::session::{Engine, Held, Session, SessionBuilder, tables_context};
use crate::store::{HourPartition, Scan, Store};
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

/// The baseline tables of `rules` over `window`: merged from the hours' rollups, or with `full`
/// (or a window that is not whole hours) recomputed from every raw row. A table whose rule
/// declares no rollup is always recomputed.
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
        .rules(&Rules::of(rules))
        .engine(engine)
        .hold(Held::Rollups)
        .build()
        .await?;
    session.warn_about_empty_hours();
    let mut baselines = Vec::new();
    for table in rules.iter().flat_map(|r| r.tables.iter()) {
        baselines.push(compute(&session, table).await?);
    }
    Ok((baselines, Source::RawRows))
}

/// Runs the table's baseline view over the session's window.
pub async fn compute(session: &Session, table: &Arc<Table>) -> Result<Baseline> {
    let context = || Error::query(format!("compute baseline {}", table.name));
    let view = TableReference::partial(table.namespace.as_str(), table.view.as_str());
    let frame = session.ctx.table(view).await.map_err(context())?;
    collect_baseline(frame, table).await
}

/// The rows of `frame`, in key order, as `table`.
async fn collect_baseline(frame: DataFrame, table: &Arc<Table>) -> Result<Baseline> {
    let context = || Error::query(format!("compute baseline {}", table.name));
    let order = table
        .key
        .iter()
        .map(|k| ident(k).sort(true, false))
        .collect();
    let frame = frame.sort(order).map_err(context())?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await.map_err(context())?;
    Baseline::from_batches(table, &schema, &batches)
}

/// The rules' baseline tables over `window`, from the hours' rollups; hours without a current
/// one are computed from raw rows and, once closed (before `now`), stored for the next run.
/// `window` must start and end on whole hours.
pub async fn incremental(
    store: &Store,
    window: &Window,
    rules: &[Rule],
    engine: &Engine,
    now: DateTime<Utc>,
) -> Result<(Vec<Baseline>, Summary)> {
    let scan = scan_whole_hours(store, window).await?;
    // Tables without a rollup are recomputed from the window's rows, in one session.
    let whole: Vec<&Arc<Table>> = rules
        .iter()
        .flat_map(|r| r.tables.iter())
        .filter(|t| t.rollup.is_none())
        .collect();
    let mut computed: BTreeMap<String, Baseline> = BTreeMap::new();
    if !whole.is_empty() {
        let session = SessionBuilder::new(store.clone())
            .window(*window)
            .rules(&Rules::of(rules))
            .engine(engine)
            .build()
            .await?;
        for table in whole {
            computed.insert(table.name.clone(), compute(&session, table).await?);
        }
    }

    let mut summary = Summary::default();
    let (rolled, hours) =
        hourly_rollups(store, &scan.partitions, rules, engine, now, &mut summary).await?;
    for (i, (_, table, _)) in rolled.iter().enumerate() {
        let batches: Vec<RecordBatch> = hours.values().map(|found| found[i].clone()).collect();
        computed.insert(table.name.clone(), merge(table, batches).await?);
    }
    let baselines = rules
        .iter()
        .flat_map(|r| r.tables.iter())
        .filter_map(|t| computed.remove(&t.name))
        .collect();
    Ok((baselines, summary))
}

/// Stores the rollups of the window's closed hours (before `now`) of the rules' tables that
/// have them, where the store holds none that is current: the schedule's hourly job, so that
/// the next baseline merges every hour and computes none. `window` must be whole hours.
pub async fn store_rollups(
    store: &Store,
    window: &Window,
    rules: &[Rule],
    engine: &Engine,
    now: DateTime<Utc>,
) -> Result<Summary> {
    let scan = scan_whole_hours(store, window).await?;
    let mut summary = Summary::default();
    hourly_rollups(store, &scan.partitions, rules, engine, now, &mut summary).await?;
    Ok(summary)
}

/// The scan of `window`, which must be whole hours, of a store that holds some hour.
async fn scan_whole_hours(store: &Store, window: &Window) -> Result<Scan> {
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
    Ok(scan)
}

/// The tables of rules that have hourly rollups, with their rule and what computes them.
type RolledTables<'a> = Vec<(&'a Rule, &'a Arc<Table>, String)>;

fn rolled_tables(rules: &[Rule]) -> RolledTables<'_> {
    rules
        .iter()
        .flat_map(|rule| rule.tables.iter().map(move |table| (rule, table)))
        .filter(|(_, table)| table.rollup.is_some())
        .map(|(rule, table)| (rule, table, rollup::computed_by(rule, table)))
        .collect()
}

/// Each hour's rollup of each table of `rolled`, by hour: the stored ones that are current, the
/// others computed from raw rows (and stored once the hour is closed). Counts both in `summary`.
async fn hourly_rollups<'a>(
    store: &Store,
    partitions: &[HourPartition],
    rules: &'a [Rule],
    engine: &Engine,
    now: DateTime<Utc>,
    summary: &mut Summary,
) -> Result<(RolledTables<'a>, BTreeMap<DateTime<Utc>, Vec<RecordBatch>>)> {
    let rolled = rolled_tables(rules);
    let mut hours: BTreeMap<DateTime<Utc>, Vec<RecordBatch>> = BTreeMap::new();
    if rolled.is_empty() {
        return Ok((rolled, hours));
    }
    let rolled_ref = &rolled;
    let mut stale = Vec::new();
    // One request per hour and table; on S3 their latency, not their size, is the cost.
    let stored: Vec<std::result::Result<Vec<RecordBatch>, Stale>> =
        futures::stream::iter(partitions)
            .map(|partition| async move {
                let source = rollup::source(partition);
                let mut found = Vec::new();
                for (_, table, logic) in rolled_ref {
                    found.push(
                        rollup::read_rollup(store, table, partition.hour, &source, logic).await?,
                    );
                }
                Ok(found)
            })
            .buffered(CONCURRENT_READS)
            .collect()
            .await;
    for (partition, found) in partitions.iter().zip(stored) {
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
            .rules(&Rules::of(rules))
            .engine(engine)
            .build()
            .await?;
        let mut per_table = Vec::new();
        for (_, table, _) in &rolled {
            per_table.push(compute_rollups(&session.ctx, table).await?);
        }
        for partition in run {
            let hour_start = partition.hour.timestamp();
            let source = rollup::source(partition);
            let mut found = Vec::new();
            for ((_, table, logic), batch) in rolled.iter().zip(&per_table) {
                let hour = rollup::rows_of_hour(batch, hour_start)?;
                if rollup::is_closed(partition.hour, now)
                    && let Err(e) =
                        rollup::write_rollup(store, table, partition.hour, &source, logic, &hour)
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
    Ok((rolled, hours))
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

/// The table's rollup view over the session's window, in one batch.
async fn compute_rollups(ctx: &SessionContext, table: &Table) -> Result<RecordBatch> {
    let context = || Error::query(format!("compute rollups of {}", table.name));
    let Some(rollup) = &table.rollup else {
        return Err(Error::Usage(format!("{} has no rollup", table.name)));
    };
    let view = TableReference::partial(table.namespace.as_str(), rollup.view.as_str());
    let frame = ctx.table(view).await.map_err(context())?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await.map_err(context())?;
    datafusion::arrow::compute::concat_batches(&schema, &batches).map_err(|e| context()(e.into()))
}

/// The table from its hours' rollups, by its rule's merge query over them (table `rollups`).
async fn merge(table: &Arc<Table>, hours: Vec<RecordBatch>) -> Result<Baseline> {
    let Some(rollup) = &table.rollup else {
        return Err(Error::Usage(format!("{} has no rollup", table.name)));
    };
    if hours.is_empty() {
        return Ok(Baseline::empty(table));
    };
    let fail = |e: datafusion::error::DataFusionError| Error::Rule {
        path: rollup.merge_path.clone(),
        reason: e.strip_backtrace(),
    };
    let hours = hours
        .iter()
        .map(without_dictionaries)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| fail(e.into()))?;
    let schema = hours[0].schema();
    let ctx = tables_context(&[("rollups", schema, hours)])?;
    let frame = ctx.sql(&rollup.merge_sql).await.map_err(fail)?;
    collect_baseline(frame, table).await
}

/// `batch` with each dictionary column decoded to its values, every column nullable, so that
/// every hour has one schema whether it was read back or cut from a computed batch. Hours carry
/// different dictionaries, which a merge would concatenate into one dictionary of every hour's
/// values that its grouping encodes again for each batch (a day's new hours beside stored ones
/// took 170 s, not 4).
fn without_dictionaries(batch: &RecordBatch) -> datafusion::arrow::error::Result<RecordBatch> {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let data_type = match field.data_type() {
            DataType::Dictionary(_, values) => {
                columns.push(datafusion::arrow::compute::cast(column, values)?);
                values.as_ref().clone()
            }
            other => {
                columns.push(column.clone());
                other.clone()
            }
        };
        fields.push(Arc::new(Field::new(field.name(), data_type, true)));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}
