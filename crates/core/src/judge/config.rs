//! What the judge is told: per-metric options (Kayenta's `analysisConfigurations.canary`, same
//! names and defaults, plus a few options of ours that are off by default) and the judgement's
//! score thresholds and group weights. The serde forms are the ones `flagger judge --config`
//! reads; unknown fields are errors, so a misspelt option is never silently ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The confidence level of every interval (Kayenta fixes it).
pub const CONFIDENCE_LEVEL: f64 = 0.98;
/// The band around zero an interval must clear, as a fraction of |estimate| (Kayenta fixes it).
pub const TOLERANCE: f64 = 0.25;
/// The group of a metric that names none.
pub const DEFAULT_GROUP: &str = "default";

/// Which change of the canary counts against it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    /// Higher is worse (latency, errors).
    Increase,
    /// Lower is worse (throughput, success rate).
    Decrease,
    /// Any change is worse.
    #[default]
    Either,
}

impl Direction {
    pub fn allows_increase(self) -> bool {
        matches!(self, Direction::Increase | Direction::Either)
    }
    pub fn allows_decrease(self) -> bool {
        matches!(self, Direction::Decrease | Direction::Either)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Increase => "increase",
            Direction::Decrease => "decrease",
            Direction::Either => "either",
        }
    }
}

/// What to do with points that are not numbers (NaN, and ±Inf, which Prometheus returns for a
/// division by zero: both count as "not a number" here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NanStrategy {
    /// Drop them; a side left empty makes the metric "no data".
    #[default]
    Remove,
    /// Count them as 0; an empty side then passes.
    Replace,
}

/// Whether outliers are dropped before testing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OutlierStrategy {
    #[default]
    Keep,
    /// Drop points beyond the fences (see [`Outliers`]).
    Remove,
}

/// Outlier handling: with `remove`, a point is dropped when it lies below the smaller of
/// `Q1 − factor·IQR` and the 1st percentile, or above the larger of `Q3 + factor·IQR` and the
/// 99th percentile, each side on its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Outliers {
    pub strategy: OutlierStrategy,
    pub outlier_factor: f64,
}

impl Default for Outliers {
    fn default() -> Self {
        Outliers {
            strategy: OutlierStrategy::Keep,
            outlier_factor: 3.0,
        }
    }
}

/// The practical-size measure that gates High/Low.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EffectMeasure {
    /// mean(canary) / mean(primary); undefined when either mean is 0.
    #[default]
    MeanRatio,
    /// Common-language effect size: the probability that a canary point exceeds a primary
    /// point (ties count half).
    Cles,
}

impl EffectMeasure {
    /// Kayenta's default thresholds: 1.0 for the mean ratio, 0.5 for CLES (no gate).
    pub fn neutral(self) -> f64 {
        match self {
            EffectMeasure::MeanRatio => 1.0,
            EffectMeasure::Cles => 0.5,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            EffectMeasure::MeanRatio => "meanRatio",
            EffectMeasure::Cles => "cles",
        }
    }
}

/// Effect-size thresholds: High needs effect ≥ `allowedIncrease`, Low effect ≤
/// `allowedDecrease` (so `allowedIncrease: 1.1` tolerates a canary up to 10% higher on average);
/// a critical metric fails the whole canary only past `criticalIncrease`/`criticalDecrease`.
/// Unset thresholds take the measure's neutral value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct EffectSize {
    pub measure: EffectMeasure,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_increase: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_decrease: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critical_increase: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critical_decrease: Option<f64>,
}

/// The four thresholds with defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectThresholds {
    pub measure: EffectMeasure,
    pub allowed_increase: f64,
    pub allowed_decrease: f64,
    pub critical_increase: f64,
    pub critical_decrease: f64,
}

impl EffectSize {
    pub fn thresholds(&self) -> EffectThresholds {
        let n = self.measure.neutral();
        EffectThresholds {
            measure: self.measure,
            allowed_increase: self.allowed_increase.unwrap_or(n),
            allowed_decrease: self.allowed_decrease.unwrap_or(n),
            critical_increase: self.critical_increase.unwrap_or(n),
            critical_decrease: self.critical_decrease.unwrap_or(n),
        }
    }
}

/// The statistical test of a metric.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TestKind {
    /// Kayenta's: Mann-Whitney location shift with its 98% interval, on the two series.
    #[default]
    MannWhitney,
    /// flagger-rs: events out of trials on each side (errors out of requests), compared as
    /// rates by a test of proportions; the estimate is the difference of the rates and the
    /// effect size their ratio. For sparse error counts, where the rank test sees no shift.
    Proportions,
}

impl TestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TestKind::MannWhitney => "mannWhitney",
            TestKind::Proportions => "proportions",
        }
    }
}

/// flagger-rs: also compare the spread of the two sides, for variance blow-ups a location test
/// cannot see (spinnaker/kayenta#780). Each point is replaced by its distance to its side's
/// median and the distances go through the same Mann-Whitney rule, direction `increase`; a
/// canary whose spread is higher fails as High when the distances' interval clears the band
/// and their mean ratio is at least `allowedIncrease`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Spread {
    pub allowed_increase: f64,
}

impl Default for Spread {
    fn default() -> Self {
        Spread {
            allowed_increase: 1.0,
        }
    }
}

/// The options of one metric. Kayenta's names and defaults; `groups`, `test`, `spread`,
/// `exact` and `minPoints` are ours and default to Kayenta's behaviour.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct MetricConfig {
    pub direction: Direction,
    pub nan_strategy: NanStrategy,
    pub outliers: Outliers,
    /// A critical failure (High/Low past the critical effect size, or no data) zeroes the score.
    pub critical: bool,
    /// Missing data counts as a failure (`NodataFailMetric`) instead of being left out.
    pub must_have_data: bool,
    /// Reported but left out of the score.
    pub muted: bool,
    pub effect_size: EffectSize,
    /// Score groups; none means [`DEFAULT_GROUP`].
    pub groups: Vec<String>,
    pub test: TestKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread: Option<Spread>,
    /// flagger-rs: use the exact distribution of the Mann-Whitney statistic where R does by
    /// default (fewer than 50 points a side, no ties): the interval is then exact instead of
    /// a normal approximation, which matters for a handful of points; and a sample too small
    /// to reach the 98% level at all is "no data" instead of a verdict. Off = Kayenta.
    pub exact: bool,
    /// flagger-rs: fewer points than this on either side (after NaN and outlier handling) is
    /// "no data" rather than a verdict from a normal approximation of a handful of points.
    /// 0 (the default) = Kayenta's behaviour.
    pub min_points: usize,
}

impl MetricConfig {
    /// The groups the metric scores in.
    pub fn effective_groups(&self) -> Vec<String> {
        if self.groups.is_empty() {
            vec![DEFAULT_GROUP.to_string()]
        } else {
            self.groups.clone()
        }
    }

    /// Checks the values serde cannot: every problem, each with its field path.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut bad = |field: &str, message: String| {
            out.push(ConfigProblem {
                path: field.to_string(),
                message,
            })
        };
        let factor = self.outliers.outlier_factor;
        if !(factor.is_finite() && factor > 0.0) {
            bad(
                "outliers.outlierFactor",
                format!("must be a number above 0, not {factor}"),
            );
        }
        let e = &self.effect_size;
        for (field, value) in [
            ("effectSize.allowedIncrease", e.allowed_increase),
            ("effectSize.allowedDecrease", e.allowed_decrease),
            ("effectSize.criticalIncrease", e.critical_increase),
            ("effectSize.criticalDecrease", e.critical_decrease),
        ] {
            let Some(v) = value else { continue };
            let ok = match e.measure {
                EffectMeasure::MeanRatio => v.is_finite() && v >= 0.0,
                EffectMeasure::Cles => (0.0..=1.0).contains(&v),
            };
            if !ok {
                let range = match e.measure {
                    EffectMeasure::MeanRatio => "a ratio of 0 or more",
                    EffectMeasure::Cles => "a probability between 0 and 1",
                };
                bad(
                    field,
                    format!("must be {range} for {}, not {v}", e.measure.as_str()),
                );
            }
        }
        if self.test == TestKind::Proportions && e.measure == EffectMeasure::Cles {
            bad(
                "effectSize.measure",
                "the proportions test measures its effect as the ratio of the rates: use meanRatio"
                    .to_string(),
            );
        }
        if let Some(spread) = &self.spread
            && !(spread.allowed_increase.is_finite() && spread.allowed_increase >= 0.0)
        {
            bad(
                "spread.allowedIncrease",
                format!(
                    "must be a ratio of 0 or more, not {}",
                    spread.allowed_increase
                ),
            );
        }
        if self.exact && self.test == TestKind::Proportions {
            bad(
                "exact",
                "applies to the Mann-Whitney test, not to the proportions test".to_string(),
            );
        }
        if self.spread.is_some() && self.test == TestKind::Proportions {
            bad(
                "spread",
                "applies to series, not to the proportions test".to_string(),
            );
        }
        if self.groups.iter().any(|g| g.trim().is_empty()) {
            bad("groups", "group names must not be empty".to_string());
        }
        out
    }
}

/// The score thresholds: score ≥ `pass` passes, ≥ `marginal` is marginal, below fails.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Thresholds {
    pub pass: f64,
    pub marginal: f64,
}

/// The judgement's options besides the metrics'.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JudgeConfig {
    pub thresholds: Thresholds,
    /// Weight (0–100) of each named group in the score; groups without a weight share what is
    /// left of 100 equally.
    #[serde(default)]
    pub group_weights: BTreeMap<String, f64>,
}

impl JudgeConfig {
    pub fn new(pass: f64, marginal: f64) -> JudgeConfig {
        JudgeConfig {
            thresholds: Thresholds { pass, marginal },
            group_weights: BTreeMap::new(),
        }
    }

    /// Every problem of the thresholds and weights, each with its field path.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let Thresholds { pass, marginal } = self.thresholds;
        for (field, v) in [("thresholds.pass", pass), ("thresholds.marginal", marginal)] {
            if !(0.0..=100.0).contains(&v) {
                out.push(ConfigProblem {
                    path: field.to_string(),
                    message: format!("must be a score between 0 and 100, not {v}"),
                });
            }
        }
        if marginal > pass {
            out.push(ConfigProblem {
                path: "thresholds.marginal".to_string(),
                message: format!("{marginal} is above the pass threshold {pass}"),
            });
        }
        for (group, w) in &self.group_weights {
            if !(w.is_finite() && *w >= 0.0) {
                out.push(ConfigProblem {
                    path: format!("groupWeights.{group}"),
                    message: format!("must be a weight of 0 or more, not {w}"),
                });
            }
        }
        let total: f64 = self.group_weights.values().sum();
        if total > 100.0 + 1e-9 {
            out.push(ConfigProblem {
                path: "groupWeights".to_string(),
                message: format!("the weights add up to {total}, more than 100"),
            });
        }
        out
    }
}

/// One invalid option: its path (e.g. `effectSize.allowedIncrease`) and what is wrong, in the
/// form the Canary validation reports problems.
pub type ConfigProblem = crate::validate::Problem;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kayenta_defaults() {
        let c = MetricConfig::default();
        assert_eq!(c.direction, Direction::Either);
        assert_eq!(c.nan_strategy, NanStrategy::Remove);
        assert_eq!(c.outliers.strategy, OutlierStrategy::Keep);
        assert_eq!(c.outliers.outlier_factor, 3.0);
        assert!(!c.critical && !c.must_have_data && !c.muted);
        let t = c.effect_size.thresholds();
        assert_eq!((t.allowed_increase, t.allowed_decrease), (1.0, 1.0));
        let cles = EffectSize {
            measure: EffectMeasure::Cles,
            ..Default::default()
        };
        assert_eq!(cles.thresholds().critical_increase, 0.5);
        assert_eq!(c.effective_groups(), vec!["default".to_string()]);
    }

    #[test]
    fn reads_kayentas_option_names() {
        let yaml = "direction: increase\nnanStrategy: replace\noutliers: {strategy: remove, outlierFactor: 1.5}\ncritical: true\nmustHaveData: true\neffectSize: {measure: cles, allowedIncrease: 0.8}\n";
        let c: MetricConfig = serde_yaml::from_str(yaml).expect("parses");
        assert_eq!(c.direction, Direction::Increase);
        assert_eq!(c.nan_strategy, NanStrategy::Replace);
        assert_eq!(c.outliers.outlier_factor, 1.5);
        assert_eq!(c.effect_size.thresholds().allowed_increase, 0.8);
        assert!(c.problems().is_empty());
        let typo = serde_yaml::from_str::<MetricConfig>("direktion: increase\n");
        assert!(
            typo.expect_err("unknown field")
                .to_string()
                .contains("direktion")
        );
    }

    #[test]
    fn reports_every_bad_value_with_its_path() {
        let c = MetricConfig {
            outliers: Outliers {
                outlier_factor: 0.0,
                ..Default::default()
            },
            effect_size: EffectSize {
                measure: EffectMeasure::Cles,
                allowed_increase: Some(1.5),
                ..Default::default()
            },
            test: TestKind::Proportions,
            ..Default::default()
        };
        let fields: Vec<String> = c.problems().into_iter().map(|p| p.path).collect();
        assert_eq!(
            fields,
            [
                "outliers.outlierFactor",
                "effectSize.allowedIncrease",
                "effectSize.measure"
            ]
        );
        let mut j = JudgeConfig::new(70.0, 80.0);
        j.group_weights.insert("a".into(), 80.0);
        j.group_weights.insert("b".into(), 30.0);
        let fields: Vec<String> = j.problems().into_iter().map(|p| p.path).collect();
        assert_eq!(fields, ["thresholds.marginal", "groupWeights"]);
    }
}
