//! Flagger's own end-to-end flows that a real cluster exposed (issue 22, bugs 1-3): deleting a
//! namespace that holds a Canary, taking over a Service that `kubectl apply` created, and
//! deleting then re-creating a `revertOnDeletion` Canary.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use flagger_api::CanaryPhase;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use support::{Env, NS, Options};

const PODINFO: &str = "ghcr.io/stefanprodan/podinfo";

fn deployment(ns: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: podinfo, namespace: {ns}, labels: {{app: podinfo}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: podinfo}}}}
  template:
    metadata: {{labels: {{app: podinfo}}}}
    spec:
      containers:
      - name: podinfod
        image: {PODINFO}:6.0.0
        ports: [{{name: http, containerPort: 9898}}]
"#
    )
}

fn canary(ns: &str, service: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: podinfo, namespace: {ns}}}
spec:
  provider: kubernetes
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  progressDeadlineSeconds: 60
  {extra}
  service: {service}
  analysis: {{interval: 1s, threshold: 2, iterations: 2}}
"#
    )
}

/// The `FieldConflict` condition's reason, empty when there is none.
async fn field_conflict(env: &Env) -> String {
    env.jsonpath(
        "canary/podinfo",
        ".status.conditions[?(@.type==\"FieldConflict\")].reason",
    )
    .await
}

/// Bug 1: with safe deletion (Flagger's default), deleting a namespace that holds an
/// initialized Canary completes: the target goes with the namespace, so there is nothing to
/// hand traffic back to and the finalizer is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_namespace_of_a_canary_completes() {
    let env = Env::start(Options {
        controller_args: &["--safe-deletion=true"],
        ..Default::default()
    })
    .await;
    env.kubectl_in(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n",
    )
    .await;
    env.apply(&deployment("demo")).await;
    env.apply(&canary("demo", "{port: 80, targetPort: http}", ""))
        .await;
    let canaries = Api::<flagger_api::Canary>::namespaced(env.client.clone(), "demo");
    let last = Mutex::new(String::new());
    support::wait_for("the canary in demo initialized", &last, || async {
        let c = canaries.get("podinfo").await.ok()?;
        let phase = c.status.map(|s| s.phase).unwrap_or_default();
        *last.lock().unwrap() = format!("{phase:?}");
        (phase == CanaryPhase::Initialized).then_some(())
    })
    .await;

    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        env.kubectl(&["delete", "namespace", "demo", "--wait=true"]),
    )
    .await;
    let took = started.elapsed();
    let namespaces = Api::<Namespace>::all(env.client.clone());
    let left = namespaces.get_opt("demo").await.unwrap();
    eprintln!(
        "namespace deletion with a Canary inside: {:.2}s, namespace left: {}",
        took.as_secs_f64(),
        left.is_some()
    );
    assert!(
        out.is_ok(),
        "kubectl delete namespace demo --wait=true did not complete within 30s"
    );
    assert!(left.is_none(), "the namespace is gone");
}

/// Bug 2: Flagger's flow over a Service that `kubectl apply` created (port `http: 9898`):
/// after the takeover the Service has the Canary's port only, the takeover is no fight, and the
/// target is at zero after promotion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_over_a_kubectl_service_keeps_only_the_canarys_ports() {
    let env = Env::start(Options::default()).await;
    env.apply(&deployment(NS)).await;
    env.apply(&format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: podinfo-svc, namespace: {NS}}}
spec:
  selector: {{app: podinfo}}
  ports: [{{name: http, port: 9898, targetPort: 9898}}]
"#
    ))
    .await;
    env.apply(&canary(
        NS,
        "{name: podinfo-svc, port: 80, targetPort: 9898}",
        "",
    ))
    .await;
    env.wait_phase("podinfo", CanaryPhase::Initialized).await;
    env.wait_jsonpath(
        "service/podinfo-svc",
        ".spec.selector.app",
        "podinfo-primary",
    )
    .await;
    let ports = env
        .jsonpath(
            "service/podinfo-svc",
            "range .spec.ports[*]}{.name}:{.port}:{.targetPort} {end",
        )
        .await;
    assert_eq!(ports.trim(), "http:80:9898", "the Canary's port only");

    env.kubectl(&[
        "-n",
        NS,
        "set",
        "image",
        "deployment/podinfo",
        &format!("podinfod={PODINFO}:6.0.1"),
    ])
    .await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    env.wait_jsonpath("deployment/podinfo", ".spec.replicas", "0")
        .await;
    assert_eq!(field_conflict(&env).await, "", "no FieldConflict condition");
    let events = env.events("podinfo").await;
    assert!(
        !events.iter().any(|e| e.contains("field manager")),
        "the takeover is no fight: {events:#?}"
    );
}

/// Bug 3: deleting a `revertOnDeletion` Canary hands the apex Service back (under the
/// controller's field manager); creating the Canary again takes it over without a fight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreating_a_revert_on_deletion_canary_is_no_fight() {
    let env = Env::start(Options::default()).await;
    env.apply(&deployment(NS)).await;
    let yaml = canary(NS, "{port: 80, targetPort: http}", "revertOnDeletion: true");
    env.apply(&yaml).await;
    env.wait_phase("podinfo", CanaryPhase::Initialized).await;
    env.wait_jsonpath("deployment/podinfo", ".spec.replicas", "0")
        .await;

    env.kubectl(&["-n", NS, "delete", "canary/podinfo", "--wait=true"])
        .await;
    env.wait_gone("canary/podinfo").await;
    env.wait_jsonpath("service/podinfo", ".spec.selector.app", "podinfo")
        .await;
    let managers = env
        .jsonpath(
            "service/podinfo",
            "range .metadata.managedFields[*]}{.manager} {end",
        )
        .await;
    assert!(
        !managers.split_whitespace().any(|m| m == "unknown"),
        "every write carries a field manager: {managers}"
    );

    env.apply(&yaml).await;
    env.wait_phase("podinfo", CanaryPhase::Initialized).await;
    env.wait_jsonpath("service/podinfo", ".spec.selector.app", "podinfo-primary")
        .await;
    env.wait_jsonpath("deployment/podinfo", ".spec.replicas", "0")
        .await;
    assert_eq!(field_conflict(&env).await, "", "no FieldConflict condition");
    let events = env.events("podinfo").await;
    assert!(
        !events.iter().any(|e| e.contains("field manager")),
        "the controller does not fight its own writes: {events:#?}"
    );
}

/// Bug 1, the other path: a `revertOnDeletion` Canary deleted while its target cannot serve
/// waits for it, saying so in a `Finalized=False` condition (reason `WaitingForTarget`), and
/// gives up after the progress deadline counted from the deletion, with a warning event: the
/// Canary is gone within the bound, never held forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_on_deletion_canary_waits_for_its_target_then_gives_up() {
    let env = Env::start(Options::default()).await;
    env.apply(&deployment(NS)).await;
    let yaml = canary(NS, "{port: 80, targetPort: http}", "revertOnDeletion: true")
        .replace("progressDeadlineSeconds: 60", "progressDeadlineSeconds: 8");
    env.apply(&yaml).await;
    env.wait_phase("podinfo", CanaryPhase::Initialized).await;
    // A revision whose pods never turn ready (localkube's never-ready pod annotation).
    env.kubectl(&[
        "-n",
        NS,
        "patch",
        "deployment/podinfo",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"metadata":{"annotations":{"localkube.dev/never-ready":"true"}}}}}"#,
    ])
    .await;
    env.wait_phase("podinfo", CanaryPhase::Progressing).await;

    let asked = Instant::now();
    env.kubectl(&["-n", NS, "delete", "canary/podinfo", "--wait=false"])
        .await;
    // Waiting, and saying why.
    let condition = |field: &'static str| {
        let env = &env;
        async move {
            env.jsonpath(
                "canary/podinfo",
                &format!(".status.conditions[?(@.type==\"Finalized\")].{field}"),
            )
            .await
        }
    };
    let last = Mutex::new(String::new());
    let message = support::wait_for("the Finalized=False condition", &last, || async {
        (condition("status").await == "False" && condition("reason").await == "WaitingForTarget")
            .then_some(())?;
        Some(condition("message").await)
    })
    .await;
    assert!(
        message.starts_with("waiting for ")
            && message
                .contains("podinfo.test to serve before handing traffic back (gives up after 8s)"),
        "{message}"
    );
    // Given up after the bound: the Canary goes.
    env.wait_gone("canary/podinfo").await;
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_secs(8),
        "released only after the progress deadline: {took:?}"
    );
    let events = env.events("podinfo").await;
    assert!(
        events
            .iter()
            .any(|e| e.contains("gave up handing traffic back to")
                && e.contains("podinfo.test after ")),
        "{events:#?}"
    );
    eprintln!("deletion to release: {took:?}");
}
