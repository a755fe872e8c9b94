//! The hour-partitioned Parquet store: `<root>/dt=YYYY-MM-DD/hour=HH/<any>.parquet`, UTC.
//! Finds the exact hour prefixes of a window, checks each file's schema, and serves the rows.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use datafusion::arrow::array::{RecordBatch, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::common::{ScalarValue, Statistics as ColumnsStatistics};
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::error::DataFusionError;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectMeta, ObjectStore};
use datafusion::parquet::basic::{Compression, Encoding, ZstdLevel};
use datafusion::parquet::file::metadata::{ParquetMetaData, SortingColumn};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::file::statistics::Statistics;
use datafusion::parquet::schema::types::ColumnPath;
use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::location::Location;
use crate::time::Window;

mod live;

pub use live::{
    COMPACTED_PREFIX, Commits, HourFiles, INGEST_STATE, IngestedInput, REPLACES_KEY,
    committed_batches, hour_files, ingest_batch, ingest_file_name, list_hour, list_partitions,
};

/// The metric the rules read; other metrics may share the store.
pub const NETWORK_IO_METRIC: &str = "k8s.pod.network.io";

/// How many object-store requests run at once while listing hours and reading footers.
const CONCURRENT_REQUESTS: usize = 16;

/// The column a store file may lack: the pod's owning workload, where the source names it
/// (OTLP's `k8s.deployment.name` and its kin). A file without it reads as null there.
pub const WORKLOAD: &str = "workload";

/// The store's columns as iodrift reads them: strings dictionary-encoded, any of them nullable;
/// [`WORKLOAD`] is optional in a file.
pub fn schema() -> SchemaRef {
    columns(true)
}

/// The columns every store file has: [`schema`] without [`WORKLOAD`] (what `generate` writes,
/// like a source that does not name owners).
pub fn required_schema() -> SchemaRef {
    columns(false)
}

fn columns(with_workload: bool) -> SchemaRef {
    let text = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let column = |name: &str, data_type: &DataType| Field::new(name, data_type.clone(), true);
    let mut fields = vec![
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
    ];
    if with_workload {
        fields.push(column(WORKLOAD, &text));
    }
    Arc::new(Schema::new(fields))
}

/// `batch` (rows read from a store file) in the columns and types of [`schema`], if its columns
/// meet the store contract ([`check_schema`]): strings of any encoding as dictionaries, a missing
/// [`WORKLOAD`] as nulls, other columns dropped.
pub fn conform(batch: &RecordBatch) -> std::result::Result<RecordBatch, ArrowError> {
    check_schema(&batch.schema()).map_err(ArrowError::SchemaError)?;
    let schema = schema();
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) => cast(column, field.data_type()),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, columns)
}

/// An hour-partitioned store in a local directory or under an S3 prefix.
#[derive(Debug, Clone)]
pub struct Store {
    location: Location,
    root: Path,
    objects: Arc<dyn ObjectStore>,
}

/// The files a window reads, hour by hour, and the hours of the window that hold none.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// The hours that hold files, in time order.
    pub partitions: Vec<HourPartition>,
    pub hours: Vec<DateTime<Utc>>,
    pub empty_hours: Vec<DateTime<Utc>>,
}

/// One `dt=/hour=` partition: its hour and its Parquet files in name order.
#[derive(Debug, Clone)]
pub struct HourPartition {
    pub hour: DateTime<Utc>,
    pub files: Vec<StoreFile>,
}

/// A Parquet file of the store and what its footer says, once [`Store::check_files`] read it.
#[derive(Debug, Clone)]
pub struct StoreFile {
    pub meta: ObjectMeta,
    /// Row count and per-column min/max, in the order of the store's [`schema`].
    pub statistics: Option<Arc<ColumnsStatistics>>,
    /// Whether every row group declares the store's sort order, [`SORT_ORDER`].
    pub sorted: bool,
}

/// The order ingest and `generate` write each file in (Parquet `sorting_columns`).
pub const SORT_ORDER: [&str; 4] = ["cluster", "pod", "direction", "time"];

/// How every store file is written: ZSTD; the sort order declared in `sorting_columns`;
/// dictionaries for the label columns only (time and value are nearly all distinct, and
/// byte-stream-split values compress better); min/max statistics only where a reader uses them
/// (time pruning, the declared order's checks, values).
pub fn writer_properties() -> WriterProperties {
    let schema = schema();
    let sorted_by = |name: &str| SortingColumn {
        column_idx: schema
            .index_of(name)
            .expect("sort column in the store schema") as i32,
        descending: false,
        nulls_first: false,
    };
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid level"),
        ))
        .set_sorting_columns(Some(SORT_ORDER.iter().map(|c| sorted_by(c)).collect()))
        .set_column_dictionary_enabled(ColumnPath::from("time"), false)
        .set_column_dictionary_enabled(ColumnPath::from("value"), false)
        .set_column_encoding(ColumnPath::from("value"), Encoding::BYTE_STREAM_SPLIT);
    for name in ["metric", "namespace", "node", "interface", WORKLOAD] {
        builder =
            builder.set_column_statistics_enabled(ColumnPath::from(name), EnabledStatistics::None);
    }
    builder.build()
}

/// The partition of the hour starting at `hour`, relative to the store root:
/// `dt=YYYY-MM-DD/hour=HH`.
pub fn partition_path(hour: DateTime<Utc>) -> String {
    format!("dt={}/hour={}", hour.format("%Y-%m-%d"), hour.format("%H"))
}

/// Writes `batch` (rows of the hour starting at `hour`, ms, in store order) as `name` in that
/// hour's partition of the store at `store`, whole or not at all, with `properties` (those of
/// [`writer_properties`], plus footer metadata where a writer adds some). Returns the file's
/// path as a user reads it.
pub async fn write_partition_file(
    store: &Location,
    hour: i64,
    name: &str,
    batch: &RecordBatch,
    properties: WriterProperties,
) -> Result<String> {
    let at = Utc
        .timestamp_millis_opt(hour)
        .single()
        .ok_or_else(|| Error::Store {
            location: store.as_str().to_string(),
            reason: format!("hour {hour} ms is out of range"),
        })?;
    let relative = format!("{}/{name}", partition_path(at));
    store
        .write(&relative, |out| {
            crate::store_writer::write_batch(out, batch, properties).map_err(std::io::Error::other)
        })
        .await?;
    Ok(store.display_at(&relative))
}

impl Scan {
    pub fn files(&self) -> impl Iterator<Item = &StoreFile> {
        self.partitions.iter().flat_map(|p| p.files.iter())
    }

    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }
}

impl Store {
    /// Opens the store at `location`; a local one must be an existing directory, an S3 prefix
    /// is checked when it is first listed.
    pub fn open(location: Location) -> Result<Store> {
        if let Some(dir) = location.local() {
            let fail = |reason: String| Error::Store {
                location: location.as_str().to_string(),
                reason,
            };
            let metadata = std::fs::metadata(dir).map_err(|e| fail(format!("cannot open: {e}")))?;
            if !metadata.is_dir() {
                return Err(fail("is not a directory".into()));
            }
        }
        Ok(Store {
            root: location.root().clone(),
            objects: location.objects().clone(),
            location,
        })
    }

    /// The store's location as the user gave it.
    pub fn location(&self) -> &str {
        self.location.as_str()
    }

    /// Where the store lives: local directory or S3 prefix.
    pub fn place(&self) -> &Location {
        &self.location
    }

    /// A path in the form a user recognises: a local file path or an `s3://` URL.
    pub fn display(&self, path: &Path) -> String {
        self.location.display(path)
    }

    /// Lists the exact hour partitions of `window`, never anything else of the store.
    pub async fn scan_window(&self, window: &Window) -> Result<Scan> {
        self.scan_hours(window.hours().collect()).await
    }

    /// Lists every hour partition of the store, checking every partition name.
    pub async fn scan_all(&self) -> Result<Scan> {
        let mut hours = Vec::new();
        for day in self.child_partitions(&self.root).await? {
            let day_name = day.filename().unwrap_or("");
            if parse_day(day_name).is_none() {
                return Err(self.malformed(&day, "expected dt=YYYY-MM-DD"));
            }
            for hour_dir in self.child_partitions(&day).await? {
                let hour = parse_hour_partition(day_name, hour_dir.filename().unwrap_or(""))
                    .ok_or_else(|| self.malformed(&hour_dir, "expected hour=HH, 00 to 23"))?;
                hours.push(hour);
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
            location: self.location.as_str().to_string(),
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
            location: self.location.as_str().to_string(),
            reason: format!("cannot list {}: {error}", self.display(path)),
        }
    }

    async fn scan_hours(&self, hours: Vec<DateTime<Utc>>) -> Result<Scan> {
        let listed: Vec<(DateTime<Utc>, Vec<ObjectMeta>)> =
            futures::stream::iter(hours)
                .map(|hour| async move {
                    Ok::<_, Error>((hour, list_hour(&self.location, hour).await?))
                })
                .buffered(CONCURRENT_REQUESTS)
                .try_collect()
                .await?;
        let commits = Commits::for_files(
            &self.location,
            listed.iter().flat_map(|(_, files)| files.iter()),
        )
        .await?;
        let sorted: Vec<(DateTime<Utc>, HourFiles)> = futures::stream::iter(listed)
            .map(|(hour, files)| {
                let commits = &commits;
                async move {
                    let files = hour_files(&self.location, files, commits).await?;
                    Ok::<_, Error>((hour, files))
                }
            })
            .buffered(CONCURRENT_REQUESTS)
            .try_collect()
            .await?;
        let mut scan = Scan::default();
        let mut uncommitted = 0;
        for (hour, files) in sorted {
            scan.hours.push(hour);
            uncommitted += files.uncommitted.len();
            if files.live.is_empty() {
                scan.empty_hours.push(hour);
            } else {
                let files = files
                    .live
                    .into_iter()
                    .map(|meta| StoreFile {
                        meta,
                        statistics: None,
                        sorted: false,
                    })
                    .collect();
                scan.partitions.push(HourPartition { hour, files });
            }
        }
        if uncommitted > 0 {
            tracing::warn!(
                "store {}: {uncommitted} files of ingest batches that were never committed are \
                 left out (an ingest stopped before its end; running it again commits them)",
                self.location()
            );
        }
        Ok(scan)
    }

    /// Reads every file's footer and checks its columns against the store contract, so that a
    /// corrupt or mismatched file is an error that names it before any query runs; notes each
    /// file's statistics and sort order for the scan. Footers land in `cache`, the session's,
    /// so the scan does not read them again.
    pub async fn check_files(&self, scan: &mut Scan, cache: Arc<FileMetadataCache>) -> Result<()> {
        let files = scan.partitions.iter_mut().flat_map(|p| {
            let hour = p.hour;
            p.files.iter_mut().map(move |file| (hour, file))
        });
        futures::stream::iter(files)
            .map(|(hour, file)| self.check_file(hour, file, cache.clone()))
            .buffer_unordered(CONCURRENT_REQUESTS)
            .try_collect::<()>()
            .await
    }

    /// Checks one file of the partition of `hour`: readable, the contract's columns, and no row
    /// (by its row groups' `time` statistics) outside the hour it is filed under.
    async fn check_file(
        &self,
        hour: DateTime<Utc>,
        file: &mut StoreFile,
        cache: Arc<FileMetadataCache>,
    ) -> Result<()> {
        let path = self.display(&file.meta.location);
        let fail = |reason: String| Error::StoreFile {
            path: path.clone(),
            reason,
        };
        let unreadable = |e: DataFusionError| {
            fail(format!(
                "not a readable Parquet file: {}",
                e.strip_backtrace()
            ))
        };
        let footer = DFParquetMetadata::new(self.objects.as_ref(), &file.meta)
            .with_file_metadata_cache(Some(cache));
        let schema = footer.fetch_schema().await.map_err(unreadable)?;
        check_schema(&schema).map_err(fail)?;
        let metadata = footer.fetch_metadata().await.map_err(unreadable)?;
        check_time_range(&metadata, hour).map_err(fail)?;
        let statistics =
            DFParquetMetadata::statistics_from_parquet_metadata(&metadata, &self::schema())
                .map_err(unreadable)?;
        file.statistics = Some(Arc::new(as_dictionaries(statistics)));
        file.sorted = declares_sort_order(&metadata);
        Ok(())
    }

    /// The URL DataFusion resolves this store's object store by.
    pub fn object_store_url(&self) -> ObjectStoreUrl {
        self.location.url().clone()
    }
}

fn is_hidden(path: &Path) -> bool {
    path.filename()
        .is_some_and(|name| name.starts_with('.') || name.starts_with('_'))
}

/// The date of a partition directory name `dt=YYYY-MM-DD`, exactly as the store writes it (four,
/// two and two digits).
pub fn parse_day(name: &str) -> Option<NaiveDate> {
    let day = name.strip_prefix("dt=")?;
    let as_written = day.len() == 10
        && day.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    as_written
        .then(|| NaiveDate::parse_from_str(day, "%Y-%m-%d").ok())
        .flatten()
}

/// The start of the hour of partition directory names `dt=YYYY-MM-DD` and `hour=HH` (two
/// digits, 00 to 23).
pub fn parse_hour_partition(day: &str, hour: &str) -> Option<DateTime<Utc>> {
    let date = parse_day(day)?;
    let hour = hour.strip_prefix("hour=")?;
    if hour.len() != 2 || !hour.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let start = date.and_hms_opt(hour.parse().ok()?, 0, 0)?;
    Some(Utc.from_utc_datetime(&start))
}

/// Gives min/max of the contract's dictionary columns the dictionary type, as the table has
/// it (Parquet statistics come back as plain strings).
fn as_dictionaries(mut statistics: ColumnsStatistics) -> ColumnsStatistics {
    let schema = schema();
    for (field, column) in schema
        .fields()
        .iter()
        .zip(&mut statistics.column_statistics)
    {
        if let DataType::Dictionary(key, _) = field.data_type() {
            for bound in [&mut column.min_value, &mut column.max_value] {
                *bound = bound.clone().map(|value| match value {
                    ScalarValue::Dictionary(..) => value,
                    other => ScalarValue::Dictionary(key.clone(), Box::new(other)),
                });
            }
        }
    }
    statistics
}

/// Whether every row group of the file says it is sorted by [`SORT_ORDER`], ascending, nulls
/// last (other sort columns may follow).
fn declares_sort_order(metadata: &ParquetMetaData) -> bool {
    let descriptor = metadata.file_metadata().schema_descr();
    !metadata.row_groups().is_empty()
        && metadata.row_groups().iter().all(|group| {
            group.sorting_columns().is_some_and(|columns| {
                columns.len() >= SORT_ORDER.len()
                    && columns.iter().zip(SORT_ORDER).all(|(column, name)| {
                        usize::try_from(column.column_idx).is_ok_and(|i| {
                            i < descriptor.num_columns() && descriptor.column(i).name() == name
                        }) && !column.descending
                            && !column.nulls_first
                    })
            })
        })
}

/// Checks that the `time` statistics of every row group lie in `[hour, hour + 1 h)`; a row
/// group without statistics is taken on trust.
fn check_time_range(
    metadata: &ParquetMetaData,
    hour: DateTime<Utc>,
) -> std::result::Result<(), String> {
    let descriptor = metadata.file_metadata().schema_descr();
    let Some(column) =
        (0..descriptor.num_columns()).find(|&i| descriptor.column(i).name() == "time")
    else {
        return Ok(());
    };
    let start = hour.timestamp_millis();
    let end = start + 3_600_000;
    for (index, group) in metadata.row_groups().iter().enumerate() {
        let Some(Statistics::Int64(stats)) = group.column(column).statistics() else {
            continue;
        };
        let (Some(&min), Some(&max)) = (stats.min_opt(), stats.max_opt()) else {
            continue;
        };
        if min < start || max >= end {
            let show = |ms: i64| {
                DateTime::from_timestamp_millis(ms)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_else(|| format!("{ms} ms"))
            };
            return Err(format!(
                "row group {index} holds times from {} to {}, outside its partition hour {}",
                show(min),
                show(max),
                hour.format("dt=%Y-%m-%d/hour=%H")
            ));
        }
    }
    Ok(())
}

/// Checks a file's Arrow schema against the store contract: every column but [`WORKLOAD`]
/// present, each of its type; other columns may be present.
fn check_schema(file: &Schema) -> std::result::Result<(), String> {
    for expected in schema().fields() {
        let Ok(found) = file.field_with_name(expected.name()) else {
            if expected.name() == WORKLOAD {
                continue;
            }
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

    #[test]
    fn workload_is_optional_but_must_be_text() {
        assert_eq!(check_schema(&required_schema()), Ok(()));
        let mut fields: Vec<Field> = required_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(WORKLOAD, DataType::Int64, true));
        let err = check_schema(&Schema::new(fields)).unwrap_err();
        assert!(err.contains("\"workload\" is Int64"), "{err}");
    }

    /// What compaction reads is cast to the store's types only where the contract allows it:
    /// plain strings become dictionaries and a missing workload nulls, but a value column of
    /// strings is refused, not cast (a cast would turn "abc" into a null).
    #[test]
    fn conform_casts_string_encodings_and_refuses_other_types() {
        use datafusion::arrow::array::{
            Array, ArrayRef, Float64Array, StringArray, TimestampMillisecondArray,
        };
        let text = |v: &str| Arc::new(StringArray::from(vec![v])) as ArrayRef;
        let mut columns: Vec<(&str, ArrayRef)> = vec![
            (
                "time",
                Arc::new(TimestampMillisecondArray::from(vec![0]).with_timezone("UTC")),
            ),
            ("metric", text("k8s.pod.network.io")),
            ("cluster", text("c")),
            ("namespace", text("n")),
            ("node", text("node-1")),
            ("pod", text("web-0")),
            ("direction", text("receive")),
            ("interface", text("eth0")),
            ("value", Arc::new(Float64Array::from(vec![1.0]))),
        ];
        let conformed = conform(&RecordBatch::try_from_iter(columns.clone()).unwrap()).unwrap();
        assert_eq!(conformed.schema(), schema());
        assert!(conformed.column_by_name(WORKLOAD).unwrap().is_null(0));

        columns[8] = ("value", text("abc"));
        let err = conform(&RecordBatch::try_from_iter(columns).unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("column \"value\" is Utf8"),
            "{err}"
        );
    }
}
