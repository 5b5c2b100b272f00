//! Fleet scale (issue 21): the cap on concurrent rollouts, and the primary HPA following its
//! target's without a rollout (`-autoscaler-sync=immediate`) or at promotion (Flagger's
//! behaviour, the default).

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagger_api::{Canary, CanaryPhase};
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use support::{Env, NS, Options};

const CANARIES: usize = 20;
const CAP: usize = 3;

/// The ConfigMap every Deployment of the fleet tracks (`envFrom`).
const SHARED: &str = "fleet-config";

/// The shared ConfigMap with `VERSION` set.
fn shared_config(version: u32) -> String {
    format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: {SHARED}, namespace: {NS}}}
data: {{VERSION: "{version}"}}
"#
    )
}

/// `n` Deployments named `<prefix>-<i>`, each with a Canary (kubernetes provider, blue/green,
/// one iteration at 1s), all tracking the ConfigMap `fleet-config`.
fn fleet_of(prefix: &str, n: usize) -> String {
    let mut docs = vec![shared_config(1)];
    for i in 0..n {
        docs.push(format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {prefix}-{i}, namespace: {NS}, labels: {{app: {prefix}-{i}}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {prefix}-{i}}}}}
  template:
    metadata: {{labels: {{app: {prefix}-{i}}}}}
    spec:
      containers:
      - name: app
        image: example.com/app:1
        ports: [{{containerPort: 8080}}]
        envFrom: [{{configMapRef: {{name: {SHARED}}}}}]
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: {prefix}-{i}, namespace: {NS}}}
spec:
  provider: kubernetes
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: {prefix}-{i}}}
  service: {{port: 80, targetPort: 8080}}
  analysis: {{interval: 1s, threshold: 1, iterations: 1}}
"#
        ));
    }
    docs.join("---\n")
}

fn fleet(n: usize) -> String {
    fleet_of("app", n)
}

/// The owner references of the shared ConfigMap's `-primary` copy: (canary name, controller).
async fn copy_owners(env: &Env) -> Vec<(String, bool)> {
    let copy = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(env.client.clone(), NS)
        .get(&format!("{SHARED}-primary"))
        .await
        .expect("the shared copy exists");
    copy.metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .map(|o| (o.name, o.controller == Some(true)))
        .collect()
}

/// What a watch of the canaries saw: each one's current phase, the most runs under way at once,
/// the first `Queued` condition message, and every canary that ever waited in line.
#[derive(Default)]
struct Sampled {
    phases: HashMap<String, CanaryPhase>,
    most_running: usize,
    queued_message: Option<String>,
    queued: std::collections::BTreeSet<String>,
}

fn sample(client: kube::Client) -> Arc<Mutex<Sampled>> {
    let seen: Arc<Mutex<Sampled>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        let api = Api::<Canary>::namespaced(client, NS);
        let stream = watcher(api, watcher::Config::default()).applied_objects();
        futures::pin_mut!(stream);
        while let Some(Ok(c)) = stream.next().await {
            let status = c.status.clone().unwrap_or_default();
            let Ok(mut s) = log.lock() else { return };
            s.phases.insert(c.name_any(), status.phase);
            let running = s
                .phases
                .values()
                .filter(|p| flagger_core::queue::running(**p))
                .count();
            s.most_running = s.most_running.max(running);
            if let Some(q) = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.r#type == "Queued")
            {
                s.queued.insert(c.name_any());
                if s.queued_message.is_none() {
                    s.queued_message = q.message.clone();
                }
            }
        }
    });
    seen
}

async fn wait_all(env: &Env, phase: CanaryPhase, n: usize, within: Duration) {
    let api = Api::<Canary>::namespaced(env.client.clone(), NS);
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let list = api.list(&Default::default()).await.expect("list canaries");
        let done = list
            .items
            .iter()
            .filter(|c| c.status.as_ref().is_some_and(|s| s.phase == phase))
            .count();
        if done == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {done} of {n} canaries reached {phase:?} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_twenty_targets_rolls_out_three_at_a_time() {
    let env = Env::start(Options {
        controller_args: &["--max-concurrent-canaries=3"],
        ..Default::default()
    })
    .await;
    env.apply(&fleet(CANARIES)).await;
    wait_all(
        &env,
        CanaryPhase::Initialized,
        CANARIES,
        Duration::from_secs(120),
    )
    .await;

    let seen = sample(env.client.clone());
    // One change to the ConfigMap all of them track (Flagger #1069) triggers the twenty.
    env.apply(&shared_config(2)).await;
    wait_all(
        &env,
        CanaryPhase::Succeeded,
        CANARIES,
        Duration::from_secs(240),
    )
    .await;

    {
        let s = seen.lock().expect("samples");
        assert!(
            s.most_running <= CAP,
            "{} runs under way at once with a cap of {CAP}",
            s.most_running
        );
        assert_eq!(s.most_running, CAP, "the cap's slots are used");
        assert!(
            s.queued.len() >= CANARIES - CAP,
            "the canaries over the cap waited in line: {:?}",
            s.queued
        );
        let message = s
            .queued_message
            .clone()
            .expect("a Queued condition was seen");
        assert!(
            message.starts_with("waiting for a rollout slot: ")
                && message.ends_with("slots in use: 3 of 3 cluster-wide"),
            "{message}"
        );
    }
    // Every run finished: the queue left no condition behind, each primary mounts the shared
    // copy, which carries the new data and is owned by the twenty canaries.
    assert_eq!(
        env.jsonpath(&format!("configmap/{SHARED}-primary"), ".data.VERSION")
            .await,
        "2"
    );
    let owners = copy_owners(&env).await;
    assert_eq!(owners.len(), CANARIES, "{owners:?}");
    assert_eq!(owners.iter().filter(|(_, c)| *c).count(), 1, "{owners:?}");
    let canaries = Api::<Canary>::namespaced(env.client.clone(), NS)
        .list(&Default::default())
        .await
        .expect("list canaries");
    for c in canaries.items {
        let name = c.metadata.name.clone().unwrap_or_default();
        let conditions = c.status.and_then(|s| s.conditions).unwrap_or_default();
        assert!(
            conditions.iter().all(|c| c.r#type != "Queued"),
            "{name} keeps a Queued condition"
        );
        assert_eq!(
            env.jsonpath(
                &format!("deployment/{name}-primary"),
                ".spec.template.spec.containers[0].envFrom[0].configMapRef.name"
            )
            .await,
            format!("{SHARED}-primary")
        );
    }
}

/// Flagger #1069's setup, under the OwnerReferencesPermissionEnforcement admission plugin (the
/// e2e environment runs it) and the chart's RBAC: the second canary tracking a ConfigMap used
/// to fail its initialization ("cannot set an ownerRef on a resource you can't delete") on the
/// `-primary` copy the first one owned. Both initialize; the copy is owned by both (one
/// controller reference); deleting one canary garbage-collects its primary but not the copy
/// the other canary's primary still mounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_sharing_a_tracked_configmap_share_its_primary_copy() {
    let env = Env::start(Options::default()).await;
    env.apply(&fleet_of("shared", 2)).await;
    env.wait_phase("shared-0", CanaryPhase::Initialized).await;
    env.wait_phase("shared-1", CanaryPhase::Initialized).await;
    let mut owners = copy_owners(&env).await;
    owners.sort();
    assert_eq!(owners.len(), 2, "{owners:?}");
    assert_eq!(
        owners.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["shared-0", "shared-1"]
    );
    assert_eq!(owners.iter().filter(|(_, c)| *c).count(), 1, "{owners:?}");

    env.kubectl(&["-n", NS, "delete", "canary", "shared-0"])
        .await;
    env.wait_gone("deployment/shared-0-primary").await;
    assert_eq!(
        env.jsonpath(&format!("configmap/{SHARED}-primary"), ".data.VERSION")
            .await,
        "1",
        "the copy shared-1's primary mounts survives shared-0"
    );
    // The next write of the copy (a change of the ConfigMap, promoted by shared-1) makes
    // shared-1 its controller.
    env.apply(&shared_config(2)).await;
    env.wait_phase("shared-1", CanaryPhase::Succeeded).await;
    let owners = copy_owners(&env).await;
    assert!(
        owners.contains(&("shared-1".to_string(), true)),
        "{owners:?}"
    );
    assert_eq!(
        env.jsonpath(&format!("configmap/{SHARED}-primary"), ".data.VERSION")
            .await,
        "2"
    );
}

const HPA_WORKLOAD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: test, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: example.com/web:1
        ports: [{containerPort: 8080}]
        resources: {requests: {cpu: 100m}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: test}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 4
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 99}}
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: web, namespace: test}
spec:
  provider: kubernetes
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  autoscalerRef: {apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler, name: web}
  service: {port: 80, targetPort: 8080}
  analysis: {interval: 1s, threshold: 1, iterations: 1}
"#;

async fn raise_max_replicas(env: &Env) {
    env.kubectl(&[
        "-n",
        NS,
        "patch",
        "hpa/web",
        "--type=merge",
        "-p",
        r#"{"spec":{"maxReplicas":6}}"#,
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaler_sync_immediate_carries_an_hpa_change_over_without_a_rollout() {
    let env = Env::start(Options {
        controller_args: &["--autoscaler-sync=immediate"],
        ..Default::default()
    })
    .await;
    env.apply(HPA_WORKLOAD).await;
    env.wait_phase("web", CanaryPhase::Initialized).await;
    env.wait_jsonpath("hpa/web-primary", ".spec.maxReplicas", "4")
        .await;
    raise_max_replicas(&env).await;
    env.wait_jsonpath("hpa/web-primary", ".spec.maxReplicas", "6")
        .await;
    // No rollout ran for it.
    assert_eq!(
        env.canary("web").await.status.map(|s| s.phase),
        Some(CanaryPhase::Initialized)
    );
    assert!(!env.phases.of("web").contains(&CanaryPhase::Progressing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_an_hpa_change_reaches_the_primary_at_the_next_promotion() {
    let env = Env::start(Options::default()).await;
    env.apply(HPA_WORKLOAD).await;
    env.wait_phase("web", CanaryPhase::Initialized).await;
    raise_max_replicas(&env).await;
    // A new revision: when its run starts (a tick after the HPA change), the primary HPA is
    // still as it was; it follows at promotion.
    env.kubectl(&[
        "-n",
        NS,
        "set",
        "image",
        "deployment/web",
        "web=example.com/web:2",
    ])
    .await;
    env.wait_phase("web", CanaryPhase::Progressing).await;
    assert_eq!(
        env.jsonpath("hpa/web-primary", ".spec.maxReplicas").await,
        "4"
    );
    env.wait_phase("web", CanaryPhase::Succeeded).await;
    env.wait_jsonpath("hpa/web-primary", ".spec.maxReplicas", "6")
        .await;
}

/// CRDs of the providers in [`idle_fleet`] (schemas keep unknown fields, as the router suites'
/// minimal CRDs): `(group, kind, plural, scope, versions)`.
fn provider_crds() -> String {
    let mut out = String::new();
    for (group, kind, plural, scope, versions) in [
        (
            "networking.istio.io",
            "VirtualService",
            "virtualservices",
            "Namespaced",
            &["v1beta1", "v1"][..],
        ),
        (
            "networking.istio.io",
            "DestinationRule",
            "destinationrules",
            "Namespaced",
            &["v1beta1", "v1"][..],
        ),
        (
            "gateway.networking.k8s.io",
            "HTTPRoute",
            "httproutes",
            "Namespaced",
            &["v1", "v1beta1"][..],
        ),
        (
            "split.smi-spec.io",
            "TrafficSplit",
            "trafficsplits",
            "Namespaced",
            &["v1alpha2", "v1alpha1", "v1alpha3"][..],
        ),
        (
            "kuma.io",
            "TrafficRoute",
            "trafficroutes",
            "Cluster",
            &["v1alpha1"][..],
        ),
        (
            "appmesh.k8s.aws",
            "VirtualNode",
            "virtualnodes",
            "Namespaced",
            &["v1beta2"][..],
        ),
        (
            "appmesh.k8s.aws",
            "VirtualRouter",
            "virtualrouters",
            "Namespaced",
            &["v1beta2"][..],
        ),
        (
            "appmesh.k8s.aws",
            "VirtualService",
            "virtualservices",
            "Namespaced",
            &["v1beta2"][..],
        ),
        (
            "keda.sh",
            "ScaledObject",
            "scaledobjects",
            "Namespaced",
            &["v1alpha1"][..],
        ),
    ] {
        let versions: String = versions
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    "  - {{name: {v}, served: true, storage: {}, subresources: {{status: {{}}}}, schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}}}\n",
                    i == 0
                )
            })
            .collect();
        out.push_str(&format!(
            "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: {plural}.{group}}}\nspec:\n  group: {group}\n  scope: {scope}\n  names: {{kind: {kind}, plural: {plural}, singular: {}, listKind: {kind}List}}\n  versions:\n{versions}",
            kind.to_lowercase()
        ));
    }
    out
}

/// One idle canary per provider (and one with a KEDA ScaledObject, one with an nginx
/// Ingress): `(name, yaml)`.
fn idle_fleet() -> Vec<(String, String)> {
    let deployment = |name: &str| {
        format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {NS}, labels: {{app: {name}}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: app
        image: example.com/app:1
        ports: [{{containerPort: 8080}}]
"#
        )
    };
    let canary = |name: &str, provider: &str, extra: &str| {
        format!(
            r#"apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: {name}, namespace: {NS}}}
spec:
  provider: "{provider}"
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}
{extra}  service:
    port: 80
    targetPort: 8080
    gatewayRefs: [{{name: {name}, kind: Service, group: ""}}]
    meshName: global
    backends: [backend.test]
  analysis: {{interval: 1s, threshold: 1, maxWeight: 50, stepWeight: 10}}
"#
        )
    };
    let mut fleet = Vec::new();
    for provider in [
        "kubernetes",
        "istio",
        "gatewayapi:v1",
        "linkerd",
        "kuma",
        "appmesh:v1beta2",
    ] {
        let name = format!("app-{}", provider.replace(':', "-"));
        fleet.push((
            name.clone(),
            format!("{}---\n{}", deployment(&name), canary(&name, provider, "")),
        ));
    }
    let ingress = format!(
        r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: app-nginx, namespace: {NS}, annotations: {{kubernetes.io/ingress.class: nginx}}}}
spec:
  rules:
  - host: app.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {{service: {{name: app-nginx, port: {{number: 80}}}}}}
"#
    );
    fleet.push((
        "app-nginx".into(),
        format!(
            "{}---\n{ingress}---\n{}",
            deployment("app-nginx"),
            canary(
                "app-nginx",
                "nginx",
                "  ingressRef: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: app-nginx}\n"
            )
        ),
    ));
    let scaled_object = format!(
        r#"apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: app-keda, namespace: {NS}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: app-keda}}
  minReplicaCount: 1
  maxReplicaCount: 2
  triggers:
  - type: prometheus
    metadata: {{serverAddress: "http://prometheus:9090", threshold: "100", query: "sum(up)"}}
"#
    );
    fleet.push((
        "app-keda".into(),
        format!(
            "{}---\n{scaled_object}---\n{}",
            deployment("app-keda"),
            canary(
                "app-keda",
                "kubernetes",
                "  autoscalerRef: {apiVersion: keda.sh/v1alpha1, kind: ScaledObject, name: app-keda}\n"
            )
        ),
    ));
    fleet
}

/// localkube's request counters (`apiserver_request_total`) by verb and resource.
async fn request_counts(env: &Env) -> std::collections::BTreeMap<(String, String), f64> {
    let text = env
        .client
        .request_text(
            http::Request::get("/metrics")
                .body(Vec::new())
                .expect("request"),
        )
        .await
        .expect("localkube metrics");
    let mut counts = std::collections::BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |k: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        *counts
            .entry((label("verb"), label("resource")))
            .or_default() += value.parse::<f64>().unwrap_or_default();
    }
    counts
}

/// The controller's reconciles so far (`flagger_reconcile_duration_seconds_count`).
async fn reconciles(env: &Env) -> f64 {
    let text = reqwest::get(format!("{}/metrics", env.controller_url()))
        .await
        .expect("controller metrics")
        .text()
        .await
        .expect("controller metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix("flagger_reconcile_duration_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_ticks_of_every_provider_ask_the_api_server_nothing() {
    let env = Env::start(Options {
        prometheus: true,
        scrape_controller: true,
        no_exporter: true,
        dataplane: true,
        ..Default::default()
    })
    .await;
    env.apply(&provider_crds()).await;
    let fleet = idle_fleet();
    for (_, yaml) in &fleet {
        env.apply(yaml).await;
    }
    for (name, _) in &fleet {
        env.wait_phase(name, CanaryPhase::Initialized).await;
    }
    // A few ticks for the caches of the kinds found to list.
    let settle = reconciles(&env).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while reconciles(&env).await < settle + 3.0 * fleet.len() as f64 {
        assert!(tokio::time::Instant::now() < deadline, "no ticks ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Idle ticks (1s interval): nothing but watches reaches the API server.
    let before = request_counts(&env).await;
    let ticks_before = reconciles(&env).await;
    let idle = tokio::time::Instant::now() + Duration::from_secs(6);
    let mut ticks = 0.0;
    while tokio::time::Instant::now() < idle || ticks < 4.0 * fleet.len() as f64 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        ticks = reconciles(&env).await - ticks_before;
    }
    let after = request_counts(&env).await;
    let asked: Vec<String> = after
        .iter()
        .filter_map(|((verb, resource), n)| {
            let d = n - before
                .get(&(verb.clone(), resource.clone()))
                .unwrap_or(&0.0);
            // The counter read itself is the one request of the test in the window.
            let ours = resource.is_empty();
            (d > 0.0 && verb != "watch" && !ours).then(|| format!("{verb} {resource}: {d}"))
        })
        .collect();
    println!(
        "{ticks} idle reconciles of {} canaries; requests other than watches: {asked:?}",
        fleet.len()
    );
    assert!(
        asked.is_empty(),
        "idle ticks asked the API server: {asked:?}"
    );
    // Served from watches, one per kind in use.
    for kind in [
        "virtualservices",
        "destinationrules",
        "httproutes",
        "trafficsplits",
        "trafficroutes",
        "virtualnodes",
        "virtualrouters",
        "ingresses",
        "scaledobjects",
    ] {
        assert!(
            after.contains_key(&("watch".to_string(), kind.to_string())),
            "no watch of {kind}: {:?}",
            after.keys().collect::<Vec<_>>()
        );
    }
    // Every provider still runs: the phases stayed.
    for (name, _) in &fleet {
        assert_eq!(
            env.canary(name).await.status.map(|s| s.phase),
            Some(CanaryPhase::Initialized),
            "{name}"
        );
    }
}
