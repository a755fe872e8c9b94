//! The synthetic clusters: nodes, workloads and their pods over time (Deployments with
//! rollouts, DaemonSets, StatefulSets, CronJob pods, static pods), each with a traffic profile.

use std::ops::Range;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::names::{cron_job, deployment_pod, generate_name, pod_template_hash, random_suffix};
use super::scenario::ScenarioKind;
use super::{HOUR_MS, Spec};

const SERVICE_NAMES: [(&str, &str); 20] = [
    ("shop", "frontend"),
    ("shop", "checkout"),
    ("shop", "cart"),
    (
        "platform",
        "customer-notification-preferences-reconciler-worker",
    ),
    ("shop", "payments-api"),
    ("shop", "recommendation-engine"),
    ("shop", "catalog"),
    ("platform", "auth"),
    ("shop", "search"),
    ("platform", "notifications"),
    ("shop", "shipping"),
    ("platform", "gateway"),
    ("shop", "currency-converter"),
    ("data", "ingest"),
    ("shop", "orders"),
    ("platform", "user-profile"),
    ("data", "reporting-worker"),
    ("shop", "inventory"),
    ("platform", "email"),
    ("platform", "billing"),
];

const CLUSTER_NAMES: [&str; 6] = [
    "prod-eu-1",
    "prod-us-1",
    "staging-eu-1",
    "prod-ap-1",
    "prod-us-2",
    "dev-eu-1",
];

/// What kind of controller made a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Deployment,
    DaemonSet,
    StatefulSet,
    CronJob,
    Static,
}

/// How much a workload's pods move, per second, before noise.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub receive_bps: f64,
    pub transmit_bps: f64,
    /// Relative height of the daily cycle (0 = flat).
    pub amplitude: f64,
    /// Hour of day (UTC) of the daily peak.
    pub peak_hour: f64,
    /// Standard deviation of the log-normal noise of each point.
    pub noise: f64,
    pub memory_bytes: f64,
    /// Pareto shape of the occasional spikes of a heavy-tailed workload (0: none).
    pub tail: f64,
}

#[derive(Debug, Clone)]
pub struct Pod {
    /// Unique across the whole generation: seeds this pod's random streams.
    pub id: u64,
    pub name: String,
    pub namespace: &'static str,
    pub node: usize,
    pub workload: Workload,
    pub profile: Profile,
    /// This replica's share of the workload's traffic, around 1.
    pub scale: f64,
    pub interfaces: &'static [&'static str],
    /// When the pod runs, in epoch milliseconds (half-open).
    pub alive: Range<i64>,
    /// Where in the 10 s scrape cycle this pod is scraped.
    pub offset_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub nodes: Vec<String>,
    /// Sorted by name, as rows are written.
    pub pods: Vec<Pod>,
    /// The benign changes of the topology (rollouts, scale events, drains, heavy tails).
    pub events: Vec<Event>,
}

/// A benign change of the topology: the pods it labels over `during`, and the load factor it
/// puts on pods that keep running (a scale event spreads or concentrates the load).
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: ScenarioKind,
    pub during: Range<i64>,
    pub pods: Vec<String>,
    pub load: Vec<(String, f64)>,
}

const ETH0: &[&str] = &["eth0"];
const MULTUS: &[&str] = &["eth0", "net1"];

/// What the pods of one workload share.
struct Template {
    namespace: &'static str,
    workload: Workload,
    profile: Profile,
    interfaces: &'static [&'static str],
}

struct Builder<'a> {
    spec: &'a Spec,
    rng: ChaCha8Rng,
    cluster: usize,
    nodes: Vec<String>,
    pods: Vec<Pod>,
    events: Vec<Event>,
}

impl Builder<'_> {
    fn next_id(&self) -> u64 {
        ((self.cluster as u64) << 32) | self.pods.len() as u64
    }

    fn profile(&mut self) -> Profile {
        let log_uniform = |rng: &mut ChaCha8Rng, low: f64, high: f64| {
            (rng.random_range(low.ln()..high.ln())).exp()
        };
        let receive = log_uniform(&mut self.rng, 2e3, 2e6);
        let ratio = log_uniform(&mut self.rng, 0.15, 6.0);
        Profile {
            receive_bps: receive,
            transmit_bps: receive * ratio,
            amplitude: self.rng.random_range(0.1..0.6),
            peak_hour: self.rng.random_range(0.0..24.0),
            noise: self.rng.random_range(0.08..0.3),
            memory_bytes: log_uniform(&mut self.rng, 5e7, 2e9),
            tail: 0.0,
        }
    }

    fn push(&mut self, template: &Template, name: String, node: usize, alive: Range<i64>) {
        let pod = Pod {
            id: self.next_id(),
            name,
            namespace: template.namespace,
            node,
            workload: template.workload,
            profile: template.profile,
            scale: (self.rng.random_range(-0.15..0.15f64)).exp(),
            interfaces: template.interfaces,
            alive,
            offset_ms: self.rng.random_range(0..10_000),
        };
        self.pods.push(pod);
    }

    /// A random stretch of `minutes` inside `span` and the store's `[start, end)`, after the
    /// first day (kept clean for a first baseline), if one fits.
    fn stretch(
        &mut self,
        span: &Range<i64>,
        start: i64,
        end: i64,
        minutes: Range<i64>,
    ) -> Option<Range<i64>> {
        let length = self.rng.random_range(minutes) * 60_000;
        let first = span.start.max(start + 24 * HOUR_MS);
        let last = span.end.min(end) - length;
        (first < last).then(|| {
            let begin = self.rng.random_range(first..last) / 1000 * 1000;
            begin..begin + length
        })
    }

    fn random_node(&mut self) -> usize {
        self.rng.random_range(0..self.nodes.len())
    }

    /// Deployments: a template hash per revision, rollouts that replace pods one by one.
    fn deployments(&mut self, start: i64, end: i64) {
        let days = (end - start) as f64 / (24.0 * HOUR_MS as f64);
        for i in 0..self.spec.services as usize {
            let (namespace, base) = SERVICE_NAMES[i % SERVICE_NAMES.len()];
            let name = match i / SERVICE_NAMES.len() {
                0 => base.to_string(),
                round => format!("{base}-{}", round + 1),
            };
            let profile = self.profile();
            let interfaces = if i % 7 == 1 { MULTUS } else { ETH0 };
            // About 0.2% of real hashes are uint32s below 10^7 (7 characters or fewer): one
            // Deployment per cluster has one, so the rule's flaw shows in every store.
            let revision_hash = |rng: &mut ChaCha8Rng, first: bool| {
                let value = if first && i == 2 {
                    rng.random_range(1_000_000..10_000_000)
                } else {
                    rng.random::<u32>()
                };
                pod_template_hash(value)
            };
            let mut cuts = vec![i64::MIN / 4];
            let rollouts = (days * 0.2 + self.rng.random_range(0.0..1.0)).floor() as usize;
            let mut times: Vec<i64> = (0..rollouts)
                .map(|_| self.rng.random_range(start..end))
                .collect();
            times.sort_unstable();
            cuts.extend(times);
            cuts.push(i64::MAX / 4);
            let template = Template {
                namespace,
                workload: Workload::Deployment,
                profile: Profile {
                    // One Deployment in twenty is heavy-tailed.
                    tail: if i % 20 == 5 { 1.5 } else { 0.0 },
                    ..profile
                },
                interfaces,
            };
            let replicas = self.spec.replicas.max(1) as i64;
            for (revision, span) in cuts.windows(2).enumerate() {
                let hash = revision_hash(&mut self.rng, revision == 0);
                let mut revision_pods = Vec::new();
                for replica in 0..replicas {
                    // Pods of a rollout are replaced one by one, 20 s apart.
                    let stagger = replica * 20_000;
                    let begin = if revision == 0 {
                        span[0]
                    } else {
                        span[0] + stagger
                    };
                    let finish = if span[1] == i64::MAX / 4 {
                        span[1]
                    } else {
                        span[1] + stagger
                    };
                    let pod = deployment_pod(&name, &hash, &mut self.rng);
                    let node = self.random_node();
                    revision_pods.push(pod.clone());
                    self.push(&template, pod, node, begin..finish);
                }
                if revision > 0 {
                    self.events.push(Event {
                        kind: ScenarioKind::Rollout,
                        during: span[0]..span[0] + HOUR_MS,
                        pods: revision_pods.clone(),
                        load: vec![],
                    });
                }
                if template.profile.tail > 0.0 {
                    self.events.push(Event {
                        kind: ScenarioKind::HeavyTail,
                        during: span[0].max(start)..span[1].min(end),
                        pods: revision_pods.clone(),
                        load: vec![],
                    });
                }
                self.scale_events(
                    &template,
                    &name,
                    &hash,
                    &revision_pods,
                    span[0]..span[1],
                    start,
                    end,
                    days,
                );
            }
        }
    }

    /// A revision's scale-outs (as many replicas again, for one to three hours) and scale-ins
    /// (one replica fewer, replaced when the load returns), about one of each a week.
    #[allow(clippy::too_many_arguments)]
    fn scale_events(
        &mut self,
        template: &Template,
        deployment: &str,
        hash: &str,
        pods: &[String],
        span: Range<i64>,
        start: i64,
        end: i64,
        days: f64,
    ) {
        let n = pods.len() as f64;
        for kind in [ScenarioKind::ScaleOut, ScenarioKind::ScaleIn] {
            if self.rng.random_range(0.0..7.0) >= days.min(7.0)
                || (kind == ScenarioKind::ScaleIn && pods.len() < 2)
            {
                continue;
            }
            let Some(during) = self.stretch(&span, start, end, kind.minutes()) else {
                continue;
            };
            if kind == ScenarioKind::ScaleOut {
                let mut added = Vec::new();
                for replica in 0..pods.len() as i64 {
                    let pod = deployment_pod(deployment, hash, &mut self.rng);
                    let node = self.random_node();
                    added.push(pod.clone());
                    self.push(
                        template,
                        pod,
                        node,
                        during.start + replica * 20_000..during.end,
                    );
                }
                self.events.push(Event {
                    kind,
                    during: during.clone(),
                    pods: pods.iter().chain(&added).cloned().collect(),
                    load: pods
                        .iter()
                        .chain(&added)
                        .map(|p| (p.clone(), 0.5))
                        .collect(),
                });
            } else {
                let Some(gone) = self
                    .pods
                    .iter()
                    .position(|p| p.name == pods[pods.len() - 1])
                else {
                    continue;
                };
                let finish = self.pods[gone].alive.end;
                self.pods[gone].alive.end = during.start;
                let pod = deployment_pod(deployment, hash, &mut self.rng);
                let node = self.random_node();
                self.push(template, pod.clone(), node, during.end..finish);
                let remaining = &pods[..pods.len() - 1];
                self.events.push(Event {
                    kind,
                    during: during.clone(),
                    pods: remaining.iter().cloned().chain([pod]).collect(),
                    load: remaining
                        .iter()
                        .map(|p| (p.clone(), n / (n - 1.0)))
                        .collect(),
                });
            }
        }
    }

    /// About one node drain every three days: the Deployment pods on a node end, and new ones
    /// (same revision, new names) start on other nodes 30 s later.
    fn drains(&mut self, start: i64, end: i64) {
        let days = (end - start) as f64 / (24.0 * HOUR_MS as f64);
        let count = (days / 3.0).floor() as usize;
        for _ in 0..count {
            let Some(during) = self.stretch(&(start..end), start, end, 60..61) else {
                continue;
            };
            let node = self.random_node();
            let moved: Vec<usize> = (0..self.pods.len())
                .filter(|&i| {
                    let pod = &self.pods[i];
                    pod.workload == Workload::Deployment
                        && pod.node == node
                        && pod.alive.contains(&during.start)
                        && pod.alive.end > during.end
                })
                .collect();
            let mut replacements = Vec::new();
            for i in moved {
                let old = self.pods[i].clone();
                self.pods[i].alive.end = during.start;
                let base = &old.name[..old.name.len() - 5];
                let name = super::names::generate_name(base, &mut self.rng);
                let mut other = self.random_node();
                if other == node {
                    other = (other + 1) % self.nodes.len();
                }
                replacements.push(name.clone());
                let template = Template {
                    namespace: old.namespace,
                    workload: old.workload,
                    profile: old.profile,
                    interfaces: old.interfaces,
                };
                self.push(&template, name, other, during.start + 30_000..old.alive.end);
            }
            if !replacements.is_empty() {
                self.events.push(Event {
                    kind: ScenarioKind::Drain,
                    during,
                    pods: replacements,
                    load: vec![],
                });
            }
        }
    }

    fn daemonsets(&mut self) {
        for (namespace, name) in [
            ("logging", "fluent-bit"),
            ("monitoring", "node-exporter"),
            ("kube-system", "pdcsi-node"),
        ] {
            let profile = self.profile();
            for node in 0..self.nodes.len() {
                let pod = generate_name(&format!("{name}-"), &mut self.rng);
                self.push(
                    &Template {
                        namespace,
                        workload: Workload::DaemonSet,
                        profile,
                        interfaces: ETH0,
                    },
                    pod,
                    node,
                    i64::MIN / 4..i64::MAX / 4,
                );
            }
        }
        // GKE runs kube-proxy as a static pod named after its node.
        let profile = self.profile();
        for node in 0..self.nodes.len() {
            let pod = format!("kube-proxy-{}", self.nodes[node]);
            self.push(
                &Template {
                    namespace: "kube-system",
                    workload: Workload::Static,
                    profile,
                    interfaces: ETH0,
                },
                pod,
                node,
                i64::MIN / 4..i64::MAX / 4,
            );
        }
    }

    fn statefulsets(&mut self) {
        for name in ["postgres", "redis", "kafka"] {
            let profile = self.profile();
            for ordinal in 0..3 {
                let node = self.random_node();
                self.push(
                    &Template {
                        namespace: "data",
                        workload: Workload::StatefulSet,
                        profile,
                        interfaces: ETH0,
                    },
                    format!("{name}-{ordinal}"),
                    node,
                    i64::MIN / 4..i64::MAX / 4,
                );
            }
        }
    }

    /// CronJob pods: `db-backup` every hour for 4 to 7 minutes, `nightly-report` at 02:00 for 20.
    fn cronjobs(&mut self, start: i64, end: i64) {
        for (name, every, runs_ms) in [
            ("db-backup", HOUR_MS, 240_000..420_000),
            ("nightly-report", 24 * HOUR_MS, 1_100_000..1_300_000),
        ] {
            let mut profile = self.profile();
            profile.amplitude = 0.0;
            let first =
                start.div_euclid(every) * every + if every > HOUR_MS { 2 * HOUR_MS } else { 0 };
            let mut scheduled = first;
            while scheduled < end {
                let job = cron_job(name, scheduled);
                let pod = generate_name(&format!("{job}-"), &mut self.rng);
                let begin = scheduled + self.rng.random_range(2_000..8_000);
                let finish = begin + self.rng.random_range(runs_ms.clone());
                let node = self.random_node();
                self.push(
                    &Template {
                        namespace: "data",
                        workload: Workload::CronJob,
                        profile,
                        interfaces: ETH0,
                    },
                    pod,
                    node,
                    begin..finish,
                );
                scheduled += every;
            }
        }
    }
}

/// Builds cluster `index` of the generation, deterministically for the spec's seed.
pub fn cluster(spec: &Spec, index: usize) -> Cluster {
    let mut rng =
        ChaCha8Rng::seed_from_u64(spec.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let name = match index / CLUSTER_NAMES.len() {
        0 => CLUSTER_NAMES[index].to_string(),
        round => format!("{}-{round}", CLUSTER_NAMES[index % CLUSTER_NAMES.len()]),
    };
    let planned_pods = spec.services as usize * spec.replicas.max(1) as usize + 12;
    let node_count = planned_pods.div_ceil(12).max(3);
    let nodes = (0..node_count)
        .map(|n| {
            let pool = if n % 4 == 3 {
                "highmem-pool"
            } else {
                "default-pool"
            };
            let group: u32 = rng.random();
            format!(
                "gke-{name}-{pool}-{group:08x}-{}",
                &random_suffix(&mut rng)[..4]
            )
        })
        .collect();
    let mut builder = Builder {
        spec,
        rng,
        cluster: index,
        nodes,
        pods: Vec::new(),
        events: Vec::new(),
    };
    let (start, end) = (spec.start_ms(), spec.end_ms());
    builder.deployments(start, end);
    builder.daemonsets();
    builder.statefulsets();
    builder.cronjobs(start, end);
    builder.drains(start, end);
    let mut pods = builder.pods;
    pods.retain(|p| p.alive.start < end && p.alive.end > start);
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    let mut events = builder.events;
    events.retain(|e| e.during.start < end && e.during.end > start);
    Cluster {
        name,
        nodes: builder.nodes,
        pods,
        events,
    }
}
