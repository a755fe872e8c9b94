//! Writing results: query batches as table, CSV, JSON or NDJSON, and any file atomically
//! (a temporary name in the same directory, then a rename).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use clap::ValueEnum;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::json::WriterBuilder;
use datafusion::arrow::json::writer::{JsonArray, LineDelimited};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::util::pretty::pretty_format_batches;

use crate::error::{Error, Result};

/// An output format of `detect` and of the REPL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Ndjson,
    /// OCSF 1.1 Detection Findings, one JSON object per line: findings only (`detect`, `eval`,
    /// the schedule), written by [`crate::ocsf`].
    Ocsf,
}

impl Format {
    /// Parses a format name as `--format` does, for the REPL's `\format`.
    pub fn parse(text: &str) -> std::result::Result<Format, String> {
        <Format as ValueEnum>::from_str(text, true)
            .map_err(|_| format!("unknown format {text:?}: table, csv, json, ndjson or ocsf"))
    }
}

/// Writes `path` through `write`, to a temporary file in the same directory first and renamed
/// into place only when `write` succeeded: readers never see a half-written file.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".iodrift-").suffix(".tmp");
    // A temporary file is private (0600); the finished one is an ordinary file.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut temp = builder.tempfile_in(dir).map_err(Error::io(dir))?;
    write(temp.as_file_mut()).map_err(Error::io(path))?;
    temp.as_file_mut().flush().map_err(Error::io(path))?;
    crate::failpoint::point();
    temp.persist(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    crate::failpoint::point();
    Ok(())
}

/// Standard output that ends the process quietly, with success, when the reader has gone
/// (`iodrift detect | head`), as command-line tools do, instead of reporting a broken pipe.
pub struct Stdout(std::io::StdoutLock<'static>);

impl Stdout {
    pub fn lock() -> Stdout {
        Stdout(std::io::stdout().lock())
    }

    fn check<T>(result: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &result
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            std::process::exit(0);
        }
        result
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Self::check(self.0.write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Self::check(self.0.flush())
    }
}

/// Writes batches in `format`. Table and CSV show list columns as JSON arrays of strings.
pub fn write_batches(out: &mut dyn Write, batches: &[RecordBatch], format: Format) -> Result<()> {
    let fail = |e: datafusion::arrow::error::ArrowError| Error::query("write output")(e.into());
    let io = |e: std::io::Error| Error::query("write output")(e.into());
    match format {
        Format::Table => {
            let flat = batches
                .iter()
                .map(lists_as_json)
                .collect::<Result<Vec<_>>>()?;
            let table = if flat.is_empty() {
                String::from("(no rows)")
            } else {
                pretty_format_batches(&flat).map_err(fail)?.to_string()
            };
            writeln!(out, "{table}").map_err(io)
        }
        Format::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            for batch in batches {
                writer.write(&lists_as_json(batch)?).map_err(fail)?;
            }
            Ok(())
        }
        Format::Json => {
            let mut writer = WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, JsonArray>(&mut *out);
            for batch in batches {
                writer.write(batch).map_err(fail)?;
            }
            writer.finish().map_err(fail)?;
            writeln!(out).map_err(io)
        }
        Format::Ndjson => {
            let mut writer = WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, LineDelimited>(&mut *out);
            for batch in batches {
                writer.write(batch).map_err(fail)?;
            }
            writer.finish().map_err(fail)
        }
        Format::Ocsf => Err(Error::Usage(
            "--format ocsf writes findings (detect, eval, the schedule); query results have no \
             OCSF form"
                .into(),
        )),
    }
}

/// Replaces every list column by its rows written as JSON arrays.
fn lists_as_json(batch: &RecordBatch) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if matches!(field.data_type(), DataType::List(_)) {
            fields.push(Field::new(field.name(), DataType::Utf8, true));
            columns.push(list_as_json(column)?);
        } else {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::query("write output")(e.into()))
}

fn list_as_json(column: &ArrayRef) -> Result<ArrayRef> {
    let fail = |e: datafusion::arrow::error::ArrowError| Error::query("write output")(e.into());
    let list = column.as_list::<i32>();
    let mut out = StringBuilder::new();
    for row in 0..list.len() {
        if list.is_null(row) {
            out.append_null();
            continue;
        }
        let items = list.value(row);
        let formatter =
            ArrayFormatter::try_new(items.as_ref(), &FormatOptions::default()).map_err(fail)?;
        let values: Vec<serde_json::Value> = (0..items.len())
            .map(|i| {
                if items.is_null(i) {
                    serde_json::Value::Null
                } else {
                    serde_json::Value::String(formatter.value(i).to_string())
                }
            })
            .collect();
        out.append_value(serde_json::Value::Array(values).to_string());
    }
    Ok(Arc::new(out.finish()))
}
