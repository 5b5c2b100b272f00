//! Kubernetes resource quantities (`250m`, `1.5`, `512Mi`, `2k`): parsed to numbers, and
//! numbers written back the way the API writes them.

use serde_json::Value;

/// The value of a quantity (`"250m"` → 0.25, `"1Ki"` → 1024); numbers are taken as they are.
pub(super) fn parse(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_str(s),
        _ => None,
    }
}

fn parse_str(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * scale)
}

/// A quantity as the API writes a computed value: whole numbers plain, others in
/// thousandths (`250m`), rounded up as the HPA rounds its averages.
pub(super) fn format(v: f64) -> String {
    let milli = (v * 1000.0).ceil() as i64;
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// Bytes in the largest binary unit that divides them (`33554432` → `32Mi`).
pub(super) fn format_bytes(v: f64) -> String {
    let n = v.ceil() as i64;
    for (unit, size) in [("Gi", 1i64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if n != 0 && n % size == 0 {
            return format!("{}{unit}", n / size);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities() {
        assert_eq!(parse(&json!("250m")), Some(0.25));
        assert_eq!(parse(&json!("1.5")), Some(1.5));
        assert_eq!(parse(&json!("32Mi")), Some(33554432.0));
        assert_eq!(parse(&json!("2k")), Some(2000.0));
        assert_eq!(parse(&json!(5)), Some(5.0));
        assert_eq!(parse(&json!("1e3")), Some(1000.0));
        assert_eq!(parse(&json!("ten")), None);
        assert_eq!(format(0.25), "250m");
        assert_eq!(format(3.0), "3");
        assert_eq!(format(0.0012), "2m");
        assert_eq!(format_bytes(33554432.0), "32Mi");
        assert_eq!(format_bytes(1000.0), "1000");
    }
}
