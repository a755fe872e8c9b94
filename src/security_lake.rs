//! Amazon Security Lake custom-source objects: OCSF Detection Findings as one Parquet file per
//! run, sorted by time, under `<source>/region=<r>/accountId=<id>/eventDay=<YYYYMMDD>/`.
//!
//! The Arrow schema is written out here: Security Lake's crawler reads the columns of the files,
//! so every file must give each OCSF attribute the same type whatever a run's events hold (an
//! inferred schema would change with them). OCSF's JSON-typed attributes (`evidences.data`,
//! `unmapped`'s values) are stored as JSON text, as Security Lake's own sources store them.

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::{SortColumn, lexsort_to_indices, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::location::Location;

/// Where a custom source's objects go: its location (`s3://<bucket>/ext/<source>`, as Security
/// Lake shows it), and the partition values its files are written under.
#[derive(Debug, Clone)]
pub struct CustomSource {
    pub location: Location,
    pub region: String,
    pub account_id: String,
}

impl CustomSource {
    /// The object, below the source's location, of a run's events whose time is `time`: one per
    /// run (`name` says which), so a rerun replaces it.
    pub fn object(&self, time: DateTime<Utc>, name: &str) -> String {
        format!(
            "region={}/accountId={}/eventDay={}/{name}.parquet",
            self.region,
            self.account_id,
            time.format("%Y%m%d")
        )
    }

    /// Writes `events` (OCSF Detection Findings of one run at `time`) as one Parquet object;
    /// nothing for a run without events. Returns the object's location.
    pub async fn write(
        &self,
        events: &[Value],
        time: DateTime<Utc>,
        name: &str,
    ) -> Result<Option<String>> {
        if events.is_empty() {
            return Ok(None);
        }
        let batch = to_batch(events)?;
        let relative = self.object(time, name);
        let mut bytes = Vec::new();
        let fail = |e: datafusion::parquet::errors::ParquetError| {
            Error::query("write a Security Lake object")(e.into())
        };
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let mut writer =
            ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties)).map_err(fail)?;
        writer.write(&batch).map_err(fail)?;
        writer.close().map_err(fail)?;
        self.location
            .write(&relative, |file| file.write_all(&bytes))
            .await?;
        Ok(Some(self.location.display_at(&relative)))
    }
}

/// The events as rows of [`schema`], sorted by time (then by finding id, for a stable order).
pub fn to_batch(events: &[Value]) -> Result<RecordBatch> {
    let fail = |e: datafusion::arrow::error::ArrowError| {
        Error::query("OCSF events as Parquet columns")(e.into())
    };
    let rows: Vec<Value> = events.iter().map(with_json_text).collect();
    let mut decoder = ReaderBuilder::new(SCHEMA.clone())
        .with_batch_size(rows.len().max(1))
        .build_decoder()
        .map_err(fail)?;
    decoder.serialize(&rows).map_err(fail)?;
    let batch = decoder
        .flush()
        .map_err(fail)?
        .unwrap_or_else(|| RecordBatch::new_empty(SCHEMA.clone()));
    let time = batch
        .column_by_name("time")
        .expect("the schema has time")
        .clone();
    let uid = batch
        .column_by_name("finding_info")
        .expect("the schema has finding_info")
        .as_struct()
        .column_by_name("uid")
        .expect("finding_info has uid")
        .clone();
    let order = lexsort_to_indices(
        &[
            SortColumn {
                values: time,
                options: None,
            },
            SortColumn {
                values: uid,
                options: None,
            },
        ],
        None,
    )
    .map_err(fail)?;
    take_record_batch(&batch, &order).map_err(fail)
}

/// The event with its JSON-typed attributes as JSON text: each evidence's `data`, and each
/// value of `unmapped` that is not a string.
fn with_json_text(event: &Value) -> Value {
    let mut event = event.clone();
    if let Some(evidences) = event.get_mut("evidences").and_then(Value::as_array_mut) {
        for evidence in evidences {
            if let Some(data) = evidence.get_mut("data")
                && !data.is_string()
            {
                *data = Value::String(data.to_string());
            }
        }
    }
    if let Some(unmapped) = event.get_mut("unmapped").and_then(Value::as_object_mut) {
        for value in unmapped.values_mut() {
            if !value.is_string() {
                *value = Value::String(value.to_string());
            }
        }
    }
    event
}

/// The columns of iodrift's Detection Findings: every attribute `ocsf` writes, typed as OCSF
/// types them (integers as 32-bit, `long_t` and `timestamp_t` as 64-bit, JSON as text).
pub static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let int = |name: &str| Field::new(name, DataType::Int32, true);
    let long = |name: &str| Field::new(name, DataType::Int64, true);
    let texts = |name: &str| {
        Field::new(
            name,
            DataType::List(Arc::new(Field::new("element", DataType::Utf8, true))),
            true,
        )
    };
    let object = |name: &str, fields: Vec<Field>| {
        Field::new(name, DataType::Struct(Fields::from(fields)), true)
    };
    let objects = |name: &str, fields: Vec<Field>| {
        Field::new(
            name,
            DataType::List(Arc::new(Field::new(
                "element",
                DataType::Struct(Fields::from(fields)),
                true,
            ))),
            true,
        )
    };
    let named = |name: &str| object(name, vec![text("name"), text("uid")]);
    Arc::new(Schema::new(vec![
        int("activity_id"),
        text("activity_name"),
        int("category_uid"),
        text("category_name"),
        int("class_uid"),
        text("class_name"),
        long("type_uid"),
        text("type_name"),
        int("severity_id"),
        text("severity"),
        int("risk_score"),
        int("risk_level_id"),
        text("risk_level"),
        int("confidence_id"),
        text("confidence"),
        int("confidence_score"),
        int("status_id"),
        text("status"),
        long("time"),
        long("start_time"),
        long("end_time"),
        int("timezone_offset"),
        int("count"),
        text("message"),
        object(
            "metadata",
            vec![
                text("version"),
                object(
                    "product",
                    vec![text("name"), text("vendor_name"), text("version")],
                ),
                text("log_name"),
                text("log_provider"),
            ],
        ),
        object(
            "finding_info",
            vec![
                text("uid"),
                text("title"),
                text("desc"),
                texts("types"),
                object(
                    "analytic",
                    vec![text("name"), text("uid"), int("type_id"), text("type")],
                ),
                objects("attacks", vec![named("technique"), named("tactic")]),
                texts("data_sources"),
                long("created_time"),
                long("first_seen_time"),
                long("last_seen_time"),
            ],
        ),
        objects(
            "resources",
            vec![
                text("type"),
                text("name"),
                text("uid"),
                text("namespace"),
                texts("labels"),
            ],
        ),
        objects("evidences", vec![text("data")]),
        objects(
            "observables",
            vec![text("name"), int("type_id"), text("type"), text("value")],
        ),
        Field::new(
            "unmapped",
            DataType::Map(
                Arc::new(Field::new(
                    "entries",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", DataType::Utf8, false),
                        Field::new("value", DataType::Utf8, true),
                    ])),
                    false,
                )),
                false,
            ),
            true,
        ),
    ]))
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocsf::tests::{context, finding, rule};

    /// Parses `value`'s text again, so that numbers compare by value.
    fn normal(value: &Value) -> Value {
        serde_json::from_str(&value.to_string()).unwrap()
    }

    #[test]
    fn every_attribute_of_an_event_has_a_column() {
        let ratio = rule("network-io-ratio");
        let mut late = finding("network-io-ratio");
        late.window_end = "2026-03-02T02:50:00Z".into();
        let events = vec![
            crate::ocsf::detection_finding(&late, &ratio, &context()).unwrap(),
            crate::ocsf::detection_finding(&finding("network-io-ratio"), &ratio, &context())
                .unwrap(),
        ];
        let batch = to_batch(&events).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let mut json = Vec::new();
        let mut writer = datafusion::arrow::json::ArrayWriter::new(&mut json);
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        let rows: Vec<Value> = serde_json::from_slice(&json).unwrap();
        // Sorted by time: the earlier window first.
        assert_eq!(normal(&rows[0]), normal(&with_json_text(&events[1])));
        assert_eq!(normal(&rows[1]), normal(&with_json_text(&events[0])));
        assert!(rows[0]["evidences"][0]["data"].is_string());
        assert!(rows[0]["unmapped"]["anomaly_analyses"].is_string());
    }

    #[test]
    fn objects_are_partitioned_as_security_lake_reads_them() {
        let source = CustomSource {
            location: Location::parse("/tmp/lake/ext/iodrift", &Default::default()).unwrap(),
            region: "eu-west-1".into(),
            account_id: "123456789012".into(),
        };
        let time = DateTime::parse_from_rfc3339("2026-03-02T01:50:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            source.object(time, "detect_run"),
            "region=eu-west-1/accountId=123456789012/eventDay=20260302/detect_run.parquet"
        );
    }
}
