//! Time expressions (RFC 3339, epoch seconds, Splunk relative times such as `-70m@m`) and the
//! `[earliest, latest)` window they define, with the hours that window touches.

use chrono::{DateTime, Datelike, Duration, Months, NaiveTime, TimeZone, Utc};

use crate::error::{Error, Result};

/// A half-open time window `[earliest, latest)` on the data point's own time, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub earliest: DateTime<Utc>,
    pub latest: DateTime<Utc>,
}

impl Window {
    /// A window from two time expressions taken relative to `now`.
    pub fn parse(earliest: &str, latest: &str, now: DateTime<Utc>) -> Result<Window> {
        let window = Window {
            earliest: resolve(earliest, now, "--earliest")?,
            latest: resolve(latest, now, "--latest")?,
        };
        if window.latest <= window.earliest {
            return Err(Error::EmptyWindow {
                earliest: rfc3339(window.earliest),
                latest: rfc3339(window.latest),
            });
        }
        Ok(window)
    }

    /// The start of every UTC hour that holds some instant of the window, in order.
    pub fn hours(&self) -> impl Iterator<Item = DateTime<Utc>> + use<> {
        let first = floor_to(self.earliest, Duration::hours(1));
        let latest = self.latest;
        std::iter::successors(first, |hour| hour.checked_add_signed(Duration::hours(1)))
            .take_while(move |hour| *hour < latest)
    }

    /// Whether both bounds fall on the start of an hour.
    pub fn is_whole_hours(&self) -> bool {
        [self.earliest, self.latest]
            .iter()
            .all(|t| floor_to(*t, Duration::hours(1)) == Some(*t))
    }
}

/// Formats an instant as RFC 3339 in UTC with a `Z`, at the precision it needs.
pub fn rfc3339(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Resolves `--now`: an absolute time, or the clock when absent.
pub fn resolve_now(now: Option<&str>) -> Result<DateTime<Utc>> {
    let clock = Utc::now();
    match now {
        None => Ok(clock),
        Some(expr) => resolve(expr, clock, "--now"),
    }
}

/// The first instant iodrift takes: that of a nanosecond timestamp, as DataFusion's time
/// arithmetic holds them (1677-09-21T00:12:43.145224192Z).
pub fn earliest_supported() -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(i64::MIN)
}

/// The last instant iodrift takes (2262-04-11T23:47:16.854775807Z).
pub fn latest_supported() -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(i64::MAX)
}

/// `instant`, or why iodrift cannot take it: it lies outside [`earliest_supported`] ..
/// [`latest_supported`].
pub fn supported(instant: DateTime<Utc>) -> std::result::Result<DateTime<Utc>, String> {
    if instant < earliest_supported() || instant > latest_supported() {
        return Err(format!(
            "{} is outside the supported time range, {} to {}",
            rfc3339(instant),
            earliest_supported().format("%Y-%m-%d"),
            latest_supported().format("%Y-%m-%d")
        ));
    }
    Ok(instant)
}

/// Resolves a time expression relative to `now`: RFC 3339 (`2026-03-04T12:50:00Z`), epoch
/// seconds (`1772628600`), or a Splunk relative time (`now`, `-70m@m`, `-30d@d`, `@h`, `+2h`,
/// `-1d@d+6h`, `@w1`). Snapping and calendar units use UTC. Precision is the millisecond; the
/// result lies between [`earliest_supported`] and [`latest_supported`].
pub fn resolve(expr: &str, now: DateTime<Utc>, flag: &'static str) -> Result<DateTime<Utc>> {
    let fail = |reason: &str| Error::Time {
        flag,
        expr: expr.to_string(),
        reason: reason.to_string(),
    };
    let text = expr.trim();
    if text.is_empty() {
        return Err(fail("empty time"));
    }
    let instant = if let Ok(absolute) = DateTime::parse_from_rfc3339(text) {
        absolute.with_timezone(&Utc)
    } else if text.bytes().all(|b| b.is_ascii_digit()) {
        let seconds: i64 = text
            .parse()
            .map_err(|_| fail("epoch seconds out of range"))?;
        Utc.timestamp_opt(seconds, 0)
            .single()
            .ok_or_else(|| fail("epoch seconds out of range"))?
    } else {
        relative(text, now).map_err(|reason| fail(&reason))?
    };
    let instant = supported(instant).map_err(|reason| fail(&reason))?;
    floor_to(instant, Duration::milliseconds(1))
        .and_then(|t| supported(t).ok())
        .ok_or_else(|| fail("outside the supported time range"))
}

/// The latest multiple of `step` (whole milliseconds) since the epoch at or before `instant`;
/// `None` only at the very start of chrono's range.
fn floor_to(instant: DateTime<Utc>, step: Duration) -> Option<DateTime<Utc>> {
    let step = step.num_milliseconds().max(1);
    let ms = instant.timestamp_millis();
    DateTime::from_timestamp_millis(ms - ms.rem_euclid(step))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

fn unit(name: &str) -> Option<Unit> {
    Some(match name {
        "s" | "sec" | "secs" | "second" | "seconds" => Unit::Second,
        "m" | "min" | "mins" | "minute" | "minutes" => Unit::Minute,
        "h" | "hr" | "hrs" | "hour" | "hours" => Unit::Hour,
        "d" | "day" | "days" => Unit::Day,
        "w" | "week" | "weeks" => Unit::Week,
        "mon" | "month" | "months" => Unit::Month,
        "q" | "qtr" | "qtrs" | "quarter" | "quarters" => Unit::Quarter,
        "y" | "yr" | "yrs" | "year" | "years" => Unit::Year,
        _ => return None,
    })
}

/// Splunk's grammar: `now`, or any sequence of offsets `[+-]N<unit>` and snaps `@<unit>`.
fn relative(text: &str, now: DateTime<Utc>) -> std::result::Result<DateTime<Utc>, String> {
    if text == "now" || text == "now()" {
        return Ok(now);
    }
    let mut instant = supported(now)?;
    let mut rest = text;
    while let Some(first) = rest.chars().next() {
        let tail = &rest[first.len_utf8()..];
        let (sign, body) = match first {
            '+' => (1, tail),
            '-' => (-1, tail),
            '@' => {
                let (name, tail) = tail.split_at(word_end(tail));
                instant = supported(snap(instant, name)?)?;
                rest = tail;
                continue;
            }
            _ => return Err(format!("expected +, - or @ at {rest:?}")),
        };
        let digits = body.bytes().take_while(u8::is_ascii_digit).count();
        let amount: i64 = if digits == 0 {
            1
        } else {
            body[..digits]
                .parse()
                .map_err(|_| format!("offset {:?} is too large", &body[..digits]))?
        };
        let after_digits = &body[digits..];
        let word_len = word_end(after_digits);
        let name = &after_digits[..word_len];
        let unit = unit(name).ok_or_else(|| format!("unknown time unit {name:?}"))?;
        instant = shift(instant, sign * amount, unit)
            .and_then(|t| supported(t).ok())
            .ok_or_else(|| format!("offset {text:?} leaves the supported time range"))?;
        rest = &after_digits[word_len..];
    }
    Ok(instant)
}

fn word_end(text: &str) -> usize {
    text.find(['+', '-', '@']).unwrap_or(text.len())
}

fn shift(instant: DateTime<Utc>, amount: i64, unit: Unit) -> Option<DateTime<Utc>> {
    let fixed = |step: Duration| instant.checked_add_signed(step.checked_mul(amount as i32)?);
    let months = |per: i64| {
        let months = u32::try_from((amount * per).unsigned_abs()).ok()?;
        if amount >= 0 {
            instant.checked_add_months(Months::new(months))
        } else {
            instant.checked_sub_months(Months::new(months))
        }
    };
    i32::try_from(amount).ok()?;
    match unit {
        Unit::Second => fixed(Duration::seconds(1)),
        Unit::Minute => fixed(Duration::minutes(1)),
        Unit::Hour => fixed(Duration::hours(1)),
        Unit::Day => fixed(Duration::days(1)),
        Unit::Week => fixed(Duration::weeks(1)),
        Unit::Month => months(1),
        Unit::Quarter => months(3),
        Unit::Year => months(12),
    }
}

fn snap(instant: DateTime<Utc>, name: &str) -> std::result::Result<DateTime<Utc>, String> {
    let out_of_range = || format!("snapping to @{name} leaves the supported time range");
    let midnight = |at: DateTime<Utc>| {
        at.with_time(NaiveTime::MIN)
            .single()
            .ok_or_else(out_of_range)
    };
    // `@w0`..`@w7`: the latest such weekday (0 and 7 are Sunday) at midnight.
    if let Some(day) = name.strip_prefix('w').and_then(|d| d.parse::<u32>().ok()) {
        if day > 7 {
            return Err(format!("unknown snap unit {name:?}"));
        }
        let today = instant.weekday().num_days_from_sunday();
        let back = (today + 7 - day % 7) % 7;
        return midnight(instant)?
            .checked_sub_signed(Duration::days(i64::from(back)))
            .ok_or_else(out_of_range);
    }
    let unit = unit(name).ok_or_else(|| format!("unknown snap unit {name:?}"))?;
    let first_of_month = |month: u32| {
        Utc.with_ymd_and_hms(instant.year(), month, 1, 0, 0, 0)
            .single()
            .ok_or_else(out_of_range)
    };
    match unit {
        Unit::Second => floor_to(instant, Duration::seconds(1)).ok_or_else(out_of_range),
        Unit::Minute => floor_to(instant, Duration::minutes(1)).ok_or_else(out_of_range),
        Unit::Hour => floor_to(instant, Duration::hours(1)).ok_or_else(out_of_range),
        Unit::Day => midnight(instant),
        Unit::Week => snap(instant, "w0"),
        Unit::Month => first_of_month(instant.month()),
        Unit::Quarter => first_of_month(instant.month().saturating_sub(1) / 3 * 3 + 1),
        Unit::Year => first_of_month(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn rel(expr: &str) -> String {
        rfc3339(resolve(expr, at("2026-03-04T12:53:27.250Z"), "--earliest").unwrap())
    }

    #[test]
    fn escu_default_windows() {
        assert_eq!(rel("-70m@m"), "2026-03-04T11:43:00Z");
        assert_eq!(rel("-10m@m"), "2026-03-04T12:43:00Z");
        assert_eq!(rel("-30d@d"), "2026-02-02T00:00:00Z");
        assert_eq!(rel("-1d@d"), "2026-03-03T00:00:00Z");
    }

    #[test]
    fn offsets_snaps_and_chains() {
        assert_eq!(rel("now"), "2026-03-04T12:53:27.250Z");
        assert_eq!(rel("@h"), "2026-03-04T12:00:00Z");
        assert_eq!(rel("+2h"), "2026-03-04T14:53:27.250Z");
        assert_eq!(rel("-1d@d+6h"), "2026-03-03T06:00:00Z");
        assert_eq!(rel("-h"), "2026-03-04T11:53:27.250Z");
        assert_eq!(rel("-90s"), "2026-03-04T12:51:57.250Z");
        assert_eq!(rel("-1mon@mon"), "2026-02-01T00:00:00Z");
        assert_eq!(rel("@q"), "2026-01-01T00:00:00Z");
        assert_eq!(rel("-1y@y"), "2025-01-01T00:00:00Z");
        // 2026-03-04 is a Wednesday.
        assert_eq!(rel("@w0"), "2026-03-01T00:00:00Z");
        assert_eq!(rel("@w"), "2026-03-01T00:00:00Z");
        assert_eq!(rel("@w1"), "2026-03-02T00:00:00Z");
        assert_eq!(rel("@w3"), "2026-03-04T00:00:00Z");
        assert_eq!(rel("-2w@w1"), "2026-02-16T00:00:00Z");
    }

    #[test]
    fn absolute_times() {
        assert_eq!(rel("2026-03-04T12:50:00Z"), "2026-03-04T12:50:00Z");
        assert_eq!(rel("2026-03-04T14:50:00+02:00"), "2026-03-04T12:50:00Z");
        assert_eq!(rel("1772628600"), "2026-03-04T12:50:00Z");
    }

    #[test]
    fn bad_expressions_name_the_flag_and_the_text() {
        for bad in [
            "",
            "yesterday",
            "-5x",
            "@fortnight",
            "@w8",
            "-99999999999d",
            "2026-13-01T00:00:00Z",
            "2300-01-01T00:00:00Z",
            "1500-01-01T00:00:00Z",
            "99999999999",
            "+300y",
            "-400y@y",
            "@é",
            "-ém",
        ] {
            let err = resolve(bad, Utc::now(), "--latest")
                .unwrap_err()
                .to_string();
            assert!(err.contains("--latest"), "{err}");
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn windows_must_move_forward() {
        let now = at("2026-03-04T12:53:00Z");
        assert!(Window::parse("-10m", "-70m", now).is_err());
        assert!(Window::parse("-10m", "-10m", now).is_err());
        assert!(Window::parse("-70m@m", "-10m@m", now).is_ok());
    }

    #[test]
    fn hours_touched_by_a_window() {
        let now = at("2026-03-04T12:53:00Z");
        let window = Window::parse("-70m@m", "-10m@m", now).unwrap();
        let hours: Vec<_> = window.hours().map(rfc3339).collect();
        assert_eq!(hours, ["2026-03-04T11:00:00Z", "2026-03-04T12:00:00Z"]);
        // A window ending on the hour does not touch the next hour.
        let window = Window::parse("2026-03-04T10:00:00Z", "2026-03-04T12:00:00Z", now).unwrap();
        assert_eq!(window.hours().count(), 2);
        let window =
            Window::parse("2026-03-04T10:59:59.999Z", "2026-03-04T11:00:00.001Z", now).unwrap();
        assert_eq!(window.hours().count(), 2);
    }
}
