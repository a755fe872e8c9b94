//! In-memory tables every context holds the same way: a lookup, and the `rules` table of each
//! rule's names, persistence and risk data.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;

use crate::error::{Error, Result};
use crate::rule::{Rule, Rules};

/// A table of `batch`, held in memory.
pub fn memory_table(name: &str, batch: RecordBatch) -> Result<Arc<dyn TableProvider>> {
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]])
        .map_err(Error::query(format!("register table {name}")))?;
    Ok(Arc::new(table))
}

/// The `rules` table: each rule's name, title, baseline tables, persistence and risk data.
pub fn rules_batch(rules: &Rules) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("rule", DataType::Utf8, false),
        Field::new("detection", DataType::Utf8, false),
        Field::new("schema", DataType::Utf8, false),
        Field::new("tables", DataType::Utf8, false),
        Field::new("min_buckets", DataType::Int64, false),
        Field::new("risk_score", DataType::Int64, false),
        Field::new("risk_message", DataType::Utf8, false),
        Field::new("mitre_attack_id", DataType::Utf8, false),
        Field::new("origin", DataType::Utf8, false),
    ]));
    let all = rules.all();
    let strings = |f: &dyn Fn(&Rule) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(all.iter().map(f)))
    };
    let integers = |f: &dyn Fn(&Rule) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(all.iter().map(f)))
    };
    RecordBatch::try_new(
        schema,
        vec![
            strings(&|r| r.name.clone()),
            strings(&|r| r.title.clone()),
            strings(&|r| r.namespace.clone()),
            strings(&|r| {
                r.tables
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            }),
            integers(&|r| r.min_buckets),
            integers(&|r| r.risk_score),
            strings(&|r| r.risk_message.clone()),
            strings(&|r| r.mitre_attack_id.clone()),
            strings(&|r| r.origin.clone()),
        ],
    )
    .expect("the rules table matches its schema")
}
