//! Every command against a real S3-compatible server (moto on 127.0.0.1): a store, baselines,
//! findings, labels and ingest inputs under `s3://` give exactly what local paths give, and a
//! server that goes away is a clear error, not a hang or a half-written object.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::s3::{CREDENTIALS, FlakyProxy, S3Server};
use common::{
    DAY_END, DAY_TWO_JOBS, GENERATE, NOW, START, baseline_command, iodrift, schedule_config,
    stdout_of,
};
use predicates::str::contains;

/// `iodrift` with the server's endpoint and the test credentials.
fn iodrift_s3(server: &S3Server) -> assert_cmd::Command {
    let mut command = iodrift();
    command
        .envs(CREDENTIALS)
        .args(["--s3-endpoint", &server.endpoint()]);
    command
}

/// A server with bucket `lake` and [`GENERATE`]'s store at `s3://lake/store`.
fn server_with_store(seed: u64) -> S3Server {
    let server = S3Server::start();
    server.create_bucket("lake");
    iodrift_s3(&server)
        .args(GENERATE)
        .args(["--seed", &seed.to_string(), "--out", "s3://lake/store"])
        .assert()
        .success();
    server
}

fn detect_args<'a>(store: &'a str, baselines: &'a str) -> Vec<&'a str> {
    vec![
        "detect",
        "--now",
        NOW,
        "--format",
        "ndjson",
        "--store",
        store,
        "--baselines",
        baselines,
    ]
}

#[test]
fn generate_baseline_and_detect_on_s3_give_the_local_answers() {
    let server = S3Server::start();
    server.create_bucket("lake");
    let local = tempfile::tempdir().unwrap();
    let local_store = local.path().join("store");
    let local_baselines = local.path().join("baselines");
    let (local_store, local_baselines) = (
        local_store.to_str().unwrap(),
        local_baselines.to_str().unwrap(),
    );

    for store in [local_store, "s3://lake/metrics/store"] {
        iodrift_s3(&server)
            .args(GENERATE)
            .args(["--seed", "3", "--out", store])
            .assert()
            .success();
    }
    assert!(server.get("lake", "metrics/store.labels.json").is_some());
    let hours = server.keys("lake", "metrics/store/dt=");
    assert_eq!(hours.len(), 26, "{hours:?}");

    for (store, out) in [
        (local_store, local_baselines),
        ("s3://lake/metrics/store", "s3://lake/baselines"),
    ] {
        iodrift_s3(&server)
            .args(["baseline", "--earliest", START, "--latest", DAY_END])
            .args(["--store", store, "--out", out])
            .assert()
            .success();
    }
    for name in [
        "k8s_container_network_io_baseline.csv",
        "k8s_container_network_io_ratio_baseline.csv",
    ] {
        let local_csv = std::fs::read(local.path().join("baselines").join(name)).unwrap();
        assert_eq!(
            server.get("lake", &format!("baselines/{name}")),
            Some(local_csv),
            "{name}"
        );
    }

    let expected = stdout_of(iodrift_s3(&server).args(detect_args(local_store, local_baselines)));
    assert!(expected.lines().count() > 0, "the seed has findings");
    let from_s3 = stdout_of(iodrift_s3(&server).args(detect_args(
        "s3://lake/metrics/store",
        "s3://lake/baselines",
    )));
    assert_eq!(from_s3, expected);

    iodrift_s3(&server)
        .args(detect_args(
            "s3://lake/metrics/store",
            "s3://lake/baselines",
        ))
        .args(["--output", "s3://lake/findings/run-1.ndjson"])
        .assert()
        .success();
    assert_eq!(
        server
            .get("lake", "findings/run-1.ndjson")
            .map(String::from_utf8),
        Some(Ok(expected))
    );

    // The REPL's SQL over the S3 store, and eval with labels and store on S3.
    let count = stdout_of(iodrift_s3(&server).args([
        "sql",
        "--store",
        "s3://lake/metrics/store",
        "--format",
        "csv",
        "-c",
        "SELECT count(*) AS n FROM metrics",
    ]));
    let local_count = stdout_of(iodrift_s3(&server).args([
        "sql",
        "--store",
        local_store,
        "--format",
        "csv",
        "-c",
        "SELECT count(*) AS n FROM metrics",
    ]));
    assert_eq!(count, local_count);
    iodrift_s3(&server)
        .args(["eval", "--store", "s3://lake/metrics/store"])
        .args(["--labels", "s3://lake/metrics/store.labels.json"])
        .assert()
        .success()
        .stdout(contains("exfiltration"));
}

/// A Splunk mstats export of `pods` pods over two hours from 2026-03-01T00:00Z, 10 s apart,
/// as `parts` CSV files.
fn splunk_exports(pods: usize, parts: usize) -> Vec<String> {
    let start = 1_772_323_200; // 2026-03-01T00:00:00Z
    let header = "_time,k8s.cluster.name,k8s.pod.name,k8s.node.name,direction,io\n";
    let mut files = vec![header.to_string(); parts];
    for step in 0..720 {
        let part = step * parts / 720;
        for pod in 0..pods {
            for (direction, scale) in [("receive", 1000), ("transmit", 300)] {
                let io = scale * (pod + 1) + step % 17;
                files[part].push_str(&format!(
                    "{},c1,web-{pod}-abcde,node-{},{direction},{io}\n",
                    start + step * 10,
                    pod % 3
                ));
            }
        }
    }
    files
}

#[test]
fn ingest_reads_an_s3_prefix_into_an_s3_store_once_and_compacts_it() {
    let server = S3Server::start();
    server.create_bucket("lake");
    let local = tempfile::tempdir().unwrap();
    let exports = splunk_exports(5, 3);
    let mut paths = Vec::new();
    for (i, csv) in exports.iter().enumerate() {
        server.put("lake", &format!("exports/part-{i}.csv"), csv.as_bytes());
        let path = local.path().join(format!("part-{i}.csv"));
        std::fs::write(&path, csv).unwrap();
        paths.push(path);
    }
    // Hidden objects under the prefix are skipped, as hidden files in a folder are.
    server.put("lake", "exports/_SUCCESS", b"");

    let local_store = local.path().join("store");
    let local_summary = stdout_of(
        iodrift_s3(&server)
            .args(["ingest", "--format", "splunk-csv", "--store"])
            .arg(&local_store)
            .args(&paths),
    );
    let ingest = || {
        let mut command = iodrift_s3(&server);
        command.args([
            "ingest",
            "--format",
            "splunk-csv",
            "--store",
            "s3://lake/store",
            "s3://lake/exports/",
        ]);
        command
    };
    let first = stdout_of(&mut ingest());
    let rows = |summary: &str| {
        summary
            .split(" rows written")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .map(str::to_string)
    };
    assert_eq!(rows(&first), Some("7200".to_string()), "{first}");
    assert_eq!(rows(&first), rows(&local_summary), "{local_summary}");
    assert!(server.get("lake", "store/_ingest/state.json").is_some());
    let again = stdout_of(&mut ingest());
    assert!(again.contains("(3 skipped as already ingested"), "{again}");

    let totals = |store: &str| {
        stdout_of(iodrift_s3(&server).args([
            "sql",
            "--store",
            store,
            "--format",
            "csv",
            "-c",
            "SELECT count(*) AS n, sum(value) AS bytes, count(DISTINCT pod) AS pods FROM metrics",
        ]))
    };
    let local_totals = totals(local_store.to_str().unwrap());
    assert!(local_totals.contains("7200,"), "{local_totals}");
    assert_eq!(totals("s3://lake/store"), local_totals);
    let files = |server: &S3Server| {
        server
            .keys("lake", "store/dt=")
            .into_iter()
            .filter(|k| k.ends_with(".parquet"))
            .count()
    };
    assert_eq!(files(&server), 2, "one ingest file per hour");

    // A second batch into the same hours, then compaction: one file per hour, same rows.
    let late = local.path().join("late.csv");
    std::fs::write(
        &late,
        "_time,k8s.cluster.name,k8s.pod.name,k8s.node.name,direction,io\n\
         1772323205,c1,late-0-abcde,node-0,receive,5\n\
         1772326805,c1,late-0-abcde,node-0,receive,7\n",
    )
    .unwrap();
    iodrift_s3(&server)
        .args([
            "ingest",
            "--format",
            "splunk-csv",
            "--store",
            "s3://lake/store",
        ])
        .arg(&late)
        .assert()
        .success();
    assert_eq!(files(&server), 4);
    let before = totals("s3://lake/store");
    iodrift_s3(&server)
        .args(["compact", "--store", "s3://lake/store"])
        .args(["--before", "2100-01-01T00:00:00Z"])
        .assert()
        .success();
    assert_eq!(files(&server), 2, "compacted");
    assert_eq!(totals("s3://lake/store"), before);
}

#[test]
fn a_server_that_goes_away_is_a_clear_error_and_leaves_no_object() {
    let mut server = server_with_store(3);
    let endpoint = server.endpoint();
    server.stop();

    let started = Instant::now();
    iodrift()
        .envs(CREDENTIALS)
        .args(["--s3-endpoint", &endpoint])
        .args(["baseline", "--earliest", START, "--latest", DAY_END])
        .args(["--store", "s3://lake/store", "--out", "s3://lake/baselines"])
        .assert()
        .failure()
        .stderr(contains("s3://lake/store"));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "gave up after {:?}",
        started.elapsed()
    );

    // A write that cannot land leaves nothing: the server comes back empty-handed for that key.
    let server = S3Server::start();
    server.create_bucket("lake");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.csv"), "not,a,lookup\n").unwrap();
    iodrift_s3(&server)
        .args(detect_args(
            "s3://lake/missing-store",
            dir.path().to_str().unwrap(),
        ))
        .args(["--output", "s3://lake/findings.ndjson"])
        .assert()
        .failure()
        .stderr(contains("s3://lake/missing-store"));
    assert_eq!(server.get("lake", "findings.ndjson"), None);
}

#[test]
fn the_schedule_runs_on_s3_once_per_window_under_a_lease() {
    let server = server_with_store(5);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("iodrift.toml");
    std::fs::write(
        &config,
        schedule_config(
            "s3://lake/store",
            "s3://lake/baselines",
            "s3://lake/findings",
            DAY_TWO_JOBS,
        ),
    )
    .unwrap();
    let run_due = || {
        let mut command = iodrift_s3(&server);
        command
            .args(["run-due", "--now", "2026-03-02T02:05:00Z", "--config"])
            .arg(&config);
        command
    };
    let first = stdout_of(&mut run_due());
    let runs: Vec<_> = first
        .lines()
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    // drift's hourly rollup job too, new at its latest due time, over the three hours before.
    assert_eq!(
        runs,
        [
            "baseline 2026-03-02T01:00:00Z",
            "detect 2026-03-02T01:00:00Z",
            "detect 2026-03-02T02:00:00Z",
            "rollup 2026-03-02T02:05:00Z"
        ]
    );
    // Day one's hours from the baseline's merge, day two's two hours from the rollup job: every
    // hour of the store.
    let rollups = server.keys("lake", "store/_rollups/drift_baseline/");
    assert_eq!(rollups.len(), 26, "{rollups:?}");
    assert!(
        rollups
            .iter()
            .any(|key| key.ends_with("dt=2026-03-02/hour=01.parquet")),
        "{rollups:?}"
    );
    let findings = server.keys("lake", "findings/");
    assert_eq!(findings.len(), 6, "{findings:?}");
    let expected = stdout_of(
        iodrift_s3(&server)
            .args(detect_args("s3://lake/store", "s3://lake/baselines"))
            .args(["--rule", "network-io-ratio"]),
    );
    assert_eq!(
        server
            .get(
                "lake",
                "findings/network-io-ratio/dt=2026-03-02/20260302T005000Z_20260302T015000Z.ndjson"
            )
            .map(String::from_utf8),
        Some(Ok(expected))
    );
    assert!(
        server
            .get("lake", "store/_schedule/jobs/detect.json")
            .is_some()
    );
    assert_eq!(server.keys("lake", "store/_schedule/lease/").len(), 1);
    assert!(stdout_of(&mut run_due()).contains("nothing due"));

    // Another runner's live claim keeps this one out.
    server.put(
        "lake",
        "store/_schedule/lease/00000000000000000099.json",
        br#"{"owner": "other-host/1/0", "expires_at": "2099-01-01T00:00:00Z", "released": false}"#,
    );
    run_due()
        .assert()
        .code(75)
        .stderr(contains("held by other-host/1/0"));
}

#[test]
fn transient_server_errors_are_retried_to_the_same_answer() {
    let server = server_with_store(3);
    let baseline = |endpoint: &str, out: &str| {
        baseline_command(Path::new("s3://lake/store"), Path::new(out))
            .envs(CREDENTIALS)
            .args(["--s3-endpoint", endpoint])
            .assert()
            .success();
    };
    baseline(&server.endpoint(), "s3://lake/direct");
    // The first three connections are refused with 503: the requests back off and go on.
    let proxy = FlakyProxy::start(server.port, 3);
    baseline(&proxy.endpoint(), "s3://lake/retried");
    assert_eq!(proxy.failed(), 3);
    for name in [
        "k8s_container_network_io_baseline.csv",
        "k8s_container_network_io_ratio_baseline.csv",
    ] {
        let direct = server.get("lake", &format!("direct/{name}"));
        assert!(direct.is_some(), "{name}");
        assert_eq!(
            server.get("lake", &format!("retried/{name}")),
            direct,
            "{name}"
        );
    }
}

#[test]
fn a_named_aws_profile_gives_keys_region_and_endpoint() {
    let server = server_with_store(3);
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/credentials"),
        "[ci]\naws_access_key_id = iodrift-test\naws_secret_access_key = iodrift-test\n",
    )
    .unwrap();
    std::fs::write(
        home.path().join(".aws/config"),
        format!(
            "[profile ci]\nregion = us-east-1\nendpoint_url = {}\n",
            server.endpoint()
        ),
    )
    .unwrap();
    // Nothing but the profile: no key, region or endpoint in the environment.
    let count = |profile: &str| {
        let mut command = iodrift();
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_CONFIG_FILE",
        ] {
            command.env_remove(name);
        }
        command
            .env("HOME", home.path())
            .env("AWS_PROFILE", profile)
            .args(["sql", "--store", "s3://lake/store", "--format", "csv"])
            .args(["-c", "SELECT count(*) AS n FROM metrics"]);
        command
    };
    let rows = stdout_of(&mut count("ci"));
    assert!(rows.starts_with("n\n") && rows.trim() != "n\n0", "{rows}");
    count("prod")
        .assert()
        .failure()
        .stderr(contains("AWS_PROFILE=prod"));
}

#[test]
fn a_server_stopped_mid_run_fails_the_run_clearly() {
    let mut server = S3Server::start();
    server.create_bucket("lake");
    let generate = std::process::Command::new(assert_cmd::cargo::cargo_bin("iodrift"))
        .envs(CREDENTIALS)
        .env("HOME", std::env::temp_dir())
        .args(["--s3-endpoint", &server.endpoint()])
        .args(["generate", "--services", "40", "--hours", "240"])
        .args(["--out", "s3://lake/big"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.keys("lake", "big/dt=").len() < 3 {
        assert!(Instant::now() < deadline, "no hour files written");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped = Instant::now();
    server.stop();
    let output = generate.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("s3://lake/big"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stopped.elapsed() < Duration::from_secs(60),
        "gave up after {:?}",
        stopped.elapsed()
    );
}
