//! The error type of iodrift: every variant names the culprit (file, row, flag or expression).
//! Commands print it as one line and exit non-zero.

use std::path::PathBuf;

use datafusion::error::DataFusionError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad time {expr:?} for {flag}: {reason}")]
    Time {
        flag: &'static str,
        expr: String,
        reason: String,
    },
    #[error("bad window: latest {latest} is not after earliest {earliest}")]
    EmptyWindow { earliest: String, latest: String },
    #[error("{location}: {reason}")]
    Location { location: String, reason: String },
    #[error("store {location}: {reason}")]
    Store { location: String, reason: String },
    #[error("store file {path}: {reason}")]
    StoreFile { path: String, reason: String },
    #[error("baseline {path}: {reason}")]
    Baseline { path: String, reason: String },
    #[error("baseline {path} row {row}: {reason}")]
    BaselineRow {
        path: String,
        row: u64,
        reason: String,
    },
    #[error("bad --filter {filter:?}: {reason}")]
    Filter { filter: String, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Query {
        context: String,
        source: Box<DataFusionError>,
    },
    #[error("input {path}: {reason}")]
    Input { path: String, reason: String },
    #[error("{count} records rejected; reasons in {file}")]
    Rejected { count: u64, file: String },
    #[error("config {path}: {reason}")]
    Config { path: String, reason: String },
    #[error("store {store} is held by {owner} until {until} (another iodrift schedule or run-due)")]
    LeaseHeld {
        store: String,
        owner: String,
        until: chrono::DateTime<chrono::Utc>,
    },
    #[error(
        "lease lost by {owner}: another runner claimed the store after this one's claim expired"
    )]
    LeaseLost { owner: String },
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub fn input(path: &str, reason: impl Into<String>) -> Error {
        Error::Input {
            path: path.to_string(),
            reason: reason.into(),
        }
    }

    pub fn query(context: impl Into<String>) -> impl FnOnce(DataFusionError) -> Error {
        let context = context.into();
        move |source| Error::Query {
            context,
            source: Box::new(source),
        }
    }
}
