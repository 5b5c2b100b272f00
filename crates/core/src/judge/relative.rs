//! Relative thresholds: the canary's value against the primary's, as a ratio or a difference,
//! checked against bounds, for teams that want "no more than 10% slower than the primary"
//! without statistics (Flagger #225, #739). One value per side (an instant query each, or the
//! mean of a window); the result carries both values, the comparison and the verdict.

use serde::{Deserialize, Serialize};

use super::numbers::fmt_num;

/// How the canary is compared with the primary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RelativeMode {
    /// canary / primary (1.1 = 10% higher).
    #[default]
    Ratio,
    /// canary − primary, in the metric's unit.
    Difference,
}

impl RelativeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RelativeMode::Ratio => "ratio",
            RelativeMode::Difference => "difference",
        }
    }
}

/// Bounds on the ratio or difference (either may be absent, as in a Flagger `thresholdRange`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RelativeThreshold {
    pub mode: RelativeMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// The verdict of a relative check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelativeVerdict {
    Pass,
    Fail,
    /// A side has no value: nothing to compare (the caller decides, as for a metric without
    /// data).
    NoData,
}

/// A relative check's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelativeResult {
    pub canary: Option<f64>,
    pub primary: Option<f64>,
    pub mode: RelativeMode,
    /// The ratio or difference; `None` when a side is missing or the ratio is unbounded (a
    /// primary of 0 under a non-zero canary).
    pub value: Option<f64>,
    /// The ratio is unbounded: primary 0, canary above 0 (or below: `-inf`).
    pub unbounded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    pub verdict: RelativeVerdict,
    pub reason: String,
}

/// Compares the canary's value with the primary's. Non-finite values count as missing.
pub fn compare(
    canary: Option<f64>,
    primary: Option<f64>,
    threshold: RelativeThreshold,
) -> RelativeResult {
    let RelativeThreshold { mode, min, max } = threshold;
    let canary = canary.filter(|v| v.is_finite());
    let primary = primary.filter(|v| v.is_finite());
    let mut r = RelativeResult {
        canary,
        primary,
        mode,
        value: None,
        unbounded: false,
        min,
        max,
        verdict: RelativeVerdict::NoData,
        reason: String::new(),
    };
    let (Some(c), Some(p)) = (canary, primary) else {
        let side = match (canary.is_none(), primary.is_none()) {
            (true, true) => "canary and primary have",
            (true, false) => "canary has",
            _ => "primary has",
        };
        r.reason = format!("{side} no value");
        return r;
    };
    // The comparable figure, or ±∞ for an unbounded ratio.
    let figure = match mode {
        RelativeMode::Difference => c - p,
        RelativeMode::Ratio if p != 0.0 => c / p,
        // Both 0: as good as the primary.
        RelativeMode::Ratio if c == 0.0 => 1.0,
        RelativeMode::Ratio => {
            r.unbounded = true;
            if c > 0.0 {
                f64::INFINITY
            } else {
                f64::NEG_INFINITY
            }
        }
    };
    if figure.is_finite() {
        r.value = Some(figure);
    }
    let shown = if r.unbounded {
        format!("unbounded (primary 0, canary {})", fmt_num(c))
    } else {
        fmt_num(figure)
    };
    let what = format!(
        "canary {} vs primary {}: {} {shown}",
        fmt_num(c),
        fmt_num(p),
        mode.as_str()
    );
    let below = min.filter(|m| figure < *m);
    let above = max.filter(|m| figure > *m);
    (r.verdict, r.reason) = match (below, above) {
        (Some(m), _) => (
            RelativeVerdict::Fail,
            format!("{what} is below the minimum {}", fmt_num(m)),
        ),
        (_, Some(m)) => (
            RelativeVerdict::Fail,
            format!("{what} is above the maximum {}", fmt_num(m)),
        ),
        _ => (RelativeVerdict::Pass, format!("{what} is within bounds")),
    };
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(mode: RelativeMode, min: Option<f64>, max: Option<f64>) -> RelativeThreshold {
        RelativeThreshold { mode, min, max }
    }

    #[test]
    fn ratio_against_a_maximum() {
        let r = compare(
            Some(130.0),
            Some(100.0),
            t(RelativeMode::Ratio, None, Some(1.1)),
        );
        assert_eq!(r.verdict, RelativeVerdict::Fail);
        assert_eq!(r.value, Some(1.3));
        assert_eq!(
            r.reason,
            "canary 130 vs primary 100: ratio 1.3 is above the maximum 1.1"
        );
        let ok = compare(
            Some(105.0),
            Some(100.0),
            t(RelativeMode::Ratio, None, Some(1.1)),
        );
        assert_eq!(ok.verdict, RelativeVerdict::Pass);
        assert_eq!((ok.canary, ok.primary), (Some(105.0), Some(100.0)));
    }

    #[test]
    fn difference_against_bounds() {
        let th = t(RelativeMode::Difference, Some(-0.01), Some(0.01));
        assert_eq!(
            compare(Some(0.05), Some(0.01), th).verdict,
            RelativeVerdict::Fail
        );
        assert_eq!(
            compare(Some(0.0), Some(0.02), th).verdict,
            RelativeVerdict::Fail
        );
        let r = compare(Some(0.015), Some(0.01), th);
        assert_eq!(r.verdict, RelativeVerdict::Pass);
        assert!((r.value.expect("a difference") - 0.005).abs() < 1e-15);
    }

    #[test]
    fn zero_primary() {
        let th = t(RelativeMode::Ratio, None, Some(2.0));
        let r = compare(Some(0.5), Some(0.0), th);
        assert_eq!(
            (r.verdict, r.unbounded, r.value),
            (RelativeVerdict::Fail, true, None)
        );
        let both = compare(Some(0.0), Some(0.0), th);
        assert_eq!(
            (both.verdict, both.value),
            (RelativeVerdict::Pass, Some(1.0))
        );
        // An unbounded ratio passes a lone minimum.
        let min_only = compare(
            Some(0.5),
            Some(0.0),
            t(RelativeMode::Ratio, Some(0.9), None),
        );
        assert_eq!(min_only.verdict, RelativeVerdict::Pass);
    }

    #[test]
    fn missing_sides_are_no_data() {
        let th = t(RelativeMode::Ratio, None, Some(1.1));
        let r = compare(None, Some(1.0), th);
        assert_eq!(
            (r.verdict, r.reason.as_str()),
            (RelativeVerdict::NoData, "canary has no value")
        );
        assert_eq!(
            compare(Some(f64::NAN), Some(1.0), th).verdict,
            RelativeVerdict::NoData
        );
    }
}
