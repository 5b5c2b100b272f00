//! Explanations, the no-data policy and requests made through annotations (issue 18), driven
//! tick by tick through the decision core.

mod support;

use flagger_api::CanaryPhase::*;
use flagger_core::effects::MetricOutcome;
use support::{World, canary};

/// A canary strategy 20% → 40%, threshold 2, checking the builtin success rate (>= 99%).
fn manifest(annotations: &str) -> String {
    format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: app
  namespace: ns
  annotations: {{{annotations}}}
spec:
  provider: istio
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: app}}
  service: {{port: 80}}
  progressDeadlineSeconds: 300
  analysis:
    interval: 1m
    threshold: 2
    stepWeight: 20
    maxWeight: 40
    metrics:
    - name: request-success-rate
      interval: 1m
      thresholdRange: {{min: 99}}
"#
    )
}

fn world(annotations: &str, rate: impl FnMut(usize) -> MetricOutcome + 'static) -> World {
    let mut rate = rate;
    let mut w = World::new(canary(&manifest(annotations))).with_metrics(move |_, t| rate(t));
    w.initialize();
    w.set_revision("v2");
    w
}

#[test]
fn a_halt_is_explained_with_metric_value_threshold_and_count() {
    let mut w = world("", |t| {
        MetricOutcome::Value(if t < 5 { 100.0 } else { 94.666 })
    });
    w.run_until(&[Progressing], 2);
    w.tick(); // 20%
    assert_eq!(
        w.sentence().as_deref(),
        Some("advanced to 20%: pre-rollout checks passed")
    );
    w.tick(); // 40%
    assert_eq!(
        w.sentence().as_deref(),
        Some("advanced to 40%: 1 of 1 metric checks passed")
    );
    w.tick(); // fails once
    assert_eq!(
        w.sentence().as_deref(),
        Some("halted at 40%: request-success-rate 94.67% < 99% (1 of 2 failed checks)")
    );
    let condition = w.condition("Analysis").expect("Analysis condition");
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", "Halted")
    );
    let analysis = w.status.analysis.clone().expect("status.analysis");
    let check = &analysis.checks[0];
    assert_eq!(check.name, "request-success-rate");
    assert_eq!(check.value, Some(94.666));
    assert_eq!((check.min, check.max), (Some(99.0), None));
    assert_eq!(check.verdict, "Fail");
    assert_eq!(check.failures, 1);
    assert_eq!(
        check.reason.as_deref(),
        Some("request-success-rate 94.67% < 99%")
    );
    // Flagger's event text is kept.
    assert!(
        w.warnings()
            .contains(&"Halt app.ns advancement success rate 94.67% < 99%".to_string()),
        "{:#?}",
        w.warnings()
    );
    w.run_until(&[Failed], 3);
    assert_eq!(
        w.sentence().as_deref(),
        Some("rolled back at 40% after 2 of 2 failed checks: request-success-rate 94.67% < 99%")
    );
    // The Promoted condition stays first, as Flagger writes it.
    let conditions = w.status.conditions.clone().expect("conditions");
    assert_eq!(conditions[0].r#type, "Promoted");
}

#[test]
fn no_data_fails_by_default_as_flagger_does_and_says_insufficient_data() {
    let mut w = world("", |_| MetricOutcome::NoValues("no values found".into()));
    w.run_until(&[Progressing], 2);
    w.tick(); // pre-rollout, 20%
    w.tick();
    assert_eq!(w.status.failed_checks, Some(1));
    let check = &w.status.analysis.clone().expect("analysis").checks[0];
    assert_eq!(check.verdict, "InsufficientData");
    assert_eq!(check.failures, 1);
    assert_eq!(
        w.sentence().as_deref(),
        Some(
            "halted at 20%: request-success-rate: insufficient data (no values found) \
             (1 of 2 failed checks)"
        )
    );
    assert!(w.warnings().iter().any(|m| {
        m.starts_with("Halt advancement no values found for istio metric request-success-rate")
    }));
    assert_eq!(
        w.checks.last().map(|c| c.verdict.as_str()),
        Some("InsufficientData")
    );
    w.run_until(&[Failed], 3);
}

#[test]
fn no_data_under_hold_neither_fails_nor_advances_until_data_arrives() {
    // No data for five ticks, then a good value.
    let mut w = world("flagger.app/no-data: hold", |t| {
        if t < 8 {
            MetricOutcome::NoValues("no values found".into())
        } else {
            MetricOutcome::Value(100.0)
        }
    });
    w.run_until(&[Progressing], 2);
    w.tick(); // 20%
    for _ in 0..4 {
        w.tick();
        assert_eq!(w.status.phase, Progressing);
        assert_eq!(w.status.failed_checks, Some(0), "{:#?}", w.event_messages());
        assert_eq!(w.status.canary_weight, Some(20));
    }
    let condition = w.condition("Analysis").expect("Analysis condition");
    assert_eq!(condition.reason, "InsufficientData");
    assert_eq!(condition.status, "Unknown");
    assert!(
        condition
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("held at 20%: request-success-rate: insufficient data")),
        "{condition:?}"
    );
    assert!(
        w.warnings()
            .iter()
            .any(|m| m.contains("insufficient data for metric request-success-rate, holding")),
        "{:#?}",
        w.warnings()
    );
    let check = &w.status.analysis.clone().expect("analysis").checks[0];
    assert_eq!(
        (check.verdict.as_str(), check.failures),
        ("InsufficientData", 0)
    );
    // Data arrives: the run goes on.
    w.run_until(&[Succeeded], 8);
    assert_eq!(w.status.failed_checks, Some(0));
}

#[test]
fn no_data_under_hold_counts_once_the_progress_deadline_has_passed() {
    let mut w = world("flagger.app/no-data: hold", |_| {
        MetricOutcome::NoValues("no values found".into())
    });
    w.run_until(&[Progressing], 2);
    w.tick(); // 20%
    // Interval 1m, deadline 300s: held for five ticks, then counted.
    let ticks = w.run_until(&[Failed], 12);
    assert!(ticks >= 6, "held only {ticks} ticks");
    assert!(w.warnings().iter().any(|m| m.contains(
        "insufficient data for metric request-success-rate for longer than the progress deadline (5m0s)"
    )), "{:#?}", w.warnings());
}

#[test]
fn an_unknown_no_data_policy_is_an_invalid_spec() {
    let problems =
        support::try_canary(&manifest("flagger.app/no-data: skip")).expect_err("invalid policy");
    assert!(problems.contains("not a no-data policy"), "{problems}");
}

#[test]
fn promote_skips_the_remaining_analysis_and_is_cleared() {
    let mut w = world("", |_| MetricOutcome::Value(100.0));
    w.run_until(&[Progressing], 2);
    w.tick(); // 20%
    w.request("promote");
    w.tick();
    assert_eq!(w.status.phase, Promoting);
    assert_eq!(w.cleared, vec!["promote".to_string()]);
    assert_eq!(w.action, None);
    assert_eq!(
        w.sentence().as_deref(),
        Some("promoting at 20%: requested, remaining analysis skipped")
    );
    w.run_until(&[Succeeded], 4);
}

#[test]
fn abort_rolls_back_now() {
    let mut w = world("", |_| MetricOutcome::Value(100.0));
    w.run_until(&[Progressing], 2);
    w.tick(); // 20%
    w.request("abort");
    w.tick();
    assert_eq!(w.status.phase, Failed);
    assert_eq!(w.routes.canary, 0);
    assert_eq!(w.action, None);
    assert_eq!(
        w.sentence().as_deref(),
        Some("rolled back at 20%: abort requested")
    );
    // Nothing more to abort: said once, and cleared.
    w.request("abort");
    w.tick();
    assert_eq!(w.action, None);
    assert!(
        w.event_messages()
            .contains(&"Nothing to abort for app.ns: it is Failed".to_string())
    );
}

#[test]
fn pause_holds_until_resume_then_the_run_goes_on() {
    let mut w = world("", |_| MetricOutcome::Value(100.0));
    w.run_until(&[Progressing], 2);
    w.tick(); // 20%
    w.request("pause");
    for _ in 0..3 {
        w.tick();
        assert_eq!(w.status.canary_weight, Some(20));
        assert_eq!(w.status.phase, Progressing);
    }
    assert_eq!(
        w.action.as_deref(),
        Some("pause"),
        "pause stays until resumed"
    );
    assert!(w.condition("Paused").is_some());
    assert_eq!(w.sentence().as_deref(), Some("paused at 20% by request"));
    w.request("resume");
    w.tick();
    assert_eq!(w.action, None);
    assert!(w.condition("Paused").is_none());
    assert_eq!(w.status.canary_weight, Some(40));
    w.run_until(&[Succeeded], 4);
}

#[test]
fn retry_runs_a_failed_revision_again() {
    let good = std::rc::Rc::new(std::cell::Cell::new(false));
    let g = good.clone();
    let mut w = world("", move |_| {
        MetricOutcome::Value(if g.get() { 100.0 } else { 50.0 })
    });
    w.run_until(&[Failed], 8);
    // The same revision stays failed without a request.
    w.tick();
    assert_eq!(w.status.phase, Failed);
    good.set(true);
    w.request("retry");
    w.tick();
    assert_eq!(w.status.phase, Progressing);
    assert_eq!(w.status.failed_checks, Some(0));
    assert_eq!(w.action, None);
    assert!(
        w.status
            .analysis
            .clone()
            .is_none_or(|a| a.checks.is_empty())
    );
    w.run_until(&[Succeeded], 6);
}

#[test]
fn a_request_that_is_not_one_is_reported_and_cleared() {
    let mut w = world("", |_| MetricOutcome::Value(100.0));
    w.run_until(&[Progressing], 2);
    w.request("rollback");
    w.tick();
    assert_eq!(w.action, None);
    assert!(
        w.warnings()
            .iter()
            .any(|m| m.contains("\"rollback\" is not an action")),
        "{:#?}",
        w.warnings()
    );
    assert_eq!(w.status.phase, Progressing);
}
