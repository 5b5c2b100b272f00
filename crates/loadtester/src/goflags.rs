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

/// Parses a Go duration (`300ms`, `1.5h`, `1h10m10s`, `0`) with flagger-core's parser, which
/// follows Go's `time.ParseDuration`, for clap's `value_parser`.
///
/// One deliberate difference from the Go tools: a negative value (`-1s`) is rejected. Go's
/// `flag.Duration` accepts it, and then hey's `-z -1s` silently means "no duration" and the
/// load tester's `-timeout -1s` makes every command fail at once; an error is more useful.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    flagger_core::duration::parse_go_duration(input)
        .map_err(|e| format!("invalid duration {input:?}: {e}"))
}

/// Go's `strconv.ParseBool`: `1 t T TRUE true True` and `0 f F FALSE false False`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Formats a duration the way Go prints it (`1h0m0s`, `1m30s`, `500ms`, `1.5ms`).
pub use flagger_core::duration::format_go as format_duration;

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
        // Go does not trim: neither does the parser.
        assert!(parse_duration(" 1s").is_err());
        assert_eq!(
            parse_duration("5d").unwrap_err(),
            "invalid duration \"5d\": unknown unit \"d\" (use ms, s, m or h)"
        );
    }

    #[test]
    fn go_bools_and_formatting() {
        assert_eq!(parse_bool("True"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("yes"), None);
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(20)), "20ms");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1.5ms");
    }
}
