//! Backtest: replays ESCU's hourly detection schedule over a labelled store and scores the
//! findings against the labels, per rule and per scenario.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::finding::Finding;
use crate::generate::{Label, Labels};
use crate::time::{Window, rfc3339};

/// A detection window must overlap a scenario this long for a miss to count against a rule:
/// ten minutes hold sixty 10 s buckets, ten times what persistence needs.
pub const MIN_OVERLAP: Duration = Duration::minutes(10);

/// The scenario name given to findings on pods that no label covers in that window.
pub const BACKGROUND: &str = "background";

/// One row of the backtest table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    pub rule: String,
    pub scenario: String,
    pub true_positives: u64,
    pub false_positives: u64,
    pub missed: u64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
}

/// Tallies of (rule, scenario) → (true positives, false positives, misses).
#[derive(Debug, Default)]
pub struct Tally(BTreeMap<(String, String), [u64; 3]>);

fn scenario_name(label: &Label) -> String {
    serde_json::to_value(label.scenario)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{:?}", label.scenario))
}

impl Tally {
    fn bump(&mut self, rule: &str, scenario: String, column: usize) {
        self.0.entry((rule.to_string(), scenario)).or_default()[column] += 1;
    }

    /// Scores one scheduled run of `rules` over `window` that reported `findings`.
    pub fn score(
        &mut self,
        labels: &Labels,
        rules: &[String],
        window: &Window,
        findings: &[Finding],
    ) {
        let active: Vec<&Label> = labels
            .scenarios
            .iter()
            .filter(|l| l.overlap(window) > Duration::zero())
            .collect();
        for finding in findings {
            let on_pod = active
                .iter()
                .filter(|l| l.cluster == finding.cluster && l.pod == finding.pod);
            let mut expected = None;
            let mut other = None;
            for label in on_pod {
                if label.attack {
                    expected = Some(*label);
                } else {
                    other = Some(*label);
                }
            }
            match (expected, other) {
                (Some(label), _) => self.bump(&finding.rule, scenario_name(label), 0),
                (None, Some(label)) => self.bump(&finding.rule, scenario_name(label), 1),
                (None, None) => self.bump(&finding.rule, BACKGROUND.to_string(), 1),
            }
        }
        for label in active {
            for rule in rules {
                if !label.attack || label.overlap(window) < MIN_OVERLAP {
                    continue;
                }
                let found = findings
                    .iter()
                    .any(|f| f.rule == *rule && f.cluster == label.cluster && f.pod == label.pod);
                if !found {
                    self.bump(rule, scenario_name(label), 2);
                }
            }
        }
    }

    /// One row per (rule, scenario), then one `all` row per rule.
    pub fn scores(&self) -> Vec<Score> {
        let row = |rule: &str, scenario: &str, [tp, fp, missed]: [u64; 3]| Score {
            rule: rule.to_string(),
            scenario: scenario.to_string(),
            true_positives: tp,
            false_positives: fp,
            missed,
            precision: (tp + fp > 0).then(|| tp as f64 / (tp + fp) as f64),
            recall: (tp + missed > 0).then(|| tp as f64 / (tp + missed) as f64),
        };
        let mut rows = Vec::new();
        let mut totals: BTreeMap<&str, [u64; 3]> = BTreeMap::new();
        for ((rule, scenario), counts) in &self.0 {
            rows.push(row(rule, scenario, *counts));
            let total = totals.entry(rule).or_default();
            for (t, c) in total.iter_mut().zip(counts) {
                *t += c;
            }
        }
        for (rule, counts) in totals {
            rows.push(row(rule, "all", counts));
        }
        rows
    }
}

/// The `now` of every hourly run (minute 0, ESCU's `0 * * * *`) in `(from, to]`.
pub fn schedule(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let hour = Duration::hours(1);
    let first = DateTime::from_timestamp(from.timestamp().div_euclid(3600) * 3600 + 3600, 0)
        .unwrap_or(from);
    let mut runs = Vec::new();
    let mut now = first;
    while now <= to {
        runs.push(now);
        now += hour;
    }
    runs
}

/// A short description of the replay, for the user.
pub fn describe(runs: &[DateTime<Utc>]) -> String {
    match (runs.first(), runs.last()) {
        (Some(first), Some(last)) => format!(
            "{} hourly runs, now = {} .. {}",
            runs.len(),
            rfc3339(*first),
            rfc3339(*last)
        ),
        _ => "no hourly run".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::ScenarioKind;

    fn at(time: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(time)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn label(kind: ScenarioKind, pod: &str, start: &str, end: &str) -> Label {
        Label {
            scenario: kind,
            cluster: "c".into(),
            namespace: "n".into(),
            node: "node".into(),
            pod: pod.into(),
            service: "s".into(),
            start: at(start),
            end: at(end),
            attack: kind.is_attack(),
        }
    }

    fn finding(rule: &str, pod: &str) -> Finding {
        Finding {
            cluster: "c".into(),
            host: "node".into(),
            pod: pod.into(),
            service: "s".into(),
            count: 6,
            anomalies: vec![],
            rule: rule.into(),
            risk_score: 20,
            risk_message: String::new(),
            mitre_attack_id: "T1204".into(),
            window_start: String::new(),
            window_end: String::new(),
        }
    }

    #[test]
    fn findings_and_misses_are_attributed_to_scenarios() {
        let labels = Labels {
            seed: 1,
            start: at("2026-03-01T00:00:00Z"),
            end: at("2026-03-02T00:00:00Z"),
            clusters: vec!["c".into()],
            pods: 3,
            scenarios: vec![
                label(
                    ScenarioKind::Exfiltration,
                    "a",
                    "2026-03-01T10:00:00Z",
                    "2026-03-01T12:00:00Z",
                ),
                label(
                    ScenarioKind::Burst,
                    "b",
                    "2026-03-01T10:00:00Z",
                    "2026-03-01T11:00:00Z",
                ),
                label(
                    ScenarioKind::RatioFlip,
                    "c",
                    "2026-03-01T10:55:00Z",
                    "2026-03-01T12:00:00Z",
                ),
            ],
        };
        let rules = ["network-io".to_string(), "network-io-ratio".to_string()];
        let window =
            Window::parse("2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z", Utc::now()).unwrap();
        let mut tally = Tally::default();
        tally.score(
            &labels,
            &rules,
            &window,
            &[
                finding("network-io", "a"),
                finding("network-io", "b"),
                finding("network-io-ratio", "z"),
            ],
        );
        let scores = tally.scores();
        let get = |rule: &str, scenario: &str| {
            let s = scores
                .iter()
                .find(|s| s.rule == rule && s.scenario == scenario)
                .unwrap();
            (s.true_positives, s.false_positives, s.missed)
        };
        assert_eq!(get("network-io", "exfiltration"), (1, 0, 0));
        assert_eq!(get("network-io", "burst"), (0, 1, 0));
        // Missed by the ratio rule; the ratio flip overlaps only 5 minutes, below MIN_OVERLAP.
        assert_eq!(get("network-io-ratio", "exfiltration"), (0, 0, 1));
        assert!(!scores.iter().any(|s| s.scenario == "ratio-flip"));
        assert_eq!(get("network-io-ratio", "background"), (0, 1, 0));
        assert_eq!(get("network-io", "all"), (1, 1, 0));
        let all = scores
            .iter()
            .find(|s| s.rule == "network-io" && s.scenario == "all")
            .unwrap();
        assert_eq!((all.precision, all.recall), (Some(0.5), Some(1.0)));
    }

    #[test]
    fn the_schedule_runs_at_minute_zero() {
        let runs = schedule(at("2026-03-01T00:00:00Z"), at("2026-03-01T03:00:00Z"));
        assert_eq!(
            runs,
            [
                at("2026-03-01T01:00:00Z"),
                at("2026-03-01T02:00:00Z"),
                at("2026-03-01T03:00:00Z")
            ]
        );
        assert_eq!(
            schedule(at("2026-03-01T00:30:00Z"), at("2026-03-01T01:00:00Z")),
            [at("2026-03-01T01:00:00Z")]
        );
    }
}
