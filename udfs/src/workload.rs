//! `k8s_workload(pod, node)`: the workload that owns a pod, from Kubernetes' naming rules.
//! Hand-written: no crate knows how controllers name pods; the rules are those of kube's source.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Int32Builder, StringArray, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int32Type};
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

/// `k8s_workload(pod, node)`: strings of any encoding in, a dictionary of workload names out;
/// each distinct (pod, node) of a batch is named once, and a run of rows of one pod (the
/// store's order) is looked up once.
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

/// A string column as its distinct values and, per row, the index of its value (None: null).
/// A dictionary's values are its own; a plain column's rows are numbered by first occurrence.
struct Names {
    values: StringArray,
    rows: Vec<Option<usize>>,
}

impl Names {
    fn of(array: &ArrayRef) -> Result<Names> {
        if let Some(dictionary) = array.as_any_dictionary_opt() {
            let values = cast(dictionary.values(), &DataType::Utf8)?
                .as_string::<i32>()
                .clone();
            let keys = dictionary.normalized_keys();
            let rows = (0..array.len())
                .map(|row| {
                    let key = keys[row];
                    (array.is_valid(row) && values.is_valid(key)).then_some(key)
                })
                .collect();
            return Ok(Names { values, rows });
        }
        let values = cast(array, &DataType::Utf8)?.as_string::<i32>().clone();
        let mut first: HashMap<&str, usize> = HashMap::new();
        let rows = (0..values.len())
            .map(|row| {
                values
                    .is_valid(row)
                    .then(|| *first.entry(values.value(row)).or_insert(row))
            })
            .collect();
        Ok(Names { values, rows })
    }

    fn value(&self, index: usize) -> &str {
        self.values.value(index)
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
        Ok(workload_type())
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
        let (pods, nodes) = (
            Names::of(&pod.to_array(rows)?)?,
            Names::of(&node.to_array(rows)?)?,
        );
        let mut named: HashMap<(usize, Option<usize>), i32> = HashMap::new();
        let mut index_of: HashMap<&str, i32> = HashMap::new();
        let mut workloads = StringBuilder::new();
        let mut previous: Option<((usize, Option<usize>), i32)> = None;
        let mut keys = Int32Builder::with_capacity(rows);
        for row in 0..rows {
            let Some(pod) = pods.rows[row] else {
                keys.append_null();
                continue;
            };
            let pair = (pod, nodes.rows[row]);
            let key = match previous {
                Some((last, key)) if last == pair => key,
                _ => match named.get(&pair) {
                    Some(&key) => key,
                    None => {
                        let node = pair.1.map_or("", |n| nodes.value(n));
                        let workload = workload_name(pods.value(pod), node);
                        let key = match index_of.get(workload) {
                            Some(&key) => key,
                            None => {
                                let Ok(key) = i32::try_from(index_of.len()) else {
                                    return exec_err!(
                                        "{K8S_WORKLOAD_UDF_NAME}: more than 2^31 workloads in one batch"
                                    );
                                };
                                workloads.append_value(workload);
                                index_of.insert(workload, key);
                                key
                            }
                        };
                        named.insert(pair, key);
                        key
                    }
                },
            };
            previous = Some((pair, key));
            keys.append_value(key);
        }
        let result =
            DictionaryArray::<Int32Type>::try_new(keys.finish(), Arc::new(workloads.finish()))?;
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &result, 0,
            )?));
        }
        Ok(ColumnarValue::Array(Arc::new(result)))
    }
}

/// What `k8s_workload` returns: the few workloads of a batch's many rows, each stored once.
fn workload_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoke(pods: ArrayRef, nodes: ArrayRef) -> Vec<Option<String>> {
        let rows = pods.len();
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Array(pods), ColumnarValue::Array(nodes)],
            arg_fields: vec![
                Arc::new(datafusion::arrow::datatypes::Field::new(
                    "pod",
                    DataType::Utf8,
                    true,
                )),
                Arc::new(datafusion::arrow::datatypes::Field::new(
                    "node",
                    DataType::Utf8,
                    true,
                )),
            ],
            number_rows: rows,
            return_field: Arc::new(datafusion::arrow::datatypes::Field::new(
                "workload",
                workload_type(),
                true,
            )),
            config_options: Arc::new(datafusion::common::config::ConfigOptions::default()),
        };
        let ColumnarValue::Array(result) = K8sWorkload::new().invoke_with_args(args).unwrap()
        else {
            panic!("an array in, an array out");
        };
        assert_eq!(result.data_type(), &workload_type());
        let text = cast(&result, &DataType::Utf8).unwrap();
        text.as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    #[test]
    fn dictionaries_and_plain_strings_name_alike() {
        let pods = [
            Some("web-7d9f5b8c4d-x2kqp"),
            Some("web-7d9f5b8c4d-x2kqp"),
            Some("web-7d9f5b8c4d-b7zz4"),
            None,
            Some("kube-proxy-n1"),
            Some("kube-proxy-n2"),
            Some("postgres-0"),
            Some("web-7d9f5b8c4d-x2kqp"),
        ];
        let nodes = [
            Some("n1"),
            Some("n1"),
            Some("n2"),
            Some("n1"),
            Some("n1"),
            Some("n2"),
            None,
            Some("n1"),
        ];
        let expected: Vec<Option<String>> = [
            Some("web"),
            Some("web"),
            Some("web"),
            None,
            Some("kube-proxy"),
            Some("kube-proxy"),
            Some("postgres"),
            Some("web"),
        ]
        .iter()
        .map(|v| v.map(str::to_string))
        .collect();
        let plain = |values: &[Option<&str>]| -> ArrayRef {
            Arc::new(values.iter().copied().collect::<StringArray>())
        };
        let dictionary = |values: &[Option<&str>]| -> ArrayRef {
            Arc::new(
                values
                    .iter()
                    .copied()
                    .collect::<DictionaryArray<Int32Type>>(),
            )
        };
        assert_eq!(invoke(plain(&pods), plain(&nodes)), expected);
        assert_eq!(invoke(dictionary(&pods), dictionary(&nodes)), expected);
        assert_eq!(invoke(dictionary(&pods), plain(&nodes)), expected);
    }

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
