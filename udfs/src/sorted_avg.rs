//! `exact_avg` grouped over input already sorted by some of its keys, as one streaming operator:
//! [`SortedExactAvgRule`] puts a [`SortedExactAvgExec`] where DataFusion planned that aggregation.
//!
//! Written by hand because DataFusion's partially sorted aggregation, though it emits a group as
//! soon as its sorted keys end, still encodes every key of every row into its row format, hashes
//! and compares the whole encoding, and on emission decodes the keys and interns each dictionary
//! string again: for the 10 s spans of a sorted hour (a few rows per group, a million groups)
//! that is most of the time of the query. Here the sorted keys are compared once per run of equal
//! values (`arrow`'s `partition`), the other keys are small integers (dictionary strings are
//! interned once per dictionary, times are their integer values), and a group's keys are taken
//! from its first row, a batch at a time, and emitted as the batch's piece once its groups are
//! closed (no copy of the keys). Where the other keys are a text and an integer (a service and
//! its time buckets), a run's groups are found by the text's id and the integer's place among
//! the id's others (`Lanes`), not by hashing. The means are the very bits `exact_avg` gives: a
//! span of one or two values (nearly every span) takes its mean from the values themselves, the
//! correctly rounded sum halved; longer ones the same exact sums ([`Moments`]), rounded once.

use std::collections::VecDeque;
use std::fmt;
use std::mem::size_of;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayData, ArrayRef, AsArray, Float64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::{cast, partition, take, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::HashMap;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, InputOrderMode,
    PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};

use crate::exact::{EXACT_AVG_UDAF_NAME, ExactSum, Moments};
use crate::operator::{
    CombinationRate, Fold, FoldStream, MAX_COMPONENTS, Unfolded, add_columns_read, combinations,
    is_integer_key, replace_aggregates, unfold, visit_expressions,
};

/// Replaces each `AggregateExec` that computes only `exact_avg`s of `Float64` values, in one stage
/// (`Single` or `SinglePartitioned`), over input sorted by some of its group keys, whose other keys
/// are strings, dictionaries of strings or integers (at most four), by a [`SortedExactAvgExec`].
#[derive(Debug, Default)]
pub struct SortedExactAvgRule;

impl PhysicalOptimizerRule for SortedExactAvgRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        replace_aggregates(plan, SortedExactAvgExec::try_new)
    }

    fn name(&self) -> &str {
        "sorted_exact_avg"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The most keys besides the sorted ones that a [`SortedExactAvgExec`] groups by.
const MAX_INNER_KEYS: usize = 4;

/// How a key that is not sorted becomes an integer.
#[derive(Debug, Clone, PartialEq)]
enum InnerKind {
    /// Strings, plain or dictionary-encoded: an id per distinct string.
    Text,
    /// Strings computed from these dictionary-encoded (and integer) columns alone: computed, and
    /// given their id, once per combination of the columns in a batch.
    TextOfColumns(Vec<usize>),
    /// Integers, times and dates: their value as an `i64`.
    Integer,
}

/// An `AggregateExec` of `exact_avg`s run as a streaming grouping of sorted runs.
#[derive(Debug)]
pub struct SortedExactAvgExec {
    aggregate: AggregateExec,
    /// What this operator reads: the aggregation's input, or the input of a projection below
    /// it, folded in here.
    input: Arc<dyn ExecutionPlan>,
    /// The group key expressions over `input`.
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// The `exact_avg` arguments over `input`.
    arguments: Vec<Arc<dyn PhysicalExpr>>,
    /// The group expressions the input is sorted by (their positions among the group keys).
    sorted: Vec<usize>,
    /// The other group expressions and how each becomes an integer.
    inner: Vec<(usize, InnerKind)>,
    metrics: ExecutionPlanMetricsSet,
}

impl SortedExactAvgExec {
    /// The operator for `aggregate`, or `None` when it computes anything else.
    pub fn try_new(aggregate: &AggregateExec) -> Result<Option<SortedExactAvgExec>> {
        let sorted = match aggregate.input_order_mode() {
            InputOrderMode::Sorted => (0..aggregate.group_expr().expr().len()).collect(),
            InputOrderMode::PartiallySorted(sorted) => sorted.clone(),
            InputOrderMode::Linear => return Ok(None),
        };
        let input_schema = aggregate.input_schema();
        let group_by = aggregate.group_expr();
        let one_stage = matches!(
            aggregate.mode(),
            AggregateMode::Single | AggregateMode::SinglePartitioned
        );
        let plain_groups = !group_by.has_grouping_set() && !group_by.expr().is_empty();
        let unfiltered = aggregate.filter_expr().iter().all(Option::is_none)
            && aggregate.limit_options().is_none()
            && aggregate.dynamic_expressions_produced().is_empty();
        if !(one_stage && plain_groups && unfiltered && !sorted.is_empty()) {
            return Ok(None);
        }
        for function in aggregate.aggr_expr() {
            let arguments = function.expressions();
            let simple = function.fun().name() == EXACT_AVG_UDAF_NAME
                && !function.is_distinct()
                && function.order_bys().is_empty()
                && arguments.len() == 1;
            if !simple || arguments[0].data_type(&input_schema)? != DataType::Float64 {
                return Ok(None);
            }
        }
        let Unfolded {
            input,
            group_exprs,
            aggregates,
        } = unfold(aggregate)?;
        let arguments = aggregates
            .into_iter()
            .map(|mut aggregate| aggregate.arguments.remove(0))
            .collect();
        let mut inner = Vec::new();
        for (index, expr) in group_exprs.iter().enumerate() {
            if sorted.contains(&index) {
                continue;
            }
            let kind = match expr.data_type(&input.schema())? {
                DataType::Dictionary(key, value)
                    if key.is_dictionary_key_type() && is_text(&value) =>
                {
                    InnerKind::Text
                }
                data_type if is_text(&data_type) => match text_of_dictionaries(expr, &input)? {
                    Some(columns) => InnerKind::TextOfColumns(columns),
                    None => InnerKind::Text,
                },
                data_type if is_integer_key(&data_type) => InnerKind::Integer,
                _ => return Ok(None),
            };
            inner.push((index, kind));
        }
        if inner.len() > MAX_INNER_KEYS {
            return Ok(None);
        }
        Ok(Some(SortedExactAvgExec {
            aggregate: aggregate.clone(),
            input,
            group_exprs,
            arguments,
            sorted,
            inner,
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }
}

/// The columns of `input` that the text key `expr` reads, when they are dictionary-encoded
/// strings and integers, at least one dictionary, and its value is theirs alone.
fn text_of_dictionaries(
    expr: &Arc<dyn PhysicalExpr>,
    input: &Arc<dyn ExecutionPlan>,
) -> Result<Option<Vec<usize>>> {
    let mut columns = Vec::new();
    if !add_columns_read(expr, &mut columns)? || columns.len() > MAX_COMPONENTS {
        return Ok(None);
    }
    let schema = input.schema();
    let types: Vec<&DataType> = columns
        .iter()
        .map(|&c| schema.field(c).data_type())
        .collect();
    let dictionary =
        |t: &&DataType| matches!(t, DataType::Dictionary(key, _) if key.is_dictionary_key_type());
    let fits =
        types.iter().any(dictionary) && types.iter().all(|t| dictionary(t) || is_integer_key(t));
    Ok(fits.then_some(columns))
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

impl DisplayAs for SortedExactAvgExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names = |indices: &mut dyn Iterator<Item = usize>| {
            indices
                .map(|i| self.aggregate.group_expr().expr()[i].1.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let aggregates: Vec<_> = self
            .aggregate
            .aggr_expr()
            .iter()
            .map(|a| a.name().to_string())
            .collect();
        write!(
            f,
            "SortedExactAvgExec: sorted=[{}], gby=[{}], aggr=[{}]",
            names(&mut self.sorted.iter().copied()),
            names(&mut self.inner.iter().map(|(i, _)| *i)),
            aggregates.join(", ")
        )
    }
}

impl ExecutionPlan for SortedExactAvgExec {
    fn name(&self) -> &str {
        "SortedExactAvgExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.aggregate.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        visit_expressions(self.group_exprs.iter().chain(&self.arguments), f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let recompute = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute);
        // A projection folded in here goes back between the new input and the aggregation.
        let children = match self.aggregate.input().downcast_ref::<ProjectionExec>() {
            Some(projection) => {
                vec![Arc::new(projection.clone()).replace_children(children, recompute)?]
            }
            None => children,
        };
        let aggregate = Arc::new(self.aggregate.clone()).replace_children(children, recompute)?;
        let Some(plain) = aggregate.downcast_ref::<AggregateExec>() else {
            return internal_err!("SortedExactAvgExec: its aggregate became another operator");
        };
        Ok(match SortedExactAvgExec::try_new(plain)? {
            Some(exec) => Arc::new(exec),
            None => aggregate,
        })
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context.clone())?;
        let reservation = MemoryConsumer::new(format!("SortedExactAvgExec[{partition}]"))
            .register(context.memory_pool());
        let fold = SortedExactAvg {
            group_exprs: self.group_exprs.clone(),
            sorted: self.sorted.clone(),
            inner: self.inner.clone(),
            arguments: self.arguments.clone(),
            combined: Combined::of(&self.inner),
            combining: true,
            rate: CombinationRate::default(),
            schema: self.schema(),
            groups: Groups {
                lanes: matches!(
                    self.inner.as_slice(),
                    [
                        (_, InnerKind::Text | InnerKind::TextOfColumns(_)),
                        (_, InnerKind::Integer)
                    ]
                )
                .then(Lanes::default),
                ..Groups::default()
            },
            interner: Interner::default(),
            last_sorted: None,
            converter: None,
            reservation,
        };
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        Ok(Box::pin(FoldStream::new(
            input,
            self.schema(),
            fold,
            baseline,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// A group's key besides its sorted keys: which keys are null, and the others' integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
struct InnerKey {
    nulls: u8,
    values: [i64; MAX_INNER_KEYS],
}

/// How many values a group's [`Mean`] holds as they are before it sums them exactly.
const FEW: usize = 4;

/// A group's running mean: its first [`FEW`] values as they are, beyond that exact
/// [`Moments`]. The mean of one value is that value, of two values one float addition halved
/// (the correctly rounded sum that [`Moments`] gives), of a few their exact sum: so the same bits
/// as [`Moments`], without a state on the heap for the small groups that are nearly all.
#[derive(Debug)]
enum Mean {
    Few { count: u8, values: [f64; FEW] },
    Many(Box<Moments>),
}

impl Default for Mean {
    fn default() -> Mean {
        Mean::Few {
            count: 0,
            values: [0.0; FEW],
        }
    }
}

impl Mean {
    fn add(&mut self, x: f64) {
        match self {
            Mean::Few { count, values } if usize::from(*count) < FEW => {
                values[usize::from(*count)] = x;
                *count += 1;
            }
            Mean::Few { values, .. } => {
                let mut moments = Box::<Moments>::default();
                for value in values.iter().copied().chain([x]) {
                    moments.add(value);
                }
                *self = Mean::Many(moments);
            }
            Mean::Many(moments) => moments.add(x),
        }
    }

    fn value(&self) -> Option<f64> {
        match self {
            Mean::Few { count: 0, .. } => None,
            Mean::Few { count: 1, values } => Some(values[0]),
            Mean::Few { count: 2, values } => Some((values[0] + values[1]) / 2.0),
            Mean::Few { count, values } => {
                let mut sum = ExactSum::default();
                for value in &values[..usize::from(*count)] {
                    sum.add(*value);
                }
                Some(sum.value() / f64::from(*count))
            }
            Mean::Many(moments) => moments.mean(),
        }
    }
}

/// The key columns of the groups first met in one input batch (one row per group).
#[derive(Debug)]
struct Piece {
    keys: Vec<ArrayRef>,
    groups: usize,
}

/// The groups not yet emitted, in the order they were met: those of closed runs first, then
/// those of the open run. Groups are numbered from the stream's start.
#[derive(Debug, Default)]
struct Groups {
    /// Each held group's means, `arguments` per group.
    means: VecDeque<Mean>,
    /// The held groups' keys, a piece per batch that met new groups.
    pieces: VecDeque<Piece>,
    /// How many groups were emitted: the number of the first held group.
    emitted: usize,
    /// How many groups were met.
    met: usize,
    /// How many groups belong to closed runs.
    closed: usize,
    /// The open run's first group, and its inner key.
    open_first: Option<(InnerKey, usize)>,
    /// The open run's other groups by inner key (a run almost always has one inner key).
    open: HashMap<InnerKey, usize>,
    /// Where inner keys are an id and an integer: the open run's groups of keys without nulls
    /// and with a small id, by id, in place of `open`.
    lanes: Option<Lanes>,
}

impl Groups {
    fn close_run(&mut self) {
        self.open_first = None;
        if !self.open.is_empty() {
            self.open.clear();
        }
        if let Some(lanes) = &mut self.lanes {
            lanes.clear();
        }
        self.closed = self.met;
    }

    /// The open run's group of `key`, a new one (and `on_new()` called) if the run has none.
    fn group_of(&mut self, key: InnerKey, arguments: usize, on_new: impl FnOnce()) -> usize {
        match self.open_first {
            Some((first, group)) if first == key => return group,
            Some(_) => {
                if let Some(lanes) = &mut self.lanes
                    && let Some(id) = Lanes::id_of(&key)
                {
                    let value = key.values[1];
                    match lanes.find(id, value) {
                        Ok(group) => return group,
                        Err(position) if lanes.takes(id, position) => {
                            let group = self.new_group(arguments, on_new);
                            if let Some(lanes) = &mut self.lanes {
                                lanes.insert(id, position, value, group);
                            }
                            return group;
                        }
                        Err(_) => {}
                    }
                }
                if let Some(group) = self.open.get(&key) {
                    return *group;
                }
            }
            None => {
                let group = self.new_group(arguments, on_new);
                self.open_first = Some((key, group));
                return group;
            }
        }
        let group = self.new_group(arguments, on_new);
        self.open.insert(key, group);
        group
    }

    fn new_group(&mut self, arguments: usize, on_new: impl FnOnce()) -> usize {
        on_new();
        let group = self.met;
        self.met += 1;
        self.means
            .resize_with(self.means.len() + arguments, Mean::default);
        group
    }
}

/// The ids below which a key's id indexes [`Lanes`] directly.
const LANE_IDS: i64 = 1 << 17;

/// The most entries a lane shifts to put a new integer before its last.
const LANE_SHIFTS_UP_TO: usize = 1024;

/// The groups of one run whose inner key is an id (a text's) and an integer, by id: for each id
/// its integers and their groups, in order of the integers (and the run's hash table, `open`,
/// for what a long lane does not take: [`Lanes::takes`]). A sorted hour's rows meet a key's
/// integers (the time buckets of a service) pod after pod, each in ascending order, so the next
/// row's group is nearly always the one after the last found: a comparison, where a hash table
/// of the run's hundred thousand groups pays a cache miss per row.
#[derive(Debug, Default)]
struct Lanes {
    lanes: Vec<Lane>,
    /// The ids whose lanes hold groups.
    used: Vec<usize>,
    /// The entries the lanes have room for.
    entries_capacity: usize,
}

impl Lanes {
    /// The lane of `key` when it has one: no null, and an id below [`LANE_IDS`].
    fn id_of(key: &InnerKey) -> Option<usize> {
        let id = key.values[0];
        (key.nulls == 0 && (0..LANE_IDS).contains(&id)).then_some(id as usize)
    }

    /// The group of `value` in lane `id`, or where it belongs in the lane.
    fn find(&mut self, id: usize, value: i64) -> std::result::Result<usize, usize> {
        if self.lanes.len() <= id {
            self.lanes.resize_with(id + 1, Lane::default);
        }
        self.lanes[id].find(value)
    }

    /// Whether lane `id` takes a new integer at `position`: at its end, or anywhere while it
    /// is short. A long lane's other new integers go to the run's hash table instead, so that
    /// integers met in descending order cost no quadratic shifting.
    fn takes(&self, id: usize, position: usize) -> bool {
        let entries = &self.lanes[id].entries;
        position == entries.len() || entries.len() < LANE_SHIFTS_UP_TO
    }

    fn insert(&mut self, id: usize, position: usize, value: i64, group: usize) {
        let lane = &mut self.lanes[id];
        if lane.entries.is_empty() {
            self.used.push(id);
        }
        let capacity = lane.entries.capacity();
        lane.insert(position, value, group);
        self.entries_capacity += lane.entries.capacity() - capacity;
    }

    fn clear(&mut self) {
        for id in self.used.drain(..) {
            let lane = &mut self.lanes[id];
            lane.entries.clear();
            lane.next = 0;
        }
    }

    fn size(&self) -> usize {
        self.lanes.capacity() * size_of::<Lane>()
            + self.entries_capacity * size_of::<(i64, usize)>()
            + self.used.capacity() * size_of::<usize>()
    }
}

/// One id's integers and their groups, sorted by integer, and where the next lookup looks first.
#[derive(Debug, Default)]
struct Lane {
    entries: Vec<(i64, usize)>,
    next: usize,
}

impl Lane {
    /// The group of `value`, or where it belongs among the entries.
    fn find(&mut self, value: i64) -> std::result::Result<usize, usize> {
        if let Some(&(v, group)) = self.entries.get(self.next)
            && v == value
        {
            self.next += 1;
            return Ok(group);
        }
        if self.entries.last().is_none_or(|&(last, _)| last < value) {
            return Err(self.entries.len());
        }
        match self.entries.binary_search_by_key(&value, |&(v, _)| v) {
            Ok(position) => {
                self.next = position + 1;
                Ok(self.entries[position].1)
            }
            Err(position) => Err(position),
        }
    }

    fn insert(&mut self, position: usize, value: i64, group: usize) {
        self.entries.insert(position, (value, group));
        self.next = position + 1;
    }
}

/// An id for each distinct string met, with each dictionary's values translated once.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<String, i64>,
    /// For each unsorted key, the last dictionary's values (held, so that no other array can
    /// take their place in memory) and their ids.
    dictionaries: Vec<Option<(ArrayData, Vec<i64>)>>,
}

/// Beyond this many distinct strings, the ids start again at a run boundary.
const MAX_INTERNED: usize = 1 << 16;

impl Interner {
    /// Each string's id, 0 for a null (told apart by the null mask).
    fn text_ids(&mut self, strings: &ArrayRef) -> Result<Vec<i64>> {
        let text = cast(strings, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        Ok((0..text.len())
            .map(|i| {
                if text.is_null(i) {
                    return 0;
                }
                let value = text.value(i);
                if let Some(id) = self.ids.get(value) {
                    return *id;
                }
                let id = self.ids.len() as i64;
                self.ids.insert(value.to_string(), id);
                id
            })
            .collect())
    }

    /// Each row's id for the unsorted key at `position`.
    fn ids(&mut self, position: usize, array: &ArrayRef) -> Result<Vec<i64>> {
        let DataType::Dictionary(_, _) = array.data_type() else {
            return self.text_ids(array);
        };
        let dictionary = array.as_any_dictionary();
        let data = dictionary.values().to_data();
        if self.dictionaries.len() <= position {
            self.dictionaries.resize(position + 1, None);
        }
        let cached = matches!(&self.dictionaries[position], Some((held, _)) if held.ptr_eq(&data));
        if !cached {
            let ids = self.text_ids(dictionary.values())?;
            self.dictionaries[position] = Some((data, ids));
        }
        let ids = &self.dictionaries[position]
            .as_ref()
            .expect("filled above")
            .1;
        Ok(dictionary
            .normalized_keys()
            .iter()
            .map(|k| ids.get(*k).copied().unwrap_or(0))
            .collect())
    }

    fn forget_if_large(&mut self) {
        if self.ids.len() > MAX_INTERNED {
            self.ids.clear();
            self.dictionaries.clear();
        }
    }
}

/// The groups of one partition's stream, and what computes them.
struct SortedExactAvg {
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    sorted: Vec<usize>,
    inner: Vec<(usize, InnerKind)>,
    arguments: Vec<Arc<dyn PhysicalExpr>>,
    /// The `TextOfColumns` keys and the columns they read, when there are any and at most
    /// [`MAX_COMPONENTS`] columns.
    combined: Option<Combined>,
    /// Whether `TextOfColumns` keys are still computed per combination of their columns.
    combining: bool,
    rate: CombinationRate,
    schema: SchemaRef,
    groups: Groups,
    interner: Interner,
    /// The sorted keys of the last row read: a run may go on in the next batch.
    last_sorted: Option<OwnedRow>,
    converter: Option<RowConverter>,
    reservation: MemoryReservation,
}

impl Fold for SortedExactAvg {
    /// Adds `batch`'s rows to their groups, and queues the groups its runs closed.
    fn add(&mut self, batch: &RecordBatch, output: &mut VecDeque<RecordBatch>) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let combined = self.combined_keys(batch)?;
        let keys = self
            .group_exprs
            .iter()
            .enumerate()
            .map(
                |(i, e)| match combined.as_ref().and_then(|c| c.values_of(i)) {
                    Some(_) => Ok(None),
                    None => Ok(Some(e.evaluate(batch)?.into_array(rows)?)),
                },
            )
            .collect::<Result<Vec<_>>>()?;
        let evaluated = |index: usize| -> Result<&ArrayRef> {
            match &keys[index] {
                Some(key) => Ok(key),
                None => internal_err!("SortedExactAvgExec: key {index} was not evaluated"),
            }
        };
        let values = self
            .arguments
            .iter()
            .map(|e| e.evaluate(batch)?.into_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let values: Vec<&Float64Array> = values
            .iter()
            .map(|v| v.as_primitive::<Float64Type>())
            .collect();
        let sorted: Vec<ArrayRef> = self
            .sorted
            .iter()
            .map(|&i| evaluated(i).cloned())
            .collect::<Result<_>>()?;
        let converter = match &mut self.converter {
            Some(converter) => converter,
            None => self.converter.insert(RowConverter::new(
                sorted
                    .iter()
                    .map(|k| SortField::new(k.data_type().clone()))
                    .collect(),
            )?),
        };
        let edge =
            |row: usize| -> Vec<ArrayRef> { sorted.iter().map(|k| k.slice(row, 1)).collect() };
        let first = converter.convert_columns(&edge(0))?;
        let continues = self
            .last_sorted
            .as_ref()
            .is_some_and(|last| last.row() == first.row(0));
        let last = converter.convert_columns(&edge(rows - 1))?;
        self.last_sorted = Some(last.row(0).owned());

        if !continues {
            // No held group keeps an id: they may start again.
            self.interner.forget_if_large();
        }
        let mut inner_ids = Vec::with_capacity(self.inner.len());
        for (position, (index, kind)) in self.inner.iter().enumerate() {
            if let Some((combined, values)) = combined
                .as_ref()
                .and_then(|c| Some((c, c.values_of(*index)?)))
            {
                let ids = self.interner.text_ids(values)?;
                let nulls = values.logical_nulls().map(|nulls| {
                    let valid: Vec<bool> = combined
                        .of_rows
                        .iter()
                        .map(|&c| nulls.is_valid(c as usize))
                        .collect();
                    NullBuffer::from(valid)
                });
                let ids = combined.of_rows.iter().map(|&c| ids[c as usize]).collect();
                inner_ids.push((ids, nulls));
                continue;
            }
            let key = evaluated(*index)?;
            let ids = match kind {
                InnerKind::Text | InnerKind::TextOfColumns(_) => {
                    self.interner.ids(position, key)?
                }
                InnerKind::Integer => {
                    let integers = cast(key, &DataType::Int64)?;
                    integers.as_primitive::<Int64Type>().values().to_vec()
                }
            };
            inner_ids.push((ids, key.logical_nulls()));
        }

        let arguments = self.arguments.len();
        let mut new_rows: Vec<u32> = Vec::new();
        for (run, range) in partition(&sorted)?.ranges().into_iter().enumerate() {
            if run > 0 || !continues {
                self.groups.close_run();
            }
            let mut previous: Option<(InnerKey, usize)> = None;
            for row in range {
                let mut key = InnerKey::default();
                for (position, (ids, nulls)) in inner_ids.iter().enumerate() {
                    if nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                        key.nulls |= 1 << position;
                    } else {
                        key.values[position] = ids[row];
                    }
                }
                let group = match previous {
                    Some((k, group)) if k == key => group,
                    _ => self
                        .groups
                        .group_of(key, arguments, || new_rows.push(row as u32)),
                };
                previous = Some((key, group));
                let first = (group - self.groups.emitted) * arguments;
                for (argument, column) in values.iter().enumerate() {
                    if column.is_valid(row) {
                        self.groups.means[first + argument].add(column.value(row));
                    }
                }
            }
        }
        if !new_rows.is_empty() {
            let groups = new_rows.len();
            let keys = keys
                .iter()
                .enumerate()
                .map(|(i, key)| match (key, &combined) {
                    (Some(key), _) => Ok(take(key, &UInt32Array::from(new_rows.clone()), None)?),
                    (None, Some(combined)) => combined.first_rows(i, &new_rows),
                    (None, None) => internal_err!("SortedExactAvgExec: key {i} was not evaluated"),
                })
                .collect::<Result<Vec<_>>>()?;
            self.groups.pieces.push_back(Piece { keys, groups });
        }
        self.emit_closed_pieces(output)?;
        self.track_memory()
    }

    fn finish(&mut self, output: &mut VecDeque<RecordBatch>) -> Result<()> {
        self.groups.close_run();
        self.emit_closed_pieces(output)
    }
}

/// The text keys computed per combination of the columns they read, and those columns.
struct Combined {
    keys: Vec<usize>,
    columns: Vec<usize>,
}

impl Combined {
    fn of(inner: &[(usize, InnerKind)]) -> Option<Combined> {
        let mut columns = Vec::new();
        let mut keys = Vec::new();
        for (index, kind) in inner {
            if let InnerKind::TextOfColumns(read) = kind {
                keys.push(*index);
                for column in read {
                    if !columns.contains(column) {
                        columns.push(*column);
                    }
                }
            }
        }
        (!keys.is_empty() && columns.len() <= MAX_COMPONENTS).then_some(Combined { keys, columns })
    }
}

/// The text keys of a batch computed once per combination of the columns they read.
struct CombinedKeys {
    /// Each row's combination.
    of_rows: Vec<u32>,
    /// The keys (by position among the group keys) for each combination.
    values: Vec<(usize, ArrayRef)>,
}

impl CombinedKeys {
    fn values_of(&self, key: usize) -> Option<&ArrayRef> {
        self.values.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Key `key` of each of `rows`.
    fn first_rows(&self, key: usize, rows: &[u32]) -> Result<ArrayRef> {
        let Some(values) = self.values_of(key) else {
            return internal_err!("SortedExactAvgExec: key {key} was not combined");
        };
        let combinations: UInt32Array = rows.iter().map(|&r| self.of_rows[r as usize]).collect();
        Ok(take(values, &combinations, None)?)
    }
}

impl SortedExactAvg {
    /// The batch's `TextOfColumns` keys, once per combination of their columns; `None` (and
    /// every key computed per row from then on) where the stream's batches hold too many
    /// combinations ([`CombinationRate`]).
    fn combined_keys(&mut self, batch: &RecordBatch) -> Result<Option<CombinedKeys>> {
        let Some(Combined { keys, columns }) = &self.combined else {
            return Ok(None);
        };
        if !self.combining {
            return Ok(None);
        }
        let (of_rows, representatives) = combinations(batch, columns)?;
        if !self.rate.pays(batch.num_rows(), representatives.len()) {
            self.combining = false;
            return Ok(None);
        }
        let distinct = take_record_batch(batch, &UInt32Array::from(representatives))?;
        let values = keys
            .iter()
            .map(|&k| {
                Ok((
                    k,
                    self.group_exprs[k]
                        .evaluate(&distinct)?
                        .into_array(distinct.num_rows())?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(CombinedKeys { of_rows, values }))
    }

    /// Queues as output batches the held pieces whose groups all belong to closed runs.
    fn emit_closed_pieces(&mut self, output: &mut VecDeque<RecordBatch>) -> Result<()> {
        let arguments = self.arguments.len();
        while let Some(piece) = self.groups.pieces.front() {
            if self.groups.emitted + piece.groups > self.groups.closed {
                break;
            }
            let piece = self.groups.pieces.pop_front().expect("a front piece");
            let means: Vec<Mean> = self
                .groups
                .means
                .drain(..piece.groups * arguments)
                .collect();
            let mut columns = piece.keys;
            for argument in 0..arguments {
                let column: Float64Array = means
                    .iter()
                    .skip(argument)
                    .step_by(arguments.max(1))
                    .map(Mean::value)
                    .collect();
                columns.push(Arc::new(column));
            }
            let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
            self.groups.emitted += piece.groups;
            output.push_back(batch);
        }
        Ok(())
    }

    fn track_memory(&mut self) -> Result<()> {
        let keys: usize = self
            .groups
            .pieces
            .iter()
            .flat_map(|p| &p.keys)
            .map(|a| a.get_array_memory_size())
            .sum();
        let size = keys
            + self.groups.means.capacity() * size_of::<Mean>()
            + self.groups.open.capacity() * size_of::<(InnerKey, usize)>()
            + self.groups.lanes.as_ref().map_or(0, Lanes::size)
            + self.interner.ids.capacity() * size_of::<(String, i64)>();
        self.reservation.try_resize(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::run_with_rule;
    use datafusion::arrow::array::{
        DictionaryArray, Int64Array, StringArray, TimestampMillisecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Int32Type, Schema, TimeUnit};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::{SessionConfig, col};

    /// Rows sorted by (hour, cluster, pod, direction, time) as a store's hour files are, in
    /// batches whose dictionaries differ, with nulls in every column but the sorted ones.
    fn sorted_batches() -> (SchemaRef, Vec<RecordBatch>) {
        let text = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let schema = Arc::new(Schema::new(vec![
            Field::new("hour", DataType::Int64, false),
            Field::new("cluster", text.clone(), true),
            Field::new("pod", text.clone(), true),
            Field::new("node", text, true),
            Field::new("direction", DataType::Utf8, true),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            Field::new("value", DataType::Float64, true),
        ]));
        let mut rows = Vec::new();
        for hour in 0..2i64 {
            for cluster in ["a", "b"] {
                for pod in 0..7 {
                    for direction in ["receive", "transmit"] {
                        for step in 0..90i64 {
                            let time = hour * 3_600_000 + step * 2_500 + (pod as i64 % 3) * 700;
                            let i = rows.len();
                            // A pod that moved node mid-hour, and a few rows of no node.
                            let node = match (pod, step) {
                                (3, s) if s >= 40 => Some("n2".to_string()),
                                (5, s) if s % 17 == 0 => None,
                                _ => Some(format!("n{}", pod % 2)),
                            };
                            let value = (i % 13 != 0).then(|| match i % 101 {
                                // Values whose sums overflow, or are not finite, or signed zeros.
                                7 => f64::MAX,
                                8 => f64::INFINITY,
                                9 => f64::NEG_INFINITY,
                                10 => -0.0,
                                _ => {
                                    (i as f64 * 0.618_033_988_7).sin() * 10f64.powi((i % 9) as i32)
                                        / 3.0
                                }
                            });
                            for _interface in 0..(1 + step % 2) {
                                rows.push((
                                    hour,
                                    cluster,
                                    format!("pod-{pod}"),
                                    node.clone(),
                                    direction,
                                    time,
                                    value,
                                ));
                            }
                        }
                    }
                }
            }
        }
        let batches = rows
            .chunks(333)
            .map(|chunk| {
                let dictionary = |values: Vec<Option<String>>| -> ArrayRef {
                    Arc::new(
                        values
                            .iter()
                            .map(|v| v.as_deref())
                            .collect::<DictionaryArray<Int32Type>>(),
                    )
                };
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(chunk.iter().map(|r| r.0).collect::<Int64Array>()),
                    dictionary(chunk.iter().map(|r| Some(r.1.to_string())).collect()),
                    dictionary(chunk.iter().map(|r| Some(r.2.clone())).collect()),
                    dictionary(chunk.iter().map(|r| r.3.clone()).collect()),
                    Arc::new(chunk.iter().map(|r| Some(r.4)).collect::<StringArray>()),
                    Arc::new(
                        chunk
                            .iter()
                            .map(|r| Some(r.5))
                            .collect::<TimestampMillisecondArray>()
                            .with_timezone("UTC"),
                    ),
                    Arc::new(chunk.iter().map(|r| r.6).collect::<Float64Array>()),
                ];
                RecordBatch::try_new(schema.clone(), columns).expect("columns match the schema")
            })
            .collect();
        (schema, batches)
    }

    async fn run(sql: &str, with_rule: bool) -> Result<(Vec<String>, String)> {
        let (schema, batches) = sorted_batches();
        let order = ["hour", "cluster", "pod", "direction", "time"]
            .iter()
            .map(|c| col(*c).sort(true, false))
            .collect();
        let table = MemTable::try_new(schema, vec![batches])?.with_sort_order(vec![order]);
        let rule = with_rule.then(|| Arc::new(SortedExactAvgRule) as _);
        let config = SessionConfig::new().with_target_partitions(1);
        run_with_rule(sql, config, table, rule, None).await
    }

    #[tokio::test]
    async fn sorted_groups_give_the_bits_of_datafusions_aggregation() -> Result<()> {
        let queries = [
            // drift's per-pod buckets: both directions in one group, the node not sorted.
            "SELECT hour, cluster, pod, node, date_bin(INTERVAL '10 seconds', time) AS bucket, \
                 exact_avg(CASE WHEN direction = 'transmit' THEN value END) AS outbound, \
                 exact_avg(CASE WHEN direction = 'receive' THEN value END) AS inbound \
             FROM metrics GROUP BY hour, cluster, pod, node, date_bin(INTERVAL '10 seconds', time)",
            // ESCU's spans: the direction sorted too.
            "SELECT hour, cluster, pod, node, direction, date_bin(INTERVAL '10 seconds', time) AS bucket, \
                 exact_avg(value) AS io \
             FROM metrics GROUP BY hour, cluster, pod, node, direction, date_bin(INTERVAL '10 seconds', time)",
            // No aggregate left (as under `SELECT count(*)`): the groups alone.
            "SELECT hour, cluster, pod, node, date_bin(INTERVAL '10 seconds', time) AS bucket \
             FROM metrics GROUP BY hour, cluster, pod, node, date_bin(INTERVAL '10 seconds', time)",
            // Spans of one or two values (a step is 2.5 s, some steps have two interfaces).
            "SELECT hour, cluster, pod, node, direction, date_bin(INTERVAL '2500 milliseconds', time) AS bucket, \
                 exact_avg(value) AS io \
             FROM metrics GROUP BY hour, cluster, pod, node, direction, date_bin(INTERVAL '2500 milliseconds', time)",
            "SELECT hour, cluster, pod, node, direction, date_bin(INTERVAL '5 seconds', time) AS bucket, \
                 exact_avg(value) AS io \
             FROM metrics GROUP BY hour, cluster, pod, node, direction, date_bin(INTERVAL '5 seconds', time)",
            // The ratio rule's service buckets: a text key computed from dictionaries, and a
            // time, the hour sorted.
            "SELECT hour, cluster || ':' || k8s_service(pod) AS key, \
                 date_bin(INTERVAL '10 seconds', time) AS bucket, exact_avg(value) AS io \
             FROM metrics \
             GROUP BY hour, cluster || ':' || k8s_service(pod), date_bin(INTERVAL '10 seconds', time)",
            // A text key from a dictionary with nulls (null keys), below a projection.
            "SELECT hour, cluster, np, exact_avg(v) FROM \
               (SELECT hour, cluster, node || '/' || pod AS np, value * 2 AS v FROM metrics) \
             GROUP BY hour, cluster, np",
            // An id and an integer (the lanes): a text key with nulls whose integers come out
            // of order, go back, and are null; pods that change node start a lane mid-hour.
            "SELECT hour, node, \
                 CASE WHEN value > 0 THEN CAST(date_part('second', time) AS BIGINT) % 7 END AS k, \
                 exact_avg(value) \
             FROM metrics \
             GROUP BY hour, node, \
                 CASE WHEN value > 0 THEN CAST(date_part('second', time) AS BIGINT) % 7 END",
            "SELECT hour, node, date_bin(INTERVAL '10 seconds', time) AS bucket, exact_avg(value) \
             FROM metrics GROUP BY hour, node, date_bin(INTERVAL '10 seconds', time)",
            // Every key sorted: one group per run.
            "SELECT hour, cluster, pod, exact_avg(value) AS io FROM metrics GROUP BY hour, cluster, pod",
        ];
        for sql in queries {
            let (ours, plan) = run(sql, true).await?;
            assert!(plan.contains("SortedExactAvgExec"), "not replaced:\n{plan}");
            let (theirs, plan) = run(sql, false).await?;
            assert!(!plan.contains("SortedExactAvgExec"));
            assert!(ours.len() >= 28, "{sql}: only {} groups", ours.len());
            assert_eq!(ours, theirs, "{sql}");
        }
        Ok(())
    }

    /// Looks up each key (`None` closes the run) in groups with lanes, and checks that each gets
    /// the group a hash table of every inner key gives, new exactly when the hash table's is.
    /// Returns how many lane keys were found again, and how many of those the run's hash table
    /// held.
    fn assert_groups_of(keys: impl IntoIterator<Item = Option<InnerKey>>) -> (usize, usize) {
        let mut with_lanes = Groups {
            lanes: Some(Lanes::default()),
            ..Groups::default()
        };
        let mut reference: HashMap<InnerKey, usize> = HashMap::new();
        let (mut found_again, mut hashed) = (0, 0);
        for (step, key) in keys.into_iter().enumerate() {
            let Some(key) = key else {
                with_lanes.close_run();
                reference.clear();
                continue;
            };
            let expected_new = !reference.contains_key(&key);
            let met = with_lanes.met;
            let expected = *reference.entry(key).or_insert(met);
            let mut new = false;
            let group = with_lanes.group_of(key, 1, || new = true);
            assert_eq!(group, expected, "step {step}, key {key:?}");
            assert_eq!(new, expected_new, "step {step}, key {key:?}");
            if Lanes::id_of(&key).is_some() && !new {
                found_again += 1;
                hashed += usize::from(with_lanes.open.contains_key(&key));
            }
        }
        (found_again, hashed)
    }

    fn key_of(id: i64, value: i64, nulls: u8) -> InnerKey {
        let mut key = InnerKey {
            nulls,
            ..InnerKey::default()
        };
        key.values[..2].copy_from_slice(&[id, value]);
        key
    }

    /// The lanes find the groups a hash table of every inner key finds, whatever the order of
    /// the keys: ascending runs, descending ones, going back, nulls, ids beyond the lanes, lanes
    /// too long to shift, runs closing.
    #[test]
    fn lanes_number_groups_as_a_hash_table_does() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |bound: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) % bound
        };
        let keys = (0..200_000u64).flat_map(|step| {
            let close = (step % 50_000 == 0).then_some(None);
            let id = match next(100) {
                0 => LANE_IDS + next(3) as i64,
                1 => -1,
                n => (n % 7) as i64,
            };
            // Ascending sweeps, descending ones, and jumps anywhere among 3,000 integers (so
            // that lanes grow beyond what they shift).
            let value = match (next(10), (step / 20_000) % 2) {
                (0, _) => next(3_000) as i64,
                (_, 0) => ((step / 3) % 400) as i64,
                _ => 3_000 - ((step / 3) % 2_900) as i64,
            };
            let nulls = if next(50) == 0 { 1 + next(3) as u8 } else { 0 };
            close.into_iter().chain([Some(key_of(id, value, nulls))])
        });
        let (found_again, hashed) = assert_groups_of(keys.collect::<Vec<_>>());
        assert!(found_again > 100_000, "{found_again} keys found again");
        assert!(hashed > 1_000, "{hashed} keys of long lanes hashed");
    }

    /// A lane that grew long keeps in the run's hash table the integers it did not take, even
    /// once later integers make it longer still: no key gets a second group.
    #[test]
    fn long_lanes_keep_what_they_hashed() {
        let sweep = |values: Vec<i64>| values.into_iter().map(|v| Some(key_of(3, v, 0)));
        let keys = [None]
            .into_iter()
            .chain(sweep((0..2_000).rev().collect()))
            .chain(sweep((2_000..4_000).collect()))
            .chain(sweep((0..4_000).collect()))
            .chain(sweep((0..4_000).rev().collect()));
        let (found_again, hashed) = assert_groups_of(keys);
        assert_eq!(found_again, 8_000);
        // The run's first key has its own slot; the lane takes the next ones until it is
        // long; the rest of the descending sweep is hashed, and found there in both later sweeps.
        assert_eq!(hashed, 2 * (2_000 - 1 - LANE_SHIFTS_UP_TO));
    }

    #[tokio::test]
    async fn other_aggregations_keep_datafusions_operator() -> Result<()> {
        for sql in [
            "SELECT hour, pod, sum(value) FROM metrics GROUP BY hour, pod",
            "SELECT hour, pod, exact_avg(value), count(*) FROM metrics GROUP BY hour, pod",
            "SELECT node, exact_avg(value) FROM metrics GROUP BY node",
            "SELECT hour, pod, exact_avg(value) FILTER (WHERE node = 'n1') FROM metrics GROUP BY hour, pod",
        ] {
            let (ours, plan) = run(sql, true).await?;
            assert!(!plan.contains("SortedExactAvgExec"), "{sql}:\n{plan}");
            assert_eq!(ours, run(sql, false).await?.0, "{sql}");
        }
        Ok(())
    }
}
