//! Shared helpers of the integration tests: running the binary, generating stores and
//! writing hand-made ones that follow the store contract.

#![allow(dead_code)]

pub mod reference;
pub mod s3;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use assert_cmd::Command;
use datafusion::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::parquet::arrow::ArrowWriter;

/// The `iodrift` binary built for these tests.
pub fn iodrift() -> Command {
    let mut command = Command::cargo_bin("iodrift").unwrap();
    command
        .env("IODRIFT_LOG", "warn")
        .env("HOME", std::env::temp_dir());
    command
}

/// A generated store: 26 hours from 2026-03-01T00:00Z, four Deployments of two replicas
/// plus the DaemonSets, StatefulSets, Jobs and static pods the generator adds.
pub struct Generated {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
}

pub const START: &str = "2026-03-01T00:00:00Z";
/// The end of the first day: baselines use [START, DAY_END).
pub const DAY_END: &str = "2026-03-02T00:00:00Z";
/// `--now` of the detections: ESCU's -70m@m..-10m@m is then [00:50, 01:50) on day two.
pub const NOW: &str = "2026-03-02T02:00:00Z";

/// The arguments of `iodrift generate` for [`generate`]'s store, but `--seed` and `--out`.
pub const GENERATE: [&str; 9] = [
    "generate",
    "--services",
    "4",
    "--replicas",
    "2",
    "--hours",
    "26",
    "--start",
    START,
];

/// The top of an `iodrift.toml`: where the schedule reads and writes.
pub fn schedule_config(store: &str, baselines: &str, findings: &str, jobs: &str) -> String {
    format!("store = {store:?}\nbaselines = {baselines:?}\nfindings = {findings:?}\n{jobs}")
}

/// Jobs over [`generate`]'s store: day one's baseline at 01:00 on day two, and the hourly
/// detections from 01:00 on day two.
pub const DAY_TWO_JOBS: &str = r#"
[baseline]
cron = "0 1 * * *"
earliest = "-1d@d"
latest = "@d"
start = "2026-03-02T01:00:00Z"

[detect]
start = "2026-03-02T01:00:00Z"
"#;

pub fn generate(seed: u64) -> Generated {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    iodrift()
        .args(GENERATE)
        .args(["--seed", &seed.to_string(), "--out"])
        .arg(&store)
        .assert()
        .success();
    Generated { dir, store }
}

/// The output fields of `iodrift detect`, in order.
pub const FINDING_FIELDS: [&str; 12] = [
    "k8s.cluster.name",
    "host",
    "k8s.pod.name",
    "k8s.service",
    "count",
    "anomalies",
    "rule",
    "risk_score",
    "risk_message",
    "mitre_attack_id",
    "window_start",
    "window_end",
];

/// `iodrift baseline --full` over the first day of `store` into `out`: the ESCU computation
/// from raw rows, which the reference and golden tests hold to the last bit (merged hourly
/// rollups agree to a few ulps; tests/rollups.rs covers them). It writes nothing into `store`.
pub fn baseline_command(store: impl AsRef<OsStr>, out: impl AsRef<OsStr>) -> Command {
    let mut command = iodrift();
    command
        .args([
            "baseline",
            "--full",
            "--earliest",
            START,
            "--latest",
            DAY_END,
            "--store",
        ])
        .arg(store)
        .arg("--out")
        .arg(out);
    command
}

impl Generated {
    /// `iodrift baseline` over the first day into `out`.
    pub fn baseline_command(&self, out: &Path) -> Command {
        baseline_command(&self.store, out)
    }

    /// Runs `iodrift baseline` over the first day into `<dir>/baselines`.
    pub fn baselines(&self) -> PathBuf {
        let out = self.dir.path().join("baselines");
        self.baseline_command(&out).assert().success();
        out
    }

    /// `iodrift detect --format json` at [`NOW`] against `baselines`, parsed.
    pub fn findings<T: serde::de::DeserializeOwned>(&self, baselines: &Path) -> Vec<T> {
        let json = stdout_of(
            iodrift()
                .args(["detect", "--format", "json", "--now", NOW, "--store"])
                .arg(&self.store)
                .arg("--baselines")
                .arg(baselines),
        );
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
    }
}

/// One hand-made row of the store.
#[derive(Debug, Clone)]
pub struct Point {
    pub time: &'static str,
    pub metric: Option<&'static str>,
    pub cluster: Option<&'static str>,
    pub node: Option<&'static str>,
    pub pod: Option<&'static str>,
    pub direction: Option<&'static str>,
    pub interface: Option<&'static str>,
    pub value: f64,
}

/// A network-IO point of cluster `c1` on node `n1`, interface `eth0`.
pub fn point(time: &'static str, pod: &'static str, direction: &'static str, value: f64) -> Point {
    Point {
        time,
        metric: Some("k8s.pod.network.io"),
        cluster: Some("c1"),
        node: Some("n1"),
        pod: Some(pod),
        direction: Some(direction),
        interface: Some("eth0"),
        value,
    }
}

fn millis(time: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(time)
        .unwrap()
        .timestamp_millis()
}

/// Writes `points` into `root` by the store contract, with plain (not dictionary) strings,
/// one file per hour partition.
pub fn write_store(root: &Path, points: &[Point]) {
    let mut hours: std::collections::BTreeMap<String, Vec<&Point>> = Default::default();
    for p in points {
        let t = chrono::DateTime::parse_from_rfc3339(p.time).unwrap();
        hours
            .entry(t.format("dt=%Y-%m-%d/hour=%H").to_string())
            .or_default()
            .push(p);
    }
    for (partition, points) in hours {
        let dir = root.join(partition);
        std::fs::create_dir_all(&dir).unwrap();
        write_parquet(&dir.join("part-0.parquet"), &points);
    }
}

pub fn store_schema() -> Arc<Schema> {
    let text = |name| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        text("metric"),
        text("cluster"),
        text("namespace"),
        text("node"),
        text("pod"),
        text("direction"),
        text("interface"),
        Field::new("value", DataType::Float64, true),
    ]))
}

pub fn write_parquet(path: &Path, points: &[&Point]) {
    let strings = |f: fn(&Point) -> Option<&'static str>| -> ArrayRef {
        Arc::new(points.iter().map(|p| f(p)).collect::<StringArray>())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMillisecondArray::from(
                points.iter().map(|p| millis(p.time)).collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
        strings(|p| p.metric),
        strings(|p| p.cluster),
        strings(|_| Some("default")),
        strings(|p| p.node),
        strings(|p| p.pod),
        strings(|p| p.direction),
        strings(|p| p.interface),
        Arc::new(points.iter().map(|p| p.value).collect::<Float64Array>()),
    ];
    let batch = RecordBatch::try_new(store_schema(), columns).unwrap();
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// The lookup files `iodrift baseline` writes.
pub const LOOKUP_FILES: [&str; 2] = [
    "k8s_container_network_io_baseline.csv",
    "k8s_container_network_io_ratio_baseline.csv",
];

/// Asserts that both lookups in `actual` are the same bytes as in `expected`.
pub fn assert_same_lookups(actual: &Path, expected: &Path) {
    for name in LOOKUP_FILES {
        assert_eq!(
            std::fs::read_to_string(actual.join(name)).unwrap(),
            std::fs::read_to_string(expected.join(name)).unwrap(),
            "{name}"
        );
    }
}

/// Standard output of a successful run, as text.
pub fn stdout_of(command: &mut Command) -> String {
    let output = command.assert().success().get_output().stdout.clone();
    String::from_utf8(output).unwrap()
}

/// Runs `sql -c QUERY --format json` and returns the rows.
pub fn query(
    store: &Path,
    baselines: Option<&Path>,
    sql: &str,
) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let mut command = iodrift();
    command
        .args(["sql", "--format", "json", "--store"])
        .arg(store)
        .args(["-c", sql]);
    if let Some(dir) = baselines {
        command.arg("--baselines").arg(dir);
    }
    let text = stdout_of(&mut command);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A file of the real captures in `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The kubelet capture with every network counter moved on by `seconds` and `bytes`: a later
/// scrape of the same node.
pub fn later_kubelet_scrape(seconds: i64, bytes: f64) -> String {
    use serde_json::Value;
    let mut summary: Value =
        serde_json::from_slice(&std::fs::read(fixture("kubelet-stats-summary.json")).unwrap())
            .unwrap();
    for pod in summary["pods"].as_array_mut().unwrap() {
        let network = &mut pod["network"];
        if network.is_null() {
            continue;
        }
        let time = chrono::DateTime::parse_from_rfc3339(network["time"].as_str().unwrap()).unwrap();
        network["time"] = Value::from((time + chrono::Duration::seconds(seconds)).to_rfc3339());
        for interface in network["interfaces"].as_array_mut().unwrap() {
            for counter in ["rxBytes", "txBytes"] {
                let value = interface[counter].as_f64().unwrap();
                interface[counter] = Value::from(value + bytes);
            }
        }
    }
    summary.to_string()
}

/// Every file under `dir`, relative, sorted (none when it does not exist): what a run left.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The test rule that no iodrift build knows: outbound traffic above three times the service's
/// peak 10 s mean of the baseline window. A manifest and SQL only, written into `dir/tx-peak`.
pub fn write_user_rule(dir: &Path) -> PathBuf {
    let folder = dir.join("tx-peak");
    std::fs::create_dir_all(&folder).unwrap();
    let files = [
        (
            "rule.toml",
            r#"name = "tx-peak"
title = "Outbound above three times the service's peak"
sql = ["peak.sql", "detect.sql"]

[risk]
score = 40
message = "Outbound above the service's peak on host $host$"
mitre_attack_ids = ["T1041", "T1048"]

[detection]
min_buckets = 3

[[baselines]]
name = "tx_peak_baseline"
view = "baseline"
key = ["key"]
columns = [
    { name = "key", type = "string" },
    { name = "peak", type = "double" },
    { name = "spans", type = "bigint" },
]
rollup = "rollup"
merge = "merge.sql"

[schedule]
baseline = { cron = "0 1 * * *", earliest = "-1d@d", latest = "@d" }
detect = { cron = "30 * * * *", earliest = "-70m@m", latest = "-10m@m" }
"#,
        ),
        (
            "peak.sql",
            "CREATE VIEW baseline AS\n\
             SELECT key, max(io) AS peak, count(*) AS spans FROM spans\n\
             WHERE direction = 'transmit' GROUP BY key;\n\
             CREATE VIEW rollup AS\n\
             SELECT to_unixtime(hour) AS hour, key, max(io) AS peak, count(*) AS spans FROM spans\n\
             WHERE direction = 'transmit' GROUP BY hour, key;\n",
        ),
        (
            "merge.sql",
            "SELECT key, max(peak) AS peak, sum(spans) AS spans FROM rollups GROUP BY key\n",
        ),
        (
            "detect.sql",
            "CREATE VIEW anomalous_buckets AS\n\
             SELECT f.cluster, f.node, f.pod, f.service, f.bucket,\n\
                    'outbound above 3 x peak ' || CAST(b.peak AS VARCHAR) AS anomalies\n\
             FROM pod_network_io AS f JOIN tx_peak_baseline AS b ON f.key = b.key\n\
             WHERE f.outbound_network_io > 3 * b.peak;\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(folder.join(name), text).unwrap();
    }
    folder
}
