//! The one place that builds a DataFusion context for iodrift: UDFs, object stores, the store's
//! `metrics` table, both baseline lookups, the `rules` table and every stage view of `sql/`.

use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::ScalarValue;
use datafusion::common::config::Dialect;
use datafusion::execution::SessionState;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::registry::FunctionRegistry;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext, col, lit};
use datafusion::sql::parser::DFParserBuilder;
use datafusion::sql::sqlparser::dialect::dialect_from_str;

use crate::error::{Error, Result};
use crate::location::{Location, S3Options};
use crate::lookup::Baseline;
use crate::object_stores::ObjectStores;
use crate::rules::{RULES, Rule, SQL};
use crate::store::{Scan, Store};
use crate::table;
use crate::tables::{memory_table, rules_batch};
use crate::time::{Window, rfc3339};
use chrono::{DateTime, Utc};

/// Where a session's queries run: in this process, under an optional memory cap, or on a
/// Ballista cluster.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    /// Cap on the memory this process's DataFusion operators hold; they spill beyond it.
    pub memory_limit: Option<usize>,
    /// The Ballista scheduler (`df://HOST:PORT`) that plans and runs every query instead.
    pub cluster: Option<String>,
}

/// Configures and builds a [`Session`].
#[derive(Debug)]
pub struct SessionBuilder {
    store: Store,
    window: Option<Window>,
    baselines: Option<Location>,
    required: Vec<Rule>,
    engine: Engine,
}

/// A ready DataFusion context, and what the store scan found.
pub struct Session {
    pub ctx: SessionContext,
    pub store: Store,
    pub window: Option<Window>,
    pub scan: Scan,
}

impl SessionBuilder {
    /// A session over the whole store, without baselines (empty lookup tables).
    pub fn new(store: Store) -> SessionBuilder {
        SessionBuilder {
            store,
            window: None,
            baselines: None,
            required: Vec::new(),
            engine: Engine::default(),
        }
    }

    /// Restricts `metrics` to the rows of `window`, reading only the hours it touches.
    pub fn window(mut self, window: Window) -> SessionBuilder {
        self.window = Some(window);
        self
    }

    /// Runs the queries where `engine` says.
    pub fn engine(mut self, engine: &Engine) -> SessionBuilder {
        self.engine = engine.clone();
        self
    }

    /// Loads the lookups found in `dir`; those of `required` must be there.
    pub fn baselines(mut self, dir: Location, required: &[Rule]) -> SessionBuilder {
        self.baselines = Some(dir);
        self.required = required.to_vec();
        self
    }

    pub async fn build(self) -> Result<Session> {
        let config = session_config()?;
        let runtime = runtime_env(
            self.engine.memory_limit,
            self.store.place().s3_options(),
            None,
        )?;
        let ctx = match &self.engine.cluster {
            None => SessionContext::new_with_config_rt(config, runtime),
            Some(url) => client_context(url, config, runtime, &self.baselines).await?,
        };
        register_functions(&mut ctx.state_ref().write())?;
        for place in std::iter::once(self.store.place()).chain(&self.baselines) {
            ctx.register_object_store(place.url().as_ref(), place.objects().clone());
        }

        let mut scan = match &self.window {
            Some(window) => self.store.scan_window(window).await?,
            None => self.store.scan_all().await?,
        };
        if scan.is_empty() && self.store.is_empty().await? {
            return Err(Error::Store {
                location: self.store.location().to_string(),
                reason: "holds no dt=YYYY-MM-DD/hour=HH partitions".into(),
            });
        }
        self.store
            .check_files(
                &mut scan,
                ctx.runtime_env().cache_manager.get_file_metadata_cache(),
            )
            .await?;
        let target = ctx.state().config().target_partitions();
        if table::streams_by_hour(&scan, target) && scan.partitions.len() < target {
            // Sorted hours stream one per partition; more partitions than hours would only split
            // each sorted stream and merge it back in order.
            ctx.state_ref()
                .write()
                .config_mut()
                .options_mut()
                .execution
                .target_partitions = scan.partitions.len();
        }
        register_metrics(&ctx, &self.store, &scan, self.window.as_ref())?;

        for rule in RULES {
            let found = match &self.baselines {
                Some(dir) => Baseline::read_csv(dir, rule).await?,
                None => None,
            };
            let baseline = match (found, &self.baselines) {
                (Some(baseline), _) => baseline,
                (None, Some(dir)) if self.required.contains(&rule) => {
                    let path = dir.display_at(&Baseline::csv_file_name(&rule));
                    return Err(Error::Baseline {
                        path,
                        reason: format!(
                            "no such lookup; write it with `iodrift baseline --out {}`",
                            dir.as_str()
                        ),
                    });
                }
                _ => Baseline::empty(rule),
            };
            register(
                &ctx,
                rule.lookup,
                memory_table(rule.lookup, baseline.batch)?,
            )?;
        }
        register(&ctx, "rules", memory_table("rules", rules_batch())?)?;

        for (name, sql) in SQL {
            run_script(&ctx, sql)
                .await
                .map_err(|e| Error::query(format!("sql/{name}"))(e))?;
        }
        Ok(Session {
            ctx,
            store: self.store,
            window: self.window,
            scan,
        })
    }
}

impl Session {
    /// Warns (once, on standard error) about hours of the window that hold no files.
    pub fn warn_about_empty_hours(&self) {
        let empty = &self.scan.empty_hours;
        if empty.is_empty() {
            return;
        }
        let total = self.scan.hours.len();
        let mut ranges: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
        for hour in empty {
            match ranges.last_mut() {
                Some((_, end)) if *end == *hour => *end = *hour + chrono::Duration::hours(1),
                _ => ranges.push((*hour, *hour + chrono::Duration::hours(1))),
            }
        }
        let shown: Vec<String> = ranges
            .iter()
            .take(5)
            .map(|(a, b)| format!("[{}, {})", rfc3339(*a), rfc3339(*b)))
            .collect();
        let more = if ranges.len() > 5 {
            format!(" and {} more ranges", ranges.len() - 5)
        } else {
            String::new()
        };
        tracing::warn!(
            "no data in {} of {total} hours of the window in store {}: {}{more}",
            empty.len(),
            self.store.location(),
            shown.join(", ")
        );
    }
}

/// DataFusion's settings for every iodrift session: those of the DATAFUSION_* variables, as in
/// datafusion-cli (e.g. DATAFUSION_EXECUTION_TARGET_PARTITIONS=8), plus iodrift's own.
pub fn session_config() -> Result<SessionConfig> {
    let mut config = SessionConfig::from_env()
        .map_err(|e| Error::Usage(format!("bad DATAFUSION_* setting: {e}")))?
        .with_information_schema(true)
        .with_default_catalog_and_schema("iodrift", "public");
    // The generic dialect takes `SELECT pod, cluster` for a trailing comma before a
    // `CLUSTER BY` clause; PostgreSQL's reads `cluster` as the store's column.
    config.options_mut().sql_parser.dialect = Dialect::PostgreSQL;
    // The `metrics` scan is hash-partitioned by `hour` (see table.rs); a `GROUP BY hour, ...`
    // keeps that partitioning instead of repartitioning on all its keys, whatever the
    // number of partitions.
    if std::env::var_os("DATAFUSION_OPTIMIZER_SUBSET_REPARTITION_THRESHOLD").is_none() {
        config.options_mut().optimizer.subset_repartition_threshold = 1;
    }
    Ok(config)
}

fn register_metrics(
    ctx: &SessionContext,
    store: &Store,
    scan: &Scan,
    window: Option<&Window>,
) -> Result<()> {
    let table = Arc::new(table::HourTable::new(store, scan));
    let context = || Error::query("register table metrics");
    let rows = ctx.read_table(table).map_err(context())?;
    let rows = match window {
        None => rows,
        Some(window) => {
            let at = |instant: chrono::DateTime<chrono::Utc>| {
                lit(ScalarValue::TimestampMillisecond(
                    Some(instant.timestamp_millis()),
                    Some("UTC".into()),
                ))
            };
            rows.filter(
                col("time")
                    .gt_eq(at(window.earliest))
                    .and(col("time").lt(at(window.latest))),
            )
            .map_err(context())?
        }
    };
    ctx.register_table("metrics", rows.into_view())
        .map_err(context())?;
    Ok(())
}

/// The runtime of every session, and of a cluster's processes: object stores resolved by
/// [`ObjectStores`] (S3 buckets configured with `s3`), memory capped at `memory_limit`, spills
/// in `spill_dir` (default: the system's temporary directory).
pub fn runtime_env(
    memory_limit: Option<usize>,
    s3: &S3Options,
    spill_dir: Option<&std::path::Path>,
) -> Result<Arc<RuntimeEnv>> {
    let mut runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(ObjectStores::new(s3.clone())));
    if let Some(dir) = spill_dir {
        runtime = runtime.with_temp_file_path(dir);
    }
    if let Some(bytes) = memory_limit {
        let pool = FairSpillPool::new(bytes);
        runtime = runtime.with_memory_pool(Arc::new(TrackConsumersPool::new(
            pool,
            NonZeroUsize::new(5).expect("not zero"),
        )));
    }
    runtime
        .build_arc()
        .map_err(Error::query("start the query engine"))
}

/// Adds iodrift's functions to `state`: every session's, and a cluster scheduler's (whose
/// sessions Ballista builds).
pub fn register_functions(state: &mut SessionState) -> Result<()> {
    for udf in iodrift_udfs::all() {
        state
            .register_udf(Arc::new(udf))
            .map_err(Error::query("register iodrift's functions"))?;
    }
    for udaf in iodrift_udfs::all_aggregates() {
        state
            .register_udaf(Arc::new(udaf))
            .map_err(Error::query("register iodrift's functions"))?;
    }
    Ok(())
}

#[cfg(feature = "ballista")]
async fn client_context(
    url: &str,
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
    baselines: &Option<Location>,
) -> Result<SessionContext> {
    crate::cluster::client_context(url, config, runtime, baselines.clone()).await
}

#[cfg(not(feature = "ballista"))]
async fn client_context(
    url: &str,
    _config: SessionConfig,
    _runtime: Arc<RuntimeEnv>,
    _baselines: &Option<Location>,
) -> Result<SessionContext> {
    Err(Error::Usage(format!(
        "--cluster {url}: this iodrift was built without the `ballista` feature"
    )))
}

fn register(ctx: &SessionContext, name: &str, table: Arc<dyn TableProvider>) -> Result<()> {
    ctx.register_table(name, table)
        .map_err(Error::query(format!("register table {name}")))?;
    Ok(())
}

/// Plans and runs every statement of `sql` in order, returning one DataFrame per statement
/// (DDL statements have run by then; queries are left for the caller to collect).
pub async fn run_script(
    ctx: &SessionContext,
    sql: &str,
) -> datafusion::error::Result<Vec<DataFrame>> {
    let dialect_name = ctx.state().config().options().sql_parser.dialect;
    let dialect = dialect_from_str(dialect_name).ok_or_else(|| {
        datafusion::error::DataFusionError::Plan(format!("unsupported SQL dialect {dialect_name}"))
    })?;
    let statements = DFParserBuilder::new(sql)
        .with_dialect(dialect.as_ref())
        .build()?
        .parse_statements()?;
    let mut frames = Vec::with_capacity(statements.len());
    for statement in statements {
        let plan = ctx.state().statement_to_plan(statement).await?;
        frames.push(ctx.execute_logical_plan(plan).await?);
    }
    Ok(frames)
}
