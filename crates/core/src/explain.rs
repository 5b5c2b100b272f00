//! Explanations of the analysis: the verdict of each metric check with the value, the range and
//! the reason in words, and the pieces of the one-sentence last decision ("halted at 20%:
//! request-success-rate 94.67% < 99% (2 of 2 failed checks)"). [`crate::decide`] writes them
//! into the status it decides (`status.analysis` and the `Analysis` condition) and the
//! controller exports them as metrics.

use flagger_api::CheckStatus;
use flagger_api::labels::CONDITION_ANALYSIS;

use crate::duration::go_duration_ms;
use crate::effects::MetricOutcome;
use crate::metric::MetricCheck;
use crate::model::{BuiltinMetric, Metric, MetricSource};

/// The verdict of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// The query ran and returned nothing (no traffic yet, no scrape yet).
    InsufficientData,
    /// The query, the template or the provider failed.
    Error,
}

impl Verdict {
    /// As written in `status.analysis.checks[].verdict`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "Pass",
            Self::Fail => "Fail",
            Self::InsufficientData => "InsufficientData",
            Self::Error => "Error",
        }
    }

    /// As the `verdict` label of `flagger_canary_checks_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::InsufficientData => "insufficient_data",
            Self::Error => "error",
        }
    }

    /// Parses [`Verdict::as_str`].
    pub fn parse(s: &str) -> Option<Verdict> {
        [Self::Pass, Self::Fail, Self::InsufficientData, Self::Error]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// The verdict of a check against its metric's range.
pub fn verdict(metric: &Metric, outcome: &MetricOutcome) -> Verdict {
    match outcome {
        MetricOutcome::Value(v) if metric.range.contains(comparable(metric, *v)) => Verdict::Pass,
        MetricOutcome::Value(_) => Verdict::Fail,
        MetricOutcome::NoValues(_) => Verdict::InsufficientData,
        MetricOutcome::Error(_) | MetricOutcome::Unusable(_) => Verdict::Error,
        MetricOutcome::Compared(c) if c.no_data() => Verdict::InsufficientData,
        MetricOutcome::Compared(c) if c.check("", &metric.name, metric.range).passed => {
            Verdict::Pass
        }
        MetricOutcome::Compared(_) => Verdict::Fail,
    }
}

/// The value as the range is compared with (Flagger truncates request durations to whole ms).
fn comparable(metric: &Metric, v: f64) -> f64 {
    match metric.source {
        MetricSource::Builtin(BuiltinMetric::RequestDuration) => v.trunc(),
        _ => v,
    }
}

/// A value in the metric's unit: `94.67%`, `1.5s`, `0.42`.
pub fn value_text(metric: &Metric, v: f64) -> String {
    match metric.source {
        MetricSource::Builtin(BuiltinMetric::RequestSuccessRate) => format!("{v:.2}%"),
        MetricSource::Builtin(BuiltinMetric::RequestDuration) => go_duration_ms(v),
        _ => trim(v),
    }
}

/// A threshold in the metric's unit: `99%`, `500ms`, `0.5`.
pub fn bound_text(metric: &Metric, v: f64) -> String {
    match metric.source {
        MetricSource::Builtin(BuiltinMetric::RequestSuccessRate) => format!("{}%", trim(v)),
        MetricSource::Builtin(BuiltinMetric::RequestDuration) => go_duration_ms(v),
        _ => trim(v),
    }
}

/// Two decimals at most, without trailing zeros.
fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// The range in words: `>= 99%`, `<= 500ms`, `between 1 and 5`, `any value`.
pub fn range_text(metric: &Metric) -> String {
    match (metric.range.min, metric.range.max) {
        (Some(min), Some(max)) => format!(
            "between {} and {}",
            bound_text(metric, min),
            bound_text(metric, max)
        ),
        (Some(min), None) => format!(">= {}", bound_text(metric, min)),
        (None, Some(max)) => format!("<= {}", bound_text(metric, max)),
        (None, None) => "any value".into(),
    }
}

/// The check's outcome in words, starting with the metric's name:
/// `request-success-rate 94.67% < 99%`, `latency 0.2 within <= 0.5`,
/// `request-success-rate: insufficient data (no values found)`.
pub fn reason(metric: &Metric, outcome: &MetricOutcome) -> String {
    let name = &metric.name;
    match outcome {
        MetricOutcome::Value(v) => {
            let (c, shown) = (comparable(metric, *v), value_text(metric, *v));
            if let Some(min) = metric.range.min.filter(|m| c < *m) {
                format!("{name} {shown} < {}", bound_text(metric, min))
            } else if let Some(max) = metric.range.max.filter(|m| c > *m) {
                format!("{name} {shown} > {}", bound_text(metric, max))
            } else {
                format!("{name} {shown} within {}", range_text(metric))
            }
        }
        MetricOutcome::NoValues(why) => format!("{name}: insufficient data ({why})"),
        MetricOutcome::Error(why) => format!("{name}: query failed ({why})"),
        MetricOutcome::Unusable(why) => format!("{name}: {why}"),
        MetricOutcome::Compared(c) => format!("{name}: {}", c.describe()),
    }
}

/// The status entry of a check that just ran; `previous` is its entry before (its failure count
/// and the start of a no-data streak carry over). `counted` says whether it counts as a failure.
pub fn check_status(
    metric: &Metric,
    check: &MetricCheck,
    previous: Option<&CheckStatus>,
    counted: bool,
    now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> CheckStatus {
    let verdict = verdict(metric, &check.outcome);
    let insufficient_since = match verdict {
        Verdict::InsufficientData => previous
            .and_then(|p| p.insufficient_since.clone())
            .or_else(|| Some(now.clone())),
        _ => None,
    };
    CheckStatus {
        name: metric.name.clone(),
        provider: Some(check.provider.clone()).filter(|p| !p.is_empty()),
        query: check.query.clone(),
        value: check.value(),
        min: metric.range.min,
        max: metric.range.max,
        verdict: verdict.as_str().into(),
        reason: Some(reason(metric, &check.outcome)),
        time: Some(now),
        failures: previous.map(|p| p.failures).unwrap_or(0) + i32::from(counted),
        insufficient_since,
    }
}

/// `status`/`reason` of the `Analysis` condition for what a decision did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Started,
    Advanced,
    Halted,
    InsufficientData,
    Waiting,
    Paused,
    Promoting,
    Promoted,
    RolledBack,
}

impl Outcome {
    /// The condition's `status`: whether the analysis stands (`True`), failed (`False`), or is
    /// undecided (`Unknown`).
    pub fn status(self) -> &'static str {
        match self {
            Self::Advanced | Self::Promoting | Self::Promoted => "True",
            Self::Halted | Self::RolledBack => "False",
            Self::Started | Self::InsufficientData | Self::Waiting | Self::Paused => "Unknown",
        }
    }

    /// The condition's `reason`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Started => "Started",
            Self::Advanced => "Advanced",
            Self::Halted => "Halted",
            Self::InsufficientData => "InsufficientData",
            Self::Waiting => "Waiting",
            Self::Paused => "Paused",
            Self::Promoting => "Promoting",
            Self::Promoted => "Promoted",
            Self::RolledBack => "RolledBack",
        }
    }
}

/// The condition type the sentence goes in.
pub const CONDITION: &str = CONDITION_ANALYSIS;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Range;

    fn metric(source: MetricSource, min: Option<f64>, max: Option<f64>) -> Metric {
        Metric {
            name: match &source {
                MetricSource::Builtin(b) => b.name().into(),
                _ => "error-rate".into(),
            },
            source,
            interval: None,
            range: Range { min, max },
        }
    }

    #[test]
    fn reasons_name_the_metric_value_and_threshold() {
        let rate = metric(
            MetricSource::Builtin(BuiltinMetric::RequestSuccessRate),
            Some(99.0),
            None,
        );
        assert_eq!(
            reason(&rate, &MetricOutcome::Value(94.666)),
            "request-success-rate 94.67% < 99%"
        );
        assert_eq!(verdict(&rate, &MetricOutcome::Value(94.666)), Verdict::Fail);
        assert_eq!(
            reason(&rate, &MetricOutcome::Value(99.5)),
            "request-success-rate 99.50% within >= 99%"
        );
        assert_eq!(
            reason(&rate, &MetricOutcome::NoValues("no values found".into())),
            "request-success-rate: insufficient data (no values found)"
        );
        assert_eq!(
            verdict(&rate, &MetricOutcome::NoValues(String::new())),
            Verdict::InsufficientData
        );
        let duration = metric(
            MetricSource::Builtin(BuiltinMetric::RequestDuration),
            None,
            Some(500.0),
        );
        assert_eq!(
            reason(&duration, &MetricOutcome::Value(1500.7)),
            "request-duration 1.5s > 500ms"
        );
        let custom = metric(MetricSource::Query("q".into()), Some(1.0), Some(5.0));
        assert_eq!(
            reason(&custom, &MetricOutcome::Value(0.5)),
            "error-rate 0.5 < 1"
        );
        assert_eq!(range_text(&custom), "between 1 and 5");
        assert_eq!(
            Verdict::parse("InsufficientData"),
            Some(Verdict::InsufficientData)
        );
    }

    #[test]
    fn failures_and_no_data_streaks_carry_over() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let t = |s| Time(k8s_openapi::jiff::Timestamp::from_second(s).expect("valid"));
        let rate = metric(
            MetricSource::Builtin(BuiltinMetric::RequestSuccessRate),
            Some(99.0),
            None,
        );
        let empty = MetricCheck::ran("prometheus", "q", MetricOutcome::NoValues("none".into()));
        let first = check_status(&rate, &empty, None, false, t(10));
        assert_eq!(first.insufficient_since, Some(t(10)));
        assert_eq!(first.failures, 0);
        let second = check_status(&rate, &empty, Some(&first), true, t(20));
        assert_eq!(second.insufficient_since, Some(t(10)));
        assert_eq!(second.failures, 1);
        let ok = MetricCheck::ran("prometheus", "q", MetricOutcome::Value(100.0));
        let third = check_status(&rate, &ok, Some(&second), false, t(30));
        assert_eq!(third.insufficient_since, None);
        assert_eq!(third.failures, 1);
        assert_eq!(third.verdict, "Pass");
        assert_eq!(third.query.as_deref(), Some("q"));
    }
}
