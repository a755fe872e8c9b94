//! `escu_anomalies(phrase, name, value, avg, stdev, ...)`: the per-bucket anomaly text of ESCU's
//! `foreach stdev_*` stage, for any number of measures at once, with every null rule of SPL.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::number::round_half_away_from_zero;

/// The SQL name of the anomaly-text UDF.
pub const ANOMALY_TEXT_UDF_NAME: &str = "escu_anomalies";

/// One measure of a bucket, with its baseline: `M`, `avg_M` and `stdev_M`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measure<'a> {
    pub name: &'a str,
    pub value: Option<f64>,
    pub avg: Option<f64>,
    pub stdev: Option<f64>,
}

/// The anomaly text of one bucket, exactly as ESCU's stages build it (contract, stage 5).
///
/// Measures are taken in lexical order of their names, whatever order they are given in. Each
/// one above `avg + 4 × stdev` appends `M <phrase> by Z Standard Deviations. M=V avg_M=A
/// 'stdev_M'=S, `; a measure with any null is skipped. A firing measure with `stdev = 0` makes
/// Z null, and SPL's null + string turns the whole text to null for good: `None`. One trailing
/// `,` followed by one whitespace character is removed at the end.
pub fn anomaly_text(phrase: &str, measures: &[Measure<'_>]) -> Option<String> {
    let mut ordered: Vec<Measure<'_>> = measures.to_vec();
    ordered.sort_by(|a, b| a.name.cmp(b.name));
    let mut text = String::new();
    write_anomaly_text(phrase, &ordered, &mut text).then_some(text)
}

/// [`anomaly_text`] of measures already in lexical order of their names, written into `text`
/// (cleared first); `false` when the text is null.
fn write_anomaly_text(phrase: &str, ordered: &[Measure<'_>], text: &mut String) -> bool {
    use std::fmt::Write;
    text.clear();
    let firing = |m: &&Measure<'_>| match (m.value, m.avg, m.stdev) {
        (Some(value), Some(avg), Some(stdev)) => {
            value.partial_cmp(&(avg + 4.0 * stdev)) == Some(std::cmp::Ordering::Greater)
        }
        _ => false,
    };
    for measure in ordered.iter().filter(firing) {
        let (Some(value), Some(avg), Some(stdev)) = (measure.value, measure.avg, measure.stdev)
        else {
            unreachable!("a firing measure has all three numbers");
        };
        if stdev == 0.0 {
            return false;
        }
        let z = round_half_away_from_zero((value - avg) / stdev, 2);
        let name = measure.name;
        // `f64`'s Display is [`crate::format_number`]'s shortest round-trip form.
        write!(
            text,
            "{name} {phrase} by {z} Standard Deviations. {name}={value} avg_{name}={avg} 'stdev_{name}'={stdev}, "
        )
        .expect("writing to a String cannot fail");
    }
    if let Some(trimmed) = strip_trailing_comma_space(text) {
        text.truncate(trimmed);
    }
    true
}

/// The length without SPL's `replace(anomalies, ",\s$", "")` match, if there is one.
fn strip_trailing_comma_space(text: &str) -> Option<usize> {
    let last = text.chars().next_back()?;
    // PCRE's \s: space, \t, \n, \v, \f, \r.
    if !matches!(last, ' ' | '\t' | '\n' | '\x0B' | '\x0C' | '\r') {
        return None;
    }
    let before = text.len() - last.len_utf8();
    text[..before].ends_with(',').then_some(before - 1)
}

/// `escu_anomalies(phrase, name_1, value_1, avg_1, stdev_1, ..., name_n, value_n, avg_n, stdev_n)`
/// returns the anomaly text of [`anomaly_text`] per row: a string, `''` when nothing fires, or
/// null. The names are constant strings; `phrase` is a string, constant or per row (so that rows
/// of several rules can share one call); the rest are numbers (cast to Float64).
///
/// ```sql
/// escu_anomalies('higher than average',
///     'inbound_network_io', inbound_network_io, avg_inbound_network_io, stdev_inbound_network_io,
///     'outbound_network_io', outbound_network_io, avg_outbound_network_io, stdev_outbound_network_io)
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AnomalyText {
    signature: Signature,
}

impl AnomalyText {
    pub fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for AnomalyText {
    fn default() -> Self {
        Self::new()
    }
}

const FIELDS_PER_MEASURE: usize = 4;

impl ScalarUDFImpl for AnomalyText {
    fn name(&self) -> &str {
        ANOMALY_TEXT_UDF_NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() < 1 + FIELDS_PER_MEASURE
            || !(arg_types.len() - 1).is_multiple_of(FIELDS_PER_MEASURE)
        {
            return plan_err!(
                "{ANOMALY_TEXT_UDF_NAME} takes a phrase and then (name, value, avg, stdev) per measure, got {} arguments",
                arg_types.len()
            );
        }
        arg_types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let is_text = i == 0 || (i - 1) % FIELDS_PER_MEASURE == 0;
                match (is_text, t) {
                    (true, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => {
                        Ok(DataType::Utf8)
                    }
                    (false, t) if t.is_numeric() || t.is_null() => Ok(DataType::Float64),
                    (true, t) => plan_err!(
                        "{ANOMALY_TEXT_UDF_NAME}: argument {} must be a string, got {t}",
                        i + 1
                    ),
                    (false, t) => plan_err!(
                        "{ANOMALY_TEXT_UDF_NAME}: argument {} must be a number, got {t}",
                        i + 1
                    ),
                }
            })
            .collect()
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let phrase = Phrase::new(&args.args[0], rows)?;
        let mut names = Vec::new();
        let mut columns: Vec<[ArrayRef; 3]> = Vec::new();
        for (m, chunk) in args.args[1..].chunks(FIELDS_PER_MEASURE).enumerate() {
            names.push(constant_text(&chunk[0], 2 + m * FIELDS_PER_MEASURE)?);
            columns.push([
                chunk[1].to_array(rows)?,
                chunk[2].to_array(rows)?,
                chunk[3].to_array(rows)?,
            ]);
        }
        let columns: Vec<[&datafusion::arrow::array::Float64Array; 3]> = columns
            .iter()
            .map(|[v, a, s]| {
                [
                    v.as_primitive::<Float64Type>(),
                    a.as_primitive::<Float64Type>(),
                    s.as_primitive::<Float64Type>(),
                ]
            })
            .collect();
        let value_at = |array: &datafusion::arrow::array::Float64Array, row: usize| {
            array.is_valid(row).then(|| array.value(row))
        };
        let mut ordered: Vec<(&String, &[&datafusion::arrow::array::Float64Array; 3])> =
            names.iter().zip(&columns).collect();
        ordered.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = StringBuilder::with_capacity(rows, 0);
        let mut measures = Vec::with_capacity(ordered.len());
        let mut text = String::new();
        for row in 0..rows {
            measures.clear();
            measures.extend(ordered.iter().map(|(name, [v, a, s])| Measure {
                name,
                value: value_at(v, row),
                avg: value_at(a, row),
                stdev: value_at(s, row),
            }));
            let Some(phrase) = phrase.at(row) else {
                out.append_null();
                continue;
            };
            if write_anomaly_text(phrase, &measures, &mut text) {
                out.append_value(&text);
            } else {
                out.append_null();
            }
        }
        let result: ArrayRef = Arc::new(out.finish());
        if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &result, 0,
            )?));
        }
        Ok(ColumnarValue::Array(result))
    }
}

/// The phrase argument: one for every row, or a column of them (a null phrase, a null text).
enum Phrase {
    Constant(String),
    PerRow(StringArray),
}

impl Phrase {
    fn new(value: &ColumnarValue, rows: usize) -> Result<Phrase> {
        match value {
            ColumnarValue::Scalar(_) => constant_text(value, 1).map(Phrase::Constant),
            ColumnarValue::Array(_) => Ok(Phrase::PerRow(
                value.to_array(rows)?.as_string::<i32>().clone(),
            )),
        }
    }

    fn at(&self, row: usize) -> Option<&str> {
        match self {
            Phrase::Constant(phrase) => Some(phrase),
            Phrase::PerRow(phrases) => phrases.is_valid(row).then(|| phrases.value(row)),
        }
    }
}

fn constant_text(value: &ColumnarValue, position: usize) -> Result<String> {
    match value {
        ColumnarValue::Scalar(scalar) => match scalar.try_as_str() {
            Some(Some(text)) => Ok(text.to_string()),
            _ => exec_err!(
                "{ANOMALY_TEXT_UDF_NAME}: argument {position} must be a non-null string constant"
            ),
        },
        ColumnarValue::Array(_) => {
            exec_err!(
                "{ANOMALY_TEXT_UDF_NAME}: argument {position} must be a constant, not a column"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IO: &str = "higher than average";
    const RATIO: &str = "ratio higher than average";

    fn m(name: &str, value: Option<f64>, avg: Option<f64>, stdev: Option<f64>) -> Measure<'_> {
        Measure {
            name,
            value,
            avg,
            stdev,
        }
    }

    #[test]
    fn one_firing_measure() {
        let text = anomaly_text(
            IO,
            &[
                m(
                    "outbound_network_io",
                    Some(2886181.0),
                    Some(1000.0),
                    Some(100.0),
                ),
                m("inbound_network_io", Some(10.0), Some(1000.0), Some(100.0)),
            ],
        );
        assert_eq!(
            text.as_deref(),
            Some(
                "outbound_network_io higher than average by 28851.81 Standard Deviations. outbound_network_io=2886181 avg_outbound_network_io=1000 'stdev_outbound_network_io'=100"
            )
        );
    }

    #[test]
    fn both_measures_fire_in_lexical_order_and_only_the_last_separator_goes() {
        let text = anomaly_text(
            RATIO,
            &[
                m("outbound:inbound", Some(10.0), Some(1.0), Some(0.5)),
                m(
                    "inbound:outbound",
                    Some(0.5855397618132924),
                    Some(0.1),
                    Some(0.1),
                ),
            ],
        )
        .unwrap();
        assert_eq!(
            text,
            "inbound:outbound ratio higher than average by 4.86 Standard Deviations. inbound:outbound=0.5855397618132924 avg_inbound:outbound=0.1 'stdev_inbound:outbound'=0.1, \
             outbound:inbound ratio higher than average by 18 Standard Deviations. outbound:inbound=10 avg_outbound:inbound=1 'stdev_outbound:inbound'=0.5"
        );
    }

    #[test]
    fn nothing_firing_is_the_empty_text() {
        let text = anomaly_text(
            IO,
            &[m(
                "inbound_network_io",
                Some(1400.0),
                Some(1000.0),
                Some(100.0),
            )],
        );
        // Exactly avg + 4 sigma does not fire: the test is strict.
        assert_eq!(text.as_deref(), Some(""));
        assert_eq!(anomaly_text(IO, &[]).as_deref(), Some(""));
    }

    #[test]
    fn any_null_skips_that_measure_only() {
        for (v, a, s) in [
            (None, Some(1.0), Some(1.0)),
            (Some(9.0), None, Some(1.0)),
            (Some(9.0), Some(1.0), None),
        ] {
            let text = anomaly_text(
                IO,
                &[
                    m("inbound_network_io", v, a, s),
                    m("outbound_network_io", Some(9.0), Some(1.0), Some(1.0)),
                ],
            );
            assert_eq!(
                text.as_deref(),
                Some(
                    "outbound_network_io higher than average by 8 Standard Deviations. outbound_network_io=9 avg_outbound_network_io=1 'stdev_outbound_network_io'=1"
                )
            );
        }
    }

    #[test]
    fn zero_stdev_that_fires_nulls_the_whole_text() {
        let measures = [
            m("inbound_network_io", Some(9.0), Some(1.0), Some(1.0)),
            m("outbound_network_io", Some(5.0), Some(4.0), Some(0.0)),
        ];
        assert_eq!(anomaly_text(IO, &measures), None);
        // Lexically first measure nulls the text; the later one cannot bring it back.
        let measures = [
            m("inbound_network_io", Some(5.0), Some(4.0), Some(0.0)),
            m("outbound_network_io", Some(9.0), Some(1.0), Some(1.0)),
        ];
        assert_eq!(anomaly_text(IO, &measures), None);
    }

    #[test]
    fn zero_stdev_that_does_not_fire_changes_nothing() {
        let measures = [m("inbound_network_io", Some(4.0), Some(4.0), Some(0.0))];
        assert_eq!(anomaly_text(IO, &measures).as_deref(), Some(""));
    }

    #[test]
    fn z_is_rounded_half_away_from_zero() {
        // (V - A) / S = 4.125 exactly: a tie, away from zero gives 4.13.
        let text = anomaly_text(
            IO,
            &[m("inbound_network_io", Some(41.25), Some(0.0), Some(10.0))],
        )
        .unwrap();
        assert!(text.contains("by 4.13 Standard"), "{text}");
        let text = anomaly_text(
            IO,
            &[m("inbound_network_io", Some(500.0), Some(0.0), Some(3.0))],
        )
        .unwrap();
        assert!(text.contains("by 166.67 Standard"), "{text}");
    }

    #[tokio::test]
    async fn the_phrase_may_differ_per_row() -> Result<()> {
        let ctx = datafusion::prelude::SessionContext::new();
        crate::register_all(&ctx);
        let batches = ctx
            .sql(
                "SELECT escu_anomalies(phrase, 'm', v, 1.0, 1.0) AS text FROM (VALUES \
                 ('higher than average', 9.0), ('ratio higher than average', 9.0), \
                 (NULL, 9.0), ('ratio higher than average', 2.0)) AS t(phrase, v)",
            )
            .await?
            .collect()
            .await?;
        let texts = batches[0].column(0).as_string::<i32>();
        let texts: Vec<Option<&str>> = texts.iter().collect();
        assert_eq!(
            texts,
            [
                Some("m higher than average by 8 Standard Deviations. m=9 avg_m=1 'stdev_m'=1"),
                Some(
                    "m ratio higher than average by 8 Standard Deviations. m=9 avg_m=1 'stdev_m'=1"
                ),
                None,
                Some(""),
            ]
        );
        Ok(())
    }

    #[test]
    fn the_trailing_separator_is_a_comma_and_one_whitespace() {
        assert_eq!(strip_trailing_comma_space("a, "), Some(1));
        assert_eq!(strip_trailing_comma_space("a,\t"), Some(1));
        assert_eq!(strip_trailing_comma_space("a,"), None);
        assert_eq!(strip_trailing_comma_space("a,  "), None);
        assert_eq!(strip_trailing_comma_space(""), None);
    }
}
