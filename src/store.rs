//! The hour-partitioned Parquet store: `<root>/dt=YYYY-MM-DD/hour=HH/<any>.parquet`, UTC.
//! Finds the exact hour prefixes of a window, checks each file's schema, and serves the rows.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectMeta, ObjectStore};
use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::time::Window;

/// The metric the rules read; other metrics may share the store.
pub const NETWORK_IO_METRIC: &str = "k8s.pod.network.io";

/// How many object-store requests run at once while listing hours and reading footers.
const CONCURRENT_REQUESTS: usize = 16;

/// The store's columns as iodrift reads them: strings dictionary-encoded, any of them nullable.
pub fn schema() -> SchemaRef {
    let text = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let column = |name: &str, data_type: &DataType| Field::new(name, data_type.clone(), true);
    Arc::new(Schema::new(vec![
        column(
            "time",
            &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        ),
        column("metric", &text),
        column("cluster", &text),
        column("namespace", &text),
        column("node", &text),
        column("pod", &text),
        column("direction", &text),
        column("interface", &text),
        column("value", &DataType::Float64),
    ]))
}

/// An hour-partitioned store on an object store (a local directory for now).
#[derive(Debug, Clone)]
pub struct Store {
    location: String,
    root: Path,
    objects: Arc<dyn ObjectStore>,
}

/// The files a window reads, and the hours of the window that hold none.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub files: Vec<ObjectMeta>,
    pub hours: Vec<DateTime<Utc>>,
    pub empty_hours: Vec<DateTime<Utc>>,
}

impl Store {
    /// Opens a store rooted at a local directory, which must exist.
    pub fn open(location: &str) -> Result<Store> {
        let fail = |reason: String| Error::Store {
            location: location.to_string(),
            reason,
        };
        let path = std::path::Path::new(location);
        let metadata = std::fs::metadata(path).map_err(|e| fail(format!("cannot open: {e}")))?;
        if !metadata.is_dir() {
            return Err(fail("is not a directory".into()));
        }
        let absolute =
            std::fs::canonicalize(path).map_err(|e| fail(format!("cannot resolve: {e}")))?;
        let root = Path::from_absolute_path(&absolute).map_err(|e| fail(e.to_string()))?;
        Ok(Store {
            location: location.to_string(),
            root,
            objects: Arc::new(LocalFileSystem::new()),
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// The prefix of one hour's partition: `<root>/dt=YYYY-MM-DD/hour=HH`.
    pub fn hour_prefix(&self, hour: DateTime<Utc>) -> Path {
        self.root
            .clone()
            .join(format!("dt={}", hour.format("%Y-%m-%d")))
            .join(format!("hour={}", hour.format("%H")))
    }

    /// A path in the form a user recognises: the local file path.
    pub fn display(&self, path: &Path) -> String {
        format!("/{path}")
    }

    fn url(&self, path: &Path) -> Result<ListingTableUrl> {
        ListingTableUrl::parse(format!("file:///{path}")).map_err(|e| Error::StoreFile {
            path: self.display(path),
            reason: e.to_string(),
        })
    }

    /// Lists the exact hour partitions of `window`, never anything else of the store.
    pub async fn scan_window(&self, window: &Window) -> Result<Scan> {
        self.scan_hours(window.hours().collect()).await
    }

    /// Lists every hour partition of the store, checking every partition name.
    pub async fn scan_all(&self) -> Result<Scan> {
        let mut hours = Vec::new();
        for day in self.child_partitions(&self.root).await? {
            let date = parse_partition(&day, "dt", |v| {
                NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()
            })
            .ok_or_else(|| self.malformed(&day, "expected dt=YYYY-MM-DD"))?;
            for hour_dir in self.child_partitions(&day).await? {
                let hour = parse_partition(&hour_dir, "hour", |v| {
                    (v.len() == 2)
                        .then(|| v.parse::<u32>().ok())
                        .flatten()
                        .filter(|h| *h < 24)
                })
                .ok_or_else(|| self.malformed(&hour_dir, "expected hour=HH, 00 to 23"))?;
                let start = date.and_hms_opt(hour, 0, 0).expect("valid hour");
                hours.push(Utc.from_utc_datetime(&start));
            }
        }
        self.scan_hours(hours).await
    }

    /// Whether the store holds no partition at all.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.child_partitions(&self.root).await?.is_empty())
    }

    fn malformed(&self, path: &Path, expected: &str) -> Error {
        Error::Store {
            location: self.location.clone(),
            reason: format!("malformed partition {}: {expected}", self.display(path)),
        }
    }

    /// Sub-directories of `prefix`, except hidden ones (`.x`, `_x`) as Hive skips them.
    async fn child_partitions(&self, prefix: &Path) -> Result<Vec<Path>> {
        let listing = self
            .objects
            .list_with_delimiter(Some(prefix))
            .await
            .map_err(|e| self.store_error(prefix, e))?;
        let mut children: Vec<Path> = listing
            .common_prefixes
            .into_iter()
            .filter(|p| !is_hidden(p))
            .collect();
        children.sort();
        Ok(children)
    }

    fn store_error(&self, path: &Path, error: impl std::fmt::Display) -> Error {
        Error::Store {
            location: self.location.clone(),
            reason: format!("cannot list {}: {error}", self.display(path)),
        }
    }

    async fn scan_hours(&self, hours: Vec<DateTime<Utc>>) -> Result<Scan> {
        let listed: Vec<(DateTime<Utc>, Vec<ObjectMeta>)> = futures::stream::iter(hours)
            .map(|hour| async move {
                let prefix = self.hour_prefix(hour);
                let listing = self
                    .objects
                    .list_with_delimiter(Some(&prefix))
                    .await
                    .map_err(|e| self.store_error(&prefix, e))?;
                let mut files: Vec<ObjectMeta> = listing
                    .objects
                    .into_iter()
                    .filter(|o| {
                        !is_hidden(&o.location) && o.location.as_ref().ends_with(".parquet")
                    })
                    .collect();
                files.sort_by(|a, b| a.location.cmp(&b.location));
                Ok::<_, Error>((hour, files))
            })
            .buffered(CONCURRENT_REQUESTS)
            .try_collect()
            .await?;
        let mut scan = Scan::default();
        for (hour, files) in listed {
            scan.hours.push(hour);
            if files.is_empty() {
                scan.empty_hours.push(hour);
            }
            scan.files.extend(files);
        }
        Ok(scan)
    }

    /// Reads every file's footer and checks its columns against the store contract, so that a
    /// corrupt or mismatched file is an error that names it before any query runs. Footers land
    /// in `cache`, the session's, so the scan does not read them again.
    pub async fn check_files(
        &self,
        files: &[ObjectMeta],
        cache: Arc<FileMetadataCache>,
    ) -> Result<()> {
        futures::stream::iter(files)
            .map(|file| self.check_file(file, cache.clone()))
            .buffer_unordered(CONCURRENT_REQUESTS)
            .try_collect::<()>()
            .await
    }

    async fn check_file(&self, file: &ObjectMeta, cache: Arc<FileMetadataCache>) -> Result<()> {
        let fail = |reason: String| Error::StoreFile {
            path: self.display(&file.location),
            reason,
        };
        let schema = DFParquetMetadata::new(self.objects.as_ref(), file)
            .with_file_metadata_cache(Some(cache))
            .fetch_schema()
            .await
            .map_err(|e| {
                fail(format!(
                    "not a readable Parquet file: {}",
                    e.strip_backtrace()
                ))
            })?;
        check_schema(&schema).map_err(fail)
    }

    /// The rows of `files` as a table with the store's [`schema`].
    pub fn table(&self, files: &[ObjectMeta]) -> Result<Arc<dyn TableProvider>> {
        let schema = schema();
        if files.is_empty() {
            let empty = MemTable::try_new(schema, vec![vec![]])
                .map_err(Error::query("empty store table"))?;
            return Ok(Arc::new(empty));
        }
        let urls = files
            .iter()
            .map(|file| self.url(&file.location))
            .collect::<Result<Vec<_>>>()?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(schema);
        let table = ListingTable::try_new(config).map_err(Error::query("store table"))?;
        Ok(Arc::new(table))
    }
}

fn is_hidden(path: &Path) -> bool {
    path.filename()
        .is_some_and(|name| name.starts_with('.') || name.starts_with('_'))
}

fn parse_partition<T>(path: &Path, key: &str, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
    let name = path.filename()?;
    let value = name.strip_prefix(key)?.strip_prefix('=')?;
    parse(value)
}

/// Checks a file's Arrow schema against the store contract; other columns may be present.
fn check_schema(file: &Schema) -> std::result::Result<(), String> {
    for expected in schema().fields() {
        let Ok(found) = file.field_with_name(expected.name()) else {
            return Err(format!("missing column {:?}", expected.name()));
        };
        let ok = match (expected.name().as_str(), found.data_type()) {
            ("time", DataType::Timestamp(TimeUnit::Millisecond, Some(_))) => true,
            ("value", DataType::Float64) => true,
            ("time" | "value", _) => false,
            (_, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => true,
            (_, DataType::Dictionary(_, value)) => {
                matches!(
                    **value,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                )
            }
            _ => false,
        };
        if !ok {
            return Err(format!(
                "column {:?} is {}, the store contract wants {}",
                expected.name(),
                found.data_type(),
                match expected.name().as_str() {
                    "time" => "Timestamp(ms, UTC)",
                    "value" => "Float64",
                    _ => "a string",
                }
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_schema_passes_and_mismatches_are_named() {
        assert_eq!(check_schema(&schema()), Ok(()));
        let plain = Schema::new(
            schema()
                .fields()
                .iter()
                .map(|f| match f.data_type() {
                    DataType::Dictionary(_, _) => Field::new(f.name(), DataType::Utf8View, true),
                    _ => f.as_ref().clone(),
                })
                .collect::<Vec<_>>(),
        );
        assert_eq!(check_schema(&plain), Ok(()));
        let mut fields: Vec<Field> = schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields[0] = Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            true,
        );
        let err = check_schema(&Schema::new(fields.clone())).unwrap_err();
        assert!(err.contains("\"time\""), "{err}");
        fields.remove(0);
        assert_eq!(
            check_schema(&Schema::new(fields)),
            Err("missing column \"time\"".into())
        );
    }
}
