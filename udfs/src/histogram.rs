//! Histograms as values: `histogram(value [, weight])` counts a group's values per distinct value,
//! `histogram_sum(histogram)` adds histograms up, `histogram_quantile(histogram, share)` reads one.
//!
//! Written by hand because DataFusion has no histogram type. A histogram is a struct of two lists,
//! `bins` (distinct values in increasing order, `f64::total_cmp`) and `counts` (their weights):
//! one row per group, where the same counts as rows of (bin, count) take one row per bin and a
//! grouping on the bin. Sums are exact and independent of order, so stored hourly histograms add
//! up to the very histogram of the whole window, and their quantile is `weighted_quantile`'s.

use std::mem::size_of;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, ListArray, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, EmitTo, GroupsAccumulator,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::groups::{GroupStates, selected};
use crate::quantile::{
    Histogram, Inputs, in_order, merge_all, merge_states, quantile_of_sorted, state_arrays,
    state_lists, state_row, state_scalars, values_type, weights_type,
};

pub const HISTOGRAM_UDAF_NAME: &str = "histogram";
pub const HISTOGRAM_SUM_UDAF_NAME: &str = "histogram_sum";
pub const HISTOGRAM_QUANTILE_UDF_NAME: &str = "histogram_quantile";

/// The type of a histogram value: `{bins: [double], counts: [bigint unsigned]}`.
pub fn histogram_type() -> DataType {
    DataType::Struct(histogram_fields())
}

fn histogram_fields() -> Fields {
    Fields::from(vec![
        Field::new("bins", values_type(), false),
        Field::new("counts", weights_type(), false),
    ])
}

/// `histograms` as one array of histogram values.
fn histogram_array<'a>(histograms: impl Iterator<Item = &'a Histogram>) -> ArrayRef {
    Arc::new(StructArray::new(
        histogram_fields(),
        state_arrays(histograms),
        None,
    ))
}

/// A column of histogram values as its two lists (`None` for a null histogram's row).
struct Histograms<'a> {
    column: &'a StructArray,
    bins: &'a ListArray,
    counts: &'a ListArray,
}

impl<'a> Histograms<'a> {
    fn of(column: &'a ArrayRef, function: &str) -> Result<Histograms<'a>> {
        let Some(column) = column.as_struct_opt() else {
            return exec_err!("{function}: the argument is not a histogram");
        };
        let (bins, counts) = state_lists(column.columns())
            .or_else(|_| exec_err!("{function}: the argument is not a histogram"))?;
        Ok(Histograms {
            column,
            bins,
            counts,
        })
    }

    /// Row `row`'s bins and counts (empty when it is null).
    fn row(&self, row: usize) -> (&[f64], &[u64]) {
        if self.column.is_null(row) || self.bins.is_null(row) || self.counts.is_null(row) {
            return (&[], &[]);
        }
        state_row(self.bins, self.counts, row)
    }

    /// Adds row `row`'s histogram (none when it is null) to `histogram`.
    fn add_row(&self, histogram: &mut Histogram, row: usize) {
        let (bins, counts) = self.row(row);
        histogram.add_all(bins, counts);
    }
}

/// Whether `data_type` has a histogram's shape (the nullability of its parts aside: a
/// histogram read back from a file may have lost it).
fn is_histogram(data_type: &DataType) -> bool {
    let DataType::Struct(fields) = data_type else {
        return false;
    };
    let expected = histogram_fields();
    fields.len() == expected.len()
        && fields.iter().zip(expected.iter()).all(|(f, e)| {
            f.name() == e.name()
                && match (f.data_type(), e.data_type()) {
                    (DataType::List(a), DataType::List(b)) => a.data_type() == b.data_type(),
                    _ => false,
                }
        })
}

/// What an aggregate adds up: values (with weights), or histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Adds {
    Values,
    Histograms,
}

impl Adds {
    fn name(self) -> &'static str {
        match self {
            Adds::Values => HISTOGRAM_UDAF_NAME,
            Adds::Histograms => HISTOGRAM_SUM_UDAF_NAME,
        }
    }

    /// Adds each selected row of `columns` to its group's histogram (`into(row)` picks it).
    fn update(
        self,
        columns: &[ArrayRef],
        filter: Option<&BooleanArray>,
        mut into: impl FnMut(usize, &mut dyn FnMut(&mut Histogram)),
    ) -> Result<()> {
        let Some(first) = columns.first() else {
            return exec_err!("{}: no argument", self.name());
        };
        match self {
            Adds::Values => {
                let values = values_of(first, columns.get(1))?;
                for row in 0..first.len() {
                    if selected(filter, row)
                        && let Some((value, weight)) = values.row(row)?
                    {
                        into(row, &mut |h| h.add(value, weight));
                    }
                }
            }
            Adds::Histograms => {
                let histograms = Histograms::of(first, self.name())?;
                for row in 0..first.len() {
                    if selected(filter, row) {
                        into(row, &mut |h| histograms.add_row(h, row));
                    }
                }
            }
        }
        Ok(())
    }
}

/// `histogram`'s value and optional weight columns, checked.
fn values_of<'a>(values: &'a ArrayRef, weights: Option<&'a ArrayRef>) -> Result<Inputs<'a>> {
    let Some(values) = values.as_primitive_opt::<Float64Type>() else {
        return exec_err!("{HISTOGRAM_UDAF_NAME}: the value is not a double");
    };
    let weights = match weights {
        None => None,
        Some(w) => match w.as_primitive_opt::<Int64Type>() {
            Some(w) => Some(w),
            None => return exec_err!("{HISTOGRAM_UDAF_NAME}: the weight is not a bigint"),
        },
    };
    Ok(Inputs::new(HISTOGRAM_UDAF_NAME, values, weights))
}

/// `histogram` and `histogram_sum`: one implementation, told what it adds up.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HistogramAggregate {
    adds: Adds,
    signature: Signature,
}

impl HistogramAggregate {
    /// `histogram(value [, weight])`: each distinct value's count (or total weight); rows whose
    /// value or weight is null are left out.
    pub fn of_values() -> AggregateUDF {
        AggregateUDF::from(HistogramAggregate {
            adds: Adds::Values,
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }

    /// `histogram_sum(histogram)`: the histograms added up, bin by bin; nulls are left out.
    pub fn of_histograms() -> AggregateUDF {
        AggregateUDF::from(HistogramAggregate {
            adds: Adds::Histograms,
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

impl AggregateUDFImpl for HistogramAggregate {
    fn name(&self) -> &str {
        self.adds.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let numeric = |t: &DataType| t.is_numeric() || t.is_null();
        let integer = |t: &DataType| t.is_integer() || t.is_null();
        match (self.adds, arg_types) {
            (Adds::Values, [v]) if numeric(v) => Ok(vec![DataType::Float64]),
            (Adds::Values, [v, w]) if numeric(v) && integer(w) => {
                Ok(vec![DataType::Float64, DataType::Int64])
            }
            (Adds::Values, _) => plan_err!(
                "{HISTOGRAM_UDAF_NAME} takes (value) or (value, integer weight), got {arg_types:?}"
            ),
            (Adds::Histograms, [h]) if is_histogram(h) => Ok(vec![h.clone()]),
            (Adds::Histograms, _) => plan_err!(
                "{HISTOGRAM_SUM_UDAF_NAME} takes one histogram (from {HISTOGRAM_UDAF_NAME}), got {arg_types:?}"
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(histogram_type())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "bins"),
                values_type(),
                false,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "counts"),
                weights_type(),
                false,
            )),
        ])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(HistogramAccumulator {
            adds: self.adds,
            histogram: Histogram::default(),
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(HistogramGroups {
            adds: self.adds,
            groups: GroupStates::default(),
        }))
    }
}

#[derive(Debug)]
struct HistogramAccumulator {
    adds: Adds,
    histogram: Histogram,
}

impl Accumulator for HistogramAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let histogram = &mut self.histogram;
        self.adds.update(values, None, |_, add| add(histogram))
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        ScalarValue::try_from_array(&histogram_array(std::iter::once(&self.histogram)), 0)
    }

    fn size(&self) -> usize {
        size_of::<Self>() + crate::groups::HeapSize::heap_size(&self.histogram)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        state_scalars(&self.histogram)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        merge_all(&mut self.histogram, states)
    }
}

#[derive(Debug)]
struct HistogramGroups {
    adds: Adds,
    groups: GroupStates<Histogram>,
}

impl GroupsAccumulator for HistogramGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.grow(total_num_groups, Histogram::default);
        let groups = &mut self.groups;
        self.adds.update(values, opt_filter, |row, add| {
            groups.update(group_indices[row], |h| add(h))
        })
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(histogram_array(self.groups.take(emit_to).iter()))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(state_arrays(self.groups.take(emit_to).iter()))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        merge_states(&mut self.groups, values, group_indices, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let rows = values.first().map_or(0, |c| c.len());
        let mut histograms = vec![Histogram::default(); rows];
        self.adds
            .update(values, opt_filter, |row, add| add(&mut histograms[row]))?;
        Ok(state_arrays(histograms.iter()))
    }

    fn size(&self) -> usize {
        self.groups.size()
    }
}

/// `histogram_quantile(histogram, share)`: the lowest bin whose count, with the counts of every
/// lower bin, reaches `share` (0 to 1) of the total; null for an empty or null histogram.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HistogramQuantile {
    signature: Signature,
}

impl HistogramQuantile {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::from(HistogramQuantile {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for HistogramQuantile {
    fn name(&self) -> &str {
        HISTOGRAM_QUANTILE_UDF_NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [h, share] if is_histogram(h) && (share.is_numeric() || share.is_null()) => {
                Ok(vec![h.clone(), DataType::Float64])
            }
            _ => plan_err!(
                "{HISTOGRAM_QUANTILE_UDF_NAME} takes (histogram, share), got {arg_types:?}"
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let [histogram, share] = args.args.as_slice() else {
            return exec_err!("{HISTOGRAM_QUANTILE_UDF_NAME} takes (histogram, share)");
        };
        let rows = if scalar { 1 } else { args.number_rows };
        let (histogram, share) = (histogram.to_array(rows)?, share.to_array(rows)?);
        let histograms = Histograms::of(&histogram, HISTOGRAM_QUANTILE_UDF_NAME)?;
        let Some(shares) = share.as_primitive_opt::<Float64Type>() else {
            return exec_err!("{HISTOGRAM_QUANTILE_UDF_NAME}: the share is not a double");
        };
        let mut one = Histogram::default();
        let quantiles = (0..rows)
            .map(|row| {
                if shares.is_null(row) || histograms.column.is_null(row) {
                    return Ok(None);
                }
                let share = shares.value(row);
                if !(0.0..=1.0).contains(&share) {
                    return exec_err!(
                        "{HISTOGRAM_QUANTILE_UDF_NAME}: the share must be between 0 and 1, not {share}"
                    );
                }
                let (bins, counts) = histograms.row(row);
                let pairs = bins.iter().copied().zip(counts.iter().copied());
                if in_order(bins) {
                    return quantile_of_sorted(pairs, share);
                }
                // A histogram that this crate did not make: its bins put in order first.
                one.clear();
                histograms.add_row(&mut one, row);
                one.quantile(share)
            })
            .collect::<Result<Float64Array>>()?;
        let quantiles: ArrayRef = Arc::new(quantiles);
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&quantiles, 0)?)
        } else {
            ColumnarValue::Array(quantiles)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::Schema;
    use datafusion::prelude::SessionContext;

    fn context() -> SessionContext {
        let ctx = SessionContext::new();
        crate::register_all(&ctx);
        ctx
    }

    /// Rows of (group, value, weight) over three partitions, so that partial states merge.
    fn table(ctx: &SessionContext) -> Result<()> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("g", DataType::Int64, false),
            Field::new("v", DataType::Float64, true),
            Field::new("w", DataType::Int64, true),
        ]));
        let rows: Vec<(i64, Option<f64>, Option<i64>)> = (0..300)
            .map(|i| {
                let v = ((i * 37) % 23) as f64 / 8.0 - 1.0;
                let w = i % 5;
                match i % 29 {
                    0 => (i % 4, None, Some(w)),
                    1 => (i % 4, Some(v), None),
                    _ => (i % 4, Some(v), Some(w)),
                }
            })
            .collect();
        let batch = |part: &[(i64, Option<f64>, Option<i64>)]| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(part.iter().map(|r| r.0))),
                    Arc::new(Float64Array::from_iter(part.iter().map(|r| r.1))),
                    Arc::new(Int64Array::from_iter(part.iter().map(|r| r.2))),
                ],
            )
        };
        let partitions = rows
            .chunks(100)
            .map(|part| batch(part).map(|b| vec![b]))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let table = datafusion::datasource::MemTable::try_new(schema.clone(), partitions)?;
        ctx.register_table("t", Arc::new(table))?;
        Ok(())
    }

    async fn rows(ctx: &SessionContext, sql: &str) -> Result<Vec<String>> {
        let batches = ctx.sql(sql).await?.collect().await?;
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
        Ok(text.lines().map(str::to_string).collect())
    }

    #[tokio::test]
    async fn hourly_histograms_added_up_give_weighted_quantiles_answer() -> Result<()> {
        let ctx = context();
        table(&ctx)?;
        // Per group, weighted_quantile over the rows against the quantile of histograms made
        // per (group, sub-group) and then added up, as a rollup and its merge do.
        let direct = rows(
            &ctx,
            "SELECT g, sum(w) AS total, weighted_quantile(v, w, 0.25) AS q25, \
                    weighted_quantile(v, w, 0.5) AS q50, weighted_quantile(v, w, 1.0) AS q100 \
             FROM t WHERE v IS NOT NULL AND w IS NOT NULL GROUP BY g ORDER BY g",
        )
        .await?;
        let merged = rows(
            &ctx,
            "WITH parts AS (SELECT g, sum(w) AS total, histogram(v, w) AS h FROM t \
                            WHERE v IS NOT NULL AND w IS NOT NULL GROUP BY g, CAST(v * 8 AS BIGINT) % 3) \
             SELECT g, sum(total) AS total, histogram_quantile(histogram_sum(h), 0.25) AS q25, \
                    histogram_quantile(histogram_sum(h), 0.5) AS q50, \
                    histogram_quantile(histogram_sum(h), 1.0) AS q100 \
             FROM parts GROUP BY g ORDER BY g",
        )
        .await?;
        assert_eq!(direct, merged);
        assert_eq!(
            direct.len(),
            4 + 4,
            "a header, four groups and borders: {direct:?}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_histogram_lists_its_distinct_values_in_order_with_their_counts() -> Result<()> {
        let ctx = context();
        let got = rows(
            &ctx,
            "WITH t AS (SELECT * FROM (VALUES (2.0, 1), (0.5, 3), (2.0, 2), (NULL, 4), (0.5, NULL)) AS t(v, w)), \
                  h AS (SELECT histogram(v) AS h, histogram(v, w) AS hw FROM t) \
             SELECT h.h, h.hw, s.s FROM h CROSS JOIN (SELECT histogram_sum(h) AS s FROM h) AS s",
        )
        .await?;
        assert_eq!(
            got[3],
            "| {bins: [0.5, 2.0], counts: [2, 2]} | {bins: [0.5, 2.0], counts: [3, 3]} | {bins: [0.5, 2.0], counts: [2, 2]} |"
        );
        let empty = rows(
            &ctx,
            "SELECT histogram_quantile(histogram(v), 0.5) AS q FROM (VALUES (CAST(NULL AS DOUBLE))) AS t(v)",
        )
        .await?;
        assert_eq!(empty[3], "|   |");
        Ok(())
    }

    #[tokio::test]
    async fn wrong_arguments_are_errors_that_name_the_function() {
        let ctx = context();
        for (sql, says) in [
            ("SELECT histogram('a')", "histogram takes"),
            (
                "SELECT histogram_sum(1.0)",
                "histogram_sum takes one histogram",
            ),
            (
                "SELECT histogram_quantile(histogram(v), 2.0) FROM (VALUES (1.0)) AS t(v)",
                "share must be between 0 and 1",
            ),
            (
                "SELECT histogram(v, w) FROM (VALUES (1.0, -2)) AS t(v, w)",
                "weights must not be negative",
            ),
        ] {
            let result = match ctx.sql(sql).await {
                Ok(frame) => frame.collect().await.map(|_| ()),
                Err(e) => Err(e),
            };
            let error = result.expect_err(sql).to_string();
            assert!(error.contains(says), "{sql}: {error}");
        }
    }
}
