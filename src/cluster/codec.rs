//! How iodrift's tables cross the wire to a Ballista scheduler: the store scan and the baseline
//! tables travel as descriptions, rebuilt where the plan is planned from the same files; the
//! small `rules` table travels as its rows.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::catalog::TableProvider;
use datafusion::catalog::cte_worktable::CteWorkTable;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Statistics, TableReference};
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::source_as_provider;
use datafusion::datasource::{MemTable, ViewTable};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;
use datafusion_proto_common::protobuf_common;
use object_store::ObjectMeta;
use object_store::path::Path;
use prost::Message;
use serde::{Deserialize, Serialize};

use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion_proto::logical_plan::LogicalExtensionCodec;

use crate::location::{Location, S3Options};
use crate::lookup::Baseline;
use crate::rule::{Column, ColumnKind, Table};
use crate::store::{HourPartition, StoreFile};
use crate::table::HourTable;
use crate::tables;

/// A table of an iodrift session, as the scheduler rebuilds it.
#[derive(Debug, Serialize, Deserialize)]
enum Described {
    /// The `metrics` scan: the hour files the client listed, with their footers' statistics.
    Metrics {
        url: String,
        partitions: Vec<Partition>,
    },
    /// A baseline table, read from its CSV in `dir` (absolute path or S3 URL), or empty; `keys`
    /// is how many rows the client read there, which the scheduler must read too.
    Lookup {
        table: String,
        rule: String,
        key: Vec<String>,
        columns: Vec<(String, ColumnKind)>,
        dir: Option<String>,
        keys: usize,
    },
    /// The `rules` table: its rows, in Arrow IPC stream format and base64.
    Rules { ipc: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Partition {
    hour: DateTime<Utc>,
    files: Vec<File>,
}

#[derive(Debug, Serialize, Deserialize)]
struct File {
    path: String,
    size: u64,
    last_modified: DateTime<Utc>,
    e_tag: Option<String>,
    version: Option<String>,
    sorted: bool,
    /// DataFusion's protobuf of the file's statistics, in base64.
    statistics: Option<String>,
}

/// Ballista's logical codec, plus iodrift's tables.
///
/// The client encodes; the scheduler decodes, reading lookups with its own S3 settings. The
/// lookups are the CSV files of the client's `--baselines` directory, which must be a path every
/// process of the cluster sees alike, or S3.
#[derive(Debug)]
pub struct TableCodec {
    ballista: BallistaLogicalExtensionCodec,
    baselines: Option<Location>,
    /// The baseline tables the client's rules declare.
    tables: Vec<Arc<Table>>,
    s3: S3Options,
}

impl TableCodec {
    /// The client's codec: the baseline `tables` come from `baselines`.
    pub fn client(baselines: Option<Location>, tables: Vec<Arc<Table>>) -> TableCodec {
        TableCodec {
            ballista: BallistaLogicalExtensionCodec::default(),
            baselines,
            tables,
            s3: S3Options::default(),
        }
    }

    /// The scheduler's codec: S3 lookups are read with `s3`.
    pub fn scheduler(s3: S3Options) -> TableCodec {
        TableCodec {
            ballista: BallistaLogicalExtensionCodec::default(),
            baselines: None,
            tables: Vec::new(),
            s3,
        }
    }

    fn describe(&self, name: &str, table: &Arc<dyn TableProvider>) -> Result<Described> {
        match sendable(name, table, &self.tables) {
            Some(Sendable::Metrics(metrics)) => Ok(Described::Metrics {
                url: metrics.url().as_str().to_string(),
                partitions: metrics.partitions().iter().map(Partition::from).collect(),
            }),
            Some(Sendable::Lookup(table, memory)) => Ok(Described::Lookup {
                table: table.name.clone(),
                rule: table.rule.clone(),
                key: table.key.clone(),
                columns: table
                    .columns
                    .iter()
                    .map(|c| (c.name.clone(), c.kind))
                    .collect(),
                dir: self.baselines.as_ref().map(Location::absolute),
                keys: rows_of(memory)?,
            }),
            Some(Sendable::Rules(memory)) => Ok(Described::Rules {
                ipc: BASE64.encode(ipc_of(memory)?),
            }),
            None => Err(DataFusionError::NotImplemented(unsendable(name))),
        }
    }

    async fn rebuild(&self, described: Described) -> crate::error::Result<Arc<dyn TableProvider>> {
        match described {
            Described::Metrics { url, partitions } => {
                let url = ObjectStoreUrl::parse(&url).map_err(crate::error::Error::query(
                    format!("object store URL {url}"),
                ))?;
                let partitions = partitions
                    .into_iter()
                    .map(HourPartition::try_from)
                    .collect::<Result<_>>()
                    .map_err(crate::error::Error::query("decode the store's files"))?;
                Ok(Arc::new(HourTable::from_partitions(url, partitions)))
            }
            Described::Lookup {
                table,
                rule,
                key,
                columns,
                dir,
                keys,
            } => {
                let table = Arc::new(Table {
                    name: table,
                    namespace: String::new(),
                    title: String::new(),
                    view: String::new(),
                    rule,
                    key,
                    columns: columns
                        .into_iter()
                        .map(|(name, kind)| Column { name, kind })
                        .collect(),
                    rollup: None,
                });
                let baseline = match &dir {
                    Some(dir) => Baseline::read_csv(&Location::parse(dir, &self.s3)?, &table)
                        .await?
                        .unwrap_or_else(|| Baseline::empty(&table)),
                    None => Baseline::empty(&table),
                };
                let read = baseline.batch.num_rows();
                if read != keys {
                    return Err(crate::error::Error::Usage(format!(
                        "{}: the client read {keys} keys from {}, the scheduler {read}: \
                         --baselines must be a location every process of the cluster reads \
                         alike (a shared path, or S3 with the same endpoint and credentials)",
                        table.name,
                        dir.as_deref().unwrap_or("nowhere"),
                    )));
                }
                tables::memory_table(&table.name, baseline.batch)
            }
            Described::Rules { ipc } => {
                let bad = |e: String| crate::error::Error::Usage(format!("the rules table: {e}"));
                let bytes = BASE64.decode(ipc).map_err(|e| bad(e.to_string()))?;
                let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)
                    .map_err(|e| bad(e.to_string()))?;
                let schema = reader.schema();
                let batches = reader
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| bad(e.to_string()))?;
                let batch = datafusion::arrow::compute::concat_batches(&schema, &batches)
                    .map_err(|e| bad(e.to_string()))?;
                tables::memory_table("rules", batch)
            }
        }
    }
}

impl LogicalExtensionCodec for TableCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        _schema: SchemaRef,
        _ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        let described: Described = serde_json::from_slice(buf)
            .map_err(|e| DataFusionError::Internal(format!("decode table {table_ref}: {e}")))?;
        // Decoding is synchronous, reading a lookup is not: run it on this runtime's blocking
        // side (the scheduler decodes on its own worker threads).
        let handle = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| handle.block_on(self.rebuild(described)))
            .map_err(|e| DataFusionError::External(Box::new(e)))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let described = self.describe(table_ref.table(), &node)?;
        serde_json::to_writer(buf, &described)
            .map_err(|e| DataFusionError::Internal(format!("encode table {table_ref}: {e}")))
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.ballista.try_encode_file_format(buf, node)
    }
}

impl From<&HourPartition> for Partition {
    fn from(partition: &HourPartition) -> Partition {
        Partition {
            hour: partition.hour,
            files: partition
                .files
                .iter()
                .map(|file| File {
                    path: file.meta.location.to_string(),
                    size: file.meta.size,
                    last_modified: file.meta.last_modified,
                    e_tag: file.meta.e_tag.clone(),
                    version: file.meta.version.clone(),
                    sorted: file.sorted,
                    statistics: file.statistics.as_ref().map(|statistics| {
                        BASE64.encode(
                            protobuf_common::Statistics::from(statistics.as_ref()).encode_to_vec(),
                        )
                    }),
                })
                .collect(),
        }
    }
}

impl TryFrom<Partition> for HourPartition {
    type Error = DataFusionError;

    fn try_from(partition: Partition) -> Result<HourPartition> {
        let files = partition
            .files
            .into_iter()
            .map(|file| {
                let statistics = file
                    .statistics
                    .map(|text| {
                        let bytes = BASE64
                            .decode(text)
                            .map_err(|e| DataFusionError::Internal(e.to_string()))?;
                        let proto = protobuf_common::Statistics::decode(bytes.as_slice())
                            .map_err(|e| DataFusionError::Internal(e.to_string()))?;
                        Statistics::try_from(&proto)
                            .map(Arc::new)
                            .map_err(|e| DataFusionError::Internal(e.to_string()))
                    })
                    .transpose()?;
                Ok(StoreFile {
                    meta: ObjectMeta {
                        location: Path::parse(&file.path)
                            .map_err(|e| DataFusionError::Internal(e.to_string()))?,
                        last_modified: file.last_modified,
                        size: file.size,
                        e_tag: file.e_tag,
                        version: file.version,
                    },
                    statistics,
                    sorted: file.sorted,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(HourPartition {
            hour: partition.hour,
            files,
        })
    }
}

/// One of iodrift's tables that the codec sends as a description.
enum Sendable<'a> {
    Metrics(&'a HourTable),
    /// A baseline table of a rule.
    Lookup(&'a Arc<Table>, &'a MemTable),
    Rules(&'a MemTable),
}

/// Which of iodrift's sendable tables `table`, registered as `name`, is, among the baseline
/// `tables` of the client's rules.
fn sendable<'a>(
    name: &str,
    table: &'a Arc<dyn TableProvider>,
    tables: &'a [Arc<Table>],
) -> Option<Sendable<'a>> {
    if let Some(metrics) = table.downcast_ref::<HourTable>() {
        return Some(Sendable::Metrics(metrics));
    }
    let memory = table.downcast_ref::<MemTable>()?;
    if name == "rules" {
        return Some(Sendable::Rules(memory));
    }
    let table = tables.iter().find(|t| t.name == name)?;
    Some(Sendable::Lookup(table, memory))
}

/// The rows of an in-memory table, in Arrow IPC stream format.
fn ipc_of(table: &MemTable) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut writer = StreamWriter::try_new(&mut bytes, &table.schema())?;
    for partition in &table.batches {
        let batches = partition
            .try_read()
            .map_err(|_| DataFusionError::Internal("the rules table is being written to".into()))?;
        for batch in batches.iter() {
            writer.write(batch)?;
        }
    }
    writer.finish()?;
    drop(writer);
    Ok(bytes)
}

/// The rows a client's in-memory table holds.
fn rows_of(table: &MemTable) -> Result<usize> {
    table.batches.iter().try_fold(0, |rows, partition| {
        let batches = partition
            .try_read()
            .map_err(|_| DataFusionError::Internal("a lookup table is being written to".into()))?;
        Ok(rows + batches.iter().map(|b| b.num_rows()).sum::<usize>())
    })
}

fn unsendable(table: &str) -> String {
    format!(
        "table {table} cannot run on a cluster: only the store's metrics, the lookups, rules, \
         external tables and views over them can"
    )
}

/// The client's check, before a plan leaves for the scheduler, that the codec can send every
/// table it scans: a clear planning error instead of a failed serialization.
#[derive(Debug)]
pub(super) struct SendableTables {
    /// The baseline tables of the client's rules.
    pub(super) tables: Vec<Arc<Table>>,
}

impl SendableTables {
    fn check(&self, plan: &LogicalPlan) -> Result<()> {
        plan.apply_with_subqueries(|node| {
            let LogicalPlan::TableScan(scan) = node else {
                return Ok(TreeNodeRecursion::Continue);
            };
            let Ok(table) = source_as_provider(&scan.source) else {
                return Ok(TreeNodeRecursion::Continue);
            };
            let name = scan.table_name.table();
            if let Some(view) = table.downcast_ref::<ViewTable>() {
                self.check(view.logical_plan())?;
            } else if !(table.is::<ListingTable>()
                || table.is::<CteWorkTable>()
                || table.is::<EmptyTable>()
                || sendable(name, &table, &self.tables).is_some())
            {
                return Err(DataFusionError::Plan(unsendable(name)));
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map(|_| ())
    }
}

impl AnalyzerRule for SendableTables {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        self.check(&plan)?;
        Ok(plan)
    }

    fn name(&self) -> &str {
        "the tables a cluster can read"
    }
}
