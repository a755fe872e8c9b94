//! The per-group states of a `GroupsAccumulator`, with their heap bytes kept up to date so that
//! `size`, which DataFusion asks after every batch, costs nothing.

use std::mem::size_of;

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::logical_expr::EmitTo;

/// What a state holds on the heap, in bytes.
pub(crate) trait HeapSize {
    fn heap_size(&self) -> usize;
}

#[derive(Debug, Default)]
pub(crate) struct GroupStates<T> {
    states: Vec<T>,
    heap: usize,
}

impl<T: HeapSize> GroupStates<T> {
    /// Adds states made by `new` up to `total` groups.
    pub(crate) fn grow(&mut self, total: usize, new: impl Fn() -> T) {
        while self.states.len() < total {
            let state = new();
            self.heap += state.heap_size();
            self.states.push(state);
        }
    }

    /// Changes group `group`'s state by `change`.
    pub(crate) fn update<R>(&mut self, group: usize, change: impl FnOnce(&mut T) -> R) -> R {
        let state = &mut self.states[group];
        let before = state.heap_size();
        let result = change(state);
        self.heap = self.heap + state.heap_size() - before;
        result
    }

    /// Removes the states `emit_to` asks for.
    pub(crate) fn take(&mut self, emit_to: EmitTo) -> Vec<T> {
        let taken = emit_to.take_needed(&mut self.states);
        self.heap -= taken.iter().map(T::heap_size).sum::<usize>();
        taken
    }

    pub(crate) fn size(&self) -> usize {
        self.states.capacity() * size_of::<T>() + self.heap
    }
}

/// Whether row `row` passes an aggregate's `FILTER (WHERE ...)`: null counts as false.
pub(crate) fn selected(filter: Option<&BooleanArray>, row: usize) -> bool {
    filter.is_none_or(|f| f.is_valid(row) && f.value(row))
}
