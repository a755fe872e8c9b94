//! `iodrift compact`: the files of each closed hour merged into one sorted file. The new file
//! names the files it replaces in its footer, so readers ignore them until they are deleted.

use chrono::{DateTime, Utc};
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
use crate::store::{self, COMPACTED_PREFIX, Commits, HourFiles, REPLACES_KEY};

/// What compaction did.
#[derive(Debug, Default)]
pub struct Summary {
    pub hours: usize,
    pub files_merged: usize,
    pub rows: usize,
    /// Files an earlier, interrupted compaction had replaced but not deleted, deleted now.
    pub leftovers_deleted: usize,
    /// Files of ingest batches not yet committed, left alone (they are not live).
    pub uncommitted_files: usize,
}

/// Merges the live files of every hour partition of `store` that ended at or before `before`
/// and holds more than one, and deletes what interrupted compactions left behind. Files of
/// uncommitted ingest batches are neither merged nor deleted.
pub async fn compact(store: &Location, before: DateTime<Utc>) -> Result<Summary> {
    let mut summary = Summary::default();
    let partitions = store::list_partitions(store).await?;
    let commits = Commits::for_files(store, partitions.values().flatten()).await?;
    for (hour, files) in partitions {
        if hour.timestamp_millis() + HOUR_MS > before.timestamp_millis() {
            continue;
        }
        let files = store::hour_files(store, files, &commits).await?;
        summary.uncommitted_files += files.uncommitted.len();
        if files.live.len() > 1 {
            summary.rows += merge(store, hour, &files).await?;
            summary.hours += 1;
            summary.files_merged += files.live.len();
        } else {
            for file in &files.replaced {
                store.delete(&file.location).await?;
            }
        }
        summary.leftovers_deleted += files.replaced.len();
    }
    Ok(summary)
}

/// Writes the rows of the live `files` of the partition of `hour` sorted as
/// `compacted-<hash>.parquet`, naming them and the files they replaced as replaced, then
/// deletes those. A crash at any point leaves readers the old live files or the new one.
async fn merge(store: &Location, hour: DateTime<Utc>, files: &HourFiles) -> Result<usize> {
    let mut batches = Vec::new();
    let mut digest = Sha256::new();
    for file in &files.live {
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
            batches.push(store::conform(&batch).map_err(|e| fail(&e))?);
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
    let name = format!("{COMPACTED_PREFIX}{hash}.parquet");
    // What the live files replaced stays replaced: deleting the live files first must not
    // bring it back.
    let superseded: Vec<&ObjectMeta> = files
        .live
        .iter()
        .chain(&files.replaced)
        .filter(|f| file_name(f) != name)
        .collect();
    let replaced: Vec<&str> = superseded.iter().map(|f| file_name(f)).collect();
    let metadata = KeyValue::new(
        REPLACES_KEY.to_string(),
        serde_json::Value::from(replaced).to_string(),
    );
    let properties = store::writer_properties()
        .into_builder()
        .set_key_value_metadata(Some(vec![metadata]))
        .build();
    store::write_partition_file(store, hour.timestamp_millis(), &name, &sorted, properties).await?;
    for file in superseded {
        store.delete(&file.location).await?;
    }
    Ok(sorted.num_rows())
}

/// Store order: cluster, pod, direction, time (nulls last), then the other labels and value.
fn sort(batch: &RecordBatch) -> datafusion::arrow::error::Result<RecordBatch> {
    let columns = store::SORT_ORDER
        .iter()
        .chain(&[
            "namespace",
            "node",
            "interface",
            store::WORKLOAD,
            "metric",
            "value",
        ])
        .map(|name| {
            let values = batch.column_by_name(name).ok_or_else(|| {
                datafusion::arrow::error::ArrowError::SchemaError(format!("no column {name}"))
            })?;
            Ok(SortColumn {
                values: values.clone(),
                options: Some(SortOptions {
                    descending: false,
                    nulls_first: false,
                }),
            })
        })
        .collect::<datafusion::arrow::error::Result<Vec<_>>>()?;
    let indices = lexsort_to_indices(&columns, None)?;
    take_record_batch(batch, &indices)
}

fn file_name(file: &ObjectMeta) -> &str {
    file.location.filename().unwrap_or("")
}
