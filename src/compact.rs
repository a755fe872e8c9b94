//! `iodrift compact`: the files of each closed hour merged into one sorted file. The new file
//! names the files it replaces in its footer, so readers ignore them until they are deleted.

use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{
    SortColumn, SortOptions, concat_batches, lexsort_to_indices, take_record_batch,
};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::metadata::KeyValue;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::generate::HOUR_MS;
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

/// Merges the files of every hour partition under `root` that ended at or before `before`
/// and holds more than one file, keeping files of uncommitted ingest batches out.
pub fn compact(
    root: &Path,
    before: DateTime<Utc>,
    committed: &dyn Fn(&str) -> bool,
) -> Result<Summary> {
    let mut summary = Summary::default();
    for (hour, dir) in partitions(root)? {
        if hour.timestamp_millis() + HOUR_MS > before.timestamp_millis() {
            continue;
        }
        let files = parquet_files(&dir)?;
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
        summary.rows += merge(root, hour, &dir, &files)?;
        summary.hours += 1;
        summary.files_merged += files.len();
    }
    Ok(summary)
}

/// Writes the rows of `files` (the partition `dir` of `hour`) sorted as
/// `compacted-<hash>.parquet`, then deletes `files`.
fn merge(root: &Path, hour: DateTime<Utc>, dir: &Path, files: &[PathBuf]) -> Result<usize> {
    let mut batches = Vec::new();
    let mut digest = Sha256::new();
    for path in files {
        let fail = |e: &dyn std::fmt::Display| Error::StoreFile {
            path: path.display().to_string(),
            reason: format!("cannot compact: {e}"),
        };
        let file = File::open(path).map_err(Error::io(path))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| fail(&e))?
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|e| fail(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| fail(&e))?;
            batches.push(batch.with_schema(store::schema()).map_err(|e| fail(&e))?);
        }
        digest.update(file_name(path).as_bytes());
        digest.update(
            std::fs::metadata(path)
                .map_err(Error::io(path))?
                .len()
                .to_le_bytes(),
        );
    }
    let all = concat_batches(&store::schema(), &batches).map_err(|e| Error::StoreFile {
        path: dir.display().to_string(),
        reason: format!("cannot compact: {e}"),
    })?;
    let sorted = sort(&all).map_err(|e| Error::StoreFile {
        path: dir.display().to_string(),
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
    let target = store::write_partition_file(
        root,
        hour.timestamp_millis(),
        &format!("compacted-{hash}.parquet"),
        &sorted,
        properties,
    )?;
    for path in files.iter().filter(|f| **f != target) {
        std::fs::remove_file(path).map_err(Error::io(path))?;
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

/// The hour partitions under `root`, in time order.
fn partitions(root: &Path) -> Result<Vec<(DateTime<Utc>, PathBuf)>> {
    let mut found = Vec::new();
    for day in sorted_dirs(root)? {
        let Some(date) = file_name(&day)
            .strip_prefix("dt=")
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        else {
            continue;
        };
        for hour_dir in sorted_dirs(&day)? {
            let Some(hour) = file_name(&hour_dir)
                .strip_prefix("hour=")
                .and_then(|h| h.parse::<u32>().ok())
                .and_then(|h| date.and_hms_opt(h, 0, 0))
            else {
                continue;
            };
            found.push((Utc.from_utc_datetime(&hour), hour_dir));
        }
    }
    Ok(found)
}

fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = file_name(p);
            name.ends_with(".parquet") && !name.starts_with(['.', '_'])
        })
        .collect();
    files.sort();
    Ok(files)
}

fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}
