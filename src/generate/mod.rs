//! `iodrift generate`: a synthetic cluster written straight into the store layout, with attacks
//! and benign changes listed in a labels file beside the store. Deterministic for a seed.

mod names;
mod scenario;
mod topology;
mod traffic;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanBufferBuilder, DictionaryArray, Float64Array, Int32Array, RecordBatch,
    StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::Int32Type;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::error::{Error, Result};
use crate::location::Location;
use crate::store::{self, NETWORK_IO_METRIC};
use crate::time::Window;
pub use scenario::ScenarioKind;
pub use topology::{Cluster, Event, Pod, Workload};
use traffic::{Injection, SCRAPE_MS};

pub const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
const MEMORY_METRIC: &str = "k8s.pod.memory.working_set";
/// The detection window that the last hours' scenarios are placed in: ESCU's -70m..-10m.
const FINAL_WINDOW_MS: (i64, i64) = (70 * 60_000, 10 * 60_000);

/// The most Deployment pods `generate` makes (clusters x services x replicas): a hundred times
/// the largest benchmark, well within memory.
pub const MAX_DEPLOYMENT_PODS: u64 = 1_000_000;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    pub clusters: u32,
    pub services: u32,
    pub replicas: u32,
    pub start: DateTime<Utc>,
    pub hours: u32,
    pub seed: u64,
}

impl Spec {
    /// The first hour starts at `start` floored to the hour.
    pub fn start_ms(&self) -> i64 {
        self.start.timestamp_millis().div_euclid(HOUR_MS) * HOUR_MS
    }

    pub fn end_ms(&self) -> i64 {
        self.start_ms() + i64::from(self.hours) * HOUR_MS
    }
}

/// One injected attack, as the labels file lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub scenario: ScenarioKind,
    pub cluster: String,
    pub namespace: String,
    pub node: String,
    pub pod: String,
    /// The pod's ESCU service name.
    pub service: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// An attack, which every rule ought to report; otherwise a benign event that must not fire.
    pub attack: bool,
}

impl Label {
    /// How long the scenario runs inside `window` (zero when it does not).
    pub fn overlap(&self, window: &Window) -> chrono::Duration {
        let start = self.start.max(window.earliest);
        let end = self.end.min(window.latest);
        (end - start).max(chrono::Duration::zero())
    }
}

/// The labels file: the generation's parameters and every injected scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Labels {
    pub seed: u64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub clusters: Vec<String>,
    pub pods: usize,
    pub scenarios: Vec<Label>,
}

impl Labels {
    /// Reads a labels file written by `generate`; an error names the file.
    pub async fn read(location: &Location) -> Result<Labels> {
        let fail = |reason: String| Error::Usage(format!("labels {}: {reason}", location.as_str()));
        let text = location
            .read("")
            .await?
            .ok_or_else(|| fail("no such file".into()))?;
        let labels: Labels = serde_json::from_slice(&text)
            .map_err(|e| fail(format!("not a labels file of `iodrift generate`: {e}")))?;
        for (field, instant) in [("start", labels.start), ("end", labels.end)] {
            crate::time::supported(instant).map_err(|reason| fail(format!("{field}: {reason}")))?;
        }
        if labels.end < labels.start {
            return Err(fail("its end comes before its start".into()));
        }
        Ok(labels)
    }
}

/// What `generate` wrote.
#[derive(Debug, Clone)]
pub struct Summary {
    pub rows: u64,
    pub files: usize,
    pub pods: usize,
    pub labels_path: String,
    pub labels: Labels,
}

/// Writes the synthetic store of `spec` into `out` (see [`generate`]) from async code: the
/// generator's threads run outside the async runtime's.
pub async fn run(spec: Spec, out: Location) -> Result<Summary> {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || generate(&spec, &out, &runtime))
        .await
        .map_err(|e| Error::Usage(format!("the generator failed: {e}")))?
}

/// The labels file of the store at `store`: `<store>.labels.json`, beside it.
pub fn labels_location(store: &Location) -> Location {
    store.with_suffix(".labels.json")
}

/// Writes the synthetic store into `out` (one file per hour, all clusters, sorted by cluster,
/// pod, direction and time) and the labels file beside it.
///
/// Call it outside the async runtime's threads (e.g. in `spawn_blocking`): its worker threads
/// write through the runtime `runtime`.
pub fn generate(spec: &Spec, out: &Location, runtime: &Handle) -> Result<Summary> {
    if spec.clusters == 0 || spec.hours == 0 || spec.services == 0 {
        return Err(Error::Usage(
            "--clusters, --services and --hours must be at least 1".into(),
        ));
    }
    let pods =
        u64::from(spec.clusters) * u64::from(spec.services) * u64::from(spec.replicas.max(1));
    if pods > MAX_DEPLOYMENT_PODS {
        return Err(Error::Usage(format!(
            "--clusters {} x --services {} x --replicas {} is {pods} pods; at most \
             {MAX_DEPLOYMENT_PODS} are generated",
            spec.clusters, spec.services, spec.replicas
        )));
    }
    let end = spec
        .start
        .checked_add_signed(chrono::Duration::hours(i64::from(spec.hours)));
    if end.is_none_or(|end| end > crate::time::latest_supported()) {
        return Err(Error::Usage(format!(
            "--hours {}: the data would end after {}, the last supported time",
            spec.hours,
            crate::time::latest_supported().format("%Y-%m-%d")
        )));
    }
    if let Some(dir) = out.local() {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    let mut clusters: Vec<Cluster> = (0..spec.clusters as usize)
        .map(|i| topology::cluster(spec, i))
        .collect();
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    let injections = plan_scenarios(spec, &clusters);
    let labels = labels(spec, &clusters, &injections);

    let next_hour = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let results: Vec<Result<u64>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut rows = 0;
                    let mut columns = Allocations::default();
                    loop {
                        let hour = next_hour.fetch_add(1, Ordering::Relaxed);
                        if hour >= spec.hours as usize {
                            return Ok(rows);
                        }
                        let start = spec.start_ms() + hour as i64 * HOUR_MS;
                        let batch = hour_batch(spec, &clusters, &injections, start, columns);
                        rows += batch.num_rows() as u64;
                        runtime.block_on(store::write_partition_file(
                            out,
                            start,
                            "generated.parquet",
                            &batch,
                            store::writer_properties(),
                        ))?;
                        columns = Allocations::reclaim(batch);
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("generator thread panicked"))
            .collect()
    });
    let rows = results.into_iter().sum::<Result<u64>>()?;

    let labels_location = labels_location(out);
    runtime.block_on(labels_location.write("", |file| {
        serde_json::to_writer_pretty(file, &labels).map_err(std::io::Error::other)
    }))?;
    Ok(Summary {
        rows,
        files: spec.hours as usize,
        pods: clusters.iter().map(|c| c.pods.len()).sum(),
        labels_path: labels_location.as_str().to_string(),
        labels,
    })
}

/// Injections per cluster and pod: the load of the topology's scale events, the periodic work
/// of the history (nightly backups, refreshes every four hours), random scenarios over the
/// whole range (after the first day, which stays clean for a first baseline), about one of each
/// kind per 100 Deployment pods and day, and one of several kinds in ESCU's last detection
/// window so the store's last hour has findings.
fn plan_scenarios(spec: &Spec, clusters: &[Cluster]) -> Vec<Vec<Vec<Injection>>> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x5CE7_A210);
    let mut plan: Vec<Vec<Vec<Injection>>> = clusters
        .iter()
        .map(|c| vec![Vec::new(); c.pods.len()])
        .collect();
    let (start, end) = (spec.start_ms(), spec.end_ms());
    let clean_until = if spec.hours > 26 {
        start + 24 * HOUR_MS
    } else {
        start
    };
    for (cluster, pods) in clusters.iter().zip(plan.iter_mut()) {
        let index: HashMap<&str, usize> = cluster
            .pods
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        for event in &cluster.events {
            for (pod, factor) in &event.load {
                if let Some(&i) = index.get(pod.as_str()) {
                    pods[i].push(Injection::load(event.kind, event.during.clone(), *factor));
                }
            }
        }
        periodic_work(cluster, pods, start, end, &mut rng);
    }
    let members: Vec<Members> = clusters.iter().map(Members::of).collect();
    let mut place = |kind: ScenarioKind, during: std::ops::Range<i64>, rng: &mut ChaCha8Rng| {
        let cluster = rng.random_range(0..clusters.len());
        let pods = &clusters[cluster].pods;
        // A pod takes an attack only when nothing else is injected into it within an hour of
        // it (so each label is the pod's only change then), whatever it had at other times.
        let free = |i: usize, over: std::ops::Range<i64>| {
            !plan[cluster][i].iter().any(|injection| {
                injection.during.start < over.end + HOUR_MS
                    && injection.during.end + HOUR_MS > over.start
            })
        };
        match kind {
            ScenarioKind::Surge => {
                // Every replica of one Deployment that has two or more through the stretch.
                let eligible: Vec<Vec<usize>> = members[cluster]
                    .deployments
                    .values()
                    .map(|all| {
                        all.iter()
                            .copied()
                            .filter(|&i| {
                                pods[i].alive.start < during.end && pods[i].alive.end > during.start
                            })
                            .collect::<Vec<usize>>()
                    })
                    .filter(|m| m.len() >= 2)
                    .collect();
                if eligible.is_empty() {
                    return;
                }
                let chosen = &eligible[rng.random_range(0..eligible.len())];
                let surge = Injection::new(kind, during.clone(), rng);
                for &i in chosen {
                    plan[cluster][i].push(surge.clone());
                }
            }
            ScenarioKind::JobExfiltration => {
                // A CronJob's runs take at most one attack in any three days, so most of its
                // history stays clean, as a real one's would (an hourly backup attacked in most
                // of its runs teaches every baseline that the attack is its normal).
                let attacked_near = |i: usize| {
                    let runs = members[cluster].cronjobs.get(members[cluster].workload[i]);
                    runs.into_iter().flatten().any(|&j| {
                        plan[cluster][j].iter().any(|injection| {
                            injection.kind == ScenarioKind::JobExfiltration
                                && injection.during.start < pods[i].alive.end + 3 * DAY_MS
                                && injection.during.end + 3 * DAY_MS > pods[i].alive.start
                        })
                    })
                };
                let candidates: Vec<usize> = (0..pods.len())
                    .filter(|&i| {
                        pods[i].workload == Workload::CronJob
                            && pods[i].alive.start >= during.start
                            && pods[i].alive.end <= during.end
                            && free(i, pods[i].alive.clone())
                            && !attacked_near(i)
                    })
                    .collect();
                if let Some(&i) = candidates.get(rng.random_range(0..candidates.len().max(1))) {
                    let alive = pods[i].alive.clone();
                    plan[cluster][i].push(Injection::new(kind, alive, rng));
                }
            }
            ScenarioKind::NewPodExfiltration => {
                // A Deployment pod created (by a rollout, a scale-out or a drain) in the stretch,
                // with two hours of life; the exfiltration starts 1 to 20 minutes after it.
                let candidates: Vec<usize> = (0..pods.len())
                    .filter(|&i| {
                        pods[i].workload == Workload::Deployment
                            && during.contains(&pods[i].alive.start)
                            && pods[i].alive.end - pods[i].alive.start >= 2 * HOUR_MS
                            && free(i, pods[i].alive.start..pods[i].alive.start + 2 * HOUR_MS)
                    })
                    .collect();
                if let Some(&i) = candidates.get(rng.random_range(0..candidates.len().max(1))) {
                    let begin = pods[i].alive.start + rng.random_range(60_000..1_200_000);
                    let length = rng.random_range(kind.minutes()) * 60_000;
                    let during = begin..(begin + length).min(pods[i].alive.end);
                    plan[cluster][i].push(Injection::new(kind, during, rng));
                }
            }
            _ => {
                let candidates: Vec<usize> = (0..pods.len())
                    .filter(|&i| {
                        let p = &pods[i];
                        p.workload != Workload::CronJob
                            && p.alive.start <= during.start
                            && p.alive.end >= during.end
                            && free(i, during.clone())
                            && (kind != ScenarioKind::RatioFlip || {
                                let ratio = p.profile.transmit_bps / p.profile.receive_bps;
                                !(0.4..=2.5).contains(&ratio)
                            })
                    })
                    .collect();
                if candidates.is_empty() {
                    return;
                }
                let pod = candidates[rng.random_range(0..candidates.len())];
                plan[cluster][pod].push(Injection::new(kind, during, rng));
            }
        }
    };
    let deployment_pods: usize = clusters
        .iter()
        .map(|c| {
            c.pods
                .iter()
                .filter(|p| p.workload == Workload::Deployment)
                .count()
        })
        .sum();
    let days = f64::from(spec.hours) / 24.0;
    let per_kind = (deployment_pods as f64 * days / 100.0).floor() as usize;
    for kind in ScenarioKind::PLACED {
        for _ in 0..per_kind {
            let minutes = match kind {
                // Candidates are the pods that start (or run) in a stretch of six hours.
                ScenarioKind::JobExfiltration | ScenarioKind::NewPodExfiltration => 360..361,
                _ => kind.minutes(),
            };
            let minutes = rng.random_range(minutes);
            let latest_start = end - minutes * 60_000 - 2 * HOUR_MS;
            if latest_start <= clean_until {
                break;
            }
            let begin = rng.random_range(clean_until..latest_start) / 1000 * 1000;
            place(kind, begin..begin + minutes * 60_000, &mut rng);
        }
    }
    if spec.hours >= 3 {
        let (window_start, window_end) = (end - FINAL_WINDOW_MS.0, end - FINAL_WINDOW_MS.1);
        for (kind, during) in [
            (ScenarioKind::Exfiltration, window_start - 30 * 60_000..end),
            (
                ScenarioKind::InboundFlood,
                window_start - 20 * 60_000..window_end,
            ),
            (ScenarioKind::RatioFlip, window_start - 10 * 60_000..end),
            (
                ScenarioKind::SlowExfiltration,
                window_start + 15 * 60_000..window_end,
            ),
            (
                ScenarioKind::Beaconing,
                window_start + 5 * 60_000..window_end - 5 * 60_000,
            ),
            (ScenarioKind::Burst, window_start..window_end),
            (
                ScenarioKind::Surge,
                window_start + 10 * 60_000..window_end - 10 * 60_000,
            ),
        ] {
            place(kind, during, &mut rng);
        }
    }
    plan
}

/// A cluster's pods by workload, computed once so that placing a scenario does not scan every
/// pod of the history for each workload (quadratic in the pods of a 30-day store).
struct Members<'a> {
    workload: Vec<&'a str>,
    /// Deployment pods by workload name, in name order, each list in pod order.
    deployments: BTreeMap<&'a str, Vec<usize>>,
    /// CronJob pods (the runs) by CronJob name, in pod order.
    cronjobs: HashMap<&'a str, Vec<usize>>,
}

impl<'a> Members<'a> {
    fn of(cluster: &'a Cluster) -> Members<'a> {
        let workload: Vec<&str> = cluster
            .pods
            .iter()
            .map(|p| iodrift_udfs::workload_name(&p.name, ""))
            .collect();
        let mut deployments: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut cronjobs: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, pod) in cluster.pods.iter().enumerate() {
            match pod.workload {
                Workload::Deployment => deployments.entry(workload[i]).or_default().push(i),
                Workload::CronJob => cronjobs.entry(workload[i]).or_default().push(i),
                _ => {}
            }
        }
        Members {
            workload,
            deployments,
            cronjobs,
        }
    }
}

/// The work that the history shows every day: a nightly backup of each cluster's primary
/// database pod (`postgres-0`) at about 01:30, and a refresh every four hours of the `search`
/// Deployment's replicas (or the first Deployment's, without one).
fn periodic_work(
    cluster: &Cluster,
    plan: &mut [Vec<Injection>],
    start: i64,
    end: i64,
    rng: &mut ChaCha8Rng,
) {
    let first_day = start.div_euclid(24 * HOUR_MS) * 24 * HOUR_MS;
    if let Some(primary) = cluster.pods.iter().position(|p| p.name == "postgres-0") {
        let mut day = first_day;
        while day < end {
            let begin = day + 90 * 60_000 + rng.random_range(0..600_000);
            let minutes = rng.random_range(ScenarioKind::Backup.minutes());
            let during = begin..begin + minutes * 60_000;
            plan[primary].push(Injection::new(ScenarioKind::Backup, during, rng));
            day += 24 * HOUR_MS;
        }
    }
    let deployment = |p: &&Pod| p.workload == Workload::Deployment;
    let refreshed = cluster
        .pods
        .iter()
        .filter(deployment)
        .map(|p| iodrift_udfs::workload_name(&p.name, ""))
        .find(|w| *w == "search")
        .or_else(|| {
            cluster
                .pods
                .iter()
                .find(deployment)
                .map(|p| iodrift_udfs::workload_name(&p.name, ""))
        });
    let Some(refreshed) = refreshed else {
        return;
    };
    let mut at = first_day + 15 * 60_000;
    while at < end {
        let minutes = rng.random_range(ScenarioKind::Refresh.minutes());
        let refresh = Injection::new(ScenarioKind::Refresh, at..at + minutes * 60_000, rng);
        for (i, pod) in cluster.pods.iter().enumerate() {
            if deployment(&pod)
                && iodrift_udfs::workload_name(&pod.name, "") == refreshed
                && pod.alive.start < refresh.during.end
                && pod.alive.end > refresh.during.start
            {
                plan[i].push(refresh.clone());
            }
        }
        at += 4 * HOUR_MS;
    }
}

fn labels(spec: &Spec, clusters: &[Cluster], plan: &[Vec<Vec<Injection>>]) -> Labels {
    let at = |ms: i64| Utc.timestamp_millis_opt(ms).single().expect("in range");
    let (start, end) = (spec.start_ms(), spec.end_ms());
    let mut scenarios = Vec::new();
    let mut label =
        |cluster: &Cluster, pod: &Pod, kind: ScenarioKind, during: &std::ops::Range<i64>| {
            let (from, to) = (during.start.max(start), during.end.min(end));
            if from >= to {
                return;
            }
            scenarios.push(Label {
                scenario: kind,
                cluster: cluster.name.clone(),
                namespace: pod.namespace.to_string(),
                node: cluster.nodes[pod.node].clone(),
                pod: pod.name.clone(),
                service: iodrift_udfs::service_name(&pod.name).into_owned(),
                start: at(from),
                end: at(to),
                attack: kind.is_attack(),
            });
        };
    for (cluster, pods) in clusters.iter().zip(plan) {
        for (pod, injections) in cluster.pods.iter().zip(pods) {
            // A scale event's load is labelled with its event, below.
            for injection in injections
                .iter()
                .filter(|i| !matches!(i.kind, ScenarioKind::ScaleOut | ScenarioKind::ScaleIn))
            {
                label(cluster, pod, injection.kind, &injection.during);
            }
        }
        let by_name: HashMap<&str, &Pod> =
            cluster.pods.iter().map(|p| (p.name.as_str(), p)).collect();
        for event in &cluster.events {
            for name in &event.pods {
                if let Some(pod) = by_name.get(name.as_str()) {
                    label(cluster, pod, event.kind, &event.during);
                }
            }
        }
    }
    scenarios.sort_by(|a, b| {
        (&a.start, &a.cluster, &a.pod, a.scenario).cmp(&(&b.start, &b.cluster, &b.pod, b.scenario))
    });
    Labels {
        seed: spec.seed,
        start: at(start),
        end: at(end),
        clusters: clusters.iter().map(|c| c.name.clone()).collect(),
        pods: clusters.iter().map(|c| c.pods.len()).sum(),
        scenarios,
    }
}

/// The column buffers of a written hour, taken back for the next one: a worker then writes into
/// memory it has touched before instead of faulting in fresh pages every hour.
#[derive(Default)]
struct Allocations {
    time: Vec<i64>,
    value: Vec<f64>,
    keys: [Vec<i32>; 7],
}

impl Allocations {
    /// The buffers of `batch` (one of [`hour_batch`]'s) that nothing else holds; fresh ones for
    /// any that something still does.
    fn reclaim(batch: RecordBatch) -> Allocations {
        let mut buffers = batch
            .columns()
            .iter()
            .map(|column| column.to_data().buffers()[0].clone())
            .collect::<Vec<_>>()
            .into_iter();
        drop(batch);
        let mut next = || buffers.next().expect("one buffer a column");
        let time = next().into_vec().unwrap_or_default();
        let keys = std::array::from_fn(|_| next().into_vec().unwrap_or_default());
        let value = next().into_vec().unwrap_or_default();
        Allocations { time, value, keys }
    }
}

/// Dictionary-encoded column: distinct values, and a key per row (rows marked null by the
/// batch's gauge rows hold key 0).
struct Column {
    values: Vec<String>,
    index: HashMap<String, i32>,
    keys: Vec<i32>,
}

impl Column {
    fn new(mut keys: Vec<i32>) -> Column {
        keys.clear();
        Column {
            values: Vec::new(),
            index: HashMap::new(),
            keys,
        }
    }

    fn value(&mut self, value: &str) -> i32 {
        if let Some(key) = self.index.get(value) {
            return *key;
        }
        let key = self.values.len() as i32;
        self.values.push(value.to_string());
        self.index.insert(value.to_string(), key);
        key
    }

    fn repeat(&mut self, key: i32, rows: usize) {
        self.keys.extend(std::iter::repeat_n(key, rows));
    }

    fn array(mut self, nulls: Option<NullBuffer>) -> ArrayRef {
        if self.values.is_empty() {
            // Every row is null: key 0 must still index a value.
            self.values.push(String::new());
        }
        let values = Arc::new(StringArray::from(self.values));
        let keys = Int32Array::new(self.keys.into(), nulls);
        debug_assert!(keys.values().iter().all(|k| (*k as usize) < values.len()));
        // SAFETY: every key came from `value`, which returns an index into `values`, or is the
        // gauge rows' 0, and `values` is not empty.
        Arc::new(unsafe { DictionaryArray::<Int32Type>::new_unchecked(keys, values) })
    }
}

/// Every row of one hour, in store order: cluster, pod, direction (receive, transmit, then the
/// gauge without direction), time, interface.
fn hour_batch(
    spec: &Spec,
    clusters: &[Cluster],
    plan: &[Vec<Vec<Injection>>],
    hour: i64,
    columns: Allocations,
) -> RecordBatch {
    let Allocations {
        mut time,
        mut value,
        keys,
    } = columns;
    time.clear();
    value.clear();
    let capacity = time.capacity();
    // Network rows have a direction and an interface; gauge rows have neither.
    let mut network_rows = BooleanBufferBuilder::new(capacity);
    let [
        mut metric,
        mut cluster_col,
        mut namespace,
        mut node,
        mut pod_col,
        mut direction,
        mut interface,
    ] = keys.map(Column::new);
    let network = metric.value(NETWORK_IO_METRIC);
    let memory = metric.value(MEMORY_METRIC);
    let receive = direction.value("receive");
    let transmit = direction.value("transmit");
    for (cluster, injections) in clusters.iter().zip(plan) {
        let cluster_key = cluster_col.value(&cluster.name);
        for (pod, injections) in cluster.pods.iter().zip(injections) {
            if pod.alive.start >= hour + HOUR_MS || pod.alive.end <= hour {
                continue;
            }
            let mut rng = ChaCha8Rng::seed_from_u64(
                spec.seed
                    ^ pod.id.rotate_left(17)
                    ^ (hour as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93),
            );
            let points = traffic::points(spec.seed, pod, injections, hour, &mut rng);
            if points.is_empty() {
                continue;
            }
            let interface_keys: Vec<i32> =
                pod.interfaces.iter().map(|i| interface.value(i)).collect();
            let shares: Vec<f64> = (0..interface_keys.len())
                .map(|index| traffic::interface_share(interface_keys.len(), index))
                .collect();
            for (dir, total) in [
                (receive, (|p| p.receive) as fn(&traffic::Point) -> f64),
                (transmit, |p| p.transmit),
            ] {
                if let [only] = interface_keys[..] {
                    // Most pods: one row a point, in columns extended from exact-size iterators.
                    time.extend(points.iter().map(|p| p.time));
                    value.extend(points.iter().map(|p| traffic::round(total(p))));
                    interface.repeat(only, points.len());
                } else {
                    for point in &points {
                        for share in &shares {
                            time.push(point.time);
                            value.push(traffic::round(total(point) * share));
                        }
                        interface.keys.extend_from_slice(&interface_keys);
                    }
                }
                direction.repeat(dir, points.len() * interface_keys.len());
            }
            let network_count = 2 * points.len() * interface_keys.len();
            let mut gauge_count = 0;
            for point in points
                .iter()
                .filter(|p| (p.time - pod.offset_ms).div_euclid(SCRAPE_MS) % 6 == 0)
            {
                time.push(point.time);
                value.push(traffic::memory(pod, &mut rng));
                gauge_count += 1;
            }
            metric.repeat(network, network_count);
            metric.repeat(memory, gauge_count);
            direction.repeat(0, gauge_count);
            interface.repeat(0, gauge_count);
            network_rows.append_n(network_count, true);
            network_rows.append_n(gauge_count, false);
            let keys = [
                cluster_key,
                namespace.value(pod.namespace),
                node.value(&cluster.nodes[pod.node]),
                pod_col.value(&pod.name),
            ];
            for (column, key) in [&mut cluster_col, &mut namespace, &mut node, &mut pod_col]
                .into_iter()
                .zip(keys)
            {
                column.repeat(key, network_count + gauge_count);
            }
        }
    }
    let network_rows = Some(NullBuffer::new(network_rows.finish())).filter(|n| n.null_count() > 0);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMillisecondArray::from(time).with_timezone("UTC")),
        metric.array(None),
        cluster_col.array(None),
        namespace.array(None),
        node.array(None),
        pod_col.array(None),
        direction.array(network_rows.clone()),
        interface.array(network_rows),
        Arc::new(Float64Array::from(value)),
    ];
    RecordBatch::try_new(store::required_schema(), columns)
        .expect("generated columns match the store schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cronjob_takes_at_most_one_attack_in_three_days() {
        let spec = Spec {
            clusters: 2,
            services: 60,
            replicas: 3,
            start: "2026-03-01T00:00:00Z".parse().unwrap(),
            hours: 24 * 14,
            seed: 1,
        };
        let clusters: Vec<Cluster> = (0..spec.clusters as usize)
            .map(|i| topology::cluster(&spec, i))
            .collect();
        let plan = plan_scenarios(&spec, &clusters);
        let mut attacks: HashMap<(usize, &str), Vec<i64>> = HashMap::new();
        for (c, (cluster, pods)) in clusters.iter().zip(&plan).enumerate() {
            for (pod, injections) in cluster.pods.iter().zip(pods) {
                for injection in injections {
                    if injection.kind == ScenarioKind::JobExfiltration {
                        attacks
                            .entry((c, iodrift_udfs::workload_name(&pod.name, "")))
                            .or_default()
                            .push(injection.during.start);
                    }
                }
            }
        }
        assert!(!attacks.is_empty(), "no Job exfiltration was placed");
        for (cronjob, mut starts) in attacks {
            starts.sort_unstable();
            for pair in starts.windows(2) {
                assert!(
                    pair[1] - pair[0] >= 3 * DAY_MS,
                    "{cronjob:?} attacked twice within three days: {starts:?}"
                );
            }
        }
    }
}
