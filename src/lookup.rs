//! Baseline tables as files: read from and written to `<table>.csv` (the manifest's columns in
//! order, empty cell for null; for the ESCU rules, ESCU's lookups) with a Parquet twin.
//!
//! The CSV is the lookup (a user may edit it, as in Splunk); the twin holds the rows a parse of
//! that CSV gives, with the CSV's BLAKE3 digest in its footer (hashed at several GB/s: a
//! detection checks its lookups' CSVs every time). A reader that finds the CSV's digest
//! there reads the twin (a few milliseconds where parsing a drift lookup takes a third of a
//! second) and parses the CSV otherwise.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::location::Location;
use crate::rule::{ColumnKind, Table};
use iodrift_udfs::write_number;

/// One baseline table of a rule: a row per key, with the columns its manifest declares.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub table: Arc<Table>,
    pub batch: RecordBatch,
}

/// The table's schema: its columns in order, the key columns never null.
pub fn lookup_schema(table: &Table) -> SchemaRef {
    let fields: Vec<Field> = table
        .columns
        .iter()
        .map(|column| {
            let nullable = !table.key.contains(&column.name);
            Field::new(&column.name, column.kind.data_type(), nullable)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

impl Baseline {
    pub fn empty(table: &Arc<Table>) -> Baseline {
        Baseline {
            table: table.clone(),
            batch: RecordBatch::new_empty(lookup_schema(table)),
        }
    }

    /// The baseline of the rows a query returned, column by column cast to the table's schema;
    /// the query's column names must be the table's.
    pub fn from_batches(
        table: &Arc<Table>,
        schema: &SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<Baseline> {
        let fail = |reason: String| Error::Rule {
            path: format!("{} (rule {})", table.name, table.rule),
            reason,
        };
        let found: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let declared: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        if found != declared {
            return Err(fail(format!(
                "the query returns columns {found:?}, the manifest declares {declared:?}"
            )));
        }
        let batch =
            cast_batches(&lookup_schema(table), batches).map_err(|e| fail(e.to_string()))?;
        Ok(Baseline {
            table: table.clone(),
            batch,
        })
    }

    pub fn csv_file_name(table: &Table) -> String {
        format!("{}.csv", table.name)
    }

    pub fn parquet_file_name(table: &Table) -> String {
        format!("{}.parquet", table.name)
    }

    /// Reads the table's lookup CSV from `dir`, or `None` when `dir` holds none: the header must
    /// be the table's columns, every cell must parse, and keys must be unique. Errors name the
    /// file and the line. The rows come from the Parquet twin when its footer holds this CSV's
    /// digest.
    pub async fn read_csv(dir: &Location, table: &Arc<Table>) -> Result<Option<Baseline>> {
        let name = Baseline::csv_file_name(table);
        let path = dir.display_at(&name);
        let Some(bytes) = dir.read(&name).await? else {
            return Ok(None);
        };
        let digest = csv_digest(&bytes);
        if let Some(batch) = Baseline::read_twin(dir, table, &digest).await {
            return Ok(Some(Baseline {
                table: table.clone(),
                batch,
            }));
        }
        Baseline::parse_csv(&path, &bytes, table).map(Some)
    }

    /// The rows of the table's Parquet twin in `dir`, if its footer names the CSV of `digest` and
    /// its schema is the table's; `None` otherwise (no twin, another CSV's, or unreadable).
    async fn read_twin(dir: &Location, table: &Arc<Table>, digest: &str) -> Option<RecordBatch> {
        let bytes = dir.read(&Baseline::parquet_file_name(table)).await.ok()??;
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).ok()?;
        let footer = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()?
            .iter()
            .find(|kv| kv.key == CSV_DIGEST_KEY)?
            .value
            .clone()?;
        let schema = lookup_schema(table);
        if footer != digest || builder.schema().fields() != schema.fields() {
            return None;
        }
        let batches = builder
            .build()
            .ok()?
            .collect::<std::result::Result<Vec<_>, _>>()
            .ok()?;
        concat_batches(&schema, &batches).ok()
    }

    /// Parses the lookup CSV `bytes` of `table`, read from `path`.
    pub fn parse_csv(path: &str, bytes: &[u8], table: &Arc<Table>) -> Result<Baseline> {
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
        let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        if header.iter().ne(names.iter().copied()) {
            return Err(file_error(format!(
                "header is {:?}, expected {:?}",
                header.iter().collect::<Vec<_>>().join(","),
                names.join(",")
            )));
        }
        let key_columns: Vec<usize> = table
            .key
            .iter()
            .filter_map(|k| names.iter().position(|n| n == k))
            .collect();
        let mut builders: Vec<CellBuilder> = table
            .columns
            .iter()
            .map(|c| CellBuilder::new(c.kind))
            .collect();
        // Each row's key as its cells' lengths and bytes (no two keys alike), hashed fast: a
        // drift lookup has hundreds of thousands of rows, read by every detection.
        let mut seen: HashMap<Vec<u8>, u64, foldhash::fast::RandomState> = HashMap::default();
        let mut key = Vec::new();
        let mut record = csv::StringRecord::new();
        while reader
            .read_record(&mut record)
            .map_err(|e| file_error(csv_reason(&e)))?
        {
            let line = record.position().map_or(0, |p| p.line());
            let row_error = |reason: String| Error::BaselineRow {
                path: path.to_string(),
                row: line,
                reason,
            };
            key.clear();
            for &i in &key_columns {
                key.extend_from_slice(&record[i].len().to_le_bytes());
                key.extend_from_slice(record[i].as_bytes());
            }
            if let Some(first) = seen.insert(key.clone(), line) {
                let cells: Vec<&str> = key_columns.iter().map(|&i| &record[i]).collect();
                return Err(row_error(format!(
                    "duplicate key {:?}, first on line {first}",
                    cells.join(",")
                )));
            }
            for (i, builder) in builders.iter_mut().enumerate() {
                let nullable = !key_columns.contains(&i);
                builder
                    .append(&record[i], nullable)
                    .map_err(|reason| row_error(format!("column {}: {reason}", names[i])))?;
            }
        }
        let columns: Vec<ArrayRef> = builders.iter_mut().map(CellBuilder::finish).collect();
        let batch = RecordBatch::try_new(lookup_schema(table), columns)
            .map_err(|e| file_error(e.to_string()))?;
        Ok(Baseline {
            table: table.clone(),
            batch,
        })
    }

    /// Writes `<table>.csv` and `<table>.parquet` into `dir`, each whole or not at all.
    /// The twin holds what a reader parses from the CSV, under the CSV's digest; a CSV that no
    /// reader would accept (say, keys alike) gets a twin without one, so readers report it.
    /// Returns their paths as a user reads them.
    pub async fn write(&self, dir: &Location) -> Result<Vec<String>> {
        let csv_name = Baseline::csv_file_name(&self.table);
        let mut csv = Vec::new();
        self.write_csv(&mut csv)
            .map_err(Error::io(dir.display_at(&csv_name)))?;
        let (twin, footer) = match Baseline::parse_csv(&csv_name, &csv, &self.table) {
            Ok(parsed) => (
                parsed.batch,
                Some(vec![KeyValue::new(
                    CSV_DIGEST_KEY.to_string(),
                    csv_digest(&csv),
                )]),
            ),
            Err(_) => (self.batch.clone(), None),
        };
        dir.write(&csv_name, |file| std::io::Write::write_all(file, &csv))
            .await?;
        let parquet_name = Baseline::parquet_file_name(&self.table);
        let properties = WriterProperties::builder()
            .set_key_value_metadata(footer)
            .build();
        dir.write(&parquet_name, |file| {
            let mut writer = ArrowWriter::try_new(file, twin.schema(), Some(properties))
                .map_err(std::io::Error::other)?;
            writer.write(&twin).map_err(std::io::Error::other)?;
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
        writer.write_record(self.table.columns.iter().map(|c| c.name.as_str()))?;
        let mut text = String::new();
        for row in 0..self.batch.num_rows() {
            for column in self.batch.columns() {
                text.clear();
                write_cell(&mut text, column, row);
                writer.write_field(&text)?;
            }
            writer.write_record(None::<&[u8]>)?;
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

/// The footer key of a twin that holds the rows of the CSV with this BLAKE3 digest (hex).
const CSV_DIGEST_KEY: &str = "iodrift.csv_blake3";

fn csv_digest(csv: &[u8]) -> String {
    blake3::hash(csv).to_hex().to_string()
}

/// Appends row `row` of `column` to `text` as a CSV cell: nothing for null, numbers as
/// `format_number` writes them.
fn write_cell(text: &mut String, column: &ArrayRef, row: usize) {
    use std::fmt::Write;
    if column.is_null(row) {
        return;
    }
    match column.data_type() {
        DataType::Float64 => write_number(text, column.as_primitive::<Float64Type>().value(row)),
        // Writing into a String cannot fail.
        DataType::Int64 => {
            let _ = write!(text, "{}", column.as_primitive::<Int64Type>().value(row));
        }
        _ => text.push_str(column.as_string::<i32>().value(row)),
    }
}

/// Builds one column from CSV cells of its kind.
enum CellBuilder {
    String(StringBuilder),
    Double(Float64Builder),
    Bigint(Int64Builder),
}

impl CellBuilder {
    fn new(kind: ColumnKind) -> CellBuilder {
        match kind {
            ColumnKind::String => CellBuilder::String(StringBuilder::new()),
            ColumnKind::Double => CellBuilder::Double(Float64Builder::new()),
            ColumnKind::Bigint => CellBuilder::Bigint(Int64Builder::new()),
        }
    }

    /// Appends `cell`; an empty cell is null where `nullable`, else the empty string.
    fn append(&mut self, cell: &str, nullable: bool) -> std::result::Result<(), String> {
        match self {
            CellBuilder::String(b) if cell.is_empty() && nullable => b.append_null(),
            CellBuilder::String(b) => b.append_value(cell),
            CellBuilder::Double(b) => b.append_option(parse_stat(cell)?),
            CellBuilder::Bigint(b) => b.append_option(parse_integer(cell)?),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            CellBuilder::String(b) => Arc::new(b.finish()),
            CellBuilder::Double(b) => Arc::new(b.finish()),
            CellBuilder::Bigint(b) => Arc::new(b.finish()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::S3Options;
    use crate::rule::Rules;

    fn drift_table() -> Arc<Table> {
        Rules::built_in()
            .unwrap()
            .tables()
            .find(|t| t.name == "drift_baseline")
            .unwrap()
            .clone()
    }

    fn baseline(table: &Arc<Table>, csv: &str) -> Baseline {
        Baseline::parse_csv("test.csv", csv.as_bytes(), table).unwrap()
    }

    const HEADER: &str = "cluster,level,entity,measure,slot,spans,q25,q50,q75,peak,trough\n";

    async fn written(csv: &str) -> (tempfile::TempDir, Location, Arc<Table>, Baseline) {
        let table = drift_table();
        let dir = tempfile::tempdir().unwrap();
        let location =
            Location::parse(dir.path().to_str().unwrap(), &S3Options::default()).unwrap();
        let written = baseline(&table, csv);
        written.write(&location).await.unwrap();
        (dir, location, table, written)
    }

    #[tokio::test]
    async fn the_twin_holds_what_the_csv_parses_to() {
        let csv = format!("{HEADER}c,pod,web-1,inbound_network_io,3,800,1.5,2.25,3,4.125,0.1\n");
        let (_dir, location, table, written) = written(&csv).await;
        let bytes = location
            .read("drift_baseline.parquet")
            .await
            .unwrap()
            .unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        let footer = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap();
        assert!(footer.iter().any(|kv| kv.key == CSV_DIGEST_KEY
            && kv.value.as_deref() == Some(csv_digest(csv.as_bytes()).as_str())));
        let read = Baseline::read_csv(&location, &table)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.batch, written.batch);
    }

    #[tokio::test]
    async fn a_twin_is_read_only_under_its_csvs_digest() {
        let original =
            format!("{HEADER}c,pod,web-1,inbound_network_io,3,800,1.5,2.25,3,4.125,0.1\n");
        let (dir, location, table, _) = written(&original).await;
        // A twin under the CSV's digest is what readers get (here: other rows than the CSV's).
        let other = baseline(
            &table,
            &format!("{HEADER}c,pod,web-2,inbound_network_io,3,900,1,2,3,4,0\n"),
        );
        let properties = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![KeyValue::new(
                CSV_DIGEST_KEY.to_string(),
                csv_digest(original.as_bytes()),
            )]))
            .build();
        let file = std::fs::File::create(dir.path().join("drift_baseline.parquet")).unwrap();
        let mut writer =
            ArrowWriter::try_new(file, other.batch.schema(), Some(properties)).unwrap();
        writer.write(&other.batch).unwrap();
        writer.close().unwrap();
        let read = Baseline::read_csv(&location, &table)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.batch, other.batch);

        // A user's edit of the CSV changes its digest: the CSV is read, the twin ignored.
        let edited = original.replace(",800,", ",801,");
        std::fs::write(dir.path().join("drift_baseline.csv"), &edited).unwrap();
        let read = Baseline::read_csv(&location, &table)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.batch, baseline(&table, &edited).batch);

        // ... and an edit that breaks the CSV is reported, whatever the twin holds.
        let broken = format!("{edited}c,pod,web-1,inbound_network_io,3,1,1,1,1,1,1\n");
        std::fs::write(dir.path().join("drift_baseline.csv"), &broken).unwrap();
        let error = Baseline::read_csv(&location, &table).await.unwrap_err();
        assert!(error.to_string().contains("duplicate key"), "{error}");
    }

    #[tokio::test]
    async fn a_csv_no_reader_accepts_gets_a_twin_without_a_digest() {
        let table = drift_table();
        let twice = baseline(
            &table,
            &format!("{HEADER}c,pod,web-1,inbound_network_io,3,800,1,2,3,4,0\n"),
        );
        let doubled = Baseline {
            table: table.clone(),
            batch: concat_batches(&twice.batch.schema(), [&twice.batch, &twice.batch]).unwrap(),
        };
        let dir = tempfile::tempdir().unwrap();
        let location =
            Location::parse(dir.path().to_str().unwrap(), &S3Options::default()).unwrap();
        doubled.write(&location).await.unwrap();
        let error = Baseline::read_csv(&location, &table).await.unwrap_err();
        assert!(error.to_string().contains("duplicate key"), "{error}");
    }
}
