//! Flagger's kubernetes-provider scenarios, end to end: localkube, the real kubectl, a real
//! Prometheus, and `flagger controller` in-process. Each test has its own cluster.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod support;

use flagger_api::CanaryPhase;
use support::exporter::ERROR_RATIO;
use support::{Env, NS, Options};

const PODINFO: &str = "ghcr.io/stefanprodan/podinfo";

/// The podinfo Deployment of Flagger's e2e workloads, with a tracked ConfigMap and Secret.
fn workload(tag: &str, extra_annotations: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: podinfo-config-env, namespace: {NS}}}
data: {{PODINFO_UI_COLOR: blue}}
---
apiVersion: v1
kind: Secret
metadata: {{name: podinfo-secret-vol, namespace: {NS}}}
data: {{token: b25l}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: {NS}
  labels: {{app: podinfo}}
  annotations: {{team.example.com/owner: payments}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: podinfo}}}}
  template:
    metadata:
      labels: {{app: podinfo, tier: web}}
      annotations: {{prometheus.io/scrape: "true"{extra_annotations}}}
    spec:
      containers:
      - name: podinfod
        image: {PODINFO}:{tag}
        ports: [{{name: http, containerPort: 9898}}, {{name: grpc, containerPort: 9999}}]
        envFrom: [{{configMapRef: {{name: podinfo-config-env}}}}]
        volumeMounts: [{{name: secret, mountPath: /etc/secret}}]
      volumes:
      - name: secret
        secret: {{secretName: podinfo-secret-vol}}
"#
    )
}

/// A Canary for the podinfo Deployment; `analysis` is the YAML of `spec.analysis` (indented 4).
fn canary(kind: &str, target: &str, extra_spec: &str, analysis: &str) -> String {
    format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: {target}, namespace: {NS}}}
spec:
  provider: kubernetes
  targetRef: {{apiVersion: apps/v1, kind: {kind}, name: {target}}}
  progressDeadlineSeconds: 60
  service:
    port: 80
    targetPort: http
    portDiscovery: true
    apex:
      annotations: {{test: apex}}
  {extra_spec}
  analysis:
{analysis}
"#
    )
}

const METRICS: &str = r#"    metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
      interval: 10s
    - name: request-duration
      thresholdRange: {max: 500}
      interval: 10s"#;

fn bg_analysis(iterations: u32, threshold: u32, more: &str) -> String {
    format!("    interval: 1s\n    threshold: {threshold}\n    iterations: {iterations}\n{more}")
}

async fn set_image(env: &Env, tag: &str) {
    env.kubectl(&[
        "-n",
        NS,
        "set",
        "image",
        "deployment/podinfo",
        &format!("podinfod={PODINFO}:{tag}"),
    ])
    .await;
}

async fn primary_image(env: &Env) -> String {
    env.jsonpath(
        "deployment/podinfo-primary",
        ".spec.template.spec.containers[0].image",
    )
    .await
}

/// Applies the workload and the canary and waits for `Initialized`.
async fn init(env: &Env, analysis: &str, extra_spec: &str) {
    env.apply(&workload("6.0.0", "")).await;
    env.apply(&canary("Deployment", "podinfo", extra_spec, analysis))
        .await;
    env.wait_phase("podinfo", CanaryPhase::Initialized).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialization_creates_primary_services_and_configs() {
    let env = Env::start(Options::default()).await;
    init(&env, &bg_analysis(3, 2, ""), "").await;

    // The primary copy: renamed labels and selector, configs renamed, full replicas.
    assert_eq!(
        env.jsonpath(
            "deployment/podinfo-primary",
            ".spec.selector.matchLabels.app"
        )
        .await,
        "podinfo-primary"
    );
    assert_eq!(
        env.jsonpath(
            "deployment/podinfo-primary",
            ".spec.template.metadata.labels.app"
        )
        .await,
        "podinfo-primary"
    );
    assert_eq!(
        env.jsonpath(
            "deployment/podinfo-primary",
            ".spec.template.spec.containers[0].envFrom[0].configMapRef.name"
        )
        .await,
        "podinfo-config-env-primary"
    );
    assert_eq!(
        env.jsonpath(
            "deployment/podinfo-primary",
            ".spec.template.spec.volumes[0].secret.secretName"
        )
        .await,
        "podinfo-secret-vol-primary"
    );
    assert_eq!(
        env.jsonpath(
            "deployment/podinfo-primary",
            ".metadata.ownerReferences[0].kind"
        )
        .await,
        "Canary"
    );
    env.wait_jsonpath("deployment/podinfo-primary", ".status.readyReplicas", "2")
        .await;
    // The target is scaled to zero once the primary serves.
    env.wait_jsonpath("deployment/podinfo", ".spec.replicas", "0")
        .await;
    assert_eq!(
        env.jsonpath(
            "configmap/podinfo-config-env-primary",
            ".data.PODINFO_UI_COLOR"
        )
        .await,
        "blue"
    );
    assert_eq!(
        env.jsonpath("secret/podinfo-secret-vol-primary", ".data.token")
            .await,
        "b25l"
    );

    // Services: apex and primary select the primary pods, canary the target's.
    assert_eq!(
        env.jsonpath("service/podinfo", ".spec.selector.app").await,
        "podinfo-primary"
    );
    assert_eq!(
        env.jsonpath("service/podinfo-primary", ".spec.selector.app")
            .await,
        "podinfo-primary"
    );
    assert_eq!(
        env.jsonpath("service/podinfo-canary", ".spec.selector.app")
            .await,
        "podinfo"
    );
    assert_eq!(
        env.jsonpath("service/podinfo", ".metadata.annotations.test")
            .await,
        "apex"
    );
    // Flux and Helm are told to leave the generated Services alone, as Flagger does.
    for svc in [
        "service/podinfo",
        "service/podinfo-primary",
        "service/podinfo-canary",
    ] {
        assert_eq!(
            env.jsonpath(
                svc,
                r".metadata.annotations.kustomize\.toolkit\.fluxcd\.io/reconcile"
            )
            .await,
            "disabled",
            "{svc}"
        );
        assert_eq!(
            env.jsonpath(
                svc,
                r".metadata.annotations.helm\.toolkit\.fluxcd\.io/driftDetection"
            )
            .await,
            "disabled",
            "{svc}"
        );
    }
    // portDiscovery adds the grpc port next to the main one.
    assert_eq!(
        env.jsonpath("service/podinfo", ".spec.ports[*].name").await,
        "http grpc"
    );

    // Status: Initialized with the Promoted condition, revision hashes and tracked configs.
    let c = env.canary("podinfo").await;
    let status = c.status.unwrap();
    let cond = &status.conditions.unwrap()[0];
    assert_eq!(
        (
            cond.r#type.as_str(),
            cond.status.as_str(),
            cond.reason.as_str()
        ),
        ("Promoted", "True", "Initialized")
    );
    assert!(status.last_applied_spec.is_some());
    assert_eq!(status.last_applied_spec, status.last_promoted_spec);
    let tracked = status.tracked_configs.unwrap();
    assert!(tracked.contains_key("configmap/podinfo-config-env"));
    assert!(tracked.contains_key("secret/podinfo-secret-vol"));
    env.wait_event("podinfo", "Initialization done! podinfo.test")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotes_a_new_image_after_metric_analysis() {
    let env = Env::start(Options {
        prometheus: true,
        ..Default::default()
    })
    .await;
    init(&env, &bg_analysis(3, 2, METRICS), "").await;
    set_image(&env, "6.0.1").await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;

    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.1"));
    env.wait_jsonpath("deployment/podinfo", ".spec.replicas", "0")
        .await;
    let phases = env.phases.of("podinfo");
    for p in [
        CanaryPhase::Progressing,
        CanaryPhase::Promoting,
        CanaryPhase::Finalising,
        CanaryPhase::Succeeded,
    ] {
        assert!(phases.contains(&p), "{p:?} missing from {phases:?}");
    }
    let events = env.events("podinfo").await;
    for text in [
        "New revision detected! Scaling up podinfo.test",
        "Starting canary analysis for podinfo.test",
        "Advance podinfo.test canary iteration 3/3",
        "Copying podinfo.test template spec to podinfo-primary.test",
        "Promotion completed! Scaling down podinfo.test",
    ] {
        assert!(
            events.iter().any(|e| e == text),
            "{text:?} not in {events:#?}"
        );
    }
    assert!(
        !events.iter().any(|e| e.starts_with("Halt")),
        "a healthy canary failed a check: {events:#?}"
    );
    assert_eq!(env.event_count("podinfo", "New revision detected").await, 1);
    // The analysis read real series from Prometheus.
    let prom = env.prometheus.as_ref().unwrap();
    let requests = prom
        .query(r#"sum(http_request_duration_seconds_count{kubernetes_namespace="test"})"#)
        .await
        .unwrap();
    assert!(requests > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotes_after_configmap_and_secret_changes() {
    let env = Env::start(Options::default()).await;
    init(&env, &bg_analysis(2, 2, ""), "").await;

    env.kubectl(&[
        "-n",
        NS,
        "patch",
        "configmap/podinfo-config-env",
        "--type=merge",
        "-p",
        r#"{"data":{"PODINFO_UI_COLOR":"green"}}"#,
    ])
    .await;
    env.wait_event("podinfo", "New revision detected! Scaling up")
        .await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    assert_eq!(
        env.jsonpath(
            "configmap/podinfo-config-env-primary",
            ".data.PODINFO_UI_COLOR"
        )
        .await,
        "green"
    );

    env.kubectl(&[
        "-n",
        NS,
        "patch",
        "secret/podinfo-secret-vol",
        "--type=merge",
        "-p",
        r#"{"data":{"token":"dHdv"}}"#,
    ])
    .await;
    env.wait_phase("podinfo", CanaryPhase::Progressing).await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    assert_eq!(
        env.jsonpath("secret/podinfo-secret-vol-primary", ".data.token")
            .await,
        "dHdv"
    );
    assert_eq!(env.event_count("podinfo", "Promotion completed!").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolls_back_when_the_canary_fails_its_metrics() {
    let env = Env::start(Options {
        prometheus: true,
        ..Default::default()
    })
    .await;
    init(&env, &bg_analysis(10, 2, METRICS), "").await;
    // v2 answers half of its requests with 500.
    set_faulty_image(&env, "6.0.2").await;
    let failed = env.wait_phase("podinfo", CanaryPhase::Failed).await;
    let status = failed.status.unwrap();
    assert_eq!(
        status.failed_checks,
        Some(0),
        "Flagger resets failedChecks on Failed"
    );
    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.0"));
    env.wait_jsonpath("deployment/podinfo", ".spec.replicas", "0")
        .await;
    let events = env.events("podinfo").await;
    assert!(
        events.iter().any(
            |e| e.starts_with("Halt podinfo.test advancement success rate ")
                && e.ends_with("% < 99%")
        ),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e == "Rolling back podinfo.test failed checks threshold reached 2"),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e == "Canary failed! Scaling down podinfo.test"),
        "{events:#?}"
    );
    let cond = &status.conditions.unwrap()[0];
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "Failed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolls_back_when_the_pre_rollout_webhook_fails() {
    let env = Env::start(Options::default()).await;
    let hooks = format!(
        "    webhooks:\n    - name: acceptance\n      type: pre-rollout\n      url: {}\n      timeout: 5s\n      metadata: {{type: bash, cmd: \"curl -s http://podinfo-canary.test/\"}}\n",
        env.hooks.url("acceptance")
    );
    init(&env, &bg_analysis(3, 2, &hooks), "").await;
    env.hooks.set("acceptance", 500);
    set_image(&env, "6.0.1").await;
    env.wait_phase("podinfo", CanaryPhase::Failed).await;
    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.0"));
    let calls = env.hooks.calls("acceptance");
    assert!(
        calls.len() >= 2,
        "one call per tick until the threshold: {calls:?}"
    );
    assert_eq!(calls[0]["name"], "podinfo");
    assert_eq!(calls[0]["namespace"], "test");
    assert_eq!(calls[0]["phase"], "Progressing");
    assert_eq!(calls[0]["metadata"]["type"], "bash");
    let events = env.events("podinfo").await;
    assert!(
        events
            .iter()
            .any(|e| e
                .starts_with("Halt podinfo.test advancement pre-rollout check acceptance failed")),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_hold_the_rollout_and_the_promotion_until_opened() {
    let env = Env::start(Options::default()).await;
    let hooks = format!(
        "    webhooks:\n    - name: gate-rollout\n      type: confirm-rollout\n      url: {}\n    - name: gate-promotion\n      type: confirm-promotion\n      url: {}\n",
        env.hooks.url("rollout"),
        env.hooks.url("promotion")
    );
    init(&env, &bg_analysis(2, 2, &hooks), "").await;
    env.hooks.set("rollout", 403);
    env.hooks.set("promotion", 403);
    set_image(&env, "6.0.1").await;

    env.wait_phase("podinfo", CanaryPhase::Waiting).await;
    env.wait_event(
        "podinfo",
        "Halt podinfo.test advancement waiting for approval gate-rollout",
    )
    .await;
    // Held: several ticks pass without the canary being scaled up.
    wait_calls(&env, "rollout", 3).await;
    assert_eq!(
        env.canary("podinfo").await.status.unwrap().phase,
        CanaryPhase::Waiting
    );
    assert_eq!(
        env.jsonpath("deployment/podinfo", ".spec.replicas").await,
        "0"
    );

    env.hooks.set("rollout", 200);
    env.wait_event("podinfo", "Confirm-rollout check gate-rollout passed")
        .await;
    let waiting = env
        .wait_phase("podinfo", CanaryPhase::WaitingPromotion)
        .await;
    assert_eq!(waiting.status.unwrap().canary_weight, Some(0));
    let before = env.hooks.calls("promotion").len();
    wait_calls(&env, "promotion", before + 3).await;
    assert_eq!(
        env.canary("podinfo").await.status.unwrap().phase,
        CanaryPhase::WaitingPromotion
    );
    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.0"));

    env.hooks.set("promotion", 200);
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.1"));
}

async fn wait_calls(env: &Env, hook: &str, n: usize) {
    let last = std::sync::Mutex::new(String::new());
    support::wait_for(&format!("{n} calls of hook {hook}"), &last, || async {
        (env.hooks.calls(hook).len() >= n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_analysis_promotes_at_once() {
    let env = Env::start(Options::default()).await;
    init(&env, &bg_analysis(10, 2, ""), "skipAnalysis: true").await;
    set_image(&env, "6.0.1").await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.1"));
    let events = env.events("podinfo").await;
    assert!(
        events
            .iter()
            .any(|e| e == "Promotion completed! Canary analysis was skipped for podinfo.test"),
        "{events:#?}"
    );
    assert!(
        !events.iter().any(|e| e.starts_with("Advance")),
        "no iteration runs when the analysis is skipped: {events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_holds_the_canary_and_resume_continues() {
    let env = Env::start(Options::default()).await;
    init(&env, &bg_analysis(2, 2, ""), "").await;
    env.kubectl(&[
        "-n",
        NS,
        "patch",
        "canary/podinfo",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ])
    .await;
    set_image(&env, "6.0.1").await;
    // Every suspended tick says so; nothing moves.
    let last = std::sync::Mutex::new(String::new());
    support::wait_for("three suspended ticks", &last, || async {
        (env.event_count("podinfo", "skipping canary run as object is suspended")
            .await
            >= 3)
            .then_some(())
    })
    .await;
    assert_eq!(
        env.canary("podinfo").await.status.unwrap().phase,
        CanaryPhase::Initialized
    );
    assert_eq!(
        env.jsonpath("deployment/podinfo", ".spec.replicas").await,
        "0"
    );

    env.kubectl(&[
        "-n",
        NS,
        "patch",
        "canary/podinfo",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ])
    .await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.1"));
}

const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: podinfo-ds, namespace: test, labels: {app: podinfo-ds}}
spec:
  selector: {matchLabels: {app: podinfo-ds}}
  template:
    metadata: {labels: {app: podinfo-ds}}
    spec:
      containers:
      - name: podinfod
        image: ghcr.io/stefanprodan/podinfo:6.0.0
        ports: [{name: http, containerPort: 9898}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_target_is_promoted_and_restored_on_deletion() {
    let env = Env::start(Options {
        nodes: 2,
        ..Default::default()
    })
    .await;
    env.apply(DAEMONSET).await;
    env.apply(&canary(
        "DaemonSet",
        "podinfo-ds",
        "revertOnDeletion: true",
        &bg_analysis(2, 2, ""),
    ))
    .await;
    env.wait_phase("podinfo-ds", CanaryPhase::Initialized).await;
    env.wait_jsonpath("daemonset/podinfo-ds-primary", ".status.numberReady", "2")
        .await;
    // The target is parked on no node.
    env.wait_jsonpath("daemonset/podinfo-ds", ".status.numberReady", "0")
        .await;
    assert_eq!(
        env.jsonpath("canary/podinfo-ds", ".metadata.finalizers[0]")
            .await,
        "finalizer.flagger.app"
    );

    env.kubectl(&[
        "-n",
        NS,
        "set",
        "image",
        "daemonset/podinfo-ds",
        &format!("podinfod={PODINFO}:6.0.1"),
    ])
    .await;
    env.wait_phase("podinfo-ds", CanaryPhase::Succeeded).await;
    assert_eq!(
        env.jsonpath(
            "daemonset/podinfo-ds-primary",
            ".spec.template.spec.containers[0].image"
        )
        .await,
        format!("{PODINFO}:6.0.1")
    );
    env.wait_jsonpath("daemonset/podinfo-ds", ".status.numberReady", "0")
        .await;

    // revertOnDeletion: the target runs on every node again before the canary goes.
    env.kubectl(&["-n", NS, "delete", "canary/podinfo-ds", "--wait=false"])
        .await;
    let last = std::sync::Mutex::new(String::new());
    support::wait_for("the canary deleted", &last, || async {
        let out = env
            .kubectl(&["-n", NS, "get", "canaries", "-o", "name"])
            .await;
        out.trim().is_empty().then_some(())
    })
    .await;
    env.wait_jsonpath("daemonset/podinfo-ds", ".status.numberReady", "2")
        .await;
    assert_eq!(
        env.jsonpath("service/podinfo-ds", ".spec.selector.app")
            .await,
        "podinfo-ds"
    );
}

const HPA: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: podinfo, namespace: test}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  minReplicas: 2
  maxReplicas: 4
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 99}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_target_gets_a_primary_autoscaler() {
    let env = Env::start(Options::default()).await;
    env.apply(HPA).await;
    init(
        &env,
        &bg_analysis(2, 2, ""),
        "autoscalerRef: {apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler, name: podinfo}",
    )
    .await;
    assert_eq!(
        env.jsonpath("hpa/podinfo-primary", ".spec.scaleTargetRef.name")
            .await,
        "podinfo-primary"
    );
    assert_eq!(
        env.jsonpath(
            "hpa/podinfo-primary",
            ".spec.metrics[0].resource.target.averageUtilization"
        )
        .await,
        "99"
    );
    // A change of the user's HPA reaches the primary copy.
    env.kubectl(&[
        "-n",
        NS,
        "patch",
        "hpa/podinfo",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/metrics/0/resource/target/averageUtilization","value":50}]"#,
    ])
    .await;
    set_image(&env, "6.0.1").await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    env.wait_jsonpath(
        "hpa/podinfo-primary",
        ".spec.metrics[0].resource.target.averageUtilization",
        "50",
    )
    .await;
    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_on_deletion_restores_the_deployment() {
    let env = Env::start(Options::default()).await;
    init(&env, &bg_analysis(2, 2, ""), "revertOnDeletion: true").await;
    env.wait_jsonpath("deployment/podinfo", ".spec.replicas", "0")
        .await;
    env.kubectl(&["-n", NS, "delete", "canary/podinfo", "--wait=false"])
        .await;
    env.wait_jsonpath("deployment/podinfo", ".status.readyReplicas", "2")
        .await;
    let last = std::sync::Mutex::new(String::new());
    support::wait_for("the canary deleted", &last, || async {
        let out = env
            .kubectl(&["-n", NS, "get", "canaries", "-o", "name"])
            .await;
        out.trim().is_empty().then_some(())
    })
    .await;
    // The apex Service selects the target's pods again; generated objects are collected.
    assert_eq!(
        env.jsonpath("service/podinfo", ".spec.selector.app").await,
        "podinfo"
    );
    env.wait_gone("deployment/podinfo-primary").await;
    env.wait_gone("service/podinfo-primary").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_resumes_the_analysis() {
    let mut env = Env::start(Options::default()).await;
    init(&env, &bg_analysis(8, 2, ""), "").await;
    set_image(&env, "6.0.1").await;
    let last = std::sync::Mutex::new(String::new());
    support::wait_for("iteration 3", &last, || async {
        let s = env.canary("podinfo").await.status.unwrap_or_default();
        (s.phase == CanaryPhase::Progressing && s.iterations.unwrap_or(0) >= 3).then_some(())
    })
    .await;
    env.stop_controller().await;
    let held = env.canary("podinfo").await.status.unwrap();
    env.start_controller().await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.1"));
    // The analysis went on from where it was, not from the start.
    assert_eq!(
        env.event_count("podinfo", "Starting canary analysis").await,
        1
    );
    assert_eq!(env.event_count("podinfo", "New revision detected").await, 1);
    for i in held.iterations.unwrap_or(0) + 1..=8 {
        assert!(
            env.event_count("podinfo", &format!("canary iteration {i}/8"))
                .await
                >= 1,
            "iteration {i} after the restart"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_left_by_flagger_is_adopted_without_an_analysis() {
    let mut env = Env::start(Options::default()).await;
    init(&env, &bg_analysis(3, 2, ""), "").await;
    env.wait_jsonpath("deployment/podinfo", ".spec.replicas", "0")
        .await;
    // What Flagger leaves behind: its own (go-spew/FNV) revision hashes on a promoted canary.
    env.stop_controller().await;
    env.kubectl(&[
        "-n",
        NS,
        "patch",
        "canary/podinfo",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Succeeded","lastAppliedSpec":"5d8f7b9c4","lastPromotedSpec":"5d8f7b9c4"}}"#,
    ])
    .await;
    env.start_controller().await;
    env.wait_event(
        "podinfo",
        "Adopted podinfo.test from a previous controller: revision hashes re-baselined to the current target",
    )
    .await;
    let c = env.canary("podinfo").await;
    let status = c.status.unwrap();
    assert_eq!(status.phase, CanaryPhase::Succeeded);
    let applied = status.last_applied_spec.unwrap();
    assert!(applied.starts_with("rs1-"), "{applied}");
    assert_eq!(status.last_promoted_spec.as_deref(), Some(applied.as_str()));
    assert_eq!(env.event_count("podinfo", "New revision detected").await, 0);

    // After adoption a real change is still detected and analysed.
    set_image(&env, "6.0.1").await;
    env.wait_event("podinfo", "Promotion completed! Scaling down podinfo.test")
        .await;
    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.1"));
    assert_eq!(env.event_count("podinfo", "New revision detected").await, 1);
}

/// A MetricTemplate (prometheus provider, the test Prometheus) giving the canary pods' error
/// percentage; the status regex comes from the canary's `templateVariables`.
fn error_rate_template(prometheus: &str) -> String {
    format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {{name: error-rate, namespace: {NS}}}
spec:
  provider:
    type: prometheus
    address: {prometheus}
  query: |
    100 - sum(
        rate(http_request_duration_seconds_count{{
          kubernetes_namespace="{{{{ namespace }}}}",
          kubernetes_pod_name=~"{{{{ target }}}}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",
          status!~"{{{{ variables.errors }}}}"
        }}[{{{{ interval }}}}])
    )
    /
    sum(
        rate(http_request_duration_seconds_count{{
          kubernetes_namespace="{{{{ namespace }}}}",
          kubernetes_pod_name=~"{{{{ target }}}}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"
        }}[{{{{ interval }}}}])
    ) * 100
"#
    )
}

const TEMPLATE_METRICS: &str = r#"    metrics:
    - name: error-rate
      templateRef: {name: error-rate}
      templateVariables: {errors: "5.*"}
      thresholdRange: {max: 1}
      interval: 10s
    - name: requests
      query: sum(rate(http_request_duration_seconds_count{kubernetes_namespace="{{ namespace }}",kubernetes_pod_name=~"{{ target }}-.*"}[{{ interval }}]))
      thresholdRange: {min: 1}
      interval: 10s"#;

async fn env_with_template() -> Env {
    let env = Env::start(Options {
        prometheus: true,
        ..Default::default()
    })
    .await;
    let prometheus = env.prometheus.as_ref().unwrap().url();
    env.apply(&error_rate_template(&prometheus)).await;
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotes_with_a_metric_template_and_an_inline_query() {
    let env = env_with_template().await;
    init(&env, &bg_analysis(3, 2, TEMPLATE_METRICS), "").await;
    set_image(&env, "6.0.1").await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;

    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.1"));
    let events = env.events("podinfo").await;
    for text in [
        "all the metrics providers are available!",
        "Advance podinfo.test canary iteration 3/3",
        "Promotion completed! Scaling down podinfo.test",
    ] {
        assert!(
            events.iter().any(|e| e == text),
            "{text:?} not in {events:#?}"
        );
    }
    assert!(
        !events
            .iter()
            .any(|e| e.starts_with("Halt podinfo.test advancement")),
        "the healthy canary failed a threshold: {events:#?}"
    );
    let valid = env
        .jsonpath(
            "canary/podinfo",
            r#".status.conditions[?(@.type=="Valid")].status"#,
        )
        .await;
    assert_eq!(valid, "", "no Valid=False condition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolls_back_when_a_metric_template_exceeds_its_threshold_range() {
    let env = env_with_template().await;
    init(&env, &bg_analysis(10, 2, TEMPLATE_METRICS), "").await;
    // v2 answers half of its requests with 500: the template's error percentage is about 50.
    env.kubectl(&[
        "-n",
        NS,
        "patch",
        "deployment/podinfo",
        "--type=merge",
        "-p",
        &format!(
            r#"{{"spec":{{"template":{{"metadata":{{"annotations":{{"{ERROR_RATIO}":"0.5"}}}},"spec":{{"containers":[{{"name":"podinfod","image":"{PODINFO}:6.0.2"}}]}}}}}}}}"#
        ),
    ])
    .await;
    env.wait_phase("podinfo", CanaryPhase::Failed).await;
    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.0"));
    let events = env.events("podinfo").await;
    assert!(
        events.iter().any(|e| {
            e.strip_prefix("Halt podinfo.test advancement error-rate ")
                .and_then(|rest| rest.strip_suffix(" > 1"))
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| (30.0..=70.0).contains(&v))
        }),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e == "Rolling back podinfo.test failed checks threshold reached 2"),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_template_whose_provider_cannot_be_built_is_named_at_initialization() {
    let env = Env::start(Options::default()).await;
    // Every provider type Flagger has is accepted; one without its Secret cannot be built, and
    // the availability check says why in Flagger's words (initialization goes on).
    env.apply(&format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {{name: error-rate, namespace: {NS}}}
spec:
  provider: {{type: datadog, address: "https://api.datadoghq.com"}}
  query: avg:requests{{*}}
"#
    ))
    .await;
    env.apply(&workload("6.0.0", "")).await;
    let metrics = "    metrics:\n    - name: error-rate\n      templateRef: {name: error-rate}\n      thresholdRange: {max: 1}\n      interval: 1m";
    env.apply(&canary(
        "Deployment",
        "podinfo",
        "",
        &bg_analysis(3, 2, metrics),
    ))
    .await;
    env.wait_event(
        "podinfo",
        "Error checking metric providers: Metric template error-rate.test provider datadog error: datadog credentials does not contain datadog_api_key",
    )
    .await;
    env.wait_phase("podinfo", CanaryPhase::Initialized).await;
    env.wait_jsonpath(
        "canary/podinfo",
        r#".status.conditions[?(@.type=="Valid")].status"#,
        "",
    )
    .await;
}

/// A minimal KEDA ScaledObject CRD (the controller needs only the resource to exist).
const KEDA_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: scaledobjects.keda.sh}
spec:
  group: keda.sh
  scope: Namespaced
  names: {kind: ScaledObject, listKind: ScaledObjectList, plural: scaledobjects, singular: scaledobject, shortNames: [so]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

const SCALED_OBJECT: &str = r#"
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: podinfo-so
  namespace: test
  labels: {app: podinfo, kustomize.toolkit.fluxcd.io/name: apps}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  pollingInterval: 10
  cooldownPeriod: 20
  minReplicaCount: 2
  maxReplicaCount: 4
  advanced: {horizontalPodAutoscalerConfig: {name: podinfo-hpa}}
  triggers:
  - type: prometheus
    name: rps
    metadata:
      serverAddress: http://prometheus:9090
      threshold: "100"
      query: sum(rate(http_requests_total{deployment="podinfo-canary"}[1m])) + sum(rate(http_requests_total{app="podinfo"}[1m]))
"#;

const PAUSED: &str = r".metadata.annotations.autoscaling\.keda\.sh/paused-replicas";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keda_scaled_object_gets_a_primary_copy_and_is_paused_with_the_target() {
    let env = Env::start(Options::default()).await;
    env.apply(KEDA_CRD).await;
    env.kubectl(&[
        "wait",
        "--for=condition=established",
        "crd/scaledobjects.keda.sh",
    ])
    .await;
    env.apply(SCALED_OBJECT).await;
    let gate = format!(
        "    webhooks:\n    - name: gate-promotion\n      type: confirm-promotion\n      url: {}\n",
        env.hooks.url("promotion")
    );
    init(
        &env,
        &bg_analysis(2, 2, &gate),
        "autoscalerRef: {apiVersion: keda.sh/v1alpha1, kind: ScaledObject, name: podinfo-so}\n  revertOnDeletion: true",
    )
    .await;

    // The primary copy scales the primary Deployment, with the queries rewritten for it.
    let so = "scaledobject/podinfo-so-primary";
    assert_eq!(
        env.jsonpath(so, ".spec.scaleTargetRef.name").await,
        "podinfo-primary"
    );
    assert_eq!(
        env.jsonpath(so, ".spec.triggers[0].metadata.query").await,
        r#"sum(rate(http_requests_total{deployment="podinfo-primary"}[1m])) + sum(rate(http_requests_total{app="podinfo-primary"}[1m]))"#
    );
    assert_eq!(
        env.jsonpath(so, ".spec.advanced.horizontalPodAutoscalerConfig.name")
            .await,
        "podinfo-hpa-primary"
    );
    assert_eq!(env.jsonpath(so, ".spec.minReplicaCount").await, "2");
    assert_eq!(
        env.jsonpath(so, ".metadata.labels").await,
        r#"{"app":"podinfo"}"#
    );
    assert_eq!(
        env.jsonpath(so, ".metadata.ownerReferences[0].kind").await,
        "Canary"
    );
    // The target is at zero and its ScaledObject paused there.
    env.wait_jsonpath("scaledobject/podinfo-so", PAUSED, "0")
        .await;
    assert_eq!(
        env.jsonpath("deployment/podinfo", ".spec.replicas").await,
        "0"
    );

    // A new revision resumes the target's ScaledObject and scales the target to its minimum.
    env.hooks.set("promotion", 403);
    env.kubectl(&[
        "-n",
        NS,
        "patch",
        "scaledobject/podinfo-so",
        "--type=merge",
        "-p",
        r#"{"spec":{"maxReplicaCount":6}}"#,
    ])
    .await;
    set_image(&env, "6.0.1").await;
    env.wait_phase("podinfo", CanaryPhase::WaitingPromotion)
        .await;
    assert_eq!(env.jsonpath("scaledobject/podinfo-so", PAUSED).await, "");
    assert_eq!(
        env.jsonpath("deployment/podinfo", ".spec.replicas").await,
        "2"
    );

    // Promotion updates the primary copy; the target is paused at zero again.
    env.hooks.set("promotion", 200);
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    env.wait_jsonpath(so, ".spec.maxReplicaCount", "6").await;
    assert_eq!(
        env.jsonpath(so, ".spec.scaleTargetRef.name").await,
        "podinfo-primary"
    );
    env.wait_jsonpath("scaledobject/podinfo-so", PAUSED, "0")
        .await;
    env.wait_jsonpath("deployment/podinfo", ".spec.replicas", "0")
        .await;
    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.1"));

    // Deleting the canary (revertOnDeletion) hands the target back to its ScaledObject.
    env.kubectl(&["-n", NS, "delete", "canary/podinfo", "--wait=false"])
        .await;
    env.wait_gone("canary/podinfo").await;
    assert_eq!(env.jsonpath("scaledobject/podinfo-so", PAUSED).await, "");
    assert_ne!(
        env.jsonpath("deployment/podinfo", ".spec.replicas").await,
        "0"
    );
    env.wait_gone("scaledobject/podinfo-so-primary").await;
}

/// Waits until `hook` has received at least `n` alerts and returns them.
async fn wait_alerts(env: &Env, hook: &str, n: usize) -> Vec<serde_json::Value> {
    let last = std::sync::Mutex::new(String::new());
    support::wait_for(&format!("{n} alerts at {hook}"), &last, || async {
        let calls = env.hooks.calls(hook);
        (calls.len() >= n).then_some(calls)
    })
    .await
}

/// The attachment texts of the Slack messages a hook received.
fn slack_texts(calls: &[serde_json::Value]) -> Vec<String> {
    calls
        .iter()
        .map(|c| {
            c["attachments"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_slack_and_teams_providers_by_severity() {
    // The global notifier is configured too: a canary with alert routes bypasses it.
    let env = Env::start(Options {
        global_notifier: true,
        ..Default::default()
    })
    .await;
    env.apply(&format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {{name: on-call, namespace: {NS}}}
spec:
  type: slack
  channel: on-call
  address: {slack}
---
apiVersion: v1
kind: Secret
metadata: {{name: teams-url, namespace: {NS}}}
data: {{address: "{teams}", token: bm90LXNlbnQ=}}
---
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {{name: teams, namespace: {NS}}}
spec:
  type: msteams
  secretRef: {{name: teams-url}}
"#,
        slack = env.hooks.url("slack"),
        // localkube keeps `stringData` as written (no folding into `data`): base64 by hand.
        teams = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            env.hooks.url("teams")
        ),
    ))
    .await;
    let analysis = bg_analysis(
        2,
        1,
        &format!(
            "    webhooks:\n    - name: check\n      type: pre-rollout\n      url: {}\n    alerts:\n    - name: slack\n      severity: info\n      providerRef: {{name: on-call}}\n    - name: teams\n      severity: error\n      providerRef: {{name: teams, namespace: {NS}}}\n",
            env.hooks.url("check")
        ),
    );
    init(&env, &analysis, "").await;

    // Initialization: an info alert with the canary's metadata, to Slack only.
    let calls = wait_alerts(&env, "slack", 1).await;
    let first = &calls[0];
    assert_eq!(first["channel"], "on-call");
    assert_eq!(first["username"], "flagger");
    assert_eq!(first["icon_emoji"], ":rocket:");
    let attachment = &first["attachments"][0];
    assert_eq!(
        attachment["text"],
        "New Deployment detected, initialization completed."
    );
    assert_eq!(attachment["color"], "good");
    assert_eq!(attachment["author_name"], "podinfo.test");
    assert_eq!(
        attachment["fields"],
        serde_json::json!([
            {"title": "Cluster", "value": "e2e", "short": false},
            {"title": "Target", "value": "Deployment/podinfo.test", "short": false},
            {"title": "Failed checks threshold", "value": "1", "short": false},
            {"title": "Progress deadline", "value": "60s", "short": false},
            {"title": "Traffic routing", "value": "Blue/Green", "short": false},
        ])
    );

    // Promotion: the new revision and the success, both info.
    set_image(&env, "6.0.1").await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    let calls = wait_alerts(&env, "slack", 3).await;
    let texts = slack_texts(&calls);
    assert!(
        texts.contains(&"New revision detected, progressing canary analysis.".to_string()),
        "{texts:#?}"
    );
    assert!(
        texts.contains(&"Canary analysis completed successfully, promotion finished.".to_string()),
        "{texts:#?}"
    );
    assert!(
        env.hooks.calls("teams").is_empty(),
        "info alerts skip the error route"
    );

    // Rollback: an error alert, to both routes.
    env.hooks.set("check", 500);
    set_image(&env, "6.0.2").await;
    env.wait_phase("podinfo", CanaryPhase::Failed).await;
    let teams = wait_alerts(&env, "teams", 1).await;
    assert_eq!(teams.len(), 1, "{teams:#?}");
    assert_eq!(teams[0]["@type"], "MessageCard");
    assert_eq!(teams[0]["themeColor"], "FF0000");
    assert_eq!(teams[0]["summary"], "podinfo.test");
    assert_eq!(
        teams[0]["sections"][0]["activityTitle"],
        "Failed checks threshold reached 1"
    );
    let calls = wait_alerts(&env, "slack", 5).await;
    let rollback = calls
        .iter()
        .find(|c| c["attachments"][0]["text"] == "Failed checks threshold reached 1")
        .unwrap_or_else(|| panic!("rollback alert in {:#?}", slack_texts(&calls)));
    assert_eq!(rollback["attachments"][0]["color"], "danger");
    assert!(
        env.hooks.calls("global").is_empty(),
        "routes bypass the global notifier"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_slack_notifier_gets_every_alert_of_canaries_without_routes() {
    let env = Env::start(Options {
        global_notifier: true,
        ..Default::default()
    })
    .await;
    init(&env, &bg_analysis(1, 1, ""), "").await;
    set_image(&env, "6.0.1").await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    let calls = wait_alerts(&env, "global", 3).await;
    let texts = slack_texts(&calls);
    assert_eq!(
        texts,
        vec![
            "New Deployment detected, initialization completed.",
            "New revision detected, progressing canary analysis.",
            "Canary analysis completed successfully, promotion finished.",
        ],
    );
    for call in &calls {
        assert_eq!(call["channel"], "general");
        // -cluster-name puts a Cluster field first on every alert.
        assert_eq!(
            call["attachments"][0]["fields"][0],
            serde_json::json!({"title": "Cluster", "value": "e2e", "short": false})
        );
    }
}

/// Rolls the target out to `tag` with half of its requests failing.
async fn set_faulty_image(env: &Env, tag: &str) {
    env.kubectl(&[
        "-n",
        NS,
        "patch",
        "deployment/podinfo",
        "--type=merge",
        "-p",
        &format!(
            r#"{{"spec":{{"template":{{"metadata":{{"annotations":{{"{ERROR_RATIO}":"0.5"}}}},"spec":{{"containers":[{{"name":"podinfod","image":"{PODINFO}:{tag}"}}]}}}}}}}}"#
        ),
    ])
    .await;
}

/// The value of the sample `series` (name and labels as written) in a `/metrics` text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Rust debug text: what no event, condition or log line meant for users may hold.
fn debug_text_in(s: &str) -> Option<&'static str> {
    [
        "Some(",
        "None,",
        "{ ",
        "Status {",
        "ApiError",
        "ErrorResponse",
    ]
    .into_iter()
    .find(|p| s.contains(p))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_shows_flaggers_series_for_what_happened() {
    let env = Env::start(Options {
        prometheus: true,
        scrape_controller: true,
        controller_args: &["-control-loop-interval=1s"],
        ..Default::default()
    })
    .await;
    init(&env, &bg_analysis(2, 1, METRICS), "").await;
    set_image(&env, "6.0.1").await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    set_faulty_image(&env, "6.0.2").await;
    env.wait_phase("podinfo", CanaryPhase::Failed).await;

    let url = format!("{}/metrics", env.controller_url());
    let last = std::sync::Mutex::new(String::new());
    // The metrics are set once the status is written (as Flagger's); `flagger_canary_total` is
    // counted every control-loop interval.
    let text = support::wait_for("the failed run in the metrics", &last, || async {
        let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
        if let Ok(mut l) = last.lock() {
            l.clone_from(&text);
        }
        let counted = sample(&text, r#"flagger_canary_total{namespace="test"}"#).is_some();
        let failed = sample(
            &text,
            r#"flagger_canary_status{name="podinfo",namespace="test"}"#,
        );
        (counted && failed == Some(2.0)).then_some(text)
    })
    .await;
    let version = env!("CARGO_PKG_VERSION");
    let canary = r#"name="podinfo",namespace="test""#;
    let run = |outcome: &str| {
        format!(
            r#"flagger_canary_{outcome}_total{{{canary},deployment_strategy="blue-green",analysis_status="completed"}}"#
        )
    };
    for (series, want) in [
        (
            format!(r#"flagger_info{{version="{version}",mesh_provider="kubernetes"}}"#),
            1.0,
        ),
        (r#"flagger_canary_total{namespace="test"}"#.to_string(), 1.0),
        // 2: the last run failed.
        (format!("flagger_canary_status{{{canary}}}"), 2.0),
        // The rollback routed everything to the primary.
        (
            r#"flagger_canary_weight{workload="podinfo-primary",namespace="test"}"#.to_string(),
            100.0,
        ),
        (
            r#"flagger_canary_weight{workload="podinfo",namespace="test"}"#.to_string(),
            0.0,
        ),
        (run("successes"), 1.0),
        (run("failures"), 1.0),
    ] {
        assert_eq!(sample(&text, &series), Some(want), "{series} in:\n{text}");
    }
    // The last success rate seen is the failing canary's; request-duration is in seconds.
    let rate = sample(
        &text,
        &format!(r#"flagger_canary_metric_analysis{{{canary},metric="request-success-rate"}}"#),
    )
    .unwrap_or_else(|| panic!("success rate in:\n{text}"));
    assert!(rate > 0.0 && rate < 99.0, "{rate}");
    let duration = sample(
        &text,
        &format!(r#"flagger_canary_metric_analysis{{{canary},metric="request-duration"}}"#),
    )
    .unwrap_or_else(|| panic!("request duration in:\n{text}"));
    assert!((0.0..1.0).contains(&duration), "{duration} s");
    // One observation per analysed tick: two iterations of the good run, one of the bad.
    let ticks = sample(
        &text,
        &format!("flagger_canary_duration_seconds_count{{{canary}}}"),
    )
    .unwrap_or_else(|| panic!("duration histogram in:\n{text}"));
    assert!(ticks >= 3.0, "{ticks}");
    let buckets = text
        .lines()
        .filter(|l| l.starts_with("flagger_canary_duration_seconds_bucket{") && l.contains(canary))
        .count();
    assert_eq!(
        buckets, 12,
        "Flagger's 11 default buckets and +Inf:\n{text}"
    );
    for process in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        let v = sample(&text, process).unwrap_or_else(|| panic!("{process} in:\n{text}"));
        assert!(v > 0.0, "{process} = {v}");
    }
    // What the runs said is plain text.
    let said = env.events("podinfo").await;
    for e in &said {
        assert_eq!(debug_text_in(e), None, "{e}");
    }
    let status = env
        .kubectl(&["-n", NS, "get", "canary", "podinfo", "-o", "json"])
        .await;
    assert_eq!(debug_text_in(&status), None, "{status}");
    // Prometheus scrapes the same series.
    let prom = env.prometheus.as_ref().unwrap();
    let last = std::sync::Mutex::new(String::new());
    support::wait_for("the controller's series in Prometheus", &last, || async {
        let status = prom.query(r#"flagger_canary_status{name="podinfo"}"#).await;
        let total = prom
            .query(r#"flagger_canary_total{namespace="test"}"#)
            .await;
        if let Ok(mut l) = last.lock() {
            *l = format!("status {status:?}, total {total:?}");
        }
        (status == Some(2.0) && total == Some(1.0)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_webhooks_get_every_event_with_flaggers_payload() {
    let mut env = Env::start(Options::default()).await;
    init(&env, &bg_analysis(1, 1, ""), "").await;
    // Restarted with `-event-webhook` (once its caches have synced: a controller stopped
    // before that does not stop).
    env.stop_controller().await;
    env.start_controller_with(&[format!("-event-webhook={}", env.hooks.url("global"))])
        .await;
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let messages = |hook: &str| -> Vec<String> {
        env.hooks
            .calls(hook)
            .iter()
            .filter_map(|c| c["metadata"]["eventMessage"].as_str().map(String::from))
            .collect()
    };
    let wait_message = |hook: &'static str, text: &'static str| {
        let last = std::sync::Mutex::new(String::new());
        async move {
            support::wait_for(&format!("{text} at {hook}"), &last, || async {
                let seen = messages(hook);
                if let Ok(mut l) = last.lock() {
                    *l = seen.join("\n");
                }
                seen.iter().any(|m| m == text).then_some(())
            })
            .await
        }
    };
    // Without event hooks, the canary's events go to `-event-webhook`.
    set_image(&env, "6.0.1").await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    wait_message("global", "Promotion completed! Scaling down podinfo.test").await;
    let call = env
        .hooks
        .calls("global")
        .into_iter()
        .find(|c| c["metadata"]["eventMessage"] == "New revision detected! Scaling up podinfo.test")
        .unwrap_or_else(|| panic!("{:#?}", messages("global")));
    assert_eq!(call["name"], "podinfo");
    assert_eq!(call["namespace"], NS);
    assert!(call["phase"].is_string(), "{call}");
    assert!(
        call["checksum"].as_str().is_some_and(|c| !c.is_empty()),
        "{call}"
    );
    assert_eq!(call["metadata"]["eventType"], "Normal");
    let at: u128 = call["metadata"]["timestamp"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("milliseconds since the epoch: {call}"));
    assert!(at >= started, "{at} < {started}");
    assert_eq!(
        call["metadata"].as_object().unwrap().len(),
        3,
        "eventMessage, eventType, timestamp: {call}"
    );
    let global_before = messages("global").len();

    // A `type: event` hook takes them instead; its metadata is added, never over Flagger's keys.
    let hooks = format!(
        "    webhooks:\n    - name: events\n      type: event\n      url: {}\n      metadata: {{team: payments, eventType: mine}}\n",
        env.hooks.url("canary-events")
    );
    env.apply(&canary(
        "Deployment",
        "podinfo",
        "",
        &bg_analysis(1, 1, &hooks),
    ))
    .await;
    set_image(&env, "6.0.2").await;
    wait_message(
        "canary-events",
        "Promotion completed! Scaling down podinfo.test",
    )
    .await;
    let events = messages("canary-events");
    for want in [
        "New revision detected! Scaling up podinfo.test",
        "Starting canary analysis for podinfo.test",
        "Promotion completed! Scaling down podinfo.test",
    ] {
        assert!(events.iter().any(|m| m == want), "{want} in {events:#?}");
    }
    for call in env.hooks.calls("canary-events") {
        assert_eq!(call["metadata"]["team"], "payments", "{call}");
        assert_eq!(call["metadata"]["eventType"], "Normal", "{call}");
    }
    let global = messages("global");
    assert_eq!(
        global.len(),
        global_before,
        "a canary with event hooks bypasses -event-webhook: {global:#?}"
    );
}

/// A Service as the API server has it.
async fn service_json(env: &Env, name: &str) -> serde_json::Value {
    serde_json::from_str(
        &env.kubectl(&["-n", NS, "get", "service", name, "-o", "json"])
            .await,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_metadata_and_unmanaged_keys_reach_the_generated_services() {
    let env = Env::start(Options::default()).await;
    env.apply(&workload("6.0.0", "")).await;
    let canary = |canary_note: &str, distribution: &str| {
        format!(
            r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: podinfo, namespace: {NS}}}
spec:
  provider: kubernetes
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  service:
    port: 80
    targetPort: http
    trafficDistribution: {distribution}
    primary:
      labels: {{role: primary}}
      annotations: {{note: primary}}
    canary:
      labels: {{role: canary, team: payments}}
      annotations: {{note: {canary_note}}}
    unmanagedMetadata:
      labels: [team]
      annotations: [external-dns.alpha.kubernetes.io/hostname]
  analysis:
{}
"#,
            bg_analysis(1, 1, "")
        )
    };
    env.apply(&canary("canary", "PreferClose")).await;
    env.wait_phase("podinfo", CanaryPhase::Initialized).await;
    let primary = service_json(&env, "podinfo-primary").await;
    assert_eq!(primary["metadata"]["labels"]["role"], "primary");
    assert_eq!(primary["metadata"]["labels"]["app"], "podinfo-primary");
    assert_eq!(primary["metadata"]["annotations"]["note"], "primary");
    assert_eq!(
        primary["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/reconcile"],
        "disabled"
    );
    assert_eq!(primary["spec"]["trafficDistribution"], "PreferClose");
    let canary_svc = service_json(&env, "podinfo-canary").await;
    assert_eq!(canary_svc["metadata"]["labels"]["role"], "canary");
    assert_eq!(canary_svc["metadata"]["labels"]["app"], "podinfo-canary");
    assert_eq!(
        canary_svc["metadata"]["labels"]["team"], "payments",
        "an unmanaged key gets the spec's value at creation"
    );
    assert_eq!(canary_svc["metadata"]["annotations"]["note"], "canary");
    let apex = service_json(&env, "podinfo").await;
    assert!(apex["metadata"]["labels"]["role"].is_null(), "{apex}");

    // Another controller sets the unmanaged keys; the Canary changes the managed ones and the
    // traffic distribution: the managed ones follow it, the unmanaged ones stay.
    env.kubectl(&[
        "-n",
        NS,
        "label",
        "--overwrite",
        "service/podinfo-canary",
        "team=search",
    ])
    .await;
    env.kubectl(&[
        "-n",
        NS,
        "annotate",
        "service/podinfo-canary",
        "external-dns.alpha.kubernetes.io/hostname=podinfo.example.com",
    ])
    .await;
    env.apply(&canary("canary-v2", "PreferSameZone")).await;
    env.wait_jsonpath(
        "service/podinfo-canary",
        ".metadata.annotations.note",
        "canary-v2",
    )
    .await;
    for svc in ["podinfo", "podinfo-primary", "podinfo-canary"] {
        env.wait_jsonpath(
            &format!("service/{svc}"),
            ".spec.trafficDistribution",
            "PreferSameZone",
        )
        .await;
    }
    let canary_svc = service_json(&env, "podinfo-canary").await;
    assert_eq!(canary_svc["metadata"]["labels"]["team"], "search");
    assert_eq!(
        canary_svc["metadata"]["annotations"]["external-dns.alpha.kubernetes.io/hostname"],
        "podinfo.example.com"
    );
    assert_eq!(canary_svc["metadata"]["labels"]["role"], "canary");
}

/// A Prometheus that records the queries it is asked and answers every one with a value:
/// 1 for `vector(1)`, 0.1 (seconds) for a quantile, 100 otherwise.
async fn recording_prometheus() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::extract::{Query, State};
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;
    async fn query(
        State(seen): State<Seen>,
        Query(params): Query<std::collections::HashMap<String, String>>,
    ) -> String {
        let q = params.get("query").cloned().unwrap_or_default();
        let value = match q.as_str() {
            "vector(1)" => "1",
            q if q.contains("quantile") => "0.1",
            _ => "100",
        };
        if let Ok(mut s) = seen.lock() {
            s.push(q);
        }
        serde_json::json!({"status": "success", "data": {"resultType": "vector",
            "result": [{"metric": {}, "value": [0, value]}]}})
        .to_string()
    }
    let seen: Seen = Default::default();
    let app = axum::Router::new()
        .route("/api/v1/query", axum::routing::get(query))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_queries_get_the_metric_interval_as_written() {
    let env = Env::start(Options::default()).await;
    let (prometheus, seen) = recording_prometheus().await;
    let metrics = "    metrics:\n    - name: request-success-rate\n      thresholdRange: {min: 99}\n      interval: 90s\n    - name: request-duration\n      thresholdRange: {max: 500}";
    init(
        &env,
        &bg_analysis(1, 1, metrics),
        &format!("metricsServer: {prometheus}"),
    )
    .await;
    set_image(&env, "6.0.1").await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    let queries = seen.lock().unwrap().clone();
    let rate = queries
        .iter()
        .find(|q| !q.contains("quantile") && *q != "vector(1)")
        .unwrap_or_else(|| panic!("a success-rate query in {queries:#?}"));
    let duration = queries
        .iter()
        .find(|q| q.contains("quantile"))
        .unwrap_or_else(|| panic!("a duration query in {queries:#?}"));
    assert!(rate.contains("[90s]"), "{rate}");
    assert!(
        duration.contains("[1m]"),
        "the default, as Flagger writes it: {duration}"
    );
    for q in &queries {
        assert!(!q.contains("m0s") && !q.contains("1m30s"), "{q}");
    }
}
