//! Date formats of the 2010-04-01 API (RFC 2822 in GMT) and of v1/v2 APIs (ISO 8601).

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Thu, 30 Jul 2015 20:12:31 +0000`, as Twilio prints every 2010-04-01 date.
///
/// From the date's fields rather than with `format`: every message the API returns
/// carries three of these, and `format` interprets its pattern again on each call (2 % of
/// a node's CPU while accepting). chrono's own `to_rfc2822` panics outside years 0–9999.
pub fn rfc2822(t: DateTime<Utc>) -> String {
    if !(0..=9999).contains(&t.year()) {
        return t.format("%a, %d %b %Y %H:%M:%S +0000").to_string();
    }
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[t.weekday().num_days_from_monday() as usize],
        t.day(),
        MONTHS[t.month0() as usize],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `2015-07-30T20:12:31Z`.
pub fn iso8601(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Milliseconds since the Unix epoch, the form the store keeps.
pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Parses `YYYY-MM-DD` (list filters).
pub fn parse_day(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Parses an ISO 8601 / RFC 3339 instant (`SendAt`).
pub fn parse_instant(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2822_matches_twilio() {
        let t = Utc.with_ymd_and_hms(2015, 7, 30, 20, 12, 31).unwrap();
        assert_eq!(rfc2822(t), "Thu, 30 Jul 2015 20:12:31 +0000");
        assert_eq!(iso8601(t), "2015-07-30T20:12:31Z");
        assert_eq!(from_millis(t.timestamp_millis()), t);
    }

    proptest::proptest! {
        #[test]
        fn rfc2822_is_the_format_pattern(ms in -70_000_000_000_000i64..260_000_000_000_000) {
            let t = from_millis(ms);
            proptest::prop_assert_eq!(rfc2822(t), t.format("%a, %d %b %Y %H:%M:%S +0000").to_string());
        }
    }
}
