//! Every command run through the binary: output formats and the golden table, `--filter`,
//! `--output`, the SQL REPL and its stage views, `demo`, and one clear error per bad input.

mod common;

use std::path::Path;

use common::{DAY_END, NOW, START, iodrift, point, query, stdout_of, write_parquet, write_store};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use datafusion::parquet::arrow::ArrowWriter;
use predicates::prelude::*;
use predicates::str::contains;

fn detect(store: &Path, baselines: &Path) -> assert_cmd::Command {
    let mut command = iodrift();
    command
        .args(["detect", "--now", NOW, "--store"])
        .arg(store)
        .arg("--baselines")
        .arg(baselines);
    command
}

/// Compares with `tests/golden/NAME`, or rewrites it when UPDATE_GOLDEN=1.
fn assert_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert_eq!(actual, expected, "differs from {}", path.display());
}

#[test]
fn findings_in_every_format() {
    let generated = common::generate(3);
    let baselines = generated.baselines();
    let json: Vec<serde_json::Value> = serde_json::from_str(&stdout_of(
        detect(&generated.store, &baselines).args(["--format", "json"]),
    ))
    .unwrap();
    assert!(json.len() >= 2);
    let fields: Vec<&str> = json[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for field in common::FINDING_FIELDS {
        assert!(fields.contains(&field), "{field} missing from {fields:?}");
    }

    let ndjson = stdout_of(detect(&generated.store, &baselines).args(["--format", "ndjson"]));
    let lines: Vec<serde_json::Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, json);

    let csv = stdout_of(detect(&generated.store, &baselines).args(["--format", "csv"]));
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        common::FINDING_FIELDS
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), json.len());
    let anomalies: Vec<String> = serde_json::from_str(&records[0][5]).unwrap();
    assert_eq!(serde_json::json!(anomalies), json[0]["anomalies"]);

    let table = stdout_of(detect(&generated.store, &baselines).args(["--filter", "count < 12"]));
    assert_golden("detect_seed3_count_below_12.txt", &table);
}

#[test]
fn output_file_is_written_whole_and_filter_applies() {
    let generated = common::generate(3);
    let baselines = generated.baselines();
    let out = generated.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let file = out.join("findings.ndjson");
    detect(&generated.store, &baselines)
        .args(["--format", "ndjson", "--output"])
        .arg(&file)
        .assert()
        .success()
        .stdout("")
        .stderr(contains("findings from drift, network-io, network-io-ratio over [2026-03-02T00:50:00Z, 2026-03-02T01:50:00Z)"));
    let all: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        1,
        "no temporary file left"
    );

    let host = all[0]["host"].as_str().unwrap().to_string();
    let filtered: Vec<serde_json::Value> =
        serde_json::from_str(&stdout_of(detect(&generated.store, &baselines).args([
            "--format",
            "json",
            "--filter",
            &format!("host <> '{host}' AND count > 5"),
        ])))
        .unwrap();
    assert_eq!(
        filtered.len(),
        all.iter().filter(|f| f["host"] != host.as_str()).count()
    );
    assert!(filtered.len() < all.len());

    let only_ratio: Vec<serde_json::Value> =
        serde_json::from_str(&stdout_of(detect(&generated.store, &baselines).args([
            "--format",
            "json",
            "--filter",
            "\"k8s.service\" LIKE '%' AND rule = 'network-io-ratio'",
        ])))
        .unwrap();
    assert_eq!(
        only_ratio.len(),
        all.iter()
            .filter(|f| f["rule"] == "network-io-ratio")
            .count()
    );

    detect(&generated.store, &baselines)
        .args(["--filter", "no_such_field = 1"])
        .assert()
        .failure()
        .stderr(contains("bad --filter \"no_such_field = 1\""));
    detect(&generated.store, &baselines)
        .args(["--filter", "host = "])
        .assert()
        .failure()
        .stderr(contains("bad --filter"));

    // A failing run leaves an existing output file untouched.
    let before = std::fs::read(&file).unwrap();
    detect(&generated.store, &baselines)
        .args(["--filter", "nope(", "--output"])
        .arg(&file)
        .assert()
        .failure();
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn an_empty_window_is_zero_findings_and_a_warning() {
    let generated = common::generate(3);
    let baselines = generated.baselines();
    detect(&generated.store, &baselines)
        .args([
            "--earliest",
            "2026-04-01T00:00:00Z",
            "--latest",
            "2026-04-01T02:30:00Z",
            "--format",
            "json",
        ])
        .assert()
        .success()
        .stdout("[]\n")
        .stderr(
            contains("no data in 3 of 3 hours")
                .and(contains("[2026-04-01T00:00:00Z, 2026-04-01T03:00:00Z)")),
        );
    detect(&generated.store, &baselines)
        .args([
            "--earliest",
            "2026-03-02T01:00:00Z",
            "--latest",
            "2026-03-02T03:00:00Z",
        ])
        .assert()
        .success()
        .stderr(
            contains("no data in 1 of 2 hours")
                .and(contains("[2026-03-02T02:00:00Z, 2026-03-02T03:00:00Z)")),
        );
}

#[test]
fn a_window_reads_only_its_own_hours() {
    let generated = common::generate(3);
    let baselines = generated.baselines();
    // Corrupt files and a malformed partition elsewhere in the store cost a detection nothing.
    let elsewhere = generated.store.join("dt=2026-03-01/hour=05");
    std::fs::write(elsewhere.join("corrupt.parquet"), b"not parquet at all").unwrap();
    std::fs::create_dir_all(generated.store.join("dt=yesterday/hour=5")).unwrap();
    detect(&generated.store, &baselines).assert().success();

    // Inside the window the same file is an error naming it.
    let inside = generated
        .store
        .join("dt=2026-03-02/hour=01/corrupt.parquet");
    std::fs::write(&inside, b"PAR1 truncated").unwrap();
    detect(&generated.store, &baselines)
        .assert()
        .failure()
        .stderr(
            contains("store file")
                .and(contains("dt=2026-03-02/hour=01/corrupt.parquet"))
                .and(contains("not a readable Parquet file")),
        );
}

#[test]
fn bad_stores_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let baselines = dir.path().join("baselines");
    std::fs::create_dir_all(&baselines).unwrap();

    let missing = dir.path().join("missing");
    iodrift()
        .args(["sql", "-c", "SELECT 1", "--store"])
        .arg(&missing)
        .assert()
        .failure()
        .stderr(contains("missing"));

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    iodrift()
        .args(["baseline", "--now", NOW, "--store"])
        .arg(&empty)
        .arg("--out")
        .arg(&baselines)
        .assert()
        .failure()
        .stderr(contains("empty").and(contains("holds no dt=YYYY-MM-DD/hour=HH partitions")));

    let malformed = dir.path().join("malformed");
    write_store(
        &malformed,
        &[point("2026-03-01T10:00:00Z", "a", "transmit", 1.0)],
    );
    std::fs::create_dir_all(malformed.join("dt=2026-03-01/hour=7")).unwrap();
    iodrift()
        .args(["sql", "-c", "SELECT count(*) FROM metrics", "--store"])
        .arg(&malformed)
        .assert()
        .failure()
        .stderr(contains("malformed partition").and(contains("dt=2026-03-01/hour=7")));

    let mismatched = dir.path().join("mismatched");
    write_store(
        &mismatched,
        &[point("2026-03-01T10:00:00Z", "a", "transmit", 1.0)],
    );
    let baseline = |store: &Path| {
        let mut command = iodrift();
        command
            .args([
                "baseline",
                "--earliest",
                "2026-03-01T10:00:00Z",
                "--latest",
                "2026-03-01T11:00:00Z",
                "--store",
            ])
            .arg(store)
            .arg("--out")
            .arg(&baselines);
        command
    };
    let write = |path: &Path, batch: RecordBatch| {
        let mut writer =
            ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None)
                .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    };
    let values_only = RecordBatch::try_from_iter([(
        "value",
        Arc::new(Float64Array::from(vec![12.0])) as ArrayRef,
    )])
    .unwrap();
    write(
        &mismatched.join("dt=2026-03-01/hour=10/wrong.parquet"),
        values_only,
    );
    baseline(&mismatched).assert().failure().stderr(contains(
        "dt=2026-03-01/hour=10/wrong.parquet: missing column \"time\"",
    ));

    let typed = dir.path().join("typed");
    write_store(
        &typed,
        &[point("2026-03-01T10:00:00Z", "a", "transmit", 1.0)],
    );
    let good = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(typed.join("dt=2026-03-01/hour=10/part-0.parquet")).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap()
    .next()
    .unwrap()
    .unwrap();
    let mut columns: Vec<(String, ArrayRef)> = good
        .schema()
        .fields()
        .iter()
        .zip(good.columns())
        .map(|(f, c)| (f.name().clone(), c.clone()))
        .collect();
    columns.last_mut().unwrap().1 = Arc::new(StringArray::from(vec!["12"]));
    write(
        &typed.join("dt=2026-03-01/hour=10/strings.parquet"),
        RecordBatch::try_from_iter(columns).unwrap(),
    );
    baseline(&typed).assert().failure().stderr(
        contains("dt=2026-03-01/hour=10/strings.parquet")
            .and(contains("value"))
            .and(contains("Utf8")),
    );

    // A row filed under the wrong hour would split its 10 s span in two.
    let misfiled = dir.path().join("misfiled");
    write_store(
        &misfiled,
        &[point("2026-03-01T10:00:00Z", "a", "transmit", 1.0)],
    );
    write_parquet(
        &misfiled.join("dt=2026-03-01/hour=10/late.parquet"),
        &[&point("2026-03-01T11:00:05Z", "a", "transmit", 2.0)],
    );
    baseline(&misfiled).assert().failure().stderr(
        contains("dt=2026-03-01/hour=10/late.parquet")
            .and(contains("2026-03-01T11:00:05.000Z"))
            .and(contains("outside its partition hour dt=2026-03-01/hour=10")),
    );
    assert_eq!(
        std::fs::read_dir(&baselines).unwrap().count(),
        0,
        "nothing written on failure"
    );
}

#[test]
fn bad_baselines_are_named_with_their_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    write_store(
        &store,
        &[point("2026-03-01T10:00:00Z", "a", "transmit", 1.0)],
    );
    let baselines = dir.path().join("baselines");
    std::fs::create_dir_all(&baselines).unwrap();
    let run = || {
        let mut command = iodrift();
        command
            .args([
                "detect",
                "--earliest",
                "2026-03-01T10:00:00Z",
                "--latest",
                "2026-03-01T11:00:00Z",
                "--store",
            ])
            .arg(&store)
            .arg("--baselines")
            .arg(&baselines);
        command
    };
    run()
        .assert()
        .failure()
        .stderr(contains("drift_baseline.csv"));
    run()
        .args(["--rule", "network-io"])
        .assert()
        .failure()
        .stderr(contains("k8s_container_network_io_baseline.csv"));

    let header = "key,avg_outbound_network_io,avg_inbound_network_io,stdev_outbound_network_io,stdev_inbound_network_io,count,last_seen\n";
    std::fs::write(
        baselines.join("k8s_container_network_io_baseline.csv"),
        format!("{header}c1:a,1,2,3,4,5,6\nc1:b,1,x,3,4,5,6\n"),
    )
    .unwrap();
    run()
        .args(["--rule", "network-io"])
        .assert()
        .failure()
        .stderr(contains("k8s_container_network_io_baseline.csv row 3").and(contains("\"x\"")));

    std::fs::write(
        baselines.join("k8s_container_network_io_baseline.csv"),
        "key,avg,count\nc1:a,1,2\n",
    )
    .unwrap();
    run()
        .args(["--rule", "network-io"])
        .assert()
        .failure()
        .stderr(contains("k8s_container_network_io_baseline.csv").and(contains("header")));

    std::fs::write(
        baselines.join("k8s_container_network_io_baseline.csv"),
        format!("{header}c1:a,1,2,3,4,5,6\n"),
    )
    .unwrap();
    run().args(["--rule", "network-io"]).assert().success();
}

#[test]
fn bad_times_and_windows_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    write_store(
        &store,
        &[point("2026-03-01T10:00:00Z", "a", "transmit", 1.0)],
    );
    let baseline = |earliest: &str, latest: &str| {
        let mut command = iodrift();
        command
            .args([
                "baseline",
                "--now",
                NOW,
                "--earliest",
                earliest,
                "--latest",
                latest,
                "--store",
            ])
            .arg(&store)
            .arg("--out")
            .arg(dir.path().join("out"));
        command
    };
    baseline("-3x@d", "now")
        .assert()
        .failure()
        .stderr(contains("bad time \"-3x@d\" for --earliest"));
    baseline("-1d", "2026-13-01T00:00:00Z")
        .assert()
        .failure()
        .stderr(contains("--latest"));
    baseline(DAY_END, START).assert().failure().stderr(contains(
        "bad window: latest 2026-03-01T00:00:00Z is not after earliest 2026-03-02T00:00:00Z",
    ));
    iodrift()
        .args([
            "detect",
            "--now",
            "yesterday",
            "--baselines",
            "b",
            "--store",
        ])
        .arg(&store)
        .assert()
        .failure()
        .stderr(contains("--now"));
    assert!(!dir.path().join("out").exists());
}

#[test]
fn sql_shows_every_stage() {
    let generated = common::generate(3);
    let baselines = generated.baselines();
    let window = [
        "--earliest",
        "2026-03-02T00:50:00Z",
        "--latest",
        "2026-03-02T01:50:00Z",
    ];
    let count = |view: &str| {
        let mut command = iodrift();
        command
            .args(["sql", "--format", "csv", "--store"])
            .arg(&generated.store)
            .arg("--baselines")
            .arg(&baselines)
            .args(window)
            .args(["-c", &format!("SELECT count(*) AS n FROM {view}")]);
        stdout_of(&mut command)
            .lines()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    for view in [
        "metrics",
        "spans",
        "pod_network_io",
        "findings",
        "k8s_container_network_io_baseline",
        "k8s_container_network_io_ratio_baseline",
        // Each rule's views, in the rule's own schema.
        "network_io.baseline",
        "network_io.rollup",
        "network_io.bucket_anomalies",
        "network_io.anomalous_buckets",
        "network_io.findings",
        "network_io_ratio.service_network_io",
        "network_io_ratio.baseline",
        "network_io_ratio.rollup",
        "network_io_ratio.bucket_anomalies",
        "network_io_ratio.anomalous_buckets",
        "network_io_ratio.findings",
    ] {
        assert!(count(view) > 0, "{view} is empty");
    }
    // The whole store by default: as many baseline keys as the baseline command wrote.
    let keys = query(
        &generated.store,
        None,
        "SELECT count(*) AS n FROM network_io.baseline WHERE last_seen < 1772409600",
    );
    assert!(keys[0]["n"].as_u64().unwrap() > 0);

    let service = query(
        &generated.store,
        None,
        "SELECT k8s_service('web-7d9f8b6c5d-x2x4z') AS s, escu_anomalies('higher than average', 'm', 10.0, 1.0, 2.0) AS t",
    );
    assert_eq!(service[0]["s"], "web");
    assert_eq!(
        service[0]["t"],
        "m higher than average by 4.5 Standard Deviations. m=10 avg_m=1 'stdev_m'=2"
    );
}

#[test]
fn sql_files_several_statements_and_errors() {
    let generated = common::generate(3);
    let script = generated.dir.path().join("q.sql");
    std::fs::write(
        &script,
        "-- a comment\nCREATE VIEW busy AS SELECT pod, sum(value) AS bytes FROM metrics\n  WHERE metric = 'k8s.pod.network.io' GROUP BY pod;\nSELECT count(*) AS pods FROM busy;\n",
    )
    .unwrap();
    let csv = stdout_of(
        iodrift()
            .args(["sql", "--format", "csv", "--store"])
            .arg(&generated.store)
            .arg("-f")
            .arg(&script),
    );
    assert!(csv.starts_with("pods\n"), "{csv}");
    assert!(csv.lines().nth(1).unwrap().parse::<u64>().unwrap() > 10);

    iodrift()
        .args(["sql", "--store"])
        .arg(&generated.store)
        .args(["-c", "SELECT nope FROM metrics"])
        .assert()
        .failure()
        .stderr(contains("nope"));
}

#[test]
fn the_repl_reads_piped_input_and_goes_on_after_errors() {
    let generated = common::generate(3);
    let baselines = generated.baselines();
    let assert = iodrift()
        .args(["sql", "--store"])
        .arg(&generated.store)
        .arg("--baselines")
        .arg(&baselines)
        .write_stdin(
            "SELEC broken;\nSELECT count(*) AS spans_total\n  FROM spans;\n\\d\n\\d spans\n\\format csv\nSELECT 41 + 1 AS answer;\n\\bogus\n\\q\nSELECT 'not reached';\n",
        )
        .assert()
        .success();
    let output = assert.get_output();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SELEC"), "{stderr}");
    assert!(stderr.contains("unknown command \"\\\\bogus\""), "{stderr}");
    assert!(stdout.contains("spans_total"), "{stdout}");
    assert!(stdout.contains("bucket_anomalies"), "{stdout}");
    assert!(stdout.contains("| service "), "{stdout}");
    assert!(stdout.contains("answer\n42\n"), "{stdout}");
    assert!(!stdout.contains("not reached"), "{stdout}");
}

#[test]
fn generate_is_deterministic_and_realistic() {
    let a = common::generate(11);
    let b = common::generate(11);
    let listing = |root: &Path| {
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for day in std::fs::read_dir(root).unwrap() {
            for hour in std::fs::read_dir(day.unwrap().path()).unwrap() {
                for file in std::fs::read_dir(hour.unwrap().path()).unwrap() {
                    let path = file.unwrap().path();
                    files.push((
                        path.strip_prefix(root).unwrap().display().to_string(),
                        std::fs::read(&path).unwrap(),
                    ));
                }
            }
        }
        files.sort();
        files
    };
    let files = listing(&a.store);
    assert_eq!(files.len(), 26);
    assert!(files == listing(&b.store), "same seed, same bytes");
    assert_eq!(
        std::fs::read_to_string(a.dir.path().join("store.labels.json")).unwrap(),
        std::fs::read_to_string(b.dir.path().join("store.labels.json")).unwrap()
    );

    let pods = query(
        &a.store,
        None,
        "SELECT DISTINCT pod, k8s_service(pod) AS service FROM metrics ORDER BY pod",
    );
    let names: Vec<&str> = pods.iter().map(|r| r["pod"].as_str().unwrap()).collect();
    let deployment = regex::Regex::new(
        r"^[a-z0-9-]+-[bcdfghjklmnpqrstvwxz2456789]{6,10}-[bcdfghjklmnpqrstvwxz2456789]{5}$",
    )
    .unwrap();
    assert!(
        names.iter().filter(|n| deployment.is_match(n)).count() >= 8,
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with("-0")),
        "a StatefulSet pod: {names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("kube-proxy-")),
        "static pods: {names:?}"
    );
    assert!(names.iter().all(|n| n.len() <= 63), "{names:?}");

    let spans = query(
        &a.store,
        None,
        "SELECT count(*) AS n FROM (SELECT pod, direction, date_bin(INTERVAL '10 seconds', time) AS b, count(*) AS points \
         FROM metrics WHERE metric = 'k8s.pod.network.io' AND interface = 'eth0' GROUP BY 1, 2, 3) WHERE points = 2",
    );
    assert!(
        spans[0]["n"].as_u64().unwrap() > 0,
        "jitter puts two scrapes in some spans"
    );
    let interfaces = query(
        &a.store,
        None,
        "SELECT count(DISTINCT interface) AS n FROM metrics",
    );
    assert!(interfaces[0]["n"].as_u64().unwrap() >= 2);
}

#[test]
fn demo_runs_the_main_job() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let stdout = stdout_of(iodrift().arg("demo").arg(&demo));
    assert!(stdout.contains("Findings of every rule"), "{stdout}");
    assert!(stdout.contains("network-io-ratio"), "{stdout}");
    // The scenarios of the window, each rule's verdict beside them, and its false alerts.
    let scenarios = stdout
        .split("the rules that reported the pod")
        .nth(1)
        .unwrap_or_else(|| panic!("no scenario table in {stdout}"));
    let header = scenarios.lines().nth(2).unwrap();
    for column in [
        "scenario",
        "pod",
        "kind",
        "network-io",
        "network-io-ratio",
        "drift",
    ] {
        assert!(header.contains(column), "{header}");
    }
    assert!(scenarios.contains("| exfiltration "), "{scenarios}");
    assert!(scenarios.contains("| attack "), "{scenarios}");
    assert!(scenarios.contains("| found "), "{scenarios}");
    assert!(scenarios.contains("(false alerts)"), "{scenarios}");
    for path in [
        "store.labels.json",
        "baselines/k8s_container_network_io_baseline.csv",
        "baselines/k8s_container_network_io_ratio_baseline.csv",
        "baselines/drift_baseline.csv",
        "findings.json",
    ] {
        assert!(demo.join(path).is_file(), "{path}");
    }
    let findings: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(demo.join("findings.json")).unwrap())
            .unwrap();
    assert!(!findings.is_empty());
}

/// `data/` holds a sample store and its baselines; recomputing them gives the same bytes.
#[test]
fn the_sample_baselines_are_what_baseline_computes_from_the_sample_store() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let out = tempfile::tempdir().unwrap();
    common::baseline_command(data.join("store"), out.path())
        .assert()
        .success();
    common::assert_same_lookups(out.path(), &data.join("baselines"));
    assert_eq!(
        std::fs::read_to_string(out.path().join("drift_baseline.csv")).unwrap(),
        std::fs::read_to_string(data.join("baselines/drift_baseline.csv")).unwrap(),
        "drift_baseline.csv"
    );
}

#[test]
fn eval_scores_the_hourly_schedule_against_the_labels() {
    let generated = common::generate(3);
    let labels = generated.dir.path().join("store.labels.json");
    let json = stdout_of(
        iodrift()
            .args(["eval", "--format", "json", "--store"])
            .arg(&generated.store)
            .arg("--labels")
            .arg(&labels),
    );
    let scores: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let row = |rule: &str, scenario: &str| {
        scores
            .iter()
            .find(|s| s["rule"] == rule && s["scenario"] == scenario)
            .unwrap_or_else(|| panic!("no {rule} {scenario} row in {json}"))
            .clone()
    };
    // Sustained exfiltration and floods are caught in every hour they cover ten minutes of.
    for scenario in ["exfiltration", "inbound-flood"] {
        let score = row("network-io", scenario);
        assert!(score["true_positives"].as_u64().unwrap() >= 1, "{score}");
        assert_eq!(score["windows_found"], score["expected_windows"], "{score}");
    }
    for rule in ["network-io", "network-io-ratio"] {
        let all = row(rule, "all");
        let sum = |field: &str| -> u64 {
            scores
                .iter()
                .filter(|s| s["rule"] == rule && s["scenario"] != "all")
                .map(|s| s[field].as_u64().unwrap())
                .sum()
        };
        for field in [
            "findings",
            "true_positives",
            "false_positives",
            "expected_windows",
            "windows_found",
        ] {
            assert_eq!(all[field].as_u64().unwrap(), sum(field), "{rule} {field}");
        }
        // detection-scoring.md's figures, from the counts.
        let (tp, findings) = (sum("true_positives") as f64, sum("findings") as f64);
        let precision = all["precision"].as_f64().unwrap();
        assert!((precision - tp / findings).abs() < 1e-3, "{all}");
        let recall = all["window_recall"].as_f64().unwrap();
        let f1 = all["f1"].as_f64().unwrap();
        if precision + recall > 0.0 {
            assert!(
                (f1 - 2.0 * precision * recall / (precision + recall)).abs() < 2e-3,
                "{all}"
            );
        }
        assert!(
            all["attacks_found"].as_u64() <= all["attacks"].as_u64(),
            "{all}"
        );
        assert!(
            all["false_alerts_per_day"].as_f64().unwrap() >= 0.0,
            "{all}"
        );
    }

    let bad = generated.dir.path().join("bad.json");
    std::fs::write(&bad, "{\"seed\": 1}").unwrap();
    iodrift()
        .args(["eval", "--store"])
        .arg(&generated.store)
        .arg("--labels")
        .arg(&bad)
        .assert()
        .failure()
        .stderr(contains("bad.json").and(contains("labels")));
}
