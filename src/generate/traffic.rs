//! What each pod moves: scrape times with per-pod offset and jitter, per-interval byte deltas
//! with a daily cycle, log-normal noise and heavy tails, and the scenarios injected on top.

use std::ops::Range;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};

use super::HOUR_MS;
use super::scenario::ScenarioKind;
use super::topology::Pod;

pub const SCRAPE_MS: i64 = 10_000;
const JITTER_SIGMA_MS: f64 = 700.0;
const JITTER_LIMIT_MS: f64 = 2_500.0;
const MISSED_SCRAPE: f64 = 0.002;
/// The share of a heavy-tailed pod's points that spike.
const HEAVY_TAIL_SHARE: f64 = 0.03;
/// How far back a delta may reach over missed scrapes.
const MAX_GAP: i64 = 6;

/// One scenario's effect on one pod's traffic.
#[derive(Debug, Clone)]
pub struct Injection {
    pub kind: ScenarioKind,
    pub during: Range<i64>,
    /// What the pod's traffic is multiplied by (for beacons: the size of one beacon, in units of
    /// an interval's usual outbound bytes).
    pub factor: f64,
    /// For bursts: the seconds that carry the extra traffic.
    pub bursts: Vec<Range<i64>>,
    /// For beacons: the time between two.
    pub period_ms: i64,
}

impl Injection {
    pub fn new(kind: ScenarioKind, during: Range<i64>, rng: &mut ChaCha8Rng) -> Injection {
        let mut period_ms = 0;
        let (factor, bursts) = match kind {
            ScenarioKind::Exfiltration | ScenarioKind::NewPodExfiltration => {
                (rng.random_range(15.0..40.0), vec![])
            }
            ScenarioKind::SlowExfiltration => (rng.random_range(3.0..4.0), vec![]),
            ScenarioKind::JobExfiltration => (rng.random_range(10.0..20.0), vec![]),
            ScenarioKind::InboundFlood => (rng.random_range(20.0..60.0), vec![]),
            ScenarioKind::Beaconing => {
                period_ms = rng.random_range(50_000..65_000);
                (rng.random_range(8.0..20.0), vec![])
            }
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
            ScenarioKind::Surge => (rng.random_range(2.0..4.0), vec![]),
            ScenarioKind::Backup => (rng.random_range(6.0..10.0), vec![]),
            ScenarioKind::Refresh => (rng.random_range(3.0..5.0), vec![]),
            ScenarioKind::RatioFlip
            | ScenarioKind::ScaleOut
            | ScenarioKind::ScaleIn
            | ScenarioKind::Rollout
            | ScenarioKind::Drain
            | ScenarioKind::HeavyTail => (1.0, vec![]),
        };
        Injection {
            kind,
            during,
            factor,
            bursts,
            period_ms,
        }
    }

    /// An injection that multiplies both directions by `factor` (a scale event's load share).
    pub fn load(kind: ScenarioKind, during: Range<i64>, factor: f64) -> Injection {
        Injection {
            kind,
            during,
            factor,
            bursts: vec![],
            period_ms: 0,
        }
    }

    /// The (receive, transmit) bytes of the interval `(before, at]` with this scenario applied.
    fn apply(&self, before: i64, at: i64, receive: f64, transmit: f64) -> (f64, f64) {
        if self.kind == ScenarioKind::Beaconing {
            // Every beacon that starts in the interval adds its bytes to this scrape's delta.
            let beacons = |t: i64| {
                if t < self.during.start {
                    0
                } else {
                    (t.min(self.during.end - 1) - self.during.start) / self.period_ms + 1
                }
            };
            let count = (beacons(at) - beacons(before)) as f64;
            return (receive, transmit * (1.0 + self.factor * count));
        }
        if !self.during.contains(&at) {
            return (receive, transmit);
        }
        match self.kind {
            ScenarioKind::Exfiltration
            | ScenarioKind::SlowExfiltration
            | ScenarioKind::JobExfiltration
            | ScenarioKind::NewPodExfiltration
            | ScenarioKind::Backup => (receive, transmit * self.factor),
            ScenarioKind::InboundFlood | ScenarioKind::Refresh => (receive * self.factor, transmit),
            ScenarioKind::RatioFlip => (transmit, receive),
            ScenarioKind::Burst if self.bursts.iter().any(|b| b.contains(&at)) => {
                (receive, transmit * self.factor)
            }
            ScenarioKind::Surge | ScenarioKind::ScaleOut | ScenarioKind::ScaleIn => {
                (receive * self.factor, transmit * self.factor)
            }
            ScenarioKind::Burst
            | ScenarioKind::Beaconing
            | ScenarioKind::Rollout
            | ScenarioKind::Drain
            | ScenarioKind::HeavyTail => (receive, transmit),
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

/// A standard normal deviate from a uniform `p` in [0, 1): Acklam's rational approximation of the
/// inverse normal CDF (relative error below 1.2e-9), with no logarithm outside the 5 % tails.
fn standard_normal(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const TAIL: f64 = 0.02425;
    let p = p.clamp(f64::MIN_POSITIVE, 1.0 - f64::EPSILON);
    let tail = |q: f64| {
        let q = (-2.0 * q.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < TAIL {
        tail(p)
    } else if p > 1.0 - TAIL {
        -tail(1.0 - p)
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Steps of the daily cycle's sine table: one per 10 s of the day.
const SINE_STEPS: usize = 8_640;

/// `sin(2π · turns)` by linear interpolation in a table of one turn (error below 1e-7).
fn daily_sine(turns: f64) -> f64 {
    static TABLE: std::sync::LazyLock<Vec<f64>> = std::sync::LazyLock::new(|| {
        (0..=SINE_STEPS)
            .map(|i| (std::f64::consts::TAU * i as f64 / SINE_STEPS as f64).sin())
            .collect()
    });
    // Not `rem_euclid`: that is a libm call on baseline x86-64, and this runs once per point.
    let fraction = turns - turns as i64 as f64;
    let turn = if fraction < 0.0 {
        fraction + 1.0
    } else {
        fraction
    };
    let x = turn * SINE_STEPS as f64;
    let i = (x as usize).min(SINE_STEPS - 1);
    let (low, high) = (TABLE[i], TABLE[i + 1]);
    low + (x - i as f64) * (high - low)
}

/// `x.round()` (half away from zero) without the libm call that `round` is on baseline x86-64,
/// and without a branch on the fraction, which is as often above one half as below.
pub fn round(x: f64) -> f64 {
    const INTEGRAL: f64 = 4_503_599_627_370_496.0; // 2^52: every double this large is an integer
    if x.is_nan() || x.abs() >= INTEGRAL {
        return x;
    }
    // Exact below 2^52: the truncation, and the fraction it leaves.
    let truncated = x as i64 as f64;
    let away = f64::from(u8::from((x - truncated).abs() >= 0.5));
    // `copysign` keeps the sign of a negative value rounding to zero, as `round` does.
    (truncated + away.copysign(x)).copysign(x)
}

/// When scrape `k` of `pod` happened, or `None` when it was missed or the pod was not running.
/// Jitter never moves a scrape out of the hour of its nominal time.
pub fn scrape_time(seed: u64, pod: &Pod, k: i64) -> Option<i64> {
    if unit(seed, pod.id, k, 3) < MISSED_SCRAPE {
        return None;
    }
    let nominal = k * SCRAPE_MS + pod.offset_ms;
    let normal = standard_normal(unit(seed, pod.id, k, 1));
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
                    * daily_sine((day_hours - pod.profile.peak_hour + 6.0) / 24.0);
            let base = pod.scale * cycle * seconds;
            let (mut receive, mut transmit) = (
                pod.profile.receive_bps * base,
                pod.profile.transmit_bps * base,
            );
            for injection in injections {
                (receive, transmit) = injection.apply(before, at, receive, transmit);
            }
            let (mut receive, mut transmit) =
                (receive * noise.sample(rng), transmit * noise.sample(rng));
            if pod.profile.tail > 0.0 && rng.random::<f64>() < HEAVY_TAIL_SHARE {
                // A Pareto spike of shape `tail`, at most 50 times the usual.
                let spike = (1.0 - rng.random::<f64>())
                    .powf(-1.0 / pod.profile.tail)
                    .min(50.0);
                receive *= spike;
                transmit *= spike;
            }
            out.push(Point {
                time: at,
                receive,
                transmit,
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
    round(pod.profile.memory_bytes * pod.scale * rng.random_range(0.95..1.05))
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
                tail: 0.0,
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

    #[test]
    fn round_matches_the_standard_library_bit_for_bit() {
        let mut values = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            0.49999999999999994,
            -0.49999999999999994,
            4_503_599_627_370_495.5,
            4_503_599_627_370_497.0,
            1e300,
            -1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            0.3,
            -0.7,
        ];
        values.extend((0..100_000).map(|i| unit(7, 1, i, 0) * 1e7 - 3e6));
        values.extend((0..1000).map(|i| f64::from(i) / 4.0 - 100.0));
        for x in values {
            assert_eq!(round(x).to_bits(), x.round().to_bits(), "{x}");
        }
        assert!(round(f64::NAN).is_nan());
    }

    #[test]
    fn standard_normal_inverts_the_normal_cdf() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540_054),
            (0.025, -1.959_963_984_540_054),
            (0.841_344_746_068_542_9, 1.0),
            (0.001, -3.090_232_306_167_813_5),
            (0.999, 3.090_232_306_167_813_5),
        ] {
            let got = standard_normal(p);
            assert!(
                (got - z).abs() < 1e-8 * z.abs().max(1.0),
                "{p}: {got} vs {z}"
            );
        }
        assert!(standard_normal(0.0).is_finite() && standard_normal(0.0) < -8.0);
        let draws: Vec<f64> = (0..200_000)
            .map(|i| standard_normal(unit(3, 9, i, 1)))
            .collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let variance = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!(
            mean.abs() < 0.01 && (variance - 1.0).abs() < 0.02,
            "{mean} {variance}"
        );
    }

    #[test]
    fn daily_sine_follows_sin() {
        for i in 0..100_000 {
            let turns = unit(5, 5, i, 0) * 3.0 - 1.0;
            let want = (std::f64::consts::TAU * turns).sin();
            assert!((daily_sine(turns) - want).abs() < 1e-7, "{turns}");
        }
    }
}
