//! Prometheus text exposition from cAdvisor (`/metrics/cadvisor`): the pod network byte counters,
//! one series per pod and interface (the sandbox's row; per-container copies are dropped).

use std::collections::HashMap;
use std::sync::Arc;

use super::point::{Decoded, Kind, Point, Record, Reject, Series};
use super::{Context, NETWORK_IO_METRIC};
use crate::error::{Error, Result};

const FAMILIES: [(&str, &str); 2] = [
    ("container_network_receive_bytes_total", "receive"),
    ("container_network_transmit_bytes_total", "transmit"),
];

/// Direction, namespace, pod and interface: one network series of a pod.
type PodSeries = (&'static str, String, String, Option<String>);

/// One sample line: metric name, labels, value and optional timestamp (ms).
#[derive(Debug, PartialEq)]
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    value: f64,
    time: Option<i64>,
}

impl Sample<'_> {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub fn decode(input: &str, bytes: &[u8], context: &Context) -> Result<Decoded> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::input(input, format!("not UTF-8 text: {e}")))?;
    let mut decoded = Decoded::default();
    let name: Arc<str> = input.into();
    let (mut lines, mut parsed) = (0, 0);
    // The chosen point per pod series, and whether it is the sandbox's.
    let mut chosen: HashMap<PodSeries, (Point, bool)> = HashMap::new();
    let mut order = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let record = Record {
            input: name.clone(),
            line: index as u64 + 1,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        lines += 1;
        let sample = match parse_line(line) {
            Ok(sample) => sample,
            Err(reason) => {
                decoded
                    .rejects
                    .push(Reject::new(record, reason).with_text(line));
                continue;
            }
        };
        parsed += 1;
        let Some((_, direction)) = FAMILIES.iter().find(|(name, _)| *name == sample.name) else {
            decoded.ignored += 1;
            continue;
        };
        let pod = sample
            .label("pod")
            .or(sample.label("pod_name"))
            .unwrap_or("");
        if pod.is_empty() {
            // The root cgroup and processes outside any pod.
            decoded.ignored += 1;
            continue;
        }
        let Some(time) = sample.time.or(context.time.map(|t| t.timestamp_millis())) else {
            decoded.reject(record, "a sample without a timestamp, and no --time");
            continue;
        };
        let namespace = sample.label("namespace").unwrap_or("").to_string();
        let interface = sample.label("interface").map(str::to_string);
        let container = sample.label("container").or(sample.label("container_name"));
        let sandbox = matches!(container, None | Some("" | "POD"));
        let point = Point {
            series: Series {
                metric: NETWORK_IO_METRIC.to_string(),
                cluster: context.cluster.clone(),
                namespace: (!namespace.is_empty()).then(|| namespace.clone()),
                node: sample
                    .label("node")
                    .map(str::to_string)
                    .or_else(|| context.node.clone()),
                pod: Some(pod.to_string()),
                direction: Some(direction.to_string()),
                interface: interface.clone(),
                workload: None,
            },
            kind: Kind::Cumulative { start: None },
            time,
            value: sample.value,
            record,
        };
        // Every container of a pod shares the pod's network namespace, so cAdvisor may repeat
        // the pod's counters per container: keep the sandbox's row, else the first.
        let key = (*direction, namespace, pod.to_string(), interface);
        match chosen.get_mut(&key) {
            None => {
                order.push(key.clone());
                chosen.insert(key, (point, sandbox));
            }
            Some(existing) if sandbox && !existing.1 => *existing = (point, sandbox),
            Some(_) => decoded.ignored += 1,
        }
    }
    if lines > 0 && parsed == 0 {
        return Err(Error::input(
            input,
            "not Prometheus text exposition: no line parses as a sample",
        ));
    }
    decoded.points.extend(
        order
            .into_iter()
            .filter_map(|key| chosen.remove(&key).map(|(point, _)| point)),
    );
    Ok(decoded)
}

/// Parses `name{label="value",...} value [timestamp]`.
fn parse_line(line: &str) -> Result<Sample<'_>, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("a sample needs a value after the metric name")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        rest = body;
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=').ok_or("a label without '='")?;
            let label = rest[..eq].trim();
            rest = rest[eq + 1..]
                .trim_start()
                .strip_prefix('"')
                .ok_or("a label value must be quoted")?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err("an unterminated label value".into()),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        _ => return Err("a bad escape in a label value".into()),
                    },
                    Some((_, c)) => value.push(c),
                }
            };
            labels.push((label, value));
            rest = rest[end + 1..].trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("a sample without a value")?;
    let value = parse_value(value).ok_or_else(|| format!("bad sample value {value:?}"))?;
    let time = fields
        .next()
        .map(|t| t.parse::<i64>().map_err(|_| format!("bad timestamp {t:?}")))
        .transpose()?;
    if fields.next().is_some() {
        return Err("unexpected text after the timestamp".into());
    }
    Ok(Sample {
        name,
        labels,
        value,
        time,
    })
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_with_escapes_value_and_timestamp() {
        let sample = parse_line(r#"m_total{a="x\"y",b="1\\2\n",} 1.5e+03 1572450197572"#).unwrap();
        assert_eq!(sample.name, "m_total");
        assert_eq!(
            sample.labels,
            vec![("a", "x\"y".to_string()), ("b", "1\\2\n".to_string())]
        );
        assert_eq!(sample.value, 1500.0);
        assert_eq!(sample.time, Some(1572450197572));
        let bare = parse_line("up 1").unwrap();
        assert_eq!((bare.labels.len(), bare.value, bare.time), (0, 1.0, None));
        assert!(parse_value("NaN").unwrap().is_nan());
    }

    #[test]
    fn names_what_is_wrong_with_a_line() {
        assert!(
            parse_line("m{a=\"x} 1")
                .unwrap_err()
                .contains("unterminated")
        );
        assert!(parse_line("m{a=x} 1").unwrap_err().contains("quoted"));
        assert!(
            parse_line("m 1 2 3")
                .unwrap_err()
                .contains("after the timestamp")
        );
        assert!(
            parse_line("m one")
                .unwrap_err()
                .contains("bad sample value")
        );
        assert!(parse_line("m").unwrap_err().contains("needs a value"));
    }
}
