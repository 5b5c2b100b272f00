//! The simulated NGINX ingress controller: Ingresses (`networking.k8s.io/v1`) route requests
//! for their hosts, a canary Ingress takes requests by header, cookie and weight as
//! ingress-nginx's canary annotations say, and the controller's series that Flagger's builtin
//! `nginx` checks query appear on the metrics endpoint. And the other ingress gateways Flagger
//! routes with (Contour, Gloo, Traefik, Skipper, APISIX), from their own CRDs: the objects
//! Flagger writes split the traffic and each gateway's series count it.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Service};
use kube::Client;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use localkube::dataplane::{self, MeshRouter};
use serde_json::{Value, json};

use common::{eventually, http_get};

const PREFIX: &str = "nginx.ingress.kubernetes.io";
const HOST: &str = "app.example.com";
const URL: &str = "http://app.example.com/";

/// Localkube with the data plane routed by a seeded [`MeshRouter`] and a `test` namespace.
async fn start() -> (localkube::Handle, Client) {
    start_routed(MeshRouter::seeded(2024)).await
}

async fn start_routed(router: MeshRouter) -> (localkube::Handle, Client) {
    let (h, client) = common::start_with(localkube::Config {
        dataplane: Some(dataplane::DataPlaneConfig {
            router: Arc::new(router),
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
    (h, client)
}

fn ingresses(client: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("networking.k8s.io", "v1", "Ingress");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "ingresses");
    Api::namespaced_with(client.clone(), "test", &ar)
}

/// An Ingress `name` in `test` for `HOST`, path `/` (Prefix) to `service:9898`, with
/// `annotations` (keys under [`PREFIX`] unless they contain a `/`).
fn ingress(name: &str, service: &str, annotations: &[(&str, &str)]) -> Value {
    let annotations: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| {
            let k = if k.contains('/') {
                k.to_string()
            } else {
                format!("{PREFIX}/{k}")
            };
            (k, v.to_string())
        })
        .collect();
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": HOST, "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": service, "port": {"number": 9898}}}},
        ]}}]},
    })
}

async fn create(client: &Client, obj: Value) {
    ingresses(client)
        .create(
            &PostParams::default(),
            &serde_json::from_value(obj).unwrap(),
        )
        .await
        .unwrap();
}

/// Sets the canary Ingress's annotations (under [`PREFIX`]; `None` removes one).
async fn annotate(client: &Client, name: &str, annotations: &[(&str, Option<&str>)]) {
    let a: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (format!("{PREFIX}/{k}"), json!(v)))
        .collect();
    ingresses(client)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": a}})),
        )
        .await
        .unwrap();
}

fn proxy_addr(h: &localkube::Handle) -> SocketAddr {
    h.dataplane.as_ref().expect("data plane runs").addr
}

/// An answer: status and body.
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn version(&self) -> String {
        assert_eq!(self.status, 200, "{}", self.body);
        let v: Value =
            serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body));
        v["version"].as_str().unwrap().to_string()
    }
}

/// One keep-alive connection to the proxy.
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

    /// `GET url` in absolute form (as through `HTTP_PROXY`), or in origin form with the URL's
    /// host as `Host` when `origin` is set.
    async fn request(&mut self, url: &str, headers: &[(&str, &str)], origin: bool) -> Answer {
        let uri: axum::http::Uri = url.parse().unwrap();
        let target = if origin {
            uri.path_and_query().unwrap().as_str().to_string()
        } else {
            url.to_string()
        };
        let mut b = axum::http::Request::builder()
            .method("GET")
            .uri(target)
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
        let bytes = axum::body::to_bytes(Body::new(resp.into_body()), usize::MAX)
            .await
            .unwrap();
        Answer {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn send(&mut self, url: &str, headers: &[(&str, &str)]) -> Answer {
        self.request(url, headers, false).await
    }

    /// The version answering `url` with `headers`.
    async fn version(&mut self, url: &str, headers: &[(&str, &str)]) -> String {
        self.send(url, headers).await.version()
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
            *seen.entry(self.version(url, headers).await).or_default() += 1;
        }
        seen
    }
}

/// A Deployment and a Service `name` in `test`; waits for the endpoints.
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
            "spec": {"selector": {"app": selector}, "ports": [
                {"name": "http", "port": 9898, "targetPort": "http"},
                {"name": "web", "port": 80, "targetPort": "http"},
            ]},
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

/// What Flagger's nginx provider leaves behind for a canary `podinfo`: Deployments and
/// Services `podinfo-primary` (1.0.0) and `podinfo-canary` (2.0.0), and the apex Service
/// `podinfo` selecting the primary. The user's Ingress `podinfo` routes to the apex; Flagger's
/// clone `podinfo-canary` to `podinfo-canary`.
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

fn share(seen: &BTreeMap<String, usize>, version: &str) -> f64 {
    let total: usize = seen.values().sum();
    seen.get(version).copied().unwrap_or_default() as f64 / total as f64
}

/// The samples of `name` in a Prometheus exposition: labels and value.
fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .map(|rest| {
            let (labels, value) = rest.rsplit_once("} ").unwrap();
            let labels = labels
                .split("\",")
                .map(|kv| {
                    let (k, v) = kv.split_once("=\"").unwrap();
                    (k.to_string(), v.trim_end_matches('"').to_string())
                })
                .collect();
            (labels, value.parse().unwrap())
        })
        .collect()
}

/// Sums `name` over the samples whose labels pass `select`.
fn sum(text: &str, name: &str, select: impl Fn(&BTreeMap<String, String>) -> bool) -> f64 {
    samples(text, name)
        .iter()
        .filter(|(l, _)| select(l))
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test]
async fn canary_weight_30_and_telemetry() {
    let (h, client) = start().await;
    primary_and_canary(&client, json!({"localkube.dev/error-ratio": "0.1"})).await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    // Through kube-proxy first, for the cost of the ingress routing.
    let t = tokio::time::Instant::now();
    for _ in 0..500 {
        assert_eq!(c.send("http://podinfo.test:9898/", &[]).await.status, 200);
    }
    let plain = 500.0 / t.elapsed().as_secs_f64();
    // No Ingress names the host yet: the data plane answers origin-form requests itself.
    let a = c.request(URL, &[], true).await;
    assert_eq!(a.status, 404);
    assert!(a.body.contains("HTTP_PROXY"), "{}", a.body);

    create(&client, ingress("podinfo", "podinfo", &[])).await;
    create(
        &client,
        ingress(
            "podinfo-canary",
            "podinfo-canary",
            &[("canary", "true"), ("canary-weight", "30")],
        ),
    )
    .await;
    let n = 1000;
    let mut seen = BTreeMap::<u16, u64>::new();
    let t = tokio::time::Instant::now();
    for _ in 0..n {
        *seen.entry(c.send(URL, &[]).await.status).or_default() += 1;
    }
    let routed = n as f64 / t.elapsed().as_secs_f64();
    let m = &h.dataplane.as_ref().unwrap().metrics;
    let canary: u64 = m.counts("test", "podinfo-canary-").values().sum();
    let primary: u64 = m.counts("test", "podinfo-primary-").values().sum::<u64>() - 500;
    eprintln!(
        "canary-weight 30 over {n} requests: primary {primary}, canary {canary}; {routed:.0} req/s through the ingress, {plain:.0} req/s through kube-proxy (one connection)"
    );
    assert_eq!(primary + canary, n);
    let share = canary as f64 / n as f64;
    assert!((0.26..=0.34).contains(&share), "canary share {share}");
    // The canary fails one request in ten.
    assert_eq!(seen.get(&500).copied().unwrap_or_default(), canary / 10);

    // The controller's series: canary traffic under the main Ingress, `canary` naming the
    // canary upstream.
    let upstream = "test-podinfo-canary-9898";
    assert_eq!(
        m.ingress_counts("test", "podinfo"),
        BTreeMap::from([
            ((String::new(), 200), primary),
            ((upstream.to_string(), 200), canary - canary / 10),
            ((upstream.to_string(), 500), canary / 10),
        ])
    );
    assert!(m.ingress_counts("test", "podinfo-canary").is_empty());
    let text = http_get(&h.dataplane_metrics_url().unwrap()).await;
    let labels = |canary: &str, status: u16| {
        format!(
            "canary=\"{canary}\",controller_class=\"k8s.io/ingress-nginx\",controller_namespace=\"ingress-nginx\",controller_pod=\"ingress-nginx-controller-localkube\",host=\"{HOST}\",ingress=\"podinfo\",method=\"GET\",namespace=\"test\",path=\"/\",service=\"podinfo\",status=\"{status}\""
        )
    };
    for line in [
        format!(
            "nginx_ingress_controller_requests{{{}}} {primary}",
            labels("", 200)
        ),
        format!(
            "nginx_ingress_controller_requests{{{}}} {}",
            labels(upstream, 500),
            canary / 10
        ),
        format!(
            "nginx_ingress_controller_request_duration_seconds_bucket{{{},le=\"+Inf\"}} {}",
            labels(upstream, 200),
            canary - canary / 10
        ),
        format!(
            "nginx_ingress_controller_request_duration_seconds_count{{{}}} {primary}",
            labels("", 200)
        ),
        format!(
            "nginx_ingress_controller_response_duration_seconds_count{{{}}} {}",
            labels(upstream, 500),
            canary / 10
        ),
    ] {
        assert!(text.contains(&line), "missing {line}");
    }
    for needle in [
        "# TYPE nginx_ingress_controller_requests counter",
        "# TYPE nginx_ingress_controller_request_duration_seconds histogram",
        "# TYPE nginx_ingress_controller_response_duration_seconds histogram",
        "nginx_ingress_controller_response_duration_seconds_sum{canary=\"test-podinfo-canary-9898\"",
        "nginx_ingress_controller_request_duration_seconds_bucket{canary=\"\"",
        ",le=\"0.005\"} ",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }

    // Flagger's builtin checks, evaluated over the counters: request-success-rate selects
    // `namespace="test", ingress="podinfo", canary!=""`, non-5xx over all.
    let selected = |l: &BTreeMap<String, String>| {
        l["namespace"] == "test" && l["ingress"] == "podinfo" && !l["canary"].is_empty()
    };
    let all = sum(&text, "nginx_ingress_controller_requests", selected);
    let ok = sum(&text, "nginx_ingress_controller_requests", |l| {
        selected(l) && !l["status"].starts_with('5')
    });
    assert_eq!(all, canary as f64);
    let rate = 100.0 * ok / all;
    assert!((89.0..=91.0).contains(&rate), "success rate {rate}");
    // request-duration: the mean of the upstream response times, in ms.
    let mean_ms = 1000.0
        * sum(
            &text,
            "nginx_ingress_controller_response_duration_seconds_sum",
            selected,
        )
        / sum(
            &text,
            "nginx_ingress_controller_response_duration_seconds_count",
            selected,
        );
    assert!(mean_ms > 0.0 && mean_ms < 1000.0, "mean {mean_ms} ms");
    // Every sample line parses as `name{labels} value`.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, v) = l.rsplit_once(' ').unwrap();
        assert!(v.parse::<f64>().is_ok(), "{l}");
    }
}

#[tokio::test]
async fn canary_without_weight_sends_nothing() {
    let (h, client) = start().await;
    primary_and_canary(&client, json!({})).await;
    create(&client, ingress("podinfo", "podinfo", &[])).await;
    // Only `canary: "true"`: weight 0.
    create(
        &client,
        ingress("podinfo-canary", "podinfo-canary", &[("canary", "true")]),
    )
    .await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    assert_eq!(
        c.versions(URL, &[], 200).await,
        BTreeMap::from([("1.0.0".to_string(), 200)])
    );
    // As Flagger creates it: weight "0".
    annotate(&client, "podinfo-canary", &[("canary-weight", Some("0"))]).await;
    assert_eq!(
        c.versions(URL, &[], 100).await,
        BTreeMap::from([("1.0.0".to_string(), 100)])
    );
    // Flagger's promotion steps: 100, then back to 0.
    annotate(&client, "podinfo-canary", &[("canary-weight", Some("100"))]).await;
    assert_eq!(
        c.versions(URL, &[], 100).await,
        BTreeMap::from([("2.0.0".to_string(), 100)])
    );
    annotate(&client, "podinfo-canary", &[("canary-weight", Some("0"))]).await;
    assert_eq!(c.version(URL, &[]).await, "1.0.0");
    // canary-weight-total: 500 of 1000.
    annotate(
        &client,
        "podinfo-canary",
        &[
            ("canary-weight", Some("500")),
            ("canary-weight-total", Some("1000")),
        ],
    )
    .await;
    let seen = c.versions(URL, &[], 400).await;
    assert!((0.42..=0.58).contains(&share(&seen, "2.0.0")), "{seen:?}");
    // Without `canary: "true"` the clone is a second main Ingress for the same host and
    // path: the older one (the user's) keeps it.
    annotate(&client, "podinfo-canary", &[("canary", None)]).await;
    assert_eq!(
        c.versions(URL, &[], 50).await,
        BTreeMap::from([("1.0.0".to_string(), 50)])
    );
    // The main Ingress has every request in its series.
    let counts = h
        .dataplane
        .as_ref()
        .unwrap()
        .metrics
        .ingress_counts("test", "podinfo");
    let total: u64 = counts.values().sum();
    assert_eq!(total, 200 + 100 + 100 + 1 + 400 + 50);
}

#[tokio::test]
async fn header_always_never_value_pattern() {
    let (h, client) = start().await;
    primary_and_canary(&client, json!({})).await;
    create(&client, ingress("podinfo", "podinfo", &[])).await;
    create(
        &client,
        ingress(
            "podinfo-canary",
            "podinfo-canary",
            &[
                ("canary", "true"),
                ("canary-weight", "0"),
                ("canary-by-header", "X-Canary"),
            ],
        ),
    )
    .await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    assert_eq!(c.version(URL, &[("x-canary", "always")]).await, "2.0.0");
    assert_eq!(c.version(URL, &[("x-canary", "never")]).await, "1.0.0");
    assert_eq!(c.version(URL, &[("x-canary", "maybe")]).await, "1.0.0");
    assert_eq!(c.version(URL, &[]).await, "1.0.0");
    // The header beats the weight; other values leave it to the weight.
    annotate(&client, "podinfo-canary", &[("canary-weight", Some("100"))]).await;
    assert_eq!(c.version(URL, &[("x-canary", "never")]).await, "1.0.0");
    assert_eq!(c.version(URL, &[("x-canary", "maybe")]).await, "2.0.0");
    assert_eq!(c.version(URL, &[]).await, "2.0.0");

    // Flagger's A/B: canary-by-header-value, weight 0.
    annotate(
        &client,
        "podinfo-canary",
        &[
            ("canary-weight", Some("0")),
            ("canary-by-header-value", Some("insider")),
        ],
    )
    .await;
    assert_eq!(
        c.versions(URL, &[("x-canary", "insider")], 20).await,
        BTreeMap::from([("2.0.0".to_string(), 20)])
    );
    assert_eq!(c.version(URL, &[("x-canary", "outsider")]).await, "1.0.0");
    // With a value, `always` is just another value.
    assert_eq!(c.version(URL, &[("x-canary", "always")]).await, "1.0.0");
    assert_eq!(c.version(URL, &[]).await, "1.0.0");

    // canary-by-header-pattern (a regex matched anywhere in the value, as ngx.re.match).
    annotate(
        &client,
        "podinfo-canary",
        &[
            ("canary-by-header", Some("user-agent")),
            ("canary-by-header-value", None),
            ("canary-by-header-pattern", Some("Firefox/9[0-9]|insider")),
        ],
    )
    .await;
    assert_eq!(
        c.version(URL, &[("user-agent", "Mozilla/5.0 Firefox/99.0")])
            .await,
        "2.0.0"
    );
    assert_eq!(
        c.version(URL, &[("user-agent", "Mozilla/5.0 Firefox/88.0")])
            .await,
        "1.0.0"
    );
    assert_eq!(c.version(URL, &[("user-agent", "curl/8")]).await, "1.0.0");
    // canary-by-header-value wins over canary-by-header-pattern.
    annotate(
        &client,
        "podinfo-canary",
        &[("canary-by-header-value", Some("exactly-this"))],
    )
    .await;
    assert_eq!(
        c.version(URL, &[("user-agent", "Mozilla/5.0 Firefox/99.0")])
            .await,
        "1.0.0"
    );
    assert_eq!(
        c.version(URL, &[("user-agent", "exactly-this")]).await,
        "2.0.0"
    );
}

#[tokio::test]
async fn cookie_always_never_and_precedence() {
    let (h, client) = start().await;
    primary_and_canary(&client, json!({})).await;
    create(&client, ingress("podinfo", "podinfo", &[])).await;
    create(
        &client,
        ingress(
            "podinfo-canary",
            "podinfo-canary",
            &[("canary", "true"), ("canary-by-cookie", "canary")],
        ),
    )
    .await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    assert_eq!(
        c.versions(URL, &[("cookie", "a=1; canary=always")], 20)
            .await,
        BTreeMap::from([("2.0.0".to_string(), 20)])
    );
    assert_eq!(c.version(URL, &[("cookie", "canary=never")]).await, "1.0.0");
    assert_eq!(c.version(URL, &[("cookie", "canary=yes")]).await, "1.0.0");
    assert_eq!(c.version(URL, &[]).await, "1.0.0");
    // The cookie beats the weight.
    annotate(&client, "podinfo-canary", &[("canary-weight", Some("100"))]).await;
    assert_eq!(c.version(URL, &[("cookie", "canary=never")]).await, "1.0.0");
    assert_eq!(c.version(URL, &[("cookie", "canary=yes")]).await, "2.0.0");
    // The header beats the cookie.
    annotate(
        &client,
        "podinfo-canary",
        &[
            ("canary-weight", Some("0")),
            ("canary-by-header", Some("x-canary")),
        ],
    )
    .await;
    assert_eq!(
        c.version(URL, &[("x-canary", "never"), ("cookie", "canary=always")])
            .await,
        "1.0.0"
    );
    assert_eq!(
        c.version(URL, &[("x-canary", "always"), ("cookie", "canary=never")])
            .await,
        "2.0.0"
    );
    assert_eq!(
        c.version(URL, &[("x-canary", "other"), ("cookie", "canary=always")])
            .await,
        "2.0.0"
    );
}

/// Which app served a request: `primary`, `canary` (by their pods' request counts) or
/// `none`, with the status.
async fn served_by(
    h: &localkube::Handle,
    c: &mut ProxyConn,
    url: &str,
    origin: bool,
) -> (&'static str, u16) {
    // Counted as the pods' sidecars report them (podinfo does not count its 404s).
    let m = &h.dataplane.as_ref().unwrap().metrics;
    let count = |workload: &str| m.mesh_counts("test", workload).values().sum::<u64>();
    let before = (count("podinfo-primary"), count("podinfo-canary"));
    let status = c.request(url, &[], origin).await.status;
    let after = (count("podinfo-primary"), count("podinfo-canary"));
    let who = match (after.0 - before.0, after.1 - before.1) {
        (1, 0) => "primary",
        (0, 1) => "canary",
        (0, 0) => "none",
        other => panic!("{url}: {other:?}"),
    };
    (who, status)
}

#[tokio::test]
async fn hosts_paths_default_backend_and_classes() {
    let (h, client) = start().await;
    primary_and_canary(&client, json!({})).await;
    let to = |service: &str, port: Value| json!({"service": {"name": service, "port": port}});
    create(
        &client,
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "site"},
            "spec": {
                "defaultBackend": to("podinfo-canary", json!({"name": "http"})),
                "rules": [
                    {"host": HOST, "http": {"paths": [
                        {"path": "/status", "pathType": "Prefix",
                         "backend": to("podinfo-canary", json!({"name": "http"}))},
                        {"path": "/status/201", "pathType": "Exact",
                         "backend": to("podinfo-primary", json!({"number": 9898}))},
                        {"path": "/ver", "pathType": "ImplementationSpecific",
                         "backend": to("podinfo-primary", json!({"number": 9898}))},
                        {"path": "/missing", "pathType": "Prefix",
                         "backend": to("nowhere", json!({"number": 80}))},
                    ]}},
                    {"host": "*.example.org", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": to("podinfo-primary", json!({"number": 9898}))},
                    ]}},
                ],
            },
        }),
    )
    .await;
    // Another controller's Ingresses, by class name and by the class annotation.
    for (name, host, class, annotation) in [
        ("traefik", "traefik.example.com", "traefik", None),
        ("skipper", "skipper.example.com", "nginx", Some("skipper")),
    ] {
        let mut obj = ingress(name, "podinfo", &[]);
        obj["spec"]["rules"][0]["host"] = json!(host);
        obj["spec"]["ingressClassName"] = json!(class);
        if let Some(a) = annotation {
            obj["metadata"]["annotations"] = json!({"kubernetes.io/ingress.class": a});
        }
        create(&client, obj).await;
    }
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    let base = format!("http://{HOST}");
    for (path, want) in [
        // Prefix by path element.
        ("/status/200", ("canary", 200)),
        ("/status", ("canary", 404)),
        // An exact path before the longest prefix.
        ("/status/201", ("primary", 201)),
        ("/status/202", ("canary", 202)),
        // ImplementationSpecific: nginx's string prefix (`/ver` catches `/version`).
        ("/version", ("primary", 200)),
        // Nothing matches: the Ingress's defaultBackend (a named port).
        ("/", ("canary", 200)),
        ("/statusx", ("canary", 404)),
        // A backend Service that does not exist: 503, as ingress-nginx answers.
        ("/missing", ("none", 503)),
    ] {
        let got = served_by(&h, &mut c, &format!("{base}{path}"), false).await;
        assert_eq!(got, want, "{path}");
    }
    assert_eq!(c.version(&format!("{base}/"), &[]).await, "2.0.0");
    // Wildcard hosts, any depth; origin-form requests with a Host header; case and port.
    assert_eq!(c.version("http://www.example.org/", &[]).await, "1.0.0");
    assert_eq!(
        served_by(&h, &mut c, "http://a.b.example.org/", true).await,
        ("primary", 200)
    );
    assert_eq!(
        served_by(&h, &mut c, "http://APP.example.com:80/version", true).await,
        ("primary", 200)
    );
    // A host without a matching path nor a defaultBackend: the controller's default backend.
    let mut only_exact = ingress("exact", "podinfo", &[]);
    only_exact["spec"]["rules"][0]["host"] = json!("exact.example.com");
    only_exact["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = json!("Exact");
    create(&client, only_exact).await;
    assert_eq!(c.version("http://exact.example.com/", &[]).await, "1.0.0");
    let a = c.send("http://exact.example.com/version", &[]).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (404, "default backend - 404\n")
    );
    // Other classes, and hosts no rule names, are not served: the data plane answers
    // origin-form requests itself. (Class `skipper` is Skipper's: it serves that host.)
    for host in ["traefik.example.com", "example.org"] {
        let a = c.request(&format!("http://{host}/"), &[], true).await;
        assert_eq!(a.status, 404);
        assert!(a.body.contains("HTTP_PROXY"), "{host}: {}", a.body);
    }
    let a = c.request("http://skipper.example.com/", &[], true).await;
    assert!(!a.body.contains("HTTP_PROXY"), "{}", a.body);
    // The locations are the telemetry's paths.
    let m = &h.dataplane.as_ref().unwrap().metrics;
    assert_eq!(m.ingress_counts("test", "site").values().sum::<u64>(), 12);
    let text = http_get(&h.dataplane_metrics_url().unwrap()).await;
    for needle in [
        "path=\"/status\",service=\"podinfo-canary\",status=\"200\"",
        "path=\"/status/201\",service=\"podinfo-primary\",status=\"201\"",
        "path=\"/ver\",service=\"podinfo-primary\"",
        "path=\"/\",service=\"podinfo-canary\",status=\"404\"",
        "path=\"/missing\",service=\"nowhere\",status=\"503\"",
        "host=\"a.b.example.org\"",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
}

/// A canary Ingress as flagger-rs writes it (the routing goldens of the core crate).
fn golden(name: &str) -> Value {
    let text = std::fs::read_to_string(format!(
        "{}/../core/tests/golden/routing/nginx/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The user's Ingress of the core crate's nginx goldens: `/` to the apex `podinfo:80` and
/// `/other`, with stale canary annotations that do not make it a canary.
fn user_ingress() -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "podinfo", "labels": {"app": "podinfo"}, "annotations": {
            "kubernetes.io/ingress.class": "nginx",
            "nginx.ingress.kubernetes.io/canary-weight": "35",
            "nginx.ingress.kubernetes.io/canary-by-header": "stale",
            "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
        }},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": HOST, "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "podinfo", "port": {"number": 80}}}},
            {"path": "/other", "pathType": "Prefix", "backend": {"service": {"name": "other", "port": {"number": 80}}}},
        ]}}]},
    })
}

/// Replaces the canary Ingress with `obj`, as Flagger's reconcile rewrites it.
async fn replace(client: &Client, obj: Value) {
    let api = ingresses(client);
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    let _ = api.delete(&name, &Default::default()).await;
    eventually(10, "canary Ingress gone", || {
        let api = api.clone();
        let name = name.clone();
        async move { api.get_opt(&name).await.unwrap().is_none().then_some(()) }
    })
    .await;
    create(client, obj).await;
}

#[tokio::test]
async fn objects_written_by_flagger_route_as_meant() {
    let (h, client) = start().await;
    primary_and_canary(&client, json!({})).await;
    create(&client, user_ingress()).await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    let only = |v: &str, n: usize| BTreeMap::from([(v.to_string(), n)]);

    // Created at weight 0.
    replace(&client, golden("initial.json")).await;
    assert_eq!(c.versions(URL, &[], 100).await, only("1.0.0", 100));
    // A step of the analysis: weight 10.
    replace(&client, golden("weight.json")).await;
    let seen = c.versions(URL, &[], 500).await;
    let s = share(&seen, "2.0.0");
    eprintln!("flagger-rs canary Ingress at weight 10 over 500 requests: {seen:?}");
    assert!((0.07..=0.13).contains(&s), "{seen:?}");
    // `/other` keeps its own backend (a Service that does not exist here).
    assert_eq!(
        c.send(&format!("http://{HOST}/other"), &[]).await.status,
        503
    );
    // A/B: the header (exact value); the empty cookie annotation is no rule.
    replace(&client, golden("ab.json")).await;
    assert_eq!(
        c.versions(URL, &[("x-canary", "insider")], 20).await,
        only("2.0.0", 20)
    );
    assert_eq!(c.versions(URL, &[], 50).await, only("1.0.0", 50));
    assert_eq!(
        c.version(URL, &[("cookie", "canary=always")]).await,
        "1.0.0"
    );
    // A/B: a header pattern and a cookie.
    replace(&client, golden("ab_header_pattern_and_cookie.json")).await;
    assert_eq!(c.version(URL, &[("x-canary", "beta")]).await, "2.0.0");
    assert_eq!(c.version(URL, &[("x-canary", "betamax")]).await, "1.0.0");
    assert_eq!(
        c.version(URL, &[("cookie", "canary=always")]).await,
        "2.0.0"
    );
    assert_eq!(c.versions(URL, &[], 50).await, only("1.0.0", 50));
    // Promotion done: reset to weight 0, no header or cookie rules.
    replace(&client, golden("ab_reset.json")).await;
    assert_eq!(
        c.versions(URL, &[("x-canary", "insider")], 50).await,
        only("1.0.0", 50)
    );
    // Written under another annotation prefix, the clone is no canary to a controller
    // reading the default one: a second main Ingress, and the user's (older) keeps the path.
    replace(&client, golden("custom_prefix.json")).await;
    assert_eq!(c.versions(URL, &[], 50).await, only("1.0.0", 50));
    let counts = h
        .dataplane
        .as_ref()
        .unwrap()
        .metrics
        .ingress_counts("test", "podinfo");
    // Canary traffic is recorded under the user's Ingress, with the canary upstream.
    let canary: Vec<&String> = counts
        .keys()
        .map(|(c, _)| c)
        .filter(|c| !c.is_empty())
        .collect();
    assert!(!canary.is_empty());
    assert!(
        canary.iter().all(|c| *c == "test-podinfo-canary-80"),
        "{counts:?}"
    );
}

#[tokio::test]
async fn custom_annotation_prefix() {
    let router =
        MeshRouter::seeded(7).with_nginx_annotations_prefix("custom.ingress.kubernetes.io");
    let (h, client) = start_routed(router).await;
    primary_and_canary(&client, json!({})).await;
    create(&client, user_ingress()).await;
    create(&client, golden("custom_prefix.json")).await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    let seen = c.versions(URL, &[], 500).await;
    assert!((0.07..=0.13).contains(&share(&seen, "2.0.0")), "{seen:?}");
    // The `nginx.ingress.kubernetes.io/canary-by-header: stale` left on it is not read.
    // (the weight still decides).
    let seen = c.versions(URL, &[("stale", "always")], 200).await;
    assert!(share(&seen, "2.0.0") < 0.25, "{seen:?}");
}

#[tokio::test]
async fn gateway_routes_take_precedence_over_ingresses() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let (h, client) = start().await;
    primary_and_canary(&client, json!({})).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "httproutes.gateway.networking.k8s.io"},
            "spec": {"group": "gateway.networking.k8s.io", "scope": "Namespaced",
                     "names": {"kind": "HTTPRoute", "plural": "httproutes", "singular": "httproute", "listKind": "HTTPRouteList"},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]},
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    create(&client, ingress("podinfo", "podinfo", &[])).await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    assert_eq!(c.version(URL, &[]).await, "1.0.0");
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    let routes: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "test",
        &ApiResource::from_gvk_with_plural(&gvk, "httproutes"),
    );
    let route = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "app"},
        "spec": {"parentRefs": [{"name": "public"}], "hostnames": [HOST],
                 "rules": [{"backendRefs": [{"name": "podinfo-canary", "port": 9898}]}]},
    });
    routes
        .create(
            &PostParams::default(),
            &serde_json::from_value(route).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(c.version(URL, &[]).await, "2.0.0");
    // Not recorded as ingress traffic.
    let m = &h.dataplane.as_ref().unwrap().metrics;
    assert_eq!(m.ingress_counts("test", "podinfo").values().sum::<u64>(), 1);
    routes.delete("app", &Default::default()).await.unwrap();
    assert_eq!(c.version(URL, &[]).await, "1.0.0");
}

// === the other ingress gateways: Contour, Gloo, Traefik, Skipper, APISIX ===

/// Installs the upstream CRDs of a gateway, as its project publishes them (the files the
/// controller's router tests use, `crates/controller/tests/fixtures/crds/<prefix>*`).
async fn gateway_crds(client: &Client, prefix: &str) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../controller/tests/fixtures/crds");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with(prefix) || !name.ends_with(".yaml") {
            continue;
        }
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        crds.create(&PostParams::default(), &crd).await.unwrap();
        n += 1;
    }
    assert!(n > 0, "no CRD {prefix}* in {}", dir.display());
}

/// The API of a custom kind in `test`.
fn custom(client: &Client, api_version: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let (group, version) = api_version.split_once('/').unwrap();
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Api::namespaced_with(
        client.clone(),
        "test",
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

/// Creates or replaces (server-side apply) a custom object in `test`.
async fn put(client: &Client, plural: &str, obj: Value) {
    let api = custom(
        client,
        obj["apiVersion"].as_str().unwrap(),
        obj["kind"].as_str().unwrap(),
        plural,
    );
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    api.patch(
        &name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap();
}

/// `n` requests to the gateway host: the share answered by the canary (2.0.0), the others by
/// the primary; panics on any other answer.
async fn canary_share(c: &mut ProxyConn, headers: &[(&str, &str)], n: usize) -> f64 {
    let seen = c.versions(URL, headers, n).await;
    assert!(
        seen.keys().all(|v| v == "1.0.0" || v == "2.0.0"),
        "{seen:?}"
    );
    share(&seen, "2.0.0")
}

/// Sums the samples of `name` whose labels include every pair of `want`.
fn series(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    sum(text, name, |l| {
        want.iter()
            .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
    })
}

fn contour_service(name: &str, weight: u64) -> Value {
    json!({"name": name, "port": 80, "weight": weight,
           "requestHeadersPolicy": {"set": [{"name": "l5d-dst-override",
               "value": format!("{name}.test.svc.cluster.local:80")}]}})
}

#[tokio::test]
async fn contour_routes_through_the_included_proxy_by_weight_and_header() {
    let (h, client) = start().await;
    gateway_crds(&client, "contour").await;
    primary_and_canary(&client, json!({})).await;
    put(&client, "httpproxies", json!({
        "apiVersion": "projectcontour.io/v1", "kind": "HTTPProxy",
        "metadata": {"name": "podinfo-ingress"},
        "spec": {"virtualhost": {"fqdn": HOST},
                 "includes": [{"name": "podinfo", "namespace": "test", "conditions": [{"prefix": "/"}]}]},
    }))
    .await;
    // Flagger's A/B routes: the header condition first, the default route after it.
    let child = |routes: Value| {
        json!({
            "apiVersion": "projectcontour.io/v1", "kind": "HTTPProxy",
            "metadata": {"name": "podinfo"},
            "spec": {"routes": routes},
        })
    };
    put(&client, "httpproxies", child(json!([
        {"conditions": [{"prefix": "/", "header": {"name": "x-canary", "exact": "insider"}}],
         "services": [contour_service("podinfo-primary", 0), contour_service("podinfo-canary", 100)]},
        {"conditions": [{"prefix": "/"}],
         "services": [contour_service("podinfo-primary", 70), contour_service("podinfo-canary", 30)]},
    ])))
    .await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    assert_eq!(
        canary_share(&mut c, &[("x-canary", "insider")], 50).await,
        1.0
    );
    let weighted = canary_share(&mut c, &[("x-canary", "outsider")], 600).await;
    eprintln!("contour 70/30: canary share {weighted:.3}");
    assert!((0.25..=0.35).contains(&weighted), "{weighted}");
    // Each service's request headers reach it.
    let a = c
        .send("http://app.example.com/headers", &[("x-canary", "insider")])
        .await;
    assert!(
        a.body.contains("podinfo-canary.test.svc.cluster.local:80"),
        "{}",
        a.body
    );
    // Envoy's cluster statistics of the canary Service, as Flagger's Contour queries read them.
    let text = http_get(&h.dataplane_metrics_url().unwrap()).await;
    let rq = series(
        &text,
        "envoy_cluster_upstream_rq",
        &[("envoy_cluster_name", "test_podinfo-canary_80")],
    );
    assert!(rq > 50.0, "{rq}");

    // Two header conditions each repeating the prefix (Flagger's A/B with two matches): Contour
    // refuses the proxy, the root's include leads nowhere.
    put(
        &client,
        "httpproxies",
        child(json!([
            {"conditions": [{"prefix": "/", "header": {"name": "x-canary", "exact": "insider"}},
                            {"prefix": "/", "header": {"name": "cookie", "contains": "canary"}}],
             "services": [contour_service("podinfo-canary", 100)]},
        ])),
    )
    .await;
    assert_eq!(c.send(URL, &[("x-canary", "insider")]).await.status, 404);
}

fn upstream(name: &str, service: &str) -> Value {
    json!({
        "apiVersion": "gloo.solo.io/v1", "kind": "Upstream",
        "metadata": {"name": name},
        "spec": {"kube": {"serviceName": service, "serviceNamespace": "test", "servicePort": 80,
                          "selector": {"app": service}}},
    })
}

fn route_table(matchers: Value, primary: u64, canary: u64) -> Value {
    let dest = |name: &str, w: u64| json!({"destination": {"upstream": {"name": name, "namespace": "test"}}, "weight": w});
    let mut route = json!({
        "inheritablePathMatchers": true,
        "routeAction": {"multi": {"destinations": [
            dest("test-podinfo-primaryupstream-80", primary),
            dest("test-podinfo-canaryupstream-80", canary),
        ]}},
    });
    if !matchers.is_null() {
        route["matchers"] = matchers;
    }
    json!({
        "apiVersion": "gateway.solo.io/v1", "kind": "RouteTable",
        "metadata": {"name": "podinfo"},
        "spec": {"routes": [route]},
    })
}

#[tokio::test]
async fn gloo_delegates_to_the_route_table_and_files_requests_per_upstream_cluster() {
    let (h, client) = start().await;
    gateway_crds(&client, "gloo").await;
    primary_and_canary(&client, json!({})).await;
    put(
        &client,
        "upstreams",
        upstream("test-podinfo-primaryupstream-80", "podinfo-primary"),
    )
    .await;
    put(
        &client,
        "upstreams",
        upstream("test-podinfo-canaryupstream-80", "podinfo-canary"),
    )
    .await;
    put(&client, "virtualservices", json!({
        "apiVersion": "gateway.solo.io/v1", "kind": "VirtualService",
        "metadata": {"name": "podinfo"},
        "spec": {"virtualHost": {"domains": [HOST], "routes": [
            {"matchers": [{"prefix": "/"}], "delegateAction": {"ref": {"name": "podinfo", "namespace": "test"}}}
        ]}},
    }))
    .await;
    put(&client, "routetables", route_table(Value::Null, 80, 20)).await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    let weighted = canary_share(&mut c, &[], 600).await;
    eprintln!("gloo 80/20: canary share {weighted:.3}");
    assert!((0.15..=0.25).contains(&weighted), "{weighted}");
    // A/B, as Flagger writes it: one matcher with the headers, all the weight on the canary.
    put(&client, "routetables", route_table(
        json!([{"headers": [{"name": "x-canary", "value": "^(insider|beta)$", "regex": true}]}]),
        0,
        100,
    ))
    .await;
    assert_eq!(canary_share(&mut c, &[("x-canary", "beta")], 50).await, 1.0);
    assert_eq!(c.send(URL, &[("x-canary", "outsider")]).await.status, 404);
    let text = http_get(&h.dataplane_metrics_url().unwrap()).await;
    let canary = series(
        &text,
        "envoy_cluster_upstream_rq",
        &[
            ("envoy_cluster_name", "test-podinfo-canaryupstream-80_test"),
            ("kubernetes_namespace", "gloo-system"),
            ("envoy_response_code", "200"),
        ],
    );
    let primary = series(
        &text,
        "envoy_cluster_upstream_rq",
        &[("envoy_cluster_name", "test-podinfo-primaryupstream-80_test")],
    );
    assert_eq!(canary + primary, 650.0, "{canary} + {primary}");
    assert!(canary >= 50.0 + 600.0 * 0.15, "{canary}");
}

fn traefik_service(primary: u64, canary: Option<u64>) -> Value {
    let mut services = vec![
        json!({"name": "podinfo-primary", "namespace": "test", "port": 80, "weight": primary}),
    ];
    if let Some(w) = canary {
        services
            .push(json!({"name": "podinfo-canary", "namespace": "test", "port": 80, "weight": w}));
    }
    json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "TraefikService",
        "metadata": {"name": "podinfo"},
        "spec": {"weighted": {"services": services}},
    })
}

#[tokio::test]
async fn traefik_routes_through_the_weighted_traefik_service() {
    let (h, client) = start().await;
    gateway_crds(&client, "traefik").await;
    primary_and_canary(&client, json!({"localkube.dev/error-ratio": "0.2"})).await;
    put(
        &client,
        "ingressroutes",
        json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
            "metadata": {"name": "podinfo"},
            "spec": {"entryPoints": ["web"], "routes": [{
                "match": format!("Host(`{HOST}`) && PathPrefix(`/`)"), "kind": "Rule",
                "services": [{"name": "podinfo", "kind": "TraefikService"}]}]},
        }),
    )
    .await;
    put(&client, "traefikservices", traefik_service(60, Some(40))).await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    let n = 600;
    let mut statuses = BTreeMap::<u16, u64>::new();
    for _ in 0..n {
        *statuses.entry(c.send(URL, &[]).await.status).or_default() += 1;
    }
    let m = &h.dataplane.as_ref().unwrap().metrics;
    let canary: u64 = m
        .gateway_counts("traefik", "test-podinfo-canary-80@kubernetescrd")
        .values()
        .sum();
    eprintln!("traefik 60/40 over {n}: canary {canary}, statuses {statuses:?}");
    assert!((200..=280).contains(&canary), "{canary}");
    // Traefik's service series, by the canary Service as Traefik names it.
    let text = http_get(&h.dataplane_metrics_url().unwrap()).await;
    let svc = ("service", "test-podinfo-canary-80@kubernetescrd");
    let failed = series(
        &text,
        "traefik_service_requests_total",
        &[svc, ("code", "500")],
    );
    assert_eq!(
        failed,
        statuses.get(&500).copied().unwrap_or_default() as f64
    );
    let inf = series(
        &text,
        "traefik_service_request_duration_seconds_bucket",
        &[svc, ("le", "+Inf")],
    );
    assert_eq!(inf, canary as f64);
    // Flagger's 0/100: the primary written at weight 0 gets nothing.
    put(&client, "traefikservices", traefik_service(0, Some(100))).await;
    let primary = |m: &dataplane::metrics::RequestMetrics| -> u64 {
        m.gateway_counts("traefik", "test-podinfo-primary-80@kubernetescrd")
            .values()
            .sum()
    };
    let before = primary(m);
    for _ in 0..50 {
        c.send(URL, &[]).await;
    }
    assert_eq!(primary(m), before);
}

fn skipper_ingress(name: &str, paths: Value, annotations: Value) -> Value {
    let mut a = json!({"kubernetes.io/ingress.class": "skipper"});
    for (k, v) in annotations.as_object().unwrap() {
        a[k] = v.clone();
    }
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "annotations": a},
        "spec": {"rules": [{"host": HOST, "http": {"paths": paths}}]},
    })
}

fn skipper_path(service: &str) -> Value {
    json!({"path": "/", "pathType": "Prefix", "backend": {"service": {"name": service, "port": {"number": 80}}}})
}

#[tokio::test]
async fn skipper_splits_a_path_by_backend_weights_and_yields_to_the_users_ingress() {
    let (h, client) = start().await;
    primary_and_canary(&client, json!({})).await;
    let ingresses = ingresses(&client);
    let apply = |obj: Value| {
        let ingresses = ingresses.clone();
        async move {
            let name = obj["metadata"]["name"].as_str().unwrap().to_string();
            ingresses
                .patch(
                    &name,
                    &PatchParams::apply("test").force(),
                    &Patch::Apply(&obj),
                )
                .await
                .unwrap();
        }
    };
    apply(skipper_ingress(
        "podinfo",
        json!([skipper_path("podinfo")]),
        json!({}),
    ))
    .await;
    let canary = |weights: &str, predicate: &str| {
        skipper_ingress(
            "podinfo-canary",
            json!([
                skipper_path("podinfo-primary"),
                skipper_path("podinfo-canary")
            ]),
            json!({"zalando.org/backend-weights": weights, "zalando.org/skipper-predicate": predicate}),
        )
    };
    apply(canary(
        r#"{"podinfo-canary":25,"podinfo-primary":75}"#,
        "Weight(100)",
    ))
    .await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    let weighted = canary_share(&mut c, &[], 600).await;
    eprintln!("skipper 75/25: canary share {weighted:.3}");
    assert!((0.20..=0.30).contains(&weighted), "{weighted}");
    let m = &h.dataplane.as_ref().unwrap().metrics;
    let route = |ingress: &str, service: &str| {
        format!(
            "kube_test__{}__app_example_com_____{}",
            ingress.replace('-', "_"),
            service.replace('-', "_")
        )
    };
    let apex_route = route("podinfo", "podinfo");
    assert!(m.gateway_counts("skipper", &apex_route).is_empty());
    // Back to 100/0 with False(): the canary Ingress's routes are off, the user's serves.
    apply(canary(
        r#"{"podinfo-canary":0,"podinfo-primary":100}"#,
        "False()",
    ))
    .await;
    assert_eq!(canary_share(&mut c, &[], 50).await, 0.0);
    assert_eq!(
        m.gateway_counts("skipper", &apex_route).get(&200),
        Some(&50)
    );
    let text = http_get(&h.dataplane_metrics_url().unwrap()).await;
    let canary_route = route("podinfo-canary", "podinfo-canary");
    let served = series(
        &text,
        "skipper_serve_route_count",
        &[("route", &canary_route), ("code", "200")],
    );
    let inf = series(
        &text,
        "skipper_response_duration_seconds_bucket",
        &[("route", &canary_route), ("le", "+Inf")],
    );
    assert_eq!(served, weighted * 600.0);
    assert_eq!(inf, served);
}

fn apisix_route(name: &str, priority: Option<u64>, backends: Value) -> Value {
    let mut rule = json!({"name": "rule1",
        "match": {"hosts": [HOST], "paths": ["/*"], "methods": ["GET"]},
        "backends": backends});
    if let Some(p) = priority {
        rule["priority"] = json!(p);
    }
    json!({
        "apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute",
        "metadata": {"name": name},
        "spec": {"http": [rule]},
    })
}

#[tokio::test]
async fn apisix_canary_route_outranks_the_users_and_splits_by_weight() {
    let (h, client) = start().await;
    gateway_crds(&client, "apisix").await;
    primary_and_canary(&client, json!({})).await;
    put(
        &client,
        "apisixroutes",
        apisix_route(
            "podinfo",
            None,
            json!([{"serviceName": "podinfo", "servicePort": 80}]),
        ),
    )
    .await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    assert_eq!(canary_share(&mut c, &[], 20).await, 0.0);
    put(
        &client,
        "apisixroutes",
        apisix_route(
            "podinfo-podinfo-canary",
            Some(10000),
            json!([
                {"serviceName": "podinfo-primary", "servicePort": 80, "weight": 50},
                {"serviceName": "podinfo-canary", "servicePort": 80, "weight": 50},
            ]),
        ),
    )
    .await;
    let weighted = canary_share(&mut c, &[], 600).await;
    eprintln!("apisix 50/50: canary share {weighted:.3}");
    assert!((0.44..=0.56).contains(&weighted), "{weighted}");
    let text = http_get(&h.dataplane_metrics_url().unwrap()).await;
    let canary_route = ("route", "test_podinfo-podinfo-canary_rule1");
    assert_eq!(
        series(
            &text,
            "apisix_http_status",
            &[canary_route, ("code", "200"), ("matched_uri", "/*")]
        ),
        600.0
    );
    assert_eq!(
        series(
            &text,
            "apisix_http_status",
            &[("route", "test_podinfo_rule1")]
        ),
        20.0
    );
    let request = series(
        &text,
        "apisix_http_latency_bucket",
        &[canary_route, ("type", "request"), ("le", "60000")],
    );
    assert_eq!(request, 600.0);
}
