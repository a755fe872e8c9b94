//! Hourly rollups as files: each closed hour's rollup per rule (count, mean and M2 of both
//! measures, rows, last bucket) under `<store>/_rollups/`, fingerprinted by the hour's files and
//! by what computed it, and merged into a lookup with Chan et al.'s parallel update.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::lookup::{Baseline, lookup_schema};
use crate::rules::Rule;
use crate::store::{HourPartition, Store, partition_path};

/// Where rollups live, beside the partitions (hidden from scans).
pub const ROLLUP_DIR: &str = "_rollups";
/// The footer key of a rollup file: the hour's files it was computed from.
const SOURCE_KEY: &str = "iodrift.rollup.source";
/// The footer key of a rollup file: what computed it (see [`computed_by`]).
const COMPUTED_BY_KEY: &str = "iodrift.rollup.computed_by";
/// The rollup file's layout; change it with [`rollup_schema`] or the meaning of a column.
const ROLLUP_FORMAT: &str = "2";

/// Count, mean and M2 (sum of squared deviations) of one measure's values.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub count: u64,
    pub mean: f64,
    pub m2: f64,
}

impl Moments {
    /// Chan et al.'s parallel update: the moments of both groups' values together.
    pub fn merge(&mut self, other: &Moments) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let (a, b) = (self.count as f64, other.count as f64);
        let n = a + b;
        let delta = other.mean - self.mean;
        self.mean += delta * (b / n);
        self.m2 += other.m2 + delta * delta * (a * b / n);
        self.count += other.count;
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then_some(self.mean)
    }

    /// The sample (n − 1) standard deviation; `None` below two values.
    pub fn sample_stdev(&self) -> Option<f64> {
        (self.count > 1).then(|| (self.m2.max(0.0) / (self.count - 1) as f64).sqrt())
    }
}

/// One key's statistics over some hours.
#[derive(Debug, Clone, Default)]
struct KeyRollup {
    rows: i64,
    last_seen: Option<i64>,
    a: Moments,
    b: Moments,
}

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

/// What computes `rule`'s rollups: the rollup layout, the SQL of every stage, and the source of
/// the functions (the service-name rewrite, the exact sums). A rollup whose footer records
/// another value is recomputed.
pub fn computed_by(rule: &Rule) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for part in [
        ROLLUP_FORMAT,
        &format!("{:?}", rollup_schema()),
        iodrift_udfs::SOURCE_DIGEST,
        rule.name,
        rule.rollup_view,
    ] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    for (name, sql) in crate::rules::SQL {
        digest.update(name.as_bytes());
        digest.update([0]);
        digest.update(sql.as_bytes());
        digest.update([0]);
    }
    digest.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The schema of a rollup file and of the rollup views' rows.
pub fn rollup_schema() -> SchemaRef {
    let column = |name: &str, data_type: DataType| Field::new(name, data_type, true);
    Arc::new(Schema::new(vec![
        column("hour", DataType::Int64),
        column("key", DataType::Utf8),
        column("rows", DataType::Int64),
        column("last_seen", DataType::Int64),
        column("n_a", DataType::Int64),
        column("mean_a", DataType::Float64),
        column("m2_a", DataType::Float64),
        column("n_b", DataType::Int64),
        column("mean_b", DataType::Float64),
        column("m2_b", DataType::Float64),
    ]))
}

/// The rollup file of `rule` for the partition of `hour`, relative to the store root.
fn rollup_file(rule: &Rule, hour: DateTime<Utc>) -> String {
    format!(
        "{ROLLUP_DIR}/{}/{}.parquet",
        rule.lookup,
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

/// The rows of `batch` (a rollup view's) of the hour starting at `hour_start` (epoch seconds).
pub fn rows_of_hour(batch: &RecordBatch, hour_start: i64) -> Result<RecordBatch> {
    let hours = batch.column(0).as_primitive::<Int64Type>();
    let mask = eq(hours, &Int64Array::new_scalar(hour_start))
        .and_then(|mask| filter_record_batch(batch, &mask))
        .map_err(|e| Error::query("split rollups by hour")(e.into()))?;
    Ok(mask)
}

/// The stored rollup of `rule` for `hour`, if it was computed from `source` by `computed_by`
/// (today's [`computed_by`] of the rule). A rollup is a cache: one that cannot be read (or a
/// store that cannot be asked) is recomputed, with a warning naming it.
pub async fn read_rollup(
    store: &Store,
    rule: &Rule,
    hour: DateTime<Utc>,
    source: &str,
    computed_by: &str,
) -> std::result::Result<RecordBatch, Stale> {
    let name = rollup_file(rule, hour);
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
        return Err(Stale::LogicChanged);
    }
    if footer(SOURCE_KEY).as_deref() != Some(source) {
        return Err(Stale::FilesChanged);
    }
    let schema = rollup_schema();
    if builder.schema().fields() != schema.fields() {
        return Err(unreadable(&"its columns are not the rollup layout"));
    }
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

/// Stores `batch` as the rollup of `rule` for `hour`, computed from `source` by `computed_by`.
pub async fn write_rollup(
    store: &Store,
    rule: &Rule,
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
        .write(&rollup_file(rule, hour), |file| {
            let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(properties))
                .map_err(std::io::Error::other)?;
            writer.write(batch).map_err(std::io::Error::other)?;
            writer.close().map_err(std::io::Error::other)?;
            Ok(())
        })
        .await
}

/// Merges hourly rollups (in hour order) into the rule's lookup, keys in order.
pub fn merge<'a>(rule: Rule, hours: impl Iterator<Item = &'a RecordBatch>) -> Result<Baseline> {
    let mut keys: HashMap<String, KeyRollup> = HashMap::new();
    for batch in hours {
        let key = batch.column(1).as_string::<i32>();
        let int = |i: usize| batch.column(i).as_primitive::<Int64Type>();
        let float = |i: usize| batch.column(i).as_primitive::<Float64Type>();
        let (rows, last_seen) = (int(2), int(3));
        let moments = |n: usize, row: usize| Moments {
            count: int(n).value(row).max(0) as u64,
            mean: float(n + 1).value(row),
            m2: float(n + 2).value(row),
        };
        for row in 0..batch.num_rows() {
            if key.is_null(row) {
                continue;
            }
            let entry = keys.entry(key.value(row).to_string()).or_default();
            entry.rows += rows.value(row);
            if last_seen.is_valid(row) {
                entry.last_seen = entry.last_seen.max(Some(last_seen.value(row)));
            }
            entry.a.merge(&moments(4, row));
            entry.b.merge(&moments(7, row));
        }
    }
    let mut sorted: Vec<(String, KeyRollup)> = keys.into_iter().collect();
    sorted.sort_by(|x, y| x.0.cmp(&y.0));
    let stat = |f: &dyn Fn(&KeyRollup) -> Option<f64>| -> ArrayRef {
        Arc::new(sorted.iter().map(|(_, r)| f(r)).collect::<Float64Array>())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(sorted.iter().map(|(k, _)| k))),
        stat(&|r| r.a.mean()),
        stat(&|r| r.b.mean()),
        stat(&|r| r.a.sample_stdev()),
        stat(&|r| r.b.sample_stdev()),
        Arc::new(Int64Array::from_iter_values(
            sorted.iter().map(|(_, r)| r.rows),
        )),
        Arc::new(
            sorted
                .iter()
                .map(|(_, r)| r.last_seen)
                .collect::<Int64Array>(),
        ),
    ];
    let batch = RecordBatch::try_new(lookup_schema(&rule), columns)
        .map_err(|e| Error::query(format!("merge rollups of {}", rule.name))(e.into()))?;
    Ok(Baseline { rule, batch })
}

/// Whether the hour starting at `hour` has ended by `now`: only then is its rollup stored.
pub fn is_closed(hour: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    hour + chrono::Duration::hours(1) <= now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(values: &[f64]) -> Moments {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        Moments {
            count: values.len() as u64,
            mean,
            m2: values.iter().map(|x| (x - mean).powi(2)).sum(),
        }
    }

    #[test]
    fn chan_merge_equals_the_moments_of_all_values() {
        let all = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0, 1e6 + 3.0];
        for split in 0..=all.len() {
            let mut merged = moments(&all[..split]);
            if split == 0 {
                merged = Moments::default();
            }
            let rest = if split == all.len() {
                Moments::default()
            } else {
                moments(&all[split..])
            };
            merged.merge(&rest);
            let expected = moments(&all);
            assert_eq!(merged.count, expected.count);
            assert!((merged.mean - expected.mean).abs() <= 1e-12 * expected.mean.abs());
            assert!((merged.m2 - expected.m2).abs() <= 1e-12 * expected.m2.abs());
        }
        assert_eq!(Moments::default().mean(), None);
        assert_eq!(moments(&[3.0]).sample_stdev(), None);
        assert_eq!(moments(&[3.0, 5.0]).sample_stdev(), Some(2f64.sqrt()));
    }
}
