//! In-memory tables every context holds the same way: a lookup, and the `rules` table of each
//! rule's names and risk data; built here for the session and for a cluster's scheduler alike.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;

use crate::error::{Error, Result};
use crate::rules::{RULES, Rule};

/// A table of `batch`, held in memory.
pub fn memory_table(name: &str, batch: RecordBatch) -> Result<Arc<dyn TableProvider>> {
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]])
        .map_err(Error::query(format!("register table {name}")))?;
    Ok(Arc::new(table))
}

/// The `rules` table: each rule's name, ESCU detection name and risk data.
pub fn rules_batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("rule", DataType::Utf8, false),
        Field::new("detection", DataType::Utf8, false),
        Field::new("lookup", DataType::Utf8, false),
        Field::new("risk_score", DataType::Int64, false),
        Field::new("risk_message", DataType::Utf8, false),
        Field::new("mitre_attack_id", DataType::Utf8, false),
    ]));
    let strings =
        |f: fn(&Rule) -> &'static str| Arc::new(StringArray::from_iter_values(RULES.iter().map(f)));
    RecordBatch::try_new(
        schema,
        vec![
            strings(|r| r.name),
            strings(|r| r.detection),
            strings(|r| r.lookup),
            Arc::new(Int64Array::from_iter_values(
                RULES.iter().map(|r| r.risk_score),
            )),
            strings(|r| r.risk_message),
            strings(|r| r.mitre_attack_id),
        ],
    )
    .expect("the rules table matches its schema")
}
