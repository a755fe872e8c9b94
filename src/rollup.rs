//! Hourly rollups as files: each closed hour's rollup of a baseline table (the rows its rule's
//! rollup view gives for the hour) under `<store>/_rollups/<table>/`, fingerprinted by the
//! hour's files and by what computed it. Merging them is the rule's SQL (`baseline.rs`).

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::rule::{Rule, SHARED_SQL, Table};
use crate::store::{HourPartition, Store, partition_path};

/// Where rollups live, beside the partitions (hidden from scans).
pub const ROLLUP_DIR: &str = "_rollups";
/// The footer key of a rollup file: the hour's files it was computed from.
const SOURCE_KEY: &str = "iodrift.rollup.source";
/// The footer key of a rollup file: what computed it (see [`computed_by`]).
const COMPUTED_BY_KEY: &str = "iodrift.rollup.computed_by";
/// The rollup file's layout; change it with the meaning of its footer or of its columns.
const ROLLUP_FORMAT: &str = "3";

/// What an incremental baseline read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Hours whose stored rollups were current.
    pub reused: usize,
    /// Hours that had no rollup yet.
    pub new: usize,
    /// Hours whose files changed since their rollup (late ingest, compaction).
    pub files_changed: usize,
    /// Hours whose rollup other logic computed (a rule's SQL, the functions or the rollup
    /// layout changed since: an upgrade).
    pub logic_changed: usize,
    /// Hours whose rollup could not be read.
    pub unreadable: usize,
}

impl Summary {
    /// Hours read from raw rows, for any reason.
    pub fn rebuilt(&self) -> usize {
        self.new + self.files_changed + self.logic_changed + self.unreadable
    }

    /// Counts one hour whose stored rollup was not current, by why.
    pub fn count(&mut self, stale: Stale) {
        match stale {
            Stale::Missing => self.new += 1,
            Stale::FilesChanged => self.files_changed += 1,
            Stale::LogicChanged => self.logic_changed += 1,
            Stale::Unreadable => self.unreadable += 1,
        }
    }

    /// Why hours were read from raw rows, for a person: `12 new, 3 with changed files`.
    pub fn reasons(&self) -> String {
        let reasons: Vec<String> = [
            (self.new, "without a rollup yet"),
            (self.files_changed, "whose files changed"),
            (
                self.logic_changed,
                "computed by another version of the rules or functions",
            ),
            (self.unreadable, "with an unreadable rollup"),
        ]
        .iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, why)| format!("{count} {why}"))
        .collect();
        reasons.join(", ")
    }
}

/// Why an hour's stored rollup cannot be merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    Missing,
    FilesChanged,
    LogicChanged,
    Unreadable,
}

/// What computes `table`'s rollups: the rollup layout, the rule's manifest and SQL, the shared
/// stages, and the source of the functions. A rollup whose footer records another value is
/// recomputed.
pub fn computed_by(rule: &Rule, table: &Table) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    let shared = SHARED_SQL.iter().map(|(_, sql)| *sql);
    for part in [
        ROLLUP_FORMAT,
        iodrift_udfs::SOURCE_DIGEST,
        &rule.digest,
        &table.name,
    ]
    .into_iter()
    .chain(shared)
    {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    digest.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The rollup file of `table` for the partition of `hour`, relative to the store root.
fn rollup_file(table: &Table, hour: DateTime<Utc>) -> String {
    format!(
        "{ROLLUP_DIR}/{}/{}.parquet",
        table.name,
        partition_path(hour)
    )
}

/// What a rollup is computed from: every file of the hour, with its size and version.
pub fn source(partition: &HourPartition) -> String {
    // Live files only: `Store::scan_window` has already sorted the hour (see store/live.rs).
    let files: Vec<String> = partition
        .files
        .iter()
        .map(|f| {
            format!(
                "{}:{}:{}:{}",
                f.meta.location.filename().unwrap_or(""),
                f.meta.size,
                f.meta.last_modified.timestamp_micros(),
                f.meta.e_tag.as_deref().unwrap_or("")
            )
        })
        .collect();
    serde_json::Value::from(files).to_string()
}

/// The rows of `batch` (a rollup view's, `hour` first, in epoch seconds) of the hour starting at
/// `hour_start`.
pub fn rows_of_hour(batch: &RecordBatch, hour_start: i64) -> Result<RecordBatch> {
    let Some(hours) = batch.column(0).as_primitive_opt::<Int64Type>() else {
        return Err(Error::Usage(format!(
            "a rollup's first column must be `hour` as BIGINT epoch seconds, not {}",
            batch.schema().field(0)
        )));
    };
    let mask = eq(hours, &Int64Array::new_scalar(hour_start))
        .and_then(|mask| filter_record_batch(batch, &mask))
        .map_err(|e| Error::query("split rollups by hour")(e.into()))?;
    Ok(mask)
}

/// The stored rollup of `table` for `hour`, if it was computed from `source` by `computed_by`
/// (today's [`computed_by`] of the table). A rollup is a cache: one that cannot be read (or a
/// store that cannot be asked) is recomputed, with a warning naming it.
pub async fn read_rollup(
    store: &Store,
    table: &Table,
    hour: DateTime<Utc>,
    source: &str,
    computed_by: &str,
) -> std::result::Result<RecordBatch, Stale> {
    let name = rollup_file(table, hour);
    let place = store.place();
    let path = place.display_at(&name);
    let unreadable = |e: &dyn std::fmt::Display| {
        tracing::warn!("{path}: unreadable rollup, computed again: {e}");
        Stale::Unreadable
    };
    let bytes = match place.read(&name).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(Stale::Missing),
        Err(e) => return Err(unreadable(&e)),
    };
    // Decoded off the async workers: a merge reads hundreds of hours, and decoding them one
    // after another inside the stream of reads would keep them on one core.
    let (source, computed_by) = (source.to_string(), computed_by.to_string());
    tokio::task::spawn_blocking(move || decode_rollup(bytes, &source, &computed_by))
        .await
        .map_err(|e| unreadable(&e))?
        .map_err(|e| match e {
            Decoded::Stale(stale) => stale,
            Decoded::Unreadable(e) => unreadable(&e),
        })
}

/// Why a rollup file's bytes gave no rows.
enum Decoded {
    Stale(Stale),
    Unreadable(String),
}

/// The rows of a rollup file's `bytes`, if its footer says it was computed from `source` by
/// `computed_by`.
fn decode_rollup(
    bytes: bytes::Bytes,
    source: &str,
    computed_by: &str,
) -> std::result::Result<RecordBatch, Decoded> {
    let unreadable = |e: &dyn std::fmt::Display| Decoded::Unreadable(e.to_string());
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| unreadable(&e))?;
    let footer = |key: &str| {
        builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|kv| kv.key == key))
            .and_then(|kv| kv.value.clone())
    };
    if footer(COMPUTED_BY_KEY).as_deref() != Some(computed_by) {
        return Err(Decoded::Stale(Stale::LogicChanged));
    }
    if footer(SOURCE_KEY).as_deref() != Some(source) {
        return Err(Decoded::Stale(Stale::FilesChanged));
    }
    let schema = builder.schema().clone();
    let batches = builder
        .build()
        .and_then(|reader| {
            reader
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(Into::into)
        })
        .map_err(|e| unreadable(&e))?;
    datafusion::arrow::compute::concat_batches(&schema, &batches).map_err(|e| unreadable(&e))
}

/// Stores `batch` as the rollup of `table` for `hour`, computed from `source` by `computed_by`.
pub async fn write_rollup(
    store: &Store,
    table: &Table,
    hour: DateTime<Utc>,
    source: &str,
    computed_by: &str,
    batch: &RecordBatch,
) -> Result<()> {
    let properties = WriterProperties::builder()
        .set_key_value_metadata(Some(vec![
            KeyValue::new(SOURCE_KEY.to_string(), source.to_string()),
            KeyValue::new(COMPUTED_BY_KEY.to_string(), computed_by.to_string()),
        ]))
        .build();
    store
        .place()
        .write(&rollup_file(table, hour), |file| {
            let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(properties))
                .map_err(std::io::Error::other)?;
            writer.write(batch).map_err(std::io::Error::other)?;
            writer.close().map_err(std::io::Error::other)?;
            Ok(())
        })
        .await
}

/// Whether the hour starting at `hour` has ended by `now`: only then is its rollup stored.
pub fn is_closed(hour: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    hour + chrono::Duration::hours(1) <= now
}
