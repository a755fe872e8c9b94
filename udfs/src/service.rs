//! `k8s_service(pod)`: ESCU's service-name rewrite of a pod name.
//! `replace(pod, "-\w{5}$|-[abcdef0-9]{8,10}-\w{5}$", "")` with PCRE semantics, once per distinct value.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    AnyDictionaryArray, Array, ArrayRef, AsArray, BooleanArray, GenericStringArray,
    OffsetSizeTrait, StringViewArray,
};
use datafusion::arrow::compute::nullif;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use regex::Regex;

/// The SQL name of the service-name UDF.
pub const K8S_SERVICE_UDF_NAME: &str = "k8s_service";

/// ESCU's pattern, with PCRE's `\w` spelled out as ASCII (`[A-Za-z0-9_]`): Rust's `\w` is Unicode.
static SERVICE_SUFFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"-[A-Za-z0-9_]{5}$|-[a-f0-9]{8,10}-[A-Za-z0-9_]{5}$").expect("valid pattern")
});

/// The ESCU service name of a pod: the pod name with the generated suffix removed.
///
/// `nginx-7c9f8d6b5d-x2kqp` → `nginx`, `coredns-5644d7b6d9-9msql` → `coredns`. Kubernetes
/// writes the pod-template hash as the decimal digits of a uint32 mapped into `4-9bcdf`, so it
/// is always hex, but one of 7 characters or fewer (a uint32 below 10^7) only loses the last
/// word (`web-5644d7b-9msql` → `web-5644d7b`), and any 5-character last word goes
/// (`nginx-proxy` → `nginx`): the known flaws of the original, kept on purpose.
///
/// Both alternatives end in `$`, so at most one match exists and removing it leaves a prefix.
/// PCRE's `$` also matches before a final newline, which Rust's does not: that newline is kept
/// aside while matching, as PCRE would leave it in place.
pub fn service_name(pod: &str) -> Cow<'_, str> {
    let (body, newline) = match pod.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (pod, ""),
    };
    match SERVICE_SUFFIX.find(body) {
        None => Cow::Borrowed(pod),
        Some(found) if newline.is_empty() => Cow::Borrowed(&pod[..found.start()]),
        Some(found) => Cow::Owned(format!("{}{newline}", &body[..found.start()])),
    }
}

/// `k8s_service(pod)`: accepts Utf8, LargeUtf8, Utf8View and dictionaries of them, and returns
/// the input's type. A dictionary is rewritten once per dictionary value that a row uses, keys
/// untouched.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct K8sService {
    signature: Signature,
}

impl K8sService {
    pub fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for K8sService {
    fn default() -> Self {
        Self::new()
    }
}

fn is_string(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

impl ScalarUDFImpl for K8sService {
    fn name(&self) -> &str {
        K8S_SERVICE_UDF_NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [DataType::Null] => Ok(vec![DataType::Utf8]),
            [t] if is_string(t) => Ok(vec![t.clone()]),
            [DataType::Dictionary(_, value)] if is_string(value) => Ok(vec![arg_types[0].clone()]),
            [other] => plan_err!("{K8S_SERVICE_UDF_NAME} takes a pod name string, got {other}"),
            _ => plan_err!(
                "{K8S_SERVICE_UDF_NAME} takes one argument, got {}",
                arg_types.len()
            ),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [pods] = args.args.as_slice() else {
            return exec_err!("{K8S_SERVICE_UDF_NAME} takes one argument");
        };
        match pods {
            ColumnarValue::Array(array) => Ok(ColumnarValue::Array(rewrite_array(array)?)),
            ColumnarValue::Scalar(scalar) => {
                let rewritten = rewrite_array(&scalar.to_array()?)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                    &rewritten, 0,
                )?))
            }
        }
    }
}

fn rewrite_array(array: &ArrayRef) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Utf8 => Ok(rewrite_offsets::<i32>(array.as_string::<i32>())),
        DataType::LargeUtf8 => Ok(rewrite_offsets::<i64>(array.as_string::<i64>())),
        DataType::Utf8View => Ok(Arc::new(
            array
                .as_string_view()
                .iter()
                .map(|pod| pod.map(service_name))
                .collect::<StringViewArray>(),
        )),
        DataType::Dictionary(_, _) => {
            let dictionary = array.as_any_dictionary();
            let values = rewrite_array(&used_values(dictionary)?)?;
            Ok(dictionary.with_values(values))
        }
        other => exec_err!("{K8S_SERVICE_UDF_NAME} cannot read {other}"),
    }
}

/// A dictionary's values, those no row refers to as nulls (when there are such): a dictionary
/// concatenated from many batches (the spans' grouping emits one) holds far more pods than its
/// rows use, and each value costs a regex search.
fn used_values(dictionary: &dyn AnyDictionaryArray) -> Result<ArrayRef> {
    let values = dictionary.values();
    if dictionary.len() >= values.len() {
        return Ok(values.clone());
    }
    let mut unused = vec![true; values.len()];
    let valid = dictionary.keys().logical_nulls();
    for (row, key) in dictionary.normalized_keys().into_iter().enumerate() {
        if valid.as_ref().is_none_or(|v| v.is_valid(row))
            && let Some(slot) = unused.get_mut(key)
        {
            *slot = false;
        }
    }
    if !unused.contains(&true) {
        return Ok(values.clone());
    }
    Ok(nullif(values, &BooleanArray::from(unused))?)
}

fn rewrite_offsets<O: OffsetSizeTrait>(pods: &GenericStringArray<O>) -> ArrayRef {
    Arc::new(
        pods.iter()
            .map(|pod| pod.map(service_name))
            .collect::<GenericStringArray<O>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{DictionaryArray, StringArray};
    use datafusion::arrow::datatypes::{Field, Int32Type};
    use datafusion::common::config::ConfigOptions;

    #[test]
    fn deployment_pods_lose_hash_and_suffix() {
        assert_eq!(service_name("nginx-7c9f8d6b5d-x2kqp"), "nginx");
        assert_eq!(service_name("coredns-5644d7b6d9-9msql"), "coredns");
        // 8 and 9 hex characters are hashes too.
        assert_eq!(service_name("api-5644d7b6-9msql"), "api");
        assert_eq!(service_name("api-5644d7b6d-9msql"), "api");
    }

    #[test]
    fn non_hex_hash_keeps_the_replicaset_name() {
        // Not a Kubernetes hash (those are hex), but the rule only looks at the characters.
        assert_eq!(service_name("web-7d4b9c8kq-x2kqp"), "web-7d4b9c8kq");
        assert_eq!(
            service_name("checkout-67fbzq5v4-5x2kp"),
            "checkout-67fbzq5v4"
        );
    }

    #[test]
    fn short_or_long_hex_runs_are_not_hashes() {
        // 7 and 11 characters fall outside {8,10}: only the last word goes.
        assert_eq!(service_name("web-5644d7b-9msql"), "web-5644d7b");
        assert_eq!(service_name("web-5644d7b6d9a-9msql"), "web-5644d7b6d9a");
        // Upper-case hex is not in [abcdef0-9].
        assert_eq!(service_name("web-5644D7B6D9-9msql"), "web-5644D7B6D9");
    }

    #[test]
    fn other_workloads_follow_the_original_flaws() {
        assert_eq!(service_name("fluentd-x7k2p"), "fluentd"); // DaemonSet
        assert_eq!(service_name("web-0"), "web-0"); // StatefulSet
        assert_eq!(service_name("etcd-worker-12"), "etcd-worker-12"); // static pod
        assert_eq!(service_name("etcd-node1"), "etcd"); // static pod on a node named with 5 characters
        assert_eq!(
            service_name("kube-apiserver-kind-control-plane"),
            "kube-apiserver-kind-control"
        );
        assert_eq!(service_name("nginx-proxy"), "nginx"); // any 5-character last word
        assert_eq!(service_name("abcde"), "abcde"); // no dash
        assert_eq!(service_name("-abcde"), "");
        assert_eq!(service_name(""), "");
        assert_eq!(service_name("a-b_c_d"), "a"); // underscore is a word character
        assert_eq!(service_name("a-bc.de"), "a-bc.de"); // a dot is not
        assert_eq!(service_name("a-bcdé"), "a-bcdé"); // \w is ASCII only
    }

    #[test]
    fn leftmost_match_wins() {
        // The hash alternative starts further left than the 5-character one.
        assert_eq!(service_name("a-12345678-bcdef"), "a");
        // A 5-character word right before the hash does not make two matches.
        assert_eq!(service_name("proxy-abcde-12345678-bcdef"), "proxy-abcde");
    }

    #[test]
    fn a_final_newline_is_kept_as_pcre_does() {
        assert_eq!(service_name("nginx-x2kqp\n"), "nginx\n");
        assert_eq!(service_name("nginx-x2kqp\n\n"), "nginx-x2kqp\n\n");
    }

    fn invoke(array: ArrayRef) -> ArrayRef {
        let udf = K8sService::new();
        let args = ScalarFunctionArgs {
            arg_fields: vec![Arc::new(Field::new("pod", array.data_type().clone(), true))],
            number_rows: array.len(),
            return_field: Arc::new(Field::new("s", array.data_type().clone(), true)),
            args: vec![ColumnarValue::Array(array)],
            config_options: Arc::new(ConfigOptions::default()),
        };
        match udf.invoke_with_args(args).unwrap() {
            ColumnarValue::Array(array) => array,
            ColumnarValue::Scalar(_) => panic!("array in, array out"),
        }
    }

    #[test]
    fn every_string_encoding_gives_the_same_names() {
        let pods = [Some("nginx-7c9f8d6b5d-x2kqp"), None, Some("web-0")];
        let expected = StringArray::from(vec![Some("nginx"), None, Some("web-0")]);
        let plain = invoke(Arc::new(StringArray::from(pods.to_vec())));
        assert_eq!(plain.as_string::<i32>(), &expected);
        let view = invoke(Arc::new(StringViewArray::from(pods.to_vec())));
        assert_eq!(view.data_type(), &DataType::Utf8View);
        assert_eq!(
            view.as_string_view().iter().collect::<Vec<_>>(),
            expected.iter().collect::<Vec<_>>()
        );
        let dictionary: DictionaryArray<Int32Type> = pods.into_iter().collect();
        let rewritten = invoke(Arc::new(dictionary.clone()));
        let rewritten = rewritten.as_dictionary::<Int32Type>();
        // Keys are untouched: the rewrite ran once per dictionary value.
        assert_eq!(rewritten.keys(), dictionary.keys());
        let decoded = datafusion::arrow::compute::cast(rewritten, &DataType::Utf8).unwrap();
        assert_eq!(decoded.as_string::<i32>(), &expected);
    }

    /// A dictionary with more values than rows (one concatenated from many batches) gives each
    /// row its name; the values no row uses are not rewritten.
    #[test]
    fn a_dictionary_s_unused_values_are_left_out() {
        use datafusion::arrow::array::Int32Array;
        let values = StringArray::from(vec![
            "api-5d9c7b8f6d-x2x4z",
            "nginx-7c9f8d6b5d-x2kqp",
            "db-0",
            "cache-6f7d8c9b4d-abcde",
            "queue-1",
        ]);
        let keys = Int32Array::from(vec![Some(1), None, Some(2), Some(1)]);
        let dictionary = DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values)).unwrap();
        let rewritten = invoke(Arc::new(dictionary));
        let decoded = datafusion::arrow::compute::cast(&rewritten, &DataType::Utf8).unwrap();
        assert_eq!(
            decoded.as_string::<i32>(),
            &StringArray::from(vec![Some("nginx"), None, Some("db-0"), Some("nginx")])
        );
        let values = rewritten.as_dictionary::<Int32Type>().values().clone();
        assert_eq!(values.null_count(), 3, "{values:?}");
    }
}
