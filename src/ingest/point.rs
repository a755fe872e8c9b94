//! What every input format decodes into: points of a series with their kind (cumulative
//! counter, delta or gauge), and records set aside with a reason.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The labels that identify a series in the store (the columns besides time and value).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Series {
    pub metric: String,
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub node: Option<String>,
    pub pod: Option<String>,
    pub direction: Option<String>,
    pub interface: Option<String>,
    /// The pod's owning workload, where the source names it.
    #[serde(default)]
    pub workload: Option<String>,
}

/// How a point's value relates to the bytes moved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A monotonic running total since `start` (ms), when the source says when it started.
    Cumulative { start: Option<i64> },
    /// Already the amount since the previous point.
    Delta,
    /// A level, stored as it is.
    Gauge,
}

/// One decoded data point.
#[derive(Debug, Clone)]
pub struct Point {
    pub series: Series,
    pub kind: Kind,
    /// Milliseconds since the Unix epoch.
    pub time: i64,
    pub value: f64,
    /// Where it came from, for a reject: the record (line or point) inside the input.
    pub record: Record,
}

/// A position inside one input: its path and the line (or point) number, from 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Shared by every record of the input.
    #[serde(serialize_with = "as_str", deserialize_with = "shared")]
    pub input: Arc<str>,
    pub line: u64,
}

fn as_str<S: serde::Serializer>(text: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(text)
}

fn shared<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Arc<str>, D::Error> {
    String::deserialize(deserializer).map(Arc::from)
}

/// A record set aside instead of stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reject {
    #[serde(flatten)]
    pub record: Record,
    pub reason: String,
    /// The offending text, shortened, where the format is textual.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl Reject {
    pub fn new(record: Record, reason: impl Into<String>) -> Reject {
        Reject {
            record,
            reason: reason.into(),
            text: None,
        }
    }

    pub fn with_text(mut self, text: &str) -> Reject {
        const MAX: usize = 200;
        let mut end = text.len().min(MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.text = Some(text[..end].to_string());
        self
    }
}

/// What one input decoded into.
#[derive(Debug, Default)]
pub struct Decoded {
    pub points: Vec<Point>,
    pub rejects: Vec<Reject>,
    /// Points of metrics or types the store does not hold (histograms, other counters).
    pub ignored: u64,
}

impl Decoded {
    pub fn reject(&mut self, record: Record, reason: impl Into<String>) {
        self.rejects.push(Reject::new(record, reason));
    }
}
