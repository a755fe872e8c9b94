//! The SQL plans of both baselines and both detections checked against an independent Rust
//! computation of `escu-semantics.md` over the same rows, and hand-made stores for its edge cases.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use datafusion::arrow::array::UInt32Array;
use datafusion::parquet::arrow::ArrowWriter;

use common::reference::{self, BaselineRows};
use common::{DAY_END, START, iodrift, point, query, stdout_of, write_store};

fn millis(time: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(time)
        .unwrap()
        .timestamp_millis()
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()),
        _ => false,
    }
}

/// Same keys, counts and last_seen; statistics equal up to summation order.
fn assert_same_baseline(name: &str, ours: &BaselineRows, expected: &BaselineRows) {
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{name}: keys"
    );
    for (key, (stats, count, last_seen)) in expected {
        let (our_stats, our_count, our_last_seen) = &ours[key];
        assert_eq!(our_count, count, "{name} {key}: count");
        assert_eq!(our_last_seen, last_seen, "{name} {key}: last_seen");
        for (i, (a, b)) in our_stats.iter().zip(stats).enumerate() {
            assert!(close(*a, *b), "{name} {key}: statistic {i}: {a:?} vs {b:?}");
        }
    }
}

#[test]
fn baselines_match_the_reference() {
    let generated = common::generate(7);
    let baselines = generated.baselines();
    let rows = reference::read_store(&generated.store);
    let spans = reference::spans(&rows, millis(START), millis(DAY_END));
    assert!(spans.len() > 10_000, "a day of spans, got {}", spans.len());

    let io = reference::read_lookup(&baselines.join("k8s_container_network_io_baseline.csv"));
    let expected_io = reference::network_io_baseline(&spans);
    assert!(expected_io.len() >= 10);
    assert_same_baseline("network-io", &io, &expected_io);

    let ratio =
        reference::read_lookup(&baselines.join("k8s_container_network_io_ratio_baseline.csv"));
    let expected_ratio = reference::network_io_ratio_baseline(&spans);
    assert_same_baseline("network-io-ratio", &ratio, &expected_ratio);

    let header = |file: &str| {
        std::fs::read_to_string(baselines.join(file))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        header("k8s_container_network_io_baseline.csv"),
        "key,avg_outbound_network_io,avg_inbound_network_io,stdev_outbound_network_io,stdev_inbound_network_io,count,last_seen"
    );
    assert_eq!(
        header("k8s_container_network_io_ratio_baseline.csv"),
        "key,avg_inbound:outbound,avg_outbound:inbound,stdev_inbound:outbound,stdev_outbound:inbound,count,last_seen"
    );
    for twin in [
        "k8s_container_network_io_baseline.parquet",
        "k8s_container_network_io_ratio_baseline.parquet",
    ] {
        assert!(baselines.join(twin).is_file(), "{twin}");
    }
}

/// Exact sums make a baseline independent of row order and of how many partitions DataFusion
/// splits the scan into: the lookups are the same bytes on 1, 3 or 16 cores.
#[test]
fn baselines_are_the_same_bytes_whatever_the_parallelism() {
    let generated = common::generate(5);
    let run = |partitions: &str| {
        let out = generated.dir.path().join(format!("baselines-{partitions}"));
        generated
            .baseline_command(&out)
            .env("DATAFUSION_EXECUTION_TARGET_PARTITIONS", partitions)
            .env("DATAFUSION_EXECUTION_BATCH_SIZE", "1000")
            .assert()
            .success();
        [
            "k8s_container_network_io_baseline.csv",
            "k8s_container_network_io_ratio_baseline.csv",
        ]
        .map(|name| std::fs::read_to_string(out.join(name)).unwrap())
    };
    let one = run("1");
    assert_eq!(run("3"), one);
    assert_eq!(run("16"), one);
    iodrift()
        .env("DATAFUSION_EXECUTION_TARGET_PARTITIONS", "many")
        .args(["baseline", "--store"])
        .arg(&generated.store)
        .arg("--out")
        .arg(generated.dir.path().join("never"))
        .assert()
        .failure()
        .stderr(predicates::str::contains("DATAFUSION_"));
}

/// Copies `store` with each hour's rows reversed and split over two files that declare no sort
/// order, as an unsorted ingest would leave them.
fn refile_unsorted(store: &Path, copy: &Path) {
    use datafusion::arrow::compute::{concat_batches, take_record_batch};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    for day in std::fs::read_dir(store).unwrap() {
        for hour in std::fs::read_dir(day.unwrap().path()).unwrap() {
            let hour = hour.unwrap().path();
            let reader = ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(hour.join("generated.parquet")).unwrap(),
            )
            .unwrap();
            let schema = reader.schema().clone();
            let batches: Vec<_> = reader.build().unwrap().map(Result::unwrap).collect();
            let rows = concat_batches(&schema, &batches).unwrap();
            let reversed = UInt32Array::from_iter_values((0..rows.num_rows() as u32).rev());
            let rows = take_record_batch(&rows, &reversed).unwrap();
            let half = rows.num_rows() / 2;
            let target = copy.join(hour.strip_prefix(store).unwrap());
            std::fs::create_dir_all(&target).unwrap();
            for (name, part) in [
                ("a", rows.slice(0, half)),
                ("b", rows.slice(half, rows.num_rows() - half)),
            ] {
                let file =
                    std::fs::File::create(target.join(format!("part-{name}.parquet"))).unwrap();
                let mut writer = ArrowWriter::try_new(file, schema.clone(), None).unwrap();
                writer.write(&part).unwrap();
                writer.close().unwrap();
            }
        }
    }
}

/// The span stage streams in the files' declared order (through `SortedExactAvgExec`); rows
/// filed in any order, over several files an hour, give the same bytes through the unordered path.
#[test]
fn baselines_do_not_depend_on_how_rows_are_filed() {
    let generated = common::generate(6);
    let unsorted = generated.dir.path().join("unsorted");
    refile_unsorted(&generated.store, &unsorted);
    let span_plan = |store: &Path| {
        stdout_of(
            iodrift()
                .env("DATAFUSION_EXECUTION_TARGET_PARTITIONS", "2")
                .args([
                    "sql",
                    "--format",
                    "csv",
                    "-c",
                    "EXPLAIN SELECT * FROM spans",
                    "--store",
                ])
                .arg(store),
        )
    };
    // Sorted files: hour, cluster, pod, direction and bucket arrive in order, so the spans are
    // grouped by iodrift's streaming operator, by node within each run of those.
    let sorted = span_plan(&generated.store);
    assert!(
        sorted.contains("SortedExactAvgExec: sorted=[hour, cluster, pod, direction, date_bin(")
            && sorted.contains("gby=[node], aggr=[exact_avg("),
        "{sorted}"
    );
    // Unsorted files: only the hour partition is in order, and DataFusion's aggregation groups.
    let unsorted_plan = span_plan(&unsorted);
    assert!(
        unsorted_plan.contains("ordering_mode=PartiallySorted([0])")
            && !unsorted_plan.contains("SortedExactAvgExec"),
        "{unsorted_plan}"
    );

    let sorted_out = generated.baselines();
    let unsorted_out = generated.dir.path().join("unsorted-baselines");
    common::baseline_command(&unsorted, &unsorted_out)
        .assert()
        .success();
    common::assert_same_lookups(&unsorted_out, &sorted_out);
}

#[derive(Debug, serde::Deserialize)]
struct Finding {
    rule: String,
    #[serde(rename = "k8s.cluster.name")]
    cluster: String,
    host: String,
    #[serde(rename = "k8s.pod.name")]
    pod: String,
    #[serde(rename = "k8s.service")]
    service: String,
    count: i64,
    anomalies: Vec<String>,
    risk_score: i64,
    risk_message: String,
    mitre_attack_id: String,
    window_start: String,
    window_end: String,
}

#[test]
fn detections_match_the_reference_text_for_text() {
    let generated = common::generate(3);
    let baselines = generated.baselines();
    // The ESCU ports are held to the reference; drift, run beside them, is not an ESCU rule.
    let findings: Vec<Finding> = generated
        .findings::<Finding>(&baselines)
        .into_iter()
        .filter(|f| f.rule != "drift")
        .collect();

    let rows = reference::read_store(&generated.store);
    let spans = reference::spans(
        &rows,
        millis("2026-03-02T00:50:00Z"),
        millis("2026-03-02T01:50:00Z"),
    );
    let expected = reference::findings(
        &spans,
        &reference::read_lookup(&baselines.join("k8s_container_network_io_baseline.csv")),
        &reference::read_lookup(&baselines.join("k8s_container_network_io_ratio_baseline.csv")),
    );
    let ours: reference::Findings = findings
        .iter()
        .map(|f| {
            (
                (
                    f.rule.clone(),
                    f.cluster.clone(),
                    f.host.clone(),
                    f.pod.clone(),
                    f.service.clone(),
                ),
                (f.count, f.anomalies.clone()),
            )
        })
        .collect();
    assert_eq!(ours.len(), findings.len(), "one finding per rule and pod");
    assert!(
        expected.keys().any(|k| k.0 == "network-io")
            && expected.keys().any(|k| k.0 == "network-io-ratio"),
        "the generated scenarios make both rules fire: {:?}",
        expected.keys()
    );
    assert_eq!(ours, expected);

    for finding in &findings {
        let (score, message) = match finding.rule.as_str() {
            "network-io" => (
                20,
                "Kubernetes Anomalous Inbound Outbound Network IO from container on host ",
            ),
            _ => (
                25,
                "Kubernetes Anomalous Inbound to Outbound Network IO Ratio from Container on host ",
            ),
        };
        assert_eq!(finding.risk_score, score);
        assert_eq!(finding.risk_message, format!("{message}{}", finding.host));
        assert_eq!(finding.mitre_attack_id, "T1204");
        assert_eq!(
            (finding.window_start.as_str(), finding.window_end.as_str()),
            ("2026-03-02T00:50:00Z", "2026-03-02T01:50:00Z")
        );
    }
}

#[test]
fn every_labelled_sustained_scenario_in_the_window_is_found() {
    let generated = common::generate(3);
    let baselines = generated.baselines();
    let labels: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(generated.dir.path().join("store.labels.json")).unwrap(),
    )
    .unwrap();
    let findings: Vec<Finding> = generated.findings(&baselines);
    let mut checked = 0;
    for label in labels["scenarios"].as_array().unwrap() {
        let (start, end) = (
            label["start"].as_str().unwrap(),
            label["end"].as_str().unwrap(),
        );
        if millis(start) >= millis("2026-03-02T01:50:00Z")
            || millis(end) <= millis("2026-03-02T00:50:00Z")
        {
            continue;
        }
        // What the ESCU rules are built to catch: volume for both, a ratio flip for the ratio rule.
        let expected: &[&str] = match label["scenario"].as_str().unwrap() {
            "exfiltration" | "inbound-flood" => &["network-io", "network-io-ratio"],
            "ratio-flip" => &["network-io-ratio"],
            _ => &[],
        };
        for rule in expected {
            assert!(
                findings
                    .iter()
                    .any(|f| f.pod == label["pod"] && f.rule == *rule),
                "{label} not reported by {rule}"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "the window holds labelled scenarios ({checked})"
    );
}

/// Stage 1 and 2 on hand-made rows: by-field nulls drop the row, interfaces and scrapes in a
/// span are averaged, other metrics and rows outside [earliest, latest) are ignored.
#[test]
fn spans_follow_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut points = vec![
        point(
            "2026-03-01T10:00:00Z",
            "web-7d9f8b6c5d-x2x4z",
            "transmit",
            100.0,
        ),
        point(
            "2026-03-01T10:00:09.999Z",
            "web-7d9f8b6c5d-x2x4z",
            "transmit",
            300.0,
        ),
        point(
            "2026-03-01T10:00:10Z",
            "web-7d9f8b6c5d-x2x4z",
            "transmit",
            50.0,
        ),
        point(
            "2026-03-01T10:00:10Z",
            "web-7d9f8b6c5d-x2x4z",
            "receive",
            10.0,
        ),
        point("2026-03-01T10:00:59.999Z", "nginx-proxy", "receive", 1.0),
    ];
    let mut other_interface = point(
        "2026-03-01T10:00:10Z",
        "web-7d9f8b6c5d-x2x4z",
        "receive",
        30.0,
    );
    other_interface.interface = Some("eth1");
    points.push(other_interface);
    let mut other_metric = point(
        "2026-03-01T10:00:10Z",
        "web-7d9f8b6c5d-x2x4z",
        "receive",
        1e9,
    );
    other_metric.metric = Some("k8s.pod.memory.working_set");
    points.push(other_metric);
    for strip in 0..4 {
        let mut p = point(
            "2026-03-01T10:00:20Z",
            "web-7d9f8b6c5d-x2x4z",
            "receive",
            1e9,
        );
        match strip {
            0 => p.cluster = None,
            1 => p.node = None,
            2 => p.pod = None,
            _ => p.direction = None,
        }
        points.push(p);
    }
    points.push(point(
        "2026-03-01T10:01:00Z",
        "web-7d9f8b6c5d-x2x4z",
        "receive",
        1e9,
    ));
    points.push(point(
        "2026-03-01T09:59:59.999Z",
        "web-7d9f8b6c5d-x2x4z",
        "receive",
        1e9,
    ));
    write_store(&store, &points);

    let rows = query(
        &store,
        None,
        "SELECT CAST(bucket AS VARCHAR) AS bucket, pod, service, key, direction, io FROM spans \
         WHERE bucket >= '2026-03-01T10:00:00Z' AND bucket < '2026-03-01T10:01:00Z' \
         ORDER BY bucket, pod, direction",
    );
    let got: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {} {}",
                r["bucket"].as_str().unwrap(),
                r["pod"],
                r["service"],
                r["key"],
                r["direction"],
                r["io"]
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            r#"2026-03-01T10:00:00Z "web-7d9f8b6c5d-x2x4z" "web" "c1:web" "transmit" 200.0"#,
            r#"2026-03-01T10:00:10Z "web-7d9f8b6c5d-x2x4z" "web" "c1:web" "receive" 20.0"#,
            r#"2026-03-01T10:00:10Z "web-7d9f8b6c5d-x2x4z" "web" "c1:web" "transmit" 50.0"#,
            r#"2026-03-01T10:00:50Z "nginx-proxy" "nginx" "c1:nginx" "receive" 1.0"#,
        ]
    );

    let out = dir.path().join("baselines");
    iodrift()
        .args([
            "baseline",
            "--earliest",
            "2026-03-01T10:00:00Z",
            "--latest",
            "2026-03-01T10:01:00Z",
            "--store",
        ])
        .arg(&store)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let io = reference::read_lookup(&out.join("k8s_container_network_io_baseline.csv"));
    let expected: BaselineRows = BTreeMap::from([
        (
            "c1:nginx".into(),
            (
                [None, Some(1.0), None, None],
                1,
                millis("2026-03-01T10:00:50Z") / 1000,
            ),
        ),
        (
            "c1:web".into(),
            (
                [Some(125.0), Some(20.0), Some(106.06601717798213), None],
                3,
                millis("2026-03-01T10:00:10Z") / 1000,
            ),
        ),
    ]);
    assert_same_baseline("network-io", &io, &expected);
}

/// Stage 3 to 6 on hand-made rows: a zero denominator nulls the ratio, σ = 0 that fires
/// silences the bucket, and a pod needs more than five anomalous buckets to be reported.
#[test]
fn detections_follow_the_contract_edge_cases() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let times: Vec<&'static str> = (0..8)
        .map(|i| &*Box::leak(format!("2026-03-01T12:0{i}:00Z").into_boxed_str()))
        .collect();
    let mut points = Vec::new();
    for (i, t) in times.iter().enumerate() {
        // "api": fires on outbound in 6 buckets; receive 0 makes outbound:inbound null.
        points.push(point(t, "api-5d8c9b7f6d-abcde", "transmit", 1000.0));
        points.push(point(t, "api-5d8c9b7f6d-abcde", "receive", 0.0));
        // "flat": fires against a σ = 0 baseline, so never reported.
        points.push(point(t, "flat-5d8c9b7f6d-abcde", "transmit", 500.0));
        // "few": fires in only five buckets.
        if i < 5 {
            points.push(point(t, "few-5d8c9b7f6d-abcde", "transmit", 1000.0));
        }
    }
    // Only the first six buckets of "api" are above its baseline.
    for p in points
        .iter_mut()
        .filter(|p| p.pod == Some("api-5d8c9b7f6d-abcde") && p.direction == Some("transmit"))
    {
        if p.time >= "2026-03-01T12:06:00Z" {
            p.value = 10.0;
        }
    }
    write_store(&store, &points);

    let baselines = dir.path().join("baselines");
    std::fs::create_dir_all(&baselines).unwrap();
    std::fs::write(
        baselines.join("k8s_container_network_io_baseline.csv"),
        "key,avg_outbound_network_io,avg_inbound_network_io,stdev_outbound_network_io,stdev_inbound_network_io,count,last_seen\n\
         c1:api,10,5,1,,100,1772323200\n\
         c1:flat,10,,0,,100,1772323200\n\
         c1:few,10,,1,,100,1772323200\n",
    )
    .unwrap();
    std::fs::write(
        baselines.join("k8s_container_network_io_ratio_baseline.csv"),
        "key,avg_inbound:outbound,avg_outbound:inbound,stdev_inbound:outbound,stdev_outbound:inbound,count,last_seen\n\
         c1:api,0,0,0.5,0.5,100,1772323200\n",
    )
    .unwrap();

    let pod_rows = query(
        &store,
        Some(&baselines),
        "SELECT \"inbound:outbound\" AS io, \"outbound:inbound\" AS oi FROM pod_network_io WHERE service = 'api' LIMIT 1",
    );
    assert_eq!(pod_rows[0]["io"], serde_json::json!(0.0));
    assert_eq!(pod_rows[0]["oi"], serde_json::Value::Null);

    let json = stdout_of(
        iodrift()
            .args([
                "detect",
                "--format",
                "json",
                "--earliest",
                "2026-03-01T12:00:00Z",
                "--latest",
                "2026-03-01T13:00:00Z",
                "--rule",
                "network-io",
                "--rule",
                "network-io-ratio",
                "--store",
            ])
            .arg(&store)
            .arg("--baselines")
            .arg(&baselines),
    );
    let findings: Vec<Finding> = serde_json::from_str(&json).unwrap();
    let summary: Vec<(String, String, i64)> = findings
        .iter()
        .map(|f| (f.rule.clone(), f.service.clone(), f.count))
        .collect();
    assert_eq!(summary, [("network-io".to_string(), "api".to_string(), 6)]);
    assert_eq!(
        findings[0].anomalies,
        [
            "outbound_network_io higher than average by 990 Standard Deviations. outbound_network_io=1000 avg_outbound_network_io=10 'stdev_outbound_network_io'=1"
        ]
    );
}

/// `--memory-limit` caps DataFusion's pool: a roomy cap changes no byte, a tiny one is a clear
/// error, a malformed one names the flag.
#[test]
fn memory_limit_caps_the_engine() {
    let generated = common::generate(5);
    let run = |limit: &str| {
        let out = generated.dir.path().join(format!("baselines-{limit}"));
        let assert = generated
            .baseline_command(&out)
            .args(["--memory-limit", limit])
            .assert();
        (assert, out)
    };
    let (roomy, out) = run("1GiB");
    roomy.success();
    let unlimited = generated.baselines();
    common::assert_same_lookups(&out, &unlimited);
    let (tiny, out) = run("1KiB");
    tiny.failure()
        .stderr(predicates::str::contains("Resources exhausted"));
    assert!(!out.join("k8s_container_network_io_baseline.csv").exists());
    let (bad, _) = run("lots");
    bad.failure()
        .stderr(predicates::str::contains("--memory-limit"));
}
