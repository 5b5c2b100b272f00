//! Flagger's flows where the cluster itself acts, end to end: the kubelet's probes as the only
//! traffic of an idle DaemonSet (its builtin checks answered from them), an HPA and a KEDA
//! ScaledObject scaling the canary under load and parked with it, and an image that does not
//! exist failing a canary that skips its analysis. localkube, the real kubectl, a real
//! Prometheus scraping only the data plane, and `flagger controller` in-process.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod support;

use std::time::Duration;

use flagger_api::CanaryPhase;
use support::load::Load;
use support::{Env, NS, Options};

const PODINFO: &str = "ghcr.io/stefanprodan/podinfo";

/// Flagger's e2e DaemonSet (`test/workloads/daemonset.yaml`): podinfo with HTTP liveness and
/// readiness probes, 5 s initial delay, the default 10 s period.
const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: podinfo-ds, namespace: test, labels: {app.kubernetes.io/name: podinfo-ds}}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: podinfo-ds}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: podinfo-ds}
      annotations: {prometheus.io/scrape: "true", prometheus.io/port: "9797"}
    spec:
      containers:
      - name: podinfod
        image: stefanprodan/podinfo:3.1.0
        ports: [{name: http, containerPort: 9898}, {name: http-metrics, containerPort: 9797}]
        livenessProbe: {httpGet: {port: 9898, path: /healthz}, initialDelaySeconds: 5, timeoutSeconds: 5}
        readinessProbe: {httpGet: {port: 9898, path: /readyz}, initialDelaySeconds: 5, timeoutSeconds: 5}
        resources: {requests: {cpu: 1m, memory: 16Mi}}
"#;

/// The builtin checks as Flagger's e2e flows set them.
const BUILTIN_METRICS: &str = r#"    metrics:
    - name: request-success-rate
      interval: 1m
      thresholdRange: {min: 99}
    - name: request-duration
      interval: 30s
      thresholdRange: {max: 500}"#;

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
  service: {{port: 80, targetPort: 9898, portDiscovery: true}}
  {extra_spec}
  analysis:
{analysis}
"#
    )
}

/// The podinfo Deployment of Flagger's e2e flows (requests `cpu`).
fn deployment(image: &str, replicas: u32, cpu: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: podinfo, namespace: {NS}, labels: {{app: podinfo}}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: podinfo}}}}
  template:
    metadata: {{labels: {{app: podinfo}}, annotations: {{prometheus.io/scrape: "true"}}}}
    spec:
      containers:
      - name: podinfod
        image: {image}
        ports: [{{name: http, containerPort: 9898}}]
        readinessProbe: {{httpGet: {{port: 9898, path: /readyz}}, periodSeconds: 2}}
        resources: {{requests: {{cpu: {cpu}, memory: 16Mi}}}}
"#
    )
}

async fn set_image(env: &Env, image: &str) {
    env.kubectl(&[
        "-n",
        NS,
        "set",
        "image",
        "deployment/podinfo",
        &format!("podinfod={image}"),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_daemonset_is_promoted_on_its_probe_traffic() {
    let env = Env::start(Options {
        prometheus: true,
        dataplane: true,
        no_exporter: true,
        nodes: 2,
        ..Default::default()
    })
    .await;
    env.apply(DAEMONSET).await;
    let analysis =
        format!("    interval: 5s\n    threshold: 5\n    iterations: 2\n{BUILTIN_METRICS}");
    env.apply(&canary("DaemonSet", "podinfo-ds", "", &analysis))
        .await;
    env.wait_phase("podinfo-ds", CanaryPhase::Initialized).await;
    env.kubectl(&[
        "-n",
        NS,
        "set",
        "image",
        "daemonset/podinfo-ds",
        &format!("podinfod={PODINFO}:6.0.1"),
    ])
    .await;
    // No load generator: the only requests the pods answer are the kubelet's probes.
    env.wait_phase("podinfo-ds", CanaryPhase::Succeeded).await;
    assert_eq!(
        env.jsonpath(
            "daemonset/podinfo-ds-primary",
            ".spec.template.spec.containers[0].image"
        )
        .await,
        format!("{PODINFO}:6.0.1")
    );
    let prom = env.prometheus.as_ref().expect("prometheus");
    let probes = prom
        .query(r#"sum(http_requests_total{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-ds-primary-.*"})"#)
        .await
        .expect("the primary pods' requests are recorded");
    assert!(probes > 0.0, "{probes}");
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

/// Applies a Canary for the podinfo Deployment with `autoscaler` as its `autoscalerRef`, the
/// builtin checks and a confirm-promotion gate (closed), and waits for `Initialized`.
async fn init_gated(env: &Env, autoscaler: &str) {
    let analysis = format!(
        "    interval: 2s\n    threshold: 10\n    iterations: 3\n{BUILTIN_METRICS}\n    webhooks:\n    - name: gate\n      type: confirm-promotion\n      url: {}\n",
        env.hooks.url("promotion")
    );
    env.hooks.set("promotion", 403);
    let spec = format!("autoscalerRef: {autoscaler}");
    env.apply(&canary("Deployment", "podinfo", &spec, &analysis))
        .await;
    env.wait_phase("podinfo", CanaryPhase::Initialized).await;
}

fn fast_hpa(sim: &mut localkube::controllers::SimConfig) {
    sim.hpa.sync_period = Duration::from_secs(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpa_canary_scales_up_under_load_and_is_parked_with_its_target() {
    let env = Env::start(Options {
        prometheus: true,
        dataplane: true,
        no_exporter: true,
        sim: Some(fast_hpa),
        ..Default::default()
    })
    .await;
    env.apply(&deployment(&format!("{PODINFO}:6.0.0"), 2, "100m"))
        .await;
    env.apply(HPA).await;
    init_gated(
        &env,
        "{apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler, name: podinfo}",
    )
    .await;
    // Parked: the target at zero, its HPA idle as on a cluster.
    env.wait_jsonpath("deployment/podinfo", ".spec.replicas", "0")
        .await;
    env.wait_jsonpath(
        "hpa/podinfo",
        r#".status.conditions[?(@.type=="ScalingActive")].reason"#,
        "ScalingDisabled",
    )
    .await;
    // Flagger's flow lowers the target utilization before the new revision.
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

    // About 60 requests a second at 5 ms of CPU each: 300m over the canary's pods, against
    // 50% of 100m each.
    let _load = Load::start(&env, "http://podinfo-canary.test/", 60);
    set_image(&env, &format!("{PODINFO}:6.0.1")).await;
    env.wait_phase("podinfo", CanaryPhase::WaitingPromotion)
        .await;
    env.wait_jsonpath("deployment/podinfo", ".spec.replicas", "4")
        .await;
    env.wait_jsonpath(
        "hpa/podinfo",
        r#".status.conditions[?(@.type=="ScalingActive")].status"#,
        "True",
    )
    .await;
    assert_eq!(
        env.jsonpath("hpa/podinfo", ".status.desiredReplicas").await,
        "4"
    );
    let rescaled = env
        .kubectl(&[
            "-n",
            NS,
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=podinfo,reason=SuccessfulRescale",
            "-o",
            "jsonpath={.items[*].message}",
        ])
        .await;
    assert!(rescaled.contains("above target"), "{rescaled}");

    // Promoted: the primary runs the new revision, the target is parked again and its HPA
    // stands still.
    env.hooks.set("promotion", 200);
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    assert_eq!(
        env.jsonpath(
            "deployment/podinfo-primary",
            ".spec.template.spec.containers[0].image"
        )
        .await,
        format!("{PODINFO}:6.0.1")
    );
    env.wait_jsonpath("deployment/podinfo", ".spec.replicas", "0")
        .await;
    env.wait_jsonpath(
        "hpa/podinfo",
        r#".status.conditions[?(@.type=="ScalingActive")].reason"#,
        "ScalingDisabled",
    )
    .await;
    assert_eq!(
        env.jsonpath("hpa/podinfo-primary", ".spec.scaleTargetRef.name")
            .await,
        "podinfo-primary"
    );
}

/// Flagger's KEDA flow (`test/keda/test-scaledobject.sh`), its trigger querying the real
/// Prometheus through a cluster name.
const SCALED_OBJECT: &str = r#"
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: podinfo-so, namespace: test}
spec:
  scaleTargetRef: {name: podinfo}
  pollingInterval: 1
  cooldownPeriod: 20
  minReplicaCount: 1
  maxReplicaCount: 3
  triggers:
  - type: prometheus
    metricType: AverageValue
    metadata:
      serverAddress: http://flagger-prometheus.flagger-system:9090
      metricName: http_requests_total
      query: sum(rate(http_requests_total{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-z]+-[0-9a-z]+"}[30s]))
      threshold: '5'
"#;

fn keda_on(sim: &mut localkube::controllers::SimConfig) {
    sim.keda = true;
    sim.hpa.sync_period = Duration::from_secs(1);
}

const PAUSED: &str = r".metadata.annotations.autoscaling\.keda\.sh/paused-replicas";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keda_canary_scales_up_under_load_pauses_and_resumes() {
    let env = Env::start(Options {
        prometheus: true,
        dataplane: true,
        no_exporter: true,
        sim: Some(keda_on),
        ..Default::default()
    })
    .await;
    // Prometheus where Flagger's kustomization puts it, as a cluster name.
    let prom = env.prometheus.as_ref().expect("prometheus").addr;
    env.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: flagger-system}}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: flagger-prometheus\n  namespace: flagger-system\n  annotations: {{localkube.dev/upstream: \"{prom}\"}}\nspec:\n  ports: [{{port: 9090}}]\n"
    ))
    .await;
    env.kubectl(&[
        "wait",
        "--for=condition=established",
        "crd/scaledobjects.keda.sh",
    ])
    .await;
    env.apply(&deployment(&format!("{PODINFO}:6.0.0"), 1, "10m"))
        .await;
    env.apply(SCALED_OBJECT).await;
    init_gated(
        &env,
        "{apiVersion: keda.sh/v1alpha1, kind: ScaledObject, name: podinfo-so}",
    )
    .await;
    assert_eq!(
        env.jsonpath(
            "scaledobject/podinfo-so-primary",
            ".spec.triggers[0].metadata.query"
        )
        .await,
        r#"sum(rate(http_requests_total{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-primary-[0-9a-z]+-[0-9a-z]+"}[30s]))"#
    );
    // Paused: KEDA keeps the target at zero and drops its HPA; the primary's runs.
    env.wait_jsonpath("scaledobject/podinfo-so", PAUSED, "0")
        .await;
    env.wait_jsonpath(
        "scaledobject/podinfo-so",
        r#".status.conditions[?(@.type=="Paused")].status"#,
        "True",
    )
    .await;
    env.wait_gone("hpa/keda-hpa-podinfo-so").await;
    env.wait_jsonpath("deployment/podinfo", ".spec.replicas", "0")
        .await;
    env.wait_jsonpath(
        "hpa/keda-hpa-podinfo-so-primary",
        ".spec.scaleTargetRef.name",
        "podinfo-primary",
    )
    .await;

    // 40 requests a second to the canary: ceil(40 / 5) = 8 pods wanted, 3 allowed.
    let _load = Load::start(&env, "http://podinfo-canary.test/", 40);
    set_image(&env, &format!("{PODINFO}:6.0.1")).await;
    env.wait_jsonpath("scaledobject/podinfo-so", PAUSED, "")
        .await;
    env.wait_jsonpath(
        "scaledobject/podinfo-so",
        r#".status.conditions[?(@.type=="Paused")].status"#,
        "False",
    )
    .await;
    env.wait_jsonpath("deployment/podinfo", ".spec.replicas", "3")
        .await;
    env.wait_jsonpath(
        "scaledobject/podinfo-so",
        r#".status.conditions[?(@.type=="Active")].status"#,
        "True",
    )
    .await;
    assert_eq!(
        env.jsonpath(
            "hpa/keda-hpa-podinfo-so",
            ".spec.metrics[0].external.metric.name"
        )
        .await,
        "s0-prometheus"
    );

    // Promoted: paused at zero again.
    env.hooks.set("promotion", 200);
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    env.wait_jsonpath("scaledobject/podinfo-so", PAUSED, "0")
        .await;
    env.wait_jsonpath("deployment/podinfo", ".spec.replicas", "0")
        .await;
    env.wait_gone("hpa/keda-hpa-podinfo-so").await;
    assert_eq!(
        env.jsonpath(
            "deployment/podinfo-primary",
            ".spec.template.spec.containers[0].image"
        )
        .await,
        format!("{PODINFO}:6.0.1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_on_an_image_that_does_not_exist_fails() {
    let env = Env::start(Options::default()).await;
    env.apply(&deployment("stefanprodan/podinfo:3.1.0", 1, "1m"))
        .await;
    // Flagger's skip-analysis flow, with a shorter progress deadline.
    env.apply(
        &canary(
            "Deployment",
            "podinfo",
            "skipAnalysis: true",
            "    interval: 1s\n    threshold: 15\n    maxWeight: 30\n    stepWeight: 10\n",
        )
        .replace("progressDeadlineSeconds: 60", "progressDeadlineSeconds: 10"),
    )
    .await;
    env.wait_phase("podinfo", CanaryPhase::Initialized).await;
    set_image(&env, "stefanprodan/podinfo:3.1.1").await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;

    set_image(&env, "stefanprodan/potato:1.0.0").await;
    env.wait_phase("podinfo", CanaryPhase::Failed).await;
    // The primary still runs the last good revision.
    assert_eq!(
        env.jsonpath(
            "deployment/podinfo-primary",
            ".spec.template.spec.containers[0].image"
        )
        .await,
        "stefanprodan/podinfo:3.1.1"
    );
    assert_eq!(
        env.jsonpath("deployment/podinfo-primary", ".spec.replicas")
            .await,
        "1"
    );
    // The canary's pod never ran its image.
    let reasons = env
        .kubectl(&[
            "-n",
            NS,
            "get",
            "events",
            "--field-selector",
            "reason=Failed",
            "-o",
            "jsonpath={.items[*].message}",
        ])
        .await;
    assert!(
        reasons.contains("Failed to pull image \"stefanprodan/potato:1.0.0\""),
        "{reasons}"
    );
}
