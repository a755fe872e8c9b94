//! The schedule: `run-due` catches up every due window in time order, writes one findings object
//! per (rule, window) equal to `iodrift detect`'s, never runs a window twice, and one runner at
//! a time holds the store (`schedule` as a service keeps it until stopped).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{DAY_TWO_JOBS, generate, iodrift, schedule_config, stdout_of};
use predicates::str::contains;

const RULES: [&str; 3] = ["drift", "network-io", "network-io-ratio"];

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("iodrift.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run_due(config: &Path, now: &str) -> String {
    stdout_of(
        iodrift()
            .args(["run-due", "--now", now, "--config"])
            .arg(config),
    )
}

/// The times of the runs `run-due` printed, as `job time`.
fn runs(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.starts_with("baseline ") || l.starts_with("detect "))
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every file below `dir`, relative, with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                found.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn run_due_catches_up_in_order_once_and_matches_the_commands() {
    let generated = generate(1);
    let dir = generated.dir.path();
    let config = write_config(
        dir,
        &schedule_config("store", "baselines", "findings", DAY_TWO_JOBS),
    );
    // The baseline of 01:00 comes before the detection of 01:00, which reads it.
    assert_eq!(
        runs(&run_due(&config, "2026-03-02T01:30:00Z")),
        [
            "baseline 2026-03-02T01:00:00Z",
            "detect 2026-03-02T01:00:00Z"
        ]
    );
    assert_eq!(
        runs(&run_due(&config, "2026-03-02T02:05:00Z")),
        ["detect 2026-03-02T02:00:00Z"]
    );
    let again = run_due(&config, "2026-03-02T02:05:00Z");
    assert!(again.contains("nothing due"), "{again}");

    let state = read_json(&dir.join("store/_schedule/jobs/detect.json"));
    assert_eq!(state["last_time"], "2026-03-02T02:00:00Z");
    assert_eq!(state["window_start"], "2026-03-02T00:50:00Z");
    assert_eq!(state["window_end"], "2026-03-02T01:50:00Z");

    // The lookups are what `iodrift baseline` writes for the same window.
    let expected = dir.join("expected");
    iodrift()
        .args(["baseline", "--now", "2026-03-02T01:00:00Z"])
        .args(["--earliest", "-1d@d", "--latest", "@d", "--store"])
        .arg(&generated.store)
        .arg("--out")
        .arg(expected.join("baselines"))
        .assert()
        .success();
    assert_eq!(
        files(&dir.join("baselines")),
        files(&expected.join("baselines"))
    );

    // One object per rule and window, byte for byte what `iodrift detect` writes.
    let mut total = 0;
    let mut expected_names = Vec::new();
    for (now, day, window) in [
        (
            "2026-03-02T01:00:00Z",
            "2026-03-01",
            "20260301T235000Z_20260302T005000Z",
        ),
        (
            "2026-03-02T02:00:00Z",
            "2026-03-02",
            "20260302T005000Z_20260302T015000Z",
        ),
    ] {
        for rule in RULES {
            let name = format!("{rule}/dt={day}/{window}.ndjson");
            let output = expected.join("findings").join(&name);
            iodrift()
                .args(["detect", "--rule", rule, "--now", now, "--format", "ndjson"])
                .arg("--store")
                .arg(&generated.store)
                .arg("--baselines")
                .arg(dir.join("baselines"))
                .arg("--output")
                .arg(&output)
                .assert()
                .success();
            total += std::fs::read_to_string(&output).unwrap().lines().count();
            expected_names.push(name);
        }
    }
    assert!(total > 0, "the windows hold findings");
    let written = files(&dir.join("findings"));
    expected_names.sort();
    assert_eq!(
        written.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        expected_names
    );
    assert_eq!(written, files(&expected.join("findings")));

    // A runner that died after writing its outputs but before its state reruns those windows:
    // the objects are replaced, not duplicated.
    std::fs::remove_file(dir.join("store/_schedule/jobs/detect.json")).unwrap();
    assert_eq!(
        runs(&run_due(&config, "2026-03-02T02:05:00Z")),
        ["detect 2026-03-02T01:00:00Z", "detect 2026-03-02T02:00:00Z"]
    );
    assert_eq!(files(&dir.join("findings")), written);

    // Each pass released its claim on the store.
    let claims = files(&dir.join("store/_schedule/lease"));
    assert_eq!(claims.len(), 1, "older claims are cleaned up");
    let claim: serde_json::Value = serde_json::from_slice(&claims[0].1).unwrap();
    assert_eq!(claim["released"], true);
}

#[test]
fn a_job_that_fails_stops_only_itself_and_resumes_from_its_state() {
    let generated = generate(2);
    let dir = generated.dir.path();
    // No baselines yet and no baseline job: every detection fails, and its state stays put.
    let jobs = "[baseline]\nenabled = false\n[detect]\nstart = \"2026-03-02T01:00:00Z\"\n";
    let config = write_config(
        dir,
        &schedule_config("store", "baselines", "findings", jobs),
    );
    iodrift()
        .args(["run-due", "--now", "2026-03-02T02:05:00Z", "--config"])
        .arg(&config)
        .assert()
        .failure()
        .stderr(contains("detect run at 2026-03-02T01:00:00Z"))
        .stderr(contains("drift_baseline"));
    assert!(!dir.join("store/_schedule/jobs/detect.json").exists());
    assert!(!dir.join("findings").exists());

    iodrift()
        .args([
            "baseline",
            "--earliest",
            common::START,
            "--latest",
            common::DAY_END,
        ])
        .arg("--store")
        .arg(&generated.store)
        .arg("--out")
        .arg(dir.join("baselines"))
        .assert()
        .success();
    assert_eq!(
        runs(&run_due(&config, "2026-03-02T02:05:00Z")),
        ["detect 2026-03-02T01:00:00Z", "detect 2026-03-02T02:00:00Z"]
    );

    for bad in [
        "store = \"s\"\n",
        "store = \"s\"\nbaselines = \"b\"\nfindings = \"f\"\n[detect]\ncron = \"every hour\"\n",
    ] {
        let config = write_config(dir, bad);
        iodrift()
            .args(["run-due", "--config"])
            .arg(&config)
            .assert()
            .code(1)
            .stderr(contains("iodrift.toml"));
    }
}

/// `iodrift schedule` as a child process, its log lines (JSON) collected on stderr.
struct Service {
    child: Child,
}

impl Service {
    fn start(config: &Path) -> Service {
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("iodrift"))
            .args(["schedule", "--log-format", "json", "--config"])
            .arg(config)
            .env("HOME", std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start iodrift schedule");
        Service { child }
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its log lines.
    fn logs(self) -> (std::process::ExitStatus, Vec<serde_json::Value>) {
        let output = self.child.wait_with_output().unwrap();
        let lines = String::from_utf8(output.stderr).unwrap();
        let logs = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        (output.status, logs)
    }
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn last_detect(store: &Path) -> Option<String> {
    let bytes = std::fs::read(store.join("_schedule/jobs/detect.json")).ok()?;
    let state: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    state["last_time"].as_str().map(str::to_string)
}

#[test]
fn the_service_holds_the_store_until_stopped_and_a_killed_one_is_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // Hours around the clock's, so the service's windows hold data.
    iodrift()
        .args(["generate", "--services", "2", "--replicas", "2"])
        .args(["--start", "-3h@h", "--hours", "4", "--out"])
        .arg(&store)
        .assert()
        .success();
    let config = write_config(
        dir.path(),
        &schedule_config(
            "store",
            "baselines",
            "findings",
            r#"lease = "3s"

[baseline]
cron = "0 * * * *"
earliest = "-3h@h"
latest = "@h"

[detect]
cron = "*/2 * * * * *"
earliest = "-70m@m"
latest = "-10m@m"
"#,
        ),
    );
    let service = Service::start(&config);
    wait_for("the service's first detection", || {
        last_detect(&store).is_some()
    });
    iodrift()
        .args(["run-due", "--config"])
        .arg(&config)
        .assert()
        .code(75)
        .stderr(contains("held by"));

    service.signal("TERM");
    let (status, logs) = service.logs();
    assert!(status.success(), "{status:?}");
    let completed: Vec<_> = logs
        .iter()
        .filter(|l| l["fields"]["message"] == "run completed")
        .collect();
    assert!(completed.iter().any(|l| l["fields"]["job"] == "baseline"));
    assert!(completed.iter().any(|l| l["fields"]["job"] == "detect"));
    for log in &completed {
        assert!(log["fields"]["seconds"].as_f64().is_some(), "{log}");
        assert!(log["fields"]["rows"].as_u64().is_some(), "{log}");
        assert!(log["timestamp"].is_string(), "{log}");
    }
    assert!(
        logs.iter()
            .any(|l| l["fields"]["message"] == "findings written"
                && l["fields"]["findings"].is_u64()
                && l["fields"]["store_rows"].as_u64() > Some(0))
    );
    // A stopped service released the store at once.
    stdout_of(iodrift().args(["run-due", "--config"]).arg(&config));

    // A killed one holds it until its claim expires; then the next runner catches up from the
    // last completed window, in order.
    let service = Service::start(&config);
    let before = last_detect(&store).unwrap();
    wait_for("a detection by the second service", || {
        last_detect(&store).is_some_and(|t| t > before)
    });
    service.signal("KILL");
    let (status, _) = service.logs();
    assert!(!status.success());
    let last = last_detect(&store).unwrap();
    iodrift()
        .args(["run-due", "--config"])
        .arg(&config)
        .assert()
        .code(75);
    // The claim expires within 3 s of the kill; by 6 s at least two more times are due.
    std::thread::sleep(Duration::from_secs(6));
    let caught_up = runs(&stdout_of(
        iodrift().args(["run-due", "--config"]).arg(&config),
    ));
    let detections: Vec<_> = caught_up
        .iter()
        .filter_map(|r| r.strip_prefix("detect "))
        .collect();
    assert!(detections.len() >= 2, "{caught_up:?}");
    let last = chrono::DateTime::parse_from_rfc3339(&last).unwrap();
    let first = chrono::DateTime::parse_from_rfc3339(detections[0]).unwrap();
    assert_eq!(first - last, chrono::Duration::seconds(2), "{caught_up:?}");
    assert!(detections.windows(2).all(|w| w[0] < w[1]), "{caught_up:?}");
}

#[test]
fn the_rollup_job_stores_closed_hours_that_the_baseline_then_merges() {
    let generated = generate(4);
    let dir = generated.dir.path();
    let jobs = "[baseline]\nenabled = false\n[detect]\nenabled = false\n\
                [rollup]\nstart = \"2026-03-02T00:05:00Z\"\n";
    let config = write_config(
        dir,
        &schedule_config("store", "baselines", "findings", jobs),
    );
    let printed = run_due(&config, "2026-03-02T01:10:00Z");
    let rollups: Vec<&str> = printed
        .lines()
        .filter(|l| l.starts_with("rollup "))
        .collect();
    assert_eq!(rollups.len(), 2, "{printed}");
    assert!(
        rollups[0].starts_with("rollup 2026-03-02T00:05:00Z"),
        "{printed}"
    );
    assert!(
        rollups[1].starts_with("rollup 2026-03-02T01:05:00Z"),
        "{printed}"
    );
    // drift's window is the three hours before each run: 21:00 to 01:00, four hours in all.
    let stored: Vec<String> = files(&generated.store.join("_rollups/drift_baseline"))
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        stored,
        [
            "dt=2026-03-01/hour=21.parquet",
            "dt=2026-03-01/hour=22.parquet",
            "dt=2026-03-01/hour=23.parquet",
            "dt=2026-03-02/hour=00.parquet",
        ]
    );
    // The baseline over those hours merges them and reads no raw row, to the same bytes as one
    // computed from the raw rows.
    let drift_baseline = |out: &str, more: &[&str]| {
        iodrift()
            .args(["baseline", "--rule", "drift"])
            .args([
                "--earliest",
                "2026-03-01T21:00:00Z",
                "--latest",
                "2026-03-02T01:00:00Z",
            ])
            .args(more)
            .arg("--store")
            .arg(&generated.store)
            .arg("--out")
            .arg(dir.join(out))
            .assert()
            .success()
    };
    let merged = drift_baseline("merged", &[]);
    let stderr = String::from_utf8_lossy(&merged.get_output().stderr).to_string();
    assert!(
        stderr.contains("4 hours merged from stored rollups, 0 read from raw rows"),
        "{stderr}"
    );
    drift_baseline("full", &["--full"]);
    assert_eq!(
        std::fs::read(dir.join("merged/drift_baseline.csv")).unwrap(),
        std::fs::read(dir.join("full/drift_baseline.csv")).unwrap()
    );
}
