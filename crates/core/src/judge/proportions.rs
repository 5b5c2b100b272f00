//! The two-sample test for equality of proportions with continuity correction, as R's
//! `prop.test(c(x1, x2), c(n1, n2), conf.level = …)` computes it: the estimate is the
//! difference of the two rates, the interval the Wald interval widened by Yates' correction,
//! the p-value that of the corrected χ² statistic (1 degree of freedom).
//!
//! The judge offers it for error counts (`test: proportions`), where Kayenta's rank test is
//! known to pass sparse, zero-heavy series (spinnaker/kayenta#426): the rank test sees a few
//! non-zero points among zeros as no shift at all, while counting events against trials sees
//! the rate.

use serde::{Deserialize, Serialize};

use super::normal;

/// Events out of trials on one side (errors out of requests). Fractional counts are accepted:
/// Prometheus' `increase()` extrapolates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub events: f64,
    pub trials: f64,
}

impl Counts {
    /// events / trials.
    pub fn rate(&self) -> f64 {
        self.events / self.trials
    }
}

/// The test's figures: x = canary, y = primary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Proportions {
    /// The canary's rate.
    pub canary_rate: f64,
    /// The primary's rate.
    pub primary_rate: f64,
    /// canary rate − primary rate.
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
    pub confidence_level: f64,
    /// The corrected χ² statistic (R's `X-squared`).
    pub statistic: f64,
    pub p_value: f64,
}

/// Why the test cannot run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProportionsError {
    #[error("a side has no trials")]
    NoTrials,
    #[error("counts must be finite, events between 0 and the trials")]
    BadCounts,
    #[error("the confidence level must lie strictly between 0 and 1")]
    BadLevel,
}

/// Runs the test of `canary` against `primary`.
pub fn prop_test(
    canary: Counts,
    primary: Counts,
    confidence_level: f64,
) -> Result<Proportions, ProportionsError> {
    let sides = [canary, primary];
    if sides
        .iter()
        .any(|c| !c.events.is_finite() || !c.trials.is_finite())
    {
        return Err(ProportionsError::BadCounts);
    }
    if sides.iter().any(|c| c.trials <= 0.0) {
        return Err(ProportionsError::NoTrials);
    }
    if sides.iter().any(|c| c.events < 0.0 || c.events > c.trials) {
        return Err(ProportionsError::BadCounts);
    }
    if !(confidence_level > 0.0 && confidence_level < 1.0) {
        return Err(ProportionsError::BadLevel);
    }
    let (p1, p2) = (canary.rate(), primary.rate());
    let delta = p1 - p2;
    let inv_n = 1.0 / canary.trials + 1.0 / primary.trials;
    let yates = 0.5_f64.min(delta.abs() / inv_n);
    let z = normal::quantile((1.0 + confidence_level) / 2.0);
    let width = z * (p1 * (1.0 - p1) / canary.trials + p2 * (1.0 - p2) / primary.trials).sqrt()
        + yates * inv_n;
    let lower = (delta - width).max(-1.0);
    let upper = (delta + width).min(1.0);

    // χ² on the 2×2 table of events and non-events, expected counts under one common rate.
    let pooled = (canary.events + primary.events) / (canary.trials + primary.trials);
    let mut statistic = 0.0;
    for side in sides {
        for (observed, expected) in [
            (side.events, side.trials * pooled),
            (side.trials - side.events, side.trials * (1.0 - pooled)),
        ] {
            statistic += ((observed - expected).abs() - yates).powi(2) / expected;
        }
    }
    // P(χ²₁ > s) = 2·(1 − Φ(√s)).
    let p_value = if statistic.is_nan() {
        // Both rates 0 or both 1: nothing differs.
        1.0
    } else {
        2.0 * normal::upper_tail(statistic.sqrt())
    };
    Ok(Proportions {
        canary_rate: p1,
        primary_rate: p2,
        estimate: delta,
        lower,
        upper,
        confidence_level,
        statistic,
        p_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(events: f64, trials: f64) -> Counts {
        Counts { events, trials }
    }

    #[test]
    fn refuses_impossible_counts() {
        assert_eq!(
            prop_test(c(1.0, 0.0), c(0.0, 10.0), 0.98),
            Err(ProportionsError::NoTrials)
        );
        assert_eq!(
            prop_test(c(11.0, 10.0), c(0.0, 10.0), 0.98),
            Err(ProportionsError::BadCounts)
        );
        assert_eq!(
            prop_test(c(f64::NAN, 10.0), c(0.0, 10.0), 0.98),
            Err(ProportionsError::BadCounts)
        );
    }

    #[test]
    fn no_events_anywhere_is_no_difference() {
        let t = prop_test(c(0.0, 100.0), c(0.0, 50.0), 0.98).expect("test runs");
        assert_eq!(
            (t.estimate, t.lower, t.upper, t.p_value),
            (0.0, 0.0, 0.0, 1.0)
        );
    }
}
