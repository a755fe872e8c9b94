//! Counters become per-interval deltas: each cumulative point yields the bytes moved since the
//! previous point of its series; the last point per series carries over to the next batch.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use serde::{Deserialize, Serialize};

use super::point::{Kind, Point, Reject, Series};

/// The last cumulative point of a series, as kept in the store between batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastPoint {
    #[serde(flatten)]
    pub series: Series,
    pub start: Option<i64>,
    pub time: i64,
    pub value: f64,
}

/// One row for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub series: Series,
    pub time: i64,
    pub value: f64,
}

/// What turning points into rows did besides producing them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// First points of a series: they only start it.
    pub first: u64,
    /// Counter resets (the value fell, or a new start time): the series starts over.
    pub resets: u64,
    /// The same point seen again (a snapshot scraped twice).
    pub duplicates: u64,
}

/// Series state across batches.
#[derive(Debug, Default)]
pub struct Counters {
    last: HashMap<Series, LastPoint, RandomState>,
}

impl Counters {
    pub fn new(points: Vec<LastPoint>) -> Counters {
        Counters {
            last: points.into_iter().map(|p| (p.series.clone(), p)).collect(),
        }
    }

    /// The last point of every series, sorted, for the store.
    pub fn last_points(&self) -> Vec<LastPoint> {
        let mut points: Vec<LastPoint> = self.last.values().cloned().collect();
        points.sort_by(|a, b| (&a.series, a.time).cmp(&(&b.series, b.time)));
        points
    }

    /// Turns `points` (any order) into rows: counters into deltas, deltas and gauges as they
    /// are. Points that cannot be stored come back as rejects with their reason.
    pub fn rows(&mut self, points: Vec<Point>) -> (Vec<Row>, Vec<Reject>, Tally) {
        let points = super::order::by_series_and_time(points);
        let (mut rows, mut rejects, mut tally) = (Vec::new(), Vec::new(), Tally::default());
        for point in points {
            let value = match point.kind {
                Kind::Gauge => Some(point.value),
                Kind::Delta if point.value < 0.0 => {
                    rejects.push(Reject::new(
                        point.record,
                        format!(
                            "negative delta {} for {}",
                            point.value,
                            describe(&point.series)
                        ),
                    ));
                    continue;
                }
                Kind::Delta => Some(point.value),
                Kind::Cumulative { start } => match self.delta(&point, start) {
                    Ok(Step::Delta(delta)) => Some(delta),
                    Ok(Step::First) => {
                        tally.first += 1;
                        None
                    }
                    Ok(Step::Reset) => {
                        tally.resets += 1;
                        None
                    }
                    Ok(Step::Duplicate) => {
                        tally.duplicates += 1;
                        None
                    }
                    Err(reason) => {
                        rejects.push(Reject::new(point.record, reason));
                        continue;
                    }
                },
            };
            if let Some(value) = value {
                rows.push(Row {
                    series: point.series,
                    time: point.time,
                    value,
                });
            }
        }
        (rows, rejects, tally)
    }

    fn delta(&mut self, point: &Point, start: Option<i64>) -> Result<Step, String> {
        if point.value < 0.0 {
            return Err(format!(
                "negative counter {} for {}",
                point.value,
                describe(&point.series)
            ));
        }
        let Some(last) = self.last.get_mut(&point.series) else {
            let first = LastPoint {
                series: point.series.clone(),
                start,
                time: point.time,
                value: point.value,
            };
            self.last.insert(point.series.clone(), first);
            return Ok(Step::First);
        };
        if point.time < last.time {
            return Err(format!(
                "older than the last point of {} ({} ms); counters must arrive in time order",
                describe(&point.series),
                last.time
            ));
        }
        if point.time == last.time {
            return if point.value == last.value {
                Ok(Step::Duplicate)
            } else {
                Err(format!(
                    "a second value {} at the time of {} ({})",
                    point.value,
                    describe(&point.series),
                    last.value
                ))
            };
        }
        let restarted = matches!((start, last.start), (Some(a), Some(b)) if a != b);
        let step = if restarted || point.value < last.value {
            Step::Reset
        } else {
            Step::Delta(point.value - last.value)
        };
        (last.start, last.time, last.value) = (start, point.time, point.value);
        Ok(step)
    }
}

enum Step {
    First,
    Delta(f64),
    Reset,
    Duplicate,
}

fn describe(series: &Series) -> String {
    let label = |v: &Option<String>| v.as_deref().unwrap_or("-").to_string();
    format!(
        "{} of pod {}/{} on {} ({} {})",
        series.metric,
        label(&series.namespace),
        label(&series.pod),
        label(&series.node),
        label(&series.direction),
        label(&series.interface)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::point::Record;

    fn counter(time: i64, value: f64, start: Option<i64>) -> Point {
        Point {
            series: Series {
                metric: "m".into(),
                cluster: Some("c".into()),
                namespace: None,
                node: Some("n".into()),
                pod: Some("p".into()),
                direction: Some("receive".into()),
                interface: Some("eth0".into()),
                workload: None,
            },
            kind: Kind::Cumulative { start },
            time,
            value,
            record: Record {
                input: "in".into(),
                line: time as u64,
            },
        }
    }

    #[test]
    fn deltas_resets_and_carry_over_between_batches() {
        let mut counters = Counters::default();
        let (rows, rejects, tally) = counters.rows(vec![
            counter(20, 150.0, None),
            counter(10, 100.0, None),
            counter(30, 40.0, None),
            counter(40, 100.0, None),
        ]);
        let values: Vec<(i64, f64)> = rows.iter().map(|r| (r.time, r.value)).collect();
        assert_eq!(values, vec![(20, 50.0), (40, 60.0)]);
        assert!(rejects.is_empty());
        assert_eq!((tally.first, tally.resets), (1, 1));

        let mut next = Counters::new(counters.last_points());
        let (rows, rejects, tally) =
            next.rows(vec![counter(40, 100.0, None), counter(50, 130.0, None)]);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].time, rows[0].value), (50, 30.0));
        assert_eq!(tally.duplicates, 1);
        assert!(rejects.is_empty());

        let (rows, rejects, _) = next.rows(vec![counter(45, 120.0, None)]);
        assert!(rows.is_empty());
        assert_eq!(rejects.len(), 1, "45 is older than 50");
        assert!(
            rejects[0].reason.contains("older than"),
            "{}",
            rejects[0].reason
        );
    }

    #[test]
    fn a_new_start_time_is_a_reset_even_when_the_value_grew() {
        let mut counters = Counters::default();
        let (rows, _, tally) = counters.rows(vec![
            counter(10, 100.0, Some(1)),
            counter(20, 500.0, Some(15)),
            counter(30, 600.0, Some(15)),
        ]);
        assert_eq!(tally.resets, 1);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].value, 100.0);
    }
}
