//! `weighted_quantile(value, weight, share)`: the lowest value whose weight, with the weight of
//! every lower value, reaches `share` of the total weight: a quantile of a histogram given as
//! (bin, count) rows, exact and independent of row order and of how partial aggregates merge.
//!
//! Written by hand because DataFusion's quantiles either take no weights (`percentile_cont`,
//! `median`) or are approximate (`approx_percentile_cont_with_weight`, a t-digest). SQL can say
//! it with a running sum over the bins (`sum(...) OVER (... ORDER BY bin)`), but that sorts every
//! bin of every group; this keeps each group's few distinct values in a small sorted list.

use std::mem::size_of;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Float64Builder, Int64Array, ListArray,
    ListBuilder, RecordBatch, UInt64Builder,
};
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, Float64Type, Int64Type, Schema, UInt64Type,
};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, EmitTo, GroupsAccumulator,
    Signature, Volatility,
};
use datafusion::physical_expr::PhysicalExpr;

use crate::groups::{GroupStates, HeapSize, selected};

pub const WEIGHTED_QUANTILE_UDAF_NAME: &str = "weighted_quantile";

/// Totals above this lose integer precision in a double, which the exact comparison relies on.
const MAX_TOTAL: u64 = 1 << 53;

/// The weights of distinct values, in increasing order of value (`f64::total_cmp`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    bins: Vec<(f64, u64)>,
}

impl Histogram {
    /// Adds `weight` to `value`'s bin; a zero weight adds no bin.
    pub fn add(&mut self, value: f64, weight: u64) {
        if weight == 0 {
            return;
        }
        match self.bins.binary_search_by(|(bin, _)| bin.total_cmp(&value)) {
            Ok(found) => self.bins[found].1 = self.bins[found].1.saturating_add(weight),
            Err(at) => self.bins.insert(at, (value, weight)),
        }
    }

    /// Adds the bins `values` with their `weights`: in one pass when the values are in
    /// increasing order (a histogram's own lists), one by one otherwise.
    pub fn add_all(&mut self, values: &[f64], weights: &[u64]) {
        if !in_order(values) {
            values
                .iter()
                .zip(weights)
                .for_each(|(value, weight)| self.add(*value, *weight));
            return;
        }
        let incoming = values
            .iter()
            .copied()
            .zip(weights.iter().copied())
            .filter(|(_, weight)| *weight > 0);
        if self.bins.is_empty() {
            self.bins.extend(incoming);
            return;
        }
        let own = std::mem::take(&mut self.bins);
        let mut merged = Vec::with_capacity(own.len() + values.len());
        let mut next = 0;
        for (value, weight) in incoming {
            while own
                .get(next)
                .is_some_and(|(bin, _)| bin.total_cmp(&value).is_lt())
            {
                merged.push(own[next]);
                next += 1;
            }
            match own.get(next) {
                Some(&(bin, count)) if bin.total_cmp(&value).is_eq() => {
                    merged.push((bin, count.saturating_add(weight)));
                    next += 1;
                }
                _ => merged.push((value, weight)),
            }
        }
        merged.extend_from_slice(&own[next..]);
        self.bins = merged;
    }

    /// Empties it, keeping its allocation.
    pub fn clear(&mut self) {
        self.bins.clear();
    }

    /// The lowest value whose cumulative weight reaches `share` of the total (exactly: `share`
    /// times the total, as real numbers, at most the cumulative weight); `None` when empty.
    pub fn quantile(&self, share: f64) -> Result<Option<f64>> {
        quantile_of_sorted(self.bins.iter().copied(), share)
    }
}

/// [`Histogram::quantile`] of the (value, weight) pairs `bins`, in increasing order of value.
pub(crate) fn quantile_of_sorted(
    bins: impl Iterator<Item = (f64, u64)> + Clone,
    share: f64,
) -> Result<Option<f64>> {
    let total = bins
        .clone()
        .fold(0u64, |total, (_, weight)| total.saturating_add(weight));
    if total == 0 {
        return Ok(None);
    }
    if total > MAX_TOTAL {
        return exec_err!("{WEIGHTED_QUANTILE_UDAF_NAME}: a total weight of {total} is above 2^53");
    }
    let mut below = 0u64;
    let mut last = None;
    for (value, weight) in bins {
        below += weight;
        // share·total − below, rounded once: its sign is the exact difference's sign.
        if share.mul_add(total as f64, -(below as f64)) <= 0.0 {
            return Ok(Some(value));
        }
        last = Some(value);
    }
    Ok(last)
}

impl HeapSize for Histogram {
    fn heap_size(&self) -> usize {
        self.bins.capacity() * size_of::<(f64, u64)>()
    }
}

/// The aggregate function; rows whose value or weight is null are ignored.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct WeightedQuantile {
    signature: Signature,
}

impl Default for WeightedQuantile {
    fn default() -> Self {
        WeightedQuantile::new()
    }
}

impl WeightedQuantile {
    pub fn new() -> WeightedQuantile {
        WeightedQuantile {
            signature: Signature::exact(
                vec![DataType::Float64, DataType::Int64, DataType::Float64],
                Volatility::Immutable,
            ),
        }
    }

    pub fn udaf() -> AggregateUDF {
        AggregateUDF::from(WeightedQuantile::new())
    }
}

/// The share argument: a constant between 0 and 1.
fn share_of(exprs: &[Arc<dyn PhysicalExpr>]) -> Result<f64> {
    let Some(expr) = exprs.get(2) else {
        return plan_err!("{WEIGHTED_QUANTILE_UDAF_NAME} takes (value, weight, share)");
    };
    let empty = RecordBatch::new_empty(Arc::new(Schema::empty()));
    let share = match expr.evaluate(&empty) {
        Ok(ColumnarValue::Scalar(ScalarValue::Float64(Some(share)))) => share,
        _ => return plan_err!("{WEIGHTED_QUANTILE_UDAF_NAME}: the share must be a constant"),
    };
    if !(0.0..=1.0).contains(&share) {
        return plan_err!(
            "{WEIGHTED_QUANTILE_UDAF_NAME}: the share must be between 0 and 1, not {share}"
        );
    }
    Ok(share)
}

pub(crate) fn values_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float64, false)))
}

pub(crate) fn weights_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::UInt64, false)))
}

impl AggregateUDFImpl for WeightedQuantile {
    fn name(&self) -> &str {
        WEIGHTED_QUANTILE_UDAF_NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "values"),
                values_type(),
                false,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "weights"),
                weights_type(),
                false,
            )),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(QuantileAccumulator {
            share: share_of(args.exprs)?,
            histogram: Histogram::default(),
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(QuantileGroups {
            share: share_of(args.exprs)?,
            groups: GroupStates::default(),
        }))
    }
}

/// A batch's value column and optional weight column (a weight of 1 without one), read as their
/// types once per batch, for the function `function`.
pub(crate) struct Inputs<'a> {
    function: &'static str,
    pub(crate) values: &'a Float64Array,
    weights: Option<&'a Int64Array>,
}

impl<'a> Inputs<'a> {
    /// `weighted_quantile`'s (value, weight) columns.
    fn of(columns: &'a [ArrayRef]) -> Result<Inputs<'a>> {
        match (
            columns
                .first()
                .and_then(|c| c.as_primitive_opt::<Float64Type>()),
            columns
                .get(1)
                .and_then(|c| c.as_primitive_opt::<Int64Type>()),
        ) {
            (Some(values), Some(weights)) => Ok(Inputs {
                function: WEIGHTED_QUANTILE_UDAF_NAME,
                values,
                weights: Some(weights),
            }),
            _ => exec_err!("{WEIGHTED_QUANTILE_UDAF_NAME}: the arguments are not (double, bigint)"),
        }
    }

    /// `values` and `weights` as they are.
    pub(crate) fn new(
        function: &'static str,
        values: &'a Float64Array,
        weights: Option<&'a Int64Array>,
    ) -> Inputs<'a> {
        Inputs {
            function,
            values,
            weights,
        }
    }

    /// Row `row`'s value and weight, `None` when either is null; a negative weight is an error.
    pub(crate) fn row(&self, row: usize) -> Result<Option<(f64, u64)>> {
        if self.values.is_null(row) {
            return Ok(None);
        }
        let weight = match self.weights {
            None => return Ok(Some((self.values.value(row), 1))),
            Some(weights) if weights.is_null(row) => return Ok(None),
            Some(weights) => weights.value(row),
        };
        let Ok(w) = u64::try_from(weight) else {
            return exec_err!(
                "{}: weights must not be negative, not {weight}",
                self.function
            );
        };
        Ok(Some((self.values.value(row), w)))
    }
}

/// The state columns of `histograms`: each one's values and weights, as two lists.
pub(crate) fn state_arrays<'a>(histograms: impl Iterator<Item = &'a Histogram>) -> Vec<ArrayRef> {
    let mut values = ListBuilder::new(Float64Builder::new())
        .with_field(Arc::new(Field::new_list_field(DataType::Float64, false)));
    let mut weights = ListBuilder::new(UInt64Builder::new())
        .with_field(Arc::new(Field::new_list_field(DataType::UInt64, false)));
    for histogram in histograms {
        for (value, weight) in &histogram.bins {
            values.values().append_value(*value);
            weights.values().append_value(*weight);
        }
        values.append(true);
        weights.append(true);
    }
    vec![Arc::new(values.finish()), Arc::new(weights.finish())]
}

/// The two state lists, checked.
pub(crate) fn state_lists(states: &[ArrayRef]) -> Result<(&ListArray, &ListArray)> {
    match (states.first(), states.get(1)) {
        (Some(values), Some(weights)) => {
            match (values.as_list_opt::<i32>(), weights.as_list_opt::<i32>()) {
                (Some(v), Some(w))
                    if v.value_type() == DataType::Float64
                        && w.value_type() == DataType::UInt64 =>
                {
                    Ok((v, w))
                }
                _ => exec_err!("{WEIGHTED_QUANTILE_UDAF_NAME}: unexpected state columns"),
            }
        }
        _ => exec_err!("{WEIGHTED_QUANTILE_UDAF_NAME}: unexpected state columns"),
    }
}

/// Adds each state row to the histogram of its group, growing the groups to `total_num_groups`.
pub(crate) fn merge_states(
    groups: &mut GroupStates<Histogram>,
    states: &[ArrayRef],
    group_indices: &[usize],
    total_num_groups: usize,
) -> Result<()> {
    let (values, weights) = state_lists(states)?;
    groups.grow(total_num_groups, Histogram::default);
    for (row, &group) in group_indices.iter().enumerate() {
        if values.is_valid(row) && weights.is_valid(row) {
            groups.update(group, |h| merge_row(h, values, weights, row));
        }
    }
    Ok(())
}

/// Adds state row `row` to `histogram`.
pub(crate) fn merge_row(
    histogram: &mut Histogram,
    values: &ListArray,
    weights: &ListArray,
    row: usize,
) {
    let (values, weights) = state_row(values, weights, row);
    histogram.add_all(values, weights);
}

/// State row `row`'s values and weights as slices (both empty when their lengths differ).
pub(crate) fn state_row<'a>(
    values: &'a ListArray,
    weights: &'a ListArray,
    row: usize,
) -> (&'a [f64], &'a [u64]) {
    let (v, w) = (values.value_offsets(), weights.value_offsets());
    let all_values = values.values().as_primitive::<Float64Type>().values();
    let all_weights = weights.values().as_primitive::<UInt64Type>().values();
    match (
        all_values.get(v[row] as usize..v[row + 1] as usize),
        all_weights.get(w[row] as usize..w[row + 1] as usize),
    ) {
        (Some(values), Some(weights)) if values.len() == weights.len() => (values, weights),
        _ => (&[], &[]),
    }
}

/// Whether `values` are in strictly increasing order (`f64::total_cmp`), as a histogram's bins are.
pub(crate) fn in_order(values: &[f64]) -> bool {
    values.windows(2).all(|w| w[0].total_cmp(&w[1]).is_lt())
}

/// One histogram's state, as the scalars an `Accumulator` returns.
pub(crate) fn state_scalars(histogram: &Histogram) -> Result<Vec<ScalarValue>> {
    state_arrays(std::iter::once(histogram))
        .iter()
        .map(|array| ScalarValue::try_from_array(array, 0))
        .collect()
}

/// Adds every state row of `states` to `histogram`.
pub(crate) fn merge_all(histogram: &mut Histogram, states: &[ArrayRef]) -> Result<()> {
    let (values, weights) = state_lists(states)?;
    for row in 0..values.len() {
        if values.is_valid(row) && weights.is_valid(row) {
            merge_row(histogram, values, weights, row);
        }
    }
    Ok(())
}

fn evaluate_all<'a>(
    histograms: impl Iterator<Item = &'a Histogram>,
    share: f64,
) -> Result<ArrayRef> {
    let result: Float64Array = histograms
        .map(|h| h.quantile(share))
        .collect::<Result<_>>()?;
    Ok(Arc::new(result))
}

#[derive(Debug)]
struct QuantileAccumulator {
    share: f64,
    histogram: Histogram,
}

impl Accumulator for QuantileAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let inputs = Inputs::of(values)?;
        for row in 0..inputs.values.len() {
            if let Some((value, weight)) = inputs.row(row)? {
                self.histogram.add(value, weight);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(self.histogram.quantile(self.share)?))
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.histogram.heap_size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        state_scalars(&self.histogram)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        merge_all(&mut self.histogram, states)
    }
}

#[derive(Debug)]
struct QuantileGroups {
    share: f64,
    groups: GroupStates<Histogram>,
}

impl GroupsAccumulator for QuantileGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        let inputs = Inputs::of(values)?;
        self.groups.grow(total_num_groups, Histogram::default);
        for (row, &group) in group_indices.iter().enumerate() {
            if selected(opt_filter, row)
                && let Some((value, weight)) = inputs.row(row)?
            {
                self.groups.update(group, |h| h.add(value, weight));
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let groups = self.groups.take(emit_to);
        evaluate_all(groups.iter(), self.share)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let groups = self.groups.take(emit_to);
        Ok(state_arrays(groups.iter()))
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
        let inputs = Inputs::of(values)?;
        let rows: Vec<Histogram> = (0..inputs.values.len())
            .map(|row| {
                let mut histogram = Histogram::default();
                if selected(opt_filter, row)
                    && let Some((value, weight)) = inputs.row(row)?
                {
                    histogram.add(value, weight);
                }
                Ok(histogram)
            })
            .collect::<Result<_>>()?;
        Ok(state_arrays(rows.iter()))
    }

    fn size(&self) -> usize {
        self.groups.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(rows: &[(f64, u64)]) -> Histogram {
        let mut h = Histogram::default();
        rows.iter().for_each(|(v, w)| h.add(*v, *w));
        h
    }

    #[test]
    fn the_quantile_is_the_lowest_value_whose_cumulative_weight_reaches_the_share() {
        // Weights 1, 2, 1 on 0, 1, 2: cumulative 1, 3, 4 of 4.
        let h = histogram(&[(2.0, 1), (0.0, 1), (1.0, 2)]);
        assert_eq!(h.quantile(0.25).unwrap(), Some(0.0));
        assert_eq!(h.quantile(0.5).unwrap(), Some(1.0));
        assert_eq!(h.quantile(0.75).unwrap(), Some(1.0));
        assert_eq!(h.quantile(0.76).unwrap(), Some(2.0));
        assert_eq!(h.quantile(1.0).unwrap(), Some(2.0));
        assert_eq!(h.quantile(0.0).unwrap(), Some(0.0));
    }

    #[test]
    fn repeated_values_add_up_and_zero_weights_add_nothing() {
        let h = histogram(&[(-0.5, 3), (1.0, 0), (-0.5, 1), (4.0, 4)]);
        assert_eq!(h, histogram(&[(-0.5, 4), (4.0, 4)]));
        assert_eq!(h.quantile(0.5).unwrap(), Some(-0.5));
        assert_eq!(h.quantile(0.51).unwrap(), Some(4.0));
    }

    #[test]
    fn adding_a_sorted_histogram_at_once_equals_adding_its_bins_one_by_one() {
        let own = [(-1.0, 2), (0.0, 1), (0.5, 7), (3.0, 1)];
        for incoming in [
            vec![(-2.0, 1), (0.0, 3), (0.25, 0), (0.5, 1), (9.0, 2)],
            vec![(4.0, 1)],
            vec![(-4.0, 1)],
            vec![(-0.0, 5), (0.0, 5)],
            vec![(3.0, 1), (0.5, 1)],
            vec![],
        ] {
            for start in [&own[..], &[]] {
                let mut at_once = histogram(start);
                let (values, weights): (Vec<f64>, Vec<u64>) = incoming.iter().copied().unzip();
                at_once.add_all(&values, &weights);
                let mut one_by_one = histogram(start);
                incoming.iter().for_each(|(v, w)| one_by_one.add(*v, *w));
                assert_eq!(at_once, one_by_one, "{start:?} + {incoming:?}");
                assert!(
                    at_once
                        .bins
                        .windows(2)
                        .all(|w| w[0].0.total_cmp(&w[1].0).is_lt())
                );
            }
        }
    }

    #[test]
    fn an_empty_histogram_has_no_quantile() {
        assert_eq!(Histogram::default().quantile(0.5).unwrap(), None);
        assert_eq!(histogram(&[(1.0, 0)]).quantile(0.5).unwrap(), None);
    }

    #[test]
    fn shares_that_are_not_binary_fractions_compare_as_the_double_they_are() {
        // The double nearest 1/3 is below it: a third of three equal weights is the first.
        let h = histogram(&[(0.0, 1), (1.0, 1), (2.0, 1)]);
        assert_eq!(h.quantile(1.0 / 3.0).unwrap(), Some(0.0));
        // The double nearest 0.1 is above it: a tenth of ten equal weights is the second.
        let tenths: Vec<(f64, u64)> = (0..10).map(|i| (f64::from(i), 1)).collect();
        assert_eq!(histogram(&tenths).quantile(0.1).unwrap(), Some(1.0));
    }

    #[test]
    fn a_total_beyond_a_doubles_integers_is_an_error() {
        assert!(histogram(&[(0.0, MAX_TOTAL + 1)]).quantile(0.5).is_err());
    }

    fn context() -> datafusion::prelude::SessionContext {
        let config = datafusion::prelude::SessionConfig::new().with_target_partitions(4);
        let ctx = datafusion::prelude::SessionContext::new_with_config(config);
        crate::register_all(&ctx);
        ctx
    }

    #[tokio::test]
    async fn sql_gives_the_running_sums_answer_across_partial_aggregates() -> Result<()> {
        // Groups of (bin, count) rows, bins repeated within a group, in four partitions: the
        // quantiles equal the lowest bin whose running sum of counts reaches the share.
        let rows: Vec<String> = (0..3000)
            .map(|i: i64| {
                let bin = f64::from(((i * 7919) % 23) as i32 - 11) / 8.0;
                format!("({}, {bin:?}, {})", i % 13, 1 + (i * 31) % 5)
            })
            .collect();
        let sql = format!(
            "WITH t(g, bin, n) AS (VALUES {}), \
             h AS (SELECT g, bin, sum(n) AS n FROM t GROUP BY g, bin), \
             c AS (SELECT *, sum(n) OVER (PARTITION BY g ORDER BY bin ROWS BETWEEN UNBOUNDED \
                   PRECEDING AND CURRENT ROW) AS below, sum(n) OVER (PARTITION BY g) AS total FROM h), \
             windowed AS (SELECT g, min(CASE WHEN below * 4 >= total THEN bin END) AS q25, \
                   min(CASE WHEN below * 2 >= total THEN bin END) AS q50, \
                   min(CASE WHEN below * 4 >= total * 3 THEN bin END) AS q75 FROM c GROUP BY g), \
             weighted AS (SELECT g, weighted_quantile(bin, n, 0.25) AS q25, \
                   weighted_quantile(bin, n, 0.5) AS q50, weighted_quantile(bin, n, 0.75) AS q75 \
                   FROM t GROUP BY g) \
             SELECT count(*) AS groups, sum(CASE WHEN w.q25 = v.q25 AND w.q50 = v.q50 \
                   AND w.q75 = v.q75 THEN 1 ELSE 0 END) AS same \
             FROM weighted AS w JOIN windowed AS v USING (g)",
            rows.join(", ")
        );
        let batches = context().sql(&sql).await?.collect().await?;
        let groups = batches[0].column(0).as_primitive::<Int64Type>().value(0);
        let same = batches[0].column(1).as_primitive::<Int64Type>().value(0);
        assert_eq!((groups, same), (13, 13));
        Ok(())
    }

    #[tokio::test]
    async fn a_share_that_is_not_a_constant_from_0_to_1_and_a_negative_weight_are_errors() {
        let ctx = context();
        for (sql, wanted) in [
            (
                "SELECT weighted_quantile(v, w, v) FROM (VALUES (1.0, 1)) AS t(v, w)",
                "must be a constant",
            ),
            (
                "SELECT weighted_quantile(v, w, 1.5) FROM (VALUES (1.0, 1)) AS t(v, w)",
                "between 0 and 1",
            ),
            (
                "SELECT weighted_quantile(v, w, 0.5) FROM (VALUES (1.0, -2)) AS t(v, w)",
                "must not be negative",
            ),
        ] {
            let result = match ctx.sql(sql).await {
                Ok(frame) => frame.collect().await.map(|_| ()),
                Err(e) => Err(e),
            };
            let message = result.expect_err(sql).to_string();
            assert!(message.contains(wanted), "{sql}: {message}");
        }
    }
}
