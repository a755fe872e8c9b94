//! What each pod moves: scrape times with per-pod offset and jitter, per-interval byte deltas
//! with a daily cycle and log-normal noise, and the attack scenarios injected on top.

use std::ops::Range;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};

use super::HOUR_MS;
use super::topology::Pod;

pub const SCRAPE_MS: i64 = 10_000;
const JITTER_SIGMA_MS: f64 = 700.0;
const JITTER_LIMIT_MS: f64 = 2_500.0;
const MISSED_SCRAPE: f64 = 0.002;
/// How far back a delta may reach over missed scrapes.
const MAX_GAP: i64 = 6;

/// The attacks the generator injects; the labels file lists each occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioKind {
    /// Sustained outbound volume far above the service's usual.
    Exfiltration,
    /// Sustained inbound volume far above the usual.
    InboundFlood,
    /// Inbound and outbound swap: the ratio turns over, the volume barely moves.
    RatioFlip,
    /// Two outbound bursts of 4 to 8 s. Jitter keeps scrapes 5 s or more apart (except where it
    /// is clamped at an hour's edge), so each burst lands in at most two scrapes: at most four
    /// anomalous buckets, which must not fire.
    Burst,
}

impl ScenarioKind {
    pub const ALL: [ScenarioKind; 4] = [
        ScenarioKind::Exfiltration,
        ScenarioKind::InboundFlood,
        ScenarioKind::RatioFlip,
        ScenarioKind::Burst,
    ];

    /// The rules that ought to report it (an ESCU rule may still miss or over-report).
    pub fn expected_rules(self) -> &'static [&'static str] {
        match self {
            ScenarioKind::Exfiltration | ScenarioKind::InboundFlood => {
                &["network-io", "network-io-ratio"]
            }
            ScenarioKind::RatioFlip => &["network-io-ratio"],
            ScenarioKind::Burst => &[],
        }
    }

    /// How long one occurrence lasts, in minutes.
    pub fn minutes(self) -> Range<i64> {
        match self {
            ScenarioKind::Exfiltration => 90..180,
            ScenarioKind::InboundFlood => 60..120,
            ScenarioKind::RatioFlip => 60..150,
            ScenarioKind::Burst => 50..60,
        }
    }
}

/// One attack on one pod.
#[derive(Debug, Clone)]
pub struct Injection {
    pub kind: ScenarioKind,
    pub during: Range<i64>,
    pub factor: f64,
    /// For bursts: the seconds that carry the extra traffic.
    pub bursts: Vec<Range<i64>>,
}

impl Injection {
    pub fn new(kind: ScenarioKind, during: Range<i64>, rng: &mut ChaCha8Rng) -> Injection {
        let (factor, bursts) = match kind {
            ScenarioKind::Exfiltration => (rng.random_range(15.0..40.0), vec![]),
            ScenarioKind::InboundFlood => (rng.random_range(20.0..60.0), vec![]),
            ScenarioKind::RatioFlip => (1.0, vec![]),
            ScenarioKind::Burst => {
                let span = during.end - during.start;
                let bursts = (0..2)
                    .map(|i| {
                        let slot = during.start + span * i / 2;
                        let begin = slot + rng.random_range(0..(span / 2 - 30_000).max(1));
                        begin..begin + rng.random_range(4_000..8_000)
                    })
                    .collect();
                (60.0, bursts)
            }
        };
        Injection {
            kind,
            during,
            factor,
            bursts,
        }
    }

    /// Multipliers of (receive, transmit) rates at `t`.
    fn rates(&self, t: i64, receive: f64, transmit: f64) -> (f64, f64) {
        if !self.during.contains(&t) {
            return (receive, transmit);
        }
        match self.kind {
            ScenarioKind::Exfiltration => (receive, transmit * self.factor),
            ScenarioKind::InboundFlood => (receive * self.factor, transmit),
            ScenarioKind::RatioFlip => (transmit, receive),
            ScenarioKind::Burst if self.bursts.iter().any(|b| b.contains(&t)) => {
                (receive, transmit * self.factor)
            }
            ScenarioKind::Burst => (receive, transmit),
        }
    }
}

/// A counter-based uniform in [0, 1): the same (seed, pod, scrape, stream) always gives the
/// same number, so any hour can be generated alone and agree with its neighbours.
fn unit(seed: u64, pod: u64, scrape: i64, stream: u64) -> f64 {
    let mut x = seed
        ^ pod.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (scrape as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ stream.wrapping_mul(0x94D0_49BB_1331_11EB);
    // SplitMix64 finaliser.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// When scrape `k` of `pod` happened, or `None` when it was missed or the pod was not running.
/// Jitter never moves a scrape out of the hour of its nominal time.
pub fn scrape_time(seed: u64, pod: &Pod, k: i64) -> Option<i64> {
    if unit(seed, pod.id, k, 3) < MISSED_SCRAPE {
        return None;
    }
    let nominal = k * SCRAPE_MS + pod.offset_ms;
    // Box-Muller from two counter-based uniforms.
    let (u1, u2) = (
        unit(seed, pod.id, k, 1).max(f64::MIN_POSITIVE),
        unit(seed, pod.id, k, 2),
    );
    let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    let jitter = (normal * JITTER_SIGMA_MS).clamp(-JITTER_LIMIT_MS, JITTER_LIMIT_MS) as i64;
    let hour = nominal.div_euclid(HOUR_MS) * HOUR_MS;
    let at = (nominal + jitter).clamp(hour, hour + HOUR_MS - 1);
    pod.alive.contains(&at).then_some(at)
}

/// The number and time of the scrape before `k` that happened, if any within reach.
fn latest_scrape_before(seed: u64, pod: &Pod, k: i64) -> Option<(i64, i64)> {
    (1..=MAX_GAP).find_map(|back| scrape_time(seed, pod, k - back).map(|at| (k - back, at)))
}

/// One scrape's deltas: bytes received and transmitted per interface since the previous scrape.
pub struct Point {
    pub time: i64,
    pub receive: f64,
    pub transmit: f64,
}

/// The points of `pod` whose nominal scrape time falls in `[hour, hour + 1 h)`.
pub fn points(
    seed: u64,
    pod: &Pod,
    injections: &[Injection],
    hour: i64,
    rng: &mut ChaCha8Rng,
) -> Vec<Point> {
    let noise = LogNormal::new(0.0, pod.profile.noise).expect("valid sigma");
    let first = (hour - pod.offset_ms).div_euclid(SCRAPE_MS)
        + i64::from((hour - pod.offset_ms).rem_euclid(SCRAPE_MS) != 0);
    let mut out = Vec::with_capacity((HOUR_MS / SCRAPE_MS) as usize);
    let mut k = first;
    // The latest scrape that happened (its number and time), carried along so that each scrape
    // time is drawn once.
    let mut latest = latest_scrape_before(seed, pod, k);
    while k * SCRAPE_MS + pod.offset_ms < hour + HOUR_MS {
        let before = latest
            .filter(|(latest_k, _)| k - latest_k <= MAX_GAP)
            .map(|(_, at)| at);
        let now = scrape_time(seed, pod, k);
        if let Some(at) = now {
            latest = Some((k, at));
        }
        if let (Some(at), Some(before)) = (now, before) {
            let seconds = (at - before) as f64 / 1000.0;
            let day_hours = (at.rem_euclid(24 * HOUR_MS)) as f64 / HOUR_MS as f64;
            let cycle = 1.0
                + pod.profile.amplitude
                    * (std::f64::consts::TAU * (day_hours - pod.profile.peak_hour + 6.0) / 24.0)
                        .sin();
            let base = pod.scale * cycle * seconds;
            let (mut receive, mut transmit) = (
                pod.profile.receive_bps * base,
                pod.profile.transmit_bps * base,
            );
            for injection in injections {
                (receive, transmit) = injection.rates(at, receive, transmit);
            }
            out.push(Point {
                time: at,
                receive: receive * noise.sample(rng),
                transmit: transmit * noise.sample(rng),
            });
        }
        k += 1;
    }
    out
}

/// How a pod's traffic splits over its interfaces.
pub fn interface_share(interfaces: usize, index: usize) -> f64 {
    match (interfaces, index) {
        (1, _) => 1.0,
        (_, 0) => 0.85,
        (n, _) => 0.15 / (n - 1) as f64,
    }
}

/// Memory working set: one gauge point a minute, on the scrapes whose number divides by six.
pub fn memory(pod: &Pod, rng: &mut ChaCha8Rng) -> f64 {
    (pod.profile.memory_bytes * pod.scale * rng.random_range(0.95..1.05)).round()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::topology::{Profile, Workload};

    fn pod() -> Pod {
        Pod {
            id: 42,
            name: "web-0".into(),
            namespace: "default",
            node: 0,
            workload: Workload::StatefulSet,
            profile: Profile {
                receive_bps: 1000.0,
                transmit_bps: 500.0,
                amplitude: 0.3,
                peak_hour: 14.0,
                noise: 0.1,
                memory_bytes: 1e8,
            },
            scale: 1.0,
            interfaces: &["eth0"],
            alive: i64::MIN / 4..i64::MAX / 4,
            offset_ms: 9_000,
        }
    }

    #[test]
    fn scrapes_stay_in_their_hour_and_some_spans_get_two_or_none() {
        use rand::SeedableRng;
        let pod = pod();
        let hour = 1_772_323_200_000;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let points = points(1, &pod, &[], hour, &mut rng);
        assert!(
            points
                .iter()
                .all(|p| (hour..hour + HOUR_MS).contains(&p.time))
        );
        assert!((350..=360).contains(&points.len()), "{}", points.len());
        let mut per_span = std::collections::HashMap::new();
        for p in &points {
            *per_span.entry(p.time.div_euclid(SCRAPE_MS)).or_insert(0) += 1;
        }
        assert!(
            per_span.values().any(|&n| n == 2),
            "offset 9 s with jitter makes double spans"
        );
        assert!(per_span.len() < 360, "and empty ones");
        assert!(points.windows(2).all(|w| w[0].time < w[1].time));
    }

    #[test]
    fn deltas_follow_the_interval_and_scenarios() {
        use rand::SeedableRng;
        let pod = pod();
        let hour = 1_772_323_200_000;
        let plain = points(1, &pod, &[], hour, &mut ChaCha8Rng::seed_from_u64(1));
        let exfil = Injection::new(
            ScenarioKind::Exfiltration,
            hour..hour + HOUR_MS,
            &mut ChaCha8Rng::seed_from_u64(2),
        );
        let attacked = points(
            1,
            &pod,
            std::slice::from_ref(&exfil),
            hour,
            &mut ChaCha8Rng::seed_from_u64(1),
        );
        for (a, b) in plain.iter().zip(&attacked) {
            assert_eq!(a.time, b.time);
            assert_eq!(a.receive, b.receive);
            assert!((b.transmit / a.transmit - exfil.factor).abs() < 1e-9);
        }
    }
}
