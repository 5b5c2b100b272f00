//! No data is not failure, unless you say so (issue 18), end to end with a real Prometheus: a
//! canary whose pods receive no traffic yet has no request metrics. Under the `hold` policy it
//! neither fails nor advances, and goes on once load starts; under the default it fails as
//! Flagger does. Events and status say "insufficient data".

mod support;

use flagger_api::{Canary, CanaryPhase};
use support::{Env, NS, Options, exporter};

fn manifests(app: &str, annotations: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {app}, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {app}}}}}
  template:
    metadata: {{labels: {{app: {app}}}}}
    spec: {{containers: [{{name: {app}, image: "ghcr.io/stefanprodan/podinfo:6.0.0", ports: [{{name: http, containerPort: 9898}}]}}]}}
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: {app}
  namespace: {NS}
  annotations: {{{annotations}}}
spec:
  provider: kubernetes
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: {app}}}
  progressDeadlineSeconds: 120
  service: {{port: 9898, targetPort: 9898}}
  analysis:
    interval: 1s
    threshold: 2
    iterations: 3
    metrics:
    - name: request-success-rate
      interval: 5s
      thresholdRange: {{min: 99}}
"#
    )
}

async fn roll_out(env: &Env, app: &str) {
    env.kubectl(&[
        "-n",
        NS,
        "set",
        "image",
        &format!("deployment/{app}"),
        &format!("{app}=ghcr.io/stefanprodan/podinfo:6.0.1"),
    ])
    .await;
}

fn check(c: &Canary) -> flagger_api::CheckStatus {
    c.status
        .as_ref()
        .and_then(|s| s.analysis.as_ref())
        .and_then(|a| a.checks.first().cloned())
        .expect("a recorded check")
}

fn condition(c: &Canary, kind: &str) -> flagger_api::CanaryCondition {
    c.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.r#type == kind).cloned())
        .unwrap_or_else(|| panic!("no {kind} condition in {:?}", c.status))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_traffic_hold_neither_fails_nor_advances_then_advances_with_load() {
    let app = "quiet";
    exporter::set_traffic(app, false);
    let env = Env::start(Options {
        prometheus: true,
        ..Default::default()
    })
    .await;
    env.apply(&manifests(app, "flagger.app/no-data: hold"))
        .await;
    env.wait_phase(app, CanaryPhase::Initialized).await;
    roll_out(&env, app).await;

    let holding = "insufficient data for metric request-success-rate, holding";
    env.wait_event(app, holding).await;
    let first = env.canary(app).await;
    let held_at = first.status.as_ref().and_then(|s| s.iterations);
    // Three more ticks without data: no failed check, no iteration.
    let seen = env.event_count(app, holding).await;
    let deadline = std::time::Instant::now() + support::DEADLINE;
    while env.event_count(app, holding).await < seen + 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the hold was not repeated"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let c = env.canary(app).await;
    let status = c.status.clone().expect("status");
    assert_eq!(status.phase, CanaryPhase::Progressing);
    assert_eq!(status.failed_checks, Some(0), "{status:?}");
    assert_eq!(status.iterations, held_at, "no advance while held");
    let held = check(&c);
    assert_eq!(held.verdict, "InsufficientData");
    assert_eq!(held.failures, 0);
    assert!(
        held.query
            .as_deref()
            .is_some_and(|q| q.contains("http_request_duration_seconds"))
    );
    let analysis = condition(&c, "Analysis");
    assert_eq!(analysis.reason, "InsufficientData");
    assert!(
        analysis
            .message
            .as_deref()
            .is_some_and(|m| m.contains("insufficient data") && m.contains("no failed check")),
        "{analysis:?}"
    );

    // Load starts: the run goes on and ends promoted without a failed check.
    exporter::set_traffic(app, true);
    let done = env.wait_phase(app, CanaryPhase::Succeeded).await;
    assert_eq!(done.status.as_ref().and_then(|s| s.failed_checks), Some(0));
    let events = env.events(app).await;
    assert!(
        !events
            .iter()
            .any(|e| e.contains("no values found") || e.contains("counted as a failed")),
        "{events:#?}"
    );
    assert_eq!(check(&done).verdict, "Pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_traffic_the_default_fails_as_flagger_does() {
    let app = "silent";
    exporter::set_traffic(app, false);
    let env = Env::start(Options {
        prometheus: true,
        ..Default::default()
    })
    .await;
    env.apply(&manifests(app, "")).await;
    env.wait_phase(app, CanaryPhase::Initialized).await;
    roll_out(&env, app).await;
    let failed = env.wait_phase(app, CanaryPhase::Failed).await;
    env.wait_event(
        app,
        "Halt advancement no values found for kubernetes metric request-success-rate",
    )
    .await;
    let c = check(&failed);
    assert_eq!(c.verdict, "InsufficientData");
    assert_eq!(c.failures, 2);
    let analysis = condition(&failed, "Analysis");
    assert_eq!(analysis.reason, "RolledBack");
    assert!(
        analysis
            .message
            .as_deref()
            .is_some_and(|m| m
                .contains("after 2 of 2 failed checks: request-success-rate: insufficient data")),
        "{analysis:?}"
    );
}
