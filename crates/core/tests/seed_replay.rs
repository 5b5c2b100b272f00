//! Replays of the stories in the seeds (`shared/seeds/`), tick by tick through the decision core.
//! Each test names the seed and the section it replays. Where a seed is wrong about Flagger, the
//! test asserts Flagger's real behaviour and says so.

mod support;

use std::cell::Cell;
use std::rc::Rc;

use flagger_api::CanaryPhase::{self, *};
use flagger_core::effects::{EventType, MetricOutcome, Routes, RunOutcome};
use flagger_core::model::{HookType, Strategy};
use support::{World, canary};

const SEED001_PODINFO: &str = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898, targetPort: 9898, portDiscovery: true}
  analysis:
    interval: 1m
    threshold: 10
    maxWeight: 50
    stepWeight: 5
    metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
      interval: 1m
    - name: request-duration
      thresholdRange: {max: 500}
      interval: 1m
    webhooks:
    - name: load-test
      url: http://flagger-loadtester.test/
      timeout: 5s
      metadata: {type: cmd, cmd: "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"}
"#;

fn advances(world: &World) -> Vec<String> {
    world
        .event_messages()
        .into_iter()
        .filter(|m| m.starts_with("Advance "))
        .collect()
}

fn ticks_to_success(world: &mut World, max: usize) -> usize {
    world.run_until(&[Succeeded], max)
}

/// Seed 001, "Canary Progression Timeline": stepWeight 5, maxWeight 50, interval 1m. The seed
/// lists ten intervals at 5..50% and puts the total at about 12 minutes. Flagger's real tick
/// sequence: one tick detects the revision and scales the canary up, the next runs the
/// (empty) pre-rollout step *and* the first weight step, then one weight per passing tick; the
/// tick after 50% promotes, one more routes traffic back (Finalising), one more finishes.
#[test]
fn seed001_canary_progression_timeline_ten_weights_then_promotion() {
    let mut w = World::new(canary(SEED001_PODINFO));
    w.initialize();
    assert!(
        !w.target_replicas_up,
        "initialization scales the target to zero"
    );
    w.clear_log();

    w.set_revision("v2");
    let ticks = ticks_to_success(&mut w, 30);

    let weights: Vec<u32> = advances(&w)
        .iter()
        .filter_map(|m| m.strip_prefix("Advance podinfo.test canary weight "))
        .map(|v| v.parse().expect("weight"))
        .collect();
    assert_eq!(weights, vec![5, 10, 15, 20, 25, 30, 35, 40, 45, 50]);
    assert_eq!(
        &w.phases[..3],
        &[Progressing, Progressing, Progressing],
        "detection tick, then the pre-rollout tick that also takes the first step"
    );
    // 1 detection + 10 weight ticks + promote + route back + finish.
    assert_eq!(ticks, 14);
    let minutes = (ticks - 1) as u64 * w.canary.analysis.interval.as_secs() / 60;
    assert_eq!(
        minutes, 13,
        "the seed says ~12 minutes; Flagger needs 13 after detection"
    );
    let messages = w.event_messages();
    assert_eq!(
        messages[0],
        "New revision detected! Scaling up podinfo.test"
    );
    assert_eq!(messages[1], "Starting canary analysis for podinfo.test");
    assert!(
        messages.contains(&"Copying podinfo.test template spec to podinfo-primary.test".into())
    );
    assert!(messages.contains(&"Routing all traffic to primary".into()));
    assert_eq!(
        messages.last().map(String::as_str),
        Some("Promotion completed! Scaling down podinfo.test")
    );
    assert_eq!(w.routes, Routes::PRIMARY);
    assert!(!w.target_replicas_up);
    assert_eq!(w.primary_revision, w.target.hash);
    assert_eq!(w.runs, vec![RunOutcome::Succeeded { skipped: false }]);
    assert_eq!(w.post_rollout_phases, vec![Succeeded]);
    assert_eq!(
        w.status.last_promoted_spec.as_deref(),
        Some(w.target.hash.as_str())
    );
}

const SEED001_ROLLBACK: &str = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: myapp, namespace: test}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: myapp}
  service: {port: 9898}
  analysis:
    threshold: 5
    interval: 1m
    iterations: 10
    metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
      interval: 1m
    - name: request-duration
      thresholdRange: {max: 500}
      interval: 1m
"#;

/// A metric script over "analysis ticks" T1, T2, ... (ticks that evaluate metrics), from a
/// table of (success rate, duration ms).
fn scripted(
    table: &'static [(f64, f64)],
    count: Rc<Cell<usize>>,
) -> impl FnMut(&str, usize) -> MetricOutcome {
    move |name, _| {
        if name == "request-success-rate" {
            count.set(count.get() + 1);
        }
        let t = count.get().min(table.len()) - 1;
        match name {
            "request-success-rate" => MetricOutcome::Value(table[t].0),
            _ => MetricOutcome::Value(table[t].1),
        }
    }
}

/// Seed 001, "Rollback Scenarios", scenario 1 (threshold 5): failures at T2..T6. The seed rolls
/// back at T6; Flagger counts the fifth failure at T6 and rolls back at the start of the next
/// tick, without evaluating metrics again.
#[test]
fn seed001_rollback_scenario_1_threshold_reached_rolls_back() {
    const TABLE: &[(f64, f64)] = &[
        (99.5, 450.0),
        (98.0, 480.0),
        (97.5, 490.0),
        (96.0, 510.0),
        (95.0, 530.0),
        (94.0, 550.0),
    ];
    let evaluations = Rc::new(Cell::new(0));
    let mut w =
        World::new(canary(SEED001_ROLLBACK)).with_metrics(scripted(TABLE, evaluations.clone()));
    w.initialize();
    w.set_revision("v2");
    w.run_until(&[Failed], 20);

    assert_eq!(
        evaluations.get(),
        6,
        "metrics run at T1..T6, not on the rollback tick"
    );
    let warnings = w.warnings();
    let halts: Vec<_> = warnings.iter().filter(|m| m.starts_with("Halt")).collect();
    assert_eq!(halts.len(), 5);
    assert_eq!(
        halts[0],
        "Halt myapp.test advancement success rate 98.00% < 99%"
    );
    assert!(
        warnings.contains(&"Rolling back myapp.test failed checks threshold reached 5".to_string())
    );
    assert_eq!(
        warnings.last().map(String::as_str),
        Some("Canary failed! Scaling down myapp.test")
    );
    assert_eq!(w.routes, Routes::PRIMARY);
    assert!(!w.target_replicas_up);
    assert_eq!(
        w.status.failed_checks,
        Some(0),
        "Flagger resets failedChecks on Failed"
    );
    assert_eq!(w.runs, vec![RunOutcome::Failed]);
    assert_eq!(w.post_rollout_phases, vec![Failed]);
    assert!(
        w.alerts
            .iter()
            .any(|a| a.message == "Failed checks threshold reached 5")
    );
}

/// Seed 001, "Rollback Scenarios", scenario 2 (intermittent failures): one failure at T2 never
/// reaches the threshold and the canary is promoted. The seed promotes at T10; with Flagger's
/// blue/green ticks (a failed tick does not advance the iteration, then one tick switches traffic
/// and one promotes) the promotion is copied at T12.
#[test]
fn seed001_rollback_scenario_2_intermittent_failures_promote() {
    const TABLE: &[(f64, f64)] = &[
        (99.5, 450.0),
        (98.0, 480.0),
        (99.2, 460.0),
        (99.8, 440.0),
        (99.5, 450.0),
    ];
    let evaluations = Rc::new(Cell::new(0));
    let mut w =
        World::new(canary(SEED001_ROLLBACK)).with_metrics(scripted(TABLE, evaluations.clone()));
    w.initialize();
    w.set_revision("v2");
    w.run_until(&[Promoting], 30);
    assert_eq!(
        evaluations.get(),
        12,
        "the promotion is decided on the 12th analysis tick"
    );
    assert_eq!(
        w.warnings()
            .iter()
            .filter(|m| m.starts_with("Halt"))
            .count(),
        1
    );
    w.run_until(&[Succeeded], 5);
    assert_eq!(w.routes, Routes::PRIMARY);
    let its: Vec<_> = advances(&w);
    assert_eq!(
        its.first().map(String::as_str),
        Some("Advance myapp.test canary iteration 1/10")
    );
    assert_eq!(
        its.last().map(String::as_str),
        Some("Advance myapp.test canary iteration 10/10")
    );
    assert!(
        w.event_messages()
            .contains(&"Routing all traffic to canary".to_string())
    );
}

fn rollout_speed(yaml_analysis: &str) -> String {
    format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: svc, namespace: prod}}
spec:
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: svc}}
  service: {{port: 80}}
  analysis:
{yaml_analysis}
"#
    )
}

/// Seed 001, "Rollout Speed": both examples set `iterations` together with `stepWeight`, which
/// Flagger's CRD rejects (its `oneOf` matches two branches), so neither runs on Flagger. Without
/// `iterations`, the conservative one (5m, 5/50) takes 65 minutes after detection, not the 100
/// the seed claims; the aggressive one (1m, 20/80) takes 7 minutes, not 5, and its ladder is
/// 20, 40, 60, 80.
#[test]
fn seed001_rollout_speed_examples_are_rejected_and_real_totals_differ() {
    use flagger_core::validate::{ValidationContext, validate};
    let conservative = "    interval: 5m\n    threshold: 3\n    maxWeight: 50\n    stepWeight: 5\n";
    let aggressive = "    interval: 1m\n    threshold: 10\n    maxWeight: 80\n    stepWeight: 20\n";
    for (analysis, iterations) in [(conservative, 20), (aggressive, 5)] {
        let yaml = rollout_speed(&format!("{analysis}    iterations: {iterations}\n"));
        let wire: flagger_api::Canary = serde_yaml::from_str(&yaml).expect("parses");
        let problems = validate(&wire, &ValidationContext::default()).expect_err("rejected");
        assert!(
            problems.iter().any(|p| p.path.starts_with("spec.analysis")
                && p.message.contains("iterations")
                && p.message.contains("stepWeight")),
            "{problems:#?}"
        );
    }

    let mut w = World::new(canary(&rollout_speed(conservative)));
    w.initialize();
    w.set_revision("v2");
    let ticks = ticks_to_success(&mut w, 40);
    assert_eq!((ticks - 1) * 5, 65);

    let mut w = World::new(canary(&rollout_speed(aggressive)));
    w.initialize();
    w.set_revision("v2");
    let ticks = ticks_to_success(&mut w, 40);
    assert_eq!(ticks - 1, 7);
    assert_eq!(
        advances(&w),
        ["20", "40", "60", "80"].map(|x| format!("Advance svc.prod canary weight {x}"))
    );
}

const SEED003_FRONTEND: &str = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: frontend, namespace: prod}
spec:
  provider: istio
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: frontend}
  service: {port: 80, targetPort: 9898}
  analysis:
    interval: 10s
    threshold: 10
    iterations: 12
    match:
    - headers:
        user-agent: {regex: ".*Firefox.*"}
    - headers:
        cookie: {regex: "^(.*?;)?(type=insider)(;.*)?$"}
    webhooks:
    - name: conformance-test
      type: pre-rollout
      url: http://flagger-loadtester.prod/
      timeout: 15s
      metadata: {type: bash, cmd: "curl -sd 'test' http://frontend-canary/token | grep token"}
"#;

/// Seed 003, "A/B Testing": iterations 12 with a Firefox header match and an insider cookie. The
/// seed's log shows ".../10" (it was taken from a run with 10 iterations); with the manifest's 12
/// the canary takes 12 iterations, two minutes at 10s, then promotes.
#[test]
fn seed003_ab_testing_iterates_with_matches_then_promotes() {
    let c = canary(SEED003_FRONTEND);
    match &c.analysis.strategy {
        Strategy::AbTesting {
            iterations,
            matches,
        } => {
            assert_eq!(*iterations, 12);
            assert_eq!(matches.len(), 2);
            let ua = &matches[0].headers.as_ref().expect("headers")["user-agent"];
            assert_eq!(ua.regex.as_deref(), Some(".*Firefox.*"));
        }
        other => panic!("expected A/B, got {other:?}"),
    }
    let mut w = World::new(c);
    w.initialize();
    w.clear_log();
    w.set_revision("v2");
    w.run_until(&[Promoting], 30);
    let msgs = w.event_messages();
    assert_eq!(msgs[0], "New revision detected! Scaling up frontend.prod");
    assert_eq!(msgs[1], "Starting canary analysis for frontend.prod");
    assert_eq!(msgs[2], "Pre-rollout check conformance-test passed");
    let its = advances(&w);
    assert_eq!(its.len(), 12);
    assert_eq!(its[11], "Advance frontend.prod canary iteration 12/12");
    // A/B routes: the matched route goes to the canary (the router keeps the default route on
    // the primary).
    assert_eq!(w.routes, Routes::CANARY);
    // 12 iteration ticks at 10s: the seed's "two minutes".
    assert_eq!(its.len() as u64 * w.canary.analysis.interval.as_secs(), 120);
    w.run_until(&[Succeeded], 3);
    assert_eq!(w.routes, Routes::PRIMARY);
}

const SEED004_BLUE_GREEN: &str = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  provider: kubernetes
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  progressDeadlineSeconds: 60
  autoscalerRef: {apiVersion: autoscaling/v2beta2, kind: HorizontalPodAutoscaler, name: podinfo}
  service: {port: 9898, portDiscovery: true}
  analysis:
    interval: 30s
    threshold: 2
    iterations: 10
    metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
      interval: 1m
    - name: request-duration
      thresholdRange: {max: 500}
      interval: 30s
    webhooks:
    - name: smoke-test
      type: pre-rollout
      url: http://flagger-loadtester.test/
      timeout: 15s
      metadata: {type: bash, cmd: "curl -sd 'anon' http://podinfo-canary.test:9898/token | grep token"}
    - name: load-test
      url: http://flagger-loadtester.test/
      timeout: 5s
      metadata: {type: cmd, cmd: "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"}
"#;

/// Seed 004, blue/green on the kubernetes provider (iterations 10, threshold 2): three
/// iterations pass, then two failing success-rate checks roll the canary back with the events
/// the seed lists. The seed shows the "Halt" events as Normal; Flagger records them as Warning.
#[test]
fn seed004_blue_green_rolls_back_after_two_failed_checks() {
    const TABLE: &[(f64, f64)] = &[(100.0, 10.0), (100.0, 10.0), (69.17, 10.0), (61.39, 10.0)];
    let evaluations = Rc::new(Cell::new(0));
    let mut w =
        World::new(canary(SEED004_BLUE_GREEN)).with_metrics(scripted(TABLE, evaluations.clone()));
    w.initialize();
    w.clear_log();
    w.set_revision("v2");
    w.run_until(&[Failed], 20);

    let relevant: Vec<(EventType, String)> = w
        .events
        .iter()
        .filter(|e| {
            [
                "Advance",
                "Halt",
                "Rolling back",
                "Canary failed",
                "New revision",
            ]
            .iter()
            .any(|p| e.message.starts_with(p))
        })
        .map(|e| (e.event_type, e.message.clone()))
        .collect();
    use EventType::{Normal, Warning};
    assert_eq!(
        relevant,
        vec![
            (
                Normal,
                "New revision detected! Scaling up podinfo.test".to_string()
            ),
            (
                Normal,
                "Advance podinfo.test canary iteration 1/10".to_string()
            ),
            (
                Normal,
                "Advance podinfo.test canary iteration 2/10".to_string()
            ),
            (
                Normal,
                "Advance podinfo.test canary iteration 3/10".to_string()
            ),
            (
                Warning,
                "Halt podinfo.test advancement success rate 69.17% < 99%".to_string()
            ),
            (
                Warning,
                "Halt podinfo.test advancement success rate 61.39% < 99%".to_string()
            ),
            (
                Warning,
                "Rolling back podinfo.test failed checks threshold reached 2".to_string()
            ),
            (
                Warning,
                "Canary failed! Scaling down podinfo.test".to_string()
            ),
        ]
    );
    assert!(
        w.event_messages()
            .contains(&"Pre-rollout check smoke-test passed".to_string())
    );
    assert_eq!(w.status.phase, Failed);
    assert!(!w.target_replicas_up);
}

/// Seed 004, the successful run: ten iterations, then promotion. The kubernetes provider never
/// moves traffic (the apex Service keeps selecting the primary); promotion updates the primary.
#[test]
fn seed004_blue_green_promotes_after_ten_iterations() {
    let mut w = World::new(canary(SEED004_BLUE_GREEN));
    w.initialize();
    w.set_revision("v2");
    w.run_until(&[Succeeded], 30);
    let its = advances(&w);
    assert_eq!(its.len(), 10);
    assert_eq!(its[9], "Advance podinfo.test canary iteration 10/10");
    assert!(
        !w.event_messages()
            .iter()
            .any(|m| m.contains("Routing all traffic"))
    );
    assert_eq!(w.primary_revision, w.target.hash);
    // The kubernetes provider's "hooks" were called as written.
    assert!(w.needs.iter().flatten().any(|n| matches!(
        n,
        flagger_core::Need::Hook {
            hook_type: HookType::Rollout,
            ..
        }
    )));
}

/// Phases a seed-style run goes through, for the record.
#[test]
fn seed001_phases_of_a_successful_run() {
    let mut w = World::new(canary(SEED001_PODINFO));
    w.initialize();
    w.clear_log();
    w.set_revision("v2");
    ticks_to_success(&mut w, 30);
    let mut distinct: Vec<CanaryPhase> = Vec::new();
    for p in &w.phases {
        if distinct.last() != Some(p) {
            distinct.push(*p);
        }
    }
    assert_eq!(
        distinct,
        vec![Progressing, Promoting, Finalising, Succeeded]
    );
}
