//! What iodrift's aggregation operators share: putting one in place of DataFusion's
//! `AggregateExec` where it fits, and the stream that feeds it batches and returns its output.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{HashMap, Result, internal_err};
use datafusion::logical_expr::Volatility;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::metrics::BaselineMetrics;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{ExecutionPlan, RecordBatchStream, SendableRecordBatchStream};
use futures::{Stream, StreamExt};

/// `plan` with each `AggregateExec` for which `try_new` makes an operator replaced by it.
pub(crate) fn replace_aggregates<E: ExecutionPlan + 'static>(
    plan: Arc<dyn ExecutionPlan>,
    try_new: fn(&AggregateExec) -> Result<Option<E>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let replaced = node
            .downcast_ref::<AggregateExec>()
            .map(try_new)
            .transpose()?
            .flatten();
        Ok(match replaced {
            Some(exec) => Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>),
            None => Transformed::no(node),
        })
    })
    .data()
}

/// Calls `f` on each of `exprs` until it says stop: an operator's `apply_expressions`.
pub(crate) fn visit_expressions<'a>(
    exprs: impl IntoIterator<Item = &'a Arc<dyn PhysicalExpr>>,
    f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
) -> Result<TreeNodeRecursion> {
    let mut recursion = TreeNodeRecursion::Continue;
    for expr in exprs {
        recursion = f(expr)?;
        if recursion == TreeNodeRecursion::Stop {
            break;
        }
    }
    Ok(recursion)
}

/// Whether a key of this type is compared by its value as an `i64`: integers, times, dates.
pub(crate) fn is_integer_key(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::Date32
            | DataType::Date64
            | DataType::Timestamp(_, _)
    )
}

/// The most columns whose combinations [`combinations`] numbers.
pub(crate) const MAX_COMPONENTS: usize = 4;

/// Rows per combination below which a stream groups rows by their own keys instead.
const MANY_COMBINATIONS: usize = 8;

/// How many rows a stream reads before [`CombinationRate`] judges it.
const JUDGED_AFTER: usize = 256;

/// The combinations a stream's batches have held, against their rows: whether computing keys
/// once per combination still pays. Judged over all rows read, so that one small batch (the
/// end of a file) does not decide for the whole stream.
#[derive(Debug, Default)]
pub(crate) struct CombinationRate {
    rows: usize,
    combinations: usize,
}

impl CombinationRate {
    /// Counts a batch of `rows` rows and `combinations` combinations; false once the rows read
    /// hold more than one combination per [`MANY_COMBINATIONS`] rows.
    pub(crate) fn pays(&mut self, rows: usize, combinations: usize) -> bool {
        self.rows += rows;
        self.combinations += combinations;
        self.rows < JUDGED_AFTER || self.combinations * MANY_COMBINATIONS <= self.rows
    }
}

/// The values of `exprs` over every row of `batch`.
pub(crate) fn evaluate_all(
    exprs: &[Arc<dyn PhysicalExpr>],
    batch: &RecordBatch,
) -> Result<Vec<ArrayRef>> {
    exprs
        .iter()
        .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
        .collect()
}

/// A combination of the values of the columns the keys read, then a mask of those that are null.
type Combination = [u64; MAX_COMPONENTS + 1];

/// Each row's combination number in `batch`, and one row of each combination.
pub(crate) fn combinations(
    batch: &RecordBatch,
    components: &[usize],
) -> Result<(Vec<u32>, Vec<u32>)> {
    let rows = batch.num_rows();
    let mut columns = Vec::with_capacity(components.len());
    for &index in components {
        let array = batch.column(index);
        let values: Vec<u64> = match array.as_any_dictionary_opt() {
            Some(dictionary) => dictionary
                .normalized_keys()
                .into_iter()
                .map(|k| k as u64)
                .collect(),
            None => cast(array, &DataType::Int64)?
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .map(|v| *v as u64)
                .collect(),
        };
        columns.push((values, array.logical_nulls()));
    }
    let mut numbers: HashMap<Combination, u32> = HashMap::default();
    let mut representatives = Vec::new();
    let mut of_rows = Vec::with_capacity(rows);
    let mut previous: Option<(Combination, u32)> = None;
    for row in 0..rows {
        let mut combination = [0; MAX_COMPONENTS + 1];
        for (position, (values, nulls)) in columns.iter().enumerate() {
            match nulls {
                Some(nulls) if nulls.is_null(row) => combination[MAX_COMPONENTS] |= 1 << position,
                _ => combination[position] = values[row],
            }
        }
        let number = match previous {
            Some((last, number)) if last == combination => number,
            _ => *numbers.entry(combination).or_insert_with(|| {
                representatives.push(row as u32);
                representatives.len() as u32 - 1
            }),
        };
        previous = Some((combination, number));
        of_rows.push(number);
    }
    Ok((of_rows, representatives))
}

/// An aggregation's expressions over what it reads, a projection right below it folded in.
pub(crate) struct Unfolded {
    /// The aggregation's input, or the input of its projection.
    pub(crate) input: Arc<dyn ExecutionPlan>,
    pub(crate) group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    pub(crate) aggregates: Vec<AggregateInput>,
}

/// What one aggregate function reads.
#[derive(Debug, Clone)]
pub(crate) struct AggregateInput {
    pub(crate) arguments: Vec<Arc<dyn PhysicalExpr>>,
    pub(crate) filter: Option<Arc<dyn PhysicalExpr>>,
}

/// `aggregate`'s group keys, arguments and filters over the input of a projection right below
/// it (so that the projection's expressions are computed only where the operator needs them),
/// or over its own input.
pub(crate) fn unfold(aggregate: &AggregateExec) -> Result<Unfolded> {
    let projection = aggregate.input().downcast_ref::<ProjectionExec>();
    let input = match projection {
        Some(projection) => projection.input().clone(),
        None => aggregate.input().clone(),
    };
    let unfold = |expr: &Arc<dyn PhysicalExpr>| -> Result<Arc<dyn PhysicalExpr>> {
        match projection {
            Some(projection) => unfold_projection(expr, projection),
            None => Ok(expr.clone()),
        }
    };
    let group_exprs = aggregate
        .group_expr()
        .expr()
        .iter()
        .map(|(e, _)| unfold(e))
        .collect::<Result<Vec<_>>>()?;
    let aggregates = aggregate
        .aggr_expr()
        .iter()
        .zip(aggregate.filter_expr())
        .map(|(function, filter)| {
            let arguments = function
                .expressions()
                .iter()
                .map(&unfold)
                .collect::<Result<_>>()?;
            let filter = filter.as_ref().map(&unfold).transpose()?;
            Ok(AggregateInput { arguments, filter })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Unfolded {
        input,
        group_exprs,
        aggregates,
    })
}

/// `expr` over the projection's output rewritten over the projection's input.
fn unfold_projection(
    expr: &Arc<dyn PhysicalExpr>,
    projection: &ProjectionExec,
) -> Result<Arc<dyn PhysicalExpr>> {
    expr.clone()
        .transform_down(|e| match e.downcast_ref::<Column>() {
            Some(column) => match projection.expr().get(column.index()) {
                Some(projected) => Ok(Transformed::new(
                    projected.expr.clone(),
                    true,
                    TreeNodeRecursion::Jump,
                )),
                None => internal_err!("DictionaryGroupsExec: {column} is not projected"),
            },
            None => Ok(Transformed::no(e)),
        })
        .data()
}

/// Adds the input columns `expr` reads to `columns` (each once); false when `expr` calls a
/// volatile function, whose value no combination of columns decides.
pub(crate) fn add_columns_read(
    expr: &Arc<dyn PhysicalExpr>,
    columns: &mut Vec<usize>,
) -> Result<bool> {
    let mut volatile = false;
    expr.apply(|e| {
        if let Some(column) = e.downcast_ref::<Column>()
            && !columns.contains(&column.index())
        {
            columns.push(column.index());
        }
        if let Some(function) = e.downcast_ref::<ScalarFunctionExpr>() {
            volatile |= function.fun().signature().volatility == Volatility::Volatile;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(!volatile)
}

/// An operator's state between batches: it takes each input batch, then the end of the input,
/// and queues the batches it outputs.
pub(crate) trait Fold: Send {
    fn add(&mut self, batch: &RecordBatch, output: &mut VecDeque<RecordBatch>) -> Result<()>;
    fn finish(&mut self, output: &mut VecDeque<RecordBatch>) -> Result<()>;
}

/// The output stream of a [`Fold`] over its input stream.
pub(crate) struct FoldStream<F> {
    input: SendableRecordBatchStream,
    schema: SchemaRef,
    fold: F,
    output: VecDeque<RecordBatch>,
    finished: bool,
    baseline: BaselineMetrics,
}

impl<F: Fold> FoldStream<F> {
    pub(crate) fn new(
        input: SendableRecordBatchStream,
        schema: SchemaRef,
        fold: F,
        baseline: BaselineMetrics,
    ) -> FoldStream<F> {
        FoldStream {
            input,
            schema,
            fold,
            output: VecDeque::new(),
            finished: false,
            baseline,
        }
    }
}

impl<F: Fold + Unpin> Stream for FoldStream<F> {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(batch) = this.output.pop_front() {
                return this.baseline.record_poll(Poll::Ready(Some(Ok(batch))));
            }
            if this.finished {
                return Poll::Ready(None);
            }
            let polled = this.input.poll_next_unpin(cx);
            let timer = this.baseline.elapsed_compute().clone();
            let _timer = timer.timer();
            let result = match polled {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(batch))) => this.fold.add(&batch, &mut this.output),
                Poll::Ready(None) => {
                    this.finished = true;
                    this.fold.finish(&mut this.output)
                }
            };
            if let Err(e) = result {
                this.finished = true;
                this.output.clear();
                return Poll::Ready(Some(Err(e)));
            }
        }
    }
}

impl<F: Fold + Unpin> RecordBatchStream for FoldStream<F> {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl<F> fmt::Debug for FoldStream<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FoldStream").finish_non_exhaustive()
    }
}

/// `sql` over `metrics` in a session of `config` (PostgreSQL dialect, iodrift's functions) and,
/// when given, `rule` and a memory pool of `memory_limit` bytes: the result's rows as
/// [`rows_as_bits`] gives them, and the plan shown with its metrics.
#[cfg(test)]
pub(crate) async fn run_with_rule(
    sql: &str,
    mut config: datafusion::prelude::SessionConfig,
    metrics: datafusion::datasource::MemTable,
    rule: Option<Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>>,
    memory_limit: Option<usize>,
) -> Result<(Vec<String>, String)> {
    use datafusion::execution::SessionStateBuilder;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::physical_plan::collect;
    use datafusion::physical_plan::display::DisplayableExecutionPlan;
    config.options_mut().sql_parser.dialect = datafusion::common::config::Dialect::PostgreSQL;
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(bytes) = memory_limit {
        runtime = runtime.with_memory_limit(bytes, 1.0);
    }
    let mut builder = SessionStateBuilder::new()
        .with_default_features()
        .with_runtime_env(runtime.build_arc()?)
        .with_config(config);
    if let Some(rule) = rule {
        builder = builder.with_physical_optimizer_rule(rule);
    }
    let ctx = datafusion::prelude::SessionContext::new_with_state(builder.build());
    crate::register_all(&ctx);
    ctx.register_table("metrics", Arc::new(metrics))?;
    let plan = ctx.sql(sql).await?.create_physical_plan().await?;
    let rows = rows_as_bits(&collect(plan.clone(), ctx.task_ctx()).await?);
    let shown = DisplayableExecutionPlan::with_metrics(plan.as_ref())
        .indent(true)
        .to_string();
    Ok((rows, shown))
}

/// Each row of `batches` as text, floats as their bits, sorted: what tests compare.
#[cfg(test)]
pub(crate) fn rows_as_bits(batches: &[RecordBatch]) -> Vec<String> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Float64Type;
    use datafusion::arrow::util::display::array_value_to_string;
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = batch
                .columns()
                .iter()
                .map(|c| match c.as_primitive_opt::<Float64Type>() {
                    Some(f) if f.is_valid(row) => format!("{:016x}", f.value(row).to_bits()),
                    _ => array_value_to_string(c, row).expect("displayable"),
                })
                .collect();
            rows.push(cells.join("|"));
        }
    }
    rows.sort();
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_batch_does_not_decide_for_the_stream() {
        let mut rate = CombinationRate::default();
        assert!(
            rate.pays(3, 3),
            "3 rows, each its own combination, the end of a file"
        );
        assert!(rate.pays(1_000, 10));
        let mut rate = CombinationRate::default();
        assert!(rate.pays(100, 60), "not judged before 256 rows");
        assert!(!rate.pays(200, 100), "160 combinations in 300 rows");
    }
}
