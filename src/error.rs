//! The error type of iodrift: every variant names the culprit (file, row, flag or expression).
//! Commands print it as one line and exit non-zero: text from elsewhere (a library's message,
//! a name from a file or a flag) has its line breaks turned into spaces.

use std::path::PathBuf;

use datafusion::error::DataFusionError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad time {expr:?} for {flag}: {}", one_line(reason))]
    Time {
        flag: &'static str,
        expr: String,
        reason: String,
    },
    #[error("bad window: latest {latest} is not after earliest {earliest}")]
    EmptyWindow { earliest: String, latest: String },
    #[error("{}: {}", one_line(location), one_line(reason))]
    Location { location: String, reason: String },
    #[error("store {}: {}", one_line(location), one_line(reason))]
    Store { location: String, reason: String },
    #[error("store file {}: {}", one_line(path), one_line(reason))]
    StoreFile { path: String, reason: String },
    #[error("baseline {}: {}", one_line(path), one_line(reason))]
    Baseline { path: String, reason: String },
    #[error("baseline {} row {row}: {}", one_line(path), one_line(reason))]
    BaselineRow {
        path: String,
        row: u64,
        reason: String,
    },
    #[error("bad --filter {filter:?}: {}", one_line(reason))]
    Filter { filter: String, reason: String },
    #[error("{}: {}", one_line(&path.display().to_string()), one_line(&source.to_string()))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {}", one_line(context), one_line(&source.to_string()))]
    Query {
        context: String,
        source: Box<DataFusionError>,
    },
    #[error("input {}: {}", one_line(path), one_line(reason))]
    Input { path: String, reason: String },
    #[error("{count} records rejected; reasons in {}", one_line(file))]
    Rejected { count: u64, file: String },
    #[error("rule {}: {}", one_line(path), one_line(reason))]
    Rule { path: String, reason: String },
    #[error("config {}: {}", one_line(path), one_line(reason))]
    Config { path: String, reason: String },
    #[error(
        "store {} is held by {} until {until} (another iodrift schedule or run-due)",
        one_line(store),
        one_line(owner)
    )]
    LeaseHeld {
        store: String,
        owner: String,
        until: chrono::DateTime<chrono::Utc>,
    },
    #[error(
        "lease lost by {owner}: another runner claimed the store after this one's claim expired"
    )]
    LeaseLost { owner: String },
    #[error("{}", one_line(.0))]
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

/// `text` on one line: each run of line breaks and tabs (and other control characters) becomes
/// one space.
pub fn one_line(text: &str) -> String {
    if !text.contains(char::is_control) {
        return text.to_string();
    }
    let mut line = String::with_capacity(text.len());
    let mut in_break = false;
    for c in text.chars() {
        if c.is_control() {
            if !in_break {
                line.push(' ');
            }
            in_break = true;
        } else {
            if in_break && c == ' ' {
                continue;
            }
            in_break = false;
            line.push(c);
        }
    }
    line
}
