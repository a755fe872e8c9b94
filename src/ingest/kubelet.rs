//! The kubelet Summary API (`/stats/summary`) as the kubeletstats receiver reads it: each pod's
//! cumulative `rxBytes`/`txBytes` per network interface become counter points.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::sync::Arc;

use super::point::{Decoded, Kind, Point, Record, Series};
use super::{Context, NETWORK_IO_METRIC};
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct Summary {
    node: Node,
    pods: Vec<Pod>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Node {
    node_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pod {
    pod_ref: PodRef,
    network: Option<Network>,
}

#[derive(Deserialize)]
struct PodRef {
    name: String,
    namespace: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Network {
    time: Option<DateTime<Utc>>,
    #[serde(flatten)]
    default: Interface,
    #[serde(default)]
    interfaces: Vec<Interface>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Interface {
    name: Option<String>,
    rx_bytes: Option<f64>,
    tx_bytes: Option<f64>,
}

pub fn decode(input: &str, bytes: &[u8], context: &Context) -> Result<Decoded> {
    let summary: Summary = serde_json::from_slice(bytes)
        .map_err(|e| Error::input(input, format!("not a kubelet /stats/summary document: {e}")))?;
    let mut decoded = Decoded::default();
    let name: Arc<str> = input.into();
    for (index, pod) in summary.pods.into_iter().enumerate() {
        let record = Record {
            input: name.clone(),
            line: index as u64 + 1,
        };
        let Some(network) = pod.network else {
            continue;
        };
        let Some(time) = network.time.or(context.time) else {
            decoded.reject(
                record,
                format!(
                    "pod {}: network stats without a time, and no --time",
                    pod.pod_ref.name
                ),
            );
            continue;
        };
        // The interface list when the kubelet gives one (1.18 and later), else its default.
        let interfaces = if network.interfaces.is_empty() {
            vec![network.default]
        } else {
            network.interfaces
        };
        for interface in interfaces {
            for (direction, bytes) in [
                ("receive", interface.rx_bytes),
                ("transmit", interface.tx_bytes),
            ] {
                let Some(value) = bytes else { continue };
                decoded.points.push(Point {
                    series: Series {
                        metric: NETWORK_IO_METRIC.to_string(),
                        cluster: context.cluster.clone(),
                        namespace: Some(pod.pod_ref.namespace.clone()),
                        node: Some(summary.node.node_name.clone()),
                        pod: Some(pod.pod_ref.name.clone()),
                        direction: Some(direction.to_string()),
                        interface: interface.name.clone(),
                        workload: None,
                    },
                    kind: Kind::Cumulative { start: None },
                    time: time.timestamp_millis(),
                    value,
                    record: record.clone(),
                });
            }
        }
    }
    Ok(decoded)
}
