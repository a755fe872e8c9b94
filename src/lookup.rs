//! ESCU baseline lookups as files: read from and written to `<lookup>.csv` (ESCU's columns, exact
//! order, empty cell for null) with a Parquet twin. Computing them is `baseline.rs`'s.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;

use crate::error::{Error, Result};
use crate::location::Location;
use crate::rules::Rule;
use iodrift_udfs::format_number;

/// One rule's baseline: a row per key, with ESCU's lookup columns.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub rule: Rule,
    pub batch: RecordBatch,
}

/// The lookup's schema: `key`, four Float64 statistics, `count` and `last_seen` (epoch seconds).
pub fn lookup_schema(rule: &Rule) -> SchemaRef {
    let fields: Vec<Field> = rule
        .lookup_columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let data_type = match i {
                0 => DataType::Utf8,
                1..=4 => DataType::Float64,
                _ => DataType::Int64,
            };
            Field::new(*name, data_type, i != 0)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

impl Baseline {
    pub fn empty(rule: Rule) -> Baseline {
        Baseline {
            rule,
            batch: RecordBatch::new_empty(lookup_schema(&rule)),
        }
    }

    /// The baseline of the rows a baseline view returned, cast to the lookup schema.
    pub fn from_batches(rule: Rule, batches: &[RecordBatch]) -> Result<Baseline> {
        let batch = cast_batches(&lookup_schema(&rule), batches)
            .map_err(|e| Error::query(format!("baseline {}", rule.name))(e.into()))?;
        Ok(Baseline { rule, batch })
    }

    pub fn csv_file_name(rule: &Rule) -> String {
        format!("{}.csv", rule.lookup)
    }

    pub fn parquet_file_name(rule: &Rule) -> String {
        format!("{}.parquet", rule.lookup)
    }

    /// Reads the rule's lookup CSV from `dir`, or `None` when `dir` holds none: the header must
    /// be ESCU's, every cell must parse, and keys must be unique. Errors name the file and the
    /// line.
    pub async fn read_csv(dir: &Location, rule: Rule) -> Result<Option<Baseline>> {
        let name = Baseline::csv_file_name(&rule);
        let path = dir.display_at(&name);
        let Some(bytes) = dir.read(&name).await? else {
            return Ok(None);
        };
        Baseline::parse_csv(&path, &bytes, rule).map(Some)
    }

    /// Parses the lookup CSV `bytes` of `rule`, read from `path`.
    pub fn parse_csv(path: &str, bytes: &[u8], rule: Rule) -> Result<Baseline> {
        let file_error = |reason: String| Error::Baseline {
            path: path.to_string(),
            reason,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(bytes);
        let header = reader
            .headers()
            .map_err(|e| file_error(csv_reason(&e)))?
            .clone();
        if header.iter().ne(rule.lookup_columns.iter().copied()) {
            return Err(file_error(format!(
                "header is {:?}, expected {:?}",
                header.iter().collect::<Vec<_>>().join(","),
                rule.lookup_columns.join(",")
            )));
        }
        let mut keys = StringBuilder::new();
        let mut stats: [Float64Builder; 4] = Default::default();
        let mut counts = [Int64Builder::new(), Int64Builder::new()];
        let mut seen: HashMap<String, u64> = HashMap::new();
        for record in reader.records() {
            let record = record.map_err(|e| file_error(csv_reason(&e)))?;
            let line = record.position().map_or(0, |p| p.line());
            let row_error = |reason: String| Error::BaselineRow {
                path: path.to_string(),
                row: line,
                reason,
            };
            let key = &record[0];
            if let Some(first) = seen.insert(key.to_string(), line) {
                return Err(row_error(format!(
                    "duplicate key {key:?}, first on line {first}"
                )));
            }
            keys.append_value(key);
            for (i, builder) in stats.iter_mut().enumerate() {
                builder.append_option(parse_stat(&record[i + 1]).map_err(|reason| {
                    row_error(format!("column {}: {reason}", rule.lookup_columns[i + 1]))
                })?);
            }
            for (i, builder) in counts.iter_mut().enumerate() {
                builder.append_option(parse_integer(&record[i + 5]).map_err(|reason| {
                    row_error(format!("column {}: {reason}", rule.lookup_columns[i + 5]))
                })?);
            }
        }
        let mut columns: Vec<ArrayRef> = vec![Arc::new(keys.finish())];
        columns.extend(stats.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.extend(counts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        let batch = RecordBatch::try_new(lookup_schema(&rule), columns)
            .map_err(|e| file_error(e.to_string()))?;
        Ok(Baseline { rule, batch })
    }

    /// Writes `<lookup>.csv` and `<lookup>.parquet` into `dir`, each whole or not at all.
    /// Returns their paths as a user reads them.
    pub async fn write(&self, dir: &Location) -> Result<Vec<String>> {
        let csv_name = Baseline::csv_file_name(&self.rule);
        dir.write(&csv_name, |file| self.write_csv(file)).await?;
        let parquet_name = Baseline::parquet_file_name(&self.rule);
        dir.write(&parquet_name, |file| {
            let mut writer = ArrowWriter::try_new(file, self.batch.schema(), None)
                .map_err(std::io::Error::other)?;
            writer.write(&self.batch).map_err(std::io::Error::other)?;
            writer.close().map_err(std::io::Error::other)?;
            Ok(())
        })
        .await?;
        Ok([csv_name, parquet_name]
            .iter()
            .map(|name| dir.display_at(name))
            .collect())
    }

    fn write_csv(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let mut writer = csv::Writer::from_writer(out);
        writer.write_record(self.rule.lookup_columns)?;
        let keys = self.batch.column(0).as_string::<i32>();
        let stats: Vec<_> = (1..=4)
            .map(|i| self.batch.column(i).as_primitive::<Float64Type>())
            .collect();
        let counts: Vec<_> = (5..=6)
            .map(|i| self.batch.column(i).as_primitive::<Int64Type>())
            .collect();
        for row in 0..self.batch.num_rows() {
            let mut record = vec![keys.value(row).to_string()];
            record.extend(stats.iter().map(|c| {
                if c.is_null(row) {
                    String::new()
                } else {
                    format_number(c.value(row))
                }
            }));
            record.extend(counts.iter().map(|c| {
                if c.is_null(row) {
                    String::new()
                } else {
                    c.value(row).to_string()
                }
            }));
            writer.write_record(&record)?;
        }
        writer.flush()
    }

    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }
}

/// The rows of `batches` in one batch of `schema`, column by column in order, cast to its types.
pub fn cast_batches(
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> std::result::Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let converted = batches
        .iter()
        .map(|batch| {
            let columns = schema
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(field, column)| cast(column, field.data_type()))
                .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
            RecordBatch::try_new(schema.clone(), columns)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    concat_batches(schema, &converted)
}

fn csv_reason(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::Io(e) => e.to_string(),
        _ => error.to_string(),
    }
}

fn parse_stat(cell: &str) -> std::result::Result<Option<f64>, String> {
    if cell.is_empty() {
        return Ok(None);
    }
    match cell.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(format!("{cell:?} is not a finite number")),
    }
}

/// An integer cell; Splunk may write epoch times with a fraction (`1709553590.000`).
fn parse_integer(cell: &str) -> std::result::Result<Option<i64>, String> {
    if cell.is_empty() {
        return Ok(None);
    }
    let text = cell.trim();
    if let Ok(v) = text.parse::<i64>() {
        return Ok(Some(v));
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(Some(v as i64)),
        _ => Err(format!("{cell:?} is not an integer")),
    }
}
