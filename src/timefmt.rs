//! Timestamp parsing for the formats shippers and CI platforms write.

use crate::domain::Millis;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Parses RFC 3339 (`2021-08-05T10:34:58Z`, with or without fractions or an
/// offset), GitLab's `2016-08-12 15:23:28 UTC` and `2021-04-28 21:50:00 +0200`.
pub fn parse_datetime(text: &str) -> Option<Millis> {
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(to_millis(t));
    }
    if let Some(utc) = text.strip_suffix(" UTC") {
        let fmt = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        return PrimitiveDateTime::parse(utc, fmt)
            .ok()
            .map(|t| to_millis(t.assume_utc()));
    }
    let fmt = format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    OffsetDateTime::parse(text, fmt).ok().map(to_millis)
}

/// Parses a JSON timestamp: a date string, epoch seconds as a float (Fluent Bit's
/// default) or epoch milliseconds as an integer.
pub fn parse_json_time(value: &serde_json::Value) -> Option<Millis> {
    match value {
        serde_json::Value::String(s) => parse_datetime(s),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                // Integers above 10^11 are milliseconds (10^11 s is year 5138).
                // `unsigned_abs`: `abs` of i64::MIN overflows.
                Some(if i.unsigned_abs() >= 100_000_000_000 {
                    i
                } else {
                    i * 1000
                })
            } else {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| (f * 1000.0).round() as Millis)
            }
        }
        _ => None,
    }
}

/// RFC 3339 in UTC with milliseconds, for people.
pub fn format_millis(ms: Millis) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| format!("{ms}ms"))
}

fn to_millis(t: OffsetDateTime) -> Millis {
    (t.unix_timestamp_nanos() / 1_000_000) as Millis
}

/// Wall-clock time in milliseconds: only the runner and the CLI call this.
pub fn wall_clock() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_formats_in_the_fixtures_parse() {
        assert_eq!(
            parse_datetime("2021-08-05T10:34:58Z"),
            Some(1_628_159_698_000)
        );
        assert_eq!(
            parse_datetime("2019-04-01T17:58:33.598656444Z"),
            Some(1_554_141_513_598)
        );
        assert_eq!(
            parse_datetime("2016-08-12 15:23:28 UTC"),
            Some(1_471_015_408_000)
        );
        assert_eq!(
            parse_datetime("2021-04-28 21:50:00 +0200"),
            Some(1_619_639_400_000)
        );
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn json_numbers_are_seconds_or_milliseconds() {
        assert_eq!(
            parse_json_time(&json!(1554141513.598656)),
            Some(1_554_141_513_599)
        );
        assert_eq!(parse_json_time(&json!(1554141513)), Some(1_554_141_513_000));
        assert_eq!(
            parse_json_time(&json!(1554141513598i64)),
            Some(1_554_141_513_598)
        );
        assert_eq!(parse_json_time(&json!(null)), None);
    }

    #[test]
    fn the_extreme_integers_are_milliseconds_not_an_overflow() {
        assert_eq!(parse_json_time(&json!(i64::MIN)), Some(i64::MIN));
        assert_eq!(parse_json_time(&json!(i64::MAX)), Some(i64::MAX));
        assert_eq!(
            parse_json_time(&json!(-99_999_999_999i64)),
            Some(-99_999_999_999_000)
        );
    }

    #[test]
    fn formatting_is_utc_rfc3339() {
        assert_eq!(format_millis(1_628_159_698_000), "2021-08-05T10:34:58.000Z");
    }
}
