//! Go-style durations (`30s`, `1m30s`, `500ms`, `1.5h`) for the command line, parsed and printed
//! the way Go's `time.ParseDuration` and `Duration.String` do, because kamal-proxy's flags take
//! them. Only the text form lives here; what a timeout means belongs to the command that takes it.

use std::time::Duration;

/// The largest duration Go can represent: `i64::MAX` nanoseconds, about 292 years.
pub const MAX_DURATION: Duration = Duration::from_nanos(i64::MAX as u64);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Empty input, a lone sign or dot, or a character where a number must start.
    #[error(
        "Invalid duration `{input}`; use a number and a unit such as `30s`, `1m30s` or `500ms`"
    )]
    Invalid { input: String },
    /// A number without a unit; only `0` may stand alone.
    #[error("Missing unit in duration `{input}`; use ns, us, ms, s, m or h, as in `{input}s`")]
    MissingUnit { input: String },
    /// A unit Go doesn't know, such as `d` or `x`.
    #[error("Unknown unit `{unit}` in duration `{input}`; use ns, us, ms, s, m or h")]
    UnknownUnit { unit: String, input: String },
    /// A leading `-`: Go accepts it, but no hoist-proxy timeout or interval can be negative.
    #[error("Negative duration `{input}` is not allowed")]
    Negative { input: String },
    /// More than [`MAX_DURATION`].
    #[error("Duration `{input}` is too long; the maximum is about 292 years")]
    OutOfRange { input: String },
}

/// Parses a Go duration: an optional sign, then one or more decimal numbers, each with an optional
/// fraction and a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), as in `1h15m30.5s`.
/// `0` needs no unit. Whitespace is not allowed anywhere.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid {
        input: input.to_owned(),
    };

    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }

    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let (whole, after_whole) = split_digits(rest);
        let (fraction, after_fraction) = match after_whole.strip_prefix('.') {
            Some(after_dot) => split_digits(after_dot),
            None => ("", after_whole),
        };
        // `1.` and `.5` are numbers to Go; a lone `.` is not.
        if whole.is_empty() && fraction.is_empty() {
            return Err(invalid());
        }
        // A unit is everything up to the next number, so `1h 30m` has the unit `h `.
        let unit_len = after_fraction
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after_fraction.len());
        if unit_len == 0 {
            return Err(DurationError::MissingUnit {
                input: input.to_owned(),
            });
        }
        let unit = &after_fraction[..unit_len];
        let unit_nanos = unit_in_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            unit: unit.to_owned(),
            input: input.to_owned(),
        })?;
        total_nanos = total_nanos
            .checked_add(number_in_nanos(whole, fraction, unit_nanos).ok_or_else(|| {
                DurationError::OutOfRange {
                    input: input.to_owned(),
                }
            })?)
            .filter(|nanos| *nanos <= MAX_DURATION.as_nanos())
            .ok_or_else(|| DurationError::OutOfRange {
                input: input.to_owned(),
            })?;
        rest = &after_fraction[unit_len..];
    }

    if negative && total_nanos > 0 {
        return Err(DurationError::Negative {
            input: input.to_owned(),
        });
    }
    // `total_nanos <= MAX_DURATION` was checked after every term, so it fits in a u64.
    Ok(Duration::from_nanos(total_nanos as u64))
}

/// Formats a duration as Go's `Duration.String` does: `0s`, `750ms`, `1.5s`, `1m30s`, `2h0m0s`.
/// kamal-proxy prints timeouts this way in its messages, e.g. "within configured timeout (30s)".
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", with_fraction(nanos, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", with_fraction(nanos, 6));
    }

    let seconds = with_fraction(nanos % 60_000_000_000, 9);
    let minutes = nanos / 60_000_000_000;
    if minutes == 0 {
        return format!("{seconds}s");
    }
    let hours = minutes / 60;
    if hours == 0 {
        return format!("{minutes}m{seconds}s");
    }
    format!("{hours}h{}m{seconds}s", minutes % 60)
}

/// Serde adapter that writes a duration in Go syntax (`"30s"`) and reads it back, so the state
/// file and control messages stay readable: `#[serde(with = "crate::duration::go")]`.
pub mod go {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_duration(*duration))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Nanoseconds per unit, for the units Go accepts (both micro signs included).
fn unit_in_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Splits `text` into its leading ASCII digits and the rest.
fn split_digits(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

/// `whole.fraction` units in nanoseconds, truncated as Go truncates. Fraction digits past the 18th
/// can't change the result by a nanosecond and are ignored. None when the number overflows.
fn number_in_nanos(whole: &str, fraction: &str, unit_nanos: u128) -> Option<u128> {
    let mut whole_value: u128 = 0;
    for digit in whole.bytes() {
        whole_value = whole_value
            .checked_mul(10)?
            .checked_add(u128::from(digit - b'0'))?;
        if whole_value > MAX_DURATION.as_nanos() {
            return None;
        }
    }
    let fraction = &fraction[..fraction.len().min(18)];
    let mut fraction_value: u128 = 0;
    let mut scale: u128 = 1;
    for digit in fraction.bytes() {
        fraction_value = fraction_value * 10 + u128::from(digit - b'0');
        scale *= 10;
    }
    whole_value
        .checked_mul(unit_nanos)?
        .checked_add(fraction_value * unit_nanos / scale)
}

/// `nanos` divided by 10^`digits`, with the remainder as a decimal fraction without trailing
/// zeros: `with_fraction(1_500, 3)` is `1.5`.
fn with_fraction(nanos: u128, digits: u32) -> String {
    let divisor = 10u128.pow(digits);
    let whole = nanos / divisor;
    let remainder = nanos % divisor;
    if remainder == 0 {
        return whole.to_string();
    }
    let fraction = format!("{remainder:0width$}", width = digits as usize);
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn parses_the_forms_kamal_passes() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("7us"), Ok(Duration::from_micros(7)));
        assert_eq!(parse_duration("7µs"), Ok(Duration::from_micros(7)));
        assert_eq!(parse_duration("7μs"), Ok(Duration::from_micros(7)));
        assert_eq!(parse_duration("7ms"), Ok(ms(7)));
        assert_eq!(parse_duration("7s"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("7m"), Ok(Duration::from_secs(420)));
        assert_eq!(parse_duration("7h"), Ok(Duration::from_secs(25_200)));
    }

    #[test]
    fn parses_fractions_signs_and_zero() {
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_duration("1.s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("0.001s"), Ok(ms(1)));
        assert_eq!(parse_duration("+2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("-0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("-0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("1h2m3s4ms"),
            Ok(Duration::new(3723, 4_000_000))
        );
        assert_eq!(parse_duration("1s1s"), Ok(Duration::from_secs(2)));
    }

    #[test]
    fn truncates_fractions_below_a_nanosecond() {
        assert_eq!(parse_duration("1.9ns"), Ok(Duration::from_nanos(1)));
        assert_eq!(
            parse_duration("0.1234567891234567891234s"),
            Ok(Duration::from_nanos(123_456_789))
        );
    }

    #[test]
    fn accepts_up_to_the_go_maximum() {
        assert_eq!(parse_duration("9223372036854775807ns"), Ok(MAX_DURATION));
        assert_eq!(
            parse_duration("9223372036854775808ns"),
            Err(DurationError::OutOfRange {
                input: "9223372036854775808ns".into()
            })
        );
        assert!(matches!(
            parse_duration("2562048h"),
            Err(DurationError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse_duration("99999999999999999999999999999999999999999h"),
            Err(DurationError::OutOfRange { .. })
        ));
    }

    #[test]
    fn refuses_empty_and_malformed_input() {
        for input in ["", "-", "+", ".", ".s", "s", "--1s", " 1s", "x1s"] {
            assert_eq!(
                parse_duration(input),
                Err(DurationError::Invalid {
                    input: input.into()
                }),
                "{input:?}"
            );
        }
    }

    #[test]
    fn refuses_a_number_without_a_unit() {
        for input in ["30", "1.5", "1m30"] {
            assert_eq!(
                parse_duration(input),
                Err(DurationError::MissingUnit {
                    input: input.into()
                }),
                "{input:?}"
            );
        }
    }

    #[test]
    fn refuses_unknown_units_naming_the_unit() {
        let error = parse_duration("3x").unwrap_err();
        assert_eq!(
            error,
            DurationError::UnknownUnit {
                unit: "x".into(),
                input: "3x".into()
            }
        );
        assert_eq!(
            error.to_string(),
            "Unknown unit `x` in duration `3x`; use ns, us, ms, s, m or h"
        );
        assert!(
            matches!(parse_duration("1d"), Err(DurationError::UnknownUnit { unit, .. }) if unit == "d")
        );
        assert!(
            matches!(parse_duration("1h 30m"), Err(DurationError::UnknownUnit { unit, .. }) if unit == "h ")
        );
        assert!(
            matches!(parse_duration("1S"), Err(DurationError::UnknownUnit { unit, .. }) if unit == "S")
        );
        assert!(
            matches!(parse_duration("1s "), Err(DurationError::UnknownUnit { unit, .. }) if unit == "s ")
        );
        assert!(
            matches!(parse_duration("1e3s"), Err(DurationError::UnknownUnit { unit, .. }) if unit == "e")
        );
    }

    #[test]
    fn refuses_negative_durations() {
        assert_eq!(
            parse_duration("-1s"),
            Err(DurationError::Negative {
                input: "-1s".into()
            })
        );
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_nanos(999)), "999ns");
        assert_eq!(format_duration(Duration::from_nanos(1_500)), "1.5µs");
        assert_eq!(format_duration(ms(500)), "500ms");
        assert_eq!(format_duration(Duration::from_micros(1_250)), "1.25ms");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(ms(1_500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(
            format_duration(Duration::new(3723, 4_000_000)),
            "1h2m3.004s"
        );
        assert_eq!(format_duration(MAX_DURATION), "2562047h47m16.854775807s");
    }

    #[test]
    fn formatting_then_parsing_round_trips() {
        for input in [
            "0s",
            "1ns",
            "1.5µs",
            "500ms",
            "30s",
            "1m30s",
            "1h0m0s",
            "26h3m0.5s",
        ] {
            let duration = parse_duration(input).unwrap();
            assert_eq!(format_duration(duration), input);
        }
    }
}
