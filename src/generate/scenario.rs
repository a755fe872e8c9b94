//! The kinds of scenario the generator injects, attacks and benign changes, and how long each
//! lasts: shared by the topology (its events) and the traffic (its injections).

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// What the generator injects: attacks, which a rule ought to report, and benign changes, which
/// must not fire. The labels file lists each occurrence, by pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioKind {
    /// Sustained outbound volume far above the pod's usual (15 to 40 times, 90 to 180 minutes).
    Exfiltration,
    /// Low and slow: three to four times the usual outbound volume for 30 to 60 minutes.
    SlowExfiltration,
    /// A CronJob's Job pod sending 10 to 20 times its usual for its whole short life.
    JobExfiltration,
    /// Exfiltration from a pod that a rollout, a scale-out or a drain created minutes before.
    NewPodExfiltration,
    /// Sustained inbound volume far above the usual.
    InboundFlood,
    /// Inbound and outbound swap: the ratio turns over, the volume barely moves.
    RatioFlip,
    /// Command and control: a short outbound burst every 50 to 65 seconds for 30 to 60 minutes.
    Beaconing,
    /// Two outbound bursts of 4 to 8 s. Jitter keeps scrapes 5 s or more apart (except where it
    /// is clamped at an hour's edge), so each burst lands in at most two scrapes: at most four
    /// anomalous buckets, which must not fire.
    Burst,
    /// Every replica of a workload moves two to four times its usual, together.
    Surge,
    /// A workload gains replicas; the load spreads over them.
    ScaleOut,
    /// A workload loses a replica; the others take its load.
    ScaleIn,
    /// A Deployment's new revision: new pods, named with a new pod-template hash.
    Rollout,
    /// A node is drained: its Deployment pods are replaced by new ones on other nodes.
    Drain,
    /// A nightly backup: the primary database pod sends six to ten times its usual for 15 to 25
    /// minutes, every night at the same time, all through the history.
    Backup,
    /// An index refresh every four hours: every replica of a workload receives three to five
    /// times its usual for about ten minutes, all through the history.
    Refresh,
    /// A heavy-tailed but normal workload: a few of its points are many times the usual.
    HeavyTail,
}

impl ScenarioKind {
    /// The kinds that random placement spreads over the store.
    pub const PLACED: [ScenarioKind; 9] = [
        ScenarioKind::Exfiltration,
        ScenarioKind::SlowExfiltration,
        ScenarioKind::JobExfiltration,
        ScenarioKind::NewPodExfiltration,
        ScenarioKind::InboundFlood,
        ScenarioKind::RatioFlip,
        ScenarioKind::Beaconing,
        ScenarioKind::Burst,
        ScenarioKind::Surge,
    ];

    /// Whether it is an attack, which every rule ought to report; a benign change must not fire.
    pub fn is_attack(self) -> bool {
        matches!(
            self,
            ScenarioKind::Exfiltration
                | ScenarioKind::SlowExfiltration
                | ScenarioKind::JobExfiltration
                | ScenarioKind::NewPodExfiltration
                | ScenarioKind::InboundFlood
                | ScenarioKind::RatioFlip
                | ScenarioKind::Beaconing
        )
    }

    /// How long one occurrence lasts, in minutes (a Job's exfiltration lasts the Job's life).
    pub fn minutes(self) -> Range<i64> {
        match self {
            ScenarioKind::Exfiltration => 90..180,
            ScenarioKind::SlowExfiltration => 30..60,
            ScenarioKind::NewPodExfiltration => 40..90,
            ScenarioKind::InboundFlood => 60..120,
            ScenarioKind::RatioFlip => 60..150,
            ScenarioKind::Beaconing => 30..60,
            ScenarioKind::Burst => 50..60,
            ScenarioKind::Surge => 30..90,
            ScenarioKind::ScaleOut | ScenarioKind::ScaleIn => 60..180,
            ScenarioKind::Backup => 15..25,
            ScenarioKind::Refresh => 8..12,
            ScenarioKind::JobExfiltration
            | ScenarioKind::Rollout
            | ScenarioKind::Drain
            | ScenarioKind::HeavyTail => 60..61,
        }
    }
}
