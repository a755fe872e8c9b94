//! Which files of an hour partition are live: the one rule every reader and writer of the store
//! (scan, compaction, rollup fingerprints, ingest) goes through.
//!
//! A file is live unless a compacted file of its hour names it under [`REPLACES_KEY`] (a
//! compaction that died before deleting it) or it is `ingest-<batch>.parquet` of a batch that
//! the ingest state does not list (an ingest that died before its commit point). So a crash
//! anywhere leaves readers either the old files or the new ones, never both, never part.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::object_store::ObjectMeta;
use datafusion::object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::location::Location;

/// The footer key under which a compacted file lists (as a JSON array) the names of the files
/// of its partition that it replaces; readers ignore those until compaction deletes them.
pub const REPLACES_KEY: &str = "iodrift.replaces";

/// Ingest's state, relative to the store root; its write is an ingest batch's commit point.
pub const INGEST_STATE: &str = "_ingest/state.json";

/// The prefix of compacted files' names: `compacted-<hash>.parquet`.
pub const COMPACTED_PREFIX: &str = "compacted-";

/// One input file an ingest batch committed, as the ingest state records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestedInput {
    pub input: String,
    pub batch: String,
    pub at: DateTime<Utc>,
}

/// The name of an ingest batch's file in each hour it touches.
pub fn ingest_file_name(batch: &str) -> String {
    format!("ingest-{batch}.parquet")
}

/// The batch of an ingest file's name, `ingest-<batch>.parquet`.
pub fn ingest_batch(name: &str) -> Option<&str> {
    name.strip_prefix("ingest-")?.strip_suffix(".parquet")
}

/// The files of one hour partition, sorted by what readers make of them; each list in name
/// order.
#[derive(Debug, Clone, Default)]
pub struct HourFiles {
    /// The files readers see.
    pub live: Vec<ObjectMeta>,
    /// Files a compacted file of the hour replaces: what an interrupted compaction left; the
    /// next compaction deletes them.
    pub replaced: Vec<ObjectMeta>,
    /// Files of ingest batches the ingest state never committed: rewritten when the same
    /// inputs are ingested again.
    pub uncommitted: Vec<ObjectMeta>,
}

/// The ingest batches the store's ingest state has committed, read once and only when some
/// listed file is an ingest file.
#[derive(Debug, Default)]
pub struct Commits {
    batches: Option<HashSet<String>>,
}

impl Commits {
    /// Reads the committed batches of the store at `store` if `files` hold an ingest file.
    pub async fn for_files<'a>(
        store: &Location,
        mut files: impl Iterator<Item = &'a ObjectMeta>,
    ) -> Result<Commits> {
        if !files.any(|f| f.location.filename().and_then(ingest_batch).is_some()) {
            return Ok(Commits::default());
        }
        Ok(Commits {
            batches: Some(committed_batches(store).await?),
        })
    }

    fn committed(&self, batch: &str) -> bool {
        self.batches.as_ref().is_some_and(|b| b.contains(batch))
    }
}

/// The batches `<store>/_ingest/state.json` lists; none when there is no state.
pub async fn committed_batches(store: &Location) -> Result<HashSet<String>> {
    #[derive(Deserialize)]
    struct Committed {
        inputs: BTreeMap<String, IngestedInput>,
    }
    let Some(bytes) = store.read(INGEST_STATE).await? else {
        return Ok(HashSet::new());
    };
    let state: Committed = serde_json::from_slice(&bytes).map_err(|e| Error::Store {
        location: store.as_str().to_string(),
        reason: format!(
            "{}: unreadable ingest state: {e}",
            store.display_at(INGEST_STATE)
        ),
    })?;
    Ok(state.inputs.into_values().map(|i| i.batch).collect())
}

/// Whether a store object is a data file of a partition: `.parquet`, not hidden.
pub fn is_data_file(path: &Path) -> bool {
    path.filename()
        .is_some_and(|n| n.ends_with(".parquet") && !n.starts_with(['.', '_']))
}

/// Sorts the data files of one hour partition of the store at `store` (any order) into live,
/// replaced and uncommitted ones. Where the hour holds more than one file, reads the footer of
/// every compacted file; one that cannot be read is an error naming it, since what it replaces
/// is then unknown.
pub async fn hour_files(
    store: &Location,
    mut files: Vec<ObjectMeta>,
    commits: &Commits,
) -> Result<HourFiles> {
    files.sort_by(|a, b| a.location.cmp(&b.location));
    let mut replaced_names = HashSet::new();
    // A file never replaces itself: an hour of one file needs no footer read.
    for file in files.iter().filter(|_| files.len() > 1) {
        let name = file.location.filename().unwrap_or("");
        if !name.starts_with(COMPACTED_PREFIX) {
            continue;
        }
        replaced_names.extend(replaces(store, file).await?);
    }
    let mut sorted = HourFiles::default();
    for file in files {
        let name = file.location.filename().unwrap_or("");
        if replaced_names.contains(name) {
            sorted.replaced.push(file);
        } else if ingest_batch(name).is_some_and(|batch| !commits.committed(batch)) {
            sorted.uncommitted.push(file);
        } else {
            sorted.live.push(file);
        }
    }
    Ok(sorted)
}

/// The names a compacted file's footer says it replaces.
async fn replaces(store: &Location, file: &ObjectMeta) -> Result<Vec<String>> {
    let path = store.display(&file.location);
    let metadata = DFParquetMetadata::new(store.objects().as_ref(), file)
        .fetch_metadata()
        .await
        .map_err(|e| Error::StoreFile {
            path: path.clone(),
            reason: format!("not a readable Parquet file: {}", e.strip_backtrace()),
        })?;
    let Some(names) = metadata
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == REPLACES_KEY))
        .and_then(|kv| kv.value.as_deref())
    else {
        return Ok(Vec::new());
    };
    serde_json::from_str(names).map_err(|e| Error::StoreFile {
        path,
        reason: format!("bad {REPLACES_KEY} footer entry: {e}"),
    })
}

/// The hour partitions of `store` and their data files, from one listing of the whole store;
/// a partition name that is not `dt=YYYY-MM-DD/hour=HH` is skipped.
pub async fn list_partitions(store: &Location) -> Result<BTreeMap<DateTime<Utc>, Vec<ObjectMeta>>> {
    let mut found: BTreeMap<DateTime<Utc>, Vec<ObjectMeta>> = BTreeMap::new();
    for object in store.list().await? {
        let Some(parts) = object.location.prefix_match(store.root()) else {
            continue;
        };
        let parts: Vec<String> = parts.map(|p| p.as_ref().to_string()).collect();
        let [day, hour, _] = parts.as_slice() else {
            continue;
        };
        let (Some(start), true) = (
            super::parse_hour_partition(day, hour),
            is_data_file(&object.location),
        ) else {
            continue;
        };
        found.entry(start).or_default().push(object);
    }
    Ok(found)
}

/// The data files directly under the partition of `hour` (none when it does not exist).
pub async fn list_hour(store: &Location, hour: DateTime<Utc>) -> Result<Vec<ObjectMeta>> {
    let prefix = store.path(&super::partition_path(hour));
    let listing = store
        .objects()
        .list_with_delimiter(Some(&prefix))
        .await
        .map_err(|e| Error::Store {
            location: store.as_str().to_string(),
            reason: format!("cannot list {}: {e}", store.display(&prefix)),
        })?;
    Ok(listing
        .objects
        .into_iter()
        .filter(|o| is_data_file(&o.location))
        .collect())
}
