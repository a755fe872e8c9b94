//! An independent computation of the ESCU contract in plain Rust over the same rows: no SQL,
//! no DataFusion, straight from `escu-semantics.md`, to check iodrift's plans against.

#![allow(clippy::type_complexity)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, TimestampMillisecondType};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use iodrift_udfs::service_name;

/// One row of the store.
#[derive(Debug, Clone)]
pub struct Row {
    pub time: i64,
    pub metric: Option<String>,
    pub cluster: Option<String>,
    pub node: Option<String>,
    pub pod: Option<String>,
    pub direction: Option<String>,
    pub value: Option<f64>,
}

/// Every row of every Parquet file under `root`, read with the plain parquet reader.
pub fn read_store(root: &Path) -> Vec<Row> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                files.push(path);
            }
        }
    }
    let mut rows = Vec::new();
    for file in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let text = |name: &str| {
                let column = cast(batch.column_by_name(name).unwrap(), &DataType::Utf8).unwrap();
                let strings = column.as_string::<i32>().clone();
                (0..strings.len())
                    .map(|i| strings.is_valid(i).then(|| strings.value(i).to_string()))
                    .collect::<Vec<_>>()
            };
            let times = batch
                .column_by_name("time")
                .unwrap()
                .as_primitive::<TimestampMillisecondType>()
                .clone();
            let values = batch
                .column_by_name("value")
                .unwrap()
                .as_primitive::<Float64Type>()
                .clone();
            let (metric, cluster, node, pod, direction) = (
                text("metric"),
                text("cluster"),
                text("node"),
                text("pod"),
                text("direction"),
            );
            for i in 0..batch.num_rows() {
                rows.push(Row {
                    time: times.value(i),
                    metric: metric[i].clone(),
                    cluster: cluster[i].clone(),
                    node: node[i].clone(),
                    pod: pod[i].clone(),
                    direction: direction[i].clone(),
                    value: values.is_valid(i).then(|| values.value(i)),
                });
            }
        }
    }
    rows
}

/// Stage 1 and 2: (cluster, pod, node, direction, bucket ms) → (service, key, io).
#[derive(Debug, Clone)]
pub struct Span {
    pub cluster: String,
    pub pod: String,
    pub node: String,
    pub direction: String,
    pub bucket: i64,
    pub service: String,
    pub key: String,
    pub io: f64,
}

pub fn spans(rows: &[Row], earliest: i64, latest: i64) -> Vec<Span> {
    let mut groups: BTreeMap<(String, String, String, String, i64), (f64, u64)> = BTreeMap::new();
    for row in rows {
        if row.metric.as_deref() != Some("k8s.pod.network.io")
            || row.time < earliest
            || row.time >= latest
        {
            continue;
        }
        let (Some(cluster), Some(pod), Some(node), Some(direction), Some(value)) =
            (&row.cluster, &row.pod, &row.node, &row.direction, row.value)
        else {
            continue;
        };
        let bucket = row.time.div_euclid(10_000) * 10_000;
        let entry = groups
            .entry((
                cluster.clone(),
                pod.clone(),
                node.clone(),
                direction.clone(),
                bucket,
            ))
            .or_insert((0.0, 0));
        entry.0 += value;
        entry.1 += 1;
    }
    groups
        .into_iter()
        .map(|((cluster, pod, node, direction, bucket), (sum, n))| {
            let service = service_name(&pod).into_owned();
            Span {
                key: format!("{cluster}:{service}"),
                cluster,
                pod,
                node,
                direction,
                bucket,
                service,
                io: sum / n as f64,
            }
        })
        .collect()
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn sample_stdev(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let m = mean(values)?;
    let squares: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    Some((squares / (values.len() - 1) as f64).sqrt())
}

/// A baseline row: key → (avg_a, avg_b, stdev_a, stdev_b, count, last_seen) in lookup order.
pub type BaselineRows = BTreeMap<String, ([Option<f64>; 4], i64, i64)>;

pub fn network_io_baseline(spans: &[Span]) -> BaselineRows {
    let mut by_key: BTreeMap<&str, (Vec<f64>, Vec<f64>, i64, i64)> = BTreeMap::new();
    for span in spans {
        let entry = by_key
            .entry(&span.key)
            .or_insert((vec![], vec![], 0, i64::MIN));
        match span.direction.as_str() {
            "transmit" => entry.0.push(span.io),
            "receive" => entry.1.push(span.io),
            _ => {}
        }
        entry.2 += 1;
        entry.3 = entry.3.max(span.bucket);
    }
    by_key
        .into_iter()
        .map(|(key, (out, inb, count, last))| {
            let stats = [
                mean(&out),
                mean(&inb),
                sample_stdev(&out),
                sample_stdev(&inb),
            ];
            (key.to_string(), (stats, count, last / 1000))
        })
        .collect()
}

fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> Option<f64> {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d != 0.0 => Some(n / d),
        _ => None,
    }
}

/// Means of io per direction over a group of spans: (outbound, inbound).
fn directions<'a>(spans: impl Iterator<Item = &'a Span>) -> (Option<f64>, Option<f64>) {
    let (mut out, mut inb) = (vec![], vec![]);
    for span in spans {
        match span.direction.as_str() {
            "transmit" => out.push(span.io),
            "receive" => inb.push(span.io),
            _ => {}
        }
    }
    (mean(&out), mean(&inb))
}

pub fn network_io_ratio_baseline(spans: &[Span]) -> BaselineRows {
    let mut buckets: BTreeMap<(&str, i64), Vec<&Span>> = BTreeMap::new();
    for span in spans {
        buckets
            .entry((&span.key, span.bucket))
            .or_default()
            .push(span);
    }
    let mut by_key: BTreeMap<&str, (Vec<f64>, Vec<f64>, i64, i64)> = BTreeMap::new();
    for ((key, bucket), group) in buckets {
        let (out, inb) = directions(group.into_iter());
        let entry = by_key.entry(key).or_insert((vec![], vec![], 0, i64::MIN));
        if let Some(r) = ratio(inb, out) {
            entry.0.push(r);
        }
        if let Some(r) = ratio(out, inb) {
            entry.1.push(r);
        }
        entry.2 += 1;
        entry.3 = entry.3.max(bucket);
    }
    by_key
        .into_iter()
        .map(|(key, (io, oi, count, last))| {
            let stats = [mean(&io), mean(&oi), sample_stdev(&io), sample_stdev(&oi)];
            (key.to_string(), (stats, count, last / 1000))
        })
        .collect()
}

/// A finding: (rule, cluster, host, pod, service) → (count, sorted distinct texts).
pub type Findings = BTreeMap<(String, String, String, String, String), (i64, Vec<String>)>;

/// Stages 3 to 6 of both detections against lookups given as [`BaselineRows`].
pub fn findings(
    spans: &[Span],
    io_baseline: &BaselineRows,
    ratio_baseline: &BaselineRows,
) -> Findings {
    let mut per_pod: BTreeMap<(&str, &str, &str, &str, &str, i64), Vec<&Span>> = BTreeMap::new();
    for span in spans {
        per_pod
            .entry((
                &span.cluster,
                &span.node,
                &span.pod,
                &span.service,
                &span.key,
                span.bucket,
            ))
            .or_default()
            .push(span);
    }
    let mut anomalous: BTreeMap<(String, String, String, String, String), (i64, BTreeSet<String>)> =
        BTreeMap::new();
    for ((cluster, node, pod, service, key, _), group) in per_pod {
        let (out, inb) = directions(group.into_iter());
        let rules = [
            (
                "network-io",
                "higher than average",
                io_baseline.get(key),
                [
                    ("inbound_network_io", inb, 1, 3),
                    ("outbound_network_io", out, 0, 2),
                ],
            ),
            (
                "network-io-ratio",
                "ratio higher than average",
                ratio_baseline.get(key),
                [
                    ("inbound:outbound", ratio(inb, out), 0, 2),
                    ("outbound:inbound", ratio(out, inb), 1, 3),
                ],
            ),
        ];
        for (rule, phrase, baseline, measures) in rules {
            let Some((stats, _, _)) = baseline else {
                continue;
            };
            let measures: Vec<(&str, Option<f64>, Option<f64>, Option<f64>)> = measures
                .iter()
                .map(|(name, value, avg, stdev)| (*name, *value, stats[*avg], stats[*stdev]))
                .collect();
            if let Some(text) = text(phrase, &measures).filter(|t| !t.is_empty()) {
                let entry = anomalous
                    .entry((
                        rule.into(),
                        cluster.into(),
                        node.into(),
                        pod.into(),
                        service.into(),
                    ))
                    .or_default();
                entry.0 += 1;
                entry.1.insert(text);
            }
        }
    }
    anomalous
        .into_iter()
        .filter(|(_, (count, _))| *count > 5)
        .map(|(k, (count, texts))| (k, (count, texts.into_iter().collect())))
        .collect()
}

/// Reads a lookup CSV as written by `iodrift baseline` into [`BaselineRows`].
pub fn read_lookup(path: &Path) -> BaselineRows {
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            let stat = |i: usize| (!r[i].is_empty()).then(|| r[i].parse::<f64>().unwrap());
            (
                r[0].to_string(),
                (
                    [stat(1), stat(2), stat(3), stat(4)],
                    r[5].parse().unwrap(),
                    r[6].parse().unwrap(),
                ),
            )
        })
        .collect()
}

/// Stage 5 written out again from the contract, measures already in lexical order.
fn text(
    phrase: &str,
    measures: &[(&str, Option<f64>, Option<f64>, Option<f64>)],
) -> Option<String> {
    let mut text = String::new();
    for (m, value, avg, stdev) in measures {
        let (Some(v), Some(a), Some(s)) = (value, avg, stdev) else {
            continue;
        };
        if *v > *a + 4.0 * *s {
            if *s == 0.0 {
                return None;
            }
            let z = round2((*v - *a) / *s);
            text += &format!(
                "{m} {phrase} by {z} Standard Deviations. {m}={v} avg_{m}={a} 'stdev_{m}'={s}, "
            );
        }
    }
    Some(text.strip_suffix(", ").map(str::to_string).unwrap_or(text))
}

/// Half away from zero at two decimals, on the exact decimal expansion of the f64 (which
/// `{:.80}` prints for values of this size), then read back as the nearest f64.
fn round2(x: f64) -> f64 {
    let exact = format!("{:.80}", x.abs());
    let (int, frac) = exact.split_once('.').unwrap();
    let kept: String = format!("{int}{}", &frac[..2]);
    let mut units: u128 = kept.parse().unwrap();
    if frac.as_bytes()[2] >= b'5' {
        units += 1;
    }
    let rounded: f64 = format!("{}.{:02}", units / 100, units % 100)
        .parse()
        .unwrap();
    rounded.copysign(x)
}

#[test]
fn reference_rounding_is_half_away_from_zero() {
    assert_eq!(round2(4.125), 4.13);
    assert_eq!(round2(1.005), 1.0);
    assert_eq!(round2(4.355), 4.36);
    assert_eq!(round2(28851.81), 28851.81);
}
