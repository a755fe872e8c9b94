//! A partial aggregation whose group keys are computed from dictionary-encoded columns, run with
//! the keys computed once per distinct combination of dictionary entries in each batch.
//!
//! Written by hand because DataFusion evaluates group key expressions row by row: for a key like
//! `cluster || ':' || k8s_service(pod)` over a hundred million spans that is a dictionary cast,
//! a string built and hashed per row, for a few hundred distinct pods. Here the columns the keys
//! read are compared as integers (dictionary indices, or integer values), the key expressions
//! run over one representative row of each distinct combination, and DataFusion's own
//! [`GroupValues`] and accumulators do the rest: the same groups, the same states.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputOrderMode, PlanProperties,
    SendableRecordBatchStream,
};

use crate::operator::{
    AggregateInput, CombinationRate, Fold, FoldStream, MAX_COMPONENTS, Unfolded, add_columns_read,
    combinations, evaluate_all, is_integer_key, replace_aggregates, unfold, visit_expressions,
};

/// Replaces each partial `AggregateExec` over unsorted input (without grouping sets, limits or
/// dynamic filters) whose group keys read only dictionary-encoded strings and integers, at least
/// one dictionary and at most four columns, by a [`DictionaryGroupsExec`]. A projection right
/// below the aggregation is folded into it, so that the keys are not computed for every row
/// there either.
#[derive(Debug, Default)]
pub struct DictionaryGroupsRule;

impl PhysicalOptimizerRule for DictionaryGroupsRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        replace_aggregates(plan, DictionaryGroupsExec::try_new)
    }

    fn name(&self) -> &str {
        "dictionary_groups"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A partial `AggregateExec` run with its group keys computed per distinct combination of the
/// input columns they read.
#[derive(Debug)]
pub struct DictionaryGroupsExec {
    /// The aggregation replaced (its input may be a projection folded in here).
    aggregate: AggregateExec,
    /// What this operator reads: the aggregation's input, or the input of its projection.
    input: Arc<dyn ExecutionPlan>,
    /// The group key expressions over `input`.
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// The aggregate functions' arguments and filters over `input`.
    aggregates: Vec<AggregateInput>,
    /// The columns of `input` that the group keys read.
    components: Vec<usize>,
    metrics: ExecutionPlanMetricsSet,
}

impl DictionaryGroupsExec {
    /// The operator for `aggregate`, or `None` when its shape or its keys do not fit.
    pub fn try_new(aggregate: &AggregateExec) -> Result<Option<DictionaryGroupsExec>> {
        let group_by = aggregate.group_expr();
        // Over input sorted by some keys DataFusion's operator hands on the groups as each
        // sorted run ends; this one holds them all to the end, as DataFusion does otherwise.
        let plain = *aggregate.mode() == AggregateMode::Partial
            && *aggregate.input_order_mode() == InputOrderMode::Linear
            && !group_by.has_grouping_set()
            && !group_by.expr().is_empty()
            && aggregate.limit_options().is_none()
            && aggregate.dynamic_expressions_produced().is_empty()
            && aggregate
                .aggr_expr()
                .iter()
                .all(|a| a.groups_accumulator_supported());
        if !plain {
            return Ok(None);
        }
        let Unfolded {
            input,
            group_exprs,
            aggregates,
        } = unfold(aggregate)?;
        let schema = input.schema();
        let mut components = Vec::new();
        for expr in &group_exprs {
            if !add_columns_read(expr, &mut components)? {
                return Ok(None);
            }
        }
        let kinds = components
            .iter()
            .map(|&i| component_kind(schema.field(i).data_type()))
            .collect::<Option<Vec<_>>>();
        let fits = kinds.is_some_and(|kinds| kinds.contains(&ComponentKind::Dictionary))
            && components.len() <= MAX_COMPONENTS;
        if !fits {
            return Ok(None);
        }
        Ok(Some(DictionaryGroupsExec {
            aggregate: aggregate.clone(),
            input,
            group_exprs,
            aggregates,
            components,
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ComponentKind {
    /// Dictionary-encoded: compared by index within a batch.
    Dictionary,
    /// Integers, times and dates: compared by value.
    Integer,
}

fn component_kind(data_type: &DataType) -> Option<ComponentKind> {
    match data_type {
        DataType::Dictionary(key, _) if key.is_dictionary_key_type() => {
            Some(ComponentKind::Dictionary)
        }
        data_type if is_integer_key(data_type) => Some(ComponentKind::Integer),
        _ => None,
    }
}

impl DisplayAs for DictionaryGroupsExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let schema = self.input.schema();
        let names: Vec<&str> = self
            .components
            .iter()
            .map(|&i| schema.field(i).name().as_str())
            .collect();
        let keys: Vec<&str> = self
            .aggregate
            .group_expr()
            .expr()
            .iter()
            .map(|(_, name)| name.as_str())
            .collect();
        let aggregates: Vec<_> = self
            .aggregate
            .aggr_expr()
            .iter()
            .map(|a| a.name())
            .collect();
        write!(
            f,
            "DictionaryGroupsExec: mode=Partial, gby=[{}] from [{}], aggr=[{}]",
            keys.join(", "),
            names.join(", "),
            aggregates.join(", ")
        )
    }
}

impl ExecutionPlan for DictionaryGroupsExec {
    fn name(&self) -> &str {
        "DictionaryGroupsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.aggregate.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let exprs = self.group_exprs.iter().chain(
            self.aggregates
                .iter()
                .flat_map(|a| a.arguments.iter().chain(a.filter.iter())),
        );
        visit_expressions(exprs, f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = children.as_slice() else {
            return internal_err!("DictionaryGroupsExec has one input");
        };
        if input.schema() != self.input.schema() {
            return internal_err!("DictionaryGroupsExec: its input's schema changed");
        }
        Ok(Arc::new(DictionaryGroupsExec {
            aggregate: self.aggregate.clone(),
            input: input.clone(),
            group_exprs: self.group_exprs.clone(),
            aggregates: self.aggregates.clone(),
            components: self.components.clone(),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context.clone())?;
        let schema = self.schema();
        let keys = self.group_exprs.len();
        let group_schema = Arc::new(Schema::new(schema.fields()[..keys].to_vec()));
        let accumulators = self
            .aggregate
            .aggr_expr()
            .iter()
            .map(|a| a.create_groups_accumulator())
            .collect::<Result<Vec<_>>>()?;
        let reservation = MemoryConsumer::new(format!("DictionaryGroupsExec[{partition}]"))
            .with_can_spill(true)
            .register(context.memory_pool());
        let fold = DictionaryGroups {
            schema: schema.clone(),
            group_exprs: self.group_exprs.clone(),
            aggregates: self.aggregates.clone(),
            components: self.components.clone(),
            group_values: new_group_values(group_schema, &GroupOrdering::None)?,
            accumulators,
            batch_size: context.session_config().batch_size(),
            by_combination: true,
            rate: CombinationRate::default(),
            reservation,
        };
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        Ok(Box::pin(FoldStream::new(input, schema, fold, baseline)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// The groups of one partition's stream, and what computes them.
struct DictionaryGroups {
    schema: SchemaRef,
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    aggregates: Vec<AggregateInput>,
    components: Vec<usize>,
    group_values: Box<dyn GroupValues>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    batch_size: usize,
    /// Whether rows are still grouped by the combination of the columns their keys read.
    by_combination: bool,
    rate: CombinationRate,
    reservation: MemoryReservation,
}

impl DictionaryGroups {
    /// Each row's group, its keys computed once per combination; `None` (and rows grouped by
    /// their own keys from then on) where the stream's batches hold too many combinations
    /// ([`CombinationRate`]), as when the keys read a time.
    fn groups_by_combination(&mut self, batch: &RecordBatch) -> Result<Option<Vec<usize>>> {
        let (of_rows, representatives) = combinations(batch, &self.components)?;
        if !self.rate.pays(batch.num_rows(), representatives.len()) {
            self.by_combination = false;
            return Ok(None);
        }
        let distinct = take_record_batch(batch, &UInt32Array::from(representatives))?;
        let keys = evaluate_all(&self.group_exprs, &distinct)?;
        let mut groups = Vec::with_capacity(distinct.num_rows());
        self.group_values.intern(&keys, &mut groups)?;
        Ok(Some(of_rows.iter().map(|&n| groups[n as usize]).collect()))
    }

    fn add_batch(&mut self, batch: &RecordBatch, output: &mut VecDeque<RecordBatch>) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let group_indices = match self.by_combination {
            true => self.groups_by_combination(batch)?,
            false => None,
        };
        let group_indices = match group_indices {
            Some(indices) => indices,
            None => {
                let keys = evaluate_all(&self.group_exprs, batch)?;
                let mut indices = Vec::with_capacity(rows);
                self.group_values.intern(&keys, &mut indices)?;
                indices
            }
        };
        let total = self.group_values.len();
        for (aggregate, accumulator) in self.aggregates.iter().zip(&mut self.accumulators) {
            let arguments = evaluate_all(&aggregate.arguments, batch)?;
            let filter = match &aggregate.filter {
                Some(filter) => Some(filter.evaluate(batch)?.into_array(rows)?),
                None => None,
            };
            let filter = filter.as_ref().map(|f| f.as_boolean());
            accumulator.update_batch(&arguments, &group_indices, filter, total)?;
        }
        if self.reservation.try_resize(self.held_bytes()).is_err() {
            // A partial aggregation may hand on its groups early: the final one merges them.
            self.emit(output)?;
            self.reservation.try_resize(self.held_bytes())?;
        }
        Ok(())
    }

    fn held_bytes(&self) -> usize {
        self.group_values.size() + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
    }

    /// Queues every group held, as states, and starts afresh.
    fn emit(&mut self, output: &mut VecDeque<RecordBatch>) -> Result<()> {
        if self.group_values.is_empty() {
            return Ok(());
        }
        let mut columns = self.group_values.emit(EmitTo::All)?;
        for accumulator in &mut self.accumulators {
            columns.extend(accumulator.state(EmitTo::All)?);
        }
        self.group_values.clear_shrink(0);
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        let size = self.batch_size.max(1);
        let mut start = 0;
        while start < batch.num_rows() {
            let length = size.min(batch.num_rows() - start);
            output.push_back(batch.slice(start, length));
            start += length;
        }
        Ok(())
    }
}

impl Fold for DictionaryGroups {
    fn add(&mut self, batch: &RecordBatch, output: &mut VecDeque<RecordBatch>) -> Result<()> {
        self.add_batch(batch, output)
    }

    fn finish(&mut self, output: &mut VecDeque<RecordBatch>) -> Result<()> {
        let emitted = self.emit(output);
        self.reservation.free();
        emitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::run_with_rule;
    use datafusion::arrow::array::{
        ArrayRef, DictionaryArray, Float64Array, Int64Array, StringArray,
    };
    use datafusion::arrow::datatypes::{Field, Int8Type, Int32Type};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionConfig;

    /// Batches whose dictionaries differ (other orders, unused and repeated values, null values
    /// as well as null keys), with a nullable integer column that takes the value -1.
    fn batches() -> (SchemaRef, Vec<RecordBatch>) {
        let text = |key: DataType| DataType::Dictionary(Box::new(key), Box::new(DataType::Utf8));
        let schema = Arc::new(Schema::new(vec![
            Field::new("cluster", text(DataType::Int8), true),
            Field::new("pod", text(DataType::Int32), true),
            Field::new("shard", DataType::Int64, true),
            Field::new("direction", DataType::Utf8, true),
            Field::new("value", DataType::Float64, true),
            Field::new("seq", DataType::Int64, false),
        ]));
        let pods = [
            "web-7d9f8b6c5d-abcde",
            "web-7d9f8b6c5d-fghij",
            "db-0",
            "db-1",
            "cron-2901",
        ];
        let batches = (0..9)
            .map(|b: usize| {
                let rows = 50 + b * 7;
                let pod_values: Vec<Option<&str>> = (0..8)
                    .map(|v| match (v + b) % 8 {
                        6 => None,
                        7 => Some(pods[b % pods.len()]),
                        i => Some(pods[i % pods.len()]),
                    })
                    .collect();
                let pod_keys: Vec<Option<i32>> = (0..rows)
                    .map(|r| (!(r * 5 + b).is_multiple_of(11)).then_some(((r / 3 + b) % 8) as i32))
                    .collect();
                let pod = DictionaryArray::<Int32Type>::try_new(
                    pod_keys.into_iter().collect(),
                    Arc::new(StringArray::from(pod_values)),
                )
                .expect("keys within the dictionary");
                let cluster_values = if b.is_multiple_of(2) {
                    vec!["a", "b"]
                } else {
                    vec!["b", "a", "a"]
                };
                let cluster = DictionaryArray::<Int8Type>::try_new(
                    (0..rows)
                        .map(|r| (r % 13 != 5).then_some(((r / 17) % cluster_values.len()) as i8))
                        .collect(),
                    Arc::new(StringArray::from(cluster_values.clone())),
                )
                .expect("keys within the dictionary");
                let shard: Int64Array = (0..rows)
                    .map(|r| (r % 7 != 3).then_some((r as i64 / 20) - 1))
                    .collect();
                let direction: StringArray = (0..rows)
                    .map(|r| Some(if r % 2 == 0 { "transmit" } else { "receive" }))
                    .collect();
                let value: Float64Array = (0..rows)
                    .map(|r| (r % 9 != 4).then(|| ((r * 31 + b) as f64).sin() * 1e6 / 7.0))
                    .collect();
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(cluster),
                    Arc::new(pod),
                    Arc::new(shard),
                    Arc::new(direction),
                    Arc::new(value),
                    Arc::new(Int64Array::from_iter_values(
                        (0..rows as i64).map(|r| b as i64 * 1000 + r),
                    )),
                ];
                RecordBatch::try_new(schema.clone(), columns).expect("columns match the schema")
            })
            .collect();
        (schema, batches)
    }

    async fn run(sql: &str, with_rule: bool) -> Result<(Vec<String>, String)> {
        run_capped(sql, with_rule, None).await
    }

    async fn run_capped(
        sql: &str,
        with_rule: bool,
        memory_limit: Option<usize>,
    ) -> Result<(Vec<String>, String)> {
        let (schema, batches) = batches();
        let (first, second) = batches.split_at(4);
        let table = MemTable::try_new(schema, vec![first.to_vec(), second.to_vec()])?;
        let rule = with_rule.then(|| Arc::new(DictionaryGroupsRule) as _);
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .with_batch_size(16);
        run_with_rule(sql, config, table, rule, memory_limit).await
    }

    #[tokio::test]
    async fn groups_and_results_are_datafusions() -> Result<()> {
        let queries = [
            // The ESCU baselines' key: a projection below the aggregation computes it.
            "SELECT cluster || ':' || k8s_service(pod) AS key, count(*), \
                 exact_avg(CASE WHEN direction = 'transmit' THEN value END), \
                 exact_stddev_samp(CASE WHEN direction = 'receive' THEN value END), max(value) \
             FROM metrics GROUP BY cluster || ':' || k8s_service(pod)",
            // Keys from a dictionary and an integer (with nulls and -1), and a filter.
            "SELECT pod, shard, count(value), sum(value) FILTER (WHERE direction = 'receive') \
             FROM metrics GROUP BY pod, shard",
            "SELECT upper(pod) AS p, shard + 1 AS s, exact_avg(value) FROM metrics \
             GROUP BY upper(pod), shard + 1",
            // A combination every other row: grouped by the keys themselves.
            "SELECT pod, seq / 2 AS s, count(*), exact_avg(value) FROM metrics GROUP BY pod, seq / 2",
            // Null and two values.
            "SELECT cluster, count(*) FROM metrics GROUP BY cluster",
            // DataFusion groups by (pod, value) first: this operator takes the second stage.
            "SELECT pod, count(DISTINCT value) FROM metrics GROUP BY pod",
        ];
        for sql in queries {
            let (ours, plan) = run(sql, true).await?;
            assert!(
                plan.contains("DictionaryGroupsExec"),
                "not replaced:\n{plan}"
            );
            let (theirs, plan) = run(sql, false).await?;
            assert!(!plan.contains("DictionaryGroupsExec"));
            assert!(ours.len() >= 3, "{sql}: only {} groups", ours.len());
            assert_eq!(ours, theirs, "{sql}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn other_keys_keep_datafusions_operator() -> Result<()> {
        for sql in [
            "SELECT direction, count(*) FROM metrics GROUP BY direction",
            "SELECT shard, count(*) FROM metrics GROUP BY shard",
            "SELECT pod, random() > 2 AS r, count(*) FROM metrics GROUP BY pod, random() > 2",
        ] {
            let (ours, plan) = run(sql, true).await?;
            assert!(!plan.contains("DictionaryGroupsExec"), "{sql}:\n{plan}");
            if !sql.contains("random") {
                assert_eq!(ours, run(sql, false).await?.0, "{sql}");
            }
        }
        Ok(())
    }

    #[tokio::test]
    async fn under_a_memory_cap_it_fails_or_succeeds_where_datafusion_does() -> Result<()> {
        let sql = "SELECT pod, shard, count(*), exact_avg(value) FROM metrics GROUP BY pod, shard";
        let mut outcomes = Vec::new();
        // Caps well below and well above its needs: near them DataFusion's own final stage fails or
        // not depending on how its two partitions interleave.
        for limit in [20_000, 40_000, 1 << 20, 4 << 20] {
            let theirs = run_capped(sql, false, Some(limit)).await;
            let ours = run_capped(sql, true, Some(limit)).await;
            match (theirs, ours) {
                (Ok((theirs, _)), Ok((ours, plan))) => {
                    assert!(plan.contains("DictionaryGroupsExec"), "{plan}");
                    assert_eq!(ours, theirs, "{limit} bytes");
                    outcomes.push(true);
                }
                (Err(_), Err(e)) => {
                    assert!(
                        e.to_string().contains("Resources exhausted")
                            || e.to_string().contains("spilling"),
                        "{e}"
                    );
                    outcomes.push(false);
                }
                (theirs, ours) => panic!(
                    "{limit} bytes: DataFusion's {:?}, ours {:?}",
                    theirs.map(|_| ()),
                    ours.map(|_| ())
                ),
            }
        }
        assert!(
            outcomes.contains(&true) && outcomes.contains(&false),
            "{outcomes:?}"
        );
        Ok(())
    }
}
