//! `iodrift compact`: the files of each closed hour merged into one sorted file. The new file
//! names the files it replaces in its footer, so readers ignore them until they are deleted.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{
    SortColumn, SortOptions, concat_batches, lexsort_to_indices, take_record_batch,
};
use datafusion::object_store::ObjectMeta;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::metadata::KeyValue;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::generate::HOUR_MS;
use crate::location::Location;
use crate::store::{self, REPLACES_KEY};

/// What compaction did.
#[derive(Debug, Default)]
pub struct Summary {
    pub hours: usize,
    pub files_merged: usize,
    pub rows: usize,
    /// Hours left alone because they hold files of a batch not yet committed.
    pub skipped_hours: usize,
}

/// Merges the files of every hour partition of `store` that ended at or before `before`
/// and holds more than one file, keeping files of uncommitted ingest batches out.
pub async fn compact(
    store: &Location,
    before: DateTime<Utc>,
    committed: &dyn Fn(&str) -> bool,
) -> Result<Summary> {
    let mut summary = Summary::default();
    for (hour, files) in partitions(store).await? {
        if hour.timestamp_millis() + HOUR_MS > before.timestamp_millis() {
            continue;
        }
        if files.len() < 2 {
            continue;
        }
        let uncommitted = files.iter().any(|f| {
            file_name(f)
                .strip_prefix("ingest-")
                .and_then(|n| n.strip_suffix(".parquet"))
                .is_some_and(|batch| !committed(batch))
        });
        if uncommitted {
            summary.skipped_hours += 1;
            continue;
        }
        summary.rows += merge(store, hour, &files).await?;
        summary.hours += 1;
        summary.files_merged += files.len();
    }
    Ok(summary)
}

/// Writes the rows of `files` (the partition of `hour`) sorted as `compacted-<hash>.parquet`,
/// then deletes `files`.
async fn merge(store: &Location, hour: DateTime<Utc>, files: &[ObjectMeta]) -> Result<usize> {
    let mut batches = Vec::new();
    let mut digest = Sha256::new();
    for file in files {
        let fail = |e: &dyn std::fmt::Display| Error::StoreFile {
            path: store.display(&file.location),
            reason: format!("cannot compact: {e}"),
        };
        let bytes = store
            .get(&file.location)
            .await?
            .ok_or_else(|| fail(&"vanished while compacting"))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| fail(&e))?
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|e| fail(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| fail(&e))?;
            batches.push(batch.with_schema(store::schema()).map_err(|e| fail(&e))?);
        }
        digest.update(file_name(file).as_bytes());
        digest.update(file.size.to_le_bytes());
    }
    let partition = store.display_at(&store::partition_path(hour));
    let all = concat_batches(&store::schema(), &batches).map_err(|e| Error::StoreFile {
        path: partition.clone(),
        reason: format!("cannot compact: {e}"),
    })?;
    let sorted = sort(&all).map_err(|e| Error::StoreFile {
        path: partition,
        reason: format!("cannot sort for compaction: {e}"),
    })?;
    let hash: String = digest.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let replaced: Vec<String> = files.iter().map(|f| file_name(f).to_string()).collect();
    let metadata = KeyValue::new(
        REPLACES_KEY.to_string(),
        serde_json::to_string(&replaced).expect("names serialise"),
    );
    let properties = store::writer_properties()
        .into_builder()
        .set_key_value_metadata(Some(vec![metadata]))
        .build();
    let name = format!("compacted-{hash}.parquet");
    store::write_partition_file(store, hour.timestamp_millis(), &name, &sorted, properties).await?;
    for file in files.iter().filter(|f| file_name(f) != name) {
        store.delete(&file.location).await?;
    }
    Ok(sorted.num_rows())
}

/// Store order: cluster, pod, direction, time (nulls last), then the other labels and value.
fn sort(batch: &RecordBatch) -> datafusion::arrow::error::Result<RecordBatch> {
    let columns: Vec<SortColumn> = store::SORT_ORDER
        .iter()
        .chain(&["namespace", "node", "interface", "metric", "value"])
        .map(|name| SortColumn {
            values: batch.column_by_name(name).expect("store column").clone(),
            options: Some(SortOptions {
                descending: false,
                nulls_first: false,
            }),
        })
        .collect();
    let indices = lexsort_to_indices(&columns, None)?;
    take_record_batch(batch, &indices)
}

/// The hour partitions of `store` and their Parquet files (hidden ones left out), in time
/// and name order.
async fn partitions(store: &Location) -> Result<BTreeMap<DateTime<Utc>, Vec<ObjectMeta>>> {
    let mut found: BTreeMap<DateTime<Utc>, Vec<ObjectMeta>> = BTreeMap::new();
    for object in store.list().await? {
        let Some(parts) = object.location.prefix_match(store.root()) else {
            continue;
        };
        let parts: Vec<String> = parts.map(|p| p.as_ref().to_string()).collect();
        let [day, hour, name] = parts.as_slice() else {
            continue;
        };
        let Some(date) = day
            .strip_prefix("dt=")
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        else {
            continue;
        };
        let Some(start) = hour
            .strip_prefix("hour=")
            .and_then(|h| h.parse::<u32>().ok())
            .and_then(|h| date.and_hms_opt(h, 0, 0))
        else {
            continue;
        };
        if name.ends_with(".parquet") && !name.starts_with(['.', '_']) {
            found
                .entry(Utc.from_utc_datetime(&start))
                .or_default()
                .push(object);
        }
    }
    Ok(found)
}

fn file_name(file: &ObjectMeta) -> &str {
    file.location.filename().unwrap_or("")
}
