//! Evidence of findings: each finding's pod as Kubernetes knows it (namespace, owning workload)
//! and what its measures did against the baseline (the rule's `evidence` view), for a SIEM.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Float64Type, Int64Type, TimeUnit, TimestampMillisecondType,
};
use datafusion::prelude::{col, lit};

use crate::error::{Error, Result};
use crate::finding::Finding;
use crate::rule::Rule;
use crate::session::Session;

/// What one measure of a finding's pod did in the window, against its baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// The measure's name (`outbound_network_io`, `inbound:outbound`, ...).
    pub measure: String,
    /// The anomalous 10 s buckets of the measure.
    pub buckets: i64,
    pub first_bucket: Option<DateTime<Utc>>,
    pub last_bucket: Option<DateTime<Utc>>,
    /// The measure's typical value in those buckets (the rule says which: a median for the
    /// built-in rules), in the measure's units.
    pub observed: Option<f64>,
    /// What the baseline expected.
    pub expected: Option<f64>,
    /// The band's edges: values below `lower` or above `upper` are anomalous; `None` where the
    /// rule does not judge that side.
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// Which baseline row the expectation came from, as the rule describes it.
    pub reference: Option<String>,
}

/// A finding's pod as Kubernetes knows it, and its measures' evidence.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    pub namespace: Option<String>,
    /// The owning workload: the store's where the source named it, else from the pod's name.
    pub workload: Option<String>,
    pub evidence: Vec<Evidence>,
}

/// The context of each of `findings` (in their order), from the session that found them.
pub async fn contexts(
    session: &Session,
    rules: &[Rule],
    findings: &[Finding],
) -> Result<Vec<Context>> {
    if findings.is_empty() {
        return Ok(Vec::new());
    }
    let pods = pods(session, findings).await?;
    let mut evidence: HashMap<(String, String, String), Vec<Evidence>> = HashMap::new();
    for rule in rules {
        if !findings.iter().any(|f| f.rule == rule.name) {
            continue;
        }
        for (cluster, pod, item) in rule_evidence(session, rule).await? {
            evidence
                .entry((rule.name.clone(), cluster, pod))
                .or_default()
                .push(item);
        }
    }
    Ok(findings
        .iter()
        .map(|f| {
            let (namespace, workload) = pods
                .get(&(f.cluster.clone(), f.pod.clone()))
                .cloned()
                .unwrap_or_default();
            let mut evidence = evidence
                .get(&(f.rule.clone(), f.cluster.clone(), f.pod.clone()))
                .cloned()
                .unwrap_or_default();
            evidence.sort_by(|a, b| a.measure.cmp(&b.measure));
            Context {
                namespace,
                workload,
                evidence,
            }
        })
        .collect())
}

/// The namespace and workload of the findings' pods, from the window's rows.
async fn pods(
    session: &Session,
    findings: &[Finding],
) -> Result<HashMap<(String, String), (Option<String>, Option<String>)>> {
    let context = || Error::query("read the findings' pods");
    let mut names: Vec<&str> = findings.iter().map(|f| f.pod.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let frame = session
        .ctx
        .sql(POD_SQL)
        .await
        .map_err(context())?
        .filter(col("pod").in_list(names.iter().map(|n| lit(*n)).collect(), false))
        .map_err(context())?;
    let batches = frame.collect().await.map_err(context())?;
    let mut pods = HashMap::new();
    for batch in &batches {
        let cluster = strings(batch, "cluster")?;
        let pod = strings(batch, "pod")?;
        let namespace = strings(batch, "namespace")?;
        let workload = strings(batch, "workload")?;
        for row in 0..batch.num_rows() {
            let (Some(cluster), Some(pod)) = (&cluster[row], &pod[row]) else {
                continue;
            };
            pods.insert(
                (cluster.clone(), pod.clone()),
                (namespace[row].clone(), workload[row].clone()),
            );
        }
    }
    Ok(pods)
}

/// A pod's namespace and owning workload over the window: the store's workload where the
/// source named it, else the one its name says (`k8s_workload`, as `drift` reads it).
const POD_SQL: &str = "
SELECT
    cluster,
    pod,
    max(CAST(namespace AS VARCHAR)) AS namespace,
    coalesce(max(CAST(workload AS VARCHAR)), CAST(k8s_workload(pod, max(node)) AS VARCHAR)) AS workload
FROM metrics
WHERE cluster IS NOT NULL AND pod IS NOT NULL
GROUP BY cluster, pod";

/// The rows of the rule's evidence view: (cluster, pod, evidence).
async fn rule_evidence(session: &Session, rule: &Rule) -> Result<Vec<(String, String, Evidence)>> {
    let Some(view) = &rule.evidence else {
        return Ok(Vec::new());
    };
    let context = || Error::query(format!("read {}.{view}", rule.namespace));
    let frame = session.rule_view(rule, view).await.map_err(context())?;
    let batches = frame.collect().await.map_err(context())?;
    let mut rows = Vec::new();
    for batch in &batches {
        let text = |name| strings(batch, name);
        let number = |name| doubles(batch, name);
        let time = |name| times(batch, name);
        let (cluster, pod, measure) = (text("cluster")?, text("pod")?, text("measure")?);
        let buckets = integers(batch, "buckets")?;
        let (first, last) = (time("first_bucket")?, time("last_bucket")?);
        let (observed, expected) = (number("observed")?, number("expected")?);
        let (lower, upper) = (number("lower")?, number("upper")?);
        let reference = text("reference")?;
        for row in 0..batch.num_rows() {
            let (Some(cluster), Some(pod), Some(measure)) =
                (&cluster[row], &pod[row], &measure[row])
            else {
                continue;
            };
            rows.push((
                cluster.clone(),
                pod.clone(),
                Evidence {
                    measure: measure.clone(),
                    buckets: buckets[row].unwrap_or(0),
                    first_bucket: first[row],
                    last_bucket: last[row],
                    observed: observed[row],
                    expected: expected[row],
                    lower: lower[row],
                    upper: upper[row],
                    reference: reference[row].clone(),
                },
            ));
        }
    }
    Ok(rows)
}

/// Column `name` of `batch` cast to `to`; an error names the column when it is missing or of a
/// type that does not cast (a rule's evidence view with other columns than rules/README.md's).
fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<ArrayRef> {
    let array = batch.column_by_name(name).ok_or_else(|| {
        Error::Usage(format!(
            "the evidence has no column {name:?} (see rules/README.md, \"evidence\")"
        ))
    })?;
    cast(array, to).map_err(|e| {
        Error::Usage(format!(
            "the evidence's column {name:?} ({}) is not {to}: {e}",
            array.data_type()
        ))
    })
}

fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let array = column(batch, name, &DataType::Utf8)?;
    let array = array.as_string::<i32>();
    Ok((0..array.len())
        .map(|i| array.is_valid(i).then(|| array.value(i).to_string()))
        .collect())
}

fn doubles(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>> {
    let array = column(batch, name, &DataType::Float64)?;
    let array = array.as_primitive::<Float64Type>();
    Ok(array.iter().map(|v| v.filter(|v| v.is_finite())).collect())
}

fn integers(batch: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    let array = column(batch, name, &DataType::Int64)?;
    Ok(array.as_primitive::<Int64Type>().iter().collect())
}

fn times(batch: &RecordBatch, name: &str) -> Result<Vec<Option<DateTime<Utc>>>> {
    let to = DataType::Timestamp(TimeUnit::Millisecond, Some(Arc::from("UTC")));
    let array = column(batch, name, &to)?;
    Ok(array
        .as_primitive::<TimestampMillisecondType>()
        .iter()
        .map(|v| v.and_then(DateTime::from_timestamp_millis))
        .collect())
}
