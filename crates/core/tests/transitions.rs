//! Phase transitions of reference §2 beyond the seeds: gates, skip analysis, suspend, restart,
//! failed promotion, promotion steps, mirroring, takeover of a status Flagger wrote, and what
//! each phase requires of the target's scale (re-checked on every tick and between ticks).

mod support;

use flagger_api::CanaryPhase::*;
use flagger_core::effects::{Action, EventType, Readiness, Routes, RunOutcome};
use flagger_core::model::HookType;
use support::{World, canary};

fn yaml(provider: &str, analysis: &str, extra_spec: &str) -> String {
    format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: app, namespace: ns}}
spec:
  provider: {provider}
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: app}}
  service: {{port: 80}}
{extra_spec}
  analysis:
    interval: 1m
{analysis}
"#
    )
}

const CANARY_20_40: &str = "    threshold: 2\n    stepWeight: 20\n    maxWeight: 40\n";

#[test]
fn confirm_rollout_gate_holds_in_waiting_then_releases() {
    let analysis = format!(
        "{CANARY_20_40}    webhooks:\n    - name: approve\n      type: confirm-rollout\n      url: http://gate/\n"
    );
    let open = std::rc::Rc::new(std::cell::Cell::new(false));
    let o = open.clone();
    let mut w =
        World::new(canary(&yaml("istio", &analysis, ""))).with_hooks(move |ty, _, _| match ty {
            HookType::ConfirmRollout if !o.get() => Err("Forbidden".into()),
            _ => Ok(()),
        });
    w.initialize();
    w.clear_log();
    w.set_revision("v2");
    w.tick();
    assert_eq!(w.status.phase, Waiting);
    assert!(
        !w.target_replicas_up,
        "the target is not scaled up while waiting"
    );
    assert_eq!(
        w.warnings(),
        vec!["Halt app.ns advancement waiting for approval approve"]
    );
    assert_eq!(w.alerts.len(), 1);
    w.tick();
    assert_eq!(w.status.phase, Waiting);
    assert_eq!(w.warnings().len(), 1, "the halt event is emitted once");
    open.set(true);
    w.tick();
    assert_eq!(w.status.phase, Progressing);
    assert!(w.target_replicas_up);
    assert!(
        w.event_messages()
            .contains(&"Confirm-rollout check approve passed".to_string())
    );
}

#[test]
fn confirm_promotion_gate_holds_analysis_in_waiting_promotion() {
    let analysis = format!(
        "{CANARY_20_40}    webhooks:\n    - name: promote\n      type: confirm-promotion\n      url: http://gate/\n"
    );
    let open = std::rc::Rc::new(std::cell::Cell::new(false));
    let o = open.clone();
    let mut w =
        World::new(canary(&yaml("istio", &analysis, ""))).with_hooks(move |ty, _, _| match ty {
            HookType::ConfirmPromotion if !o.get() => Err("Forbidden".into()),
            _ => Ok(()),
        });
    w.initialize();
    w.set_revision("v2");
    w.run_until(&[WaitingPromotion], 10);
    assert_eq!(
        w.routes.canary, 40,
        "traffic stays on the canary at max weight"
    );
    assert_eq!(
        w.status.canary_weight,
        Some(0),
        "Flagger writes weight 0 in WaitingPromotion"
    );
    for _ in 0..3 {
        w.tick();
        assert_eq!(w.status.phase, WaitingPromotion);
    }
    open.set(true);
    w.run_until(&[Succeeded], 5);
    assert!(
        w.event_messages()
            .contains(&"Confirm-promotion check promote passed".to_string())
    );
}

#[test]
fn confirm_traffic_increase_gate_holds_the_weight() {
    let analysis = format!(
        "{CANARY_20_40}    webhooks:\n    - name: more\n      type: confirm-traffic-increase\n      url: http://gate/\n"
    );
    let mut w = World::new(canary(&yaml("istio", &analysis, ""))).with_hooks(|ty, _, t| match ty {
        HookType::ConfirmTrafficIncrease if t % 2 == 0 => Err("no".into()),
        _ => Ok(()),
    });
    w.initialize();
    w.set_revision("v2");
    w.run_until(&[Promoting], 20);
    let halts = w
        .warnings()
        .into_iter()
        .filter(|m| m == "Halt app.ns advancement waiting for traffic increase approval more")
        .count();
    assert!(halts >= 1);
    assert_eq!(
        w.status.failed_checks,
        Some(0),
        "a held gate is not a failed check"
    );
}

#[test]
fn skip_analysis_promotes_in_one_tick_after_scale_up() {
    let mut w = World::new(canary(&yaml("istio", CANARY_20_40, "  skipAnalysis: true")));
    w.initialize();
    w.clear_log();
    w.set_revision("v2");
    w.tick();
    assert_eq!(w.status.phase, Progressing);
    let d = w.tick();
    assert_eq!(w.status.phase, Succeeded);
    assert!(d.actions.contains(&Action::Promote));
    assert_eq!(w.runs, vec![RunOutcome::Succeeded { skipped: true }]);
    assert_eq!(
        w.event_messages().last().map(String::as_str),
        Some("Promotion completed! Canary analysis was skipped for app.ns")
    );
    assert!(
        w.needs
            .iter()
            .flatten()
            .all(|n| !matches!(n, flagger_core::Need::Metric { .. }))
    );
}

#[test]
fn suspended_canary_does_nothing_but_say_so() {
    let mut w = World::new(canary(&yaml("istio", CANARY_20_40, "  suspend: true")));
    let d = w.tick();
    assert!(d.status.is_none());
    assert_eq!(
        w.event_messages(),
        vec!["skipping canary run as object is suspended"]
    );
    assert_eq!(d.notices.len(), 1);
    assert!(d.actions.is_empty());
}

#[test]
fn new_revision_mid_analysis_restarts_from_zero() {
    let mut w = World::new(canary(&yaml(
        "istio",
        "    threshold: 2\n    stepWeight: 10\n",
        "",
    )));
    w.initialize();
    w.set_revision("v2");
    for _ in 0..4 {
        w.tick();
    }
    assert!(w.routes.canary > 0);
    w.set_revision("v3");
    w.tick();
    assert_eq!(w.routes, Routes::PRIMARY);
    assert_eq!(w.status.phase, Progressing);
    assert_eq!(w.status.canary_weight, Some(0));
    assert!(
        w.event_messages()
            .contains(&"New revision detected! Restarting analysis for app.ns".to_string())
    );
    w.run_until(&[Succeeded], 30);
    assert_eq!(w.primary_revision, w.target.hash);
}

#[test]
fn reverting_to_the_promoted_revision_does_not_start_a_run() {
    let mut w = World::new(canary(&yaml("istio", CANARY_20_40, "")));
    w.initialize();
    w.set_revision("v2");
    w.tick();
    assert_eq!(w.status.phase, Progressing);
    // A failed run, then the user goes back to v1.
    w.canary_ready = Box::new(|_| Readiness::Failed("exceeded its progress deadline".into()));
    w.tick();
    assert_eq!(w.status.phase, Failed);
    w.canary_ready = Box::new(|_| Readiness::Ready);
    w.set_revision("v1");
    w.tick();
    assert_eq!(
        w.status.phase, Failed,
        "v1 is the promoted revision: no new run"
    );
    // Re-applying the failed revision does nothing either; a new one starts a run.
    w.set_revision("v2");
    w.tick();
    w.tick();
    w.set_revision("v2-annotated");
    w.tick();
    assert_eq!(w.status.phase, Progressing);
}

/// Found by the chaos suite (`chaos_e2e.rs`): after a rollback, a new revision met a tick that
/// could not start its run (the routes' read failed); the Failed canary's revision tracking
/// recorded the new revision anyway, so the next tick saw nothing new and the revision was
/// never analysed nor promoted.
#[test]
fn a_new_revision_after_a_rollback_is_not_swallowed_by_a_tick_that_cannot_start_it() {
    let mut w = World::new(canary(&yaml("istio", CANARY_20_40, "")));
    w.initialize();
    w.set_revision("v2");
    w.tick();
    w.canary_ready = Box::new(|_| Readiness::Failed("exceeded its progress deadline".into()));
    w.tick();
    assert_eq!(w.status.phase, Failed);
    let applied = w.status.last_applied_spec.clone();
    w.canary_ready = Box::new(|_| Readiness::Ready);
    w.primary_ready = Box::new(|_| Readiness::Waiting("primary not ready yet".into()));
    w.set_revision("v3");
    w.tick();
    assert_eq!(w.status.phase, Failed);
    assert_eq!(
        w.status.last_applied_spec, applied,
        "the revision that did not start is still new"
    );
    w.primary_ready = Box::new(|_| Readiness::Ready);
    w.tick();
    assert_eq!(w.status.phase, Progressing, "v3 runs once it can");
}

#[test]
fn primary_failing_during_promotion_leaves_traffic_on_the_canary() {
    let mut w = World::new(canary(&yaml("istio", CANARY_20_40, "")));
    w.initialize();
    w.set_revision("v2");
    w.run_until(&[Promoting], 10);
    w.primary_ready = Box::new(|_| {
        Readiness::Failed("deployment \"app-primary\" exceeded its progress deadline".into())
    });
    w.tick();
    assert_eq!(w.status.phase, Failed);
    assert_eq!(w.routes, Routes::CANARY);
    assert_eq!(w.status.canary_weight, Some(100));
    assert!(w.target_replicas_up, "the canary is not scaled down");
    assert!(
        w.warnings()
            .iter()
            .any(|m| m.starts_with("Promotion of app.ns failed, primary not ready:"))
    );
    // Later ticks leave the traffic (and the pods) where they are.
    w.primary_ready = Box::new(|_| Readiness::Ready);
    let d = w.tick();
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert!(w.target_replicas_up);
}

#[test]
fn a_target_left_running_at_rest_is_scaled_to_zero_again() {
    let mut w = World::new(canary(&yaml("istio", CANARY_20_40, "")));
    w.initialize();
    assert!(!w.target_replicas_up);
    // The scale-down did not happen (it failed, or someone scaled the target up).
    w.target_replicas_up = true;
    let d = w.tick();
    assert_eq!(d.actions, vec![Action::ScaleTargetToZero]);
    assert!(d.status.is_none() && d.notices.is_empty(), "{d:?}");
    assert!(!w.target_replicas_up);
    // Not while the primary does not serve.
    w.target_replicas_up = true;
    w.primary_ready = Box::new(|_| Readiness::Waiting("app-primary.ns not ready".into()));
    let d = w.tick();
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    // The same between ticks.
    w.primary_ready = Box::new(|_| Readiness::Ready);
    let d = flagger_core::decide::maintain(
        &w.canary,
        &w.status,
        &flagger_core::effects::Observations {
            target: w.target.clone(),
            target_scale: Some(flagger_core::effects::Scale::Up),
            primary_ready: Some(Readiness::Ready),
            ..Default::default()
        },
        w.now,
    );
    assert_eq!(d.actions, vec![Action::ScaleTargetToZero]);
    assert!(d.status.is_none() && d.notices.is_empty());
}

#[test]
fn a_run_whose_target_lost_its_pods_scales_it_up_before_analysing() {
    let mut w = World::new(canary(&yaml("istio", CANARY_20_40, "")));
    w.initialize();
    w.set_revision("v2");
    w.tick();
    assert_eq!(w.status.phase, Progressing);
    w.target_replicas_up = false;
    w.clear_log();
    let before = w.status.clone();
    let d = w.tick();
    assert_eq!(d.actions, vec![Action::ScaleTargetUp]);
    assert!(d.status.is_none(), "no step without pods");
    assert_eq!(w.status, before);
    assert!(w.needs.iter().flatten().all(|n| !matches!(
        n,
        flagger_core::Need::Metric { .. } | flagger_core::Need::CanaryReadiness
    )));
    w.run_until(&[Succeeded], 20);
    assert_eq!(w.primary_revision, w.target.hash);
    assert!(!w.target_replicas_up);
}

#[test]
fn step_weight_promotion_moves_traffic_back_in_steps() {
    let analysis =
        "    threshold: 2\n    stepWeight: 50\n    maxWeight: 50\n    stepWeightPromotion: 20\n";
    let mut w = World::new(canary(&yaml("istio", analysis, "")));
    w.initialize();
    w.set_revision("v2");
    w.run_until(&[Promoting], 10);
    w.run_until(&[Finalising], 10);
    let primary_steps: Vec<_> = w
        .event_messages()
        .into_iter()
        .filter(|m| m.starts_with("Advance app.ns primary weight"))
        .collect();
    assert_eq!(
        primary_steps,
        ["70", "90", "100"].map(|x| format!("Advance app.ns primary weight {x}"))
    );
}

#[test]
fn mirroring_mirrors_first_then_shifts() {
    let analysis = "    threshold: 2\n    stepWeight: 25\n    maxWeight: 50\n    mirror: true\n    mirrorWeight: 50\n";
    let mut w = World::new(canary(&yaml("istio", analysis, "")));
    w.initialize();
    w.set_revision("v2");
    w.tick(); // scale up
    w.tick(); // pre-rollout + mirror
    assert_eq!(
        w.routes,
        Routes {
            primary: 100,
            canary: 0,
            mirrored: true
        }
    );
    w.tick();
    assert_eq!(w.routes, Routes::weights(75, 25));
    w.run_until(&[Succeeded], 10);
    assert_eq!(w.canary.analysis.mirror_weight, 50);
}

#[test]
fn status_written_by_flagger_is_adopted_without_a_new_run() {
    let mut w = World::new(canary(&yaml("istio", CANARY_20_40, "")));
    w.initialize();
    // Flagger's own hashes (go-spew/FNV, safe-encoded): we cannot reproduce them.
    w.status.last_applied_spec = Some("5f7b8c9d4".into());
    w.status.last_promoted_spec = Some("5f7b8c9d4".into());
    w.status.phase = Succeeded;
    w.clear_log();
    w.tick();
    assert_eq!(
        w.status.phase, Succeeded,
        "no analysis for an unchanged target"
    );
    assert_eq!(
        w.status.last_applied_spec.as_deref(),
        Some(w.target.hash.as_str())
    );
    assert_eq!(
        w.status.last_promoted_spec.as_deref(),
        Some(w.target.hash.as_str())
    );
    assert!(w.event_messages()[0].starts_with("Adopted app.ns from a previous controller"));
    w.tick();
    assert_eq!(w.events.len(), 1, "adoption is announced once");
    w.set_revision("v2");
    w.tick();
    assert_eq!(
        w.status.phase, Progressing,
        "a real change still starts a run"
    );
}

#[test]
fn kubernetes_provider_forces_blue_green_with_warnings() {
    let mut w = World::new(canary(&yaml(
        "kubernetes",
        "    threshold: 2\n    stepWeight: 10\n",
        "",
    )));
    w.initialize();
    w.set_revision("v2");
    w.tick();
    w.tick();
    w.tick();
    let warnings = w.warnings();
    assert!(warnings.contains(
        &"Progressive traffic is not supported when using the kubernetes provider".to_string()
    ));
    assert!(warnings.contains(&"Setting canaryAnalysis.iterations: 10".to_string()));
    assert!(
        w.event_messages()
            .contains(&"Advance app.ns canary iteration 2/10".to_string())
    );
    assert!(w.events.iter().all(|e| e.event_type == EventType::Normal
        || e.message.contains("not supported")
        || e.message.starts_with("Setting")));
}

#[test]
fn waiting_canary_readiness_counts_no_failed_check() {
    let mut w = World::new(canary(&yaml("istio", CANARY_20_40, "")));
    w.initialize();
    w.set_revision("v2");
    w.canary_ready = Box::new(|t| {
        if t < 8 {
            Readiness::Waiting(
                "canary deployment app.ns not ready: waiting for rollout to finish".into(),
            )
        } else {
            Readiness::Ready
        }
    });
    for _ in 0..5 {
        w.tick();
    }
    assert_eq!(w.status.failed_checks.unwrap_or(0), 0);
    assert_eq!(w.status.phase, Progressing);
    w.run_until(&[Succeeded], 20);
}

#[test]
fn rollback_hook_rolls_back_immediately() {
    let analysis = format!(
        "{CANARY_20_40}    webhooks:\n    - name: panic-button\n      type: rollback\n      url: http://gate/\n"
    );
    let mut w = World::new(canary(&yaml("istio", &analysis, ""))).with_hooks(|ty, _, t| match ty {
        HookType::Rollback if t >= 4 => Ok(()),
        HookType::Rollback => Err("Forbidden".into()),
        _ => Ok(()),
    });
    w.initialize();
    w.set_revision("v2");
    w.run_until(&[Failed], 10);
    let warnings = w.warnings();
    assert!(warnings.contains(&"Rollback check panic-button passed".to_string()));
    assert!(warnings.contains(&"Rolling back app.ns manual webhook invoked".to_string()));
    assert!(
        w.event_messages()
            .contains(&"Rollback hook panic-button not signaling a rollback".to_string())
    );
}

#[test]
fn waiting_promotion_never_writes_negative_iterations() {
    // Canary strategy: Flagger writes iterations −1 in WaitingPromotion; we write 0.
    let analysis = format!(
        "{CANARY_20_40}    webhooks:\n    - name: promote\n      type: confirm-promotion\n      url: http://gate/\n"
    );
    let mut w = World::new(canary(&yaml("istio", &analysis, ""))).with_hooks(|ty, _, _| match ty {
        HookType::ConfirmPromotion => Err("Forbidden".into()),
        _ => Ok(()),
    });
    w.initialize();
    w.set_revision("v2");
    w.run_until(&[WaitingPromotion], 10);
    assert_eq!(w.status.iterations, Some(0));
    w.tick();
    assert_eq!(w.status.phase, WaitingPromotion);
    assert_eq!(
        w.status.iterations,
        Some(0),
        "still 0 on the next held tick"
    );
}

#[test]
fn waiting_canary_does_not_evaluate_rollback_hooks() {
    let analysis = format!(
        "{CANARY_20_40}    webhooks:\n    - name: approve\n      type: confirm-rollout\n      url: http://gate/\n    - name: abort\n      type: rollback\n      url: http://gate/\n"
    );
    let rollback_calls = std::rc::Rc::new(std::cell::Cell::new(0));
    let r = rollback_calls.clone();
    let mut w =
        World::new(canary(&yaml("istio", &analysis, ""))).with_hooks(move |ty, _, _| match ty {
            HookType::ConfirmRollout => Err("Forbidden".into()),
            HookType::Rollback => {
                r.set(r.get() + 1);
                Ok(())
            }
            _ => Ok(()),
        });
    w.initialize();
    w.set_revision("v2");
    for _ in 0..3 {
        w.tick();
        assert_eq!(w.status.phase, Waiting);
    }
    assert_eq!(
        rollback_calls.get(),
        0,
        "a rollback hook that would roll back is never asked while Waiting"
    );
}

#[test]
fn step_weight_promotion_with_the_canary_at_zero_finishes() {
    // Blue/green with stepWeightPromotion: in Promoting the canary weight is already 0 after
    // the switch back; Flagger makes no progress there, flagger-rs finalises.
    let analysis = "    threshold: 2\n    iterations: 2\n    stepWeightPromotion: 50\n";
    let mut w = World::new(canary(&yaml("istio", analysis, "")));
    w.initialize();
    w.set_revision("v2");
    let ticks = w.run_until(&[Succeeded], 20);
    assert!(ticks < 20, "reached Succeeded: {:?}", w.phases);
    assert!(w.phases.contains(&Finalising), "{:?}", w.phases);
    assert_eq!(w.routes.canary, 0);
}

#[test]
fn failed_canary_left_by_flagger_stays_failed_until_the_target_changes() {
    let mut w = World::new(canary(&yaml("istio", CANARY_20_40, "")));
    w.initialize();
    let promoted = w.status.last_promoted_spec.clone();
    w.set_revision("v2");
    // What Flagger leaves after a rollback of v2: Failed, its own hashes.
    w.status.phase = Failed;
    w.status.last_applied_spec = Some("7c1d2e3f4".into());
    w.status.last_promoted_spec = Some("5f7b8c9d4".into());
    w.clear_log();
    w.tick();
    assert_eq!(w.status.phase, Failed, "the failed revision is not retried");
    assert_eq!(
        w.status.last_applied_spec.as_deref(),
        Some(w.target.hash.as_str()),
        "lastAppliedSpec re-baselined to the current target"
    );
    assert_eq!(
        w.status.last_promoted_spec.as_deref(),
        Some("5f7b8c9d4"),
        "the promoted hash stays Flagger's until our next promotion"
    );
    assert_ne!(w.status.last_promoted_spec, promoted);
    assert!(w.event_messages()[0].starts_with("Adopted app.ns from a previous controller"));
    w.tick();
    assert_eq!(w.status.phase, Failed);
    w.set_revision("v3");
    w.tick();
    assert_eq!(w.status.phase, Progressing, "a new revision runs");
}

#[test]
fn template_metric_failures_are_worded_as_flagger_words_them() {
    use flagger_core::effects::MetricOutcome;
    let analysis = "    threshold: 4\n    stepWeight: 20\n    maxWeight: 40\n    metrics:\n    - name: errors\n      interval: 1m\n      templateRef: {name: error-rate}\n      thresholdRange: {max: 5}\n";
    let mut calls = 0;
    let mut w = World::new(canary(&yaml("istio", analysis, ""))).with_metrics(move |_, _| {
        calls += 1;
        match calls {
            1 => MetricOutcome::Unusable("Metric template error-rate.ns error: not found".into()),
            2 => MetricOutcome::NoValues("no values found".into()),
            3 => MetricOutcome::Error("error response: Status 400".into()),
            _ => MetricOutcome::Value(7.5),
        }
    });
    w.initialize();
    w.set_revision("v2");
    w.run_until(&[Failed], 10);
    let warnings = w.warnings();
    for expected in [
        "Metric template error-rate.ns error: not found",
        "Halt advancement no values found for custom metric: errors: no values found",
        "Metric query failed for errors: error response: Status 400",
        "Halt app.ns advancement errors 7.50 > 5",
    ] {
        assert!(
            warnings.iter().any(|m| m == expected),
            "missing {expected:?} in {warnings:#?}"
        );
    }
}

#[test]
fn comparison_checks_are_judged_by_the_core_and_told_in_words() {
    use flagger_core::compare::{Compared, JudgeOptions};
    use flagger_core::effects::MetricOutcome;
    use flagger_core::judge::{MetricConfig, Thresholds, config::Direction};
    use std::time::Duration;
    let analysis = "    threshold: 2\n    stepWeight: 20\n    maxWeight: 40\n    metrics:\n    - name: latency\n      interval: 30s\n      templateRef: {name: latency}\n      thresholdRange: {min: 95}\n";
    let options = JudgeOptions {
        metric: MetricConfig {
            direction: Direction::Increase,
            ..Default::default()
        },
        thresholds: Thresholds {
            pass: 95.0,
            marginal: 75.0,
        },
    };
    let window = flagger_core::compare::Window {
        range: Duration::from_secs(30),
        step: Duration::from_secs(1),
    };
    let around = |centre: f64, phase: usize| -> Vec<f64> {
        (0..30)
            .map(|i| centre * (1.0 + 0.05 * (((i * 7 + phase) % 11) as f64 / 10.0 - 0.5)))
            .collect()
    };
    let mut calls = 0;
    let mut w = World::new(canary(&yaml("istio", analysis, ""))).with_metrics(move |_, _| {
        calls += 1;
        // As good as the primary on the first check, 30% slower after.
        let canary = if calls == 1 { 0.1 } else { 0.13 };
        let compared = Compared::judged(
            "latency",
            &options,
            window,
            ("canary query".into(), around(canary, 3)),
            ("primary query".into(), around(0.1, 0)),
        )
        .expect("valid options");
        MetricOutcome::Compared(Box::new(compared))
    });
    w.initialize();
    w.set_revision("v2");
    w.run_until(&[Failed], 12);
    let messages = w.event_messages();
    assert!(
        messages.iter().any(|m| m.starts_with(
            "app.ns latency: the judge passes the canary against the primary: score 100.00 >= 95, verdict Pass"
        )),
        "{messages:#?}"
    );
    let failures: Vec<_> = w
        .warnings()
        .into_iter()
        .filter(|m| m.starts_with("Halt app.ns advancement latency: the judge fails the canary against the primary: score 0.00 < 95"))
        .collect();
    assert_eq!(failures.len(), 2, "{messages:#?}");
    assert!(
        failures[0].contains("High: canary higher"),
        "{}",
        failures[0]
    );
    // The check's explanation in the status carries the judge's figures too.
    let check = w
        .status
        .analysis
        .as_ref()
        .and_then(|a| a.checks.iter().find(|c| c.name == "latency"))
        .expect("the latency check is explained in the status");
    assert_eq!(check.verdict, "Fail");
    let reason = check.reason.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("latency: judge score 0.00, verdict Fail; High: canary higher"),
        "{reason}"
    );
}

#[test]
fn session_affinity_cookies_are_decided_with_the_routes_and_kept_in_the_status() {
    let affinity = "  analysis:\n    sessionAffinity: {cookieName: flagger-cookie, maxAge: 60}\n";
    let spec = yaml("istio", CANARY_20_40, "").replace("  analysis:\n", affinity);
    let mut w = World::new(canary(&spec));
    w.initialize();
    w.set_revision("v2");
    w.run_until(&[Progressing], 3);
    assert_eq!(w.status.session_affinity_cookie, None);
    for _ in 0..5 {
        if w.tick().routes() == Some(Routes::weights(80, 20)) {
            break;
        }
    }
    assert_eq!(w.status.canary_weight, Some(20));
    let cookie = w
        .status
        .session_affinity_cookie
        .clone()
        .expect("the canary cookie is in the status with the routes");
    assert!(cookie.starts_with("flagger-cookie="), "{cookie}");
    // The same cookie for the rest of the run, retired when traffic goes back.
    w.tick();
    assert_eq!(
        w.status.session_affinity_cookie.as_deref(),
        Some(cookie.as_str())
    );
    w.run_until(&[Succeeded], 20);
    assert_eq!(w.status.session_affinity_cookie, None);
    assert_eq!(
        w.status.previous_session_affinity_cookie.as_deref(),
        Some(cookie.as_str())
    );
}

#[test]
fn a_target_serving_a_yielded_apex_is_never_scaled_down() {
    let mut w = World::new(canary(&yaml(
        "kubernetes",
        "    threshold: 2\n    iterations: 2\n",
        "",
    )));
    let obs_keep = |w: &World| flagger_core::effects::Observations {
        target: w.target.clone(),
        target_scale: Some(flagger_core::effects::Scale::Zero),
        primary_ready: Some(Readiness::Ready),
        keep_target_serving: true,
        ..Default::default()
    };
    w.initialize();
    // The apex Service was left to a writer that points it at the target: scaled up between
    // ticks, and the tick that would scale it down keeps it.
    let d = flagger_core::decide::maintain(&w.canary, &w.status, &obs_keep(&w), w.now);
    assert_eq!(d.actions, vec![Action::ScaleTargetUp]);
    w.set_revision("v2");
    w.run_until(&[Finalising], 10);
    let mut obs = obs_keep(&w);
    obs.target_scale = Some(flagger_core::effects::Scale::Up);
    obs.canary_ready = Some(Readiness::Ready);
    let step = flagger_core::decide(&w.canary, &w.status, &obs, w.now);
    let flagger_core::Step::Done(d) = step else {
        panic!("decided: {step:?}");
    };
    assert_eq!(d.status.map(|s| s.phase), Some(Succeeded));
    assert!(
        !d.actions.contains(&Action::ScaleTargetToZero),
        "{:?}",
        d.actions
    );
}
