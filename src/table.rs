//! The `metrics` table: a window's hour files as one Parquet scan with an `hour` column, whose
//! partitions hold whole hours in time order so the 10 s span stage streams hour by hour.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::Session;
use datafusion::common::{ScalarValue, Statistics};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, Partitioning, PhysicalSortExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;

use crate::store::{self, HourPartition, Scan, Store};

/// The partition column: the start of the hour a row's file is filed under.
pub const HOUR: &str = "hour";

/// The hour files of a [`Scan`] as a DataFusion table.
///
/// With at least as many hours as target partitions, each partition of the scan reads whole
/// hours in time order and the scan declares itself hash-partitioned and ordered by `hour`:
/// a `GROUP BY hour, ...` then runs without a repartition and emits each hour's groups as soon
/// as the hour ends, instead of holding every group of the window. When every file also
/// declares the store's sort order, the scan is ordered by `hour` then [`store::SORT_ORDER`]
/// (DataFusion checks the files' statistics before relying on it), and a group whose keys
/// follow that order is emitted as soon as it is complete, even with fewer hours than
/// partitions (the session then runs as many partitions as hours, see session.rs). Unsorted
/// files of fewer hours than partitions are split into byte ranges across all partitions.
#[derive(Debug)]
pub struct HourTable {
    url: ObjectStoreUrl,
    partitions: Vec<HourPartition>,
    schema: SchemaRef,
}

impl HourTable {
    pub fn new(store: &Store, scan: &Scan) -> HourTable {
        HourTable::from_partitions(store.object_store_url(), scan.partitions.clone())
    }

    /// The table of `partitions`, files of the object store at `url`.
    pub fn from_partitions(url: ObjectStoreUrl, partitions: Vec<HourPartition>) -> HourTable {
        let mut fields: Vec<Field> = store::schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(hour_field());
        HourTable {
            url,
            partitions,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    pub fn url(&self) -> &ObjectStoreUrl {
        &self.url
    }

    pub fn partitions(&self) -> &[HourPartition] {
        &self.partitions
    }

    /// Whole hours dealt round-robin to `count` groups, each group in time order.
    fn hour_groups(&self, count: usize) -> Vec<FileGroup> {
        let unknown = Arc::new(Statistics::new_unknown(&store::schema()));
        let mut groups = vec![Vec::new(); count];
        for (i, partition) in self.partitions.iter().enumerate() {
            let hour = ScalarValue::TimestampMillisecond(
                Some(partition.hour.timestamp_millis()),
                Some("UTC".into()),
            );
            groups[i % count].extend(partition.files.iter().map(|file| {
                PartitionedFile::from(file.meta.clone())
                    .with_partition_values(vec![hour.clone()])
                    .with_statistics(file.statistics.clone().unwrap_or_else(|| unknown.clone()))
            }));
        }
        groups.into_iter().map(FileGroup::new).collect()
    }

    fn column(&self, name: &str) -> Arc<Column> {
        let index = self.schema.index_of(name).expect("a column of the table");
        Arc::new(Column::new(name, index))
    }

    /// `hour`, and `hour` then the files' own order when every file declares it.
    fn orderings(&self) -> Vec<LexOrdering> {
        let ascending =
            |name: &str| PhysicalSortExpr::new(self.column(name), SortOptions::new(false, false));
        let by_hour = LexOrdering::new([ascending(HOUR)]);
        let within_hour = all_sorted(&self.partitions)
            .then(|| {
                LexOrdering::new(
                    std::iter::once(HOUR)
                        .chain(store::SORT_ORDER)
                        .map(ascending),
                )
            })
            .flatten();
        by_hour.into_iter().chain(within_hour).collect()
    }
}

fn all_sorted(partitions: &[HourPartition]) -> bool {
    partitions
        .iter()
        .all(|p| p.files.iter().all(|file| file.sorted))
}

/// Whether the scan of `scan` deals whole hours to its partitions (see [`HourTable`]) when
/// DataFusion runs `target` partitions.
pub fn streams_by_hour(scan: &Scan, target: usize) -> bool {
    by_hour(&scan.partitions, target)
}

fn by_hour(partitions: &[HourPartition], target: usize) -> bool {
    !partitions.is_empty() && (partitions.len() >= target || all_sorted(partitions))
}

fn hour_field() -> Field {
    Field::new(
        HOUR,
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        false,
    )
}

#[async_trait]
impl TableProvider for HourTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Filters are applied above the scan; DataFusion pushes them into the Parquet reader for
    /// row-group and page pruning.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.partitions.is_empty() {
            let schema = match projection {
                Some(indices) => Arc::new(self.schema.project(indices)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let target = state.config().target_partitions().max(1);
        let table_schema = TableSchema::builder(store::schema())
            .with_table_partition_cols(vec![Arc::new(hour_field())])
            .build();
        let source = Arc::new(ParquetSource::new(table_schema));
        let streams = by_hour(&self.partitions, target);
        let target = target.min(self.partitions.len());
        let (groups, ordering, partitioning) = if streams {
            (
                self.hour_groups(target),
                self.orderings(),
                Some(Partitioning::Hash(vec![self.column(HOUR)], target)),
            )
        } else {
            (self.hour_groups(1), vec![], None)
        };
        let config = FileScanConfigBuilder::new(self.url.clone(), source)
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .with_output_ordering(ordering)
            .with_output_partitioning(partitioning)
            .build();
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        format.create_physical_plan(state, config).await
    }
}
