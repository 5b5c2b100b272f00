//! Go-style duration strings (`time.ParseDuration`): `"1m"`, `"30s"`, `"1m30s"`, `"500ms"`,
//! `"1.5h"`, `"0"`.
//!
//! Flagger parses every duration of a Canary with Go's parser, so we accept exactly what it
//! accepts: an optional sign, then one or more `<decimal number><unit>` pairs with the units
//! `ns`, `us` (also `µs`/`μs`), `ms`, `s`, `m` and `h`; a lone `0` is zero. Negative durations
//! are rejected here because nothing in a Canary may be negative.
//!
//! Separately, Flagger's CRD puts the pattern `^[0-9]+(m|s)` on `interval` and `timeout`
//! fields; [`matches_crd_pattern`] reproduces that check (note it is unanchored at the end, so
//! `500ms` and `1m30s` pass while `1h` and `1.5m` do not).

use std::fmt;
use std::time::Duration;

/// Why a duration string did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurationError {
    /// The string is empty.
    Empty,
    /// A number is not followed by a unit (Go: "missing unit in duration").
    MissingUnit,
    /// A unit that Go does not know.
    UnknownUnit(String),
    /// Something that is neither a number nor a unit.
    Invalid,
    /// A negative duration.
    Negative,
    /// Larger than Go's `time.Duration` (about 292 years).
    Overflow,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty duration"),
            Self::MissingUnit => f.write_str("a number without a unit (use ms, s, m or h)"),
            Self::UnknownUnit(u) => write!(f, "unknown unit {u:?} (use ms, s, m or h)"),
            Self::Invalid => f.write_str("not a duration such as 30s, 1m or 1m30s"),
            Self::Negative => f.write_str("negative duration"),
            Self::Overflow => f.write_str("duration too large"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Largest duration Go can represent, in nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3600 * 1_000_000_000,
        _ => return None,
    })
}

/// Parses a duration the way Go's `time.ParseDuration` does (without negative values).
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let mut s = input;
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(DurationError::Invalid);
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        // Integer part.
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &s[..int_len];
        s = &s[int_len..];
        // Fraction.
        let mut frac_part = "";
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &rest[..frac_len];
            s = &rest[frac_len..];
            if int_len == 0 && frac_len == 0 {
                return Err(DurationError::Invalid);
            }
        } else if int_len == 0 {
            return Err(DurationError::Invalid);
        }
        // Unit: everything up to the next digit or '.'.
        let unit_len = s
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(s.len(), |(i, _)| i);
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        if unit.is_empty() {
            return Err(DurationError::MissingUnit);
        }
        let scale = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit(unit.to_string()))?;
        let int_value: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| DurationError::Overflow)?
        };
        let mut nanos = int_value
            .checked_mul(scale)
            .ok_or(DurationError::Overflow)?;
        if !frac_part.is_empty() {
            // Go keeps fractions exact down to the nanosecond and truncates the rest.
            let mut frac_scale = scale;
            for digit in frac_part.bytes() {
                frac_scale /= 10;
                if frac_scale == 0 {
                    break;
                }
                nanos += u128::from(digit - b'0') * frac_scale;
            }
        }
        total = total.checked_add(nanos).ok_or(DurationError::Overflow)?;
        if total > MAX_NANOS {
            return Err(DurationError::Overflow);
        }
    }
    if negative && total > 0 {
        return Err(DurationError::Negative);
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| DurationError::Overflow)?;
    let sub = u32::try_from(total % 1_000_000_000).map_err(|_| DurationError::Overflow)?;
    Ok(Duration::new(secs, sub))
}

/// Whether a string passes Flagger's CRD pattern for durations, `^[0-9]+(m|s)`: one or more
/// digits followed by `m` or `s`, with anything after that.
pub fn matches_crd_pattern(s: &str) -> bool {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && matches!(s.as_bytes().get(digits), Some(b'm' | b's'))
}

/// For a Go duration that breaks the CRD pattern (`1h`, `1.5m`), the same length written the
/// way the pattern accepts (`60m`, `90s`), when there is one.
pub fn crd_form(s: &str) -> Option<String> {
    let d = parse_go_duration(s).ok()?;
    if d.subsec_nanos() != 0 || d.as_secs() == 0 {
        return None;
    }
    let secs = d.as_secs();
    Some(if secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    })
}

/// Formats a duration the way Go prints one (`1m0s`, `30s`, `1h0m0s`, `500ms`), for messages.
pub fn format_go(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        // Go uses the largest unit below a second and keeps the fraction: `1.5ms`, `2.25µs`.
        let (unit, scale, width) = if nanos < 1_000 {
            ("ns", 1, 0)
        } else if nanos < 1_000_000 {
            ("µs", 1_000, 3)
        } else {
            ("ms", 1_000_000, 6)
        };
        let (whole, frac) = (nanos / scale, nanos % scale);
        return if frac == 0 {
            format!("{whole}{unit}")
        } else {
            let f = format!("{frac:0width$}");
            format!("{whole}.{}{unit}", f.trim_end_matches('0'))
        };
    }
    let total_secs = d.as_secs();
    let h = total_secs / 3600;
    let m = (total_secs % 3600) / 60;
    let s = total_secs % 60;
    let frac = d.subsec_nanos();
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{:09}", frac);
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

/// Go's `time.Duration` formatting of a whole number of milliseconds (`500ms`, `1.5s`, `2m0s`),
/// negative ones with a `-`: [`format_go`] of the truncated value.
pub fn go_duration_ms(ms: f64) -> String {
    let ms = ms.trunc() as i64;
    let body = format_go(Duration::from_millis(ms.unsigned_abs()));
    if ms < 0 { format!("-{body}") } else { body }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        match parse_go_duration(s) {
            Ok(d) => d,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_ms(500.0), "500ms");
        assert_eq!(go_duration_ms(1500.0), "1.5s");
        assert_eq!(go_duration_ms(1000.0), "1s");
        assert_eq!(go_duration_ms(61_000.0), "1m1s");
        assert_eq!(go_duration_ms(3_600_000.0), "1h0m0s");
        assert_eq!(go_duration_ms(0.0), "0s");
        assert_eq!(go_duration_ms(-1500.9), "-1.5s");
        assert_eq!(go_duration_ms(3_723_004.0), "1h2m3.004s");
    }

    #[test]
    fn parses_what_canaries_use() {
        assert_eq!(ok("1m"), Duration::from_secs(60));
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("2h45m"), Duration::from_secs(2 * 3600 + 45 * 60));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("+5s"), Duration::from_secs(5));
        assert_eq!(ok("-0s"), Duration::ZERO);
    }

    #[test]
    fn parses_fractions_and_small_units() {
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1.s"), Duration::from_secs(1));
        assert_eq!(ok("1.000000001s"), Duration::new(1, 1));
        assert_eq!(ok("1.0000000019s"), Duration::new(1, 1));
        assert_eq!(ok("10us"), Duration::from_micros(10));
        assert_eq!(ok("10µs"), Duration::from_micros(10));
        assert_eq!(ok("10μs"), Duration::from_micros(10));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("1h1m1s1ms"), Duration::from_millis(3_661_001));
    }

    #[test]
    fn rejects_what_go_rejects() {
        assert_eq!(parse_go_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_go_duration("10"), Err(DurationError::MissingUnit));
        assert_eq!(parse_go_duration("1m30"), Err(DurationError::MissingUnit));
        assert_eq!(
            parse_go_duration("1d"),
            Err(DurationError::UnknownUnit("d".into()))
        );
        assert_eq!(
            parse_go_duration("5 s"),
            Err(DurationError::UnknownUnit(" s".into()))
        );
        assert_eq!(parse_go_duration("s"), Err(DurationError::Invalid));
        assert_eq!(parse_go_duration("."), Err(DurationError::Invalid));
        assert_eq!(parse_go_duration("-"), Err(DurationError::Invalid));
        assert_eq!(parse_go_duration("-1s"), Err(DurationError::Negative));
        assert_eq!(
            parse_go_duration("9999999999h"),
            Err(DurationError::Overflow)
        );
    }

    #[test]
    fn crd_pattern_is_a_prefix_match() {
        for good in ["1m", "30s", "500ms", "1m30s", "10sec", "0s"] {
            assert!(matches_crd_pattern(good), "{good}");
        }
        for bad in ["1h", "1.5m", "m", "", " 1m", "1", "PT1M"] {
            assert!(!matches_crd_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn crd_form_rewrites_hours_and_fractions() {
        assert_eq!(crd_form("1h").as_deref(), Some("60m"));
        assert_eq!(crd_form("1.5m").as_deref(), Some("90s"));
        assert_eq!(crd_form("500ms"), None);
        assert_eq!(crd_form("nope"), None);
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go(Duration::from_secs(60)), "1m0s");
        assert_eq!(format_go(Duration::from_secs(10)), "10s");
        assert_eq!(format_go(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_go(Duration::from_millis(500)), "500ms");
        assert_eq!(format_go(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go(Duration::ZERO), "0s");
        assert_eq!(format_go(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(format_go(Duration::from_nanos(2250)), "2.25µs");
        assert_eq!(format_go(Duration::from_nanos(7)), "7ns");
        assert_eq!(format_go(Duration::from_millis(90_500)), "1m30.5s");
    }

    proptest::proptest! {
        #[test]
        fn round_trips_whole_seconds(secs in 0u64..1_000_000) {
            let d = Duration::from_secs(secs);
            proptest::prop_assert_eq!(parse_go_duration(&format_go(d)), Ok(d));
        }

        #[test]
        fn round_trips_any_duration(nanos in 0u64..100_000_000_000_000) {
            let d = Duration::from_nanos(nanos);
            proptest::prop_assert_eq!(parse_go_duration(&format_go(d)), Ok(d));
        }

        #[test]
        fn never_panics(s in "\\PC{0,12}") {
            let _ = parse_go_duration(&s);
        }
    }
}
