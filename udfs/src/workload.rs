//! `k8s_workload(pod, node)`: the workload that owns a pod, from Kubernetes' naming rules.
//! Hand-written: no crate knows how controllers name pods; the rules are those of kube's source.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// The SQL name of the workload UDF.
pub const K8S_WORKLOAD_UDF_NAME: &str = "k8s_workload";

/// `rand.SafeEncodeString`'s alphabet: generated suffixes and pod-template hashes use it.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn is_generated_suffix(word: &str) -> bool {
    word.len() == 5 && word.bytes().all(|b| SAFE_ALPHABET.contains(&b))
}

/// A ReplicaSet's pod-template hash (safe-encoded decimal digits, hex in old releases) or a
/// CronJob's scheduled minute: 1 to 10 characters of either alphabet with at least one digit.
fn is_template_hash(word: &str) -> bool {
    (1..=10).contains(&word.len())
        && word
            .bytes()
            .all(|b| SAFE_ALPHABET.contains(&b) || b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && word.bytes().any(|b| b.is_ascii_digit())
}

/// `names.SimpleNameGenerator` cuts a generated name's base to 58 characters (63, a DNS label,
/// less the suffix): a long owner's pods lose the end of their hash, or of the owner's name.
const MAX_GENERATED_BASE: usize = 58;

/// The base of a generated name that was cut to fit: 63 characters, a suffix after a base
/// that does not end at a `-`.
fn truncated_base(pod: &str) -> Option<&str> {
    let (base, suffix) = (
        pod.get(..MAX_GENERATED_BASE)?,
        pod.get(MAX_GENERATED_BASE..)?,
    );
    (is_generated_suffix(suffix) && !base.ends_with('-')).then_some(base)
}

fn is_ordinal(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit())
}

/// The last `-`-separated word of `name`, and what is before it.
fn split_last(name: &str) -> Option<(&str, &str)> {
    name.rsplit_once('-').filter(|(head, _)| !head.is_empty())
}

/// The owning workload of `pod` on `node`:
/// - a static (mirror) pod is named `<name>-<node>`: `kube-proxy-gke-pool-1a2b` → `kube-proxy`;
/// - a generated name ends in 5 safe-alphabet characters, after a ReplicaSet's pod-template hash
///   (Deployment) or a Job's scheduled minute (CronJob), both dropped: `web-7d9f5b8c4d-x2kqp`,
///   `fluent-bit-x2kqp` and `db-backup-29538720-x2kqp` → `web`, `fluent-bit`, `db-backup`;
/// - a generated name cut to 63 characters drops the cut word, a hash's head or a part of a long
///   owner's name, so that every pod of the owner names it alike;
/// - a StatefulSet pod ends in its ordinal: `postgres-0` → `postgres`;
/// - anything else is its own workload. A workload is never empty.
pub fn workload_name<'a>(pod: &'a str, node: &str) -> &'a str {
    if !node.is_empty()
        && let Some(head) = pod.strip_suffix(node).and_then(|h| h.strip_suffix('-'))
        && !head.is_empty()
    {
        return head;
    }
    if let Some(base) = truncated_base(pod) {
        return split_last(base).map_or(base, |(owner, _)| owner);
    }
    match split_last(pod) {
        Some((head, last)) if is_generated_suffix(last) => match split_last(head) {
            Some((owner, hash)) if is_template_hash(hash) => owner,
            _ => head,
        },
        Some((head, last)) if is_ordinal(last) => head,
        _ => pod,
    }
}

/// `k8s_workload(pod, node)`: strings of any encoding in, Utf8 out; each distinct (pod, node)
/// of a batch is named once.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct K8sWorkload {
    signature: Signature,
}

impl K8sWorkload {
    pub fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for K8sWorkload {
    fn default() -> Self {
        Self::new()
    }
}

fn is_text(data_type: &DataType) -> bool {
    match data_type {
        DataType::Null | DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, value) => is_text(value),
        _ => false,
    }
}

impl ScalarUDFImpl for K8sWorkload {
    fn name(&self) -> &str {
        K8S_WORKLOAD_UDF_NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [pod, node] if is_text(pod) && is_text(node) => Ok(arg_types.to_vec()),
            [_, _] => plan_err!(
                "{K8S_WORKLOAD_UDF_NAME} takes a pod name and a node name, got {arg_types:?}"
            ),
            _ => plan_err!(
                "{K8S_WORKLOAD_UDF_NAME} takes two arguments (pod, node), got {}",
                arg_types.len()
            ),
        }
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [pod, node] = args.args.as_slice() else {
            return exec_err!("{K8S_WORKLOAD_UDF_NAME} takes two arguments (pod, node)");
        };
        let scalar = matches!(
            (pod, node),
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_))
        );
        let rows = if scalar { 1 } else { args.number_rows };
        let as_text = |value: &ColumnarValue| -> Result<ArrayRef> {
            Ok(cast(&value.to_array(rows)?, &DataType::Utf8)?)
        };
        let (pods, nodes) = (as_text(pod)?, as_text(node)?);
        let (pods, nodes) = (pods.as_string::<i32>(), nodes.as_string::<i32>());
        let mut named: HashMap<(&str, &str), usize> = HashMap::new();
        let mut workloads: Vec<&str> = Vec::new();
        let result: StringArray = (0..rows)
            .map(|row| {
                if pods.is_null(row) {
                    return None;
                }
                let pod = pods.value(row);
                let node = if nodes.is_null(row) {
                    ""
                } else {
                    nodes.value(row)
                };
                let index = *named.entry((pod, node)).or_insert_with(|| {
                    workloads.push(workload_name(pod, node));
                    workloads.len() - 1
                });
                Some(workloads[index])
            })
            .collect();
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &result, 0,
            )?));
        }
        Ok(ColumnarValue::Array(Arc::new(result)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_name_their_pods() {
        assert_eq!(workload_name("web-7d9f5b8c4d-x2kqp", "n1"), "web");
        assert_eq!(workload_name("cart-d89bdc7-q4bnq", "n1"), "cart");
        assert_eq!(workload_name("coredns-5644d7b6d9-9msql", "n1"), "coredns");
        assert_eq!(workload_name("fluent-bit-bz4gq", "n1"), "fluent-bit");
        assert_eq!(workload_name("pdcsi-node-x7k2p", "n1"), "pdcsi-node");
        assert_eq!(workload_name("db-backup-29538720-x7k2p", "n1"), "db-backup");
        assert_eq!(workload_name("postgres-0", "n1"), "postgres");
        assert_eq!(workload_name("kafka-12", "n1"), "kafka");
        assert_eq!(
            workload_name("frontend-2-7d9f5b8c4d-x2kqp", "n"),
            "frontend-2"
        );
    }

    #[test]
    fn names_cut_to_63_characters_keep_their_owner() {
        let owner = "customer-notification-preferences-reconciler-worker";
        // The ReplicaSet's hash cut after 6 characters, then the 5-character suffix.
        assert_eq!(workload_name(&format!("{owner}-6f9dfc29vrv"), "n"), owner);
        assert_eq!(workload_name(&format!("{owner}-89fb7bmt792"), "n"), owner);
        // A base of exactly 58 characters ending at its `-` was not cut.
        let exact = format!("{}-7d9f5b8c4d-x2kqp", "a".repeat(46));
        assert_eq!(exact.len(), 63);
        assert_eq!(workload_name(&exact, "n"), "a".repeat(46));
        // A DaemonSet whose own name is longer than the base: its pods share the cut name.
        let long = format!("{}-agent-collector", "metrics".repeat(7));
        let (a, b) = (
            format!("{}x2kqp", &long[..58]),
            format!("{}b7zz4", &long[..58]),
        );
        assert_eq!(workload_name(&a, "n"), workload_name(&b, "n"));
        // A multi-byte character where the cut would fall is not a generated name.
        let odd = format!("{}é{}", "a".repeat(57), "bcdf");
        assert_eq!(workload_name(&odd, "n"), odd);
    }

    #[test]
    fn static_pods_are_named_after_their_node() {
        let node = "gke-prod-eu-1-default-pool-1bbce95d-vwd7";
        assert_eq!(
            workload_name(&format!("kube-proxy-{node}"), node),
            "kube-proxy"
        );
        assert_eq!(
            workload_name("kube-apiserver-kind-control-plane", "kind-control-plane"),
            "kube-apiserver"
        );
    }

    #[test]
    fn other_names_are_their_own_workload() {
        assert_eq!(workload_name("nginx", "n1"), "nginx");
        assert_eq!(workload_name("nginx-proxy", "n1"), "nginx-proxy");
        assert_eq!(workload_name("-x2kqp", "n1"), "-x2kqp");
        assert_eq!(workload_name("", ""), "");
        assert_eq!(workload_name("n1", "n1"), "n1");
        // Vowels are never in a generated suffix.
        assert_eq!(workload_name("web-abcde", "n1"), "web-abcde");
    }
}
