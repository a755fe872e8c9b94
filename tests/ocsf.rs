//! `--format ocsf`: every finding of `detect`, `eval` and the schedule as an OCSF 1.1 Detection
//! Finding, checked against OCSF's own schema (tests/ocsf/, generated from its JSON export).

mod common;

use std::collections::BTreeSet;

use common::{NOW, iodrift, stdout_of};
use serde_json::{Value, json};

fn validator() -> jsonschema::Validator {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/ocsf/detection_finding-1.1.0.schema.json"
    );
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::draft202012::new(&schema).unwrap()
}

/// Every schema error of `event`, one per line (empty when it conforms).
fn schema_errors(validator: &jsonschema::Validator, event: &Value) -> String {
    validator
        .iter_errors(event)
        .map(|e| format!("{}: {e}\n", e.instance_path()))
        .collect()
}

/// What the schema cannot say (tests/ocsf/generate.py's JSON Schema leaves these out): the
/// type_uid is the class's and the activity's, and each caption names its id.
fn assert_consistent(event: &Value) {
    assert_eq!(
        event["type_uid"].as_i64().unwrap(),
        event["class_uid"].as_i64().unwrap() * 100 + event["activity_id"].as_i64().unwrap(),
        "{event}"
    );
    let captions = [
        ("activity_id", "activity_name", &[(1, "Create")][..]),
        (
            "severity_id",
            "severity",
            &[
                (1, "Informational"),
                (2, "Low"),
                (3, "Medium"),
                (4, "High"),
                (5, "Critical"),
            ],
        ),
        (
            "risk_level_id",
            "risk_level",
            &[
                (0, "Informational"),
                (1, "Low"),
                (2, "Medium"),
                (3, "High"),
                (4, "Critical"),
            ],
        ),
        ("status_id", "status", &[(1, "New")]),
        (
            "confidence_id",
            "confidence",
            &[(1, "Low"), (2, "Medium"), (3, "High")],
        ),
    ];
    for (id, caption, names) in captions {
        let Some(value) = event[id].as_i64() else {
            assert!(
                event.get(caption).is_none(),
                "{caption} without {id}: {event}"
            );
            continue;
        };
        let name = names.iter().find(|(v, _)| *v == value).map(|(_, n)| *n);
        assert_eq!(event[caption].as_str(), name, "{id} {value}: {event}");
    }
    assert_eq!(event["category_name"], "Findings");
    assert_eq!(event["class_name"], "Detection Finding");
    assert_eq!(event["type_name"], "Detection Finding: Create");
}

#[test]
fn detect_writes_findings_that_conform_to_ocsf_1_1() {
    let generated = common::generate(3);
    let baselines = generated.baselines();
    let detect = |format: &str| {
        let mut command = iodrift();
        command
            .args(["detect", "--now", NOW, "--format", format, "--store"])
            .arg(&generated.store)
            .arg("--baselines")
            .arg(&baselines);
        stdout_of(&mut command)
    };
    let findings: Vec<Value> = serde_json::from_str(&detect("json")).unwrap();
    let text = detect("ocsf");
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), findings.len());
    assert!(events.len() >= 2, "{text}");
    let validator = validator();
    for (event, finding) in events.iter().zip(&findings) {
        let errors = schema_errors(&validator, event);
        assert!(errors.is_empty(), "{errors}in {event:#}");
        assert_consistent(event);
        assert_eq!(event["metadata"]["version"], "1.1.0");
        assert_eq!(event["metadata"]["product"]["name"], "iodrift");
        assert_eq!(
            event["metadata"]["product"]["version"],
            env!("CARGO_PKG_VERSION")
        );
        // The finding's own fields, under their ESCU names, where OCSF has none.
        for field in common::FINDING_FIELDS {
            if !["count", "risk_score", "risk_message"].contains(&field) {
                assert_eq!(
                    event["unmapped"][field], finding[field],
                    "{field}: {event:#}"
                );
            }
        }
        assert_eq!(event["count"], finding["count"]);
        assert_eq!(event["risk_score"], finding["risk_score"]);
        assert_eq!(event["message"], finding["risk_message"]);
        let end =
            chrono::DateTime::parse_from_rfc3339(finding["window_end"].as_str().unwrap()).unwrap();
        assert_eq!(event["time"].as_i64().unwrap(), end.timestamp_millis());

        // The rule's techniques, score and search name: ESCU's for the ESCU rules.
        let info = &event["finding_info"];
        assert_eq!(info["analytic"]["uid"], finding["rule"]);
        assert_eq!(info["analytic"]["type_id"], 3);
        let techniques: Vec<&str> = info["attacks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["technique"]["uid"].as_str().unwrap())
            .collect();
        let search_name = event["unmapped"]["search_name"].as_str().unwrap();
        if finding["rule"] == "drift" {
            assert_eq!(techniques, ["T1041", "T1048", "T1071", "T1498"]);
            assert_eq!(info["attacks"][3]["tactic"]["name"], "Impact");
            assert_eq!(event["severity_id"], 3, "a risk score of 50 is medium");
            assert_eq!(search_name, "iodrift - drift - Rule");
        } else {
            assert_eq!(
                info["attacks"],
                json!([{
                    "technique": { "uid": "T1204", "name": "User Execution" },
                    "tactic": { "uid": "TA0002", "name": "Execution" },
                }])
            );
            assert_eq!(event["severity_id"], 2, "a risk score of 20 or 25 is low");
            assert!(
                search_name.starts_with("ESCU - Kubernetes Anomalous"),
                "{event:#}"
            );
        }

        // The pod, its node, its workload and cluster; the pod's namespace from the store.
        let resources = event["resources"].as_array().unwrap();
        let kinds: Vec<&str> = resources
            .iter()
            .map(|r| r["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["Pod", "Node", "Workload", "Cluster"], "{event:#}");
        assert_eq!(resources[0]["name"], finding["k8s.pod.name"]);
        assert!(
            resources[0]["namespace"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
        );
        assert_eq!(resources[1]["name"], finding["host"]);
        assert_eq!(resources[3]["name"], finding["k8s.cluster.name"]);

        // Each measure that fired, against the band of its baseline.
        let analyses = event["unmapped"]["anomaly_analyses"].as_array().unwrap();
        assert!(!analyses.is_empty(), "{event:#}");
        let mut buckets = 0;
        for analysis in analyses {
            let observed = analysis["observed"].as_f64().unwrap();
            let expected = analysis["expected"].as_f64().unwrap();
            match (
                analysis["band_lower"].as_f64(),
                analysis["band_upper"].as_f64(),
            ) {
                (None, Some(upper)) => assert!(expected < upper && upper < observed, "{analysis}"),
                (Some(lower), None) => assert!(observed < lower && lower < expected, "{analysis}"),
                _ => panic!("one edge of the band: {analysis}"),
            }
            assert!(
                analysis["first_bucket_time"].as_i64() <= analysis["last_bucket_time"].as_i64()
            );
            buckets = buckets.max(analysis["buckets"].as_i64().unwrap());
        }
        // A bucket counts once for the finding, whichever of its measures fired.
        assert!(buckets <= finding["count"].as_i64().unwrap(), "{event:#}");
        assert_eq!(event["evidences"].as_array().unwrap().len(), analyses.len());
    }

    // The same window gives the same ids; every finding its own.
    let again: Vec<Value> = detect("ocsf")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let uids = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["finding_info"]["uid"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(uids(&again), uids(&events));
    assert_eq!(
        uids(&events).into_iter().collect::<BTreeSet<_>>().len(),
        events.len()
    );
}

#[test]
fn the_schema_refuses_what_ocsf_does_not_allow() {
    // The check itself: a conforming event with one thing wrong at a time fails.
    let generated = common::generate(3);
    let baselines = generated.baselines();
    let mut command = iodrift();
    command
        .args(["detect", "--now", NOW, "--format", "ocsf", "--store"])
        .arg(&generated.store)
        .arg("--baselines")
        .arg(&baselines);
    let text = stdout_of(&mut command);
    let event: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let validator = validator();
    assert_eq!(schema_errors(&validator, &event), "");
    let broken = |change: &dyn Fn(&mut Value)| {
        let mut copy = event.clone();
        change(&mut copy);
        schema_errors(&validator, &copy)
    };
    assert!(
        !broken(&|e| {
            e.as_object_mut().unwrap().remove("time");
        })
        .is_empty()
    );
    assert!(!broken(&|e| e["severity_id"] = json!("low")).is_empty());
    assert!(!broken(&|e| e["finding_info"]["analytic"]["type_id"] = json!(9)).is_empty());
    assert!(!broken(&|e| e["resources"][0]["pod"] = json!("x")).is_empty());
    assert!(!broken(&|e| e["anomaly_analyses"] = json!([])).is_empty());
}

#[test]
fn eval_writes_every_runs_findings_as_ocsf() {
    let generated = common::generate(3);
    let labels = generated.dir.path().join("store.labels.json");
    let output = iodrift()
        .args(["eval", "--format", "ocsf", "--store"])
        .arg(&generated.store)
        .arg("--labels")
        .arg(&labels)
        .assert()
        .success()
        .get_output()
        .clone();
    let text = String::from_utf8(output.stdout).unwrap();
    let scores = String::from_utf8(output.stderr).unwrap();
    assert!(scores.contains("| rule"), "{scores}");
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!events.is_empty());
    let validator = validator();
    for event in &events {
        let errors = schema_errors(&validator, event);
        assert!(errors.is_empty(), "{errors}in {event:#}");
        assert_consistent(event);
    }
    // One event per finding of each hourly run: as many as the scores count.
    let json = stdout_of(
        iodrift()
            .args(["eval", "--format", "json", "--store"])
            .arg(&generated.store)
            .arg("--labels")
            .arg(&labels),
    );
    let rows: Vec<Value> = serde_json::from_str(&json).unwrap();
    let counted: u64 = rows
        .iter()
        .filter(|r| r["scenario"] == "all")
        .map(|r| r["findings"].as_u64().unwrap())
        .sum();
    assert_eq!(events.len() as u64, counted);
}

#[test]
fn the_sql_command_and_the_repl_refuse_ocsf() {
    let generated = common::generate(3);
    iodrift()
        .args(["sql", "--format", "ocsf", "-c", "SELECT 1", "--store"])
        .arg(&generated.store)
        .assert()
        .failure()
        .stderr(predicates::str::contains("ocsf"));
}

#[test]
fn the_schedule_writes_ocsf_findings_and_security_lake_objects() {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let generated = common::generate(1);
    let dir = generated.dir.path();
    let jobs = format!(
        "{}format = \"ocsf\"\n\n[security_lake]\nlocation = \"lake/ext/iodrift\"\n\
         region = \"us-east-1\"\naccount_id = \"123456789012\"\n",
        common::DAY_TWO_JOBS
    );
    let config = dir.join("iodrift.toml");
    std::fs::write(
        &config,
        common::schedule_config("store", "baselines", "findings", &jobs),
    )
    .unwrap();
    stdout_of(
        iodrift()
            .args(["run-due", "--now", "2026-03-02T02:05:00Z", "--config"])
            .arg(&config),
    );
    let validator = validator();
    let partition =
        dir.join("lake/ext/iodrift/region=us-east-1/accountId=123456789012/eventDay=20260302");
    let mut objects = 0;
    for (window, stamp) in [
        (
            "20260301T235000Z_20260302T005000Z",
            "detect_20260301T235000Z_20260302T005000Z",
        ),
        (
            "20260302T005000Z_20260302T015000Z",
            "detect_20260302T005000Z_20260302T015000Z",
        ),
    ] {
        // Each rule's findings of the window, OCSF events one per line.
        let mut events = Vec::new();
        for rule in ["drift", "network-io", "network-io-ratio"] {
            let day = &window[..8];
            let path = dir.join(format!(
                "findings/{rule}/dt={}-{}-{}/{window}.ocsf.json",
                &day[..4],
                &day[4..6],
                &day[6..]
            ));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for line in text.lines() {
                let event: Value = serde_json::from_str(line).unwrap();
                let errors = schema_errors(&validator, &event);
                assert!(errors.is_empty(), "{errors}in {event:#}");
                assert_consistent(&event);
                events.push(event);
            }
        }
        // The same events as one Parquet object of the custom source, in time order.
        let object = partition.join(format!("{stamp}.parquet"));
        if events.is_empty() {
            assert!(!object.exists(), "{}", object.display());
            continue;
        }
        objects += 1;
        let file =
            std::fs::File::open(&object).unwrap_or_else(|e| panic!("{}: {e}", object.display()));
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<_> = reader.map(Result::unwrap).collect();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, events.len());
        let mut uids = Vec::new();
        let mut times = Vec::new();
        for batch in &batches {
            assert_eq!(
                batch
                    .column_by_name("class_uid")
                    .unwrap()
                    .as_primitive::<datafusion::arrow::datatypes::Int32Type>()
                    .value(0),
                2004
            );
            let time = batch
                .column_by_name("time")
                .unwrap()
                .as_primitive::<Int64Type>();
            times.extend(time.iter().map(Option::unwrap));
            let info = batch.column_by_name("finding_info").unwrap().as_struct();
            let uid = info.column_by_name("uid").unwrap().as_string::<i32>();
            uids.extend((0..uid.len()).map(|i| uid.value(i).to_string()));
        }
        assert!(times.is_sorted(), "{times:?}");
        let mut expected: Vec<String> = events
            .iter()
            .map(|e| e["finding_info"]["uid"].as_str().unwrap().to_string())
            .collect();
        expected.sort();
        uids.sort();
        assert_eq!(uids, expected);
    }
    assert!(objects >= 1, "no window had a finding");
}
