//! The one place that builds a DataFusion context for iodrift: UDFs, object stores, the store's
//! `metrics` table, every rule's baseline tables, the `rules` table, the shared stage views of
//! `sql/` in schema `public`, and each rule's views in a schema of its own.

use std::sync::Arc;

use std::collections::VecDeque;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::common::ScalarValue;
use datafusion::common::config::Dialect;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext, col, lit};
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::dialect::dialect_from_str;

use crate::engine::{local_context, register_functions, runtime_env};
use crate::error::{Error, Result};
use crate::location::Location;
use crate::lookup::Baseline;
use crate::materialized::Materialized;
use crate::rule::{FINDINGS_SQL, Rule, Rules, SHARED_SQL, Table};
use crate::store::{Scan, Store};
use crate::table;
use crate::tables::{memory_table, rules_batch};
use crate::time::{Window, rfc3339};
use chrono::{DateTime, Utc};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};

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
    /// Baseline tables already read, taken instead of reading them from `baselines`.
    loaded: Vec<Baseline>,
    rules: Option<Rules>,
    engine: Engine,
    held: Held,
}

/// Which of the rules' views a session on one machine computes once, on first use, and holds in
/// memory (a [`Materialized`] view) instead of once per query that reads them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Held {
    /// None: every view is planned into each query that reads it.
    #[default]
    Nothing,
    /// Each rule's `[detection] materialize` views: the views its findings read many times.
    DetectionViews,
    /// Each baseline table's rollup view: a baseline computed from raw rows may read it more
    /// than once (drift's quantiles and extremes), and it holds no more rows than the rollups an
    /// incremental baseline merges.
    Rollups,
}

/// A ready DataFusion context, and what the store scan found.
pub struct Session {
    pub ctx: SessionContext,
    pub store: Store,
    pub window: Option<Window>,
    pub scan: Scan,
    /// The rules whose views the session holds.
    pub rules: Rules,
}

impl SessionBuilder {
    /// A session over the whole store, without baselines (empty lookup tables).
    pub fn new(store: Store) -> SessionBuilder {
        SessionBuilder {
            store,
            window: None,
            baselines: None,
            required: Vec::new(),
            loaded: Vec::new(),
            rules: None,
            engine: Engine::default(),
            held: Held::Nothing,
        }
    }

    /// Holds the rules' views that `held` names in memory once computed (not on a cluster,
    /// whose executors cannot share them).
    pub fn hold(mut self, held: Held) -> SessionBuilder {
        self.held = held;
        self
    }

    /// Runs `rules` (default: the built-in ones), each in its own schema.
    pub fn rules(mut self, rules: &Rules) -> SessionBuilder {
        self.rules = Some(rules.clone());
        self
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

    /// Loads the baseline tables found in `dir`; those of the `required` rules must be there.
    pub fn baselines(mut self, dir: Location, required: &[Rule]) -> SessionBuilder {
        self.baselines = Some(dir);
        self.required = required.to_vec();
        self
    }

    /// Takes `baselines` (read from the directory given to [`SessionBuilder::baselines`]) as
    /// they are instead of reading them again: a backtest's hundreds of hourly sessions share
    /// one reading of the lookups.
    pub fn loaded_baselines(mut self, baselines: &[Baseline]) -> SessionBuilder {
        self.loaded = baselines.to_vec();
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
            None => local_context(config, runtime),
            Some(url) => {
                let rules = match &self.rules {
                    Some(rules) => rules.clone(),
                    None => Rules::built_in()?,
                };
                client_context(url, config, runtime, &self.baselines, &rules).await?
            }
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

        let rules = match self.rules {
            Some(rules) => rules,
            None => Rules::built_in()?,
        };
        for table in rules.tables() {
            let baseline = match self.loaded.iter().find(|b| b.table.name == table.name) {
                Some(loaded) => loaded.clone(),
                None => read_baseline(self.baselines.as_ref(), table, &self.required).await?,
            };
            register(
                &ctx,
                &table.name,
                memory_table(&table.name, baseline.batch)?,
            )?;
        }
        register(&ctx, "rules", memory_table("rules", rules_batch(&rules))?)?;

        for (name, sql) in SHARED_SQL {
            run_script(&ctx, sql)
                .await
                .map_err(|e| Error::query(name)(e))?;
        }
        let held = match self.engine.cluster {
            None => self.held,
            Some(_) => Held::Nothing,
        };
        let mut findings: Option<DataFrame> = None;
        for rule in rules.all() {
            let frame = register_rule(&ctx, rule, held, target).await?;
            findings = Some(match findings {
                None => frame,
                Some(all) => all.union(frame).map_err(|e| Error::Rule {
                    path: rule.origin.clone(),
                    reason: format!(
                        "its findings do not have the columns of the other rules': {}",
                        e.strip_backtrace()
                    ),
                })?,
            });
        }
        if let Some(findings) = findings {
            register(&ctx, "findings", findings.into_view())?;
        }
        Ok(Session {
            ctx,
            store: self.store,
            window: self.window,
            scan,
            rules,
        })
    }
}

/// The baseline table `table` from the lookups in `dir`: empty when `dir` holds none (or there
/// is no `dir`), unless its rule is one of `required`.
pub async fn read_baseline(
    dir: Option<&Location>,
    table: &Arc<Table>,
    required: &[Rule],
) -> Result<Baseline> {
    let Some(dir) = dir else {
        return Ok(Baseline::empty(table));
    };
    if let Some(found) = Baseline::read_csv(dir, table).await? {
        return Ok(found);
    }
    if !required.iter().any(|r| r.name == table.rule) {
        return Ok(Baseline::empty(table));
    }
    Err(Error::Baseline {
        path: dir.display_at(&Baseline::csv_file_name(table)),
        reason: format!(
            "no such lookup; write it with `iodrift baseline --rule {} --out {}`",
            table.rule,
            dir.as_str()
        ),
    })
}

impl Session {
    /// The view `view` of `rule`'s schema (its findings, or a view its manifest names).
    pub async fn rule_view(&self, rule: &Rule, view: &str) -> datafusion::error::Result<DataFrame> {
        self.ctx
            .table(datafusion::common::TableReference::partial(
                rule.namespace.as_str(),
                view,
            ))
            .await
    }

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

/// A context without a store: iodrift's functions and `tables` (each its batches, of one
/// schema), for queries over rows already in memory (a rule's merge of its hourly rollups).
pub fn tables_context(
    tables: &[(&str, SchemaRef, Vec<datafusion::arrow::array::RecordBatch>)],
) -> Result<SessionContext> {
    let runtime = runtime_env(None, &Default::default(), None)?;
    let ctx = local_context(session_config()?, runtime);
    register_functions(&mut ctx.state_ref().write())?;
    let (partitions, rows) = {
        let state = ctx.state();
        (
            state.config().target_partitions(),
            state.config().batch_size(),
        )
    };
    for (name, schema, batches) in tables {
        register(
            &ctx,
            name,
            sliced_table(name, schema, batches, partitions, rows)?,
        )?;
    }
    Ok(ctx)
}

/// `batches` as a table of `partitions` partitions of batches of at most `size` rows: one batch
/// of millions of rows makes every operator above it work on millions of rows at once, and
/// concatenating many batches first would copy every row once more.
fn sliced_table(
    name: &str,
    schema: &SchemaRef,
    batches: &[datafusion::arrow::array::RecordBatch],
    partitions: usize,
    size: usize,
) -> Result<Arc<dyn TableProvider>> {
    let size = size.max(1);
    let count = partitions.max(1);
    let mut sliced = vec![Vec::new(); count];
    let mut next = 0;
    for batch in batches {
        for offset in (0..batch.num_rows()).step_by(size) {
            let length = size.min(batch.num_rows() - offset);
            sliced[next % count].push(batch.slice(offset, length));
            next += 1;
        }
    }
    let table = datafusion::datasource::MemTable::try_new(schema.clone(), sliced)
        .map_err(Error::query(format!("register table {name}")))?;
    Ok(Arc::new(table))
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

#[cfg(feature = "ballista")]
async fn client_context(
    url: &str,
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
    baselines: &Option<Location>,
    rules: &Rules,
) -> Result<SessionContext> {
    crate::cluster::client_context(url, config, runtime, baselines.clone(), rules).await
}

#[cfg(not(feature = "ballista"))]
async fn client_context(
    url: &str,
    _config: SessionConfig,
    _runtime: Arc<RuntimeEnv>,
    _baselines: &Option<Location>,
    _rules: &Rules,
) -> Result<SessionContext> {
    Err(Error::Usage(format!(
        "--cluster {url}: this iodrift was built without the `ballista` feature"
    )))
}

/// Creates `rule`'s schema, holding every table of `public` and the rule's row of `rules` as
/// `rule`, runs the rule's SQL and then `sql/findings.sql` there, and returns its findings. The
/// views that `held` names become [`Materialized`] as soon as their statement has run, so the
/// views created after them read them as held.
/// Held views are spread over `partitions` partitions (the session's parallelism before a
/// window of fewer hours narrowed it), so that the queries reading them use every core.
async fn register_rule(
    ctx: &SessionContext,
    rule: &Rule,
    held: Held,
    partitions: usize,
) -> Result<DataFrame> {
    let fail = |path: &str, e: datafusion::error::DataFusionError| Error::Rule {
        path: path.to_string(),
        reason: e.strip_backtrace(),
    };
    let public = ctx
        .catalog("iodrift")
        .and_then(|catalog| catalog.schema("public"))
        .ok_or_else(|| Error::Usage("the session has no schema iodrift.public".into()))?;
    let schema = Arc::new(MemorySchemaProvider::new());
    for name in public.table_names() {
        if let Some(table) = public
            .table(&name)
            .await
            .map_err(|e| fail(&rule.origin, e))?
        {
            schema
                .register_table(name, table)
                .map_err(|e| fail(&rule.origin, e))?;
        }
    }
    let own_row = ctx
        .table("rules")
        .await
        .and_then(|rules| rules.filter(col("rule").eq(lit(rule.name.as_str()))))
        .map_err(|e| fail(&rule.origin, e))?;
    schema
        .register_table("rule".into(), own_row.into_view())
        .map_err(|e| fail(&rule.origin, e))?;
    ctx.catalog("iodrift")
        .ok_or_else(|| Error::Usage("the session has no catalog iodrift".into()))?
        .register_schema(&rule.namespace, schema.clone())
        .map_err(|e| fail(&rule.origin, e))?;

    let held_views: Vec<&str> = match held {
        Held::Nothing => Vec::new(),
        Held::DetectionViews => rule.materialize.iter().map(String::as_str).collect(),
        Held::Rollups => rule
            .tables
            .iter()
            .filter_map(|t| t.rollup.as_ref().map(|r| r.view.as_str()))
            .collect(),
    };
    set_default_schema(ctx, &rule.namespace);
    let mut result = Ok(());
    'files: for (path, sql) in rule
        .sql
        .iter()
        .map(|(p, s)| (p.as_str(), s.as_str()))
        .chain([FINDINGS_SQL])
    {
        let statements = match parse_script(ctx, sql) {
            Ok(statements) => statements,
            Err(e) => {
                result = Err(fail(path, e));
                break;
            }
        };
        for statement in statements {
            if let Err(e) = run_statement(ctx, statement).await {
                result = Err(fail(path, e));
                break 'files;
            }
            if let Err(e) = hold_views(&schema, &held_views, partitions).await {
                result = Err(fail(path, e));
                break 'files;
            }
        }
    }
    set_default_schema(ctx, "public");
    result?;
    for name in &rule.materialize {
        if !schema.table_exist(name) {
            return Err(Error::Rule {
                path: rule.origin.clone(),
                reason: format!(
                    "detection.materialize names {name:?}, which the rule's SQL does not create"
                ),
            });
        }
    }
    ctx.table(datafusion::common::TableReference::partial(
        rule.namespace.as_str(),
        "findings",
    ))
    .await
    .map_err(|e| fail(&rule.origin, e))
}

/// Replaces each view of `schema` named in `names` by a [`Materialized`] view of its plan,
/// whose rows are spread over `partitions` partitions.
async fn hold_views(
    schema: &MemorySchemaProvider,
    names: &[&str],
    partitions: usize,
) -> datafusion::error::Result<()> {
    for name in names {
        let Some(table) = schema.table(name).await? else {
            continue;
        };
        let Some(view) = table.downcast_ref::<ViewTable>() else {
            continue;
        };
        let held = Arc::new(Materialized::new(view.logical_plan().clone(), partitions));
        schema.deregister_table(name)?;
        schema.register_table(name.to_string(), held)?;
    }
    Ok(())
}

fn set_default_schema(ctx: &SessionContext, schema: &str) {
    ctx.state_ref()
        .write()
        .config_mut()
        .options_mut()
        .catalog
        .default_schema = schema.to_string();
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
    let statements = parse_script(ctx, sql)?;
    let mut frames = Vec::with_capacity(statements.len());
    for statement in statements {
        frames.push(run_statement(ctx, statement).await?);
    }
    Ok(frames)
}

/// The statements of `sql`, in the session's SQL dialect.
fn parse_script(ctx: &SessionContext, sql: &str) -> datafusion::error::Result<VecDeque<Statement>> {
    let dialect_name = ctx.state().config().options().sql_parser.dialect;
    let dialect = dialect_from_str(dialect_name).ok_or_else(|| {
        datafusion::error::DataFusionError::Plan(format!("unsupported SQL dialect {dialect_name}"))
    })?;
    DFParserBuilder::new(sql)
        .with_dialect(dialect.as_ref())
        .build()?
        .parse_statements()
}

/// Plans `statement` and runs it if it is DDL; a query is left for the caller to collect.
async fn run_statement(
    ctx: &SessionContext,
    statement: Statement,
) -> datafusion::error::Result<DataFrame> {
    let plan = ctx.state().statement_to_plan(statement).await?;
    ctx.execute_logical_plan(plan).await
}
