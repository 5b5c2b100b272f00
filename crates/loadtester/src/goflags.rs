//! Helpers that make the command lines behave like the Go tools they replace: single-dash long
//! flags (`-port=9090`), Go durations (`1h30m`) and Go booleans (`strconv.ParseBool`).

use std::ffi::OsString;
use std::time::Duration;

/// Rewrites Go-style single-dash long flags (`-port=9090`, `-disable-keepalive`) into the
/// double-dash form clap understands (`--port=9090`). Single-letter flags (`-n`) are left alone.
///
/// Like Go's `flag` package, parsing stops at `--` or at the first positional argument: whatever
/// follows is passed through untouched. The value of a flag given as a separate argument (`-d
/// -x`) is never rewritten; `is_bool` tells which flags take no value.
pub fn normalize(
    args: impl IntoIterator<Item = OsString>,
    is_bool: impl Fn(&str) -> bool,
) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        let Some(s) = arg.to_str() else {
            out.push(arg);
            out.extend(iter.by_ref());
            break;
        };
        if s == "--" || !s.starts_with('-') || s == "-" {
            out.push(arg);
            out.extend(iter.by_ref());
            break;
        }
        let name_and_value = s.trim_start_matches('-');
        let has_value = name_and_value.contains('=');
        let name = name_and_value.split('=').next().unwrap_or_default();
        if s.starts_with("--") || s.len() <= 2 {
            out.push(arg.clone());
        } else {
            out.push(OsString::from(format!("-{s}")));
        }
        if !has_value
            && !is_bool(name)
            && !matches!(name, "h" | "help")
            && let Some(value) = iter.next()
        {
            out.push(value);
        }
    }
    out
}

/// Parses a Go duration string (`300ms`, `1.5h`, `1h10m10s`, `-1m` is rejected, `0` is zero).
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(format!("invalid duration {input:?}"));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(format!("negative duration {input:?} is not allowed"));
    }
    let mut rest = s;
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {input:?}"))?;
        if num_len == 0 {
            return Err(format!("invalid duration {input:?}"));
        }
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid duration {input:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("missing unit in duration {input:?}")),
            other => return Err(format!("unknown unit {other:?} in duration {input:?}")),
        };
        total_nanos += number * scale;
    }
    if !total_nanos.is_finite() || total_nanos > u64::MAX as f64 {
        return Err(format!("invalid duration {input:?}"));
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

/// Go's `strconv.ParseBool`: `1 t T TRUE true True` and `0 f F FALSE false False`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Formats a duration the way Go prints it for the common cases (`1h0m0s`, `1m30s`, `500ms`).
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_float(nanos as f64 / 1e3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_float(nanos as f64 / 1e6));
    }
    let secs = d.as_secs_f64();
    let hours = d.as_secs() / 3600;
    let minutes = (d.as_secs() % 3600) / 60;
    let seconds = secs - (hours * 3600 + minutes * 60) as f64;
    let seconds = trim_float(seconds);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize(args.iter().map(OsString::from), |n| {
            matches!(n, "disable-keepalive" | "zap-replace-globals")
        })
        .into_iter()
        .map(|s| s.into_string().unwrap())
        .collect()
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        assert_eq!(
            norm(&[
                "-port=9090",
                "-timeout",
                "1h",
                "--log-level=info",
                "-n",
                "5"
            ]),
            [
                "--port=9090",
                "--timeout",
                "1h",
                "--log-level=info",
                "-n",
                "5"
            ]
        );
    }

    #[test]
    fn values_and_positionals_are_untouched() {
        assert_eq!(
            norm(&[
                "-d",
                "-body-",
                "-disable-keepalive",
                "-H",
                "-x",
                "http://a/-b",
                "-z=1s"
            ]),
            [
                "-d",
                "-body-",
                "--disable-keepalive",
                "-H",
                "-x",
                "http://a/-b",
                "-z=1s"
            ]
        );
        assert_eq!(norm(&["--", "-port"]), ["--", "-port"]);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10us").unwrap(), Duration::from_micros(10));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1x").is_err());
    }

    #[test]
    fn go_bools_and_formatting() {
        assert_eq!(parse_bool("True"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("yes"), None);
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(20)), "20ms");
    }
}
