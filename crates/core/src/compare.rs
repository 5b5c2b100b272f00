//! Comparison checks: a Canary metric whose MetricTemplate is marked for comparison is queried
//! once for the canary and once for the primary, and judged by comparing the two (issue 20).
//!
//! **The marking** lives in the template's annotations, so Flagger's CRDs accept every object
//! unchanged (the template's `provider.type` stays `prometheus`, `datadog`, ...):
//!
//! * [`COMPARE`] (`flagger.app/compare`): `judge` (Kayenta's statistical judge on two sample
//!   vectors from range queries; the check's value is the score, 0–100), `ratio` or
//!   `difference` (one value per side from the provider's ordinary query; the check's value is
//!   canary / primary or canary − primary);
//! * [`OPTIONS`] (`flagger.app/compare-options`, judge only): the judge's per-metric options
//!   under Kayenta's names (`direction`, `nanStrategy`, `outliers`, `critical`,
//!   `mustHaveData`, `effectSize`, and ours: `spread`, `exact`, `minPoints`) plus the verdict's
//!   `pass` and `marginal` scores, as YAML or JSON;
//! * [`STEP`] (`flagger.app/compare-step`, judge only): the range queries' step (a duration;
//!   by default the window / 30, at least 1s).
//!
//! Any other `flagger.app/compare…` annotation is refused, so a misspelt one is never silently
//! ignored. [`marking`] reads them; the controller calls it to learn what to fetch, renders the
//! query per [`Variant`], fetches, and hands the answers to [`Compared::judged`] or
//! [`Compared::relative`]: the figures are computed here, and [`Compared::check`] is what
//! [`crate::decide()`] judges, with every figure kept for explanations.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::duration::{format_go, parse_go_duration};
use crate::judge::{
    self, JudgeConfig, Judgement, MetricConfig, MetricData, MetricInput, RelativeMode,
    RelativeResult, RelativeThreshold, RelativeVerdict, Thresholds, fmt_num, score::fmt_score,
};
use crate::model::Range;

/// Annotation: `judge`, `ratio` or `difference`.
pub const COMPARE: &str = "flagger.app/compare";
/// Annotation: the judge's options (YAML or JSON).
pub const OPTIONS: &str = "flagger.app/compare-options";
/// Annotation: the step of the judge's range queries.
pub const STEP: &str = "flagger.app/compare-step";

/// The score a judged check must reach when its metric has no `thresholdRange`, and the
/// verdict's thresholds unless `pass`/`marginal` say otherwise (the values commonly used with
/// Kayenta).
pub const DEFAULT_PASS: f64 = 95.0;
pub const DEFAULT_MARGINAL: f64 = 75.0;

/// The fewest seconds between two points of a range query.
const MIN_STEP: Duration = Duration::from_secs(1);
/// Points per window by default.
const DEFAULT_POINTS: u32 = 30;
/// Prometheus refuses a range query of more than 11,000 points; stay under it.
const MAX_POINTS: u32 = 10_000;

/// Which side a query is rendered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Variant {
    Canary,
    Primary,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Canary => "canary",
            Variant::Primary => "primary",
        }
    }
}

/// The judge's options of a marked template.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JudgeOptions {
    pub metric: MetricConfig,
    pub thresholds: Thresholds,
}

/// How a marked template compares.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// Kayenta's judge on two sample vectors.
    Judge(Box<JudgeOptions>),
    /// One value per side, as a ratio or a difference.
    Relative(RelativeMode),
}

impl Mode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Judge(_) => "judge",
            Mode::Relative(m) => m.as_str(),
        }
    }
}

/// A template's marking.
#[derive(Clone, Debug, PartialEq)]
pub struct Marking {
    pub mode: Mode,
    /// [`STEP`], when given.
    pub step: Option<Duration>,
}

/// The time range a judged check queries, ending now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// How far back from now.
    pub range: Duration,
    pub step: Duration,
}

impl Marking {
    /// Whether the sides are range queries (the judge) rather than instant queries.
    pub fn needs_range_queries(&self) -> bool {
        matches!(self.mode, Mode::Judge(_))
    }

    /// The window of a judged check: the metric's `interval`, or the analysis interval when it
    /// has none; the step as marked, or the window / 30, at least 1s, and never more than
    /// 10,000 points.
    pub fn window(&self, metric_interval: Option<Duration>, analysis_interval: Duration) -> Window {
        let range = metric_interval
            .filter(|d| !d.is_zero())
            .unwrap_or(analysis_interval)
            .max(MIN_STEP);
        let step = self
            .step
            .unwrap_or(range / DEFAULT_POINTS)
            .max(MIN_STEP)
            .max(range / MAX_POINTS);
        Window { range, step }
    }
}

/// Reads a template's marking: `None` when it is not marked, an error naming the annotation
/// and what is wrong with it otherwise.
pub fn marking(annotations: &BTreeMap<String, String>) -> Result<Option<Marking>, String> {
    let ours: Vec<(&String, &String)> = annotations
        .iter()
        .filter(|(k, _)| k.starts_with(COMPARE))
        .collect();
    if ours.is_empty() {
        return Ok(None);
    }
    if let Some((unknown, _)) = ours
        .iter()
        .find(|(k, _)| ![COMPARE, OPTIONS, STEP].contains(&k.as_str()))
    {
        return Err(format!(
            "annotation {unknown} is not known; the comparison annotations are {COMPARE}, {OPTIONS} and {STEP}"
        ));
    }
    let Some(kind) = annotations.get(COMPARE) else {
        return Err(format!(
            "{OPTIONS} and {STEP} need {COMPARE}: judge, ratio or difference"
        ));
    };
    let judge = match kind.trim() {
        "judge" => true,
        "ratio" | "difference" => false,
        other => {
            return Err(format!(
                "annotation {COMPARE}: {other:?} is not a comparison; use judge, ratio or difference"
            ));
        }
    };
    if !judge {
        for key in [OPTIONS, STEP] {
            if annotations.contains_key(key) {
                return Err(format!(
                    "annotation {key} applies to {COMPARE}: judge, not to {}",
                    kind.trim()
                ));
            }
        }
        let mode = if kind.trim() == "ratio" {
            RelativeMode::Ratio
        } else {
            RelativeMode::Difference
        };
        return Ok(Some(Marking {
            mode: Mode::Relative(mode),
            step: None,
        }));
    }
    let step = match annotations.get(STEP) {
        None => None,
        Some(s) => match parse_go_duration(s.trim()) {
            Ok(d) if d >= MIN_STEP => Some(d),
            Ok(_) => return Err(format!("annotation {STEP}: {s:?} is under 1s")),
            Err(e) => return Err(format!("annotation {STEP}: {s:?}: {e}")),
        },
    };
    let options = match annotations.get(OPTIONS) {
        None => JudgeOptions {
            metric: MetricConfig::default(),
            thresholds: Thresholds {
                pass: DEFAULT_PASS,
                marginal: DEFAULT_MARGINAL,
            },
        },
        Some(text) => judge_options(text).map_err(|e| format!("annotation {OPTIONS}: {e}"))?,
    };
    Ok(Some(Marking {
        mode: Mode::Judge(Box::new(options)),
        step,
    }))
}

/// The judge's options from YAML or JSON: a metric's options plus `pass` and `marginal`.
fn judge_options(text: &str) -> Result<JudgeOptions, String> {
    let mut map: serde_yaml::Mapping = if text.trim().is_empty() {
        serde_yaml::Mapping::new()
    } else {
        serde_yaml::from_str(text).map_err(|e| format!("not a YAML or JSON object: {e}"))?
    };
    let mut score = |key: &str, default: f64| -> Result<f64, String> {
        match map.remove(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| format!("{key}: a score between 0 and 100 is needed")),
        }
    };
    let thresholds = Thresholds {
        pass: score("pass", DEFAULT_PASS)?,
        marginal: score("marginal", DEFAULT_MARGINAL)?,
    };
    let metric: MetricConfig =
        serde_yaml::from_value(serde_yaml::Value::Mapping(map)).map_err(|e| e.to_string())?;
    let mut problems: Vec<String> = JudgeConfig {
        thresholds,
        group_weights: BTreeMap::new(),
    }
    .problems()
    .into_iter()
    .map(|p| {
        format!(
            "{}: {}",
            p.path.trim_start_matches("thresholds."),
            p.message
        )
    })
    .collect();
    problems.extend(
        metric
            .problems()
            .into_iter()
            .map(|p| format!("{}: {}", p.path, p.message)),
    );
    if metric.test == judge::config::TestKind::Proportions {
        problems.push(
            "test: proportions needs events and trials, which one query does not give; \
             compare an error ratio with flagger.app/compare: ratio instead"
                .to_string(),
        );
    }
    if metric.muted {
        problems.push("muted: a muted check could never fail".to_string());
    }
    if !metric.groups.is_empty() {
        problems.push("groups: a comparison check is judged on its own".to_string());
    }
    if problems.is_empty() {
        Ok(JudgeOptions { metric, thresholds })
    } else {
        Err(problems.join("; "))
    }
}

/// One side's query as sent.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Queried {
    pub variant: Variant,
    pub query: String,
}

/// What a comparison found.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "mode")]
pub enum Figures {
    /// The judge's result, every figure kept (one metric, the check's).
    Judge {
        judgement: Box<Judgement>,
        /// The range queried: seconds back from now, and the step.
        range_seconds: f64,
        step_seconds: f64,
    },
    /// The two values and their ratio or difference.
    Relative(RelativeResult),
}

/// A comparison check as it ran: both queries and the figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Compared {
    pub canary: Queried,
    pub primary: Queried,
    pub figures: Figures,
}

/// Whether a comparison check passed, and the sentence that says why.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    pub passed: bool,
    pub message: String,
}

impl Compared {
    /// Whether a side had nothing to compare (a relative check without a value on a side): the
    /// no-data policy applies, as to a query with no values. The judge's own no-data rules
    /// (`mustHaveData`, the no-data short-circuit) are already in its score.
    pub fn no_data(&self) -> bool {
        matches!(&self.figures, Figures::Relative(r) if r.verdict == RelativeVerdict::NoData)
    }

    /// The figures in words, for the check's status: the judge's score, verdict and class of
    /// the metric, or the relative comparison's reason.
    pub fn describe(&self) -> String {
        match &self.figures {
            Figures::Judge { judgement, .. } => {
                let detail = judgement
                    .metrics
                    .first()
                    .map(metric_words)
                    .unwrap_or_default();
                format!(
                    "judge score {}, verdict {}; {detail}",
                    fmt_score(judgement.score),
                    judgement.verdict.as_str()
                )
            }
            Figures::Relative(r) => r.reason.clone(),
        }
    }

    /// Judges the two sample vectors of the check `name` (the judge's options were checked when
    /// the marking was read; a problem found now is returned as text).
    pub fn judged(
        name: &str,
        options: &JudgeOptions,
        window: Window,
        canary: (String, Vec<f64>),
        primary: (String, Vec<f64>),
    ) -> Result<Compared, String> {
        let input = MetricInput {
            name: name.to_string(),
            config: options.metric.clone(),
            data: MetricData::Series {
                canary: canary.1,
                primary: primary.1,
            },
        };
        let config = JudgeConfig {
            thresholds: options.thresholds,
            group_weights: BTreeMap::new(),
        };
        let judgement = judge::judge(&[input], &config).map_err(|e| e.to_string())?;
        let figures = Figures::Judge {
            judgement: Box::new(judgement),
            range_seconds: window.range.as_secs_f64(),
            step_seconds: window.step.as_secs_f64(),
        };
        Ok(Compared::of(canary.0, primary.0, figures))
    }

    fn of(canary_query: String, primary_query: String, figures: Figures) -> Compared {
        Compared {
            canary: Queried {
                variant: Variant::Canary,
                query: canary_query,
            },
            primary: Queried {
                variant: Variant::Primary,
                query: primary_query,
            },
            figures,
        }
    }

    /// Compares one value per side (`None`: the side had no value) against the metric's
    /// `thresholdRange`.
    pub fn relative(
        mode: RelativeMode,
        range: Range,
        canary: (String, Option<f64>),
        primary: (String, Option<f64>),
    ) -> Compared {
        let result = judge::relative::compare(
            canary.1,
            primary.1,
            RelativeThreshold {
                mode,
                min: range.min,
                max: range.max,
            },
        );
        Compared::of(canary.0, primary.0, Figures::Relative(result))
    }

    /// The check's value: the judge's score, or the ratio or difference (`None` when a side
    /// had no value or the ratio is unbounded).
    pub fn value(&self) -> Option<f64> {
        match &self.figures {
            Figures::Judge { judgement, .. } => Some(judgement.score),
            Figures::Relative(r) => r.value,
        }
    }

    /// The judge's result, when the check was judged.
    pub fn judgement(&self) -> Option<&Judgement> {
        match &self.figures {
            Figures::Judge { judgement, .. } => Some(judgement),
            Figures::Relative(_) => None,
        }
    }

    /// Judges the check `name` of `canary` (`name.namespace`) against its `thresholdRange`:
    /// a score must lie within it (at least the `pass` score when it has no bound); a ratio or
    /// difference too. The message puts the figures in plain words.
    pub fn check(&self, canary: &str, name: &str, range: Range) -> CheckResult {
        match &self.figures {
            Figures::Judge {
                judgement,
                range_seconds,
                step_seconds,
            } => {
                let score = judgement.score;
                let bounded = range.min.is_some() || range.max.is_some();
                let (passed, against) = if bounded {
                    let against = match (range.min, range.max) {
                        (Some(min), _) if score < min => format!("< {}", fmt_num(min)),
                        (_, Some(max)) if score > max => format!("> {}", fmt_num(max)),
                        (Some(min), _) => format!(">= {}", fmt_num(min)),
                        (None, Some(max)) => format!("<= {}", fmt_num(max)),
                        (None, None) => String::new(),
                    };
                    (range.contains(score), against)
                } else {
                    let pass = judgement.thresholds.pass;
                    let against = if score >= pass {
                        format!(">= {} (pass)", fmt_num(pass))
                    } else {
                        format!("< {} (pass)", fmt_num(pass))
                    };
                    (score >= pass, against)
                };
                let window = format!(
                    "over the last {} every {}",
                    format_go(Duration::from_secs_f64(*range_seconds)),
                    format_go(Duration::from_secs_f64(*step_seconds))
                );
                let detail = judgement
                    .metrics
                    .first()
                    .map(metric_words)
                    .unwrap_or_default();
                // Kayenta leaves a metric whose test could not run out of the score, so a
                // judgement of that metric alone scores 100; a check that could not compare
                // fails instead, as a query that fails does.
                let errored = judgement
                    .metrics
                    .first()
                    .is_some_and(|m| m.classification == judge::Classification::Error);
                if errored {
                    return CheckResult {
                        passed: false,
                        message: format!(
                            "Halt {canary} advancement {name}: the judge could not compare the canary with the primary {window}; {detail}"
                        ),
                    };
                }
                let head = if passed {
                    format!("{canary} {name}: the judge passes the canary against the primary")
                } else {
                    format!(
                        "Halt {canary} advancement {name}: the judge fails the canary against the primary"
                    )
                };
                CheckResult {
                    passed,
                    message: format!(
                        "{head}: score {} {against}, verdict {} {window}; {detail}",
                        fmt_score(score),
                        judgement.verdict.as_str(),
                    ),
                }
            }
            Figures::Relative(r) => {
                let passed = r.verdict == RelativeVerdict::Pass;
                let message = if passed {
                    format!("{canary} {name}: {}", r.reason)
                } else if r.verdict == RelativeVerdict::NoData {
                    format!(
                        "Halt advancement no values found for custom metric: {name}: {}",
                        r.reason
                    )
                } else {
                    format!("Halt {canary} advancement {name}: {}", r.reason)
                };
                CheckResult { passed, message }
            }
        }
    }
}

/// One judged metric in words: its class, why, and the two sides.
fn metric_words(m: &judge::MetricResult) -> String {
    let side = |s: &judge::metric::SideFigures| {
        if s.points == 0 {
            "no points".to_string()
        } else {
            format!("{} points, median {}", s.points, fmt_num(s.summary.median))
        }
    };
    let estimate = m
        .comparison
        .as_ref()
        .map(|c| format!("estimated change {}; ", fmt_num(c.estimate)))
        .unwrap_or_default();
    format!(
        "{}: {} ({estimate}canary {}; primary {})",
        m.classification.as_str(),
        m.reason,
        side(&m.canary),
        side(&m.primary)
    )
}

#[cfg(test)]
mod tests;
