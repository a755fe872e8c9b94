//! A view computed once, on its first scan, and held in memory for the rest of the session:
//! DataFusion inlines a view into every plan that reads it, so a view read by several others runs once per reader.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{MemTable, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::{ExecutionPlan, collect_partitioned};
use tokio::sync::OnceCell;

/// A view's plan and, once a query has read it, its rows, spread over a number of partitions.
/// Its rows are outside the memory pool: only views whose rows are few against the scan's belong
/// here, which is why a rule names them (`[detection] materialize`) rather than every view.
#[derive(Debug)]
pub struct Materialized {
    plan: LogicalPlan,
    schema: SchemaRef,
    partitions: usize,
    rows: OnceCell<MemTable>,
}

impl Materialized {
    /// The view of `plan`, not yet computed, whose rows will be dealt round-robin, a batch at a
    /// time, over `partitions` partitions: a plan over one sorted hour produces one, and the
    /// queries that read the view then run on as many cores as there are partitions.
    pub fn new(plan: LogicalPlan, partitions: usize) -> Materialized {
        let schema = Arc::new(plan.schema().as_arrow().clone());
        Materialized {
            plan,
            schema,
            partitions: partitions.max(1),
            rows: OnceCell::new(),
        }
    }

    async fn rows(&self, state: &dyn Session) -> Result<&MemTable> {
        self.rows
            .get_or_try_init(|| async {
                let plan = state.create_physical_plan(&self.plan).await?;
                let schema = plan.schema();
                let produced = collect_partitioned(plan, state.task_ctx()).await?;
                let mut partitions = vec![Vec::new(); self.partitions];
                for (i, batch) in produced.into_iter().flatten().enumerate() {
                    partitions[i % self.partitions].push(batch);
                }
                MemTable::try_new(schema, partitions)
            })
            .await
    }
}

#[async_trait]
impl TableProvider for Materialized {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.rows(state)
            .await?
            .scan(state, projection, filters, limit)
            .await
    }
}
