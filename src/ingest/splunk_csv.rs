//! A CSV export of Splunk `mstats` results (`_time,k8s.cluster.name,k8s.pod.name,k8s.node.name,
//! direction,io`): values that are already bytes per interval, stored as deltas.

use chrono::DateTime;
use std::sync::Arc;

use super::point::{Decoded, Kind, Point, Record, Reject, Series};
use super::{Context, NETWORK_IO_METRIC};
use crate::error::{Error, Result};

const COLUMNS: [&str; 6] = [
    "_time",
    "k8s.cluster.name",
    "k8s.pod.name",
    "k8s.node.name",
    "direction",
    "io",
];

pub fn decode(input: &str, bytes: &[u8], context: &Context) -> Result<Decoded> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| Error::input(input, format!("not CSV: {e}")))?
        .clone();
    let position = |name: &str| header.iter().position(|h| h.trim() == name);
    let mut index = [0; COLUMNS.len()];
    for (slot, name) in index.iter_mut().zip(COLUMNS) {
        *slot = position(name).ok_or_else(|| {
            Error::input(
                input,
                format!(
                    "not a Splunk mstats export: no {name:?} column (expected {})",
                    COLUMNS.join(",")
                ),
            )
        })?;
    }
    let namespace = position("k8s.namespace.name");
    let [time_at, cluster_at, pod_at, node_at, direction_at, io_at] = index;
    let mut decoded = Decoded::default();
    let name: Arc<str> = input.into();
    for (row, result) in reader.records().enumerate() {
        // Line 1 is the header.
        let record = Record {
            input: name.clone(),
            line: row as u64 + 2,
        };
        let fields = match result {
            Ok(fields) if fields.len() == header.len() => fields,
            Ok(fields) => {
                let reason = format!("{} fields, the header has {}", fields.len(), header.len());
                let text = fields.iter().collect::<Vec<_>>().join(",");
                decoded
                    .rejects
                    .push(Reject::new(record, reason).with_text(&text));
                continue;
            }
            Err(e) => {
                decoded.reject(record, format!("malformed CSV: {e}"));
                continue;
            }
        };
        let field = |at: usize| Some(fields[at].trim()).filter(|v| !v.is_empty());
        let Some(time) = field(time_at).and_then(parse_time) else {
            let reason = format!(
                "bad _time {:?}: epoch seconds or RFC 3339",
                &fields[time_at]
            );
            decoded.reject(record, reason);
            continue;
        };
        let Some(value) = field(io_at).and_then(|v| v.parse::<f64>().ok()) else {
            decoded.reject(record, format!("bad io {:?}", &fields[io_at]));
            continue;
        };
        decoded.points.push(Point {
            series: Series {
                metric: NETWORK_IO_METRIC.to_string(),
                cluster: field(cluster_at)
                    .map(str::to_string)
                    .or_else(|| context.cluster.clone()),
                namespace: namespace.and_then(field).map(str::to_string),
                node: field(node_at)
                    .map(str::to_string)
                    .or_else(|| context.node.clone()),
                pod: field(pod_at).map(str::to_string),
                direction: field(direction_at).map(str::to_string),
                interface: None,
                workload: None,
            },
            kind: Kind::Delta,
            time,
            value,
            record,
        });
    }
    Ok(decoded)
}

/// `_time` as Splunk writes it: epoch seconds (with a fraction) or an ISO 8601 time.
fn parse_time(text: &str) -> Option<i64> {
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds
            .is_finite()
            .then(|| (seconds * 1000.0).round() as i64);
    }
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%:z"))
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f %z"))
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn reads_splunk_times() {
        assert_eq!(parse_time("1700000010"), Some(1_700_000_010_000));
        assert_eq!(parse_time("1700000010.500"), Some(1_700_000_010_500));
        assert_eq!(
            parse_time("2023-11-14T22:13:30.000+00:00"),
            Some(1_700_000_010_000)
        );
        assert_eq!(parse_time("yesterday"), None);
    }
}
