//! `exact_avg(x)`, `exact_stddev_samp(x)` and `exact_m2(x)`: mean, sample standard deviation and
//! sum of squared deviations whose result does not depend on row order or on how DataFusion
//! splits and merges partial aggregates. `exact_moments(x)` returns the exact state itself (a
//! struct that Parquet stores), and `exact_merge_avg(m)`, `exact_merge_stddev_samp(m)` and
//! `exact_merge_moments(m)` merge such states: statistics merged from hourly states are the
//! very bits the whole window's rows give.
//!
//! Sums are kept exactly as lists of non-overlapping partials (Shewchuk's algorithm, as in
//! Python's `math.fsum`) and rounded once, so the same rows always give the same bits: a
//! baseline computed twice, on any number of cores, writes the same lookup, and the numbers
//! quoted in anomaly texts are reproducible. The variance is computed from exact sums of `x`
//! and of `x²` (each square split into two floats with an FMA), as `(n·Σx² − (Σx)²)` evaluated
//! exactly, rounded once, then divided by `n(n − 1)`.

use std::mem::size_of;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Float64Builder, ListArray, ListBuilder,
    StructArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type, UInt64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};
use smallvec::SmallVec;

use crate::groups::{GroupStates, HeapSize, selected};

pub const EXACT_AVG_UDAF_NAME: &str = "exact_avg";
pub const EXACT_STDDEV_SAMP_UDAF_NAME: &str = "exact_stddev_samp";
pub const EXACT_M2_UDAF_NAME: &str = "exact_m2";
pub const EXACT_MOMENTS_UDAF_NAME: &str = "exact_moments";
pub const EXACT_MERGE_AVG_UDAF_NAME: &str = "exact_merge_avg";
pub const EXACT_MERGE_STDDEV_SAMP_UDAF_NAME: &str = "exact_merge_stddev_samp";
pub const EXACT_MERGE_MOMENTS_UDAF_NAME: &str = "exact_merge_moments";

/// A sum of f64 values held exactly; [`ExactSum::value`] is the correctly rounded total.
#[derive(Debug, Clone, Default)]
pub struct ExactSum {
    /// Non-overlapping partials in increasing magnitude; their exact sum is the total.
    partials: SmallVec<[f64; 2]>,
    /// The sum of non-finite inputs (and of overflows): when not zero, it is the result.
    special: f64,
}

impl ExactSum {
    pub fn add(&mut self, value: f64) {
        if !value.is_finite() {
            self.special += value;
            return;
        }
        let mut x = value;
        let mut kept = 0;
        for j in 0..self.partials.len() {
            let mut y = self.partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let high = x + y;
            if !high.is_finite() {
                self.special += high;
                return;
            }
            let low = y - (high - x);
            if low != 0.0 {
                self.partials[kept] = low;
                kept += 1;
            }
            x = high;
        }
        self.partials.truncate(kept);
        self.partials.push(x);
    }

    /// Adds every term of `other` (exactly: its partials are floats like any input).
    pub fn merge(&mut self, other: &ExactSum) {
        for term in other.terms() {
            self.add(term);
        }
    }

    /// The floats whose exact sum is this sum: the partials, then any non-finite part.
    pub fn terms(&self) -> impl Iterator<Item = f64> + '_ {
        let special = (self.special != 0.0 || self.special.is_nan()).then_some(self.special);
        self.partials.iter().copied().chain(special)
    }

    /// The exact sum rounded to the nearest f64, ties to even.
    pub fn value(&self) -> f64 {
        if self.special != 0.0 || self.special.is_nan() {
            return self.special;
        }
        let partials = &self.partials;
        let Some(mut k) = partials.len().checked_sub(1) else {
            return 0.0;
        };
        let mut high = partials[k];
        let mut low = 0.0;
        while k > 0 {
            k -= 1;
            let x = high;
            let y = partials[k];
            high = x + y;
            low = y - (high - x);
            if low != 0.0 {
                break;
            }
        }
        // Round half-way cases the way the partials below `low` say.
        if k > 0 && ((low < 0.0 && partials[k - 1] < 0.0) || (low > 0.0 && partials[k - 1] > 0.0)) {
            let y = low * 2.0;
            let x = high + y;
            if y == x - high {
                high = x;
            }
        }
        high
    }

    fn heap_size(&self) -> usize {
        if self.partials.spilled() {
            self.partials.capacity() * size_of::<f64>()
        } else {
            0
        }
    }
}

/// `a × b` as `high + low`, exactly (barring underflow).
fn two_product(a: f64, b: f64) -> (f64, f64) {
    let high = a * b;
    (high, a.mul_add(b, -high))
}

/// Count, exact sum and (for the standard deviation) exact sum of squares of a group.
#[derive(Debug, Clone, Default)]
pub struct Moments {
    count: u64,
    sum: ExactSum,
    squares: Option<Box<ExactSum>>,
}

impl Moments {
    fn new(statistic: Statistic) -> Moments {
        Moments {
            squares: (statistic != Statistic::Mean).then(Box::default),
            ..Moments::default()
        }
    }

    pub fn add(&mut self, x: f64) {
        self.count += 1;
        self.sum.add(x);
        if let Some(squares) = &mut self.squares {
            let (high, low) = two_product(x, x);
            squares.add(high);
            squares.add(low);
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum.value() / self.count as f64)
    }

    /// The sample (n − 1) standard deviation; `None` below two values.
    pub fn sample_stdev(&self) -> Option<f64> {
        if self.count < 2 {
            return None;
        }
        let n = self.count as f64;
        let variance = self.n_times_m2()? / (n * (n - 1.0));
        Some(variance.sqrt())
    }

    /// The sum of squared deviations from the mean (M2 of Welford and Chan et al.); `None`
    /// without values.
    pub fn m2(&self) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        Some(self.n_times_m2()? / self.count as f64)
    }

    /// `n·Σx² − (Σx)²`, which is `n·M2`, evaluated exactly and rounded once.
    fn n_times_m2(&self) -> Option<f64> {
        let squares = self.squares.as_ref()?;
        let n = self.count as f64;
        let mut numerator = ExactSum::default();
        for term in squares.terms() {
            let (high, low) = two_product(n, term);
            numerator.add(high);
            numerator.add(low);
        }
        let sums: SmallVec<[f64; 4]> = self.sum.terms().collect();
        for a in &sums {
            for b in &sums {
                let (high, low) = two_product(*a, *b);
                numerator.add(-high);
                numerator.add(-low);
            }
        }
        Some(numerator.value().max(0.0))
    }

    fn evaluate(&self, statistic: Statistic) -> Option<f64> {
        match statistic {
            Statistic::Mean => self.mean(),
            Statistic::SampleStdev => self.sample_stdev(),
            Statistic::M2 => self.m2(),
            Statistic::Moments => None,
        }
    }
}

impl HeapSize for Moments {
    fn heap_size(&self) -> usize {
        self.sum.heap_size()
            + self
                .squares
                .as_ref()
                .map_or(0, |s| size_of::<ExactSum>() + s.heap_size())
    }
}

/// Which statistic an [`ExactAggregate`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Statistic {
    Mean,
    SampleStdev,
    /// The sum of squared deviations from the mean.
    M2,
    /// The exact state itself ([`moments_type`]), to store and merge later.
    Moments,
}

/// What an [`ExactAggregate`] reads: values, or states that `exact_moments` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    Values,
    States,
}

/// The exact aggregate functions; nulls are ignored.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ExactAggregate {
    statistic: Statistic,
    input: Input,
    signature: Signature,
}

impl ExactAggregate {
    pub fn new(statistic: Statistic, input: Input) -> ExactAggregate {
        let signature = match input {
            Input::Values => Signature::uniform(1, vec![DataType::Float64], Volatility::Immutable),
            // Any type here, checked in `return_type`: a state read back from Parquet may differ
            // from `moments_type` in field metadata that no merge depends on.
            Input::States => Signature::any(1, Volatility::Immutable),
        };
        ExactAggregate {
            statistic,
            input,
            signature,
        }
    }

    pub fn mean() -> AggregateUDF {
        AggregateUDF::from(ExactAggregate::new(Statistic::Mean, Input::Values))
    }

    pub fn sample_stdev() -> AggregateUDF {
        AggregateUDF::from(ExactAggregate::new(Statistic::SampleStdev, Input::Values))
    }

    pub fn m2() -> AggregateUDF {
        AggregateUDF::from(ExactAggregate::new(Statistic::M2, Input::Values))
    }

    /// `exact_moments(x)`: the mergeable exact state of the values.
    pub fn moments() -> AggregateUDF {
        AggregateUDF::from(ExactAggregate::new(Statistic::Moments, Input::Values))
    }

    /// `exact_merge_avg(m)`, `exact_merge_stddev_samp(m)` and `exact_merge_moments(m)`.
    pub fn merging() -> [AggregateUDF; 3] {
        [Statistic::Mean, Statistic::SampleStdev, Statistic::Moments]
            .map(|statistic| AggregateUDF::from(ExactAggregate::new(statistic, Input::States)))
    }

    fn sums(&self) -> usize {
        match self.statistic {
            Statistic::Mean => 1,
            Statistic::SampleStdev | Statistic::M2 | Statistic::Moments => 2,
        }
    }
}

fn partials_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float64, false)))
}

/// The fields of the state that `exact_moments` returns: the count, and the exact sums of the
/// values and of their squares as lists of partials.
fn moments_fields() -> Fields {
    Fields::from(vec![
        Field::new("count", DataType::UInt64, false),
        Field::new("sum", partials_type(), false),
        Field::new("sum_squares", partials_type(), false),
    ])
}

/// The type of `exact_moments(x)`, the input of the `exact_merge_*` functions.
pub fn moments_type() -> DataType {
    DataType::Struct(moments_fields())
}

impl AggregateUDFImpl for ExactAggregate {
    fn name(&self) -> &str {
        match (self.input, self.statistic) {
            (Input::Values, Statistic::Mean) => EXACT_AVG_UDAF_NAME,
            (Input::Values, Statistic::SampleStdev) => EXACT_STDDEV_SAMP_UDAF_NAME,
            (Input::Values, Statistic::M2) => EXACT_M2_UDAF_NAME,
            (Input::Values, Statistic::Moments) => EXACT_MOMENTS_UDAF_NAME,
            (Input::States, Statistic::Mean) => EXACT_MERGE_AVG_UDAF_NAME,
            (Input::States, Statistic::SampleStdev) => EXACT_MERGE_STDDEV_SAMP_UDAF_NAME,
            (Input::States, Statistic::M2) => "exact_merge_m2",
            (Input::States, Statistic::Moments) => EXACT_MERGE_MOMENTS_UDAF_NAME,
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if self.input == Input::States {
            let is_state = matches!(
                arg_types.first(),
                Some(DataType::Struct(fields)) if fields.len() == 3
                    && fields[0].data_type() == &DataType::UInt64
                    && fields[1..].iter().all(|f| matches!(f.data_type(), DataType::List(item) if item.data_type() == &DataType::Float64))
            );
            if !is_state {
                return datafusion::common::plan_err!(
                    "{}: the argument must be a state from exact_moments, not {:?}",
                    self.name(),
                    arg_types.first()
                );
            }
        }
        Ok(match self.statistic {
            Statistic::Moments => moments_type(),
            _ => DataType::Float64,
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let mut fields = vec![Field::new(
            format_state_name(args.name, "count"),
            DataType::UInt64,
            false,
        )];
        fields.push(Field::new(
            format_state_name(args.name, "sum"),
            partials_type(),
            false,
        ));
        if self.sums() == 2 {
            fields.push(Field::new(
                format_state_name(args.name, "sum_squares"),
                partials_type(),
                false,
            ));
        }
        Ok(fields.into_iter().map(Arc::new).collect())
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(ExactAccumulator {
            statistic: self.statistic,
            input: self.input,
            moments: Moments::new(self.statistic),
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(ExactGroupsAccumulator::new(
            self.statistic,
            self.input,
        )))
    }
}

/// The state columns of `moments`: count, then the terms of each exact sum as lists.
fn state_arrays<'a>(
    moments: impl ExactSizeIterator<Item = &'a Moments> + Clone,
    statistic: Statistic,
) -> Vec<ArrayRef> {
    let list = |pick: &dyn Fn(&Moments) -> Option<&ExactSum>| -> ArrayRef {
        let mut builder = ListBuilder::new(Float64Builder::new())
            .with_field(Arc::new(Field::new_list_field(DataType::Float64, false)));
        for m in moments.clone() {
            if let Some(sum) = pick(m) {
                builder.values().extend(sum.terms().map(Some));
            }
            builder.append(true);
        }
        Arc::new(builder.finish())
    };
    let counts: UInt64Array = moments.clone().map(|m| m.count).collect();
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(counts), list(&|m| Some(&m.sum))];
    if statistic != Statistic::Mean {
        arrays.push(list(&|m| m.squares.as_deref()));
    }
    arrays
}

/// What each group evaluates to: its statistic, or its state as `exact_moments` returns it.
fn evaluate_groups(groups: &[Moments], statistic: Statistic) -> Result<ArrayRef> {
    if statistic == Statistic::Moments {
        let columns = state_arrays(groups.iter(), statistic);
        return Ok(Arc::new(StructArray::try_new(
            moments_fields(),
            columns,
            None,
        )?));
    }
    let result: Float64Array = groups.iter().map(|m| m.evaluate(statistic)).collect();
    Ok(Arc::new(result))
}

/// The state columns of an `exact_moments` struct column; its null rows count as no values.
fn struct_states(values: &ArrayRef) -> Result<(&StructArray, Vec<ArrayRef>)> {
    let Some(states) = values.as_any().downcast_ref::<StructArray>() else {
        return exec_err!("exact merge: the argument is not an exact_moments state");
    };
    let columns = states.columns().to_vec();
    check_state(&columns, Statistic::Moments)?;
    Ok((states, columns))
}

/// Adds row `row` of `values` (a value, or a state) to `moments`.
fn add_input(moments: &mut Moments, input: Input, values: &ArrayRef, row: usize) -> Result<()> {
    match input {
        Input::Values => {
            let values = values.as_primitive::<Float64Type>();
            if values.is_valid(row) {
                moments.add(values.value(row));
            }
        }
        Input::States => {
            let (states, columns) = struct_states(values)?;
            if states.is_valid(row) {
                merge_state(moments, &columns, row);
            }
        }
    }
    Ok(())
}

/// Adds one row of state (count, sum terms, square terms) to `moments`.
fn merge_state(moments: &mut Moments, states: &[ArrayRef], row: usize) {
    moments.count += states[0].as_primitive::<UInt64Type>().value(row);
    let terms = |column: &ArrayRef| -> Float64Array {
        column
            .as_any()
            .downcast_ref::<ListArray>()
            .expect("state lists")
            .value(row)
            .as_primitive::<Float64Type>()
            .clone()
    };
    for term in terms(&states[1]).values() {
        moments.sum.add(*term);
    }
    // A state's sum of squares is counted only where the statistic needs it.
    if let (Some(squares), Some(column)) = (&mut moments.squares, states.get(2)) {
        for term in terms(column).values() {
            squares.add(*term);
        }
    }
}

fn check_state(states: &[ArrayRef], statistic: Statistic) -> Result<()> {
    let expected = if statistic == Statistic::Mean { 2 } else { 3 };
    if states.len() != expected
        || states[0].as_primitive_opt::<UInt64Type>().is_none()
        || states[1..]
            .iter()
            .any(|s| s.as_any().downcast_ref::<ListArray>().is_none())
    {
        return exec_err!("exact aggregate: unexpected state columns");
    }
    Ok(())
}

#[derive(Debug)]
struct ExactAccumulator {
    statistic: Statistic,
    input: Input,
    moments: Moments,
}

impl Accumulator for ExactAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for row in 0..values[0].len() {
            add_input(&mut self.moments, self.input, &values[0], row)?;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let result = evaluate_groups(std::slice::from_ref(&self.moments), self.statistic)?;
        ScalarValue::try_from_array(&result, 0)
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.moments.heap_size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        state_arrays(std::iter::once(&self.moments), self.statistic)
            .iter()
            .map(|array| ScalarValue::try_from_array(array, 0))
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        check_state(states, self.statistic)?;
        for row in 0..states[0].len() {
            merge_state(&mut self.moments, states, row);
        }
        Ok(())
    }
}

#[derive(Debug)]
struct ExactGroupsAccumulator {
    statistic: Statistic,
    input: Input,
    groups: GroupStates<Moments>,
}

impl ExactGroupsAccumulator {
    fn new(statistic: Statistic, input: Input) -> ExactGroupsAccumulator {
        ExactGroupsAccumulator {
            statistic,
            input,
            groups: GroupStates::default(),
        }
    }

    fn grow(&mut self, total_num_groups: usize) {
        let statistic = self.statistic;
        self.groups
            .grow(total_num_groups, || Moments::new(statistic));
    }
}

impl GroupsAccumulator for ExactGroupsAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        let input = self.input;
        if input == Input::Values {
            let values = values[0].as_primitive::<Float64Type>();
            let groups = &mut self.groups;
            if values.null_count() == 0 && opt_filter.is_none() {
                for (&group, &value) in group_indices.iter().zip(values.values()) {
                    groups.update(group, |m| m.add(value));
                }
            } else {
                for (row, &group) in group_indices.iter().enumerate() {
                    if values.is_valid(row) && selected(opt_filter, row) {
                        groups.update(group, |m| m.add(values.value(row)));
                    }
                }
            }
            return Ok(());
        }
        for (row, &group) in group_indices.iter().enumerate() {
            if selected(opt_filter, row) {
                let mut result = Ok(());
                self.groups
                    .update(group, |m| result = add_input(m, input, &values[0], row));
                result?;
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let groups = self.groups.take(emit_to);
        evaluate_groups(&groups, self.statistic)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let groups = self.groups.take(emit_to);
        Ok(state_arrays(groups.iter(), self.statistic))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        check_state(values, self.statistic)?;
        self.grow(total_num_groups);
        for (row, &group) in group_indices.iter().enumerate() {
            self.groups.update(group, |m| merge_state(m, values, row));
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let rows: Vec<Moments> = (0..values[0].len())
            .map(|row| {
                let mut moments = Moments::new(self.statistic);
                if selected(opt_filter, row) {
                    add_input(&mut moments, self.input, &values[0], row)?;
                }
                Ok(moments)
            })
            .collect::<Result<_>>()?;
        Ok(state_arrays(rows.iter(), self.statistic))
    }

    fn size(&self) -> usize {
        self.groups.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(values: &[f64]) -> f64 {
        let mut s = ExactSum::default();
        values.iter().for_each(|v| s.add(*v));
        s.value()
    }

    /// A deterministic shuffle (xorshift) so the test needs no RNG crate.
    fn shuffled(values: &[f64], seed: u64) -> Vec<f64> {
        let mut v = values.to_vec();
        let mut state = seed.max(1);
        for i in (1..v.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            v.swap(i, (state % (i as u64 + 1)) as usize);
        }
        v
    }

    #[test]
    fn sums_are_correctly_rounded() {
        assert_eq!(sum(&[0.1; 10]), 1.0);
        assert_eq!(
            sum(&[1e100, 1.0, -1e100, 1e-100, 1e50, -1.0, -1e50]),
            1e-100
        );
        assert_eq!(
            sum(&[2f64.powi(53), 1.0, 2f64.powi(-80)]),
            2f64.powi(53) + 2.0
        );
        assert_eq!(sum(&[]), 0.0);
        assert!(sum(&[1.0, f64::NAN]).is_nan());
        assert_eq!(sum(&[1.0, f64::INFINITY]), f64::INFINITY);
        assert_eq!(sum(&[f64::MAX, f64::MAX]), f64::INFINITY);
    }

    #[test]
    fn order_and_merge_split_do_not_change_a_bit() {
        let values: Vec<f64> = (0..5000)
            .map(|i| {
                let x = (i as f64 * 0.7310585786).sin() * 10f64.powi(i % 13);
                x / 3.0
            })
            .collect();
        let statistic = Statistic::SampleStdev;
        let whole = |values: &[f64]| {
            let mut m = Moments::new(statistic);
            values.iter().for_each(|v| m.add(*v));
            (
                m.mean().unwrap().to_bits(),
                m.sample_stdev().unwrap().to_bits(),
            )
        };
        let expected = whole(&values);
        for seed in 1..20 {
            let v = shuffled(&values, seed);
            assert_eq!(whole(&v), expected);
            // Split into uneven parts, aggregate each, merge the states in another order.
            let cut = (seed as usize * 397) % v.len();
            let (a, b) = v.split_at(cut);
            let mut parts = [Moments::new(statistic), Moments::new(statistic)];
            a.iter().for_each(|x| parts[0].add(*x));
            b.iter().for_each(|x| parts[1].add(*x));
            let states = state_arrays(parts.iter().rev(), statistic);
            let mut merged = Moments::new(statistic);
            merge_state(&mut merged, &states, 0);
            merge_state(&mut merged, &states, 1);
            assert_eq!(
                (
                    merged.mean().unwrap().to_bits(),
                    merged.sample_stdev().unwrap().to_bits()
                ),
                expected
            );
        }
    }

    #[test]
    fn stdev_is_the_sample_standard_deviation() {
        let mut m = Moments::new(Statistic::SampleStdev);
        for x in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            m.add(x);
        }
        assert_eq!(m.mean(), Some(5.0));
        assert_eq!(m.sample_stdev(), Some((32.0f64 / 7.0).sqrt()));
        // Large offsets cancel exactly, where the naive Σx² − (Σx)²/n would not.
        let mut shifted = Moments::new(Statistic::SampleStdev);
        for x in [1e9 + 4.0, 1e9 + 7.0, 1e9 + 13.0, 1e9 + 16.0] {
            shifted.add(x);
        }
        assert_eq!(shifted.sample_stdev(), Some(30f64.sqrt()));
        let mut constant = Moments::new(Statistic::SampleStdev);
        for _ in 0..7 {
            constant.add(0.1);
        }
        assert_eq!(constant.sample_stdev(), Some(0.0));
    }

    #[test]
    fn m2_is_the_sum_of_squared_deviations() {
        let mut m = Moments::new(Statistic::M2);
        assert_eq!(m.m2(), None);
        m.add(3.0);
        assert_eq!(m.m2(), Some(0.0));
        let mut shifted = Moments::new(Statistic::M2);
        for x in [1e9 + 4.0, 1e9 + 7.0, 1e9 + 13.0, 1e9 + 16.0] {
            shifted.add(x);
        }
        assert_eq!(shifted.m2(), Some(90.0));
        assert_eq!(shifted.mean(), Some(1e9 + 10.0));
    }

    #[test]
    fn nulls_and_small_groups() {
        let mut one = Moments::new(Statistic::SampleStdev);
        assert_eq!((one.mean(), one.sample_stdev()), (None, None));
        one.add(3.0);
        assert_eq!((one.mean(), one.sample_stdev()), (Some(3.0), None));
    }

    #[tokio::test]
    async fn states_merged_in_sql_give_the_bits_of_all_rows() -> Result<()> {
        let ctx = datafusion::prelude::SessionContext::new();
        crate::register_all(&ctx);
        let rows: Vec<String> = (0..400)
            .map(|i| {
                let x = (i as f64 * 0.7310585786).sin() * 10f64.powi(i % 11) / 3.0;
                format!("({}, {}, {x:e})", i % 3, i % 17)
            })
            .collect();
        let values = rows.join(", ");
        let sql = format!(
            "WITH t(g, part, x) AS (VALUES {values}), \
             parts AS (SELECT g, part, exact_moments(x) AS m FROM t GROUP BY g, part), \
             merged AS (SELECT g, exact_merge_avg(m) AS a, exact_merge_stddev_samp(m) AS s, \
                 exact_merge_stddev_samp(r) AS s2 FROM (SELECT g, m, \
                 exact_merge_moments(m) OVER (PARTITION BY g, part) AS r FROM parts) GROUP BY g), \
             whole AS (SELECT g, exact_avg(x) AS a, exact_stddev_samp(x) AS s FROM t GROUP BY g) \
             SELECT w.a = m.a AND w.s = m.s AND w.s = m.s2 AS same FROM whole w JOIN merged m USING (g)"
        );
        let batches = ctx.sql(&sql).await?.collect().await?;
        let same: Vec<bool> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_boolean()
                    .iter()
                    .flatten()
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(same, [true, true, true]);
        Ok(())
    }

    #[tokio::test]
    async fn sql_results_match_for_grouped_and_single_aggregation() -> Result<()> {
        let ctx = datafusion::prelude::SessionContext::new();
        crate::register_all(&ctx);
        let batches = ctx
            .sql(
                "WITH t(g, x) AS (VALUES (1, 2.0), (1, 4.0), (1, 4.0), (1, 4.0), (1, 5.0), \
                 (1, 5.0), (1, 7.0), (1, 9.0), (2, NULL), (2, 1.0), (3, NULL)) \
                 SELECT g, exact_avg(x) AS m, exact_stddev_samp(x) AS s FROM t GROUP BY g \
                 UNION ALL SELECT 0, exact_avg(x), exact_stddev_samp(x) FROM t WHERE g = 1 \
                 ORDER BY 1",
            )
            .await?
            .collect()
            .await?;
        let batch = datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches)?;
        let m = batch.column(1).as_primitive::<Float64Type>();
        let s = batch.column(2).as_primitive::<Float64Type>();
        let stdev = (32.0f64 / 7.0).sqrt();
        assert_eq!(
            (0..4)
                .map(|i| m.is_valid(i).then(|| m.value(i)))
                .collect::<Vec<_>>(),
            [Some(5.0), Some(5.0), Some(1.0), None]
        );
        assert_eq!(
            (0..4)
                .map(|i| s.is_valid(i).then(|| s.value(i)))
                .collect::<Vec<_>>(),
            [Some(stdev), Some(stdev), None, None]
        );
        Ok(())
    }
}
