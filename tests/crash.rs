//! Crash consistency: `ingest`, `compact`, `baseline` and `run-due` killed with SIGKILL at every
//! point where they change what they store (`IODRIFT_CRASH_AT=N`, N = 1, 2, ... until the
//! command completes), on a local store and on an S3 store (moto).
//!
//! After each kill, a reader sees the state before the command or after it, never a mix and
//! never part of a file; then the same command, run again, completes with exactly the answers
//! of a run that was never interrupted.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use common::s3::{CREDENTIALS, S3Server};
use common::{GENERATE, iodrift, later_kubelet_scrape, tree};
use serde_json::Value;

/// More points than any command here reaches: a command that never completes fails the test.
const MAX_POINTS: usize = 400;

/// Where one attempt's files live: a local directory, or a fresh prefix of bucket `lake`.
struct Lake<'a> {
    server: Option<&'a S3Server>,
    dir: tempfile::TempDir,
    prefix: String,
}

impl<'a> Lake<'a> {
    fn new(server: Option<&'a S3Server>) -> Lake<'a> {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches('.')
            .to_string();
        Lake {
            server,
            dir,
            prefix,
        }
    }

    /// The location of `name` as a command takes it.
    fn url(&self, name: &str) -> String {
        match self.server {
            Some(_) => format!("s3://lake/{}/{name}", self.prefix),
            None => self.dir.path().join(name).display().to_string(),
        }
    }

    /// `iodrift`, with the server's endpoint and credentials on S3.
    fn iodrift(&self) -> Command {
        let mut command = iodrift();
        if let Some(server) = self.server {
            command
                .envs(CREDENTIALS)
                .args(["--s3-endpoint", &server.endpoint()]);
        }
        command
    }

    /// Copies the local tree `from` to `name`.
    fn upload(&self, from: &Path, name: &str) {
        for relative in tree(from) {
            let bytes = std::fs::read(from.join(&relative)).unwrap();
            match self.server {
                Some(server) => server.put(
                    "lake",
                    &format!("{}/{name}/{relative}", self.prefix),
                    &bytes,
                ),
                None => {
                    let target = self.dir.path().join(name).join(&relative);
                    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                    std::fs::write(target, bytes).unwrap();
                }
            }
        }
    }

    /// Every file or object below `name`, relative, sorted; not the temporary files a killed
    /// local write leaves (`.iodrift-*.tmp`, hidden from every reader).
    fn files(&self, name: &str) -> Vec<String> {
        let temporary = |f: &String| {
            f.rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with(".iodrift-") && n.ends_with(".tmp"))
        };
        let mut files = self.all_files(name);
        files.retain(|f| !temporary(f));
        files
    }

    fn all_files(&self, name: &str) -> Vec<String> {
        match self.server {
            Some(server) => {
                let prefix = format!("{}/{name}/", self.prefix);
                let mut keys: Vec<String> = server
                    .keys("lake", &prefix)
                    .into_iter()
                    .map(|k| k.trim_start_matches(&prefix).to_string())
                    .collect();
                keys.sort();
                keys
            }
            None => tree(&self.dir.path().join(name)),
        }
    }

    fn read(&self, name: &str, relative: &str) -> Option<Vec<u8>> {
        match self.server {
            Some(server) => server.get("lake", &format!("{}/{name}/{relative}", self.prefix)),
            None => std::fs::read(self.dir.path().join(name).join(relative)).ok(),
        }
    }

    /// The rows of `sql` over the store `name`, as JSON.
    fn query(&self, name: &str, sql: &str) -> Vec<Value> {
        let output = self
            .iodrift()
            .args([
                "sql",
                "--format",
                "json",
                "--store",
                &self.url(name),
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

fn run(command: &mut Command, crash_at: Option<usize>) -> Output {
    if let Some(n) = crash_at {
        command.env("IODRIFT_CRASH_AT", n.to_string());
    }
    command.output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Kills `command` at every crash point in turn, each time on a fresh copy made by `setup`:
/// after the kill `consistent` checks what a reader sees, then the command runs again
/// (after `pause`) and `answers` must equal those of an uninterrupted run. Returns how many
/// points the command has.
fn kill_at_every_point<'a, A: PartialEq + std::fmt::Debug>(
    server: Option<&'a S3Server>,
    setup: impl Fn(&Lake<'a>),
    command: impl Fn(&Lake<'a>) -> Command,
    consistent: impl Fn(&Lake<'a>, usize),
    answers: impl Fn(&Lake<'a>) -> A,
    pause: Duration,
) -> usize {
    let clean = Lake::new(server);
    setup(&clean);
    let output = run(&mut command(&clean), None);
    assert!(output.status.success(), "{}", text(&output));
    let expected = answers(&clean);
    for n in 1..=MAX_POINTS {
        let lake = Lake::new(server);
        setup(&lake);
        let output = run(&mut command(&lake), Some(n));
        if output.status.success() {
            assert!(n > 1, "the command reached no crash point");
            assert_eq!(answers(&lake), expected, "a run that was not killed");
            eprintln!("{} crash points covered", n - 1);
            return n - 1;
        }
        assert_eq!(
            output.status.signal(),
            Some(9),
            "point {n}: not killed but failed: {}",
            text(&output)
        );
        consistent(&lake, n);
        std::thread::sleep(pause);
        let output = run(&mut command(&lake), None);
        assert!(
            output.status.success(),
            "point {n}: the run after the kill failed: {}",
            text(&output)
        );
        assert_eq!(
            answers(&lake),
            expected,
            "point {n}: answers after the rerun"
        );
    }
    panic!("the command did not complete within {MAX_POINTS} crash points");
}

/// Scrapes at `offsets` seconds, written to files in `dir`.
fn scrapes(dir: &Path, offsets: &[i64]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    offsets
        .iter()
        .map(|&seconds| {
            let path = dir.join(format!("scrape-{seconds:05}.json"));
            std::fs::write(
                &path,
                later_kubelet_scrape(seconds, 1000.0 * seconds as f64),
            )
            .unwrap();
            path
        })
        .collect()
}

fn ingest_command(lake: &Lake, inputs: &[PathBuf]) -> Command {
    let mut command = lake.iodrift();
    command
        .args([
            "ingest",
            "--format",
            "kubelet-summary",
            "--cluster",
            "minikube",
        ])
        .args(["--store", &lake.url("store")])
        .args(inputs);
    command
}

const ROWS_BY_HOUR: &str = "SELECT hour, count(*) AS n, sum(value) AS bytes FROM metrics \
                            GROUP BY hour ORDER BY hour";

/// `ingest` of two scrapes over two hours into a store that already holds two committed ones.
fn ingest_everywhere(server: Option<&S3Server>) -> usize {
    let inputs = tempfile::tempdir().unwrap();
    let committed = scrapes(&inputs.path().join("committed"), &[0, 10]);
    let crashed = scrapes(&inputs.path().join("new"), &[20, 3620]);
    let template = Lake::new(None);
    run(&mut ingest_command(&template, &committed), None);
    let template_store = template.dir.path().join("store");
    let scratch = Lake::new(None);
    scratch.upload(&template_store, "store");
    let before = scratch.query("store", ROWS_BY_HOUR);
    run(&mut ingest_command(&scratch, &crashed), None);
    let after = scratch.query("store", ROWS_BY_HOUR);
    assert_ne!(before, after);
    kill_at_every_point(
        server,
        |lake| lake.upload(&template_store, "store"),
        |lake| ingest_command(lake, &crashed),
        |lake, n| {
            let seen = lake.query("store", ROWS_BY_HOUR);
            // Before the commit point readers see the store as it was; after it, all of it.
            assert!(
                seen == before || seen == after,
                "point {n}: part of a batch is visible: {seen:?}"
            );
        },
        |lake| {
            let rows = lake.query("store", ROWS_BY_HOUR);
            // Each input once: a third run ingests nothing.
            let again = run(&mut ingest_command(lake, &crashed), None);
            let out = text(&again);
            assert!(out.contains("2 skipped as already ingested"), "{out}");
            let visible: Vec<String> = lake
                .files("store")
                .into_iter()
                .filter(|f| !f.starts_with('_'))
                .collect();
            (rows, visible)
        },
        Duration::ZERO,
    )
}

#[test]
fn ingest_killed_anywhere_commits_each_input_once_locally() {
    let points = ingest_everywhere(None);
    assert!(points >= 8, "{points}");
}

/// A store whose hours each hold several ingest files, for compaction.
fn fragmented_store(dir: &Path) -> PathBuf {
    let template = Lake::new(None);
    for (i, offset) in [0, 10, 20, 30, 3610, 3620, 3630].into_iter().enumerate() {
        let input = scrapes(&dir.join(format!("{i}")), &[offset]);
        let output = run(&mut ingest_command(&template, &input), None);
        assert!(output.status.success(), "{}", text(&output));
    }
    let store = dir.join("fragmented");
    for relative in template.files("store") {
        let target = store.join(&relative);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, template.read("store", &relative).unwrap()).unwrap();
    }
    store
}

fn compact_everywhere(server: Option<&S3Server>) -> usize {
    let inputs = tempfile::tempdir().unwrap();
    let template = fragmented_store(inputs.path());
    let hour_files = |files: &[String]| -> Vec<String> {
        files
            .iter()
            .filter(|f| f.starts_with("dt="))
            .cloned()
            .collect()
    };
    assert!(
        hour_files(&tree(&template)).len() >= 5,
        "{:?}",
        tree(&template)
    );
    let original = {
        let lake = Lake::new(server);
        lake.upload(&template, "store");
        lake.query("store", ROWS_BY_HOUR)
    };
    let compact = |lake: &Lake| {
        let mut command = lake.iodrift();
        command.args([
            "compact",
            "--before",
            "2026-03-01T00:00:00Z",
            "--store",
            &lake.url("store"),
        ]);
        command
    };
    kill_at_every_point(
        server,
        |lake| lake.upload(&template, "store"),
        compact,
        |lake, n| {
            assert_eq!(
                lake.query("store", ROWS_BY_HOUR),
                original,
                "point {n}: rows changed"
            );
        },
        |lake| {
            let files = hour_files(&lake.files("store"));
            let rows = lake.query("store", ROWS_BY_HOUR);
            assert_eq!(rows, original);
            files
                .iter()
                .map(|f| f.split('/').take(2).collect::<Vec<_>>().join("/"))
                .collect::<Vec<_>>()
        },
        Duration::ZERO,
    )
}

#[test]
fn compact_killed_anywhere_keeps_every_row_once_locally() {
    let points = compact_everywhere(None);
    assert!(points >= 6, "{points}");
}

/// A generated store of six hours.
fn small_store(dir: &Path) -> PathBuf {
    let store = dir.join("generated");
    let mut args: Vec<String> = GENERATE.iter().map(|s| s.to_string()).collect();
    let hours = args.iter().position(|a| a == "--hours").unwrap();
    args[hours + 1] = "6".into();
    iodrift()
        .args(&args)
        .args(["--seed", "3", "--out"])
        .arg(&store)
        .assert()
        .success();
    store
}

const LOOKUPS: [&str; 6] = [
    "drift_baseline.csv",
    "drift_baseline.parquet",
    "k8s_container_network_io_baseline.csv",
    "k8s_container_network_io_ratio_baseline.csv",
    "k8s_container_network_io_baseline.parquet",
    "k8s_container_network_io_ratio_baseline.parquet",
];

fn baseline_everywhere(server: Option<&S3Server>) -> usize {
    let inputs = tempfile::tempdir().unwrap();
    let template = small_store(inputs.path());
    let baseline = |lake: &Lake| {
        let mut command = lake.iodrift();
        command
            .args(["baseline", "--earliest", "2026-03-01T01:00:00Z"])
            .args([
                "--latest",
                "2026-03-01T04:00:00Z",
                "--now",
                "2026-03-01T06:00:00Z",
            ])
            .args([
                "--store",
                &lake.url("store"),
                "--out",
                &lake.url("baselines"),
            ]);
        command
    };
    let expected: Vec<Vec<u8>> = {
        let lake = Lake::new(server);
        lake.upload(&template, "store");
        assert!(run(&mut baseline(&lake), None).status.success());
        LOOKUPS
            .iter()
            .map(|name| lake.read("baselines", name).unwrap())
            .collect()
    };
    kill_at_every_point(
        server,
        |lake| lake.upload(&template, "store"),
        baseline,
        |lake, n| {
            // A lookup is there whole, or not at all.
            for (name, bytes) in LOOKUPS.iter().zip(&expected) {
                if let Some(found) = lake.read("baselines", name) {
                    assert_eq!(&found, bytes, "point {n}: {name}");
                }
            }
            assert!(
                lake.files("baselines")
                    .iter()
                    .all(|f| LOOKUPS.contains(&f.as_str())),
                "point {n}: {:?}",
                lake.files("baselines")
            );
        },
        |lake| {
            let lookups: Vec<Option<Vec<u8>>> = LOOKUPS
                .iter()
                .map(|name| lake.read("baselines", name))
                .collect();
            // Every rollup written before the kill is current and right: a second run merges
            // all three hours and gives the same bytes.
            let output = run(&mut baseline(lake), None);
            let log = text(&output);
            assert!(
                log.contains("3 hours merged from stored rollups, 0 read"),
                "{log}"
            );
            let again: Vec<Option<Vec<u8>>> = LOOKUPS
                .iter()
                .map(|name| lake.read("baselines", name))
                .collect();
            assert_eq!(again, lookups);
            lookups
        },
        Duration::ZERO,
    )
}

#[test]
fn baseline_killed_anywhere_writes_whole_lookups_and_right_rollups_locally() {
    let points = baseline_everywhere(None);
    assert!(points >= 10, "{points}");
}

/// Jobs over [`small_store`]: at 05:00 the baseline of [01:00, 04:00); hourly detections from
/// 05:00 (windows 03:50-04:50 and 04:50-05:50).
const JOBS: &str = r#"
lease = "1s"

[baseline]
cron = "0 5 * * *"
earliest = "-4h@h"
latest = "-1h@h"
start = "2026-03-01T05:00:00Z"

[detect]
start = "2026-03-01T05:00:00Z"
"#;

fn run_due_everywhere(server: Option<&S3Server>) -> usize {
    let inputs = tempfile::tempdir().unwrap();
    let template = small_store(inputs.path());
    let run_due = |lake: &Lake| {
        let config = lake.dir.path().join("iodrift.toml");
        let text = format!(
            "store = {:?}\nbaselines = {:?}\nfindings = {:?}\n{JOBS}",
            lake.url("store"),
            lake.url("baselines"),
            lake.url("findings")
        );
        std::fs::write(&config, text).unwrap();
        let mut command = lake.iodrift();
        command
            .args(["run-due", "--now", "2026-03-01T06:30:00Z", "--config"])
            .arg(config);
        command
    };
    let outputs = |lake: &Lake| -> Vec<(String, Vec<u8>)> {
        ["baselines", "findings"]
            .iter()
            .flat_map(|dir| {
                lake.files(dir)
                    .into_iter()
                    .map(move |f| (format!("{dir}/{f}"), lake.read(dir, &f).unwrap()))
            })
            .collect()
    };
    let expected = {
        let lake = Lake::new(server);
        lake.upload(&template, "store");
        let output = run(&mut run_due(&lake), None);
        assert!(output.status.success(), "{}", text(&output));
        outputs(&lake)
    };
    assert_eq!(
        expected
            .iter()
            .filter(|(f, _)| f.starts_with("findings/"))
            .count(),
        6,
        "{:?}",
        expected.iter().map(|(f, _)| f).collect::<Vec<_>>()
    );
    kill_at_every_point(
        server,
        |lake| lake.upload(&template, "store"),
        run_due,
        |lake, n| {
            // Every output present is whole and the one an uninterrupted run writes.
            for (name, bytes) in outputs(lake) {
                let want = expected.iter().find(|(f, _)| *f == name);
                assert_eq!(want.map(|(_, b)| b), Some(&bytes), "point {n}: {name}");
            }
        },
        |lake| {
            let written = outputs(lake);
            // Every window ran once: the next pass finds nothing due.
            let output = run(&mut run_due(lake), None);
            assert!(output.status.success(), "{}", text(&output));
            assert!(
                String::from_utf8_lossy(&output.stdout).starts_with("nothing due"),
                "{}",
                text(&output)
            );
            written
        },
        // A killed runner's lease claim lasts its 1 s lease.
        Duration::from_millis(1100),
    )
}

#[test]
fn run_due_killed_anywhere_runs_every_window_once_locally() {
    let points = run_due_everywhere(None);
    assert!(points >= 10, "{points}");
}

#[test]
fn every_command_killed_anywhere_on_s3() {
    let server = S3Server::start();
    server.create_bucket("lake");
    assert!(ingest_everywhere(Some(&server)) >= 4);
    assert!(compact_everywhere(Some(&server)) >= 3);
    assert!(baseline_everywhere(Some(&server)) >= 5);
    assert!(run_due_everywhere(Some(&server)) >= 5);
}
