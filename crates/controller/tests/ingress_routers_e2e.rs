//! The ingress-family routers end to end (Contour, Gloo, Traefik, Skipper, APISIX): localkube
//! with the projects' own CRDs installed (`tests/fixtures/crds`), its data plane playing each
//! gateway for `app.example.com` from the user's objects (a root HTTPProxy, a delegating Gloo
//! VirtualService, an IngressRoute, a `skipper` Ingress, an ApisixRoute), a real Prometheus
//! scraping the gateway's own series, the real kubectl, and `flagger controller` in-process.
//!
//! Per router, one canary is promoted while load flows through the gateway, its weights read
//! back from the routing object as they change (10 … 50, then 0), and the next revision, half
//! of whose requests fail, is rolled back by the builtin success rate Flagger's query for that
//! gateway reads from Prometheus. Contour and Gloo also route an A/B test by header, measured by
//! the answers clients get. Each test has its own cluster.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use flagger_api::CanaryPhase;
use serde_json::Value;
use support::routing::*;
use support::{Env, NS, Options};

/// The CRD files of `fixtures/crds` for a gateway (file name prefix).
fn crd_files(prefix: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/crds");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no CRD file {prefix}* in {}",
        dir.display()
    );
    files
}

/// An environment with Prometheus and the data plane, the gateway's CRDs installed as
/// published (server-side: the largest are over the client-side apply annotation's limit).
async fn start_env(crds: &str, controller_args: &'static [&'static str]) -> Env {
    let env = Env::start(Options {
        prometheus: true,
        dataplane: true,
        controller_args,
        ..Default::default()
    })
    .await;
    if !crds.is_empty() {
        for f in crd_files(crds) {
            env.kubectl(&["apply", "--server-side", "-f", &f.to_string_lossy()])
                .await;
        }
    }
    env
}

/// The weight of the entry of `list` (at `pointer`) whose `key` is `name`: `Some(0)` when the
/// object has no such entry or writes no weight.
fn weight_in(o: &Value, pointer: &str, key: &str, name: &str) -> Option<u64> {
    let list = o.pointer(pointer).and_then(Value::as_array);
    Some(
        list.and_then(|l| {
            l.iter()
                .find(|e| e.pointer(key) == Some(&Value::from(name)))
        })
        .and_then(|e| e["weight"].as_u64())
        .unwrap_or(0),
    )
}

/// Runs the initialized canary `yaml` (threshold 5) to promotion, then rolls out a faulty
/// revision with threshold 2 and checks its rollback. `series` is a query of the gateway's
/// series for the canary, `EXTRA` standing for more matchers: the canary's requests must have
/// been counted, and with `failures` its 5xx answers too.
async fn promoted_then_rolled_back(
    env: &Env,
    yaml: &str,
    object: &RoutingObject,
    series: &str,
    failures: &str,
) {
    let (seen, counts) = promote_progressively_at(env, object, INGRESS_URL).await;
    assert_progressive(&seen);
    assert!(counts.get("6.0.1").copied().unwrap_or(0) > 0, "{counts:?}");
    let canary_requests = prom_value(
        env,
        "the gateway's series for the canary",
        &series.replace("EXTRA", ""),
    )
    .await;
    assert!(canary_requests > 0.0);
    // The checks of the next revision read the gateway's series; two failures roll it back.
    // The canary's series are the same as during the promotion just done (a gateway files
    // them by Service or route, not by pod): a 5 s window leaves the promoted revision's
    // healthy requests out of the first checks.
    env.apply(
        &yaml
            .replace("threshold: 5", "threshold: 2")
            .replace("interval: 15s", "interval: 5s"),
    )
    .await;
    faulty_rollout_is_rolled_back(env, object, INGRESS_URL, ("6.0.2", "6.0.1"), 10..=20).await;
    let failed = prom_value(
        env,
        "the gateway's series for the canary, 5xx",
        &series.replace("EXTRA", failures),
    )
    .await;
    assert!(failed > 0.0);
}

/// The Canary for podinfo of `provider`, with `extra` spec lines (indented 2) and `service`
/// lines (indented 4).
fn ingress_canary(provider: &str, extra: &str, service: &str, analysis: &str) -> String {
    canary(provider, service, analysis).replace(
        "  progressDeadlineSeconds: 60",
        &format!("  progressDeadlineSeconds: 60\n{extra}"),
    )
}

/// `n` requests to the gateway with `headers`, by answer.
async fn through_gateway(env: &Env, headers: &[(&str, &str)], n: usize) -> BTreeMap<String, usize> {
    answers_at(env, INGRESS_URL, headers, n).await
}

// === contour ===

const CONTOUR_ROOT: &str = r#"
apiVersion: projectcontour.io/v1
kind: HTTPProxy
metadata: {name: podinfo-ingress, namespace: test}
spec:
  ingressClassName: contour
  virtualhost: {fqdn: app.example.com}
  includes:
  - name: podinfo
    namespace: test
    conditions:
    - prefix: /
"#;

const CONTOUR_SERVICE: &str = "    timeout: 15s\n    retries: {attempts: 3, perTryTimeout: 5s, retryOn: \"5xx,gateway-error\"}";

fn http_proxy(env: &Env) -> RoutingObject {
    RoutingObject::new(
        env,
        "projectcontour.io/v1",
        "HTTPProxy",
        "httpproxies",
        |p| weight_in(p, "/spec/routes/0/services", "/name", "podinfo-canary"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contour_canary_is_promoted_through_its_weights_and_a_faulty_one_rolled_back() {
    let env = start_env("contour", &["-ingress-class=contour"]).await;
    env.apply(CONTOUR_ROOT).await;
    let yaml = ingress_canary(
        "contour",
        "",
        CONTOUR_SERVICE,
        &progressive(5, &builtin_metrics()),
    );
    init(&env, &yaml).await;
    // The HTTPProxy: owned by the Canary, the controller's ingress class, the service options,
    // Linkerd's destination header per service.
    let jp = |path: &'static str| env.jsonpath("httpproxies/podinfo", path);
    assert_eq!(jp(".metadata.ownerReferences[0].kind").await, "Canary");
    assert_eq!(jp(".spec.ingressClassName").await, "contour");
    assert_eq!(jp(".spec.routes[0].timeoutPolicy.response").await, "15s");
    assert_eq!(
        jp(".spec.routes[0].retryPolicy.retryOn").await,
        r#"["5xx","gateway-error"]"#
    );
    assert_eq!(
        jp(".spec.routes[0].services[1].requestHeadersPolicy.set[0].value").await,
        "podinfo-canary.test.svc.cluster.local:80"
    );
    promoted_then_rolled_back(
        &env,
        &yaml,
        &http_proxy(&env),
        r#"sum(envoy_cluster_upstream_rq{envoy_cluster_name="test_podinfo-canary_80"EXTRA})"#,
        r#",envoy_response_code=~"5.*""#,
    )
    .await;
}

const AB_ANALYSIS: &str = "    interval: 1s\n    threshold: 5\n    iterations: 10\n    match:\n    - headers:\n        x-canary: {exact: insider}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contour_ab_canary_gets_only_header_matching_requests() {
    let env = start_env("contour", &[]).await;
    env.apply(&CONTOUR_ROOT.replace("  ingressClassName: contour\n", ""))
        .await;
    init(&env, &ingress_canary("contour", "", "", AB_ANALYSIS)).await;
    env.apply(&workload("6.0.1", "")).await;
    // Route 0 carries the header condition and all the weight; route 1 is the default.
    env.wait_jsonpath(
        "httpproxies/podinfo",
        ".spec.routes[0].services[1].weight",
        "100",
    )
    .await;
    assert_eq!(
        env.jsonpath(
            "httpproxies/podinfo",
            ".spec.routes[0].conditions[0].header.exact"
        )
        .await,
        "insider"
    );
    let with_header = through_gateway(&env, &[("x-canary", "insider")], 40).await;
    let without = through_gateway(&env, &[], 40).await;
    assert_eq!(with_header.get("6.0.1"), Some(&40), "{with_header:?}");
    assert_eq!(without.get("6.0.0"), Some(&40), "{without:?}");
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.1"));
}

// === gloo ===

const GLOO_OBJECTS: &str = r#"
apiVersion: gloo.solo.io/v1
kind: Upstream
metadata: {name: podinfo-template, namespace: test}
spec:
  kube: {serviceName: podinfo, serviceNamespace: test, servicePort: 80}
  loadBalancerConfig: {roundRobin: {}}
  connectionConfig: {maxRequestsPerConnection: 100}
---
apiVersion: gateway.solo.io/v1
kind: VirtualService
metadata: {name: podinfo, namespace: test}
spec:
  virtualHost:
    domains: [app.example.com]
    routes:
    - matchers: [{prefix: /}]
      delegateAction:
        ref: {name: podinfo, namespace: test}
"#;

const GLOO_UPSTREAM_REF: &str =
    "  upstreamRef: {apiVersion: gloo.solo.io/v1, kind: Upstream, name: podinfo-template}";

fn route_table(env: &Env) -> RoutingObject {
    RoutingObject::new(
        env,
        "gateway.solo.io/v1",
        "RouteTable",
        "routetables",
        |r| {
            weight_in(
                r,
                "/spec/routes/0/routeAction/multi/destinations",
                "/destination/upstream/name",
                "test-podinfo-canaryupstream-80",
            )
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gloo_canary_is_promoted_through_its_weights_and_a_faulty_one_rolled_back() {
    let env = start_env("gloo", &[]).await;
    env.apply(GLOO_OBJECTS).await;
    let yaml = ingress_canary(
        "gloo",
        GLOO_UPSTREAM_REF,
        "",
        &progressive(5, &builtin_metrics()),
    );
    init(&env, &yaml).await;
    // The Upstreams: each generated Service, with the template's settings.
    let up = "upstreams.gloo.solo.io/test-podinfo-canaryupstream-80";
    assert_eq!(
        env.jsonpath(up, ".spec.kube.serviceName").await,
        "podinfo-canary"
    );
    assert_eq!(env.jsonpath(up, ".spec.kube.selector.app").await, "podinfo");
    assert_eq!(
        env.jsonpath(up, ".spec.connectionConfig.maxRequestsPerConnection")
            .await,
        "100"
    );
    assert_eq!(
        env.jsonpath(up, ".metadata.ownerReferences[0].kind").await,
        "Canary"
    );
    let primary = "upstreams.gloo.solo.io/test-podinfo-primaryupstream-80";
    assert_eq!(
        env.jsonpath(primary, ".spec.kube.selector.app").await,
        "podinfo-primary"
    );
    // The template's load balancer follows to the generated Upstreams.
    env.kubectl(&[
        "-n",
        NS,
        "patch",
        "upstreams.gloo.solo.io/podinfo-template",
        "--type=merge",
        "-p",
        r#"{"spec":{"loadBalancerConfig":{"roundRobin":null,"leastRequest":{}}}}"#,
    ])
    .await;
    promoted_then_rolled_back(
        &env,
        &yaml,
        &route_table(&env),
        r#"sum(envoy_cluster_upstream_rq{envoy_cluster_name="test-podinfo-canaryupstream-80_test"EXTRA})"#,
        r#",envoy_response_code=~"5.*""#,
    )
    .await;
    assert_eq!(
        env.jsonpath(primary, ".spec.loadBalancerConfig").await,
        r#"{"leastRequest":{}}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gloo_ab_canary_gets_only_header_matching_requests() {
    let env = start_env("gloo", &[]).await;
    env.apply(GLOO_OBJECTS).await;
    let regex = AB_ANALYSIS.replace("{exact: insider}", "{regex: \"^(insider|beta)$\"}");
    init(&env, &ingress_canary("gloo", "", "", &regex)).await;
    env.apply(&workload("6.0.1", "")).await;
    env.wait_jsonpath(
        "routetables/podinfo",
        ".spec.routes[0].routeAction.multi.destinations[1].weight",
        "100",
    )
    .await;
    let with_header = through_gateway(&env, &[("x-canary", "beta")], 40).await;
    let without = through_gateway(&env, &[], 20).await;
    assert_eq!(with_header.get("6.0.1"), Some(&40), "{with_header:?}");
    // As in Flagger, the route table has one route, with the header matcher: during the test
    // the requests without the header match no route, and Gloo answers 404.
    assert_eq!(without.get("status 404"), Some(&20), "{without:?}");
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    assert_eq!(primary_image(&env).await, format!("{PODINFO}:6.0.1"));
}

// === traefik ===

const TRAEFIK_ROUTE: &str = r#"
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: podinfo, namespace: test}
spec:
  entryPoints: [web]
  routes:
  - match: Host(`app.example.com`)
    kind: Rule
    services:
    - {name: podinfo, kind: TraefikService, port: 80}
"#;

fn traefik_service(env: &Env) -> RoutingObject {
    RoutingObject::new(
        env,
        "traefik.io/v1alpha1",
        "TraefikService",
        "traefikservices",
        |s| weight_in(s, "/spec/weighted/services", "/name", "podinfo-canary"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_canary_is_promoted_through_its_weights_and_a_faulty_one_rolled_back() {
    let env = start_env("traefik", &[]).await;
    env.apply(TRAEFIK_ROUTE).await;
    let yaml = ingress_canary("traefik", "", "", &progressive(5, &builtin_metrics()));
    init(&env, &yaml).await;
    assert_eq!(
        env.jsonpath("traefikservices/podinfo", ".spec.weighted.services[*].name")
            .await,
        "podinfo-primary"
    );
    promoted_then_rolled_back(
        &env,
        &yaml,
        &traefik_service(&env),
        r#"sum(traefik_service_requests_total{service="test-podinfo-canary-80@kubernetescrd"EXTRA})"#,
        r#",code=~"5..""#,
    )
    .await;
}

// === skipper ===

const SKIPPER_INGRESS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: podinfo
  namespace: test
  annotations: {kubernetes.io/ingress.class: skipper}
spec:
  rules:
  - host: app.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: podinfo, port: {number: 80}}}
"#;

const INGRESS_REF: &str =
    "  ingressRef: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: podinfo}";

fn skipper_ingress(env: &Env) -> RoutingObject {
    RoutingObject {
        name: "podinfo-canary",
        ..RoutingObject::new(env, "networking.k8s.io/v1", "Ingress", "ingresses", |i| {
            let w = i.pointer("/metadata/annotations/zalando.org~1backend-weights")?;
            let w: Value = serde_json::from_str(w.as_str()?).ok()?;
            w["podinfo-canary"].as_u64()
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipper_canary_is_promoted_through_its_weights_a_faulty_one_rolled_back_and_finalized() {
    let env = start_env("", &[]).await;
    env.apply(SKIPPER_INGRESS).await;
    let yaml = ingress_canary(
        "skipper",
        &format!("{INGRESS_REF}\n  revertOnDeletion: true"),
        "",
        &progressive(5, &builtin_metrics()),
    );
    init(&env, &yaml).await;
    let predicate = r".metadata.annotations.zalando\.org/skipper-predicate";
    assert_eq!(
        env.jsonpath(
            "ingress/podinfo-canary",
            ".spec.rules[0].http.paths[*].backend.service.name"
        )
        .await,
        "podinfo-primary podinfo-canary"
    );
    promoted_then_rolled_back(
        &env,
        &yaml,
        &skipper_ingress(&env),
        r#"sum(skipper_serve_route_count{route=~"kube_test__podinfo_canary__.*__podinfo_canary"EXTRA})"#,
        r#",code=~"5..""#,
    )
    .await;
    // Back at 100/0, the canary Ingress's routes are off; the user's Ingress serves.
    assert_eq!(
        env.jsonpath("ingress/podinfo-canary", predicate).await,
        "False()"
    );
    let served = through_gateway(&env, &[], 10).await;
    assert_eq!(served.get("6.0.1"), Some(&10), "{served:?}");
    // Finalize deletes the canary Ingress.
    env.kubectl(&["-n", NS, "delete", "canary/podinfo", "--wait=false"])
        .await;
    env.wait_gone("canary/podinfo").await;
    env.wait_gone("ingress/podinfo-canary").await;
    // The user's Ingress serves alone, through the apex Service given back to the target (the
    // faulty revision, half of whose answers fail).
    let served = through_gateway(&env, &[], 20).await;
    let target: usize = ["6.0.2", "status 500"]
        .iter()
        .filter_map(|k| served.get(*k))
        .sum();
    assert_eq!(target, 20, "{served:?}");
}

// === apisix ===

const APISIX_ROUTE: &str = r#"
apiVersion: apisix.apache.org/v2
kind: ApisixRoute
metadata: {name: podinfo, namespace: test, labels: {team: web}}
spec:
  http:
  - name: rule1
    match:
      hosts: [app.example.com]
      paths: ["/*"]
      methods: [GET]
    backends:
    - {serviceName: podinfo, servicePort: 80}
"#;

const ROUTE_REF: &str =
    "  routeRef: {apiVersion: apisix.apache.org/v2, kind: ApisixRoute, name: podinfo}";

fn apisix_route(env: &Env) -> RoutingObject {
    RoutingObject {
        name: "podinfo-podinfo-canary",
        ..RoutingObject::new(
            env,
            "apisix.apache.org/v2",
            "ApisixRoute",
            "apisixroutes",
            |r| weight_in(r, "/spec/http/0/backends", "/serviceName", "podinfo-canary"),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apisix_canary_is_promoted_through_its_weights_and_a_faulty_one_rolled_back() {
    let env = start_env("apisix", &[]).await;
    env.apply(APISIX_ROUTE).await;
    let yaml = ingress_canary("apisix", ROUTE_REF, "", &progressive(5, &builtin_metrics()));
    init(&env, &yaml).await;
    let route = "apisixroutes/podinfo-podinfo-canary";
    assert_eq!(env.jsonpath(route, ".spec.http[0].priority").await, "10000");
    assert_eq!(env.jsonpath(route, ".metadata.labels.team").await, "web");
    promoted_then_rolled_back(
        &env,
        &yaml,
        &apisix_route(&env),
        r#"sum(apisix_http_status{route="test_podinfo-podinfo-canary_rule1"EXTRA})"#,
        r#",code=~"5..""#,
    )
    .await;
}
