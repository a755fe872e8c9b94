//! Rules are folders: a rule that no iodrift build knows, written into a temporary folder as a
//! manifest and SQL only, runs through `baseline`, `detect`, `eval`, `run-due` and `sql`, on a
//! local store and on S3 (tests/ballista.rs runs it on a cluster); a broken rule folder is an
//! error that names its file.

mod common;

use std::path::Path;

use common::s3::{CREDENTIALS, S3Server};
use common::{
    DAY_END, GENERATE, NOW, START, generate, iodrift, schedule_config, stdout_of, write_user_rule,
};
use predicates::prelude::*;
use predicates::str::contains;

/// `iodrift` with `--rules` naming the folder of the test rule.
fn with_rules(rules: &Path) -> assert_cmd::Command {
    let mut command = iodrift();
    command.arg("--rules").arg(rules);
    command
}

fn lookup_rows(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_rule_from_a_folder_runs_every_command_on_a_local_store() {
    let generated = generate(7);
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_user_rule(&rules);

    // Baseline from raw rows, then merged from the hours' rollups: the same bytes.
    let full = dir.path().join("full");
    let merged = dir.path().join("merged");
    for (out, extra) in [(&full, vec!["--full"]), (&merged, vec![])] {
        let printed = stdout_of(
            with_rules(&rules)
                .args(["baseline", "--rule", "tx-peak", "--earliest", START])
                .args(["--latest", DAY_END, "--store"])
                .arg(&generated.store)
                .arg("--out")
                .arg(out)
                .args(extra),
        );
        assert!(printed.contains("tx_peak_baseline"), "{printed}");
    }
    let rows = lookup_rows(&full.join("tx_peak_baseline.csv"));
    assert_eq!(rows[0], "key,peak,spans");
    assert!(rows.len() > 5, "{rows:?}");
    assert_eq!(rows, lookup_rows(&merged.join("tx_peak_baseline.csv")));
    assert!(
        generated
            .store
            .join("_rollups/tx_peak_baseline/dt=2026-03-01/hour=05.parquet")
            .is_file()
    );
    // Only the chosen rule's tables are written.
    assert!(!full.join("k8s_container_network_io_baseline.csv").exists());

    // Detect: the rule's findings, with its own risk data, on an attacked pod.
    let json = stdout_of(
        with_rules(&rules)
            .args([
                "detect", "--rule", "tx-peak", "--format", "json", "--now", NOW,
            ])
            .arg("--store")
            .arg(&generated.store)
            .arg("--baselines")
            .arg(&full),
    );
    let findings: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert!(!findings.is_empty(), "{json}");
    for finding in &findings {
        assert_eq!(finding["rule"], "tx-peak");
        assert_eq!(finding["risk_score"], 40);
        assert_eq!(finding["mitre_attack_id"], "T1041,T1048");
        assert!(finding["count"].as_i64().unwrap() >= 3);
        let host = finding["host"].as_str().unwrap();
        assert_eq!(
            finding["risk_message"],
            format!("Outbound above the service's peak on host {host}")
        );
    }
    let labels: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(generated.dir.path().join("store.labels.json")).unwrap(),
    )
    .unwrap();
    let exfiltrated: Vec<&str> = labels["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["scenario"] == "exfiltration")
        .map(|l| l["pod"].as_str().unwrap())
        .collect();
    assert!(
        findings
            .iter()
            .any(|f| exfiltrated.contains(&f["k8s.pod.name"].as_str().unwrap())),
        "no finding on an exfiltrating pod {exfiltrated:?}: {json}"
    );
    // The built-in rules still run beside it, and `all` takes every rule.
    let everything = dir.path().join("everything");
    with_rules(&rules)
        .args([
            "baseline",
            "--full",
            "--earliest",
            START,
            "--latest",
            DAY_END,
            "--store",
        ])
        .arg(&generated.store)
        .arg("--out")
        .arg(&everything)
        .assert()
        .success();
    assert_eq!(rows, lookup_rows(&everything.join("tx_peak_baseline.csv")));
    let all = stdout_of(
        with_rules(&rules)
            .args(["detect", "--format", "csv", "--now", NOW])
            .arg("--store")
            .arg(&generated.store)
            .arg("--baselines")
            .arg(&everything),
    );
    assert!(all.contains("network-io-ratio"), "{all}");
    assert!(all.contains("tx-peak"), "{all}");

    // SQL: the rule's views in its own schema, its table among the shared ones.
    let sql = |query: &str| {
        stdout_of(
            with_rules(&rules)
                .args(["sql", "--format", "csv", "--store"])
                .arg(&generated.store)
                .arg("--baselines")
                .arg(&full)
                .args(["-c", query]),
        )
    };
    let peaks = sql("SELECT count(*) AS n FROM tx_peak.baseline");
    assert_eq!(
        peaks.lines().nth(1),
        Some((rows.len() - 1).to_string().as_str())
    );
    let listed = sql("SELECT rule, schema, tables, min_buckets FROM rules ORDER BY rule");
    assert!(
        listed.contains("tx-peak,tx_peak,tx_peak_baseline,3"),
        "{listed}"
    );
    let loaded = sql("SELECT count(*) AS n FROM tx_peak_baseline");
    assert_eq!(loaded.lines().nth(1), peaks.lines().nth(1));

    // Eval: the replayed schedule scores the rule by name.
    let scores = stdout_of(
        with_rules(&rules)
            .args(["eval", "--rule", "tx-peak", "--format", "json", "--store"])
            .arg(&generated.store)
            .arg("--labels")
            .arg(generated.dir.path().join("store.labels.json")),
    );
    let scores: Vec<serde_json::Value> = serde_json::from_str(&scores).unwrap();
    let all_row = scores
        .iter()
        .find(|s| s["rule"] == "tx-peak" && s["scenario"] == "all")
        .unwrap_or_else(|| panic!("{scores:?}"));
    assert!(all_row["true_positives"].as_u64().unwrap() > 0, "{all_row}");
    assert!(scores.iter().all(|s| s["rule"] == "tx-peak"));

    // run-due: `rules_dir` in the config; the rule's own schedule (detections at minute 30)
    // makes it a job of its own beside the built-in rules'.
    let config = dir.path().join("iodrift.toml");
    let text = schedule_config(
        &generated.store.display().to_string(),
        &dir.path().join("scheduled").display().to_string(),
        &dir.path().join("findings").display().to_string(),
        "rules_dir = \"rules\"\n[baseline]\ncron = \"0 1 * * *\"\nearliest = \"-1d@d\"\nlatest = \"@d\"\nstart = \"2026-03-02T01:00:00Z\"\n[detect]\nstart = \"2026-03-02T01:00:00Z\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let printed = stdout_of(
        iodrift()
            .args(["run-due", "--now", "2026-03-02T02:05:00Z", "--config"])
            .arg(&config),
    );
    let jobs: Vec<String> = printed
        .lines()
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        jobs,
        [
            "baseline 2026-03-02T01:00:00Z",
            "detect-drift-network-io-network-io-ratio 2026-03-02T01:00:00Z",
            "detect-tx-peak 2026-03-02T01:30:00Z",
            "detect-drift-network-io-network-io-ratio 2026-03-02T02:00:00Z",
            // drift's hourly rollups; the user's rule schedules none.
            "rollup 2026-03-02T02:05:00Z",
        ],
        "{printed}"
    );
    assert_eq!(
        lookup_rows(&dir.path().join("scheduled/tx_peak_baseline.csv")),
        rows
    );
    let scheduled = dir
        .path()
        .join("findings/tx-peak/dt=2026-03-02/20260302T002000Z_20260302T012000Z.ndjson");
    assert!(scheduled.is_file(), "{printed}");
}

#[test]
fn a_rule_from_a_folder_runs_on_an_s3_store() {
    let server = S3Server::start();
    server.create_bucket("lake");
    let s3 = |command: &mut assert_cmd::Command| {
        command
            .envs(CREDENTIALS)
            .args(["--s3-endpoint", &server.endpoint()]);
    };
    let mut generate = iodrift();
    s3(&mut generate);
    generate
        .args(GENERATE)
        .args(["--seed", "7", "--out", "s3://lake/store"])
        .assert()
        .success();
    let dir = tempfile::tempdir().unwrap();
    let rules = write_user_rule(dir.path());

    // `--rules` may name the rule folder itself.
    let mut baseline = with_rules(&rules);
    s3(&mut baseline);
    baseline
        .args(["baseline", "--rule", "tx-peak", "--earliest", START])
        .args(["--latest", DAY_END, "--store", "s3://lake/store"])
        .args(["--out", "s3://lake/baselines"])
        .assert()
        .success();
    let lookup = server
        .get("lake", "baselines/tx_peak_baseline.csv")
        .expect("the lookup on S3");
    assert!(
        String::from_utf8(lookup)
            .unwrap()
            .starts_with("key,peak,spans\n")
    );
    assert!(
        !server
            .keys("lake", "store/_rollups/tx_peak_baseline/")
            .is_empty()
    );

    let mut detect = with_rules(&rules);
    s3(&mut detect);
    let json = stdout_of(
        detect
            .args([
                "detect", "--rule", "tx-peak", "--format", "json", "--now", NOW,
            ])
            .args([
                "--store",
                "s3://lake/store",
                "--baselines",
                "s3://lake/baselines",
            ]),
    );
    let findings: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert!(!findings.is_empty(), "{json}");

    // The same answer as from a local copy of the store.
    let local = common::generate(7);
    let local_baselines = dir.path().join("baselines");
    with_rules(&rules)
        .args(["baseline", "--rule", "tx-peak", "--earliest", START])
        .args(["--latest", DAY_END, "--store"])
        .arg(&local.store)
        .arg("--out")
        .arg(&local_baselines)
        .assert()
        .success();
    let local_json = stdout_of(
        with_rules(&rules)
            .args([
                "detect", "--rule", "tx-peak", "--format", "json", "--now", NOW,
            ])
            .arg("--store")
            .arg(&local.store)
            .arg("--baselines")
            .arg(&local_baselines),
    );
    assert_eq!(json, local_json);

    let config = dir.path().join("iodrift.toml");
    let jobs = format!(
        "rules = [\"tx-peak\"]\nrules_dir = {:?}\n[baseline]\nenabled = false\n[detect]\nstart = \"2026-03-02T01:30:00Z\"\n",
        rules.display().to_string()
    );
    std::fs::write(
        &config,
        schedule_config(
            "s3://lake/store",
            "s3://lake/baselines",
            "s3://lake/findings",
            &jobs,
        ),
    )
    .unwrap();
    let mut run_due = iodrift();
    s3(&mut run_due);
    let printed = stdout_of(
        run_due
            .args(["run-due", "--now", "2026-03-02T02:05:00Z", "--config"])
            .arg(&config),
    );
    assert!(
        printed.starts_with("detect 2026-03-02T01:30:00Z"),
        "{printed}"
    );
    assert_eq!(
        server.keys("lake", "findings/"),
        ["findings/tx-peak/dt=2026-03-02/20260302T002000Z_20260302T012000Z.ndjson"]
    );
}

#[test]
fn a_broken_rule_folder_is_an_error_naming_its_file() {
    let generated = generate(3);
    let dir = tempfile::tempdir().unwrap();
    let folder = write_user_rule(dir.path());
    let run = || {
        let mut command = with_rules(&folder);
        command
            .args(["detect", "--rule", "tx-peak", "--now", NOW, "--store"])
            .arg(&generated.store)
            .arg("--baselines")
            .arg(dir.path());
        command
    };
    std::fs::write(dir.path().join("tx_peak_baseline.csv"), "key,peak,spans\n").unwrap();
    // SQL that does not plan: the file and DataFusion's reason.
    std::fs::write(
        folder.join("detect.sql"),
        "CREATE VIEW anomalous_buckets AS SELECT nope FROM spans;",
    )
    .unwrap();
    run()
        .assert()
        .failure()
        .stderr(contains("detect.sql").and(contains("nope")));
    // A manifest mistake: the file and the key.
    std::fs::write(folder.join("rule.toml"), "name = \"Tx Peak\"\n").unwrap();
    run()
        .assert()
        .failure()
        .stderr(contains("rule.toml").and(contains("missing field")));
    // A held view that the rule's SQL never creates: the manifest's key and the name.
    let held = dir.path().join("held");
    std::fs::create_dir_all(&held).unwrap();
    write_user_rule(&held);
    let manifest = std::fs::read_to_string(held.join("tx-peak/rule.toml"))
        .unwrap()
        .replace("[detection]\n", "[detection]\nmaterialize = [\"nope\"]\n");
    assert!(manifest.contains("materialize"), "{manifest}");
    std::fs::write(held.join("tx-peak/rule.toml"), manifest).unwrap();
    with_rules(&held)
        .args(["detect", "--rule", "tx-peak", "--now", NOW, "--store"])
        .arg(&generated.store)
        .arg("--baselines")
        .arg(dir.path())
        .assert()
        .failure()
        .stderr(contains("detection.materialize").and(contains("\"nope\"")));
    // A name taken by a built-in rule.
    let clash = dir.path().join("clash");
    std::fs::create_dir_all(&clash).unwrap();
    write_user_rule(&clash);
    let manifest = std::fs::read_to_string(clash.join("tx-peak/rule.toml"))
        .unwrap()
        .replace("name = \"tx-peak\"", "name = \"network-io\"")
        .replace("tx_peak_baseline", "other_baseline");
    std::fs::write(clash.join("tx-peak/rule.toml"), manifest).unwrap();
    with_rules(&clash)
        .args(["detect", "--now", NOW, "--store"])
        .arg(&generated.store)
        .arg("--baselines")
        .arg(dir.path())
        .assert()
        .failure()
        .stderr(contains("network-io").and(contains("built-in")));
    // An unknown rule names the known ones.
    iodrift()
        .args(["detect", "--rule", "tx-peak", "--now", NOW, "--store"])
        .arg(&generated.store)
        .arg("--baselines")
        .arg(dir.path())
        .assert()
        .failure()
        .stderr(contains("unknown rule \"tx-peak\"").and(contains("network-io-ratio")));
}
