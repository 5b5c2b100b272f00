//! Mesh routing in the data plane: Istio VirtualServices, Gateway API HTTPRoutes and SMI
//! TrafficSplits read from the store decide where requests go (weights, matches, mirrors,
//! session affinity, rewrites, timeouts), and the mesh telemetry Flagger's builtin checks query
//! appears on the metrics endpoint.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use localkube::dataplane::{self, MeshRouter};
use serde_json::{Value, json};

use common::{Prometheus, eventually, http_get};

/// Localkube with the data plane routed by a seeded [`MeshRouter`], the mesh CRDs installed,
/// and a `test` namespace.
async fn start() -> (localkube::Handle, Client) {
    let (h, client) = common::start_with(localkube::Config {
        dataplane: Some(dataplane::DataPlaneConfig {
            router: Arc::new(MeshRouter::seeded(2024)),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "test"}})).unwrap(),
    )
    .await
    .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (group, kind, plural, versions) in [
        (
            "networking.istio.io",
            "VirtualService",
            "virtualservices",
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
        let versions: Vec<Value> = versions
            .iter()
            .enumerate()
            .map(|(i, v)| {
                json!({"name": v, "served": true, "storage": i == 0,
                       "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}})
            })
            .collect();
        let crd: CustomResourceDefinition = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.{group}")},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
                     "versions": versions},
        }))
        .unwrap();
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    (h, client)
}

/// Creates a custom object in `test` (`obj` has apiVersion and kind).
async fn create(client: &Client, plural: &str, obj: Value) {
    let (group, version) = obj["apiVersion"].as_str().unwrap().split_once('/').unwrap();
    let gvk = GroupVersionKind::gvk(group, version, obj["kind"].as_str().unwrap());
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "test", &ar);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(obj).unwrap(),
    )
    .await
    .unwrap();
}

fn proxy_addr(h: &localkube::Handle) -> SocketAddr {
    h.dataplane.as_ref().expect("data plane runs").addr
}

/// An answer: status, headers, body.
struct Answer {
    status: u16,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn version(&self) -> String {
        assert_eq!(self.status, 200, "{}", self.body);
        self.json()["version"].as_str().unwrap().to_string()
    }
}

/// One keep-alive connection to the proxy, sending absolute-form requests.
struct ProxyConn {
    sender: hyper::client::conn::http1::SendRequest<Body>,
}

impl ProxyConn {
    async fn open(addr: SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        Self { sender }
    }

    async fn send(&mut self, url: &str, headers: &[(&str, &str)]) -> Answer {
        let uri: axum::http::Uri = url.parse().unwrap();
        let mut b = axum::http::Request::builder()
            .method("GET")
            .uri(url)
            .header("host", uri.authority().unwrap().as_str());
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.sender.ready().await.unwrap();
        let resp = self
            .sender
            .send_request(b.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(Body::new(resp.into_body()), usize::MAX)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// The versions answering `n` requests to `url` with `headers`.
    async fn versions(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        n: usize,
    ) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            *seen
                .entry(self.send(url, headers).await.version())
                .or_default() += 1;
        }
        seen
    }
}

/// A Deployment and a Service `name` (selecting `selector`) in `test`; waits for the
/// endpoints.
async fn app(client: &Client, name: &str, image: &str, annotations: Value) {
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "test");
    deps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}, "annotations": annotations},
                             "spec": {"containers": [{"name": "podinfo", "image": image, "ports": [{"name": "http", "containerPort": 9898}]}]}},
            },
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    service(client, name, name).await;
}

async fn service(client: &Client, name: &str, selector: &str) {
    let svcs: Api<Service> = Api::namespaced(client.clone(), "test");
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": selector}, "ports": [{"name": "http", "port": 9898, "targetPort": "http"}]},
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "test");
    eventually(10, "ready endpoints", || {
        let eps = eps.clone();
        async move {
            let e = eps.get_opt(name).await.ok()??;
            let n: usize = e
                .subsets
                .unwrap_or_default()
                .iter()
                .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
                .sum();
            (n == 1).then_some(())
        }
    })
    .await;
}

/// Flagger's objects for a canary `podinfo`: Deployments and Services `podinfo-primary`
/// (1.0.0) and `podinfo-canary` (2.0.0), and the apex Service `podinfo` selecting the primary.
async fn primary_and_canary(client: &Client, canary_annotations: Value) {
    app(client, "podinfo-primary", "podinfo:1.0.0", json!({})).await;
    app(
        client,
        "podinfo-canary",
        "podinfo:2.0.0",
        canary_annotations,
    )
    .await;
    service(client, "podinfo", "podinfo-primary").await;
}

fn counts(h: &localkube::Handle, pod_prefix: &str) -> u64 {
    h.dataplane
        .as_ref()
        .unwrap()
        .metrics
        .counts("test", pod_prefix)
        .values()
        .sum()
}

const APEX: &str = "http://podinfo.test:9898/";

fn share(seen: &BTreeMap<String, usize>, version: &str) -> f64 {
    let total: usize = seen.values().sum();
    seen.get(version).copied().unwrap_or_default() as f64 / total as f64
}

#[tokio::test]
async fn istio_weights_80_20_and_telemetry() {
    let (h, client) = start().await;
    primary_and_canary(&client, json!({"localkube.dev/error-ratio": "0.1"})).await;
    // The same requests through kube-proxy first, for the cost of routing by the mesh.
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    let t = tokio::time::Instant::now();
    for _ in 0..500 {
        assert_eq!(c.send(APEX, &[]).await.status, 200);
    }
    let plain = 500.0 / t.elapsed().as_secs_f64();
    h.dataplane.as_ref().unwrap().metrics.reset();
    create(
        &client,
        "virtualservices",
        json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "podinfo"},
            "spec": {"hosts": ["podinfo"], "gateways": ["mesh"], "http": [{"route": [
                {"destination": {"host": "podinfo-primary"}, "weight": 80},
                {"destination": {"host": "podinfo-canary"}, "weight": 20},
            ]}]},
        }),
    )
    .await;
    let mut seen = BTreeMap::<u16, usize>::new();
    let n = 2000;
    let t = tokio::time::Instant::now();
    for _ in 0..n {
        let a = c.send(APEX, &[]).await;
        *seen.entry(a.status).or_default() += 1;
    }
    let took = t.elapsed();
    let primary = counts(&h, "podinfo-primary-");
    let canary = counts(&h, "podinfo-canary-");
    eprintln!(
        "80/20 over {n} requests: primary {primary}, canary {canary}; {:.0} req/s routed by the VirtualService, {plain:.0} req/s through kube-proxy (one connection)",
        n as f64 / took.as_secs_f64()
    );
    assert_eq!(primary + canary, n as u64);
    let share = canary as f64 / n as f64;
    assert!((0.18..=0.22).contains(&share), "canary share {share}");
    // The canary fails one request in ten; the primary never.
    assert_eq!(
        seen.get(&500).copied().unwrap_or_default() as u64,
        canary / 10
    );

    // The mesh telemetry names the Deployments.
    let m = &h.dataplane.as_ref().unwrap().metrics;
    assert_eq!(
        m.mesh_counts("test", "podinfo-canary")
            .values()
            .sum::<u64>(),
        canary
    );
    assert_eq!(
        m.mesh_counts("test", "podinfo-primary"),
        BTreeMap::from([(200, primary)])
    );
    let text = http_get(&h.dataplane_metrics_url().unwrap()).await;
    let ok = canary - canary / 10;
    for line in [
        format!(
            "istio_requests_total{{reporter=\"destination\",source_workload=\"unknown\",source_workload_namespace=\"unknown\",destination_workload=\"podinfo-canary\",destination_workload_namespace=\"test\",destination_service=\"podinfo-canary.test.svc.cluster.local\",destination_service_name=\"podinfo-canary\",destination_service_namespace=\"test\",request_protocol=\"http\",response_code=\"200\",response_flags=\"-\"}} {ok}"
        ),
        format!(
            "response_total{{direction=\"inbound\",namespace=\"test\",deployment=\"podinfo-canary\",pod=\"{}\",tls=\"true\",status_code=\"500\",classification=\"failure\"}} {}",
            pod_name(&text, "podinfo-canary"),
            canary / 10
        ),
        // The client's sidecar reports the same requests, by the Service the route chose.
        format!(
            "istio_requests_total{{reporter=\"source\",source_workload=\"unknown\",source_workload_namespace=\"unknown\",destination_workload=\"podinfo-canary\",destination_workload_namespace=\"test\",destination_service=\"podinfo-canary.test.svc.cluster.local\",destination_service_name=\"podinfo-canary\",destination_service_namespace=\"test\",request_protocol=\"http\",response_code=\"200\",response_flags=\"-\"}} {ok}"
        ),
        // OSM: the Deployment, through its ReplicaSet, with its kind.
        format!(
            "osm_request_total{{source_namespace=\"unknown\",source_kind=\"unknown\",source_name=\"unknown\",source_pod=\"unknown\",destination_namespace=\"test\",destination_kind=\"Deployment\",destination_name=\"podinfo-canary\",destination_pod=\"{}\",response_code=\"500\"}} {}",
            pod_name(&text, "podinfo-canary"),
            canary / 10
        ),
    ] {
        assert!(text.contains(&line), "missing {line}");
    }
    for needle in [
        "istio_request_duration_milliseconds_bucket{reporter=\"destination\"",
        "destination_workload=\"podinfo-primary\"",
        "le=\"+Inf\"} ",
        "response_latency_ms_bucket{direction=\"inbound\",namespace=\"test\",deployment=\"podinfo-primary\"",
        "classification=\"success\"",
        "envoy_cluster_upstream_rq{envoy_cluster_name=\"test_podinfo-canary_9898\",kubernetes_namespace=\"test\"",
        "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"test_podinfo-primary_9898\"",
        "istio_request_duration_milliseconds_count{",
        "response_latency_ms_sum{",
        "osm_request_duration_ms_bucket{source_namespace=\"unknown\"",
        "destination_kind=\"Deployment\",destination_name=\"podinfo-primary\"",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
    // Every sample line parses as `name{labels} value`.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, v) = l.rsplit_once(' ').unwrap();
        assert!(v.parse::<f64>().is_ok(), "{l}");
    }
}

/// The name of the pod of Deployment `deployment` as the Linkerd series has it.
fn pod_name(metrics: &str, deployment: &str) -> String {
    let key = format!("deployment=\"{deployment}\",pod=\"");
    let at = metrics.find(&key).unwrap() + key.len();
    metrics[at..].split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn istio_header_and_cookie_matches() {
    let (h, client) = start().await;
    primary_and_canary(&client, json!({})).await;
    create(
        &client,
        "virtualservices",
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "podinfo"},
            "spec": {"hosts": ["podinfo.test.svc.cluster.local"], "http": [
                {"match": [{"headers": {"x-canary": {"exact": "insider"}}},
                           {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}}],
                 "route": [{"destination": {"host": "podinfo-canary"}, "weight": 100},
                           {"destination": {"host": "podinfo-primary"}, "weight": 0}]},
                {"route": [{"destination": {"host": "podinfo-primary.test.svc.cluster.local", "port": {"number": 9898}}, "weight": 100},
                           {"destination": {"host": "podinfo-canary"}, "weight": 0}]},
            ]},
        }),
    )
    .await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    assert_eq!(
        c.versions(APEX, &[("x-canary", "insider")], 20).await,
        BTreeMap::from([("2.0.0".into(), 20)])
    );
    assert_eq!(
        c.versions(APEX, &[("cookie", "canary=always; session=1")], 20)
            .await,
        BTreeMap::from([("2.0.0".into(), 20)])
    );
    assert_eq!(
        c.versions(
            APEX,
            &[("x-canary", "outsider"), ("cookie", "canary=never")],
            20
        )
        .await,
        BTreeMap::from([("1.0.0".into(), 20)])
    );
    // Every name form of the host is routed.
    for url in [
        "http://podinfo.test.svc:9898/",
        "http://podinfo.test.svc.cluster.local:9898/",
    ] {
        assert_eq!(
            c.send(url, &[("x-canary", "insider")]).await.version(),
            "2.0.0"
        );
    }
    assert_eq!(counts(&h, "podinfo-canary-"), 42);
    assert_eq!(counts(&h, "podinfo-primary-"), 20);
}

#[tokio::test]
async fn istio_mirroring_session_affinity_rewrite_and_timeout() {
    let (h, client) = start().await;
    primary_and_canary(&client, json!({})).await;
    app(&client, "other", "podinfo:3.0.0", json!({})).await;
    create(
        &client,
        "virtualservices",
        json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "podinfo"},
            "spec": {"hosts": ["podinfo"], "http": [{
                "route": [{"destination": {"host": "podinfo-primary"}, "weight": 100},
                          {"destination": {"host": "podinfo-canary"}, "weight": 0}],
                "mirror": {"host": "podinfo-canary"},
                "mirrorPercentage": {"value": 100.0},
            }]},
        }),
    )
    .await;
    // Flagger's session affinity rules: the sticky cookie pins the canary; the weighted route
    // hands the cookie out with the canary's answers.
    create(
        &client,
        "virtualservices",
        json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "other"},
            "spec": {"hosts": ["other"], "http": [
                {"match": [{"uri": {"prefix": "/api/"}}], "rewrite": {"uri": "/"},
                 "headers": {"response": {"set": {"x-rewritten": "yes"}}},
                 "route": [{"destination": {"host": "other"}}]},
                {"match": [{"uri": {"prefix": "/slow"}}], "rewrite": {"uri": "/delay/1"}, "timeout": "200ms",
                 "route": [{"destination": {"host": "other"}}]},
                {"match": [{"headers": {"Cookie": {"regex": ".*flagger-cookie.*abcdefghij.*"}}}],
                 "route": [{"destination": {"host": "podinfo-primary"}, "weight": 0},
                           {"destination": {"host": "podinfo-canary"}, "weight": 100}]},
                {"route": [{"destination": {"host": "podinfo-primary"}, "weight": 50},
                           {"destination": {"host": "podinfo-canary"}, "weight": 50,
                            "headers": {"response": {"add": {"Set-Cookie": "flagger-cookie=abcdefghij; Max-Age=86400"}}}}]},
            ]},
        }),
    )
    .await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;

    // Mirroring: the client sees only the primary; the canary gets a copy of each request.
    assert_eq!(
        c.versions(APEX, &[], 30).await,
        BTreeMap::from([("1.0.0".into(), 30)])
    );
    let metrics = h.dataplane.as_ref().unwrap().metrics.clone();
    eventually(10, "mirrored copies served", || {
        let m = metrics.clone();
        async move { (m.counts("test", "podinfo-canary-").values().sum::<u64>() == 30).then_some(()) }
    })
    .await;
    assert_eq!(counts(&h, "podinfo-primary-"), 30);

    // Session affinity.
    let url = "http://other.test:9898/";
    let mut cookie = None;
    for _ in 0..50 {
        let a = c.send(url, &[]).await;
        match a.headers.get("set-cookie") {
            Some(v) => {
                assert_eq!(a.version(), "2.0.0");
                cookie = Some(v.to_str().unwrap().split(';').next().unwrap().to_string());
                break;
            }
            None => assert_eq!(a.version(), "1.0.0"),
        }
    }
    let cookie = cookie.expect("a canary answer carries the sticky cookie");
    assert_eq!(cookie, "flagger-cookie=abcdefghij");
    let sticky = format!("theme=dark; {cookie}");
    for _ in 0..40 {
        let a = c.send(url, &[("cookie", &sticky)]).await;
        assert_eq!(a.version(), "2.0.0");
        assert!(
            a.headers.get("set-cookie").is_none(),
            "the sticky rule sets no cookie"
        );
    }

    // Rewrite and response headers: /api/version is /version for the backend.
    let a = c.send("http://other.test:9898/api/version", &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["version"], "3.0.0");
    assert_eq!(a.headers.get("x-rewritten").unwrap(), "yes");
    // Timeout: a backend slower than the route's timeout is a 504.
    let t = tokio::time::Instant::now();
    let a = c.send("http://other.test:9898/slow", &[]).await;
    assert_eq!(a.status, 504, "{}", a.body);
    assert!(t.elapsed() < Duration::from_millis(900));
}

#[tokio::test]
async fn smi_traffic_split_weights() {
    let (h, client) = start().await;
    primary_and_canary(&client, json!({})).await;
    create(
        &client,
        "trafficsplits",
        json!({
            "apiVersion": "split.smi-spec.io/v1alpha1", "kind": "TrafficSplit",
            "metadata": {"name": "podinfo"},
            "spec": {"service": "podinfo", "backends": [
                {"service": "podinfo-canary", "weight": "300m"},
                {"service": "podinfo-primary", "weight": "700m"},
            ]},
        }),
    )
    .await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    let seen = c.versions(APEX, &[], 1000).await;
    eprintln!("TrafficSplit 70/30 over 1000 requests: {seen:?}");
    let s = share(&seen, "2.0.0");
    assert!((0.27..=0.33).contains(&s), "canary share {s}");
    // Other Services keep kube-proxy routing.
    assert_eq!(
        c.versions("http://podinfo-canary.test:9898/", &[], 5).await,
        BTreeMap::from([("2.0.0".into(), 5)])
    );
}

#[tokio::test]
async fn httproute_weights_header_match_and_filters() {
    let (h, client) = start().await;
    primary_and_canary(&client, json!({})).await;
    app(&client, "mirror", "podinfo:9.9.9", json!({})).await;
    // GAMMA: the parent is the apex Service. Flagger's A/B shape: rule 0 matches the header,
    // rule 1 is weighted.
    create(
        &client,
        "httproutes",
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "podinfo"},
            "spec": {
                "parentRefs": [{"group": "", "kind": "Service", "name": "podinfo", "port": 9898}],
                "rules": [
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/"},
                                  "headers": [{"type": "Exact", "name": "x-canary", "value": "insider"}]},
                                 {"path": {"type": "PathPrefix", "value": "/"},
                                  "queryParams": [{"type": "RegularExpression", "name": "tier", "value": "gold|platinum"}]}],
                     "backendRefs": [{"name": "podinfo-primary", "port": 9898, "weight": 0},
                                     {"name": "podinfo-canary", "port": 9898, "weight": 100}]},
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                     "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "mirror", "port": 9898}}}],
                     "backendRefs": [{"name": "podinfo-primary", "port": 9898, "weight": 90},
                                     {"name": "podinfo-canary", "port": 9898, "weight": 10,
                                      "filters": [{"type": "ResponseHeaderModifier",
                                                   "responseHeaderModifier": {"add": [{"name": "Set-Cookie", "value": "flagger-cookie=xyz; Max-Age=86400"}]}}]}]},
                ],
            },
        }),
    )
    .await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    assert_eq!(
        c.versions(APEX, &[("x-canary", "insider")], 20).await,
        BTreeMap::from([("2.0.0".into(), 20)])
    );
    assert_eq!(
        c.versions("http://podinfo.test:9898/?tier=gold", &[], 10)
            .await,
        BTreeMap::from([("2.0.0".into(), 10)])
    );
    let mut seen = BTreeMap::<String, usize>::new();
    let mut cookies = 0;
    for _ in 0..1000 {
        let a = c.send(APEX, &[("x-canary", "outsider")]).await;
        let v = a.version();
        if a.headers.get("set-cookie").is_some() {
            assert_eq!(v, "2.0.0", "only the canary backend sets the cookie");
            cookies += 1;
        }
        *seen.entry(v).or_default() += 1;
    }
    eprintln!("HTTPRoute 90/10 over 1000 requests: {seen:?}");
    let s = share(&seen, "2.0.0");
    assert!((0.08..=0.12).contains(&s), "canary share {s}");
    assert_eq!(cookies, seen["2.0.0"]);
    // The weighted rule mirrors every request; the matched rule does not.
    let metrics = h.dataplane.as_ref().unwrap().metrics.clone();
    eventually(10, "mirrored copies served", || {
        let m = metrics.clone();
        async move { (m.counts("test", "mirror-").values().sum::<u64>() == 1000).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn httproute_v1beta1_gateway_hostnames_rewrites_and_header_edits() {
    let (h, client) = start().await;
    primary_and_canary(&client, json!({})).await;
    create(
        &client,
        "httproutes",
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "HTTPRoute",
            "metadata": {"name": "public"},
            "spec": {
                "parentRefs": [{"name": "public-gateway", "namespace": "istio-ingress"}],
                "hostnames": ["app.example.com"],
                "rules": [
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/podinfo"}}],
                     "filters": [
                        {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}},
                        {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                            "set": [{"name": "x-route", "value": "public"}], "remove": ["x-secret"]}},
                     ],
                     "backendRefs": [{"name": "podinfo-canary", "port": 9898}]},
                    {"backendRefs": [{"name": "podinfo-primary", "port": 9898}]},
                ],
            },
        }),
    )
    .await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    assert_eq!(
        c.send("http://app.example.com/", &[]).await.version(),
        "1.0.0"
    );
    let a = c
        .send(
            "http://app.example.com/podinfo/headers",
            &[("x-secret", "s3cr3t"), ("x-kept", "1")],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let headers = a.json();
    assert_eq!(headers["x-route"], json!(["public"]));
    assert_eq!(headers["x-kept"], json!(["1"]));
    assert!(headers.get("x-secret").is_none(), "{headers}");
    assert_eq!(
        c.send("http://app.example.com/podinfo/version", &[])
            .await
            .version(),
        "2.0.0"
    );
    // Sent straight to the listener with only a Host header, as through a gateway Service.
    let addr = proxy_addr(&h);
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            axum::http::Request::builder()
                .uri("/podinfo/version")
                .header("host", "app.example.com")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The apex Service has no route attached: kube-proxy.
    assert_eq!(c.send(APEX, &[]).await.version(), "1.0.0");
    assert_eq!(counts(&h, "podinfo-canary-"), 3);
}

/// An object as flagger-rs writes it (the routing goldens of the core crate), as JSON.
fn golden(path: &str) -> Value {
    let text = std::fs::read_to_string(format!(
        "{}/../core/tests/golden/routing/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

async fn delete(client: &Client, plural: &str, obj: &Value) {
    let (group, version) = obj["apiVersion"].as_str().unwrap().split_once('/').unwrap();
    let gvk = GroupVersionKind::gvk(group, version, obj["kind"].as_str().unwrap());
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "test", &ar);
    api.delete(
        obj["metadata"]["name"].as_str().unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
}

/// Sends `n` requests to `url`; returns the versions, and how many canary and primary answers
/// carried their session cookie.
async fn affinity_run(
    c: &mut ProxyConn,
    url: &str,
    n: usize,
) -> (BTreeMap<String, usize>, usize, usize) {
    let (mut seen, mut canary_cookies, mut primary_cookies) = (BTreeMap::new(), 0, 0);
    for _ in 0..n {
        let a = c.send(url, &[]).await;
        let v = a.version();
        let cookie = a
            .headers
            .get("set-cookie")
            .map(|c| c.to_str().unwrap().to_string())
            .unwrap_or_default();
        match v.as_str() {
            "2.0.0" if cookie.starts_with("flagger-cookie=abcdefghij;") => canary_cookies += 1,
            "1.0.0" if cookie.starts_with("flagger-primary-cookie=klmnopqrst;") => {
                primary_cookies += 1
            }
            _ => panic!("{v} answered with cookie {cookie:?}"),
        }
        *seen.entry(v).or_default() += 1;
    }
    (seen, canary_cookies, primary_cookies)
}

#[tokio::test]
async fn objects_written_by_flagger_route_as_meant() {
    let (h, client) = start().await;
    primary_and_canary(&client, json!({})).await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;

    // Istio session affinity: 90/10 weighted; each answer hands out its side's cookie; each
    // cookie pins its side.
    let vs = golden("istio/session_affinity.json");
    create(&client, "virtualservices", vs.clone()).await;
    let (seen, cc, pc) = affinity_run(&mut c, APEX, 500).await;
    eprintln!("istio session affinity 90/10 over 500 requests: {seen:?}");
    assert_eq!((cc, pc), (seen["2.0.0"], seen["1.0.0"]));
    assert!((0.07..=0.13).contains(&share(&seen, "2.0.0")), "{seen:?}");
    for (cookie, version) in [
        ("flagger-cookie=abcdefghij", "2.0.0"),
        ("flagger-primary-cookie=klmnopqrst", "1.0.0"),
    ] {
        assert_eq!(
            c.versions(APEX, &[("cookie", cookie)], 20).await,
            BTreeMap::from([(version.to_string(), 20)])
        );
    }
    delete(&client, "virtualservices", &vs).await;

    // Istio mirroring at 50%.
    let before = counts(&h, "podinfo-canary-");
    let vs = golden("istio/mirror.json");
    create(&client, "virtualservices", vs.clone()).await;
    assert_eq!(
        c.versions(APEX, &[], 400).await,
        BTreeMap::from([("1.0.0".into(), 400)])
    );
    // The copies are sent in the background: wait until no more arrive.
    let mut last = u64::MAX;
    loop {
        let now = counts(&h, "podinfo-canary-");
        if now == last {
            break;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mirrored = last - before;
    eprintln!("istio mirrorPercentage 50 over 400 requests: {mirrored} copies");
    assert!((170..=230).contains(&mirrored), "{mirrored}");
    delete(&client, "virtualservices", &vs).await;

    // Istio A/B: the header and the cookie reach the canary, the rest the primary.
    let vs = golden("istio/ab.json");
    create(&client, "virtualservices", vs.clone()).await;
    assert_eq!(
        c.send(APEX, &[("x-canary", "insider")]).await.version(),
        "2.0.0"
    );
    assert_eq!(
        c.send(APEX, &[("cookie", "canary=always")]).await.version(),
        "2.0.0"
    );
    assert_eq!(c.send(APEX, &[]).await.version(), "1.0.0");
    delete(&client, "virtualservices", &vs).await;

    // Gateway-bound VirtualService: app.example.com is routed, mesh traffic to podinfo is not.
    let vs = golden("istio/service_options.json");
    create(&client, "virtualservices", vs.clone()).await;
    let a = c.send("http://app.example.com/api/version", &[]).await;
    assert!(["1.0.0", "2.0.0"].contains(&a.version().as_str()));
    assert_eq!(
        c.send("http://app.example.com/other", &[]).await.status,
        404,
        "no route matches"
    );
    delete(&client, "virtualservices", &vs).await;

    // SMI (Linkerd): 90/10.
    let ts = golden("smi/v1alpha1_linkerd.json");
    create(&client, "trafficsplits", ts.clone()).await;
    let seen = c.versions(APEX, &[], 500).await;
    eprintln!("smi v1alpha1 90/10 over 500 requests: {seen:?}");
    assert!((0.07..=0.13).contains(&share(&seen, "2.0.0")), "{seen:?}");
    delete(&client, "trafficsplits", &ts).await;

    // Gateway API session affinity through the gateway host.
    let route = golden("gatewayapi_v1/session_affinity.json");
    create(&client, "httproutes", route.clone()).await;
    let url = "http://app.example.com/";
    let (seen, cc, pc) = affinity_run(&mut c, url, 500).await;
    eprintln!("gateway api session affinity 90/10 over 500 requests: {seen:?}");
    assert_eq!((cc, pc), (seen["2.0.0"], seen["1.0.0"]));
    assert!((0.07..=0.13).contains(&share(&seen, "2.0.0")), "{seen:?}");
    assert_eq!(
        c.versions(url, &[("cookie", "a=b; flagger-cookie=abcdefghij")], 20)
            .await,
        BTreeMap::from([("2.0.0".into(), 20)])
    );
    delete(&client, "httproutes", &route).await;

    // Gateway API A/B.
    let route = golden("gatewayapi_v1/ab.json");
    create(&client, "httproutes", route.clone()).await;
    assert_eq!(
        c.send(url, &[("x-canary", "insider")]).await.version(),
        "2.0.0"
    );
    assert_eq!(c.send(url, &[]).await.version(), "1.0.0");
    delete(&client, "httproutes", &route).await;

    // Nothing left: kube-proxy, and the gateway host is outside the cluster again.
    assert_eq!(
        c.versions(APEX, &[], 10).await,
        BTreeMap::from([("1.0.0".into(), 10)])
    );
}

#[tokio::test]
async fn istio_faults_redirects_direct_responses_and_gateway_redirect() {
    let (h, client) = start().await;
    app(&client, "front", "podinfo:3.0.0", json!({})).await;
    create(
        &client,
        "virtualservices",
        json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "front"},
            "spec": {"hosts": ["front"], "http": [
                {"match": [{"uri": {"prefix": "/old"}}], "redirect": {"uri": "/new", "redirectCode": 308}},
                {"match": [{"uri": {"exact": "/teapot"}}], "directResponse": {"status": 418, "body": {"string": "short and stout"}}},
                {"match": [{"headers": {"x-fault": {"exact": "abort"}}}],
                 "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 100}}},
                 "route": [{"destination": {"host": "front"}}]},
                {"match": [{"headers": {"x-fault": {"exact": "half"}}}],
                 "fault": {"abort": {"httpStatus": 500, "percentage": {"value": 50}}},
                 "route": [{"destination": {"host": "front"}}]},
                {"match": [{"headers": {"x-fault": {"exact": "delay"}}}],
                 "fault": {"delay": {"fixedDelay": "300ms"}},
                 "route": [{"destination": {"host": "front"}}]},
                {"route": [{"destination": {"host": "front"}}]},
            ]},
        }),
    )
    .await;
    create(
        &client,
        "httproutes",
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "moved"},
            "spec": {"parentRefs": [{"name": "gateway"}], "hostnames": ["old.example.com"],
                     "rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"hostname": "new.example.com", "statusCode": 301}}]}]},
        }),
    )
    .await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    let a = c.send("http://front.test:9898/old/page?x=1", &[]).await;
    assert_eq!(a.status, 308);
    assert_eq!(a.headers.get("location").unwrap(), "/new?x=1");
    let a = c.send("http://front.test:9898/teapot", &[]).await;
    assert_eq!((a.status, a.body.as_str()), (418, "short and stout"));
    assert_eq!(
        c.send("http://front.test:9898/", &[("x-fault", "abort")])
            .await
            .status,
        503
    );
    let t = tokio::time::Instant::now();
    assert_eq!(
        c.send("http://front.test:9898/version", &[("x-fault", "delay")])
            .await
            .version(),
        "3.0.0"
    );
    assert!(t.elapsed() >= Duration::from_millis(300));
    let mut aborted = 0;
    for _ in 0..200 {
        if c.send("http://front.test:9898/", &[("x-fault", "half")])
            .await
            .status
            == 500
        {
            aborted += 1;
        }
    }
    eprintln!("istio abort at 50% over 200 requests: {aborted} aborted");
    assert!((80..=120).contains(&aborted), "{aborted}");
    // Aborted and redirected requests never reach the pod.
    assert_eq!(counts(&h, "front-"), 1 + (200 - aborted));
    let a = c.send("http://old.example.com/docs?page=2", &[]).await;
    assert_eq!(a.status, 301);
    assert_eq!(
        a.headers.get("location").unwrap(),
        "http://new.example.com/docs?page=2"
    );
}

#[tokio::test]
async fn istio_gateway_route_for_every_host_and_both_reporters_through_prometheus() {
    let (h, client) = start().await;
    primary_and_canary(&client, json!({"localkube.dev/error-ratio": "0.5"})).await;
    // Flagger's Istio flows bind a VirtualService with `hosts: ["*"]` to a gateway: it takes
    // every host the gateway gets.
    create(
        &client,
        "virtualservices",
        json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "podinfo"},
            "spec": {"hosts": ["*"], "gateways": ["istio-system/public-gateway"], "http": [{"route": [
                {"destination": {"host": "podinfo-primary"}, "weight": 50},
                {"destination": {"host": "podinfo-canary"}, "weight": 50},
            ]}]},
        }),
    )
    .await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    for host in ["app.example.com", "www.example.org", "anything"] {
        let a = c.send(&format!("http://{host}/version"), &[]).await;
        assert!(matches!(a.status, 200 | 500), "{host}: {}", a.body);
    }
    // Not a mesh route: requests to the Service itself go by kube-proxy.
    assert_eq!(c.send(APEX, &[]).await.version(), "1.0.0");
    let mut seen = BTreeMap::<u16, u64>::new();
    for _ in 0..100 {
        *seen
            .entry(c.send("http://app.example.com/", &[]).await.status)
            .or_default() += 1;
    }
    let canary = counts(&h, "podinfo-canary-");
    let failed = seen.get(&500).copied().unwrap_or_default();
    assert!(canary > 20 && failed > 0, "{canary} {seen:?}");

    // Both reporters, as Prometheus scrapes them: the gateway reports every request as the
    // client (Flagger's Gateway API queries select `reporter="source"`), the pods' sidecars
    // as the destination, with the gateway as their client.
    let Some(prom) = Prometheus::start(
        &h.dataplane
            .as_ref()
            .unwrap()
            .prometheus_scrape_configs("1s"),
    )
    .await
    else {
        return;
    };
    for reporter in ["source", "destination"] {
        let q = format!(
            r#"sum(istio_requests_total{{reporter="{reporter}",source_workload="istio-ingressgateway",source_workload_namespace="istio-system",destination_workload_namespace="test",destination_workload=~"podinfo-canary"}})"#
        );
        let got = eventually(30, "Prometheus scraping the gateway's series", || {
            let (prom, q) = (&prom, q.clone());
            async move { prom.scalar(&q).await.filter(|v| *v as u64 == canary) }
        })
        .await;
        assert_eq!(got as u64, canary, "{reporter}");
    }
    let failures = prom
        .scalar(r#"sum(istio_requests_total{reporter="source",destination_workload_namespace="test",destination_workload=~"podinfo-canary",response_code=~"5.*"})"#)
        .await;
    assert_eq!(failures, Some(failed as f64));
    let ok = prom
        .scalar(r#"sum(istio_requests_total{reporter="source",destination_workload_namespace="test",destination_workload=~"podinfo-canary",response_code!~"5.*"})"#)
        .await;
    assert_eq!(ok, Some((canary - failed) as f64));
}
