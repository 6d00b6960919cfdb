//! Date formats of the 2010-04-01 API (RFC 2822 in GMT) and of v1/v2 APIs (ISO 8601).

use chrono::{DateTime, NaiveDate, TimeZone, Utc};

/// `Thu, 30 Jul 2015 20:12:31 +0000`, as Twilio prints every 2010-04-01 date.
pub fn rfc2822(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S +0000").to_string()
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
}
