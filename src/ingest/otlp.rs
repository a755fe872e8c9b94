//! OTLP metrics (`ExportMetricsServiceRequest`) as JSON lines, one JSON document, or protobuf
//! (one message, or the file exporter's length-prefixed stream) decoded into points.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, NumberDataPoint, ResourceMetrics, metric, number_data_point,
};
use prost::Message;

use super::Context;
use super::nesting::nests_deeper_than;
use super::point::{Decoded, Kind, Point, Record, Series};
use crate::error::{Error, Result};

/// The JSON form of a request. `resourceMetrics` is required, so that a JSON file of another
/// kind is not read as an empty request.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonRequest {
    resource_metrics: Vec<ResourceMetrics>,
}

/// Decodes OTLP/JSON: JSON lines (the Collector's file exporter), or one document.
pub fn decode_json(input: &str, bytes: &[u8], context: &Context) -> Result<Decoded> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::input(input, format!("not UTF-8 text: {e}")))?;
    let mut decoded = Decoded::default();
    let name: Arc<str> = input.into();
    if let Ok(request) = serde_json::from_str::<JsonRequest>(text) {
        points(&name, 1, request.resource_metrics, context, &mut decoded);
        return Ok(decoded);
    }
    let mut parsed = 0;
    let mut first_error = None;
    for (index, line) in text.lines().enumerate() {
        let record = Record {
            input: name.clone(),
            line: index as u64 + 1,
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<JsonRequest>(line) {
            Ok(request) => {
                parsed += 1;
                points(
                    &name,
                    record.line,
                    request.resource_metrics,
                    context,
                    &mut decoded,
                );
            }
            Err(e) => {
                let reason = format!("not an OTLP/JSON ExportMetricsServiceRequest: {e}");
                first_error.get_or_insert_with(|| format!("line {}: {reason}", record.line));
                decoded
                    .rejects
                    .push(super::Reject::new(record, reason).with_text(line));
            }
        }
    }
    match first_error {
        Some(error) if parsed == 0 => Err(Error::input(
            input,
            format!("not OTLP/JSON metrics ({error})"),
        )),
        _ => Ok(decoded),
    }
}

/// Decodes OTLP protobuf: a stream of messages each prefixed by its length (4 bytes, big
/// endian), as the file exporter writes them, or one bare message (awss3exporter objects).
pub fn decode_proto(input: &str, bytes: &[u8], context: &Context) -> Result<Decoded> {
    let not_proto = |e: prost::DecodeError| {
        Error::input(
            input,
            format!("not an OTLP protobuf ExportMetricsServiceRequest: {e}"),
        )
    };
    let mut decoded = Decoded::default();
    let name: Arc<str> = input.into();
    let messages = match length_prefixed(bytes) {
        Some(frames) => frames,
        None => vec![bytes],
    };
    for (index, message) in messages.into_iter().enumerate() {
        if nests_deeper_than(message, MAX_NESTING) {
            return Err(Error::input(
                input,
                format!(
                    "message {}: protobuf fields nest deeper than {MAX_NESTING} levels",
                    index + 1
                ),
            ));
        }
        let request = ExportMetricsServiceRequest::decode(message).map_err(not_proto)?;
        points(
            &name,
            index as u64 + 1,
            request.resource_metrics,
            context,
            &mut decoded,
        );
    }
    Ok(decoded)
}

/// How deep an OTLP message's fields may nest: prost's default limit, off in this build
/// (Ballista's plans need more). OTLP nests about 8 levels; only `AnyValue` arrays and maps go
/// deeper, and no exporter nests those by the hundred. Unbounded, prost's recursion overflows
/// the stack on a few kilobytes of crafted input.
const MAX_NESTING: usize = 100;

/// Splits `bytes` into length-prefixed frames when the lengths chain exactly to its end.
fn length_prefixed(bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut frames = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (prefix, tail) = rest.split_first_chunk::<4>()?;
        let length = u32::from_be_bytes(*prefix) as usize;
        if length > tail.len() {
            return None;
        }
        let (frame, tail) = tail.split_at(length);
        frames.push(frame);
        rest = tail;
    }
    (!frames.is_empty()).then_some(frames)
}

/// The resource attributes that name a pod's owning workload (the Collector's
/// `k8sattributes` processor), in order of preference: a CronJob's Job pods carry both the
/// CronJob's name, stable across runs, and the Job's, new each run.
const OWNER_ATTRIBUTES: [&str; 5] = [
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
];

fn points(
    input: &Arc<str>,
    line: u64,
    resources: Vec<ResourceMetrics>,
    context: &Context,
    decoded: &mut Decoded,
) {
    let record = || Record {
        input: input.clone(),
        line,
    };
    for resource in resources {
        let attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
        let resource_label = |key: &str| string_attribute(&attributes, key);
        let cluster = resource_label("k8s.cluster.name").or_else(|| context.cluster.clone());
        let node = resource_label("k8s.node.name").or_else(|| context.node.clone());
        let namespace = resource_label("k8s.namespace.name");
        let pod = resource_label("k8s.pod.name");
        let workload = OWNER_ATTRIBUTES.iter().find_map(|key| resource_label(key));
        for metric in resource.scope_metrics.into_iter().flat_map(|s| s.metrics) {
            let (kind, data_points) = match metric.data {
                Some(metric::Data::Gauge(gauge)) => (Kind::Gauge, gauge.data_points),
                Some(metric::Data::Sum(sum)) => {
                    let kind = match (
                        AggregationTemporality::try_from(sum.aggregation_temporality),
                        sum.is_monotonic,
                    ) {
                        (Ok(AggregationTemporality::Delta), _) => Some(Kind::Delta),
                        // A cumulative sum that may fall is a level (an up-down counter).
                        (Ok(AggregationTemporality::Cumulative), false) => Some(Kind::Gauge),
                        (Ok(AggregationTemporality::Cumulative), true) => {
                            Some(Kind::Cumulative { start: None })
                        }
                        _ => None,
                    };
                    let Some(kind) = kind else {
                        decoded.reject(
                            record(),
                            format!(
                                "metric {}: unknown aggregation temporality {}",
                                metric.name, sum.aggregation_temporality
                            ),
                        );
                        continue;
                    };
                    (kind, sum.data_points)
                }
                Some(
                    metric::Data::Histogram(_)
                    | metric::Data::ExponentialHistogram(_)
                    | metric::Data::Summary(_),
                ) => {
                    decoded.ignored += 1;
                    continue;
                }
                None => {
                    decoded.reject(
                        record(),
                        format!("metric {}: unknown metric type (no data)", metric.name),
                    );
                    continue;
                }
            };
            for point in data_points {
                let Some(value) = number(&point) else {
                    decoded.reject(
                        record(),
                        format!("metric {}: a data point without a value", metric.name),
                    );
                    continue;
                };
                if point.time_unix_nano == 0 {
                    decoded.reject(
                        record(),
                        format!("metric {}: a data point without a time", metric.name),
                    );
                    continue;
                }
                let kind = match kind {
                    Kind::Cumulative { .. } => Kind::Cumulative {
                        start: (point.start_time_unix_nano != 0)
                            .then(|| nanos_to_ms(point.start_time_unix_nano)),
                    },
                    other => other,
                };
                decoded.points.push(Point {
                    series: Series {
                        metric: metric.name.clone(),
                        cluster: cluster.clone(),
                        namespace: namespace.clone(),
                        node: node.clone(),
                        pod: pod.clone(),
                        direction: string_attribute(&point.attributes, "direction"),
                        interface: string_attribute(&point.attributes, "interface"),
                        workload: workload.clone(),
                    },
                    kind,
                    time: nanos_to_ms(point.time_unix_nano),
                    value,
                    record: record(),
                });
            }
        }
    }
}

fn number(point: &NumberDataPoint) -> Option<f64> {
    match point.value? {
        number_data_point::Value::AsDouble(v) => Some(v),
        number_data_point::Value::AsInt(v) => Some(v as f64),
    }
}

fn nanos_to_ms(nanos: u64) -> i64 {
    (nanos / 1_000_000) as i64
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|a| a.key == key)?.value.as_ref()?;
    match value {
        AnyValue {
            value: Some(any_value::Value::StringValue(s)),
        } => Some(s.clone()),
        AnyValue {
            value: Some(any_value::Value::IntValue(i)),
        } => Some(i.to_string()),
        _ => None,
    }
}
