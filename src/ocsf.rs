//! Findings as OCSF 1.1 Detection Findings (class 2004): one event per finding, with the rule's
//! analytic and ATT&CK techniques, the pod's resources and evidence, and what OCSF has no home for.
//!
//! Written by hand over `serde_json`: no maintained Rust crate models OCSF's classes. The events
//! are checked against the schema itself in the tests (tests/ocsf.rs, the schema's JSON export of
//! version 1.1.0 vendored under tests/ocsf/).

use std::io::Write;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::evidence::{Context, Evidence, contexts};
use crate::finding::Finding;
use crate::rule::{AnalyticType, Rule};
use crate::session::Session;

/// The OCSF schema version the events follow (`metadata.version`): the one AWS Security Lake's
/// custom sources take.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// The Detection Finding class of the Findings category, and its Create activity.
const CLASS_UID: i64 = 2004;
const CATEGORY_UID: i64 = 2;
const ACTIVITY_CREATE: i64 = 1;

/// The events of `findings` (of `rules`), found in `session`, in their order.
pub async fn events(session: &Session, rules: &[Rule], findings: &[Finding]) -> Result<Vec<Value>> {
    let contexts = contexts(session, rules, findings).await?;
    findings
        .iter()
        .zip(&contexts)
        .map(|(finding, context)| {
            let rule = rules
                .iter()
                .find(|r| r.name == finding.rule)
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "finding of rule {:?}, which did not run",
                        finding.rule
                    ))
                })?;
            detection_finding(finding, rule, context)
        })
        .collect()
}

/// Writes events one JSON object per line.
pub fn write(out: &mut dyn Write, events: &[Value]) -> Result<()> {
    let io = |e: std::io::Error| Error::query("write output")(e.into());
    for event in events {
        serde_json::to_writer(&mut *out, event).map_err(|e| io(e.into()))?;
        out.write_all(b"\n").map_err(io)?;
    }
    Ok(())
}

/// The Detection Finding of one finding of `rule`.
pub fn detection_finding(finding: &Finding, rule: &Rule, context: &Context) -> Result<Value> {
    let time = |text: &str, field: &str| {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                Error::Usage(format!(
                    "finding of {} on {}: {field} {text:?} is not a time: {e}",
                    finding.rule, finding.pod
                ))
            })
    };
    let start = time(&finding.window_start, "window_start")?;
    let end = time(&finding.window_end, "window_end")?;
    let (severity_id, severity) = severity(finding.risk_score);
    let pod_uid = match &context.namespace {
        Some(namespace) => format!("{}/{namespace}/{}", finding.cluster, finding.pod),
        None => format!("{}/{}", finding.cluster, finding.pod),
    };
    let first_seen = context.evidence.iter().filter_map(|e| e.first_bucket).min();
    let last_seen = context.evidence.iter().filter_map(|e| e.last_bucket).max();

    let mut info = Map::new();
    info.insert("uid".into(), uid(finding).into());
    info.insert("title".into(), rule.title.clone().into());
    info.insert("desc".into(), finding.risk_message.clone().into());
    info.insert("types".into(), json!(["Anomaly"]));
    info.insert("analytic".into(), analytic(rule));
    info.insert("attacks".into(), attacks(&finding.mitre_attack_id));
    info.insert("data_sources".into(), json!(["k8s.pod.network.io"]));
    info.insert("created_time".into(), end.timestamp_millis().into());
    if let (Some(first), Some(last)) = (first_seen, last_seen) {
        info.insert("first_seen_time".into(), first.timestamp_millis().into());
        // A bucket lasts 10 s: the last one ends 10 s after it starts.
        info.insert(
            "last_seen_time".into(),
            (last.timestamp_millis() + 10_000).into(),
        );
    }

    let mut event = Map::new();
    event.insert("activity_id".into(), ACTIVITY_CREATE.into());
    event.insert("activity_name".into(), "Create".into());
    event.insert("category_uid".into(), CATEGORY_UID.into());
    event.insert("category_name".into(), "Findings".into());
    event.insert("class_uid".into(), CLASS_UID.into());
    event.insert("class_name".into(), "Detection Finding".into());
    event.insert(
        "type_uid".into(),
        (CLASS_UID * 100 + ACTIVITY_CREATE).into(),
    );
    event.insert("type_name".into(), "Detection Finding: Create".into());
    event.insert("severity_id".into(), severity_id.into());
    event.insert("severity".into(), severity.into());
    event.insert("risk_score".into(), finding.risk_score.into());
    event.insert("risk_level_id".into(), (severity_id - 1).into());
    event.insert("risk_level".into(), severity.into());
    if let Some(confidence) = rule.confidence {
        let (id, name) = confidence_level(confidence);
        event.insert("confidence_id".into(), id.into());
        event.insert("confidence".into(), name.into());
        event.insert("confidence_score".into(), i64::from(confidence).into());
    }
    event.insert("status_id".into(), 1.into());
    event.insert("status".into(), "New".into());
    event.insert("time".into(), end.timestamp_millis().into());
    event.insert("start_time".into(), start.timestamp_millis().into());
    event.insert("end_time".into(), end.timestamp_millis().into());
    event.insert("timezone_offset".into(), 0.into());
    event.insert("count".into(), finding.count.into());
    event.insert("message".into(), finding.risk_message.clone().into());
    event.insert(
        "metadata".into(),
        json!({
            "version": SCHEMA_VERSION,
            "product": {
                "name": "iodrift",
                "vendor_name": "iodrift",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "log_name": "findings",
            "log_provider": "iodrift",
        }),
    );
    event.insert("finding_info".into(), Value::Object(info));
    event.insert("resources".into(), resources(finding, context, &pod_uid));
    event.insert("evidences".into(), evidences(finding, &context.evidence));
    event.insert(
        "observables".into(),
        json!([
            { "name": "resources.uid", "type_id": 10, "type": "Resource UID", "value": pod_uid },
            { "name": "resources.name", "type_id": 1, "type": "Hostname", "value": finding.host },
        ]),
    );
    event.insert(
        "unmapped".into(),
        unmapped(finding, rule, &context.evidence),
    );
    Ok(Value::Object(event))
}

/// The finding's id, the same whenever the same rule finds the same pod over the same window
/// (a rerun replaces, a SIEM deduplicates): a UUID (version 8, RFC 9562) of a BLAKE3 digest.
pub fn uid(finding: &Finding) -> String {
    let mut hasher = blake3::Hasher::new();
    for part in [
        "iodrift finding",
        &finding.rule,
        &finding.cluster,
        &finding.pod,
        &finding.window_start,
        &finding.window_end,
    ] {
        hasher.update(part.as_bytes());
        hasher.update(&[0]);
    }
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// OCSF's severity (and risk level, one below it) from a risk score of 0 to 100: 0 is
/// informational, then low below 30, medium below 60, high below 80, critical from 80.
fn severity(score: i64) -> (i64, &'static str) {
    match score {
        i64::MIN..=0 => (1, "Informational"),
        1..=29 => (2, "Low"),
        30..=59 => (3, "Medium"),
        60..=79 => (4, "High"),
        _ => (5, "Critical"),
    }
}

/// OCSF's confidence level from a confidence of 0 to 100: thirds.
fn confidence_level(confidence: u8) -> (i64, &'static str) {
    match confidence {
        0..=33 => (1, "Low"),
        34..=66 => (2, "Medium"),
        _ => (3, "High"),
    }
}

fn analytic(rule: &Rule) -> Value {
    let (type_id, name) = match rule.analytic_type {
        AnalyticType::Rule => (1, "Rule"),
        AnalyticType::Behavioral => (2, "Behavioral"),
        AnalyticType::Statistical => (3, "Statistical"),
        AnalyticType::Learning => (4, "Learning (ML/DL)"),
    };
    json!({
        "name": rule.title,
        "uid": rule.name,
        "type_id": type_id,
        "type": name,
    })
}

/// The ATT&CK techniques of the rule, each with its tactic where iodrift knows it.
fn attacks(ids: &str) -> Value {
    let attacks: Vec<Value> = ids
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| match TECHNIQUES.iter().find(|t| t.0 == id) {
            Some(&(uid, name, tactic_uid, tactic)) => json!({
                "technique": { "uid": uid, "name": name },
                "tactic": { "uid": tactic_uid, "name": tactic },
            }),
            None => json!({ "technique": { "uid": id } }),
        })
        .collect();
    Value::Array(attacks)
}

/// ATT&CK Enterprise techniques that network-volume detections map to (with the built-in
/// rules'), and the tactic each serves in that role: (technique, name, tactic, tactic name).
/// A rule's other techniques go out with their id alone.
const TECHNIQUES: &[(&str, &str, &str, &str)] = &[
    ("T1204", "User Execution", "TA0002", "Execution"),
    (
        "T1609",
        "Container Administration Command",
        "TA0002",
        "Execution",
    ),
    ("T1610", "Deploy Container", "TA0005", "Defense Evasion"),
    ("T1046", "Network Service Discovery", "TA0007", "Discovery"),
    ("T1020", "Automated Exfiltration", "TA0010", "Exfiltration"),
    ("T1029", "Scheduled Transfer", "TA0010", "Exfiltration"),
    (
        "T1030",
        "Data Transfer Size Limits",
        "TA0010",
        "Exfiltration",
    ),
    (
        "T1041",
        "Exfiltration Over C2 Channel",
        "TA0010",
        "Exfiltration",
    ),
    (
        "T1048",
        "Exfiltration Over Alternative Protocol",
        "TA0010",
        "Exfiltration",
    ),
    (
        "T1567",
        "Exfiltration Over Web Service",
        "TA0010",
        "Exfiltration",
    ),
    (
        "T1071",
        "Application Layer Protocol",
        "TA0011",
        "Command and Control",
    ),
    ("T1090", "Proxy", "TA0011", "Command and Control"),
    (
        "T1095",
        "Non-Application Layer Protocol",
        "TA0011",
        "Command and Control",
    ),
    (
        "T1105",
        "Ingress Tool Transfer",
        "TA0011",
        "Command and Control",
    ),
    (
        "T1571",
        "Non-Standard Port",
        "TA0011",
        "Command and Control",
    ),
    (
        "T1572",
        "Protocol Tunneling",
        "TA0011",
        "Command and Control",
    ),
    ("T1496", "Resource Hijacking", "TA0040", "Impact"),
    ("T1498", "Network Denial of Service", "TA0040", "Impact"),
    ("T1499", "Endpoint Denial of Service", "TA0040", "Impact"),
];

/// The pod, its node, its workload and its cluster, as Kubernetes names them.
fn resources(finding: &Finding, context: &Context, pod_uid: &str) -> Value {
    let mut pod = json!({
        "type": "Pod",
        "name": finding.pod,
        "uid": pod_uid,
        "labels": [format!("k8s.service={}", finding.service)],
    });
    if let Some(namespace) = &context.namespace {
        pod["namespace"] = namespace.clone().into();
    }
    let mut resources = vec![
        pod,
        json!({ "type": "Node", "name": finding.host, "uid": format!("{}/{}", finding.cluster, finding.host) }),
    ];
    if let Some(workload) = &context.workload {
        let mut owner = json!({
            "type": "Workload",
            "name": workload,
            "uid": match &context.namespace {
                Some(namespace) => format!("{}/{namespace}/{workload}", finding.cluster),
                None => format!("{}/{workload}", finding.cluster),
            },
        });
        if let Some(namespace) = &context.namespace {
            owner["namespace"] = namespace.clone().into();
        }
        resources.push(owner);
    }
    resources.push(json!({ "type": "Cluster", "name": finding.cluster, "uid": finding.cluster }));
    Value::Array(resources)
}

/// One artifact per measure that fired (its anomaly analysis); without a rule's evidence, one
/// with the finding's anomaly texts.
fn evidences(finding: &Finding, evidence: &[Evidence]) -> Value {
    if evidence.is_empty() {
        return json!([{ "data": { "anomalies": finding.anomalies, "buckets": finding.count } }]);
    }
    Value::Array(
        evidence
            .iter()
            .map(|e| json!({ "data": anomaly_analysis(e) }))
            .collect(),
    )
}

/// What a measure did against its baseline: OCSF 1.5's anomaly analysis, flattened (1.1 has
/// no such object, so it goes to `unmapped.anomaly_analyses` and the evidences' `data`).
fn anomaly_analysis(evidence: &Evidence) -> Value {
    let mut analysis = Map::new();
    analysis.insert("measure".into(), evidence.measure.clone().into());
    analysis.insert("buckets".into(), evidence.buckets.into());
    let mut put_time = |name: &str, time: Option<DateTime<Utc>>| {
        if let Some(time) = time {
            analysis.insert(name.into(), time.timestamp_millis().into());
        }
    };
    put_time("first_bucket_time", evidence.first_bucket);
    put_time("last_bucket_time", evidence.last_bucket);
    for (name, value) in [
        ("observed", evidence.observed),
        ("expected", evidence.expected),
        ("band_lower", evidence.lower),
        ("band_upper", evidence.upper),
    ] {
        if let Some(value) = value {
            analysis.insert(name.into(), value.into());
        }
    }
    if let Some(reference) = &evidence.reference {
        analysis.insert("baseline".into(), reference.clone().into());
    }
    Value::Object(analysis)
}

/// What OCSF 1.1 has no attribute for: the finding's own fields (ESCU's output, by their names)
/// and the anomaly analyses.
fn unmapped(finding: &Finding, rule: &Rule, evidence: &[Evidence]) -> Value {
    json!({
        "k8s.cluster.name": finding.cluster,
        "host": finding.host,
        "k8s.pod.name": finding.pod,
        "k8s.service": finding.service,
        "anomalies": finding.anomalies,
        "rule": finding.rule,
        "search_name": rule.search_name,
        "mitre_attack_id": finding.mitre_attack_id,
        "window_start": finding.window_start,
        "window_end": finding.window_end,
        "anomaly_analyses": evidence.iter().map(anomaly_analysis).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rule::Rules;

    pub(crate) fn finding(rule: &str) -> Finding {
        Finding {
            cluster: "prod".into(),
            host: "node-1".into(),
            pod: "web-7d9c8b7f6d-x2x4z".into(),
            service: "web".into(),
            count: 9,
            anomalies: vec!["outbound_network_io higher than average".into()],
            rule: rule.into(),
            risk_score: 20,
            risk_message: "on host node-1".into(),
            mitre_attack_id: "T1204,T9999".into(),
            window_start: "2026-03-02T00:50:00Z".into(),
            window_end: "2026-03-02T01:50:00Z".into(),
        }
    }

    pub(crate) fn context() -> Context {
        let at = |t: &str| Some(DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc));
        Context {
            namespace: Some("shop".into()),
            workload: Some("web".into()),
            evidence: vec![Evidence {
                measure: "outbound_network_io".into(),
                buckets: 9,
                first_bucket: at("2026-03-02T01:00:00Z"),
                last_bucket: at("2026-03-02T01:20:00Z"),
                observed: Some(5e6),
                expected: Some(1e4),
                lower: None,
                upper: Some(2e4),
                reference: Some("k8s_container_network_io_baseline prod:web".into()),
            }],
        }
    }

    pub(crate) fn rule(name: &str) -> Rule {
        Rules::built_in()
            .unwrap()
            .select(&[name.to_string()])
            .unwrap()
            .remove(0)
    }

    #[test]
    fn a_finding_id_is_a_uuid_that_names_rule_pod_and_window() {
        let id = uid(&finding("network-io"));
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "8", "version 8: {id}");
        assert!("89ab".contains(&id[19..20]), "RFC 9562 variant: {id}");
        assert_eq!(id, uid(&finding("network-io")));
        let mut other = finding("network-io");
        other.window_end = "2026-03-02T02:50:00Z".into();
        assert_ne!(uid(&other), id);
        assert_ne!(uid(&finding("drift")), id);
    }

    #[test]
    fn the_event_carries_the_evidence_the_resources_and_the_techniques() {
        let event =
            detection_finding(&finding("network-io"), &rule("network-io"), &context()).unwrap();
        assert_eq!(event["time"], 1_772_416_200_000i64);
        assert_eq!(event["start_time"], 1_772_412_600_000i64);
        assert_eq!(event["severity_id"], 2);
        assert_eq!(event["risk_level_id"], 1);
        assert!(
            event.get("confidence_id").is_none(),
            "network-io states none"
        );
        let info = &event["finding_info"];
        assert_eq!(info["first_seen_time"], 1_772_413_200_000i64);
        assert_eq!(info["last_seen_time"], 1_772_414_410_000i64);
        assert_eq!(info["attacks"][0]["tactic"]["name"], "Execution");
        assert_eq!(
            info["attacks"][1],
            json!({ "technique": { "uid": "T9999" } })
        );
        assert_eq!(
            event["resources"][0]["uid"],
            "prod/shop/web-7d9c8b7f6d-x2x4z"
        );
        assert_eq!(event["resources"][2]["uid"], "prod/shop/web");
        let analysis = &event["unmapped"]["anomaly_analyses"][0];
        assert_eq!(analysis["band_upper"], 2e4);
        assert!(analysis.get("band_lower").is_none());
        assert_eq!(event["evidences"][0]["data"], *analysis);

        let ratio = rule("network-io-ratio");
        let event = detection_finding(&finding(&ratio.name), &ratio, &Context::default()).unwrap();
        assert_eq!(event["confidence_id"], 2);
        assert_eq!(event["confidence_score"], 50);
        assert_eq!(
            event["evidences"][0]["data"]["anomalies"],
            json!(["outbound_network_io higher than average"])
        );
        assert_eq!(event["resources"][0]["uid"], "prod/web-7d9c8b7f6d-x2x4z");
    }

    #[test]
    fn severity_follows_the_risk_score() {
        let bands = [
            (0, 1),
            (1, 2),
            (29, 2),
            (30, 3),
            (59, 3),
            (60, 4),
            (79, 4),
            (80, 5),
            (100, 5),
        ];
        for (score, id) in bands {
            assert_eq!(severity(score).0, id, "{score}");
        }
        assert_eq!(severity(-5).0, 1);
    }

    #[test]
    fn a_bad_window_is_an_error_that_names_the_finding() {
        let mut bad = finding("network-io");
        bad.window_end = "yesterday".into();
        let error = detection_finding(&bad, &rule("network-io"), &context()).unwrap_err();
        assert!(error.to_string().contains("window_end"), "{error}");
    }
}
