//! What iodrift's aggregation operators share: putting one in place of DataFusion's
//! `AggregateExec` where it fits, and the stream that feeds it batches and returns its output.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::metrics::BaselineMetrics;
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
/// when given, `rule`: the result's rows as [`rows_as_bits`] gives them, and the plan shown.
#[cfg(test)]
pub(crate) async fn run_with_rule(
    sql: &str,
    mut config: datafusion::prelude::SessionConfig,
    metrics: datafusion::datasource::MemTable,
    rule: Option<Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>>,
) -> Result<(Vec<String>, String)> {
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_plan::{collect, displayable};
    config.options_mut().sql_parser.dialect = datafusion::common::config::Dialect::PostgreSQL;
    let mut builder = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config);
    if let Some(rule) = rule {
        builder = builder.with_physical_optimizer_rule(rule);
    }
    let ctx = datafusion::prelude::SessionContext::new_with_state(builder.build());
    crate::register_all(&ctx);
    ctx.register_table("metrics", Arc::new(metrics))?;
    let plan = ctx.sql(sql).await?.create_physical_plan().await?;
    let shown = displayable(plan.as_ref()).indent(true).to_string();
    let rows = rows_as_bits(&collect(plan, ctx.task_ctx()).await?);
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
