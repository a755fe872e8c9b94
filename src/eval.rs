//! Backtest: replays the hourly detection schedule over a labelled store and scores each rule
//! as `detection-scoring.md` says the judging does: precision, window recall, F1, attacks found
//! and false alerts per day, with the false positives attributed to benign events.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::finding::Finding;
use crate::generate::{Label, Labels};
use crate::location::Location;
use crate::rule::{Rule, Rules};
use crate::session::{Engine, Held, SessionBuilder, read_baseline};
use crate::store::Store;
use crate::time::{Window, rfc3339};

/// A finding is a true positive when an attack on its pod overlaps the run's window this long.
pub const MIN_TRUE_OVERLAP: Duration = Duration::seconds(60);

/// An (attack, run) pair is an expected window when they overlap this long (or for the whole
/// attack, when it is shorter).
pub const EXPECTED_OVERLAP: Duration = Duration::minutes(10);

/// The name given to false positives on pods that no benign event covers in that window.
pub const BACKGROUND: &str = "background";

/// The row of a rule's totals.
pub const ALL: &str = "all";

/// One row of the backtest table: a rule's totals (`scenario` = `all`), or its figures for one
/// kind of attack or benign event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    pub rule: String,
    pub scenario: String,
    pub findings: u64,
    pub true_positives: u64,
    pub false_positives: u64,
    pub expected_windows: u64,
    pub windows_found: u64,
    /// Attacks that a run's window overlaps by 60 s or more: those the runs could find.
    pub attacks: u64,
    pub attacks_found: u64,
    pub precision: Option<f64>,
    pub window_recall: Option<f64>,
    pub f1: Option<f64>,
    pub false_alerts_per_day: Option<f64>,
}

/// What one rule scored, by scenario name.
#[derive(Debug, Default, Clone)]
struct Counts {
    true_positives: u64,
    false_positives: u64,
    expected_windows: u64,
    windows_found: u64,
}

/// The tallies of every rule over the runs scored so far.
#[derive(Debug, Default)]
pub struct Tally {
    counts: BTreeMap<(String, String), Counts>,
    /// (rule, attack index) of the attacks with a true positive.
    found: BTreeSet<(String, usize)>,
    /// The attacks that a run's window overlaps enough for a true positive: those the runs
    /// could find (an attack of the training days is not one).
    findable: BTreeSet<usize>,
    /// Every rule scored, even one without a finding.
    rules: BTreeSet<String>,
    /// With [`backtest`]'s `ocsf`, every run's findings as OCSF Detection Findings, in run order.
    pub events: Vec<serde_json::Value>,
}

fn scenario_name(label: &Label) -> String {
    serde_json::to_value(label.scenario)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{:?}", label.scenario))
}

impl Tally {
    fn counts(&mut self, rule: &str, scenario: String) -> &mut Counts {
        self.counts.entry((rule.to_string(), scenario)).or_default()
    }

    /// Scores one scheduled run of `rules` over `window` that reported `findings`. A finding
    /// counts once per (rule, cluster, pod).
    pub fn score(
        &mut self,
        labels: &Labels,
        rules: &[String],
        window: &Window,
        findings: &[Finding],
    ) {
        let active: Vec<(usize, &Label)> = labels
            .scenarios
            .iter()
            .enumerate()
            .filter(|(_, l)| l.overlap(window) > Duration::zero())
            .collect();
        self.findable.extend(
            active
                .iter()
                .filter(|(_, l)| l.attack && l.overlap(window) >= MIN_TRUE_OVERLAP)
                .map(|(index, _)| *index),
        );
        for rule in rules {
            self.rules.insert(rule.clone());
            let pods: BTreeSet<(&str, &str)> = findings
                .iter()
                .filter(|f| f.rule == *rule)
                .map(|f| (f.cluster.as_str(), f.pod.as_str()))
                .collect();
            for (cluster, pod) in &pods {
                let on_pod = || {
                    active
                        .iter()
                        .filter(move |(_, l)| l.cluster == *cluster && l.pod == *pod)
                };
                let attacks: Vec<&(usize, &Label)> = on_pod()
                    .filter(|(_, l)| l.attack && l.overlap(window) >= MIN_TRUE_OVERLAP)
                    .collect();
                if let Some((_, first)) = attacks.first() {
                    self.counts(rule, scenario_name(first)).true_positives += 1;
                    for (index, _) in &attacks {
                        self.found.insert((rule.clone(), *index));
                    }
                    continue;
                }
                let benign = on_pod().find(|(_, l)| !l.attack);
                let name = benign.map_or(BACKGROUND.to_string(), |(_, l)| scenario_name(l));
                self.counts(rule, name).false_positives += 1;
            }
            for (_, label) in active.iter().filter(|(_, l)| l.attack) {
                let length = label.end - label.start;
                if label.overlap(window) < EXPECTED_OVERLAP.min(length) {
                    continue;
                }
                let found = pods.contains(&(label.cluster.as_str(), label.pod.as_str()));
                let counts = self.counts(rule, scenario_name(label));
                counts.expected_windows += 1;
                counts.windows_found += u64::from(found);
            }
        }
    }

    /// One row per rule and scenario, then each rule's `all` row; `test_days` turns false
    /// positives into false alerts per day.
    pub fn scores(&self, labels: &Labels, test_days: f64) -> Vec<Score> {
        let attacks: Vec<(usize, &Label)> = labels
            .scenarios
            .iter()
            .enumerate()
            .filter(|(index, l)| l.attack && self.findable.contains(index))
            .collect();
        let mut rows = Vec::new();
        for rule in &self.rules {
            let mut total = Counts::default();
            for ((r, scenario), counts) in &self.counts {
                if r != rule {
                    continue;
                }
                let of_kind: Vec<usize> = attacks
                    .iter()
                    .filter(|(_, l)| scenario_name(l) == *scenario)
                    .map(|(i, _)| *i)
                    .collect();
                rows.push(self.row(rule, scenario, counts, &of_kind, test_days));
                total.true_positives += counts.true_positives;
                total.false_positives += counts.false_positives;
                total.expected_windows += counts.expected_windows;
                total.windows_found += counts.windows_found;
            }
            let all: Vec<usize> = attacks.iter().map(|(i, _)| *i).collect();
            rows.push(self.row(rule, ALL, &total, &all, test_days));
        }
        rows
    }

    fn row(
        &self,
        rule: &str,
        scenario: &str,
        counts: &Counts,
        attacks: &[usize],
        test_days: f64,
    ) -> Score {
        let findings = counts.true_positives + counts.false_positives;
        let precision = (findings > 0).then(|| counts.true_positives as f64 / findings as f64);
        let window_recall = (counts.expected_windows > 0)
            .then(|| counts.windows_found as f64 / counts.expected_windows as f64);
        let f1 = match (precision, window_recall) {
            (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
            (Some(_), Some(_)) => Some(0.0),
            _ => None,
        };
        let attacks_found = attacks
            .iter()
            .filter(|i| self.found.contains(&(rule.to_string(), **i)))
            .count() as u64;
        Score {
            rule: rule.to_string(),
            scenario: scenario.to_string(),
            findings,
            true_positives: counts.true_positives,
            false_positives: counts.false_positives,
            expected_windows: counts.expected_windows,
            windows_found: counts.windows_found,
            attacks: attacks.len() as u64,
            attacks_found,
            precision,
            window_recall,
            f1,
            false_alerts_per_day: (test_days > 0.0)
                .then(|| counts.false_positives as f64 / test_days),
        }
    }
}

/// Replays the hourly detection at each of `runs` (ESCU's window: -70m@m to -10m@m) over
/// `store` with the lookups in `baselines`, read once for every run, and tallies each rule's
/// findings against `labels`; with `ocsf`, keeps them as OCSF Detection Findings too.
pub async fn backtest(
    store: &Store,
    labels: &Labels,
    rules: &[Rule],
    baselines: &Location,
    runs: &[DateTime<Utc>],
    engine: &Engine,
    ocsf: bool,
) -> Result<Tally> {
    let names: Vec<String> = rules.iter().map(|r| r.name.clone()).collect();
    let all = Rules::of(rules);
    let mut loaded = Vec::new();
    for table in all.tables() {
        loaded.push(read_baseline(Some(baselines), table, rules).await?);
    }
    let mut tally = Tally::default();
    for &now in runs {
        let window = Window::parse("-70m@m", "-10m@m", now)?;
        let session = SessionBuilder::new(store.clone())
            .window(window)
            .baselines(baselines.clone(), rules)
            .loaded_baselines(&loaded)
            .rules(&all)
            .engine(engine)
            .hold(Held::DetectionViews)
            .build()
            .await?;
        let batches = crate::finding::batches(&session, rules, None).await?;
        let findings = crate::finding::from_batches(&batches)?;
        tally.score(labels, &names, &window, &findings);
        if ocsf {
            let events = crate::ocsf::events(&session, rules, &findings).await?;
            tally.events.extend(events);
        }
    }
    Ok(tally)
}

/// Where the test days start when the user does not say: the last two days of a store of three
/// days or more (the earlier ones train the baselines), else the end of its first day.
pub fn default_test_start(labels: &Labels) -> Option<DateTime<Utc>> {
    if labels.end - labels.start >= Duration::days(3) {
        labels.end.checked_sub_signed(Duration::days(2))
    } else {
        labels.start.checked_add_signed(Duration::days(1))
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
                // In the training days: no run could find it, so it is not counted.
                label(
                    ScenarioKind::Exfiltration,
                    "d",
                    "2026-02-27T10:00:00Z",
                    "2026-02-27T12:00:00Z",
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
        let scores = tally.scores(&labels, 1.0);
        let get = |rule: &str, scenario: &str| {
            scores
                .iter()
                .find(|s| s.rule == rule && s.scenario == scenario)
                .unwrap_or_else(|| panic!("no {rule} {scenario} in {scores:?}"))
                .clone()
        };
        let exfiltration = get("network-io", "exfiltration");
        assert_eq!(
            (
                exfiltration.true_positives,
                exfiltration.expected_windows,
                exfiltration.windows_found
            ),
            (1, 1, 1)
        );
        assert_eq!(get("network-io", "burst").false_positives, 1);
        // The ratio flip overlaps 5 minutes: enough for a true positive, below an expected window.
        assert!(!scores.iter().any(|s| s.scenario == "ratio-flip"));
        let missed = get("network-io-ratio", "exfiltration");
        assert_eq!((missed.expected_windows, missed.windows_found), (1, 0));
        assert_eq!(get("network-io-ratio", "background").false_positives, 1);
        let all = get("network-io", "all");
        assert_eq!(
            (all.findings, all.true_positives, all.false_positives),
            (2, 1, 1)
        );
        assert_eq!((all.precision, all.window_recall), (Some(0.5), Some(1.0)));
        assert_eq!(all.f1, Some(2.0 * 0.5 / 1.5));
        assert_eq!((all.attacks, all.attacks_found), (2, 1));
        assert_eq!(all.false_alerts_per_day, Some(1.0));
        let ratio = get("network-io-ratio", "all");
        assert_eq!(
            (ratio.precision, ratio.window_recall, ratio.f1),
            (Some(0.0), Some(0.0), Some(0.0))
        );
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
