//! The four ESCU rules as data: names, lookups, risk, and the SQL of every stage.
//! Everything that differs between the two rules lives here; the code that runs them is shared.

use clap::ValueEnum;

/// One ESCU detection and the baseline it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// iodrift's name, the value of `--rule` and of the `rule` output column.
    pub name: &'static str,
    pub detection: &'static str,
    pub baseline_search: &'static str,
    /// The ESCU lookup the baseline is written to and the detection reads.
    pub lookup: &'static str,
    /// The lookup's columns, in ESCU's order.
    pub lookup_columns: [&'static str; 7],
    /// The view in `sql/` that computes the baseline.
    pub baseline_view: &'static str,
    /// The view in `sql/rollups.sql` that computes its hourly rollups.
    pub rollup_view: &'static str,
    pub risk_score: i64,
    pub risk_message: &'static str,
    pub mitre_attack_id: &'static str,
}

pub const NETWORK_IO: Rule = Rule {
    name: "network-io",
    detection: "Kubernetes Anomalous Inbound Outbound Network IO",
    baseline_search: "Baseline Of Kubernetes Container Network IO",
    lookup: "k8s_container_network_io_baseline",
    lookup_columns: [
        "key",
        "avg_outbound_network_io",
        "avg_inbound_network_io",
        "stdev_outbound_network_io",
        "stdev_inbound_network_io",
        "count",
        "last_seen",
    ],
    baseline_view: "baseline_network_io",
    rollup_view: "rollup_network_io",
    risk_score: 20,
    risk_message: "Kubernetes Anomalous Inbound Outbound Network IO from container on host $host$",
    mitre_attack_id: "T1204",
};

pub const NETWORK_IO_RATIO: Rule = Rule {
    name: "network-io-ratio",
    detection: "Kubernetes Anomalous Inbound to Outbound Network IO Ratio",
    baseline_search: "Baseline Of Kubernetes Container Network IO Ratio",
    lookup: "k8s_container_network_io_ratio_baseline",
    lookup_columns: [
        "key",
        "avg_inbound:outbound",
        "avg_outbound:inbound",
        "stdev_inbound:outbound",
        "stdev_outbound:inbound",
        "count",
        "last_seen",
    ],
    baseline_view: "baseline_network_io_ratio",
    rollup_view: "rollup_network_io_ratio",
    risk_score: 25,
    risk_message: "Kubernetes Anomalous Inbound to Outbound Network IO Ratio from Container on host $host$",
    mitre_attack_id: "T1204",
};

pub const RULES: [Rule; 2] = [NETWORK_IO, NETWORK_IO_RATIO];

/// The value of `--rule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuleChoice {
    NetworkIo,
    NetworkIoRatio,
    All,
}

impl RuleChoice {
    pub fn rules(self) -> Vec<Rule> {
        match self {
            RuleChoice::NetworkIo => vec![NETWORK_IO],
            RuleChoice::NetworkIoRatio => vec![NETWORK_IO_RATIO],
            RuleChoice::All => RULES.to_vec(),
        }
    }
}

/// The SQL files of `sql/`, in the order they create their views.
pub const SQL: [(&str, &str); 7] = [
    ("spans.sql", include_str!("../sql/spans.sql")),
    (
        "baseline_network_io.sql",
        include_str!("../sql/baseline_network_io.sql"),
    ),
    (
        "baseline_network_io_ratio.sql",
        include_str!("../sql/baseline_network_io_ratio.sql"),
    ),
    (
        "pod_network_io.sql",
        include_str!("../sql/pod_network_io.sql"),
    ),
    ("detections.sql", include_str!("../sql/detections.sql")),
    ("rollups.sql", include_str!("../sql/rollups.sql")),
    ("findings.sql", include_str!("../sql/findings.sql")),
];

/// The views the SQL files create, one per stage, as the REPL lists them.
pub const STAGE_VIEWS: [(&str, &str); 11] = [
    (
        "spans",
        "stages 1-2: 10 s spans per pod and direction, with service and key",
    ),
    (
        "baseline_network_io",
        "the network-io baseline computed from the window",
    ),
    (
        "service_network_io",
        "per-service means and ratios per bucket (ratio baseline, stage 1)",
    ),
    (
        "baseline_network_io_ratio",
        "the network-io-ratio baseline computed from the window",
    ),
    (
        "rollup_network_io",
        "hourly rollups of the network-io baseline (count, mean, M2 per measure)",
    ),
    (
        "rollup_network_io_ratio",
        "hourly rollups of the network-io-ratio baseline",
    ),
    (
        "pod_network_io",
        "stage 3: per-pod inbound, outbound and ratios per bucket",
    ),
    (
        "rule_baselines",
        "both lookups side by side: a row per rule and key (stage 4)",
    ),
    (
        "bucket_anomalies",
        "stages 4-5 of both rules: anomaly text per rule and bucket",
    ),
    (
        "anomalous_buckets",
        "buckets with a non-empty anomaly text, both rules",
    ),
    (
        "findings",
        "stages 6-7: findings of both rules, before --filter",
    ),
];
