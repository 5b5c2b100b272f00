//! One metric's judgement: Kayenta's per-metric pipeline (reference §2) with every figure kept.
//!
//! NaN handling → outlier removal → summaries → empty/short data → trivial cases → tie-breaking
//! noise → the test (Mann-Whitney interval, or a test of proportions) → effect size →
//! High/Low/Pass against the band `±0.25·|estimate|` and the effect-size gate → criticality.

use serde::{Deserialize, Serialize};

use super::config::{
    CONFIDENCE_LEVEL, Direction, EffectMeasure, EffectThresholds, MetricConfig, NanStrategy,
    OutlierStrategy, TOLERANCE, TestKind,
};
use super::noise::{SplitMix64, add_noise, seed_for};
use super::numbers::fmt_num;
use super::proportions::{Counts, Proportions, ProportionsError, prop_test};
use super::stats::{Summary, average_ranks, mean, percentile_sorted};
use super::wilcoxon::{RootTolerance, Wilcoxon, wilcoxon, wilcoxon_exact};

/// The observations of one metric over the window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MetricData {
    /// One value per step (range query), canary and primary; for the Mann-Whitney test.
    Series { canary: Vec<f64>, primary: Vec<f64> },
    /// Events and trials summed over the window; for the proportions test.
    Counts { canary: Counts, primary: Counts },
}

/// A metric to judge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricInput {
    pub name: String,
    pub config: MetricConfig,
    pub data: MetricData,
}

/// Kayenta's metric classes (serialized with Kayenta's labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Classification {
    Pass,
    High,
    Low,
    /// Missing data, left out of the score.
    Nodata,
    /// Missing data of a `mustHaveData` metric: counts as a failure.
    NodataFailMetric,
    /// The test could not run.
    Error,
}

impl Classification {
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Pass => "Pass",
            Classification::High => "High",
            Classification::Low => "Low",
            Classification::Nodata => "Nodata",
            Classification::NodataFailMetric => "NodataFailMetric",
            Classification::Error => "Error",
        }
    }
}

impl std::fmt::Display for Classification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to one side's points before the test.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SideFigures {
    /// Points received.
    pub points: usize,
    /// Points that were not numbers (NaN, ±Inf): removed or replaced by 0.
    pub not_numbers: usize,
    /// Points dropped as outliers.
    pub outliers: usize,
    /// The points tested, summarized.
    pub summary: Summary,
    /// For the proportions test: the summed counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
    /// σ of the tie-breaking noise added to this side, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_sigma: Option<f64>,
}

/// The test's figures, whichever test ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    pub test: TestKind,
    /// The estimated change canary − primary: a location shift (Mann-Whitney) or a difference
    /// of rates (proportions).
    pub estimate: f64,
    /// The confidence interval of the change.
    pub lower: f64,
    pub upper: f64,
    pub confidence_level: f64,
    /// Half-width of the band around 0 the interval must clear: 0.25·|estimate|.
    pub band: f64,
    /// p-value for "no change" (reported; the classification uses the interval).
    pub p_value: f64,
    /// R's `W` (Mann-Whitney) or `X-squared` (proportions).
    pub statistic: f64,
    /// The absolute tolerance the interval ends were located to (Mann-Whitney, normal
    /// approximation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_tolerance: Option<f64>,
    /// The interval comes from the exact distribution (option `exact`).
    #[serde(default)]
    pub exact: bool,
}

impl Comparison {
    fn from_wilcoxon(w: &Wilcoxon) -> Comparison {
        Comparison {
            test: TestKind::MannWhitney,
            estimate: w.estimate,
            lower: w.lower,
            upper: w.upper,
            confidence_level: w.confidence_level,
            band: TOLERANCE * w.estimate.abs(),
            p_value: w.p_value,
            statistic: w.statistic,
            root_tolerance: (!w.exact).then_some(w.root_tolerance),
            exact: w.exact,
        }
    }

    fn from_proportions(p: &Proportions) -> Comparison {
        Comparison {
            test: TestKind::Proportions,
            estimate: p.estimate,
            lower: p.lower,
            upper: p.upper,
            confidence_level: p.confidence_level,
            band: TOLERANCE * p.estimate.abs(),
            p_value: p.p_value,
            statistic: p.statistic,
            root_tolerance: None,
            exact: false,
        }
    }

    /// The interval lies wholly above the band.
    pub fn above_band(&self) -> bool {
        self.lower > self.band
    }

    /// The interval lies wholly below the band.
    pub fn below_band(&self) -> bool {
        self.upper < -self.band
    }
}

/// The effect size and its thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Effect {
    /// The measured effect; `None` when it cannot be computed (a zero mean), in which case the
    /// gate is open, as in Kayenta.
    pub value: Option<f64>,
    #[serde(flatten)]
    pub thresholds: EffectThresholds,
}

/// The optional spread check's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpreadFigures {
    /// Mann-Whitney on the distances to each side's median.
    pub comparison: Comparison,
    /// Mean distance to the median, canary and primary.
    pub canary_deviation: f64,
    pub primary_deviation: f64,
    /// canary / primary mean distance (`None` if either is 0).
    pub ratio: Option<f64>,
    pub allowed_increase: f64,
    /// The canary's spread is higher beyond the band and the allowed ratio.
    pub higher: bool,
}

/// One metric's judgement, with everything that explains it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    pub name: String,
    pub classification: Classification,
    /// The result counts as a critical failure (it zeroes the score unless it is a Pass).
    pub critical: bool,
    pub muted: bool,
    pub groups: Vec<String>,
    pub direction: Direction,
    /// Why, in words.
    pub reason: String,
    pub canary: SideFigures,
    pub primary: SideFigures,
    /// mean(canary) / mean(primary) (rate ratio for proportions): Kayenta's "deviation".
    pub deviation: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread: Option<SpreadFigures>,
    /// The seed of the tie-breaking noise, when noise was added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_seed: Option<u64>,
}

/// Judges one metric.
pub fn judge_metric(input: &MetricInput) -> MetricResult {
    let cfg = &input.config;
    let mut result = MetricResult {
        name: input.name.clone(),
        classification: Classification::Pass,
        critical: false,
        muted: cfg.muted,
        groups: cfg.effective_groups(),
        direction: cfg.direction,
        reason: String::new(),
        canary: SideFigures::default(),
        primary: SideFigures::default(),
        deviation: None,
        comparison: None,
        effect: None,
        spread: None,
        noise_seed: None,
    };
    match &input.data {
        MetricData::Series { canary, primary } => judge_series(&mut result, cfg, canary, primary),
        MetricData::Counts { canary, primary } => judge_counts(&mut result, cfg, *canary, *primary),
    }
    result
}

/// NaN handling then outlier removal on one side.
fn prepare(values: &[f64], cfg: &MetricConfig) -> (Vec<f64>, SideFigures) {
    let not_numbers = values.iter().filter(|v| !v.is_finite()).count();
    let mut kept: Vec<f64> = match cfg.nan_strategy {
        NanStrategy::Remove => values.iter().copied().filter(|v| v.is_finite()).collect(),
        NanStrategy::Replace => values
            .iter()
            .map(|&v| if v.is_finite() { v } else { 0.0 })
            .collect(),
    };
    let mut outliers = 0;
    if cfg.outliers.strategy == OutlierStrategy::Remove && !kept.is_empty() {
        let (lo, hi) = fences(&kept, cfg.outliers.outlier_factor);
        let before = kept.len();
        kept.retain(|&v| v >= lo && v <= hi);
        outliers = before - kept.len();
    }
    let figures = SideFigures {
        points: values.len(),
        not_numbers,
        outliers,
        summary: Summary::of(&kept),
        counts: None,
        noise_sigma: None,
    };
    (kept, figures)
}

/// Kayenta's "reduced sensitivity" IQR fences.
fn fences(values: &[f64], factor: f64) -> (f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let q1 = percentile_sorted(&sorted, 25.0);
    let q3 = percentile_sorted(&sorted, 75.0);
    let iqr = q3 - q1;
    let lo = (q1 - factor * iqr).min(percentile_sorted(&sorted, 1.0));
    let hi = (q3 + factor * iqr).max(percentile_sorted(&sorted, 99.0));
    (lo, hi)
}

/// Missing (or too little) data: Nodata, NodataFailMetric, or Pass with `replace`.
fn no_data(result: &mut MetricResult, cfg: &MetricConfig, why: String, replaced: bool) {
    if replaced {
        result.classification = Classification::Pass;
        result.reason = format!("{why}; with nanStrategy replace an empty side passes");
    } else if cfg.must_have_data && !cfg.critical {
        result.classification = Classification::NodataFailMetric;
        result.reason = format!("{why}, and the metric must have data");
    } else {
        result.classification = Classification::Nodata;
        result.critical = cfg.critical;
        result.reason = if cfg.critical {
            format!("{why} (critical metric)")
        } else {
            format!("{why}; the metric is left out of the score")
        };
    }
}

fn judge_series(result: &mut MetricResult, cfg: &MetricConfig, canary: &[f64], primary: &[f64]) {
    let (c, cf) = prepare(canary, cfg);
    let (p, pf) = prepare(primary, cfg);
    result.canary = cf;
    result.primary = pf;

    if c.is_empty() || p.is_empty() {
        let side = match (c.is_empty(), p.is_empty()) {
            (true, true) => "canary and primary have",
            (true, false) => "canary has",
            _ => "primary has",
        };
        let why = format!("{side} no data");
        let replaced = cfg.nan_strategy == NanStrategy::Replace;
        no_data(result, cfg, why, replaced);
        return;
    }
    if c.len() < cfg.min_points || p.len() < cfg.min_points {
        let why = format!(
            "too few points to judge: canary {}, primary {}, minPoints {}",
            c.len(),
            p.len(),
            cfg.min_points
        );
        no_data(result, cfg, why, false);
        return;
    }
    result.deviation = ratio(mean(&c), mean(&p));

    let mut cs = c.clone();
    let mut ps = p.clone();
    cs.sort_by(f64::total_cmp);
    ps.sort_by(f64::total_cmp);
    if cs == ps {
        result.reason = "canary and primary data are identical".to_string();
        return;
    }
    if cs[0] == cs[cs.len() - 1] && ps[0] == ps[ps.len() - 1] && cs[0] == ps[0] {
        result.reason = format!("every point on both sides is {}", fmt_num(cs[0]));
        return;
    }

    // Both sides constant (with different constants): break the ties with seeded noise.
    let (mut x, mut y) = (c, p);
    if cs[0] == cs[cs.len() - 1] && ps[0] == ps[ps.len() - 1] {
        let seed = seed_for(&result.name);
        let mut rng = SplitMix64::new(seed);
        let (sx, sy) = (cs[0].abs() * 1e-5, ps[0].abs() * 1e-5);
        x = add_noise(&x, sx, &mut rng);
        y = add_noise(&y, sy, &mut rng);
        result.noise_seed = Some(seed);
        result.canary.noise_sigma = Some(sx);
        result.primary.noise_sigma = Some(sy);
        result.deviation = ratio(mean(&x), mean(&y));
    }

    let exact = if cfg.exact {
        wilcoxon_exact(&x, &y, CONFIDENCE_LEVEL)
    } else {
        None
    };
    let test = match exact.map_or_else(
        || wilcoxon(&x, &y, CONFIDENCE_LEVEL, RootTolerance::Scaled),
        Ok,
    ) {
        Ok(t) => t,
        Err(e) => {
            test_error(result, cfg, &e.to_string());
            return;
        }
    };
    let comparison = Comparison::from_wilcoxon(&test);
    if comparison.exact && comparison.confidence_level < CONFIDENCE_LEVEL {
        let why = format!(
            "too few points for a {}% interval: with {} and {} points the exact distribution reaches {}%",
            fmt_num(CONFIDENCE_LEVEL * 100.0),
            x.len(),
            y.len(),
            fmt_num(comparison.confidence_level * 100.0)
        );
        result.comparison = Some(comparison);
        no_data(result, cfg, why, false);
        return;
    }
    let thresholds = cfg.effect_size.thresholds();
    let effect_value = match thresholds.measure {
        EffectMeasure::MeanRatio => result.deviation,
        EffectMeasure::Cles => Some(cles(&x, &y)),
    };
    classify(result, cfg, comparison, thresholds, effect_value);

    if let Some(spread) = &cfg.spread {
        spread_check(result, cfg, &x, &y, spread.allowed_increase);
    }
}

fn judge_counts(result: &mut MetricResult, cfg: &MetricConfig, canary: Counts, primary: Counts) {
    result.canary.counts = Some(canary);
    result.primary.counts = Some(primary);
    let empty = |c: Counts| !(c.trials.is_finite() && c.trials > 0.0);
    if empty(canary) || empty(primary) {
        let side = match (empty(canary), empty(primary)) {
            (true, true) => "canary and primary have",
            (true, false) => "canary has",
            _ => "primary has",
        };
        no_data(result, cfg, format!("{side} no trials"), false);
        return;
    }
    let test = match prop_test(canary, primary, CONFIDENCE_LEVEL) {
        Ok(t) => t,
        Err(ProportionsError::NoTrials) => {
            no_data(result, cfg, "a side has no trials".to_string(), false);
            return;
        }
        Err(e) => {
            test_error(result, cfg, &e.to_string());
            return;
        }
    };
    result.deviation = ratio(test.canary_rate, test.primary_rate);
    if test.canary_rate == test.primary_rate {
        result.reason = format!(
            "canary and primary have the same rate, {}",
            fmt_num(test.canary_rate)
        );
        result.comparison = Some(Comparison::from_proportions(&test));
        return;
    }
    let comparison = Comparison::from_proportions(&test);
    let thresholds = cfg.effect_size.thresholds();
    classify(result, cfg, comparison, thresholds, result.deviation);
}

fn test_error(result: &mut MetricResult, cfg: &MetricConfig, why: &str) {
    result.classification = Classification::Error;
    result.critical = cfg.critical;
    result.reason = format!("the test could not run: {why}");
}

/// High/Low/Pass from the interval, the band and the effect-size gate; then criticality.
fn classify(
    result: &mut MetricResult,
    cfg: &MetricConfig,
    comparison: Comparison,
    thresholds: EffectThresholds,
    effect_value: Option<f64>,
) {
    let dir = cfg.direction;
    let measure = thresholds.measure.as_str();
    let level = format!(
        "{}%{}",
        fmt_num(comparison.confidence_level * 100.0),
        if comparison.exact { " exact" } else { "" }
    );
    let interval = format!(
        "[{}, {}]",
        fmt_num(comparison.lower),
        fmt_num(comparison.upper)
    );
    let what = match comparison.test {
        TestKind::MannWhitney => "shift",
        TestKind::Proportions => "rate difference",
    };
    let effect_text = |v: Option<f64>| v.map_or("undefined (a zero mean)".to_string(), fmt_num);
    let gate_high = effect_value.is_none_or(|e| e >= thresholds.allowed_increase);
    let gate_low = effect_value.is_none_or(|e| e <= thresholds.allowed_decrease);
    let band = fmt_num(comparison.band);

    if dir.allows_increase() && comparison.above_band() && gate_high {
        result.classification = Classification::High;
        result.reason = format!(
            "canary higher: the {level} interval of the {what} {interval} lies above +{band} and the {measure} {} is at least {}",
            effect_text(effect_value),
            fmt_num(thresholds.allowed_increase)
        );
    } else if dir.allows_decrease() && comparison.below_band() && gate_low {
        result.classification = Classification::Low;
        result.reason = format!(
            "canary lower: the {level} interval of the {what} {interval} lies below -{band} and the {measure} {} is at most {}",
            effect_text(effect_value),
            fmt_num(thresholds.allowed_decrease)
        );
    } else {
        result.classification = Classification::Pass;
        result.reason = if comparison.above_band() && dir.allows_increase() {
            format!(
                "canary higher, but the {measure} {} is below the allowed increase {}",
                effect_text(effect_value),
                fmt_num(thresholds.allowed_increase)
            )
        } else if comparison.below_band() && dir.allows_decrease() {
            format!(
                "canary lower, but the {measure} {} is above the allowed decrease {}",
                effect_text(effect_value),
                fmt_num(thresholds.allowed_decrease)
            )
        } else if comparison.above_band() || comparison.below_band() {
            format!(
                "the {level} interval of the {what} {interval} clears the band ±{band}, in a direction ({}) that is not counted against the canary",
                if comparison.above_band() {
                    "higher"
                } else {
                    "lower"
                }
            )
        } else {
            format!(
                "no clear {what}: the {level} interval {interval} reaches into the band ±{band}"
            )
        };
    }

    // A critical metric fails the canary only past the critical effect size.
    if cfg.critical {
        let critical = match result.classification {
            Classification::High => effect_value.is_none_or(|e| e >= thresholds.critical_increase),
            Classification::Low => effect_value.is_none_or(|e| e <= thresholds.critical_decrease),
            _ => false,
        };
        if critical {
            result.critical = true;
            result.reason.push_str(" (critical)");
        } else if result.classification != Classification::Pass {
            result.reason.push_str(&format!(
                " (critical metric, but the {measure} does not reach the critical threshold)"
            ));
        }
    }
    result.effect = Some(Effect {
        value: effect_value,
        thresholds,
    });
    result.comparison = Some(comparison);
}

/// The spread check (ours, opt-in): distances to each side's median, compared by the same rule.
fn spread_check(result: &mut MetricResult, cfg: &MetricConfig, x: &[f64], y: &[f64], allowed: f64) {
    let distances = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let m = percentile_sorted(&s, 50.0);
        v.iter().map(|a| (a - m).abs()).collect::<Vec<_>>()
    };
    let (dx, dy) = (distances(x), distances(y));
    let Ok(test) = wilcoxon(&dx, &dy, CONFIDENCE_LEVEL, RootTolerance::Scaled) else {
        // Every distance is the same on both sides (two constant sides): no spread to compare.
        return;
    };
    let comparison = Comparison::from_wilcoxon(&test);
    let (mx, my) = (mean(&dx), mean(&dy));
    let r = ratio(mx, my);
    let higher = comparison.above_band() && r.is_none_or(|r| r >= allowed);
    if higher && result.classification == Classification::Pass {
        result.classification = Classification::High;
        result.reason = format!(
            "canary spread higher: the {}% interval of the shift of distances to the median [{}, {}] lies above +{} and their mean ratio {} is at least {} (location: {})",
            fmt_num(comparison.confidence_level * 100.0),
            fmt_num(comparison.lower),
            fmt_num(comparison.upper),
            fmt_num(comparison.band),
            r.map_or("undefined".to_string(), fmt_num),
            fmt_num(allowed),
            result.reason
        );
        if cfg.critical {
            result.critical = true;
            result.reason.push_str(" (critical)");
        }
    }
    result.spread = Some(SpreadFigures {
        comparison,
        canary_deviation: mx,
        primary_deviation: my,
        ratio: r,
        allowed_increase: allowed,
        higher,
    });
}

/// a / b, undefined when either is 0 (Kayenta's mean ratio rule).
fn ratio(a: f64, b: f64) -> Option<f64> {
    if a == 0.0 || b == 0.0 || !a.is_finite() || !b.is_finite() {
        None
    } else {
        Some(a / b)
    }
}

/// Common-language effect size of x over y: (2·R₁ − m(m+1)) / (2·m·n), R₁ the rank sum of x.
fn cles(x: &[f64], y: &[f64]) -> f64 {
    let pooled: Vec<f64> = x.iter().chain(y).copied().collect();
    let (ranks, _) = average_ranks(&pooled);
    let (m, n) = (x.len() as f64, y.len() as f64);
    let r1: f64 = ranks[..x.len()].iter().sum();
    (2.0 * r1 - m * (m + 1.0)) / (2.0 * m * n)
}

#[cfg(test)]
mod tests;
