//! Numbers for people, as the judge's reasons and renderings print them.

/// A number for people: four significant digits, no trailing zeros, scientific notation only
/// for very small or very large magnitudes.
pub fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let magnitude = v.abs().log10().floor();
    if !(-4.0..6.0).contains(&magnitude) {
        let s = format!("{v:.3e}");
        // 1.500e-5 → 1.5e-5
        if let Some((mantissa, exp)) = s.split_once('e') {
            let m = mantissa.trim_end_matches('0').trim_end_matches('.');
            return format!("{m}e{exp}");
        }
        return s;
    }
    let decimals = (3.0 - magnitude).max(0.0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people() {
        assert_eq!(fmt_num(0.0060123), "0.006012");
        assert_eq!(fmt_num(1.3), "1.3");
        assert_eq!(fmt_num(130.0), "130");
        assert_eq!(fmt_num(-24.75), "-24.75");
        assert_eq!(fmt_num(123456.0), "123456");
        assert_eq!(fmt_num(1.5e-5), "1.5e-5");
        assert_eq!(fmt_num(98.0), "98");
        assert_eq!(fmt_num(f64::INFINITY), "inf");
    }
}
