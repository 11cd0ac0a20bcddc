//! Five-field UTC cron expressions with the NCR guide's ranges and special characters.
//!
//! Fields: minute `0-59`, hour `0-23`, day-of-month `1-31`, month `1-12` or `JAN`-`DEC`, and
//! day-of-week `0-6` or `SUN`-`SAT` (`7` is also Sunday); names are case-insensitive. Each field is
//! `*`, or a comma-separated list of items `N`, `A-B`, `*/S`, `N/S` (from `N` to the field's
//! maximum) or `A-B/S`. `?` means "any" and is allowed, as the whole field, only in day-of-month
//! and day-of-week. Days follow the Vixie cron rule: when both day fields are restricted (neither
//! is exactly `*` or `?`) a day matches if either matches, otherwise both must.

use crate::metadata::UnixTime;

/// How far [`Cron::next_after`] looks ahead, in days (five years, leap days included).
pub const MAX_LOOKAHEAD_DAYS: i64 = 5 * 366;

/// Why a cron expression was refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// Not exactly five fields.
    #[error("a cron expression has 5 fields (minute hour day-of-month month day-of-week), not {0}")]
    FieldCount(usize),
    /// One field is invalid.
    #[error("invalid {field} field {value:?}: {why}")]
    Field {
        /// `minute`, `hour`, `day-of-month`, `month` or `day-of-week`
        field: &'static str,
        /// the field as written
        value: String,
        /// what is wrong
        why: String,
    },
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    source: String,
    /// Bit `m` set when minute `m` matches.
    minutes: u64,
    /// Bit `h` set when hour `h` matches.
    hours: u32,
    /// Bit `d` set when day-of-month `d` (1-31) matches.
    days_of_month: u32,
    /// Bit `m` set when month `m` (1-12) matches.
    months: u32,
    /// Bit `d` set when day-of-week `d` (0 = Sunday) matches.
    days_of_week: u32,
    /// Whether day-of-month was `*` or `?`.
    dom_any: bool,
    /// Whether day-of-week was `*` or `?`.
    dow_any: bool,
}

/// The shape of one field.
struct FieldSpec {
    name: &'static str,
    min: u32,
    /// The largest value accepted when written out.
    max: u32,
    /// Where `*` and `N/S` end (day-of-week accepts 7 but `*` means 0-6).
    top: u32,
    /// Three-letter names for `min`, `min + 1`, ...
    names: &'static [&'static str],
    /// Whether `?` is accepted.
    question: bool,
}

const MINUTE: FieldSpec = FieldSpec { name: "minute", min: 0, max: 59, top: 59, names: &[], question: false };
const HOUR: FieldSpec = FieldSpec { name: "hour", min: 0, max: 23, top: 23, names: &[], question: false };
const DAY_OF_MONTH: FieldSpec =
    FieldSpec { name: "day-of-month", min: 1, max: 31, top: 31, names: &[], question: true };
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    top: 12,
    names: &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
    question: false,
};
/// Day-of-week accepts 7 as a second Sunday; [`Cron::parse`] folds it onto 0.
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    top: 6,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    question: true,
};

/// A parsed field: its set of values and whether it was the unrestricted `*` or `?`.
struct Field {
    bits: u64,
    any: bool,
}

impl FieldSpec {
    /// Parses one field into a bit set.
    fn parse(&self, value: &str) -> Result<Field, CronError> {
        let fail = |why: String| CronError::Field { field: self.name, value: value.to_string(), why };
        if value == "?" {
            if !self.question {
                return Err(fail("'?' is only allowed in day-of-month and day-of-week".to_string()));
            }
            return Ok(Field { bits: range_bits(self.min, self.top, 1), any: true });
        }
        let mut bits = 0;
        for item in value.split(',') {
            bits |= self.parse_item(item).map_err(fail)?;
        }
        Ok(Field { bits, any: value == "*" })
    }

    /// Parses one list item (`*`, `N`, `A-B`, each optionally with `/S`).
    fn parse_item(&self, item: &str) -> Result<u64, String> {
        if item.is_empty() {
            return Err("empty list item".to_string());
        }
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (item, None),
        };
        let step = match step {
            None => 1,
            Some(step) => {
                let span = self.top - self.min + 1;
                if step.is_empty() || !step.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("step {step:?} is not a number"));
                }
                match step.parse::<u32>() {
                    Ok(0) => return Err("step must not be zero".to_string()),
                    Ok(s) if s <= span => s,
                    _ => return Err(format!("step {step} is larger than the field's {span} values")),
                }
            }
        };
        let (low, high) = if base == "*" {
            (self.min, self.top)
        } else if base == "?" {
            return Err("'?' must be the whole field".to_string());
        } else if let Some((a, b)) = base.split_once('-') {
            let (a, b) = (self.value(a)?, self.value(b)?);
            if a > b {
                return Err(format!("range {base} is reversed"));
            }
            (a, b)
        } else {
            let a = self.value(base)?;
            // `N/S` runs from N to the field's end; a bare `N` is just N.
            (a, if item.contains('/') { self.top.max(a) } else { a })
        };
        Ok(range_bits(low, high, step))
    }

    /// Parses a number or a name, checking the range.
    fn value(&self, text: &str) -> Result<u32, String> {
        if text.is_empty() {
            return Err("missing value".to_string());
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return match text.parse::<u32>() {
                Ok(v) if (self.min..=self.max).contains(&v) => Ok(v),
                _ => Err(format!("{text} is out of range {}-{}", self.min, self.max)),
            };
        }
        if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            return Ok(self.min + i as u32);
        }
        match (self.names.first(), self.names.last()) {
            (Some(first), Some(last)) => Err(format!("{text:?} is not a number or a name ({first}-{last})")),
            _ => Err(format!("{text:?} is not a number")),
        }
    }
}

/// The bit set `low, low + step, ... <= high` (all below 64).
fn range_bits(low: u32, high: u32, step: u32) -> u64 {
    (low..=high.min(63)).step_by(step.max(1) as usize).fold(0, |bits, v| bits | (1 << v))
}

impl Cron {
    /// Parses a five-field expression.
    pub fn parse(source: &str) -> Result<Cron, CronError> {
        let fields: Vec<&str> = source.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(CronError::FieldCount(fields.len()));
        };
        let minutes = MINUTE.parse(minute)?.bits;
        let hours = HOUR.parse(hour)?.bits;
        let dom = DAY_OF_MONTH.parse(dom)?;
        let months = MONTH.parse(month)?.bits;
        let dow = DAY_OF_WEEK.parse(dow)?;
        // Fold 7 (Sunday again) onto 0; every set fits its integer by the field ranges.
        let days_of_week = ((dow.bits | (dow.bits >> 7)) & 0x7f) as u32;
        Ok(Cron {
            source: fields.join(" "),
            minutes,
            hours: hours as u32,
            days_of_month: dom.bits as u32,
            months: months as u32,
            days_of_week,
            dom_any: dom.any,
            dow_any: dow.any,
        })
    }

    /// The expression, normalised to single spaces.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The first matching minute strictly after `after` (epoch seconds, UTC), if any within five years.
    pub fn next_after(&self, after: UnixTime) -> Option<UnixTime> {
        let first = after.div_euclid(60).checked_add(1)?;
        let mut day = first.div_euclid(1440);
        let mut minute = first.rem_euclid(1440) as u32; // minute of the day, 0..1440
        let last_day = day.checked_add(MAX_LOOKAHEAD_DAYS)?;
        while day <= last_day {
            let (year, month, dom) = civil_from_days(day);
            if self.months & (1 << month) == 0 {
                // Skip to the first day of the next month.
                let (y, m) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
                day = days_from_civil(y, m, 1);
                minute = 0;
                continue;
            }
            if !self.day_matches(dom, day) {
                day += 1;
                minute = 0;
                continue;
            }
            let Some(hour) = next_bit(u64::from(self.hours), minute / 60) else {
                day += 1;
                minute = 0;
                continue;
            };
            let from = if hour == minute / 60 { minute % 60 } else { 0 };
            match next_bit(self.minutes, from) {
                // In minutes first: `day * 86_400` alone can overflow where the result does not.
                Some(m) => return day.checked_mul(1440)?.checked_add(i64::from(hour * 60 + m))?.checked_mul(60),
                None => minute = (hour + 1) * 60, // try later hours; 1440 rolls to the next day
            }
            if minute >= 1440 {
                day += 1;
                minute = 0;
            }
        }
        None
    }

    /// Whether the calendar day (`dom` of the month, `days` since the epoch) matches both day fields.
    fn day_matches(&self, dom: u32, days: i64) -> bool {
        let dow = (days + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday
        let dom_ok = self.days_of_month & (1 << dom) != 0;
        let dow_ok = self.days_of_week & (1 << dow) != 0;
        if self.dom_any || self.dow_any {
            dom_ok && dow_ok
        } else {
            dom_ok || dow_ok
        }
    }
}

/// The lowest set bit of `bits` at or above `from`, if any.
fn next_bit(bits: u64, from: u32) -> Option<u32> {
    let rest = bits.checked_shr(from)? << from;
    (rest != 0).then(|| rest.trailing_zeros())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let mp = i64::from((month + 9) % 12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// `2026-12-03T12:00:00Z`: a Unix time as RFC 3339 in UTC (payloads, CLI output).
pub fn rfc3339(t: UnixTime) -> String {
    let (year, month, day) = civil_from_days(t.div_euclid(86_400));
    let rem = t.rem_euclid(86_400);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The proleptic Gregorian `(year, month, day)` of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Epoch seconds of a UTC date and time.
    fn at(year: i64, month: u32, day: u32, hour: i64, minute: i64) -> UnixTime {
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60
    }

    #[test]
    fn civil_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(at(2024, 2, 29, 12, 0), 1_709_208_000);
        for days in (-800_000..800_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn next_times() {
        // 2024-01-10 was a Wednesday.
        let wed = at(2024, 1, 10, 10, 7);
        let rows: &[(&str, UnixTime, UnixTime)] = &[
            ("0 3 * * *", wed, at(2024, 1, 11, 3, 0)),
            ("0 3 * * *", at(2024, 1, 10, 2, 59), at(2024, 1, 10, 3, 0)),
            // strictly after, even on the exact minute or within it
            ("0 3 * * *", at(2024, 1, 10, 3, 0), at(2024, 1, 11, 3, 0)),
            ("0 3 * * *", at(2024, 1, 10, 3, 0) - 1, at(2024, 1, 10, 3, 0)),
            ("* * * * *", wed, wed + 60),
            ("* * * * *", wed + 59, wed + 60),
            ("*/15 * * * *", wed, at(2024, 1, 10, 10, 15)),
            ("*/15 * * * *", at(2024, 1, 10, 23, 50), at(2024, 1, 11, 0, 0)),
            ("5/10 * * * *", wed, at(2024, 1, 10, 10, 15)),
            ("10-40/5 * * * *", at(2024, 1, 10, 10, 41), at(2024, 1, 10, 11, 10)),
            ("0,30 9-17 * * *", at(2024, 1, 10, 17, 30), at(2024, 1, 11, 9, 0)),
            ("0 0 1 JAN *", wed, at(2025, 1, 1, 0, 0)),
            ("0 0 1 jan *", wed, at(2025, 1, 1, 0, 0)),
            ("0 0 1 * *", at(2023, 12, 31, 23, 59), at(2024, 1, 1, 0, 0)),
            ("0 0 1 1 *", at(2024, 1, 1, 0, 0), at(2025, 1, 1, 0, 0)),
            ("30 2 * * MON-FRI", at(2024, 1, 12, 3, 0), at(2024, 1, 15, 2, 30)),
            ("30 2 * * mon-fri", wed, at(2024, 1, 11, 2, 30)),
            ("30 2 * * 1-5", at(2024, 1, 13, 0, 0), at(2024, 1, 15, 2, 30)),
            ("0 12 ? * SUN", wed, at(2024, 1, 14, 12, 0)),
            ("0 12 * * 0", wed, at(2024, 1, 14, 12, 0)),
            ("0 12 * * 7", wed, at(2024, 1, 14, 12, 0)),
            ("0 12 * * 6-7", wed, at(2024, 1, 13, 12, 0)),
            ("0 12 ? * SAT,SUN", at(2024, 1, 13, 12, 0), at(2024, 1, 14, 12, 0)),
            // leap days: 2024 is leap, 2025-2027 are not, 2028 is
            ("0 0 29 2 *", at(2023, 3, 1, 0, 0), at(2024, 2, 29, 0, 0)),
            ("0 0 29 2 *", at(2024, 2, 29, 0, 0), at(2028, 2, 29, 0, 0)),
            ("0 0 29 FEB ?", at(2024, 3, 1, 0, 0), at(2028, 2, 29, 0, 0)),
            ("0 0 31 * *", at(2024, 1, 31, 0, 0), at(2024, 3, 31, 0, 0)),
            // OR rule: the 13th or any Friday (2024-01-12 is a Friday)
            ("0 0 13 * FRI", wed, at(2024, 1, 12, 0, 0)),
            ("0 0 13 * FRI", at(2024, 1, 12, 0, 0), at(2024, 1, 13, 0, 0)),
            ("0 0 13 * FRI", at(2024, 1, 13, 0, 0), at(2024, 1, 19, 0, 0)),
            ("0 0 1,15 * 3", at(2024, 1, 1, 0, 0), at(2024, 1, 3, 0, 0)),
            // AND when one side is `*` or `?`: Fridays in any month, only the 13th with `?` weekday
            ("0 0 * * FRI", at(2024, 1, 12, 0, 0), at(2024, 1, 19, 0, 0)),
            ("0 0 13 * ?", wed, at(2024, 1, 13, 0, 0)),
            ("0 0 13 * *", at(2024, 1, 13, 0, 0), at(2024, 2, 13, 0, 0)),
            // a stepped day-of-month is restricted too: days 1, 11, 21, 31 or Mondays
            ("0 0 */10 * MON", at(2024, 1, 11, 0, 0), at(2024, 1, 15, 0, 0)),
            ("0 0 */10 * MON", at(2024, 1, 15, 0, 0), at(2024, 1, 21, 0, 0)),
            // day-of-week steps run over 0-6, so `1/2` is Monday, Wednesday, Friday (not Sunday as 7)
            ("0 0 * * 1/2", at(2024, 1, 12, 0, 0), at(2024, 1, 15, 0, 0)),
            ("0 0 * * */3", at(2024, 1, 10, 0, 0), at(2024, 1, 13, 0, 0)),
            // month ranges and steps with names
            ("0 0 1 JUN-AUG *", wed, at(2024, 6, 1, 0, 0)),
            ("0 0 1 */3 *", at(2024, 1, 1, 0, 0), at(2024, 4, 1, 0, 0)),
            ("15 14 1 * *", at(2024, 12, 1, 14, 15), at(2025, 1, 1, 14, 15)),
            // before the epoch
            ("0 0 1 1 *", at(1969, 6, 1, 0, 0), 0),
        ];
        for &(expr, after, want) in rows {
            let cron = Cron::parse(expr).unwrap_or_else(|e| panic!("{expr:?} refused: {e}"));
            assert_eq!(cron.next_after(after), Some(want), "{expr:?} after {after}");
        }
    }

    #[test]
    fn impossible_or_distant_schedules() {
        let now = at(2024, 1, 10, 0, 0);
        for expr in ["0 0 31 2 *", "0 0 30 FEB ?", "0 0 31 4,6,9,11 *"] {
            assert_eq!(Cron::parse(expr).ok().and_then(|c| c.next_after(now)), None, "{expr:?}");
        }
        // The lookahead is five years: no 29 February between 2096 and 2104 (2100 is not a leap year).
        let leap = Cron::parse("0 0 29 2 *").ok();
        assert_eq!(leap.as_ref().and_then(|c| c.next_after(at(2096, 3, 1, 0, 0))), None);
        assert_eq!(leap.as_ref().and_then(|c| c.next_after(at(2103, 3, 1, 0, 0))), Some(at(2104, 2, 29, 0, 0)));
        // Extreme inputs do not overflow.
        let every = Cron::parse("* * * * *").ok();
        assert_eq!(every.as_ref().and_then(|c| c.next_after(i64::MAX)), None);
        assert_eq!(every.as_ref().and_then(|c| c.next_after(i64::MIN)), Some((i64::MIN.div_euclid(60) + 1) * 60));
    }

    #[test]
    fn searching_skips_quickly() {
        let started = std::time::Instant::now();
        let cron = Cron::parse("59 23 31 2 *").ok();
        for i in 0..200 {
            assert_eq!(cron.as_ref().and_then(|c| c.next_after(i * 86_400 * 7)), None);
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
    }

    #[test]
    fn normalises_spacing() {
        let cron = Cron::parse("  0   3\t*  * \n MON-FRI ").ok();
        assert_eq!(cron.as_ref().map(Cron::as_str), Some("0 3 * * MON-FRI"));
    }

    #[test]
    fn field_errors() {
        let rows: &[(&str, &str, &str, &str)] = &[
            ("60 * * * *", "minute", "60", "60 is out of range 0-59"),
            ("* 24 * * *", "hour", "24", "24 is out of range 0-23"),
            ("* * 0 * *", "day-of-month", "0", "0 is out of range 1-31"),
            ("* * 32 * *", "day-of-month", "32", "32 is out of range 1-31"),
            ("* * * 13 *", "month", "13", "13 is out of range 1-12"),
            ("* * * 0 *", "month", "0", "0 is out of range 1-12"),
            ("* * * * 8", "day-of-week", "8", "8 is out of range 0-7"),
            ("? * * * *", "minute", "?", "'?' is only allowed in day-of-month and day-of-week"),
            ("* ? * * *", "hour", "?", "'?' is only allowed in day-of-month and day-of-week"),
            ("* * * ? *", "month", "?", "'?' is only allowed in day-of-month and day-of-week"),
            ("* * ?,1 * *", "day-of-month", "?,1", "'?' must be the whole field"),
            ("*/0 * * * *", "minute", "*/0", "step must not be zero"),
            ("*/61 * * * *", "minute", "*/61", "step 61 is larger than the field's 60 values"),
            ("* * * * */8", "day-of-week", "*/8", "step 8 is larger than the field's 7 values"),
            ("*/x * * * *", "minute", "*/x", "step \"x\" is not a number"),
            ("*/ * * * *", "minute", "*/", "step \"\" is not a number"),
            ("5-1 * * * *", "minute", "5-1", "range 5-1 is reversed"),
            ("* * * DEC-JAN *", "month", "DEC-JAN", "range DEC-JAN is reversed"),
            ("* * * FOO *", "month", "FOO", "\"FOO\" is not a number or a name (JAN-DEC)"),
            ("* * * * FUN", "day-of-week", "FUN", "\"FUN\" is not a number or a name (SUN-SAT)"),
            ("* * * * JAN", "day-of-week", "JAN", "\"JAN\" is not a number or a name (SUN-SAT)"),
            ("MON * * * *", "minute", "MON", "\"MON\" is not a number"),
            ("* * L * *", "day-of-month", "L", "\"L\" is not a number"),
            ("-5 * * * *", "minute", "-5", "missing value"),
            ("1, * * * *", "minute", "1,", "empty list item"),
            ("1,,2 * * * *", "minute", "1,,2", "empty list item"),
            (",1 * * * *", "minute", ",1", "empty list item"),
            ("* 1-2-3 * * *", "hour", "1-2-3", "\"2-3\" is not a number"),
        ];
        for &(expr, field, value, why) in rows {
            let want = CronError::Field { field, value: value.to_string(), why: why.to_string() };
            assert_eq!(Cron::parse(expr), Err(want.clone()), "{expr:?}");
            assert!(want.to_string().contains(field));
        }
    }

    #[test]
    fn field_count_errors() {
        for (expr, n) in [("", 0), ("* * * *", 4), ("* * * * * *", 6), ("0 0 * * * 2024", 6)] {
            assert_eq!(Cron::parse(expr), Err(CronError::FieldCount(n)), "{expr:?}");
        }
        assert!(CronError::FieldCount(4).to_string().contains("not 4"));
    }
}
