//! Both baselines and both detections on a Ballista cluster (a scheduler and two executors
//! started as `iodrift ballista` processes on 127.0.0.1) give the embedded engine's answers, and
//! an executor killed during a query gives a clear error or the same answer.
#![cfg(feature = "ballista")]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::s3::{CREDENTIALS, S3Server};
use common::{
    DAY_END, GENERATE, LOOKUP_FILES, NOW, START, assert_same_lookups, baseline_command, iodrift,
    stdout_of,
};

/// A scheduler and two executors, stopped when dropped.
struct Cluster {
    url: String,
    scheduler: Child,
    executors: Vec<Child>,
    logs: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn process(logs: &Path, name: &str, args: &[String], env: &[(&str, String)]) -> Child {
    let log = std::fs::File::create(logs.join(format!("{name}.log"))).unwrap();
    std::process::Command::new(assert_cmd::cargo::cargo_bin("iodrift"))
        .arg("ballista")
        .args(args)
        .env("HOME", std::env::temp_dir())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"))
}

/// Whether an executor's work dir holds a shuffle file (`<job>/<stage>/<partition>/data*`).
fn holds_shuffle_output(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            holds_shuffle_output(&path)
        } else {
            entry.file_name().to_string_lossy().starts_with("data")
        }
    })
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} never listened on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Cluster {
    fn start() -> Cluster {
        Cluster::start_with_env(&[])
    }

    /// A cluster whose processes get `env` (e.g. the S3 endpoint and credentials).
    fn start_with_env(env: &[(&str, String)]) -> Cluster {
        let logs = tempfile::tempdir().unwrap();
        let port = free_port();
        let scheduler = process(
            logs.path(),
            "scheduler",
            &[
                "scheduler".into(),
                "--bind".into(),
                format!("127.0.0.1:{port}"),
                "--executor-timeout".into(),
                "5".into(),
            ],
            env,
        );
        wait_for_port(port, "the scheduler");
        let executors = (0..2)
            .map(|i| {
                let (flight, grpc) = (free_port(), free_port());
                let work = logs.path().join(format!("work-{i}"));
                std::fs::create_dir_all(&work).unwrap();
                let child = process(
                    logs.path(),
                    &format!("executor-{i}"),
                    &[
                        "executor".into(),
                        "--scheduler".into(),
                        format!("127.0.0.1:{port}"),
                        "--bind".into(),
                        format!("127.0.0.1:{flight}"),
                        "--grpc-port".into(),
                        grpc.to_string(),
                        "--concurrent-tasks".into(),
                        "2".into(),
                        "--heartbeat-interval".into(),
                        "1".into(),
                        "--memory-limit".into(),
                        "256MiB".into(),
                        "--work-dir".into(),
                        work.display().to_string(),
                    ],
                    env,
                );
                wait_for_port(flight, "an executor's Flight service");
                wait_for_port(grpc, "an executor's gRPC service");
                child
            })
            .collect();
        Cluster {
            url: format!("df://127.0.0.1:{port}"),
            scheduler,
            executors,
            logs,
        }
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(self.logs.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                let log = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                text += &format!("--- {}\n", path.display());
                for line in tail.into_iter().rev() {
                    text += line;
                    text += "\n";
                }
            }
        }
        text
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.executors.iter_mut().chain([&mut self.scheduler]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn detect(store: &Path, baselines: &Path, cluster: Option<&str>) -> String {
    let mut command = iodrift();
    command
        .args(["detect", "--format", "ndjson", "--now", NOW, "--store"])
        .arg(store)
        .arg("--baselines")
        .arg(baselines);
    if let Some(url) = cluster {
        command.args(["--cluster", url]);
    }
    stdout_of(&mut command)
}

fn sql(store: &Path, baselines: &Path, query: &str, cluster: Option<&str>) -> String {
    let mut command = iodrift();
    command
        .args([
            "sql",
            "--format",
            "csv",
            "--now",
            NOW,
            "--earliest",
            "-1h@h",
            "--latest",
            "@h",
        ])
        .arg("--store")
        .arg(store)
        .arg("--baselines")
        .arg(baselines)
        .args(["-c", query]);
    if let Some(url) = cluster {
        command.args(["--cluster", url]);
    }
    stdout_of(&mut command)
}

#[test]
fn both_rules_on_two_executors_answer_as_the_embedded_engine() {
    let generated = common::generate(11);
    let cluster = Cluster::start();
    let embedded = generated.dir.path().join("embedded");
    generated.baseline_command(&embedded).assert().success();

    let distributed = generated.dir.path().join("distributed");
    let output = generated
        .baseline_command(&distributed)
        .args(["--cluster", &cluster.url])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        cluster.logs()
    );
    assert_same_lookups(&distributed, &embedded);
    for executor in ["executor-0", "executor-1"] {
        let log = std::fs::read_to_string(cluster.logs.path().join(format!("{executor}.log")));
        assert!(
            log.unwrap().contains("Executor memory pool: 256.0 MiB"),
            "--memory-limit reaches the executors' pool\n{}",
            cluster.logs()
        );
    }

    let expected = detect(&generated.store, &embedded, None);
    assert!(
        expected.lines().count() > 0,
        "the store's last hours hold findings"
    );
    let actual = detect(&generated.store, &distributed, Some(&cluster.url));
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&actual), sorted(&expected), "the same findings");
    assert_eq!(actual, expected, "in the same order");

    let query = "SELECT count(*) AS rows, sum(value) AS total, count(DISTINCT pod) AS pods \
                 FROM metrics";
    assert_eq!(
        sql(&generated.store, &distributed, query, Some(&cluster.url)),
        sql(&generated.store, &embedded, query, None)
    );

    // Any ORDER BY keeps its order on the cluster, not only the findings' own.
    let query = "SELECT rule, \"k8s.pod.name\", \"count\" FROM findings \
                 ORDER BY rule DESC, \"k8s.pod.name\"";
    let ordered = sql(&generated.store, &embedded, query, None);
    assert!(ordered.lines().count() > 2, "{ordered}");
    assert_eq!(
        sql(&generated.store, &distributed, query, Some(&cluster.url)),
        ordered
    );

    // An external table over files every process sees runs there; a table held in the client's
    // memory is refused while planning, by name.
    let query = format!(
        "CREATE EXTERNAL TABLE lookup STORED AS CSV LOCATION '{}' \
         OPTIONS ('format.has_header' 'true'); SELECT count(*) AS keys FROM lookup",
        distributed.join(LOOKUP_FILES[0]).display()
    );
    assert_eq!(
        sql(&generated.store, &distributed, &query, Some(&cluster.url)),
        sql(&generated.store, &embedded, &query, None)
    );
    let output = iodrift()
        .args(["sql", "--store"])
        .arg(&generated.store)
        .args(["--cluster", &cluster.url])
        .args([
            "-c",
            "CREATE TABLE scratch AS SELECT 1 AS x; SELECT * FROM scratch",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("table scratch cannot run on a cluster") && !stderr.contains("bug"),
        "{stderr}"
    );
}

/// A rule from a folder (tests/user_rules.rs runs it embedded, locally and on S3): its baseline
/// and findings on the cluster are the embedded engine's.
#[test]
fn a_rule_from_a_folder_on_two_executors_answers_as_the_embedded_engine() {
    let generated = common::generate(7);
    let rules = common::write_user_rule(generated.dir.path());
    let cluster = Cluster::start();
    let run = |args: &[&str], out: &Path, on_cluster: bool| {
        let mut command = iodrift();
        command
            .arg("--rules")
            .arg(&rules)
            .args(args)
            .arg("--store")
            .arg(&generated.store)
            .arg(if args[0] == "baseline" {
                "--out"
            } else {
                "--baselines"
            })
            .arg(out);
        if on_cluster {
            command.args(["--cluster", &cluster.url]);
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&output.stderr),
            cluster.logs()
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let baseline = [
        "baseline",
        "--rule",
        "tx-peak",
        "--full",
        "--earliest",
        START,
        "--latest",
        DAY_END,
    ];
    let embedded = generated.dir.path().join("embedded");
    let distributed = generated.dir.path().join("distributed");
    run(&baseline, &embedded, false);
    run(&baseline, &distributed, true);
    let lookup = |dir: &Path| std::fs::read_to_string(dir.join("tx_peak_baseline.csv")).unwrap();
    assert!(lookup(&embedded).lines().count() > 5);
    assert_eq!(lookup(&distributed), lookup(&embedded));

    let detect = [
        "detect", "--rule", "tx-peak", "--format", "ndjson", "--now", NOW,
    ];
    let expected = run(&detect, &embedded, false);
    assert!(expected.contains("\"rule\":\"tx-peak\""), "{expected}");
    assert_eq!(run(&detect, &distributed, true), expected);
}

#[test]
fn a_scheduler_that_is_not_there_is_a_clear_error() {
    let generated = common::generate(3);
    let port = free_port();
    let output = iodrift()
        .args(["sql", "-c", "SELECT 1", "--store"])
        .arg(&generated.store)
        .args(["--cluster", &format!("df://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("no scheduler answers at 127.0.0.1:{port}")),
        "{stderr}"
    );
}

/// One executor is killed while the cluster computes both baselines over the whole store: the
/// run then fails with an error, writing no lookup, or finishes with the embedded lookups.
#[test]
fn an_executor_killed_mid_query_gives_an_error_or_the_same_answer() {
    let generated = common::generate(5);
    let embedded = generated.dir.path().join("embedded");
    let distributed = generated.dir.path().join("distributed");
    let whole_store = |out: &PathBuf| {
        let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("iodrift"));
        command
            .args(["baseline", "--full", "--earliest", common::START])
            .args(["--latest", "2026-03-02T02:00:00Z", "--store"])
            .arg(&generated.store)
            .arg("--out")
            .arg(out)
            .env("HOME", std::env::temp_dir());
        command
    };
    assert!(whole_store(&embedded).status().unwrap().success());

    let mut cluster = Cluster::start();
    let mut run = whole_store(&distributed)
        .args(["--cluster", &cluster.url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The kill lands on the first executor to hold shuffle output of this job (which a later
    // stage or the client has yet to read), before the run has ended.
    let work_dirs: Vec<PathBuf> = (0..cluster.executors.len())
        .map(|i| cluster.logs.path().join(format!("work-{i}")))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let victim = loop {
        if let Some(i) = work_dirs.iter().position(|dir| holds_shuffle_output(dir)) {
            break i;
        }
        assert!(
            run.try_wait().unwrap().is_none(),
            "the run ended before any executor wrote shuffle output\n{}",
            cluster.logs()
        );
        assert!(Instant::now() < deadline, "no shuffle output within 120 s");
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut victim = cluster.executors.remove(victim);
    victim.kill().unwrap();
    victim.wait().unwrap();
    assert!(
        run.try_wait().unwrap().is_none(),
        "the run ended before the kill landed"
    );

    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = run.kill();
            panic!(
                "the run neither failed nor finished within 240 s\n{}",
                cluster.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().unwrap(), &mut stderr).unwrap();
    if status.success() {
        eprintln!("the cluster retried the lost executor's tasks and finished");
        assert_same_lookups(&distributed, &embedded);
    } else {
        eprintln!("the run failed: {stderr}");
        assert!(stderr.contains("iodrift: error:"), "{stderr}");
        for name in LOOKUP_FILES {
            assert!(
                !distributed.join(name).exists(),
                "{name} written by a failed run"
            );
        }
    }
}

/// The environment that points a process at `server`: endpoint and test credentials.
fn s3_env(server: &S3Server) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&str, String)> = CREDENTIALS
        .iter()
        .map(|(k, v)| (*k, v.to_string()))
        .collect();
    env.push(("AWS_ENDPOINT", server.endpoint()));
    env
}

/// Store and lookups on an S3-compatible server (moto on 127.0.0.1), reached by every process of
/// the cluster: the lookups the cluster writes and the findings it returns are the embedded ones.
#[test]
fn a_store_and_lookups_on_s3_give_the_embedded_answers() {
    let server = S3Server::start();
    server.create_bucket("lake");
    let env = s3_env(&server);
    let iodrift_s3 = || {
        let mut command = iodrift();
        command.envs(env.iter().map(|(k, v)| (k, v)));
        command
    };
    iodrift_s3()
        .args(GENERATE)
        .args(["--seed", "13", "--out", "s3://lake/store"])
        .assert()
        .success();
    let cluster = Cluster::start_with_env(&env);

    let baseline = |out: &str, on_cluster: bool| {
        let mut command = baseline_command("s3://lake/store", out);
        command.envs(env.iter().map(|(k, v)| (k, v)));
        if on_cluster {
            command.args(["--cluster", &cluster.url]);
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&output.stderr),
            cluster.logs()
        );
    };
    baseline("s3://lake/embedded", false);
    baseline("s3://lake/distributed", true);
    for name in LOOKUP_FILES {
        let embedded = server.get("lake", &format!("embedded/{name}"));
        assert!(embedded.is_some(), "{name}");
        assert_eq!(
            server.get("lake", &format!("distributed/{name}")),
            embedded,
            "{name}\n{}",
            cluster.logs()
        );
    }

    let detect = |baselines: &str, cluster: Option<&str>| {
        let mut command = iodrift_s3();
        command
            .args(["detect", "--format", "ndjson", "--now", NOW])
            .args(["--store", "s3://lake/store", "--baselines", baselines]);
        if let Some(url) = cluster {
            command.args(["--cluster", url]);
        }
        stdout_of(&mut command)
    };
    let expected = detect("s3://lake/embedded", None);
    assert!(
        expected.lines().count() > 0,
        "the store's last hours hold findings"
    );
    assert_eq!(
        detect("s3://lake/distributed", Some(&cluster.url)),
        expected
    );
}

/// Lookups the client reads but the scheduler cannot (here: its S3 endpoint is another server)
/// are an error naming them, never a detection against empty lookups.
#[test]
fn lookups_the_scheduler_cannot_read_are_an_error_not_empty_lookups() {
    let (clients, schedulers) = (S3Server::start(), S3Server::start());
    for server in [&clients, &schedulers] {
        server.create_bucket("lake");
    }
    let client_env = s3_env(&clients);
    let generated = common::generate(17);
    baseline_command(&generated.store, "s3://lake/baselines")
        .envs(client_env.iter().map(|(k, v)| (k, v)))
        .assert()
        .success();
    let cluster = Cluster::start_with_env(&s3_env(&schedulers));

    let output = iodrift()
        .envs(client_env.iter().map(|(k, v)| (k, v)))
        .args(["detect", "--now", NOW, "--store"])
        .arg(&generated.store)
        .args([
            "--baselines",
            "s3://lake/baselines",
            "--cluster",
            &cluster.url,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("_baseline: the client read") && stderr.contains("the scheduler 0"),
        "{stderr}\n{}",
        cluster.logs()
    );
}
