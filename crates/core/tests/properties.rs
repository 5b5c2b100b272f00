//! Property tests of the decision core's invariants, over random specs and random check
//! outcomes.

mod support;

use std::rc::Rc;

use flagger_api::CanaryPhase;
use flagger_core::effects::{Action, MetricOutcome};
use flagger_core::model::HookType;
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use support::{World, try_canary};

fn spec(analysis: &str, provider: &str) -> String {
    format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: app, namespace: ns}}
spec:
  provider: {provider}
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: app}}
  service:
    port: 80
    gatewayRefs: [{{name: gw, namespace: ingress}}]
  analysis:
    interval: 1m
{analysis}
    metrics:
    - name: request-success-rate
      thresholdRange: {{min: 99}}
    webhooks:
    - name: gate
      type: confirm-promotion
      url: http://gate/
    - name: tests
      type: rollout
      url: http://tests/
"#
    )
}

/// A strategy block: linear steps, an explicit ladder, blue/green or A/B.
fn strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u32..=60, 1u32..=100, 1u32..=5, 0u32..=60, any::<bool>()).prop_map(|(step, max, th, promo, mirror)| {
            format!(
                "    threshold: {th}\n    stepWeight: {step}\n    maxWeight: {max}\n    stepWeightPromotion: {promo}\n    mirror: {mirror}\n"
            )
        }),
        (proptest::collection::btree_set(1u32..=100, 1..6), 1u32..=5).prop_map(|(ladder, th)| {
            let ladder: Vec<String> = ladder.into_iter().map(|w| w.to_string()).collect();
            format!("    threshold: {th}\n    stepWeights: [{}]\n", ladder.join(", "))
        }),
        (1u32..=8, 1u32..=5, any::<bool>()).prop_map(|(it, th, mirror)| {
            format!("    threshold: {th}\n    iterations: {it}\n    mirror: {mirror}\n")
        }),
        (1u32..=8, 1u32..=5).prop_map(|(it, th)| {
            format!("    threshold: {th}\n    iterations: {it}\n    match:\n    - headers:\n        x-canary: {{exact: insider}}\n")
        }),
    ]
}

fn provider() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("istio"), Just("kubernetes"), Just("gatewayapi:v1")]
}

/// Per-tick outcomes: (metric passes, rollout hook passes, gate approves).
fn outcomes() -> impl Strategy<Value = Vec<(bool, bool, bool)>> {
    proptest::collection::vec(
        (
            prop::bool::weighted(0.8),
            prop::bool::weighted(0.9),
            prop::bool::weighted(0.7),
        ),
        60,
    )
}

/// A world for a random spec, or `None` when the spec is one validation rejects (e.g. mirroring
/// on the kubernetes provider).
fn scripted_world(
    yaml: &str,
    script: Vec<(bool, bool, bool)>,
    gate_always_rejects: bool,
) -> Option<World> {
    let canary = try_canary(yaml).ok()?;
    let script = Rc::new(script);
    let s1 = script.clone();
    let s2 = script.clone();
    let mut w = World::new(canary)
        .with_metrics(move |_, t| {
            let (ok, _, _) = s1[t % s1.len()];
            MetricOutcome::Value(if ok { 100.0 } else { 50.0 })
        })
        .with_hooks(move |ty, _, t| {
            let (_, hook_ok, gate_ok) = s2[t % s2.len()];
            match ty {
                HookType::ConfirmPromotion if gate_always_rejects => Err("halted".into()),
                HookType::ConfirmPromotion => gate_ok.then_some(()).ok_or_else(|| "halted".into()),
                HookType::Rollout => hook_ok.then_some(()).ok_or_else(|| "tests failed".into()),
                _ => Ok(()),
            }
        });
    w.initialize();
    w.set_revision("v2");
    Some(w)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Every weight the core sets is within 0..=100 and the two add up to 100.
    #[test]
    fn weights_stay_in_range_and_sum_to_100(
        s in strategy(), p in provider(), script in outcomes()
    ) {
        let w = scripted_world(&spec(&s, p), script, false);
        prop_assume!(w.is_some());
        let mut w = w.expect("valid");
        for _ in 0..60 {
            let d = w.tick();
            for a in &d.actions {
                if let Action::SetRoutes(r) = a {
                    prop_assert!(r.primary <= 100 && r.canary <= 100, "{r:?}");
                    prop_assert_eq!(r.primary + r.canary, 100, "{:?}", r);
                }
            }
            if let Some(weight) = w.status.canary_weight {
                prop_assert!((0..=100).contains(&weight));
            }
        }
    }

    /// A tick that starts analysing with failedChecks at or above the threshold ends in Failed.
    #[test]
    fn failed_checks_at_threshold_always_roll_back(
        s in strategy(), p in provider(), script in outcomes()
    ) {
        let w = scripted_world(&spec(&s, p), script, false);
        prop_assume!(w.is_some());
        let mut w = w.expect("valid");
        let threshold = w.canary.analysis.threshold as i32;
        for _ in 0..60 {
            let before = w.status.clone();
            w.tick();
            let analysing = matches!(before.phase, CanaryPhase::Progressing | CanaryPhase::WaitingPromotion);
            if analysing && before.failed_checks.unwrap_or(0) >= threshold {
                prop_assert_eq!(w.status.phase, CanaryPhase::Failed);
                prop_assert!(!w.target_replicas_up);
            }
            prop_assert!(w.status.failed_checks.unwrap_or(0) <= threshold);
        }
    }

    /// With a confirm-promotion gate that always rejects, the canary is never promoted.
    #[test]
    fn promotion_never_passes_a_rejecting_gate(
        s in strategy(), p in provider(), script in outcomes()
    ) {
        let w = scripted_world(&spec(&s, p), script, true);
        prop_assume!(w.is_some());
        let mut w = w.expect("valid");
        for _ in 0..60 {
            let d = w.tick();
            prop_assert!(!d.actions.contains(&Action::Promote));
            prop_assert!(!matches!(w.status.phase, CanaryPhase::Promoting | CanaryPhase::Finalising | CanaryPhase::Succeeded));
        }
    }

    /// The same observations at different times give the same decisions, but for timestamps.
    #[test]
    fn decisions_do_not_depend_on_the_clock(
        s in strategy(), p in provider(), script in outcomes(), offset in 1i64..10_000_000
    ) {
        let yaml = spec(&s, p);
        let (a, b) = (scripted_world(&yaml, script.clone(), false), scripted_world(&yaml, script, false));
        prop_assume!(a.is_some());
        let (mut a, mut b) = (a.expect("valid"), b.expect("valid"));
        b.now = Timestamp::from_second(b.now.as_second() + offset).expect("timestamp");
        for _ in 0..40 {
            let da = a.tick();
            let db = b.tick();
            prop_assert_eq!(&da.actions, &db.actions);
            prop_assert_eq!(&da.notices, &db.notices);
            let strip = |s: Option<flagger_api::CanaryStatus>| s.map(|mut s| {
                s.last_transition_time = None;
                if let Some(cs) = s.conditions.as_mut() {
                    for c in cs { c.last_transition_time = None; c.last_update_time = None; }
                }
                if let Some(a) = s.analysis.as_mut() {
                    for c in &mut a.checks { c.time = None; c.insufficient_since = None; }
                }
                s
            });
            prop_assert_eq!(strip(da.status), strip(db.status));
        }
    }
}
