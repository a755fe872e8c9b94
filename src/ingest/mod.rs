//! `iodrift ingest`: OTLP, kubelet, Prometheus and Splunk exports into the hourly store,
//! counters as deltas, each input once (by content hash), bad records set aside with a reason.

mod counters;
mod kubelet;
mod otlp;
mod point;
mod prometheus;
mod splunk_csv;

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
use crate::output::write_atomically;
use crate::store;
pub use crate::store::NETWORK_IO_METRIC;

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
    pub store: PathBuf,
    pub format: Format,
    pub context: Context,
    pub inputs: Vec<PathBuf>,
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
    pub files: Vec<PathBuf>,
    pub rejected: u64,
    pub ignored: u64,
    pub first_points: u64,
    pub resets: u64,
    pub duplicates: u64,
    pub rejects_file: Option<PathBuf>,
}

/// The ingest state kept in the store: every input ingested (by content hash) and the last
/// point of every counter series. Written last, in one rename: it is the commit point.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    inputs: BTreeMap<String, Ingested>,
    series: Vec<LastPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ingested {
    input: String,
    batch: String,
    at: DateTime<Utc>,
}

impl State {
    fn path(store: &Path) -> PathBuf {
        store.join(INGEST_DIR).join("state.json")
    }

    fn read(store: &Path) -> Result<State> {
        let path = State::path(store);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Store {
                location: store.display().to_string(),
                reason: format!("{}: unreadable ingest state: {e}", path.display()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(Error::io(path)(e)),
        }
    }

    fn write(&self, store: &Path) -> Result<()> {
        let path = State::path(store);
        write_atomically(&path, |file| {
            serde_json::to_writer(std::io::BufWriter::new(file), self)
                .map_err(std::io::Error::other)
        })
    }
}

/// Ingests `request.inputs` into the store. An input that cannot be read as the format is an
/// error naming it, and then nothing of the run is written; bad records are rejects.
pub fn ingest(request: &Request) -> Result<Report> {
    if request.store.exists() && !request.store.is_dir() {
        return Err(Error::Store {
            location: request.store.display().to_string(),
            reason: "is not a directory".into(),
        });
    }
    let inputs = list_inputs(&request.inputs)?;
    let mut state = State::read(&request.store)?;
    let mut report = Report {
        inputs: inputs.len(),
        ..Report::default()
    };
    let progress = progress_bar(request.progress, &inputs);
    let mut decoded = Decoded::default();
    let mut hashes = Vec::new();
    let mut seen = HashSet::new();
    for input in &inputs {
        let name = input.display().to_string();
        let raw = std::fs::read(input).map_err(Error::io(input))?;
        progress.inc(raw.len() as u64);
        report.bytes += raw.len() as u64;
        let hash = hex(&Sha256::digest(&raw));
        if state.inputs.contains_key(&hash) || !seen.insert(hash.clone()) {
            report.skipped_inputs += 1;
            continue;
        }
        let bytes = decompress(&name, raw)?;
        let one = request.format.decode(&name, &bytes, &request.context)?;
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

    for (hour, rows) in by_hour(rows) {
        let name = format!("ingest-{batch}.parquet");
        let path = store::write_partition_file(
            &request.store,
            hour,
            &name,
            &store_batch(rows),
            store::writer_properties(),
        )?;
        report.files.push(path);
    }
    let reports = request.store.join(INGEST_DIR).join("batches");
    std::fs::create_dir_all(&reports).map_err(Error::io(&reports))?;
    if !rejects.is_empty() {
        let path = reports.join(format!("{batch}.rejects.jsonl"));
        write_atomically(&path, |file| {
            let mut out = std::io::BufWriter::new(file);
            for reject in &rejects {
                serde_json::to_writer(&mut out, reject).map_err(std::io::Error::other)?;
                std::io::Write::write_all(&mut out, b"\n")?;
            }
            std::io::Write::flush(&mut out)
        })?;
        report.rejects_file = Some(path);
    }
    write_atomically(&reports.join(format!("{batch}.json")), |file| {
        serde_json::to_writer_pretty(file, &report).map_err(std::io::Error::other)
    })?;
    for (hash, input) in hashes {
        state.inputs.insert(
            hash,
            Ingested {
                input,
                batch: batch.clone(),
                at: request.now,
            },
        );
    }
    state.series = counters.last_points();
    state.write(&request.store)?;
    Ok(report)
}

/// Compacts the store's closed hours (see [`crate::compact`]), leaving alone hours that hold
/// files of an ingest batch whose state was never committed (a run that died midway).
pub fn compact(store: &Path, before: DateTime<Utc>) -> Result<crate::compact::Summary> {
    let state = State::read(store)?;
    let committed: HashSet<&str> = state.inputs.values().map(|i| i.batch.as_str()).collect();
    crate::compact::compact(store, before, &|batch| committed.contains(batch))
}

/// Files of the inputs: a file as it is, a folder walked in key order (hidden entries, `.x`
/// and `_x`, skipped).
fn list_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.to_string_lossy().starts_with("s3://") {
            return Err(Error::Usage(format!(
                "input {}: s3:// inputs are not supported yet; copy the objects to a folder",
                input.display()
            )));
        }
        let metadata = std::fs::metadata(input).map_err(Error::io(input))?;
        if metadata.is_dir() {
            walk(input, &mut files)?;
        } else {
            files.push(input.clone());
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

/// Gunzips gzip input (by its magic bytes); a truncated or corrupt one is an error.
fn decompress(input: &str, raw: Vec<u8>) -> Result<Vec<u8>> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut bytes = Vec::with_capacity(raw.len() * 8);
    flate2::read::MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut bytes)
        .map_err(|e| Error::input(input, format!("truncated or corrupt gzip: {e}")))?;
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
/// last), then the other labels so the file is deterministic.
fn by_hour(rows: Vec<Row>) -> BTreeMap<i64, Vec<Row>> {
    let mut hours: BTreeMap<i64, Vec<Row>> = BTreeMap::new();
    for row in rows {
        hours
            .entry(row.time.div_euclid(HOUR_MS) * HOUR_MS)
            .or_default()
            .push(row);
    }
    for rows in hours.values_mut() {
        rows.sort_by(store_order);
    }
    hours
}

fn store_order(a: &Row, b: &Row) -> std::cmp::Ordering {
    let label = |x: &Option<String>, y: &Option<String>| match (x, y) {
        (Some(x), Some(y)) => x.cmp(y),
        (x, y) => x.is_none().cmp(&y.is_none()),
    };
    let (x, y) = (&a.series, &b.series);
    label(&x.cluster, &y.cluster)
        .then_with(|| label(&x.pod, &y.pod))
        .then_with(|| label(&x.direction, &y.direction))
        .then(a.time.cmp(&b.time))
        .then_with(|| label(&x.namespace, &y.namespace))
        .then_with(|| label(&x.node, &y.node))
        .then_with(|| label(&x.interface, &y.interface))
        .then_with(|| x.metric.cmp(&y.metric))
        .then(a.value.total_cmp(&b.value))
}

/// Rows as a batch of the store schema.
fn store_batch(rows: Vec<Row>) -> RecordBatch {
    let mut labels: [StringDictionaryBuilder<Int32Type>; 7] =
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
        ]) {
            builder.append_option(label.as_deref());
        }
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(
        TimestampMillisecondArray::from(time).with_timezone("UTC"),
    )];
    columns.extend(labels.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(Float64Array::from(value)));
    RecordBatch::try_new(store::schema(), columns).expect("ingested columns match the store schema")
}

fn progress_bar(show: bool, inputs: &[PathBuf]) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let total = inputs
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
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
