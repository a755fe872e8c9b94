//! `iodrift ingest`: OTLP, kubelet, Prometheus and Splunk exports into the hourly store,
//! counters as deltas, each input once (by content hash), bad records set aside with a reason.

mod counters;
mod kubelet;
mod nesting;
mod order;
mod otlp;
mod point;
mod prometheus;
mod splunk_csv;

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use datafusion::object_store::path::Path as ObjectPath;

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use datafusion::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringDictionaryBuilder, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::Int32Type;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use counters::{Counters, LastPoint, Row, Tally};
pub use point::{Decoded, Kind, Point, Record, Reject, Series};

use crate::error::{Error, Result};
use crate::generate::HOUR_MS;
use crate::location::{Location, S3Options};
pub use crate::store::NETWORK_IO_METRIC;
use crate::store::{self, IngestedInput};

/// Where ingest keeps its own files, beside the partitions (hidden from scans).
pub const INGEST_DIR: &str = "_ingest";
/// How far ahead of the clock a point may be before it is rejected.
const FUTURE_LIMIT_MS: i64 = 24 * HOUR_MS;

/// An input format of `iodrift ingest --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    OtlpJson,
    OtlpProto,
    KubeletSummary,
    Prometheus,
    SplunkCsv,
}

impl Format {
    fn decode(self, input: &str, bytes: &[u8], context: &Context) -> Result<Decoded> {
        match self {
            Format::OtlpJson => otlp::decode_json(input, bytes, context),
            Format::OtlpProto => otlp::decode_proto(input, bytes, context),
            Format::KubeletSummary => kubelet::decode(input, bytes, context),
            Format::Prometheus => prometheus::decode(input, bytes, context),
            Format::SplunkCsv => splunk_csv::decode(input, bytes, context),
        }
    }
}

/// Decodes one input's bytes (gzip or not) as `format`: the points and the records set aside.
/// An input that is not that format is an error naming `input`.
pub fn decode(format: Format, input: &str, bytes: Vec<u8>, context: &Context) -> Result<Decoded> {
    let bytes = decompress(input, bytes)?;
    format.decode(input, &bytes, context)
}

/// Labels and time the inputs may lack: `--cluster`, `--node`, `--time`.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub cluster: Option<String>,
    pub node: Option<String>,
    pub time: Option<DateTime<Utc>>,
}

/// One ingest run's request.
#[derive(Debug, Clone)]
pub struct Request {
    pub store: Location,
    pub format: Format,
    pub context: Context,
    /// Files, folders or `s3://` prefixes.
    pub inputs: Vec<String>,
    pub now: DateTime<Utc>,
    pub progress: bool,
}

/// What an ingest run did; also written as the batch report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub batch: Option<String>,
    pub inputs: usize,
    pub skipped_inputs: usize,
    pub bytes: u64,
    pub points: u64,
    pub rows: u64,
    pub files: Vec<String>,
    pub rejected: u64,
    pub ignored: u64,
    pub first_points: u64,
    pub resets: u64,
    pub duplicates: u64,
    pub rejects_file: Option<String>,
}

/// The ingest state kept in the store: every input ingested (by content hash) and the last
/// point of every counter series. Written last, in one rename: it is the commit point.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    inputs: BTreeMap<String, IngestedInput>,
    series: Vec<LastPoint>,
    /// The digest of the stored state this one was read from (none for a new store).
    #[serde(skip)]
    read_from: Option<String>,
}

const STATE_FILE: &str = store::INGEST_STATE;

impl State {
    async fn read(store: &Location) -> Result<State> {
        match store.read(STATE_FILE).await? {
            Some(bytes) => {
                let mut state: State =
                    serde_json::from_slice(&bytes).map_err(|e| Error::Store {
                        location: store.as_str().to_string(),
                        reason: format!(
                            "{}: unreadable ingest state: {e}",
                            store.display_at(STATE_FILE)
                        ),
                    })?;
                state.read_from = Some(hex(&Sha256::digest(&bytes)));
                Ok(state)
            }
            None => Ok(State::default()),
        }
    }

    /// Commits the state, unless another ingest committed since it was read: then this run's
    /// files stay uncommitted (hidden) and running it again ingests its inputs on top.
    async fn write(&self, store: &Location) -> Result<()> {
        let now = store
            .read(STATE_FILE)
            .await?
            .map(|bytes| hex(&Sha256::digest(&bytes)));
        if now != self.read_from {
            return Err(Error::Store {
                location: store.as_str().to_string(),
                reason: format!(
                    "another ingest committed to {} while this one ran; nothing of this run \
                     is visible: run it again",
                    store.display_at(STATE_FILE)
                ),
            });
        }
        store
            .write(STATE_FILE, |file| {
                serde_json::to_writer(std::io::BufWriter::new(file), self)
                    .map_err(std::io::Error::other)
            })
            .await
    }
}

/// One input file: a local file, or an object found under an `s3://` prefix.
struct Input {
    name: String,
    size: u64,
    source: Source,
}

enum Source {
    File(PathBuf),
    Object(Location, ObjectPath),
}

impl Input {
    async fn read(&self) -> Result<Bytes> {
        match &self.source {
            Source::File(path) => Ok(std::fs::read(path).map_err(Error::io(path))?.into()),
            Source::Object(location, path) => location
                .get(path)
                .await?
                .ok_or_else(|| Error::input(&self.name, "vanished while ingesting")),
        }
    }
}

/// Ingests `request.inputs` into the store. An input that cannot be read as the format is an
/// error naming it, and then nothing of the run is written; bad records are rejects.
pub async fn ingest(request: &Request, s3: &S3Options) -> Result<Report> {
    if let Some(dir) = request.store.local()
        && dir.exists()
        && !dir.is_dir()
    {
        return Err(Error::Store {
            location: request.store.as_str().to_string(),
            reason: "is not a directory".into(),
        });
    }
    let inputs = list_inputs(&request.inputs, s3).await?;
    let mut state = State::read(&request.store).await?;
    let mut report = Report {
        inputs: inputs.len(),
        ..Report::default()
    };
    let progress = progress_bar(request.progress, &inputs);
    let mut decoded = Decoded::default();
    let mut hashes = Vec::new();
    let mut seen = HashSet::new();
    for input in &inputs {
        let name = input.name.clone();
        let raw = input.read().await?;
        progress.inc(raw.len() as u64);
        report.bytes += raw.len() as u64;
        let hash = hex(&Sha256::digest(&raw));
        if state.inputs.contains_key(&hash) || !seen.insert(hash.clone()) {
            report.skipped_inputs += 1;
            continue;
        }
        let one = decode(request.format, &name, raw.into(), &request.context)?;
        if decoded.points.is_empty() {
            decoded.points = one.points;
        } else {
            decoded.points.extend(one.points);
        }
        decoded.rejects.extend(one.rejects);
        decoded.ignored += one.ignored;
        hashes.push((hash, name));
    }
    progress.finish_and_clear();
    if hashes.is_empty() {
        return Ok(report);
    }
    let batch = batch_id(&hashes);
    report.points = decoded.points.len() as u64;
    report.ignored = decoded.ignored;
    let mut rejects = decoded.rejects;
    let points = screen(decoded.points, request.now, &mut rejects);

    let mut counters = Counters::new(std::mem::take(&mut state.series));
    let (rows, counter_rejects, tally) = counters.rows(points);
    rejects.extend(counter_rejects);
    report.rows = rows.len() as u64;
    report.first_points = tally.first;
    report.resets = tally.resets;
    report.duplicates = tally.duplicates;
    report.rejected = rejects.len() as u64;
    report.batch = Some(batch.clone());

    let name = store::ingest_file_name(&batch);
    let hours = by_hour(rows);
    check_not_replaced(&request.store, hours.keys(), &name).await?;
    for (hour, rows) in hours {
        let path = store::write_partition_file(
            &request.store,
            hour,
            &name,
            &store_batch(rows),
            store::writer_properties(),
        )
        .await?;
        report.files.push(path);
    }
    let reports = format!("{INGEST_DIR}/batches");
    if !rejects.is_empty() {
        let name = format!("{reports}/{batch}.rejects.jsonl");
        request
            .store
            .write(&name, |file| {
                let mut out = std::io::BufWriter::new(file);
                for reject in &rejects {
                    serde_json::to_writer(&mut out, reject).map_err(std::io::Error::other)?;
                    std::io::Write::write_all(&mut out, b"\n")?;
                }
                std::io::Write::flush(&mut out)
            })
            .await?;
        report.rejects_file = Some(request.store.display_at(&name));
    }
    request
        .store
        .write(&format!("{reports}/{batch}.json"), |file| {
            serde_json::to_writer_pretty(file, &report).map_err(std::io::Error::other)
        })
        .await?;
    for (hash, input) in hashes {
        state.inputs.insert(
            hash,
            IngestedInput {
                input,
                batch: batch.clone(),
                at: request.now,
            },
        );
    }
    state.series = counters.last_points();
    state.write(&request.store).await?;
    Ok(report)
}

/// Fails when a compacted file of one of `hours` (ms) replaces `name`: the batch was ingested
/// and compacted before, and the ingest state that said so is gone; written again, its rows
/// would stay hidden.
async fn check_not_replaced<'a>(
    store: &Location,
    hours: impl Iterator<Item = &'a i64>,
    name: &str,
) -> Result<()> {
    let commits = store::Commits::default();
    for &hour in hours {
        let Some(hour) = DateTime::from_timestamp_millis(hour) else {
            continue;
        };
        let files = store::list_hour(store, hour).await?;
        let files = store::hour_files(store, files, &commits).await?;
        if let Some(file) = files
            .replaced
            .iter()
            .find(|f| f.location.filename() == Some(name))
        {
            return Err(Error::StoreFile {
                path: store.display(&file.location),
                reason: "a compacted file of its hour replaces this batch already, but the \
                         ingest state does not list it: restore _ingest/state.json"
                    .into(),
            });
        }
    }
    Ok(())
}

/// Files of the inputs: a file as it is; a folder or an `s3://` prefix walked in key order
/// (hidden entries, `.x` and `_x`, skipped).
async fn list_inputs(inputs: &[String], s3: &S3Options) -> Result<Vec<Input>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.starts_with("s3://") {
            let prefix = Location::parse(input, s3)?;
            let before = files.len();
            for object in prefix.list().await? {
                let hidden = object
                    .location
                    .prefix_match(prefix.root())
                    .is_some_and(|mut parts| parts.any(|p| p.as_ref().starts_with(['.', '_'])));
                if !hidden {
                    files.push(Input {
                        name: prefix.display(&object.location),
                        size: object.size,
                        source: Source::Object(prefix.clone(), object.location),
                    });
                }
            }
            if files.len() == before {
                return Err(Error::input(input, "no objects under this prefix"));
            }
            continue;
        }
        let path = PathBuf::from(input);
        let metadata = std::fs::metadata(&path).map_err(Error::io(&path))?;
        let mut found = Vec::new();
        if metadata.is_dir() {
            walk(&path, &mut found)?;
        } else {
            found.push(path);
        }
        for path in found {
            files.push(Input {
                name: path.display().to_string(),
                size: std::fs::metadata(&path).map_or(0, |m| m.len()),
                source: Source::File(path),
            });
        }
    }
    if files.is_empty() {
        return Err(Error::Usage("no input files".into()));
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(Error::io(dir))?;
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(['.', '_']));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

/// The most bytes one gzip input may decompress to: far above what collectors write per file,
/// far below what would exhaust memory (a gzip bomb).
const MAX_DECOMPRESSED: u64 = 1 << 30;

/// Gunzips gzip input (by its magic bytes); a truncated or corrupt one, or one that decompresses
/// to more than [`MAX_DECOMPRESSED`], is an error.
fn decompress(input: &str, raw: Vec<u8>) -> Result<Vec<u8>> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut bytes = Vec::with_capacity(raw.len().saturating_mul(8).min(1 << 26));
    flate2::read::MultiGzDecoder::new(raw.as_slice())
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::input(input, format!("truncated or corrupt gzip: {e}")))?;
    if bytes.len() as u64 > MAX_DECOMPRESSED {
        return Err(Error::input(
            input,
            format!("decompresses to more than {MAX_DECOMPRESSED} bytes; split it"),
        ));
    }
    Ok(bytes)
}

/// Sets aside points no format may store: NaN or infinite values, times far in the future.
fn screen(points: Vec<Point>, now: DateTime<Utc>, rejects: &mut Vec<Reject>) -> Vec<Point> {
    let limit = now.timestamp_millis() + FUTURE_LIMIT_MS;
    points
        .into_iter()
        .filter(|point| {
            let reason = if !point.value.is_finite() {
                format!("value {} of {}", point.value, point.series.metric)
            } else if point.time > limit {
                format!(
                    "time {} is more than a day ahead of {}",
                    DateTime::from_timestamp_millis(point.time)
                        .map_or_else(|| point.time.to_string(), |t| t.to_rfc3339()),
                    now.to_rfc3339()
                )
            } else {
                return true;
            };
            rejects.push(Reject::new(point.record.clone(), reason));
            false
        })
        .collect()
}

/// The batch's name: a hash of its inputs' hashes, so a rerun of the same inputs writes the
/// same files (overwriting, never duplicating).
fn batch_id(hashes: &[(String, String)]) -> String {
    let mut digest = Sha256::new();
    for (hash, _) in hashes {
        digest.update(hash.as_bytes());
    }
    hex(&digest.finalize())[..16].to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Rows by hour (ms), each hour sorted in store order: cluster, pod, direction, time (nulls
/// last), then the other labels and the value so the file is deterministic. Labels are compared
/// once per distinct series, then rows by the series' ranks.
fn by_hour(rows: Vec<Row>) -> BTreeMap<i64, Vec<Row>> {
    let label = |x: &Option<String>, y: &Option<String>| match (x, y) {
        (Some(x), Some(y)) => x.cmp(y),
        (x, y) => x.is_none().cmp(&y.is_none()),
    };
    let (series_of, distinct) = order::distinct_series(rows.iter().map(|r| &r.series));
    let head = order::dense_ranks(&distinct, |x, y| {
        label(&x.cluster, &y.cluster)
            .then_with(|| label(&x.pod, &y.pod))
            .then_with(|| label(&x.direction, &y.direction))
    });
    let tail = order::dense_ranks(&distinct, |x, y| {
        label(&x.namespace, &y.namespace)
            .then_with(|| label(&x.node, &y.node))
            .then_with(|| label(&x.interface, &y.interface))
            .then_with(|| label(&x.workload, &y.workload))
            .then_with(|| x.metric.cmp(&y.metric))
    });
    let mut hours: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (index, row) in rows.iter().enumerate() {
        hours
            .entry(row.time.div_euclid(HOUR_MS) * HOUR_MS)
            .or_default()
            .push(index);
    }
    let key = |row: &Row, series: u32| (head[series as usize], row.time, tail[series as usize]);
    for indices in hours.values_mut() {
        indices.sort_unstable_by(|&a, &b| {
            let (x, y) = (&rows[a], &rows[b]);
            key(x, series_of[a])
                .cmp(&key(y, series_of[b]))
                .then(x.value.total_cmp(&y.value))
        });
    }
    let mut slots = rows.into_iter().map(Some).collect::<Vec<_>>();
    hours
        .into_iter()
        .map(|(hour, indices)| (hour, order::take(&mut slots, &indices)))
        .collect()
}

/// Rows as a batch of the store schema.
fn store_batch(rows: Vec<Row>) -> RecordBatch {
    let mut labels: [StringDictionaryBuilder<Int32Type>; 8] =
        std::array::from_fn(|_| StringDictionaryBuilder::new());
    let mut time = Vec::with_capacity(rows.len());
    let mut value = Vec::with_capacity(rows.len());
    for row in &rows {
        time.push(row.time);
        value.push(row.value);
        let series = &row.series;
        labels[0].append_value(&series.metric);
        for (builder, label) in labels[1..].iter_mut().zip([
            &series.cluster,
            &series.namespace,
            &series.node,
            &series.pod,
            &series.direction,
            &series.interface,
            &series.workload,
        ]) {
            builder.append_option(label.as_deref());
        }
    }
    let [labels @ .., workload] = &mut labels;
    let mut columns: Vec<ArrayRef> = vec![Arc::new(
        TimestampMillisecondArray::from(time).with_timezone("UTC"),
    )];
    columns.extend(labels.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(Float64Array::from(value)));
    columns.push(Arc::new(workload.finish()));
    RecordBatch::try_new(store::schema(), columns).expect("ingested columns match the store schema")
}

fn progress_bar(show: bool, inputs: &[Input]) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let total = inputs.iter().map(|input| input.size).sum();
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} ingest [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}
