//! The mesh routers end to end: localkube with its data plane routing by VirtualService,
//! HTTPRoute, TrafficSplit and (as ingress-nginx) Ingress, a real Prometheus scraping the data
//! plane's telemetry (podinfo's, Istio's, Linkerd's, OSM's and ingress-nginx's series),
//! the real kubectl, and `flagger controller` in-process. Load flows through the data-plane
//! proxy while the controller moves the weights; the weights are read back from the routing
//! objects as they change. Each test has its own cluster.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagger_api::CanaryPhase;
use kube::Api;
use kube::api::{ApiResource, GroupVersionKind};
use serde_json::Value;
use support::routing::*;
use support::{Env, NS, Options};

/// Minimal CRDs for the routing objects (schemas preserve unknown fields).
fn mesh_crds() -> String {
    let mut out = String::new();
    for (group, kind, plural, versions) in [
        (
            "networking.istio.io",
            "VirtualService",
            "virtualservices",
            &["v1beta1", "v1"][..],
        ),
        (
            "networking.istio.io",
            "DestinationRule",
            "destinationrules",
            &["v1beta1", "v1"][..],
        ),
        (
            "gateway.networking.k8s.io",
            "HTTPRoute",
            "httproutes",
            &["v1", "v1beta1"][..],
        ),
        (
            "split.smi-spec.io",
            "TrafficSplit",
            "trafficsplits",
            &["v1alpha1", "v1alpha2", "v1alpha3"][..],
        ),
    ] {
        let versions: String = versions
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    "  - name: {v}\n    served: true\n    storage: {}\n    schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}\n",
                    i == 0
                )
            })
            .collect();
        out.push_str(&format!(
            "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: {plural}.{group}}}\nspec:\n  group: {group}\n  scope: Namespaced\n  names: {{kind: {kind}, plural: {plural}, singular: {}, listKind: {kind}List}}\n  versions:\n{versions}",
            kind.to_lowercase()
        ));
    }
    out
}

async fn start_env() -> Env {
    start_env_opts(Options::default()).await
}

/// An environment with Prometheus and the data plane on, whatever `opts` says of them.
async fn start_env_opts(opts: Options) -> Env {
    let env = Env::start(Options {
        prometheus: true,
        dataplane: true,
        ..opts
    })
    .await;
    env.apply(&mesh_crds()).await;
    env
}

fn vs_weight(vs: &Value) -> Option<u64> {
    vs.pointer("/spec/http/0/route")?
        .as_array()?
        .iter()
        .find(|d| d["destination"]["host"] == "podinfo-canary")?["weight"]
        .as_u64()
        .or(Some(0))
}

fn httproute_weight(r: &Value) -> Option<u64> {
    r.pointer("/spec/rules/0/backendRefs")?
        .as_array()?
        .iter()
        .find(|b| b["name"] == "podinfo-canary")?["weight"]
        .as_u64()
}

fn split_weight(s: &Value) -> Option<u64> {
    let w = &s
        .pointer("/spec/backends")?
        .as_array()?
        .iter()
        .find(|b| b["service"] == "podinfo-canary")?["weight"];
    w.as_u64().or_else(|| w.as_str()?.parse().ok())
}

fn virtual_service(env: &Env) -> RoutingObject {
    RoutingObject::new(
        env,
        "networking.istio.io/v1beta1",
        "VirtualService",
        "virtualservices",
        vs_weight,
    )
}

fn http_route(env: &Env) -> RoutingObject {
    RoutingObject::new(
        env,
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        "httproutes",
        httproute_weight,
    )
}

fn traffic_split(env: &Env, version: &str) -> RoutingObject {
    RoutingObject::new(
        env,
        &format!("split.smi-spec.io/{version}"),
        "TrafficSplit",
        "trafficsplits",
        split_weight,
    )
}

/// GAMMA: the HTTPRoute's parent is the apex Service.
const GAMMA_REFS: &str = "    gatewayRefs:\n    - {name: podinfo, kind: Service, group: \"\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_canary_advances_through_its_weights_and_is_promoted() {
    let env = start_env().await;
    init(
        &env,
        &canary("istio", "", &progressive(5, &builtin_metrics())),
    )
    .await;
    // Bootstrap: DestinationRules and the VirtualService, owned by the Canary, 100/0.
    assert_eq!(
        env.jsonpath("destinationrules/podinfo-canary", ".spec.host")
            .await,
        "podinfo-canary"
    );
    assert_eq!(
        env.jsonpath(
            "virtualservices/podinfo",
            ".metadata.ownerReferences[0].kind"
        )
        .await,
        "Canary"
    );
    let vs = virtual_service(&env);
    assert_eq!(vs.json().await.as_ref().and_then(vs_weight), Some(0));

    let (seen, counts) = promote_progressively(&env, &vs).await;
    assert_progressive(&seen);
    // The canary answered real requests during the analysis, and the mesh telemetry reached
    // Prometheus.
    assert!(counts.get("6.0.1").copied().unwrap_or(0) > 0, "{counts:?}");
    let prom = env.prometheus.as_ref().unwrap();
    let canary_requests = prom
        .query(r#"sum(istio_requests_total{destination_workload="podinfo",destination_workload_namespace="test"})"#)
        .await
        .unwrap_or(0.0);
    println!("istio_requests_total for the canary workload: {canary_requests}");
    assert!(canary_requests > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_faulty_canary_is_rolled_back_by_the_builtin_success_rate() {
    let env = start_env().await;
    init(
        &env,
        &canary("istio", "", &progressive(2, &builtin_metrics())),
    )
    .await;
    faulty_canary_is_rolled_back(&env, &virtual_service(&env), APEX_URL).await;
}

/// 40 requests with `x-canary: insider` and 40 without, counted by the version answering.
async fn ab_split(env: &Env) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let http = proxied(env);
    let mut with_header: BTreeMap<String, usize> = BTreeMap::new();
    let mut without: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..40 {
        *with_header
            .entry(answer(&http, &[("x-canary", "insider")]).await)
            .or_default() += 1;
        *without.entry(answer(&http, &[]).await).or_default() += 1;
    }
    println!("with x-canary: insider: {with_header:?}; without: {without:?}");
    (with_header, without)
}

const AB_ANALYSIS: &str = "    interval: 1s\n    threshold: 5\n    iterations: 10\n    match:\n    - headers:\n        x-canary: {exact: insider}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_ab_canary_gets_only_header_matching_requests() {
    let env = start_env().await;
    init(&env, &canary("istio", "", AB_ANALYSIS)).await;
    env.apply(&workload("6.0.1", "")).await;
    // The A/B routes: header match → canary, the rest → primary.
    env.wait_jsonpath(
        "virtualservices/podinfo",
        ".spec.http[0].route[1].weight",
        "100",
    )
    .await;
    assert_eq!(
        env.jsonpath(
            "virtualservices/podinfo",
            ".spec.http[0].match[0].headers.x-canary.exact"
        )
        .await,
        "insider"
    );
    let (with_header, without) = ab_split(&env).await;
    assert_eq!(with_header.get("6.0.1"), Some(&40), "{with_header:?}");
    assert_eq!(without.get("6.0.0"), Some(&40), "{without:?}");
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatewayapi_ab_canary_gets_only_header_matching_requests() {
    let env = start_env().await;
    let service = "    gatewayRefs:\n    - {name: podinfo, kind: Service, group: \"\"}";
    init(&env, &canary("gatewayapi:v1beta1", service, AB_ANALYSIS)).await;
    env.apply(&workload("6.0.1", "")).await;
    env.wait_jsonpath(
        "httproutes.v1beta1.gateway.networking.k8s.io/podinfo",
        ".spec.rules[0].backendRefs[1].weight",
        "100",
    )
    .await;
    let (with_header, without) = ab_split(&env).await;
    assert_eq!(with_header.get("6.0.1"), Some(&40), "{with_header:?}");
    assert_eq!(without.get("6.0.0"), Some(&40), "{without:?}");
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatewayapi_canary_advances_through_its_weights_and_is_promoted() {
    let env = start_env().await;
    init(
        &env,
        &canary(
            "gatewayapi:v1",
            GAMMA_REFS,
            &progressive(5, &builtin_metrics()),
        ),
    )
    .await;
    let route = http_route(&env);
    assert_eq!(
        route.json().await.as_ref().and_then(httproute_weight),
        Some(0)
    );
    let (seen, counts) = promote_progressively(&env, &route).await;
    assert_progressive(&seen);
    assert!(counts.get("6.0.1").copied().unwrap_or(0) > 0, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkerd_canary_advances_through_its_traffic_split_and_is_promoted() {
    let env = start_env().await;
    init(
        &env,
        &canary("linkerd", "", &progressive(5, &builtin_metrics())),
    )
    .await;
    let split = traffic_split(&env, "v1alpha1");
    // v1alpha1 weights are quantities, written as strings.
    assert_eq!(
        env.jsonpath("trafficsplits/podinfo", ".spec.backends[1].weight")
            .await,
        "100"
    );
    let (seen, counts) = promote_progressively(&env, &split).await;
    assert_progressive(&seen);
    assert!(counts.get("6.0.1").copied().unwrap_or(0) > 0, "{counts:?}");
    let prom = env.prometheus.as_ref().unwrap();
    let canary_responses = prom
        .query(r#"sum(response_total{deployment="podinfo",namespace="test",direction="inbound"})"#)
        .await
        .unwrap_or(0.0);
    println!("linkerd response_total for the canary workload: {canary_responses}");
    assert!(canary_responses > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smi_v1alpha3_canary_is_checked_with_the_istio_queries_and_promoted() {
    let env = start_env().await;
    // smi:* providers use the Istio observer (reference §5.1).
    init(
        &env,
        &canary("smi:v1alpha3", "", &progressive(5, &builtin_metrics())),
    )
    .await;
    let split = traffic_split(&env, "v1alpha3");
    // v1alpha3 weights are integers.
    let initial = split.json().await.unwrap();
    assert_eq!(initial["spec"]["backends"][1]["weight"], 100, "{initial}");
    let (seen, counts) = promote_progressively(&env, &split).await;
    assert_progressive(&seen);
    assert!(counts.get("6.0.1").copied().unwrap_or(0) > 0, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatewayapi_faulty_canary_is_rolled_back_by_the_builtin_success_rate() {
    let env = start_env().await;
    // The gatewayapi observer queries podinfo's own `http_request_duration_seconds`, which
    // the canary's new pods serve and Prometheus scrapes once it has discovered them (the
    // support exporter also writes them, all 200, for every ready pod: the success rate reads
    // nearer 90% than 50%). Prometheus hands discovered targets to its scrapers in batches
    // every 5 s (its discovery and scrape managers each wait that long, as on a cluster):
    // the new pods' failures reach the checks seconds late, so the canary moves in steps of
    // 5% and is halted before its maximum, at whichever step their series arrive.
    let analysis = format!(
        "    interval: 1s\n    threshold: 2\n    maxWeight: 50\n    stepWeight: 5\n    metrics:\n{}",
        builtin_metrics()
    );
    init(&env, &canary("gatewayapi:v1", GAMMA_REFS, &analysis)).await;
    faulty_canary_is_rolled_back_within(&env, &http_route(&env), APEX_URL, 5..=45).await;
    let failures = prom_value(
        &env,
        "http_request_duration_seconds_count of the canary's pods, 5xx",
        // The pods are gone (scaled down), so their series are stale: over the last minute.
        r#"sum(max_over_time(http_request_duration_seconds_count{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",status=~"5.*"}[1m]))"#,
    )
    .await;
    assert!(failures > 0.0);
    // Flagger's query for Istio's Gateway API implementation reads the client side's series
    // (`reporter="source"`): the data plane reports each routed request there too.
    let source_failures = prom_value(
        &env,
        "istio_requests_total reported by the client side, canary 5xx",
        r#"sum(istio_requests_total{reporter="source",destination_workload_namespace="test",destination_workload=~"podinfo",response_code=~"5.*"})"#,
    )
    .await;
    assert!(source_failures > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkerd_faulty_canary_is_rolled_back_by_the_builtin_success_rate() {
    let env = start_env().await;
    init(
        &env,
        &canary("linkerd", "", &progressive(2, &builtin_metrics())),
    )
    .await;
    faulty_canary_is_rolled_back(&env, &traffic_split(&env, "v1alpha1"), APEX_URL).await;
    let failures = prom_value(
        &env,
        "linkerd response_total of the canary, failures",
        r#"sum(response_total{namespace="test",deployment="podinfo",direction="inbound",classification="failure"})"#,
    )
    .await;
    assert!(failures > 0.0);
}

/// The OSM series of the canary Deployment (`osm_request_total`, the labels of the builtin
/// queries), with `extra` matchers.
fn osm_requests(extra: &str) -> String {
    format!(
        r#"sum(osm_request_total{{destination_namespace="test",destination_kind="Deployment",destination_name="podinfo"{extra}}})"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn osm_canary_advances_through_its_traffic_split_and_is_promoted() {
    let env = start_env().await;
    init(
        &env,
        &canary("osm", "", &progressive(5, &builtin_metrics())),
    )
    .await;
    // osm writes v1alpha2: integer weights.
    let split = traffic_split(&env, "v1alpha2");
    let initial = split.json().await.unwrap();
    assert_eq!(initial["spec"]["backends"][1]["weight"], 100, "{initial}");
    let (seen, counts) = promote_progressively(&env, &split).await;
    assert_progressive(&seen);
    assert!(counts.get("6.0.1").copied().unwrap_or(0) > 0, "{counts:?}");
    let canary_requests = prom_value(
        &env,
        "osm_request_total for the canary Deployment",
        &osm_requests(""),
    )
    .await;
    assert!(canary_requests > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn osm_faulty_canary_is_rolled_back_by_the_builtin_success_rate() {
    let env = start_env().await;
    init(
        &env,
        &canary("osm", "", &progressive(2, &builtin_metrics())),
    )
    .await;
    faulty_canary_is_rolled_back(&env, &traffic_split(&env, "v1alpha2"), APEX_URL).await;
    let failures = prom_value(
        &env,
        "osm_request_total for the canary Deployment, 5xx",
        &osm_requests(r#",response_code=~"5.*""#),
    )
    .await;
    assert!(failures > 0.0);
}

/// The blue/green analysis with mirroring of the mirroring scenarios.
fn mirror_analysis() -> String {
    format!(
        "    interval: 1s\n    threshold: 5\n    iterations: 4\n    mirror: true\n    metrics:\n{}",
        builtin_metrics()
    )
}

/// Copies and answers of the canary Service, as the data plane's sidecar telemetry counts
/// them.
async fn canary_service_requests(env: &Env) -> f64 {
    dataplane_counter(
        env,
        "istio_requests_total",
        r#"destination_service_name="podinfo-canary""#,
    )
    .await
}

/// What a blue/green rollout with mirroring showed.
struct Mirroring {
    /// (canary weight, mirrored) as the routing object showed them, in order.
    states: Vec<(u64, bool)>,
    /// Client requests answered by the canary during 1.5 s of mirroring.
    canary_answers: usize,
    /// Client requests sent during those 1.5 s.
    client_requests: usize,
    /// Requests the canary Service received during those 1.5 s (the copies).
    canary_copies: f64,
}

/// Rolls out 6.0.1 on an initialized blue/green canary with mirroring while load flows to the
/// apex Service, until it is promoted; `mirrored` tells whether `object` mirrors to the
/// canary.
async fn blue_green_mirroring(
    env: &Env,
    object: &RoutingObject,
    mirrored: fn(&Value) -> bool,
) -> Mirroring {
    let seen: Arc<Mutex<Vec<(u64, bool)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (object, seen, stop) = (object.clone(), seen.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(v) = object.json().await {
                    let state = ((object.canary_weight)(&v).unwrap_or(0), mirrored(&v));
                    let mut l = seen.lock().unwrap();
                    if l.last() != Some(&state) {
                        l.push(state);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    let load = Load::start(env, &[]);
    env.apply(&workload("6.0.1", "")).await;
    // While mirrored, clients are answered by the primary only; the canary gets the copies.
    let last = Mutex::new(String::new());
    support::wait_for("the routing mirroring to the canary", &last, || async {
        let state = seen.lock().unwrap().last().copied();
        (state == Some((0, true))).then_some(())
    })
    .await;
    let before = load.counts();
    let copies_before = canary_service_requests(env).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = load.counts();
    let copies_after = canary_service_requests(env).await;
    let answers = |c: &BTreeMap<String, usize>, v: &str| c.get(v).copied().unwrap_or(0);
    let canary_answers = answers(&during, "6.0.1") - answers(&before, "6.0.1");
    let client_requests = during.values().sum::<usize>() - before.values().sum::<usize>();
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let states = seen.lock().unwrap().clone();
    let m = Mirroring {
        states,
        canary_answers,
        client_requests,
        canary_copies: copies_after - copies_before,
    };
    println!(
        "(canary weight, mirrored) seen: {:?}; while mirrored: {} client requests, {} answered by the canary, {} copies to the canary; answers: {:?}",
        m.states,
        m.client_requests,
        m.canary_answers,
        m.canary_copies,
        load.counts()
    );
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_blue_green_mirrors_traffic_to_the_canary_then_switches() {
    let env = start_env().await;
    init(&env, &canary("istio", "", &mirror_analysis())).await;
    let m = blue_green_mirroring(&env, &virtual_service(&env), |v| {
        v.pointer("/spec/http/0/mirror/host") == Some(&Value::from("podinfo-canary"))
    })
    .await;
    let prom = env.prometheus.as_ref().unwrap();
    let canary_requests = prom
        .query(r#"sum(istio_requests_total{destination_workload="podinfo",destination_workload_namespace="test"})"#)
        .await
        .unwrap_or(0.0);
    println!("istio_requests_total for the canary workload: {canary_requests}");
    assert_eq!(
        m.states,
        vec![(0, false), (0, true), (100, false), (0, false)],
        "{:?}",
        m.states
    );
    assert_eq!(
        m.canary_answers, 0,
        "clients answered by the canary while mirrored"
    );
    assert!(m.canary_copies > 0.0);
    assert!(canary_requests > 0.0);
    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatewayapi_blue_green_mirrors_traffic_to_the_canary() {
    let env = start_env().await;
    init(
        &env,
        &canary("gatewayapi:v1", GAMMA_REFS, &mirror_analysis()),
    )
    .await;
    let m = blue_green_mirroring(&env, &http_route(&env), |r| {
        r.pointer("/spec/rules/0/filters")
            .and_then(Value::as_array)
            .is_some_and(|fs| {
                fs.iter().any(|f| {
                    f["type"] == "RequestMirror"
                        && f["requestMirror"]["backendRef"]["name"] == "podinfo-canary"
                })
            })
    })
    .await;
    assert_eq!(
        m.states,
        vec![(0, false), (0, true), (100, false), (0, false)],
        "{:?}",
        m.states
    );
    assert_eq!(
        m.canary_answers, 0,
        "clients answered by the canary while mirrored"
    );
    // Every client request while mirrored sent the canary a copy (give or take the ones in
    // flight at either end of the window).
    assert!(m.client_requests > 0);
    assert!(
        m.canary_copies >= m.client_requests as f64 * 0.8,
        "{} copies for {} requests",
        m.canary_copies,
        m.client_requests
    );
    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_drift_is_corrected_mid_analysis_keeping_the_weights() {
    let env = start_env().await;
    let analysis = format!(
        "    interval: 1s\n    threshold: 5\n    maxWeight: 20\n    stepWeight: 10\n    webhooks:\n    - name: gate-promotion\n      type: confirm-promotion\n      url: {}\n",
        env.hooks.url("promotion")
    );
    init(&env, &canary("istio", "", &analysis)).await;
    env.hooks.set("promotion", 403);
    env.apply(&workload("6.0.1", "")).await;
    env.wait_phase("podinfo", CanaryPhase::WaitingPromotion)
        .await;
    assert_eq!(
        env.jsonpath("virtualservices/podinfo", ".spec.http[0].route[1].weight")
            .await,
        "20"
    );
    // Someone edits the routing: hosts and the route's timeout.
    env.kubectl(&[
        "-n",
        NS,
        "patch",
        "virtualservices/podinfo",
        "--type=merge",
        "-p",
        r#"{"spec":{"hosts":["podinfo","extra.example.com"]}}"#,
    ])
    .await;
    // The next reconcile puts Flagger's spec back, at the weights in effect.
    env.wait_jsonpath("virtualservices/podinfo", ".spec.hosts", r#"["podinfo"]"#)
        .await;
    assert_eq!(
        env.jsonpath("virtualservices/podinfo", ".spec.http[0].route[1].weight")
            .await,
        "20"
    );
    assert_eq!(
        env.canary("podinfo").await.status.unwrap().phase,
        CanaryPhase::WaitingPromotion
    );
    // The edit is reported as a fight over the routing object, naming the writer.
    let warning = env
        .wait_event(
            "podinfo",
            "VirtualService podinfo: field manager kubectl-patch changed spec.hosts",
        )
        .await;
    assert!(warning.contains("put back (1 times in 30m0s)"), "{warning}");
    env.hooks.set("promotion", 200);
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_takes_over_a_users_virtual_service_and_gives_it_back_on_deletion() {
    let env = start_env().await;
    env.apply(&workload("6.0.0", "")).await;
    // The user's own VirtualService, made without kubectl's last-applied annotation.
    env.kubectl_in(
        &["create", "-f", "-"],
        &format!(
            r#"
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: podinfo, namespace: {NS}}}
spec:
  hosts: [podinfo]
  http:
  - timeout: 5s
    route:
    - destination: {{host: podinfo}}
"#
        ),
    )
    .await;
    let yaml = canary("istio", "", &progressive(5, "")).replace(
        "  progressDeadlineSeconds: 60",
        "  progressDeadlineSeconds: 60\n  revertOnDeletion: true",
    );
    init(&env, &yaml).await;
    // Taken over: Flagger's routes, the user's spec remembered, no owner reference.
    assert_eq!(
        env.jsonpath(
            "virtualservices/podinfo",
            ".spec.http[0].route[0].destination.host"
        )
        .await,
        "podinfo-primary"
    );
    let original = env
        .jsonpath(
            "virtualservices/podinfo",
            r".metadata.annotations.flagger\.kubernetes\.io/original-configuration",
        )
        .await;
    let original: Value = serde_json::from_str(&original).expect(&original);
    assert_eq!(original["http"][0]["timeout"], "5s", "{original}");
    assert_eq!(
        env.jsonpath("virtualservices/podinfo", ".metadata.ownerReferences")
            .await,
        ""
    );
    // While the canary runs, the mesh routes through Flagger's VirtualService.
    let http = proxied(&env);
    assert_eq!(answer(&http, &[]).await, "6.0.0");

    env.kubectl(&["-n", NS, "delete", "canary/podinfo", "--wait=false"])
        .await;
    env.wait_gone("canary/podinfo").await;
    // The user's spec is back; the DestinationRules went with the Canary.
    env.wait_jsonpath(
        "virtualservices/podinfo",
        ".spec.http[0].route[0].destination.host",
        "podinfo",
    )
    .await;
    assert_eq!(
        env.jsonpath("virtualservices/podinfo", ".spec.http[0].timeout")
            .await,
        "5s"
    );
    env.wait_gone("destinationrules/podinfo-canary").await;
}

/// The user's Ingress `podinfo` for `app.example.com`, with a stray `canary-weight` under
/// `prefix` that the canary Ingress must not inherit.
fn user_ingress(prefix: &str) -> String {
    format!(
        r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: podinfo
  namespace: {NS}
  labels: {{app: podinfo}}
  annotations: {{kubernetes.io/ingress.class: nginx, {prefix}/canary-weight: "99"}}
spec:
  rules:
  - host: app.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {{service: {{name: podinfo, port: {{number: 80}}}}}}
"#
    )
}

/// A Canary of the nginx provider for the Ingress `podinfo`.
fn nginx_canary(analysis: &str) -> String {
    canary("nginx", "", analysis).replace(
        "  progressDeadlineSeconds: 60",
        "  progressDeadlineSeconds: 60\n  ingressRef: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: podinfo}",
    )
}

/// The canary Ingress, its weight read from `<prefix>/canary-weight`.
fn canary_ingress(env: &Env, weight: fn(&Value) -> Option<u64>) -> RoutingObject {
    RoutingObject {
        name: "podinfo-canary",
        ..RoutingObject::new(env, "networking.k8s.io/v1", "Ingress", "ingresses", weight)
    }
}

/// The ingress-nginx requests of the Ingress `podinfo` that its canary took, with `extra`
/// matchers (the builtin queries' selector).
fn nginx_canary_requests(extra: &str) -> String {
    format!(
        r#"sum(nginx_ingress_controller_requests{{namespace="test",ingress="podinfo",canary!=""{extra}}})"#
    )
}

/// Flagger's `latency` MetricTemplate of its NGINX flow (podinfo's own histogram of `/`,
/// `path="root"`, over the target's pods), with `{{ interval }}` as given.
const LATENCY_QUERY: &str = r#"histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{kubernetes_namespace="{{ namespace }}", kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)", path="root"}[{{ interval }}])) by (le))"#;

fn latency_template(env: &Env) -> String {
    let address = env.prometheus.as_ref().unwrap().url();
    format!(
        "apiVersion: flagger.app/v1beta1\nkind: MetricTemplate\nmetadata: {{name: latency, namespace: {NS}}}\nspec:\n  provider: {{type: prometheus, address: \"{address}\"}}\n  query: '{LATENCY_QUERY}'\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_canary_ingress_carries_the_weights_and_is_promoted() {
    // A custom annotation prefix, as `-ingress-annotations-prefix` sets it (and ingress-nginx's
    // `--annotations-prefix` on the data plane).
    let env = start_env_opts(Options {
        controller_args: &["--ingress-annotations-prefix=custom.ingress.kubernetes.io"],
        nginx_annotations_prefix: Some("custom.ingress.kubernetes.io"),
        ..Default::default()
    })
    .await;
    env.apply(&user_ingress("custom.ingress.kubernetes.io"))
        .await;
    // The builtin checks and Flagger's `latency` template, which reads the canary pods' own
    // podinfo series (`path="root"`) as Prometheus scrapes them through the data plane. A
    // new canary pod has no series until it is discovered and scraped twice: a higher
    // threshold leaves room for those first seconds.
    env.apply(&latency_template(&env)).await;
    let metrics = format!(
        "{}    - name: latency\n      templateRef: {{name: latency}}\n      thresholdRange: {{max: 0.5}}\n      interval: 30s\n",
        builtin_metrics()
    );
    init(&env, &nginx_canary(&progressive(10, &metrics))).await;
    // The canary Ingress: the user's, pointed at podinfo-canary, canary annotations reset.
    assert_eq!(
        env.jsonpath(
            "ingress/podinfo-canary",
            ".spec.rules[0].http.paths[0].backend.service.name"
        )
        .await,
        "podinfo-canary"
    );
    assert_eq!(
        env.jsonpath(
            "ingress/podinfo-canary",
            r".metadata.annotations.custom\.ingress\.kubernetes\.io/canary"
        )
        .await,
        "true"
    );
    let ingress = canary_ingress(&env, custom_ingress_weight);
    assert_eq!(
        ingress
            .json()
            .await
            .as_ref()
            .and_then(custom_ingress_weight),
        Some(0)
    );
    // Load through the ingress host: the data plane's ingress-nginx sends the canary its
    // weight, and the builtin checks read its series.
    let (seen, counts) = promote_progressively_at(&env, &ingress, INGRESS_URL).await;
    assert_progressive(&seen);
    assert!(counts.get("6.0.1").copied().unwrap_or(0) > 0, "{counts:?}");
    let canary_requests = prom_value(
        &env,
        "nginx_ingress_controller_requests taken by the canary",
        &nginx_canary_requests(""),
    )
    .await;
    assert!(canary_requests > 0.0);
    // The template's query answered by the canary pods' series.
    let p99 = prom_value(
        &env,
        "Flagger's latency template over the canary's pods (s)",
        &LATENCY_QUERY
            .replace("{{ namespace }}", NS)
            .replace("{{ target }}", "podinfo")
            .replace("{{ interval }}", "1m"),
    )
    .await;
    assert!(p99 > 0.0 && p99 < 0.5, "{p99}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_faulty_canary_is_rolled_back_by_the_builtin_success_rate() {
    let env = start_env().await;
    env.apply(&user_ingress("nginx.ingress.kubernetes.io"))
        .await;
    init(&env, &nginx_canary(&progressive(2, &builtin_metrics()))).await;
    let ingress = canary_ingress(&env, nginx_ingress_weight);
    faulty_canary_is_rolled_back(&env, &ingress, INGRESS_URL).await;
    let failures = prom_value(
        &env,
        "nginx_ingress_controller_requests taken by the canary, 5xx",
        &nginx_canary_requests(r#",status=~"5.*""#),
    )
    .await;
    assert!(failures > 0.0);
}

fn custom_ingress_weight(i: &Value) -> Option<u64> {
    i.pointer("/metadata/annotations/custom.ingress.kubernetes.io~1canary-weight")?
        .as_str()?
        .parse()
        .ok()
}

fn nginx_ingress_weight(i: &Value) -> Option<u64> {
    i.pointer("/metadata/annotations/nginx.ingress.kubernetes.io~1canary-weight")?
        .as_str()?
        .parse()
        .ok()
}

/// One request: the answering version and its `Set-Cookie` headers.
async fn answer_with_cookies(
    http: &reqwest::Client,
    cookie: Option<&str>,
) -> (String, Vec<String>) {
    let mut req = http.get("http://podinfo.test/");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.expect("request through the data plane");
    let set: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(String::from))
        .collect();
    let body: Value = r.json().await.unwrap_or_default();
    (body["version"].as_str().unwrap_or("?").to_string(), set)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_session_affinity_keeps_a_client_on_the_canary_and_expires_its_cookie() {
    let env = start_env().await;
    let analysis = format!(
        "    interval: 1s\n    threshold: 5\n    maxWeight: 20\n    stepWeight: 10\n    sessionAffinity: {{cookieName: flagger-cookie, maxAge: 21600}}\n    webhooks:\n    - name: gate-promotion\n      type: confirm-promotion\n      url: {}\n",
        env.hooks.url("promotion")
    );
    init(&env, &canary("istio", "", &analysis)).await;
    env.hooks.set("promotion", 403);
    env.apply(&workload("6.0.1", "")).await;
    // Held at 80/20 by the closed promotion gate.
    env.wait_phase("podinfo", CanaryPhase::WaitingPromotion)
        .await;
    let status = env.canary("podinfo").await.status.unwrap();
    let cookie = status.session_affinity_cookie.clone().unwrap_or_default();
    let value = cookie.strip_prefix("flagger-cookie=").unwrap_or_default();
    assert!(
        value.len() == 10 && value.chars().all(|c| c.is_ascii_alphabetic()),
        "{status:?}"
    );
    assert_eq!(
        env.jsonpath("virtualservices/podinfo", ".spec.http[1].route[1].weight")
            .await,
        "20"
    );

    // Without the cookie: the weighted route; every canary answer hands out the cookie.
    let http = proxied(&env);
    let (mut canary_answers, mut primary_answers) = (0, 0);
    for _ in 0..100 {
        let (version, set) = answer_with_cookies(&http, None).await;
        if version == "6.0.1" {
            canary_answers += 1;
            assert_eq!(set, vec![format!("{cookie}; Max-Age=21600")]);
        } else {
            primary_answers += 1;
            assert!(set.is_empty(), "{set:?}");
        }
    }
    println!("without the cookie: canary {canary_answers}, primary {primary_answers}");
    assert!(canary_answers > 0 && primary_answers > canary_answers);
    // With it: always the canary.
    for _ in 0..30 {
        let (version, _) = answer_with_cookies(&http, Some(&format!("theme=dark; {cookie}"))).await;
        assert_eq!(version, "6.0.1");
    }

    // Promotion: the cookie is retired and expired on the clients that still send it.
    env.hooks.set("promotion", 200);
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    let status = env.canary("podinfo").await.status.unwrap();
    assert_eq!(status.session_affinity_cookie, None, "{status:?}");
    assert_eq!(
        status.previous_session_affinity_cookie.as_deref(),
        Some(cookie.as_str())
    );
    let (_, set) = answer_with_cookies(&http, Some(&cookie)).await;
    assert_eq!(set, vec![format!("{cookie}; Max-Age=-1")]);
    let (_, set) = answer_with_cookies(&http, None).await;
    assert!(set.is_empty(), "{set:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatewayapi_session_affinity_keeps_a_client_on_the_canary() {
    let env = start_env().await;
    let analysis = format!(
        "    interval: 1s\n    threshold: 5\n    maxWeight: 20\n    stepWeight: 10\n    sessionAffinity: {{cookieName: flagger-cookie, primaryCookieName: flagger-primary, maxAge: 21600}}\n    webhooks:\n    - name: gate-promotion\n      type: confirm-promotion\n      url: {}\n",
        env.hooks.url("promotion")
    );
    init(&env, &canary("gatewayapi:v1", GAMMA_REFS, &analysis)).await;
    env.hooks.set("promotion", 403);
    env.apply(&workload("6.0.1", "")).await;
    // Held at 80/20 by the closed promotion gate.
    env.wait_phase("podinfo", CanaryPhase::WaitingPromotion)
        .await;
    let status = env.canary("podinfo").await.status.unwrap();
    let cookie = status.session_affinity_cookie.clone().unwrap_or_default();
    let value = cookie.strip_prefix("flagger-cookie=").unwrap_or_default();
    assert!(
        value.len() == 10 && value.chars().all(|c| c.is_ascii_alphabetic()),
        "{status:?}"
    );
    let primary_cookie = status
        .primary_session_affinity_cookie
        .clone()
        .unwrap_or_default();
    assert!(
        primary_cookie.starts_with("flagger-primary=") && primary_cookie.len() == 26,
        "{status:?}"
    );
    // The cookie rules first (all to the canary, all to the primary), then the weighted rule.
    assert_eq!(
        env.jsonpath(
            "httproutes/podinfo",
            ".spec.rules[0].matches[0].headers[0].value"
        )
        .await,
        format!(".*flagger-cookie.*{value}.*")
    );
    assert_eq!(
        env.jsonpath("httproutes/podinfo", ".spec.rules[2].backendRefs[1].weight")
            .await,
        "20"
    );

    // Without a cookie: the weighted rule; every canary answer hands out the canary cookie,
    // every primary answer the primary cookie for one analysis interval (the backendRefs'
    // ResponseHeaderModifiers).
    let http = proxied(&env);
    let (mut canary_answers, mut primary_answers) = (0, 0);
    for _ in 0..100 {
        let (version, set) = answer_with_cookies(&http, None).await;
        if version == "6.0.1" {
            canary_answers += 1;
            assert_eq!(set, vec![format!("{cookie}; Max-Age=21600")]);
        } else {
            primary_answers += 1;
            assert_eq!(set, vec![format!("{primary_cookie}; Max-Age=1")]);
        }
    }
    println!("without a cookie: canary {canary_answers}, primary {primary_answers}");
    assert!(canary_answers > 0 && primary_answers > canary_answers);
    // With it: always the canary (the Cookie regex rule).
    for _ in 0..30 {
        let (version, _) = answer_with_cookies(&http, Some(&format!("theme=dark; {cookie}"))).await;
        assert_eq!(version, "6.0.1");
    }
    // With the primary cookie: always the primary.
    for _ in 0..30 {
        let (version, _) = answer_with_cookies(&http, Some(&primary_cookie)).await;
        assert_eq!(version, "6.0.0");
    }

    // Promotion: the cookie is retired and expired on the clients that still send it.
    env.hooks.set("promotion", 200);
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    let status = env.canary("podinfo").await.status.unwrap();
    assert_eq!(status.session_affinity_cookie, None, "{status:?}");
    assert_eq!(
        status.previous_session_affinity_cookie.as_deref(),
        Some(cookie.as_str())
    );
    let (version, set) = answer_with_cookies(&http, Some(&cookie)).await;
    assert_eq!(version, "6.0.1");
    assert_eq!(set, vec![format!("{cookie}; Max-Age=-1")]);
    let (_, set) = answer_with_cookies(&http, None).await;
    assert!(set.is_empty(), "{set:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_ab_canary_gets_only_header_matching_requests() {
    let env = start_env().await;
    env.apply(&user_ingress("nginx.ingress.kubernetes.io"))
        .await;
    // A header match and a cookie match (`canary-by-header` with its value, `canary-by-cookie`).
    let analysis = "    interval: 1s\n    threshold: 5\n    iterations: 10\n    match:\n    - headers:\n        x-canary: {exact: insider}\n    - headers:\n        cookie: {exact: canary}\n";
    init(&env, &nginx_canary(analysis)).await;
    let annotation =
        |name: &str| format!(r".metadata.annotations.nginx\.ingress\.kubernetes\.io/{name}");
    env.apply(&workload("6.0.1", "")).await;
    env.wait_jsonpath(
        "ingress/podinfo-canary",
        &annotation("canary-by-header"),
        "x-canary",
    )
    .await;
    for (name, want) in [
        ("canary-by-header-value", "insider"),
        ("canary-by-cookie", "canary"),
        ("canary-weight", "0"),
    ] {
        assert_eq!(
            env.jsonpath("ingress/podinfo-canary", &annotation(name))
                .await,
            want,
            "{name}"
        );
    }
    // Through the Ingress host: the header or the cookie (`always`) reach the canary, the rest
    // the primary.
    let with_header = answers_at(&env, INGRESS_URL, &[("x-canary", "insider")], 30).await;
    let with_cookie = answers_at(
        &env,
        INGRESS_URL,
        &[("cookie", "theme=dark; canary=always")],
        30,
    )
    .await;
    let other_header = answers_at(&env, INGRESS_URL, &[("x-canary", "outsider")], 20).await;
    let without = answers_at(&env, INGRESS_URL, &[], 30).await;
    assert_eq!(with_header.get("6.0.1"), Some(&30), "{with_header:?}");
    assert_eq!(with_cookie.get("6.0.1"), Some(&30), "{with_cookie:?}");
    assert_eq!(other_header.get("6.0.0"), Some(&20), "{other_header:?}");
    assert_eq!(without.get("6.0.0"), Some(&30), "{without:?}");
    // ingress-nginx's series: the canary upstream took exactly those 60.
    let canary_requests = dataplane_counter(
        &env,
        "nginx_ingress_controller_requests",
        r#"canary="test-podinfo-canary-"#,
    )
    .await;
    println!("nginx_ingress_controller_requests taken by the canary: {canary_requests}");
    assert_eq!(canary_requests, 60.0);
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.1"));
    // Promoted: the A/B annotations are gone, every request reaches the new primary.
    env.wait_jsonpath(
        "ingress/podinfo-canary",
        &annotation("canary-by-header"),
        "",
    )
    .await;
    assert_eq!(
        env.jsonpath("ingress/podinfo-canary", &annotation("canary-by-cookie"))
            .await,
        ""
    );
    let after = answers_at(&env, INGRESS_URL, &[("x-canary", "insider")], 10).await;
    assert_eq!(after.get("6.0.1"), Some(&10), "{after:?}");
}

/// The Grafana dashboard shipped in `deploy/grafana` (and the chart): every query in it, with
/// its variables set to this canary, parses and returns series from the e2e Prometheus after
/// an istio canary was promoted and its next revision rolled back (the controller's
/// `/metrics` scraped as the pod annotations have it, the mesh's series from the data plane,
/// podinfo's from the exporter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_return_series() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/grafana/flagger-canary.json"
        ))
        .unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut queries: Vec<(String, String)> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((
                panel["title"].as_str().unwrap().to_string(),
                target["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["query"]["query"].as_str() {
            queries.push((format!("variable {}", var["name"]), q.to_string()));
        }
    }
    assert!(queries.len() >= 12, "{queries:?}");

    let env = start_env_opts(Options {
        scrape_controller: true,
        ..Default::default()
    })
    .await;
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    init(
        &env,
        &canary("istio", "", &progressive(2, &builtin_metrics())),
    )
    .await;
    let vs = virtual_service(&env);
    promote_progressively(&env, &vs).await;
    {
        let _load = Load::start(&env, &[]);
        env.apply(&workload("6.0.2", r#""localkube.dev/error-ratio": "0.5""#))
            .await;
        env.wait_phase("podinfo", CanaryPhase::Failed).await;
    }
    let prom = env.prometheus.as_ref().unwrap();
    // The rollback's counter reaches Prometheus at the next scrape of the controller.
    let last = Mutex::new(String::new());
    support::wait_for(
        "the controller's failure counter scraped",
        &last,
        || async {
            (prom
                .query(r#"flagger_canary_failures_total{name="podinfo"}"#)
                .await
                .unwrap_or(0.0)
                >= 1.0)
                .then_some(())
        },
    )
    .await;

    // A little past now, so that the last step covers the newest samples.
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 5.0;
    let http = reqwest::Client::new();
    let mut report = Vec::new();
    for (panel, expr) in &queries {
        // Grafana's interpolation of the variables, for one canary.
        let q = expr
            .replace("$namespace", NS)
            .replace("$canary", "podinfo")
            .replace("$__rate_interval", "10s");
        let (path, params): (&str, Vec<(&str, String)>) = if let Some(inner) = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
        {
            // label_values(<series>, <label>): Grafana asks the series API.
            let (series, _label) = inner.rsplit_once(',').unwrap();
            (
                "/api/v1/series",
                vec![
                    ("match[]", series.trim().to_string()),
                    ("start", start.to_string()),
                    ("end", end.to_string()),
                ],
            )
        } else {
            (
                "/api/v1/query_range",
                vec![
                    ("query", q.clone()),
                    ("start", start.to_string()),
                    ("end", end.to_string()),
                    ("step", "1".into()),
                ],
            )
        };
        let body: Value = http
            .get(format!("{}{path}", prom.url()))
            .query(&params)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "success", "{panel}: {q}\n{body}");
        let series = body["data"]["result"]
            .as_array()
            .or_else(|| body["data"].as_array())
            .map_or(0, Vec::len);
        report.push(format!("{series:>3} series  {panel}: {q}"));
        assert!(series > 0, "{panel}: no series for {q}\n{body}");
    }
    println!("{}", report.join("\n"));
}

// ----- Kuma, App Mesh, Knative (issue 16) ------------------------------------------------

/// The CRDs of Kuma's TrafficRoute (kuma chart 2.x, `kuma.io_trafficroutes.yaml`: cluster
/// scope, a top-level `mesh`), App Mesh's virtual nodes, routers and services (eks-charts
/// appmesh-controller 1.13 serves `v1beta2`; the legacy controller's `v1beta1` is served by
/// the same CRDs here, without conversion) and Knative Serving's Service, Configuration,
/// Revision and Route (serving 1.x, `config/core/300-resources`: status subresources and the
/// short names). Written after the published files: names, scope, versions, subresources and
/// short names as they are; the schemas keep unknown fields instead of the full OpenAPI.
fn serverless_crds() -> String {
    let schema =
        "schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}";
    let mut out = String::new();
    for (group, kind, plural, short, scope, versions, status) in [
        (
            "kuma.io",
            "TrafficRoute",
            "trafficroutes",
            "",
            "Cluster",
            &["v1alpha1"][..],
            false,
        ),
        (
            "appmesh.k8s.aws",
            "VirtualNode",
            "virtualnodes",
            "",
            "Namespaced",
            &["v1beta2", "v1beta1"][..],
            true,
        ),
        (
            "appmesh.k8s.aws",
            "VirtualRouter",
            "virtualrouters",
            "",
            "Namespaced",
            &["v1beta2", "v1beta1"][..],
            true,
        ),
        (
            "appmesh.k8s.aws",
            "VirtualService",
            "virtualservices",
            "",
            "Namespaced",
            &["v1beta2", "v1beta1"][..],
            true,
        ),
        (
            "serving.knative.dev",
            "Service",
            "services",
            "kservice, ksvc",
            "Namespaced",
            &["v1"][..],
            true,
        ),
        (
            "serving.knative.dev",
            "Configuration",
            "configurations",
            "config, cfg",
            "Namespaced",
            &["v1"][..],
            true,
        ),
        (
            "serving.knative.dev",
            "Revision",
            "revisions",
            "rev",
            "Namespaced",
            &["v1"][..],
            true,
        ),
        (
            "serving.knative.dev",
            "Route",
            "routes",
            "rt",
            "Namespaced",
            &["v1"][..],
            true,
        ),
    ] {
        let subresources = if status {
            ", subresources: {status: {}}"
        } else {
            ""
        };
        let versions: String = versions
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    "  - {{name: {v}, served: true, storage: {}, {schema}{subresources}}}\n",
                    i == 0
                )
            })
            .collect();
        out.push_str(&format!(
            "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: {plural}.{group}}}\nspec:\n  group: {group}\n  scope: {scope}\n  names: {{kind: {kind}, plural: {plural}, singular: {}, listKind: {kind}List, shortNames: [{short}]}}\n  versions:\n{versions}",
            kind.to_lowercase()
        ));
    }
    out
}

async fn start_serverless_env() -> Env {
    let env = start_env().await;
    env.apply(&serverless_crds()).await;
    env
}

fn kuma_weight(r: &Value) -> Option<u64> {
    r.pointer("/spec/conf/split")?
        .as_array()?
        .iter()
        .find(|s| {
            s.pointer("/destination/kuma.io~1service")
                .and_then(Value::as_str)
                .is_some_and(|t| t.starts_with("podinfo-canary_"))
        })?["weight"]
        .as_u64()
}

/// The TrafficRoute, cluster-scoped.
fn traffic_route(env: &Env) -> RoutingObject {
    let gvk = GroupVersionKind::gvk("kuma.io", "v1alpha1", "TrafficRoute");
    RoutingObject {
        api: Api::all_with(
            env.client.clone(),
            &ApiResource::from_gvk_with_plural(&gvk, "trafficroutes"),
        ),
        name: "podinfo",
        canary_weight: kuma_weight,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kuma_canary_advances_through_its_traffic_route_and_is_promoted() {
    let env = start_serverless_env().await;
    init(
        &env,
        &canary("kuma", "", &progressive(5, &builtin_metrics())),
    )
    .await;
    let route = traffic_route(&env);
    let initial = route.json().await.unwrap();
    // Cluster-scoped, in the default mesh, owned by nobody.
    assert_eq!(initial["mesh"], "default", "{initial}");
    assert!(
        initial["metadata"].get("ownerReferences").is_none(),
        "{initial}"
    );
    assert_eq!(kuma_weight(&initial), Some(0), "{initial}");
    let (seen, counts) = promote_progressively(&env, &route).await;
    assert_progressive(&seen);
    assert!(counts.get("6.0.1").copied().unwrap_or(0) > 0, "{counts:?}");
    // Kuma's proxies' series, by the canary Service's tag, reached Prometheus.
    let canary_requests = prom_value(
        &env,
        "envoy_cluster_upstream_rq of the canary's kuma.io/service",
        r#"sum(envoy_cluster_upstream_rq{service=~"podinfo-canary_test_svc_[0-9a-zA-Z-]+"})"#,
    )
    .await;
    assert!(canary_requests > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kuma_faulty_canary_is_rolled_back_by_the_builtin_success_rate() {
    let env = start_serverless_env().await;
    init(
        &env,
        &canary("kuma", "", &progressive(2, &builtin_metrics())),
    )
    .await;
    faulty_canary_is_rolled_back(&env, &traffic_route(&env), APEX_URL).await;
    let failures = prom_value(
        &env,
        "envoy_cluster_upstream_rq of the canary's kuma.io/service, 5xx",
        r#"sum(envoy_cluster_upstream_rq{service=~"podinfo-canary_test_svc_[0-9a-zA-Z-]+",envoy_response_code=~"5.*"})"#,
    )
    .await;
    assert!(failures > 0.0);
}

/// App Mesh's service block: the mesh and a backend.
const APPMESH_SERVICE: &str = "    meshName: global\n    backends: [backend.test]";

fn appmesh_v1beta2_weight(r: &Value) -> Option<u64> {
    r.pointer("/spec/routes/0/httpRoute/action/weightedTargets")?
        .as_array()?
        .iter()
        .find(|t| t["virtualNodeRef"]["name"] == "podinfo-canary")?["weight"]
        .as_u64()
}

fn appmesh_v1beta1_weight(r: &Value) -> Option<u64> {
    r.pointer("/spec/routes/0/http/action/weightedTargets")?
        .as_array()?
        .iter()
        .find(|t| t["virtualNodeName"] == "podinfo-canary")?["weight"]
        .as_u64()
}

/// App Mesh's series of the canary's pods, as its builtin queries select them.
const APPMESH_PODS_REQUESTS: &str = r#"sum(envoy_cluster_upstream_rq{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"})"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appmesh_v1beta2_canary_advances_through_its_virtual_router_and_is_promoted() {
    let env = start_serverless_env().await;
    init(
        &env,
        &canary(
            "appmesh:v1beta2",
            APPMESH_SERVICE,
            &progressive(5, &builtin_metrics()),
        ),
    )
    .await;
    // The virtual nodes select the pods; the canary one names the canary Service by DNS.
    assert_eq!(
        env.jsonpath(
            "virtualnodes.appmesh.k8s.aws/podinfo-canary",
            ".spec.serviceDiscovery.dns.hostname"
        )
        .await,
        "podinfo-canary.test.svc.cluster.local."
    );
    assert_eq!(
        env.jsonpath(
            "virtualnodes.appmesh.k8s.aws/podinfo-primary",
            ".spec.backends[0].virtualService.virtualServiceRef.name"
        )
        .await,
        "backend.test"
    );
    let router = RoutingObject::new(
        &env,
        "appmesh.k8s.aws/v1beta2",
        "VirtualRouter",
        "virtualrouters",
        appmesh_v1beta2_weight,
    );
    let (seen, counts) = promote_progressively(&env, &router).await;
    assert_progressive(&seen);
    assert!(counts.get("6.0.1").copied().unwrap_or(0) > 0, "{counts:?}");
    let canary_requests = prom_value(
        &env,
        "App Mesh envoy_cluster_upstream_rq of the canary's pods",
        APPMESH_PODS_REQUESTS,
    )
    .await;
    assert!(canary_requests > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appmesh_v1beta1_canary_advances_through_its_virtual_service_and_is_promoted() {
    let env = start_serverless_env().await;
    init(
        &env,
        &canary(
            "appmesh",
            APPMESH_SERVICE,
            &progressive(5, &builtin_metrics()),
        ),
    )
    .await;
    let mut service = RoutingObject::new(
        &env,
        "appmesh.k8s.aws/v1beta1",
        "VirtualService",
        "virtualservices",
        appmesh_v1beta1_weight,
    );
    service.name = "podinfo.test";
    let (seen, counts) = promote_progressively(&env, &service).await;
    assert_progressive(&seen);
    assert!(counts.get("6.0.1").copied().unwrap_or(0) > 0, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appmesh_faulty_canary_is_rolled_back_by_the_builtin_success_rate() {
    let env = start_serverless_env().await;
    init(
        &env,
        &canary(
            "appmesh:v1beta2",
            APPMESH_SERVICE,
            &progressive(2, &builtin_metrics()),
        ),
    )
    .await;
    let router = RoutingObject::new(
        &env,
        "appmesh.k8s.aws/v1beta2",
        "VirtualRouter",
        "virtualrouters",
        appmesh_v1beta2_weight,
    );
    faulty_canary_is_rolled_back(&env, &router, APEX_URL).await;
    let failures = prom_value(
        &env,
        "App Mesh envoy_cluster_upstream_rq of the canary's pods, 5xx",
        // The canary's pods are gone (scaled down): over the last minute.
        r#"sum(max_over_time(envoy_cluster_upstream_rq{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",envoy_response_code=~"5.*"}[1m]))"#,
    )
    .await;
    assert!(failures > 0.0);
}

/// A Knative Service running podinfo `tag`; `annotations` go on the revision template.
fn knative_service(tag: &str, annotations: &str) -> String {
    let scrape = r#"prometheus.io/scrape: "true", prometheus.io/port: "9797""#;
    let annotations = if annotations.is_empty() {
        scrape.to_string()
    } else {
        format!("{scrape}, {annotations}")
    };
    format!(
        r#"
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {{name: podinfo, namespace: {NS}}}
spec:
  template:
    metadata:
      labels: {{app: podinfo}}
      annotations: {{{annotations}}}
    spec:
      containers:
      - name: podinfod
        image: {PODINFO}:{tag}
        ports: [{{name: http1, containerPort: 9898}}]
"#
    )
}

fn knative_canary(analysis: &str) -> String {
    format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: podinfo, namespace: {NS}}}
spec:
  provider: knative
  targetRef: {{apiVersion: serving.knative.dev/v1, kind: Service, name: podinfo}}
  progressDeadlineSeconds: 60
  revertOnDeletion: true
  analysis:
{analysis}
"#
    )
}

/// The percent of the Service's `latestRevision` traffic entry: the canary's.
fn knative_weight(s: &Value) -> Option<u64> {
    s.pointer("/spec/traffic")?
        .as_array()?
        .iter()
        .find(|t| t["latestRevision"] == true)?["percent"]
        .as_u64()
}

fn knative_services(env: &Env) -> RoutingObject {
    RoutingObject::new(
        env,
        "serving.knative.dev/v1",
        "Service",
        "services",
        knative_weight,
    )
}

/// Applies the Knative Service and the canary; waits for `Initialized` with all the traffic on
/// the first revision.
async fn knative_init(env: &Env, analysis: &str) {
    env.apply(&knative_service("6.0.0", "")).await;
    env.apply(&knative_canary(analysis)).await;
    env.wait_phase("podinfo", CanaryPhase::Initialized).await;
    assert_knative_primary(env, "podinfo-00001").await;
    // The primary was ready as soon as the annotation was written.
    let events = env.events("podinfo").await;
    assert!(
        !events.iter().any(|e| e.contains("annotation not found")),
        "{events:?}"
    );
}

/// The primary-revision annotation names `revision`, and the Service's status comes to send
/// it all the traffic.
async fn assert_knative_primary(env: &Env, revision: &str) {
    assert_eq!(
        env.jsonpath(
            "ksvc/podinfo",
            r".metadata.annotations.flagger\.app/primary-revision"
        )
        .await,
        revision
    );
    env.wait_jsonpath(
        "ksvc/podinfo",
        ".status.traffic[?(@.percent==100)].revisionName",
        revision,
    )
    .await;
}

/// The revision the Service's status sends 100% of the traffic to.
async fn knative_serving_revision(env: &Env) -> String {
    env.jsonpath(
        "ksvc/podinfo",
        ".status.traffic[?(@.percent==100)].revisionName",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knative_new_revision_is_analysed_by_traffic_percentage_and_promoted() {
    let env = start_serverless_env().await;
    knative_init(&env, &progressive(5, &builtin_metrics())).await;
    let service = knative_services(&env);
    let weights = service.record();
    let load = Load::start(&env, &[]);
    env.apply(&knative_service("6.0.1", "")).await;
    env.wait_phase("podinfo", CanaryPhase::Progressing).await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    // Promoted by revision: the annotation names the new one and it has all the traffic.
    assert_knative_primary(&env, "podinfo-00002").await;
    service.settled(&weights).await;
    let seen = weights.get();
    let counts = load.counts();
    println!("weights seen: {seen:?}; answers: {counts:?}");
    assert_progressive(&seen);
    assert!(counts.get("6.0.1").copied().unwrap_or(0) > 0, "{counts:?}");
    // No -primary Deployment was made: Knative keeps the revisions.
    assert!(
        env.kubectl(&["-n", NS, "get", "deployments", "-o", "name"])
            .await
            .lines()
            .all(|l| !l.contains("podinfo-primary")),
    );
    // Kourier's series for the new revision, as the knative observer reads them.
    let canary_requests = prom_value(
        &env,
        "envoy_cluster_upstream_rq of revision podinfo-00002",
        r#"sum(envoy_cluster_upstream_rq{envoy_cluster_name=~"test/podinfo-00002"})"#,
    )
    .await;
    assert!(canary_requests > 0.0);
    // After promotion every request reaches the new revision.
    let after = answers_at(&env, APEX_URL, &[], 20).await;
    assert_eq!(after.get("6.0.1"), Some(&20), "{after:?}");
    // Deleting the Canary (revertOnDeletion) takes the annotation off; the traffic stays.
    env.kubectl(&["-n", NS, "delete", "canary", "podinfo"])
        .await;
    env.wait_gone("canary/podinfo").await;
    assert_eq!(
        env.jsonpath(
            "ksvc/podinfo",
            r".metadata.annotations.flagger\.app/primary-revision"
        )
        .await,
        ""
    );
    assert_eq!(knative_serving_revision(&env).await, "podinfo-00002");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knative_faulty_revision_is_rolled_back_to_the_old_revision() {
    let env = start_serverless_env().await;
    knative_init(&env, &progressive(2, &builtin_metrics())).await;
    let service = knative_services(&env);
    let weights = service.record();
    let load = Load::start(&env, &[]);
    env.apply(&knative_service(
        "6.0.1",
        r#""localkube.dev/error-ratio": "0.5""#,
    ))
    .await;
    env.wait_phase("podinfo", CanaryPhase::Failed).await;
    service.settled(&weights).await;
    let seen = weights.get();
    let counts = load.counts();
    println!("weights seen: {seen:?}; answers: {counts:?}");
    let events = env.events("podinfo").await;
    println!("events:\n{}", events.join("\n"));
    assert!(
        events
            .iter()
            .any(|e| e.contains("Halt podinfo.test advancement success rate")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.contains("Rolling back")),
        "{events:?}"
    );
    let max = seen.iter().max().copied().unwrap_or(0);
    assert!((10..=20).contains(&max), "weights seen: {seen:?}");
    assert_eq!(seen.last(), Some(&0), "weights seen: {seen:?}");
    assert!(
        counts.get("status 500").copied().unwrap_or(0) > 0,
        "{counts:?}"
    );
    // The Service's traffic is back on the old revision, which stays the primary.
    assert_knative_primary(&env, "podinfo-00001").await;
    let after = answers_at(&env, APEX_URL, &[], 20).await;
    assert_eq!(after.get("6.0.0"), Some(&20), "{after:?}");
}
