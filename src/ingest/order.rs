//! Sorting many points or rows by their series: the labels are compared once per distinct
//! series, then the items by their series' ranks, so a sort step never compares strings.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::point::{Point, Series};

/// `points` ordered by (series, time), equal ones in their input order.
pub fn by_series_and_time(points: Vec<Point>) -> Vec<Point> {
    let (series_of, distinct) = distinct_series(points.iter().map(|p| &p.series));
    let rank = dense_ranks(&distinct, Series::cmp);
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_unstable_by_key(|&i| (rank[series_of[i] as usize], points[i].time, i));
    let mut slots = points.into_iter().map(Some).collect::<Vec<_>>();
    take(&mut slots, &order)
}

/// Numbers the distinct series in order of appearance: each item's number, and the series.
pub fn distinct_series<'a>(items: impl Iterator<Item = &'a Series>) -> (Vec<u32>, Vec<&'a Series>) {
    let mut ids: HashMap<&Series, u32, RandomState> = HashMap::default();
    let mut distinct = Vec::new();
    let numbers = items
        .map(|series| {
            *ids.entry(series).or_insert_with(|| {
                distinct.push(series);
                distinct.len() as u32 - 1
            })
        })
        .collect();
    (numbers, distinct)
}

/// Each series' rank under `order`, equal series sharing one: sorting items by rank sorts
/// them by `order`.
pub fn dense_ranks(
    distinct: &[&Series],
    order: impl Fn(&Series, &Series) -> std::cmp::Ordering,
) -> Vec<u32> {
    let mut sorted: Vec<usize> = (0..distinct.len()).collect();
    sorted.sort_unstable_by(|&a, &b| order(distinct[a], distinct[b]));
    let mut ranks = vec![0u32; distinct.len()];
    let mut rank = 0;
    for (position, &index) in sorted.iter().enumerate() {
        if position > 0 && order(distinct[sorted[position - 1]], distinct[index]).is_ne() {
            rank += 1;
        }
        ranks[index] = rank;
    }
    ranks
}

/// The items at `order`, moved out of their slots; each index may come once.
pub fn take<T>(slots: &mut [Option<T>], order: &[usize]) -> Vec<T> {
    order
        .iter()
        .map(|&i| slots[i].take().expect("each item once"))
        .collect()
}
