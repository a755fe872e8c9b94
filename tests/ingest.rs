//! `iodrift ingest` and `iodrift compact` on the real captures in tests/fixtures: counters
//! become deltas, inputs are ingested once, bad records are set aside, bad files change nothing.

mod common;

use std::io::Write;
use std::path::Path;

use common::{fixture, iodrift, later_kubelet_scrape, query, tree};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::Value;

fn ingest(
    store: &Path,
    format: &str,
    extra: &[&str],
    inputs: &[&Path],
) -> assert_cmd::assert::Assert {
    let mut command = iodrift();
    command
        .args(["ingest", "--format", format, "--store"])
        .arg(store)
        .args(extra)
        .args(inputs);
    command.assert()
}

fn stdout(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(assert.get_output().stdout.clone()).unwrap()
}

fn stderr(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(assert.get_output().stderr.clone()).unwrap()
}

fn rows(store: &Path, sql: &str) -> Vec<serde_json::Map<String, Value>> {
    query(store, None, sql)
}

#[test]
fn kubelet_counters_become_deltas_and_inputs_are_ingested_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let cluster = ["--cluster", "minikube-cluster"];

    // The first scrape only starts every series: 9 pods x 2 interfaces x 2 directions.
    let first = ingest(
        &store,
        "kubelet-summary",
        &cluster,
        &[&fixture("kubelet-stats-summary.json")],
    );
    let first = first.success();
    let out = stdout(&first);
    assert!(out.contains("0 rows written"), "{out}");
    assert!(out.contains("36 first points of a series"), "{out}");

    // The second capture repeats every network counter at the same time: nothing new.
    let second = ingest(
        &store,
        "kubelet-summary",
        &cluster,
        &[&fixture("kubelet-stats-summary-second-scrape.json")],
    )
    .success();
    assert!(
        stdout(&second).contains("36 repeated points"),
        "{}",
        stdout(&second)
    );

    // A scrape 10 s later with 4,096 more bytes on every counter: one delta per series.
    let later = dir.path().join("later.json");
    std::fs::write(&later, later_kubelet_scrape(10, 4096.0)).unwrap();
    let third = ingest(&store, "kubelet-summary", &cluster, &[&later]).success();
    assert!(
        stdout(&third).contains("36 rows written"),
        "{}",
        stdout(&third)
    );
    let stored = rows(
        &store,
        "SELECT count(*) AS n, min(value) AS lo, max(value) AS hi, count(DISTINCT pod) AS pods, \
         min(cluster) AS cluster, min(node) AS node, count(DISTINCT interface) AS interfaces \
         FROM metrics WHERE metric = 'k8s.pod.network.io'",
    );
    assert_eq!(stored[0]["n"], 36);
    assert_eq!(stored[0]["lo"], 4096.0);
    assert_eq!(stored[0]["hi"], 4096.0);
    assert_eq!(stored[0]["pods"], 9);
    assert_eq!(stored[0]["cluster"], "minikube-cluster");
    assert_eq!(stored[0]["node"], "minikube");
    assert_eq!(stored[0]["interfaces"], 2);
    // The rules see them: one span per pod, direction and interface-averaged bucket.
    let spans = rows(&store, "SELECT count(*) AS n FROM spans");
    assert!(spans[0]["n"].as_u64().unwrap() >= 18);

    // The same input again is a no-op.
    let files = tree(&store);
    let again = ingest(&store, "kubelet-summary", &cluster, &[&later]).success();
    assert!(
        stdout(&again).contains("1 skipped as already ingested"),
        "{}",
        stdout(&again)
    );
    assert_eq!(tree(&store), files);
}

#[test]
fn cadvisor_keeps_one_series_per_pod_and_interface() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let flags = ["--cluster", "kind", "--node", "kind-control-plane"];
    let text = std::fs::read_to_string(fixture("cadvisor-metrics.txt")).unwrap();
    let first = ingest(
        &store,
        "prometheus",
        &flags,
        &[&fixture("cadvisor-metrics.txt")],
    )
    .success();
    // 9 pods x 3 interfaces x 2 directions start a series; the root cgroup and the six other
    // counter families are ignored.
    assert!(
        stdout(&first).contains("54 first points of a series"),
        "{}",
        stdout(&first)
    );

    // A later exposition: every sample 15 s later and 1,000 bytes more, plus a per-container
    // copy of one pod's counters (as older cAdvisors write them), which must not count twice.
    let mut later = String::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            later.push_str(line);
            later.push('\n');
            continue;
        }
        let mut parts = line.rsplitn(3, ' ');
        let (time, value, series) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let time: i64 = time.parse().unwrap();
        let value: f64 = value.parse().unwrap();
        later.push_str(&format!("{series} {} {}\n", value + 1000.0, time + 15_000));
        if series.contains("pod=\"agent-nsvs4\"") {
            let copy = series.replace("container=\"\"", "container=\"agent\"");
            later.push_str(&format!("{copy} {} {}\n", value + 999_999.0, time + 15_000));
        }
    }
    let path = dir.path().join("later.txt");
    std::fs::write(&path, later).unwrap();
    let second = ingest(&store, "prometheus", &flags, &[&path]).success();
    assert!(
        stdout(&second).contains("54 rows written"),
        "{}",
        stdout(&second)
    );
    let stored = rows(
        &store,
        "SELECT count(*) AS n, min(value) AS lo, max(value) AS hi, count(DISTINCT pod) AS pods, \
         min(node) AS node FROM metrics",
    );
    assert_eq!(stored[0]["n"], 54);
    assert_eq!(stored[0]["lo"], 1000.0);
    assert_eq!(stored[0]["hi"], 1000.0);
    assert_eq!(stored[0]["pods"], 9);
    assert_eq!(stored[0]["node"], "kind-control-plane");
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// One request holding `k8s.pod.network.io` of pod `web-5d9c7b8f6d-x2x4z` at `seconds` past
/// 2026-03-01T10:00Z, cumulative bytes `received` and `sent` on eth0.
fn network_request(seconds: u64, received: f64, sent: f64) -> ExportMetricsServiceRequest {
    pod_network_request("web-5d9c7b8f6d-x2x4z", &[], seconds, received, sent)
}

/// [`network_request`] of `pod` on node `node-1`, its resource carrying `owners` as well.
fn pod_network_request(
    pod: &str,
    owners: &[(&str, &str)],
    seconds: u64,
    received: f64,
    sent: f64,
) -> ExportMetricsServiceRequest {
    let time = (1_772_359_200 + seconds) * 1_000_000_000;
    let point = |direction: &str, value: f64| NumberDataPoint {
        attributes: vec![
            attribute("direction", direction),
            attribute("interface", "eth0"),
        ],
        start_time_unix_nano: 1_772_350_000 * 1_000_000_000,
        time_unix_nano: time,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: [
                    ("k8s.cluster.name", "prod"),
                    ("k8s.namespace.name", "shop"),
                    ("k8s.node.name", "node-1"),
                    ("k8s.pod.name", pod),
                ]
                .iter()
                .chain(owners)
                .map(|(key, value)| attribute(key, value))
                .collect(),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "k8s.pod.network.io".into(),
                    unit: "By".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![point("receive", received), point("transmit", sent)],
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn network_rows(store: &Path) -> Vec<(String, String, f64)> {
    rows(
        store,
        "SELECT CAST(time AS VARCHAR) AS t, direction, value FROM metrics \
         WHERE metric = 'k8s.pod.network.io' ORDER BY time, direction",
    )
    .into_iter()
    .map(|r| {
        (
            r["t"].as_str().unwrap().to_string(),
            r["direction"].as_str().unwrap().to_string(),
            r["value"].as_f64().unwrap(),
        )
    })
    .collect()
}

#[test]
fn otlp_json_lines_land_and_a_bad_line_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let requests = [
        network_request(0, 1000.0, 500.0),
        network_request(10, 3000.0, 800.0),
        network_request(20, 3500.0, 700.0), // transmit fell: a reset, no delta
        network_request(30, f64::NAN, 900.0), // written as null
    ];
    let mut lines: Vec<String> = requests
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    lines.insert(2, "{\"resourceMetrics\": [ {\"oops\"".into());
    let path = dir.path().join("metrics.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();

    let run = ingest(&store, "otlp-json", &[], &[&path]).failure();
    let out = stdout(&run);
    assert!(out.contains("2 rejected"), "{out}");
    assert!(out.contains("1 counter resets"), "{out}");
    assert!(
        stderr(&run).contains("2 records rejected; reasons in"),
        "{}",
        stderr(&run)
    );
    assert_eq!(
        network_rows(&store),
        vec![
            (
                "2026-03-01T10:00:10Z".to_string(),
                "receive".to_string(),
                2000.0
            ),
            (
                "2026-03-01T10:00:10Z".to_string(),
                "transmit".to_string(),
                300.0
            ),
            (
                "2026-03-01T10:00:20Z".to_string(),
                "receive".to_string(),
                500.0
            ),
            (
                "2026-03-01T10:00:30Z".to_string(),
                "transmit".to_string(),
                200.0
            ),
        ]
    );
    let rejects_file = tree(&store)
        .into_iter()
        .find(|f| f.ends_with(".rejects.jsonl"))
        .expect("a rejects file beside the batch report");
    let rejects: Vec<Value> = std::fs::read_to_string(store.join(&rejects_file))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rejects.len(), 2);
    assert_eq!(rejects[0]["line"], 3);
    assert!(
        rejects[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not an OTLP/JSON")
    );
    assert_eq!(rejects[1]["line"], 5);
    // JSON has no NaN: serde writes it as null, a point without a value.
    assert!(
        rejects[1]["reason"]
            .as_str()
            .unwrap()
            .contains("without a value"),
        "{}",
        rejects[1]
    );

    // The next batch continues the series from the state the store kept.
    let next = dir.path().join("next.jsonl");
    std::fs::write(
        &next,
        serde_json::to_string(&network_request(40, 3600.0, 1000.0)).unwrap(),
    )
    .unwrap();
    ingest(&store, "otlp-json", &[], &[&next]).success();
    let last = network_rows(&store);
    assert_eq!(
        &last[4..],
        &[
            (
                "2026-03-01T10:00:40Z".to_string(),
                "receive".to_string(),
                100.0
            ),
            (
                "2026-03-01T10:00:40Z".to_string(),
                "transmit".to_string(),
                100.0
            ),
        ]
    );
}

#[test]
fn otlp_reference_example_stores_sums_and_gauges_under_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let run = ingest(
        &store,
        "otlp-json",
        &["--cluster", "c"],
        &[&fixture("otlp-metrics-example.json")],
    )
    .success();
    let out = stdout(&run);
    // The counter is a delta sum (temporality 1) and lands as it is, like the gauge; the
    // histogram is ignored.
    assert!(out.contains("2 rows written"), "{out}");
    assert!(out.contains("1 ignored"), "{out}");
    let stored = rows(
        &store,
        "SELECT metric, value, cluster, CAST(time AS VARCHAR) AS t FROM metrics ORDER BY metric",
    );
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["metric"], "my.counter");
    assert_eq!(stored[0]["value"], 5.0);
    assert_eq!(stored[1]["metric"], "my.gauge");
    assert_eq!(stored[1]["value"], 10.0);
    assert_eq!(stored[1]["cluster"], "c");
    assert_eq!(stored[1]["t"], "2018-12-13T14:51:00.300Z");
}

#[test]
fn otlp_protobuf_framed_and_gzipped_equals_json() {
    let dir = tempfile::tempdir().unwrap();
    let (json_store, proto_store) = (dir.path().join("json"), dir.path().join("proto"));
    let requests = [
        network_request(0, 1000.0, 500.0),
        network_request(10, 3000.0, 800.0),
        network_request(20, 4000.0, 900.0),
    ];
    let json = dir.path().join("m.jsonl");
    std::fs::write(
        &json,
        requests
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    ingest(&json_store, "otlp-json", &[], &[&json]).success();

    // The file exporter's stream: each message after its 4-byte big-endian length; gzipped.
    let mut framed = Vec::new();
    for request in &requests {
        let bytes = request.encode_to_vec();
        framed.extend((bytes.len() as u32).to_be_bytes());
        framed.extend(bytes);
    }
    let folder = dir.path().join("year=2026/month=03/day=01/hour=10");
    std::fs::create_dir_all(&folder).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&framed).unwrap();
    std::fs::write(folder.join("metrics_1.binpb.gz"), gz.finish().unwrap()).unwrap();
    ingest(
        &proto_store,
        "otlp-proto",
        &[],
        &[&dir.path().join("year=2026")],
    )
    .success();
    assert_eq!(network_rows(&proto_store), network_rows(&json_store));
    assert_eq!(network_rows(&proto_store).len(), 4);
}

#[test]
fn a_bad_file_is_named_and_nothing_of_the_run_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let good = dir.path().join("a-good.jsonl");
    std::fs::write(
        &good,
        serde_json::to_string(&network_request(0, 1.0, 1.0)).unwrap(),
    )
    .unwrap();

    // A truncated gzip.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(
        serde_json::to_string(&network_request(10, 5.0, 5.0))
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let bytes = gz.finish().unwrap();
    let truncated = dir.path().join("b-truncated.jsonl.gz");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let run = ingest(&store, "otlp-json", &[], &[&good, &truncated]).failure();
    assert!(
        stderr(&run).contains("b-truncated.jsonl.gz"),
        "{}",
        stderr(&run)
    );
    assert!(stderr(&run).contains("gzip"), "{}", stderr(&run));
    assert!(tree(&store).is_empty(), "{:?}", tree(&store));

    // A file that is not what --format says.
    let run = ingest(
        &store,
        "otlp-json",
        &[],
        &[&good, &fixture("kubelet-stats-summary.json")],
    )
    .failure();
    assert!(
        stderr(&run).contains("kubelet-stats-summary.json"),
        "{}",
        stderr(&run)
    );
    assert!(stderr(&run).contains("not OTLP/JSON"), "{}", stderr(&run));
    assert!(tree(&store).is_empty());
    let run = ingest(
        &store,
        "otlp-proto",
        &[],
        &[&fixture("cadvisor-metrics.txt")],
    )
    .failure();
    assert!(
        stderr(&run).contains("cadvisor-metrics.txt"),
        "{}",
        stderr(&run)
    );
    let run = ingest(
        &store,
        "kubelet-summary",
        &["--cluster", "c"],
        &[&fixture("otlp-metrics-example.json")],
    )
    .failure();
    assert!(stderr(&run).contains("not a kubelet"), "{}", stderr(&run));
    let run = ingest(
        &store,
        "splunk-csv",
        &[],
        &[&fixture("cadvisor-metrics.txt")],
    )
    .failure();
    assert!(
        stderr(&run).contains("not a Splunk mstats export"),
        "{}",
        stderr(&run)
    );
    assert!(tree(&store).is_empty());

    // A missing flag is named.
    let run = ingest(
        &store,
        "prometheus",
        &[],
        &[&fixture("cadvisor-metrics.txt")],
    )
    .failure();
    assert!(stderr(&run).contains("--cluster"), "{}", stderr(&run));
}

#[test]
fn splunk_csv_rows_are_checked_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let csv = dir.path().join("mstats.csv");
    std::fs::write(
        &csv,
        "_time,k8s.cluster.name,k8s.pod.name,k8s.node.name,direction,io\n\
         2026-03-01T10:00:00.000+00:00,prod,web-5d9c7b8f6d-x2x4z,node-1,receive,1200.5\n\
         1772359210,prod,web-5d9c7b8f6d-x2x4z,node-1,transmit,300\n\
         1772359220,prod,web-5d9c7b8f6d-x2x4z,node-1,transmit,-5\n\
         1772359230,prod,web-5d9c7b8f6d-x2x4z,node-1,transmit,NaN\n\
         4102444800,prod,web-5d9c7b8f6d-x2x4z,node-1,transmit,7\n\
         1772359240,prod,web-5d9c7b8f6d-x2x4z,node-1\n\
         yesterday,prod,web-5d9c7b8f6d-x2x4z,node-1,receive,1\n\
         1772359250,prod,web-5d9c7b8f6d-x2x4z,node-1,receive,0\n",
    )
    .unwrap();
    let run = ingest(&store, "splunk-csv", &[], &[&csv]).failure();
    assert!(stdout(&run).contains("3 rows written"), "{}", stdout(&run));
    assert!(stdout(&run).contains("5 rejected"), "{}", stdout(&run));
    let reasons: Vec<(u64, String)> = {
        let file = tree(&store)
            .into_iter()
            .find(|f| f.ends_with(".rejects.jsonl"))
            .unwrap();
        std::fs::read_to_string(store.join(file))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|r| {
                (
                    r["line"].as_u64().unwrap(),
                    r["reason"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let mut lines: Vec<u64> = reasons.iter().map(|(l, _)| *l).collect();
    lines.sort();
    assert_eq!(lines, vec![4, 5, 6, 7, 8], "{reasons:?}");
    let reason = |line: u64| &reasons.iter().find(|(l, _)| *l == line).unwrap().1;
    assert!(reason(4).contains("negative delta"));
    assert!(reason(5).contains("NaN"));
    assert!(reason(6).contains("ahead of"));
    assert!(reason(7).contains("fields"));
    assert!(reason(8).contains("_time"));
    let stored = rows(
        &store,
        "SELECT sum(value) AS total, count(*) AS n FROM metrics",
    );
    assert_eq!(stored[0]["total"], 1500.5);
}

#[test]
fn compaction_merges_closed_hours_and_readers_never_see_both() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    for (index, seconds) in [0, 10, 20, 30].into_iter().enumerate() {
        let path = dir.path().join(format!("{index}.jsonl"));
        let request = network_request(
            seconds,
            1000.0 * (seconds + 1) as f64,
            10.0 * (seconds + 1) as f64,
        );
        std::fs::write(&path, serde_json::to_string(&request).unwrap()).unwrap();
        ingest(&store, "otlp-json", &[], &[&path]).success();
    }
    let hour = store.join("dt=2026-03-01/hour=10");
    let before: Vec<String> = tree(&hour);
    assert_eq!(before.len(), 3, "{before:?}");
    let expected = network_rows(&store);

    // An open hour is left alone.
    let mut command = iodrift();
    command
        .args(["compact", "--before", "2026-03-01T10:30:00Z", "--store"])
        .arg(&store);
    let out = String::from_utf8(command.assert().success().get_output().stdout.clone()).unwrap();
    assert!(out.contains("compacted 0 hours"), "{out}");

    let mut command = iodrift();
    command
        .args(["compact", "--before", "2026-03-01T11:00:00Z", "--store"])
        .arg(&store);
    let out = String::from_utf8(command.assert().success().get_output().stdout.clone()).unwrap();
    assert!(out.contains("compacted 1 hours (3 files, 6 rows)"), "{out}");
    let after = tree(&hour);
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(after[0].starts_with("compacted-"));
    assert_eq!(network_rows(&store), expected);

    // As if compaction had died before deleting: a replaced file is back beside the merged one.
    std::fs::copy(hour.join(&after[0]), hour.join(&before[0])).unwrap();
    assert_eq!(
        network_rows(&store),
        expected,
        "a replaced file must not count"
    );
}

/// OTLP's owner attributes (the Collector's `k8sattributes` processor) land in the store's
/// `workload` column, a CronJob's Job pod under its CronJob; files without the column (as
/// `generate` writes them) read as null beside them, compaction keeps both, and drift takes the
/// column over Kubernetes' naming rules where it is set.
#[test]
fn otlp_owner_attributes_fill_the_workload_column() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut generate = iodrift();
    generate
        .args([
            "generate",
            "--hours",
            "1",
            "--services",
            "1",
            "--replicas",
            "2",
        ])
        .args(["--start", "2026-03-01T10:00:00Z", "--out"])
        .arg(&store);
    generate.assert().success();
    let pods: [(&str, &[(&str, &str)]); 3] = [
        // Named unlike its owner: the naming rules would call it `checkout-blue`.
        (
            "checkout-blue-7d9f5b8c4d-x2kqp",
            &[
                ("k8s.deployment.name", "checkout"),
                ("k8s.replicaset.name", "checkout-blue-7d9f5b8c4d"),
            ],
        ),
        (
            "report-29538720-q7z2m",
            &[
                ("k8s.job.name", "report-29538720"),
                ("k8s.cronjob.name", "nightly-report"),
            ],
        ),
        ("bare-pod", &[]),
    ];
    let lines: Vec<String> = [0, 10, 20]
        .into_iter()
        .flat_map(|seconds| {
            pods.iter().map(move |(pod, owners)| {
                let bytes = 1000.0 * (seconds + 1) as f64;
                serde_json::to_string(&pod_network_request(pod, owners, seconds, bytes, bytes))
                    .unwrap()
            })
        })
        .collect();
    let path = dir.path().join("owners.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    ingest(&store, "otlp-json", &[], &[&path]).success();

    let owners = |store: &Path| -> Vec<(String, Value, u64)> {
        rows(
            store,
            "SELECT CAST(pod AS VARCHAR) AS pod, CAST(workload AS VARCHAR) AS workload, \
             count(*) AS n FROM metrics WHERE cluster = 'prod' GROUP BY 1, 2 ORDER BY 1",
        )
        .into_iter()
        .map(|r| {
            let n = r["n"].as_u64().unwrap();
            (
                r["pod"].as_str().unwrap().to_string(),
                r["workload"].clone(),
                n,
            )
        })
        .collect()
    };
    let expected = vec![
        ("bare-pod".to_string(), Value::Null, 4),
        (
            "checkout-blue-7d9f5b8c4d-x2kqp".to_string(),
            Value::from("checkout"),
            4,
        ),
        (
            "report-29538720-q7z2m".to_string(),
            Value::from("nightly-report"),
            4,
        ),
    ];
    assert_eq!(owners(&store), expected);
    let generated = "SELECT count(*) AS n, count(workload) AS named FROM metrics \
                     WHERE cluster <> 'prod'";
    let before = rows(&store, generated);
    assert!(before[0]["n"].as_u64().unwrap() > 0, "{before:?}");
    assert_eq!(before[0]["named"], 0, "{before:?}");

    let hour = store.join("dt=2026-03-01/hour=10");
    assert_eq!(tree(&hour).len(), 2, "{:?}", tree(&hour));
    let mut compact = iodrift();
    compact
        .args(["compact", "--before", "2026-03-01T11:00:00Z", "--store"])
        .arg(&store);
    compact.assert().success();
    assert_eq!(tree(&hour).len(), 1, "{:?}", tree(&hour));
    assert_eq!(owners(&store), expected);
    assert_eq!(rows(&store, generated), before);

    let drift = rows(
        &store,
        "SELECT DISTINCT CAST(pod AS VARCHAR) AS pod, CAST(workload AS VARCHAR) AS workload \
         FROM drift.pod_levels WHERE cluster = 'prod' ORDER BY 1",
    );
    let drift: Vec<(&str, &str)> = drift
        .iter()
        .map(|r| (r["pod"].as_str().unwrap(), r["workload"].as_str().unwrap()))
        .collect();
    assert_eq!(
        drift,
        vec![
            ("bare-pod", "bare-pod"),
            ("checkout-blue-7d9f5b8c4d-x2kqp", "checkout"),
            ("report-29538720-q7z2m", "nightly-report"),
        ]
    );
}
