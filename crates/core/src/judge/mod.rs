//! The statistical judge: compares a canary's metrics with the primary's the way Spinnaker
//! Kayenta's NetflixACAJudge does (`shared/reference/kayenta-judge.md`), and scores the canary
//! 0–100. Pure: sample vectors in, a [`Judgement`] out, every intermediate figure kept.
//!
//! * [`metric`]: one metric's pipeline (NaN and outlier handling, trivial cases, seeded
//!   tie-breaking noise, the test, effect size, High/Low/Pass, criticality);
//! * [`score`]: muted metrics, critical and no-data short-circuits, group scores and weights,
//!   the rounded score and the Pass/Marginal/Fail verdict;
//! * [`wilcoxon`] (R's `wilcox.test` interval, normal or exact), [`proportions`] (R's
//!   `prop.test`),
//!   [`zeroin`] (R's Brent), [`normal`], [`stats`], [`noise`]: the numerics;
//! * [`relative`]: the canary's value against the primary's as a ratio or a difference;
//! * [`numbers`]: numbers for people, in the judge's reasons.
//!
//! This file only declares the modules, re-exports and runs the whole judgement; the modules
//! below it never reach back up.
//!
//! What is ours and not Kayenta's is opt-in and named: `test: proportions`, `spread`, `exact`,
//! `minPoints` (see [`config::MetricConfig`]), plus three choices documented where they are
//! made: the root tolerance scales with small data ([`wilcoxon::RootTolerance`]), the noise is
//! seeded ([`noise`]), and ±Inf counts as "not a number".

pub mod config;
pub mod metric;
pub mod noise;
pub mod normal;
pub mod numbers;
pub mod proportions;
pub mod relative;
pub mod score;
pub mod stats;
pub mod wilcoxon;
pub mod zeroin;

pub use config::{ConfigProblem, JudgeConfig, MetricConfig, Thresholds};
pub use metric::{Classification, MetricData, MetricInput, MetricResult, judge_metric};
pub use numbers::fmt_num;
pub use proportions::Counts;
pub use relative::{RelativeMode, RelativeResult, RelativeThreshold, RelativeVerdict};
pub use score::{GroupScore, Judgement, ShortCircuit, Verdict, aggregate};

/// A configuration the judge refuses, with every problem found.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
pub struct InvalidConfig {
    /// Each problem's field path is prefixed with `metrics.<name>.` for a metric's option.
    pub problems: Vec<ConfigProblem>,
}

/// Judges every metric and scores the canary. Refuses invalid options (all of them reported)
/// and duplicate metric names.
pub fn judge(inputs: &[MetricInput], config: &JudgeConfig) -> Result<Judgement, InvalidConfig> {
    let mut problems = config.problems();
    let mut seen = std::collections::BTreeSet::new();
    for input in inputs {
        if !seen.insert(input.name.as_str()) {
            problems.push(ConfigProblem {
                path: format!("metrics.{}", input.name),
                message: "the metric is given twice".to_string(),
            });
        }
        let test_fits = matches!(
            (&input.data, input.config.test),
            (MetricData::Series { .. }, config::TestKind::MannWhitney)
                | (MetricData::Counts { .. }, config::TestKind::Proportions)
        );
        if !test_fits {
            problems.push(ConfigProblem {
                path: format!("metrics.{}.test", input.name),
                message: match input.config.test {
                    config::TestKind::MannWhitney => {
                        "mannWhitney compares two series, but the data are counts".to_string()
                    }
                    config::TestKind::Proportions => {
                        "proportions compares events out of trials, but the data are series"
                            .to_string()
                    }
                },
            });
        }
        for p in input.config.problems() {
            problems.push(ConfigProblem {
                path: format!("metrics.{}.{}", input.name, p.path),
                message: p.message,
            });
        }
    }
    if !problems.is_empty() {
        return Err(InvalidConfig { problems });
    }
    let results = inputs.iter().map(judge_metric).collect();
    Ok(aggregate(results, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, config: MetricConfig, data: MetricData) -> MetricInput {
        MetricInput {
            name: name.to_string(),
            config,
            data,
        }
    }

    fn series(canary: &[f64], primary: &[f64]) -> MetricData {
        MetricData::Series {
            canary: canary.to_vec(),
            primary: primary.to_vec(),
        }
    }

    #[test]
    fn judge_scores_the_metrics() {
        let slow = input(
            "latency",
            MetricConfig {
                direction: config::Direction::Increase,
                ..Default::default()
            },
            series(&[20.0, 22.0, 21.0, 25.0, 30.0], &[1.0, 2.2, 1.1, 2.5, 3.0]),
        );
        let same = input(
            "errors",
            MetricConfig::default(),
            series(&[1.0, 2.0], &[2.0, 1.0]),
        );
        let j = judge(&[slow, same], &JudgeConfig::new(95.0, 75.0)).expect("valid");
        assert_eq!((j.score, j.verdict), (50.0, Verdict::Fail));
        assert_eq!(j.metrics[0].classification, Classification::High);
    }

    #[test]
    fn judge_refuses_bad_options_naming_each() {
        let bad = MetricConfig {
            test: config::TestKind::Proportions,
            ..Default::default()
        };
        let inputs = [
            input("a", bad, series(&[1.0], &[2.0])),
            input("a", MetricConfig::default(), series(&[1.0], &[2.0])),
        ];
        let err = judge(&inputs, &JudgeConfig::new(50.0, 75.0)).expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "thresholds.marginal: 75 is above the pass threshold 50; \
             metrics.a.test: proportions compares events out of trials, but the data are series; \
             metrics.a: the metric is given twice"
        );
    }
}
