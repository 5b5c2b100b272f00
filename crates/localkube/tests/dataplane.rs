//! The simulated data plane: podinfo-like pods reached by Service name through localkube's HTTP
//! proxy, routing by Endpoints, fault annotations, local upstreams, the routing seam, and the
//! request metrics as Prometheus scrapes them.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Service};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use localkube::dataplane::{self, RequestInfo, RouteDecision, Router, ServicePort};
use serde_json::{Value, json};

use common::{Prometheus, eventually, http_get};

async fn start_with(dp: dataplane::DataPlaneConfig) -> (localkube::Handle, Client) {
    let (h, client) = common::start_with(localkube::Config {
        dataplane: Some(dp),
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

async fn start() -> (localkube::Handle, Client) {
    start_with(dataplane::DataPlaneConfig::default()).await
}

fn proxy_addr(h: &localkube::Handle) -> SocketAddr {
    h.dataplane.as_ref().expect("data plane runs").addr
}

/// One keep-alive HTTP/1.1 connection to the proxy, sending absolute-form requests as a
/// client with `HTTP_PROXY` does.
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

    async fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let uri: axum::http::Uri = url.parse().unwrap();
        let mut b = axum::http::Request::builder().method(method).uri(url);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            b = b.header("host", uri.authority().unwrap().as_str());
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.sender.ready().await.unwrap();
        let resp = self
            .sender
            .send_request(b.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(Body::new(resp.into_body()), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn get(&mut self, url: &str) -> (u16, String) {
        self.send("GET", url, &[], "").await
    }

    async fn json(&mut self, url: &str) -> Value {
        let (status, body) = self.get(url).await;
        assert_eq!(status, 200, "GET {url}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// GETs `url` until `pred(status, body)` holds, or panics after 10 s.
async fn until(c: &mut ProxyConn, url: &str, what: &str, pred: impl Fn(u16, &str) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = c.get(url).await;
        if pred(status, &body) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn deployment(name: &str, image: &str, replicas: i32, annotations: Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}, "annotations": annotations},
                         "spec": {"containers": [{"name": "podinfo", "image": image, "ports": [{"name": "http", "containerPort": 9898}]}]}},
        },
    }))
    .unwrap()
}

fn service(name: &str, selector: &str, port: u16) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": {"app": selector}, "ports": [{"name": "http", "port": port, "targetPort": "http"}]},
    }))
    .unwrap()
}

/// Creates a Deployment and a Service of the same name and waits for `replicas` ready
/// endpoints.
async fn app(
    client: &Client,
    ns: &str,
    name: &str,
    image: &str,
    replicas: i32,
    annotations: Value,
) {
    let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deps.create(
        &PostParams::default(),
        &deployment(name, image, replicas, annotations),
    )
    .await
    .unwrap();
    let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
    svcs.create(&PostParams::default(), &service(name, name, 9898))
        .await
        .unwrap();
    ready_endpoints(client, ns, name, replicas as usize).await;
}

async fn ready_endpoints(client: &Client, ns: &str, name: &str, n: usize) {
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    eventually(10, "ready endpoints", || {
        let eps = eps.clone();
        async move {
            let e = eps.get_opt(name).await.ok()??;
            let count: usize = e
                .subsets
                .unwrap_or_default()
                .iter()
                .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
                .sum();
            (count == n).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn podinfo_api_through_the_proxy() {
    let (h, client) = start().await;
    app(
        &client,
        "test",
        "podinfo",
        "ghcr.io/stefanprodan/podinfo:6.0.1",
        2,
        json!({}),
    )
    .await;
    app(&client, "default", "front", "podinfo:1.2.3", 1, json!({})).await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;

    let a = c.json("http://podinfo.test:9898/").await;
    let b = c.json("http://podinfo.test:9898/").await;
    assert_eq!(a["version"], "6.0.1");
    assert_eq!(b["version"], "6.0.1");
    assert!(a["hostname"].as_str().unwrap().starts_with("podinfo-"));
    assert_ne!(a["hostname"], b["hostname"], "round robin over two pods");

    // Every cluster name form, and the ClusterIP.
    for host in [
        "podinfo.test:9898",
        "podinfo.test.svc:9898",
        "podinfo.test.svc.cluster.local:9898",
    ] {
        assert_eq!(
            c.json(&format!("http://{host}/version")).await["version"],
            "6.0.1",
            "{host}"
        );
    }
    assert_eq!(c.json("http://front:9898/").await["version"], "1.2.3");
    let svcs: Api<Service> = Api::namespaced(client.clone(), "test");
    let ip = svcs
        .get("podinfo")
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    assert_eq!(
        c.json(&format!("http://{ip}:9898/")).await["version"],
        "6.0.1"
    );

    // podinfo's API.
    let (status, body) = c
        .send("POST", "http://podinfo.test:9898/token", &[], "test")
        .await;
    assert_eq!(status, 200, "{body}");
    let token: Value = serde_json::from_str(&body).unwrap();
    assert!(token["token"].as_str().unwrap().len() > 10);
    assert!(token["expires_at"].is_string());
    assert_eq!(c.get("http://podinfo.test:9898/token").await.0, 405);
    assert_eq!(c.get("http://podinfo.test:9898/status/418").await.0, 418);
    assert_eq!(
        c.json("http://podinfo.test:9898/healthz").await["status"],
        "OK"
    );
    assert_eq!(
        c.json("http://podinfo.test:9898/readyz").await["status"],
        "OK"
    );
    let t = tokio::time::Instant::now();
    assert_eq!(
        c.json("http://podinfo.test:9898/delay/0.2").await["delay"],
        0.2
    );
    assert!(t.elapsed() >= Duration::from_millis(200));
    let (status, body) = c
        .send(
            "GET",
            "http://podinfo.test:9898/headers",
            &[("x-test", "yes")],
            "",
        )
        .await;
    assert_eq!(status, 200);
    assert!(body.contains("x-test"), "{body}");

    // What does not resolve, or has no such port.
    let (status, body) = c.get("http://nope.test:9898/").await;
    assert_eq!(status, 502);
    assert!(body.contains("\"test/nope\" not found"), "{body}");
    let (status, body) = c.get("http://podinfo.test:80/").await;
    assert_eq!(status, 502);
    assert!(body.contains("has no port 80"), "{body}");

    // A real process with HTTP_PROXY set (curl reads the lower-case variable).
    assert!(
        Path::new("/usr/bin/curl").exists(),
        "curl is installed (scripts/test.sh installs Debian's package; or `apt-get install curl`)"
    );
    {
        let out = tokio::process::Command::new("/usr/bin/curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "http://podinfo.test:9898/version",
            ])
            .env("http_proxy", h.proxy_url().unwrap())
            .env("HTTP_PROXY", h.proxy_url().unwrap())
            .env_remove("no_proxy")
            .env_remove("NO_PROXY")
            .output()
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "curl: {e}: {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(v["version"], "6.0.1");
    }
}

async fn versions(c: &mut ProxyConn, url: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let v = c.json(url).await;
        *seen
            .entry(v["version"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    seen
}

#[tokio::test]
async fn per_service_routing_and_selector_switch() {
    let (h, client) = start().await;
    app(&client, "test", "blue", "podinfo:1.0.0", 2, json!({})).await;
    app(&client, "test", "green", "podinfo:2.0.0", 2, json!({})).await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "test");
    svcs.create(&PostParams::default(), &service("app", "blue", 80))
        .await
        .unwrap();
    ready_endpoints(&client, "test", "app", 2).await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    assert_eq!(
        versions(&mut c, "http://blue.test:9898/", 10).await,
        BTreeMap::from([("1.0.0".to_string(), 10)])
    );
    assert_eq!(
        versions(&mut c, "http://green.test:9898/", 10).await,
        BTreeMap::from([("2.0.0".to_string(), 10)])
    );
    assert_eq!(
        versions(&mut c, "http://app.test/", 10).await,
        BTreeMap::from([("1.0.0".to_string(), 10)])
    );

    // The kubernetes provider's move: switch the selector; traffic follows the Endpoints.
    svcs.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"selector": {"app": "green"}}})),
    )
    .await
    .unwrap();
    until(&mut c, "http://app.test/", "traffic on green", |_, body| {
        body.contains("\"2.0.0\"")
    })
    .await;
    assert_eq!(
        versions(&mut c, "http://app.test/", 20).await,
        BTreeMap::from([("2.0.0".to_string(), 20)])
    );

    // No ready pods behind the Service: 503, as a proxy without a healthy upstream answers.
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "test");
    deps.patch(
        "green",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 0}})),
    )
    .await
    .unwrap();
    ready_endpoints(&client, "test", "app", 0).await;
    let (status, body) = c.get("http://app.test/").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no endpoints available"), "{body}");
}

#[tokio::test]
async fn fault_annotations_give_the_configured_error_ratio() {
    let (h, client) = start().await;
    app(
        &client,
        "test",
        "faulty",
        "podinfo:3.0.0",
        2,
        json!({"localkube.dev/error-ratio": "0.1", "localkube.dev/error-code": "503"}),
    )
    .await;
    app(
        &client,
        "test",
        "slow",
        "podinfo:3.0.0",
        1,
        json!({"localkube.dev/latency": "50ms-60ms"}),
    )
    .await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for _ in 0..1000 {
        *by_status
            .entry(c.get("http://faulty.test:9898/").await.0)
            .or_default() += 1;
    }
    let errors = by_status.get(&503).copied().unwrap_or(0);
    assert!(
        (90..=110).contains(&errors),
        "10% errors expected: {by_status:?}"
    );
    assert_eq!(errors + by_status.get(&200).copied().unwrap_or(0), 1000);
    // Health probes are never failed.
    for _ in 0..50 {
        assert_eq!(c.get("http://faulty.test:9898/healthz").await.0, 200);
    }
    // Latency.
    for _ in 0..5 {
        let t = tokio::time::Instant::now();
        assert_eq!(c.get("http://slow.test:9898/").await.0, 200);
        assert!(t.elapsed() >= Duration::from_millis(50));
    }
    // A new image made faulty by annotation: the new pods fail, as a canary would.
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "test");
    deps.patch(
        "slow",
        &PatchParams::default(),
        // Strategic: containers merge by name, so the named port stays.
        &Patch::Strategic(json!({"spec": {"template": {
            "metadata": {"annotations": {"localkube.dev/latency": null, "localkube.dev/error-ratio": "1"}},
            "spec": {"containers": [{"name": "podinfo", "image": "podinfo:3.0.1"}]}}}})),
    )
    .await
    .unwrap();
    until(
        &mut c,
        "http://slow.test:9898/",
        "faulty v3.0.1 serving",
        |status, _| status == 500,
    )
    .await;
}

/// Sums a metric's samples over the series whose labels contain every `label="value"` given.
fn sample_sum(metrics: &str, name: &str, labels: &[&str]) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The scrape annotations of Flagger's podinfo (its metrics port is 9797).
fn scraped(extra: Value) -> Value {
    let mut a = json!({"prometheus.io/scrape": "true", "prometheus.io/port": "9797"});
    if let (Some(a), Some(extra)) = (a.as_object_mut(), extra.as_object()) {
        a.extend(extra.clone());
    }
    a
}

/// The IPs of the pods whose name starts with `prefix`.
async fn pod_ips(client: &Client, ns: &str, prefix: &str) -> Vec<String> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    pods.list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| {
            p.metadata
                .name
                .as_deref()
                .unwrap_or_default()
                .starts_with(prefix)
        })
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect()
}

#[tokio::test]
async fn metrics_match_the_requests_sent_and_prometheus_scrapes_them() {
    let (h, client) = start().await;
    app(
        &client,
        "test",
        "podinfo",
        "podinfo:6.0.0",
        2,
        scraped(json!({dataplane::LATENCY: "15ms"})),
    )
    .await;
    let dp = h.dataplane.as_ref().unwrap();
    // Prometheus with the pod job of Flagger's configuration, discovery and scrapes through
    // the data plane; it sees both pods before any traffic.
    let prom = Prometheus::start(&dp.prometheus_scrape_configs("1s")).await;
    if let Some(prom) = &prom {
        eventually(30, "Prometheus scraping both pods", || async move {
            prom.scalar(r#"sum(up{job="kubernetes-pods",kubernetes_namespace="test"})"#)
                .await
                .filter(|v| *v == 2.0)
        })
        .await;
    }

    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    for _ in 0..30 {
        assert_eq!(c.get("http://podinfo.test:9898/").await.0, 200);
    }
    for _ in 0..10 {
        assert_eq!(c.get("http://podinfo.test:9898/status/500").await.0, 500);
    }
    for _ in 0..4 {
        assert_eq!(
            c.send("POST", "http://podinfo.test:9898/token", &[], "x")
                .await
                .0,
            200
        );
    }
    // podinfo's router answers these before its metrics middleware: not recorded.
    assert_eq!(c.get("http://podinfo.test:9898/nothing/here").await.0, 404);
    assert_eq!(c.get("http://podinfo.test:9898/token").await.0, 405);
    let m = &dp.metrics;
    assert_eq!(
        m.counts("test", "podinfo-"),
        BTreeMap::from([(200, 34), (500, 10)])
    );
    assert_eq!(
        m.counts_by_path("test", "podinfo-"),
        BTreeMap::from([
            ("root".to_string(), 30),
            ("status".to_string(), 10),
            ("token".to_string(), 4)
        ])
    );

    // Each pod serves its own series at /metrics, as podinfo does: reached at the pod's IP
    // through the proxy, as Prometheus scrapes it, with podinfo's labels only.
    let ips = pod_ips(&client, "test", "podinfo-").await;
    assert_eq!(ips.len(), 2, "{ips:?}");
    let mut texts = Vec::new();
    for ip in &ips {
        let (status, text) = c.get(&format!("http://{ip}:9797/metrics")).await;
        assert_eq!(status, 200, "{text}");
        texts.push(text);
    }
    let all = texts.join("\n");
    let sum = |name: &str, labels: &[&str]| sample_sum(&all, name, labels);
    assert_eq!(
        sum(
            "http_request_duration_seconds_count",
            &["method=\"GET\",path=\"root\",status=\"200\""]
        ),
        30
    );
    assert_eq!(
        sum(
            "http_request_duration_seconds_count",
            &["path=\"status\",status=\"500\""]
        ),
        10
    );
    assert_eq!(
        sum(
            "http_request_duration_seconds_bucket",
            &["path=\"root\"", "le=\"+Inf\""]
        ),
        30
    );
    // 15 ms each (at least): none in the buckets up to 10 ms.
    assert_eq!(
        sum(
            "http_request_duration_seconds_bucket",
            &["path=\"root\"", "le=\"0.01\""]
        ),
        0
    );
    assert_eq!(
        sum("http_requests_total", &["{status=\"200\"}"]),
        34,
        "podinfo's counter is labelled by status only"
    );
    assert!(!all.contains("kubernetes_pod_name"), "{all}");
    // The scrapes on the metrics port were not recorded; one on the app port is.
    assert_eq!(
        c.get(&format!("http://{}:9898/metrics", ips[0])).await.0,
        200
    );
    assert_eq!(
        m.counts_by_path("test", "podinfo-").get("metrics"),
        Some(&1)
    );
    // The data plane's own /metrics has the proxies' series, not podinfo's.
    let own = http_get(&h.dataplane_metrics_url().unwrap()).await;
    assert!(!own.contains("http_request_duration_seconds"), "{own}");
    assert!(own.contains("istio_requests_total{"), "{own}");

    // What Prometheus scraped, with the labels its relabeling adds.
    let Some(prom) = prom else {
        return;
    };
    let root = eventually(30, "Prometheus scraped the requests", || {
        let prom = &prom;
        async move {
            prom.scalar(r#"sum(http_request_duration_seconds_count{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",app="podinfo",path="root"})"#)
                .await
                .filter(|v| *v >= 30.0)
        }
    })
    .await;
    assert_eq!(root, 30.0);
    // Non-5xx requests, as Flagger's success-rate query counts them: `/`, `/token` and the
    // scrape on the app port.
    eventually(30, "Prometheus counting 35 non-5xx requests", || {
        let prom = &prom;
        async move {
            prom.scalar(r#"sum(http_request_duration_seconds_count{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",status!~"5.*"})"#)
                .await
                .filter(|v| *v == 35.0)
        }
    })
    .await;
    // Flagger's NGINX `latency` MetricTemplate: the 99th percentile of `/`, in seconds.
    let latency = prom
        .scalar(r#"histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",path="root"}[1m])) by (le))"#)
        .await
        .unwrap();
    assert!(
        latency > 0.01 && latency < 1.0,
        "p99 of 15 ms requests: {latency}"
    );
}

/// A tiny local HTTP server standing in for a real process (the load tester, say): answers
/// with the method, path, Host header and body it got.
async fn echo_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(
        |method: axum::http::Method,
         uri: axum::http::Uri,
         headers: axum::http::HeaderMap,
         body: String| async move {
            json!({
                "method": method.as_str(),
                "path": uri.path(),
                "host": headers.get("host").and_then(|h| h.to_str().ok()),
                "body": body,
            })
            .to_string()
        },
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn local_upstreams_and_outside_addresses() {
    let (h, client) = start().await;
    let echo = echo_server().await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "test");
    // A Service annotated with a local upstream (Flagger's load tester URL works unchanged).
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "flagger-loadtester", "annotations": {"localkube.dev/upstream": echo.to_string()}},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    let (status, body) = c
        .send(
            "POST",
            "http://flagger-loadtester.test/",
            &[("content-type", "application/json")],
            r#"{"name":"acceptance","metadata":{"cmd":"hey"}}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/");
    assert_eq!(v["host"], "flagger-loadtester.test");
    assert_eq!(
        v["body"],
        r#"{"name":"acceptance","metadata":{"cmd":"hey"}}"#
    );

    // A selector-less Service with hand-written Endpoints at 127.0.0.1 works the same way.
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "external"},
            "spec": {"ports": [{"name": "http", "port": 8080}]},
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "test");
    eps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "external"},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": echo.port()}]}],
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let v: Value = serde_json::from_str(&c.get("http://external.test:8080/x").await.1).unwrap();
    assert_eq!(v["path"], "/x");

    // Addresses outside the cluster are proxied as they are, so a whole process can run with
    // HTTP_PROXY set (its calls to the API server or to local tools keep working).
    let v: Value = serde_json::from_str(&c.get(&format!("http://{echo}/direct")).await.1).unwrap();
    assert_eq!(v["path"], "/direct");

    // Forwarded requests are recorded by the destination's proxy, under the Service's name;
    // podinfo's series are podinfo's (a real process keeps its own).
    let metrics = &h.dataplane.as_ref().unwrap().metrics;
    assert_eq!(
        metrics.mesh_counts("test", "flagger-loadtester"),
        BTreeMap::from([(200, 1)])
    );
    assert!(metrics.counts("test", "flagger-loadtester").is_empty());

    // The client's Host goes to the process as it was sent (hey -host, curl -H Host:).
    let (status, body) = c
        .send(
            "GET",
            "http://flagger-loadtester.test/",
            &[("host", "app.example.com")],
            "",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["host"], "app.example.com");

    // An address in the cluster's ranges that no pod or Service has is never forwarded out.
    let (status, body) = c.get("http://10.244.9.9:9898/").await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("no pod or Service has the address 10.244.9.9"),
        "{body}"
    );

    // An upstream that is not listening: 502.
    svcs.patch(
        "flagger-loadtester",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"localkube.dev/upstream": "127.0.0.1:1"}}}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(c.get("http://flagger-loadtester.test/").await.0, 502);

    // The data plane's own endpoints, addressed directly.
    assert!(
        http_get(&format!("http://{}/healthz", proxy_addr(&h)))
            .await
            .contains("ok")
    );
}

/// A router standing in for a mesh: `x-canary: insider` goes to the canary Service, and
/// every request is mirrored to the mirror Service.
#[derive(Debug)]
struct HeaderRouter;

impl Router for HeaderRouter {
    fn route(
        &self,
        _api: &localkube::Api,
        to: &ServicePort,
        request: &RequestInfo<'_>,
    ) -> RouteDecision {
        if to.service != "podinfo" {
            return RouteDecision::to(to.clone());
        }
        let insider = request
            .headers
            .get("x-canary")
            .is_some_and(|v| v == "insider");
        let svc = |name: &str| ServicePort {
            namespace: to.namespace.clone(),
            service: name.to_string(),
            port: to.port,
        };
        RouteDecision {
            backend: if insider {
                svc("podinfo-canary")
            } else {
                to.clone()
            },
            mirrors: vec![svc("podinfo-mirror")],
            actions: Default::default(),
        }
    }
}

#[tokio::test]
async fn routing_seam_header_match_and_mirroring() {
    let (h, client) = start_with(dataplane::DataPlaneConfig {
        router: Arc::new(HeaderRouter),
        ..Default::default()
    })
    .await;
    app(&client, "test", "podinfo", "podinfo:1.0.0", 1, json!({})).await;
    app(
        &client,
        "test",
        "podinfo-canary",
        "podinfo:2.0.0",
        1,
        json!({}),
    )
    .await;
    app(
        &client,
        "test",
        "podinfo-mirror",
        "podinfo:9.9.9",
        1,
        json!({}),
    )
    .await;
    let mut c = ProxyConn::open(proxy_addr(&h)).await;
    for _ in 0..5 {
        let (_, body) = c
            .send(
                "GET",
                "http://podinfo.test:9898/",
                &[("x-canary", "insider")],
                "",
            )
            .await;
        assert!(body.contains("\"2.0.0\""), "{body}");
        let (_, body) = c.get("http://podinfo.test:9898/").await;
        assert!(body.contains("\"1.0.0\""), "{body}");
    }
    let metrics = h.dataplane.as_ref().unwrap().metrics.clone();
    eventually(10, "mirrored copies served", || {
        let m = metrics.clone();
        async move { (m.counts("test", "podinfo-mirror-") == BTreeMap::from([(200, 10)])).then_some(()) }
    })
    .await;
    assert_eq!(
        metrics.counts("test", "podinfo-canary-"),
        BTreeMap::from([(200, 5)])
    );
}

/// `curl ARGS` run as a process whose `http_proxy` is `proxy`; its stdout. `None` when curl is
/// not installed.
async fn curl(proxy: &str, args: &[&str]) -> String {
    assert!(
        Path::new("/usr/bin/curl").exists(),
        "curl is installed (scripts/test.sh installs Debian's package; or `apt-get install curl`)"
    );
    let out = tokio::process::Command::new("/usr/bin/curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .env("http_proxy", proxy)
        .env("HTTP_PROXY", proxy)
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_registered_process_resolves_names_in_its_namespace_and_an_ingress_controller_service_fronts_the_ingress()
 {
    // Single-label names default to namespace `default` for unknown clients.
    let (h, client) = start().await;
    app(
        &client,
        "test",
        "podinfo-svc-canary",
        "podinfo:6.0.1",
        1,
        json!({}),
    )
    .await;
    app(
        &client,
        "default",
        "podinfo-svc-canary",
        "podinfo:9.9.9",
        1,
        json!({}),
    )
    .await;
    let dp = h.dataplane.as_ref().unwrap();
    // The load tester, registered as Service `flagger-loadtester` in `test`, names itself in
    // its proxy URL: `curl http://podinfo-svc-canary/token` reaches the Service of its own
    // namespace, as from a pod there.
    let loadtester = dp.proxy_url_for("flagger-loadtester", "test");
    assert!(loadtester.starts_with("http://flagger-loadtester.test@127.0.0.1:"));
    // podinfo's `/token` answers a token named after the pod that served it.
    let assert_podinfo_token = |body: String| {
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["token"]
                .as_str()
                .unwrap()
                .starts_with("localkube.podinfo-svc-canary-"),
            "{v}"
        );
    };
    assert_podinfo_token(
        curl(
            &loadtester,
            &["-X", "POST", "http://podinfo-svc-canary:9898/token"],
        )
        .await,
    );
    let version = |body: String| -> String {
        let v: Value = serde_json::from_str(&body).unwrap();
        v["version"].as_str().unwrap().to_string()
    };
    // Without a port: the Service's port 80, as Flagger's load tester commands write it.
    let svcs: Api<Service> = Api::namespaced(client.clone(), "test");
    svcs.create(
        &PostParams::default(),
        &service("podinfo-canary", "podinfo-svc-canary", 80),
    )
    .await
    .unwrap();
    ready_endpoints(&client, "test", "podinfo-canary", 1).await;
    assert_podinfo_token(curl(&loadtester, &["-X", "POST", "http://podinfo-canary/token"]).await);
    let from_test = curl(&loadtester, &["http://podinfo-svc-canary:9898/version"]).await;
    assert_eq!(version(from_test), "6.0.1");
    // A namespace alone works too; a client that names nothing is in `default`.
    let ns_only = curl(
        &dp.proxy_url_for("", "test"),
        &["http://podinfo-svc-canary:9898/version"],
    )
    .await;
    assert_eq!(version(ns_only), "6.0.1");
    let anonymous = curl(&dp.proxy_url(), &["http://podinfo-svc-canary:9898/version"]).await;
    assert_eq!(version(anonymous), "9.9.9");
    // The meshes' series name the load tester as the client, from both sides (its three
    // requests: the token on port 9898, the token on port 80, the version).
    let text = http_get(&dp.metrics_url()).await;
    for reporter in ["source", "destination"] {
        let series = format!(
            "istio_requests_total{{reporter=\"{reporter}\",source_workload=\"flagger-loadtester\",source_workload_namespace=\"test\",destination_workload=\"podinfo-svc-canary\",destination_workload_namespace=\"test\""
        );
        assert_eq!(
            sample_sum(&text, "istio_requests_total", &[&series[21..]]),
            3,
            "{reporter}: {text}"
        );
    }

    // An ingress controller Service whose upstream is the data plane fronts the simulated
    // NGINX ingress: Flagger's `curl -H 'Host: app.example.com' http://ingress-nginx-controller.ingress-nginx`.
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "ingress-nginx"}})).unwrap(),
    )
    .await
    .unwrap();
    let svcs: Api<Service> = Api::namespaced(client.clone(), "ingress-nginx");
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "ingress-nginx-controller", "annotations": {dataplane::UPSTREAM: dp.addr.to_string()}},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let ingresses: Api<k8s_openapi::api::networking::v1::Ingress> =
        Api::namespaced(client.clone(), "test");
    ingresses
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "podinfo", "annotations": {"kubernetes.io/ingress.class": "nginx"}},
                "spec": {"rules": [{"host": "app.example.com", "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "podinfo-svc-canary", "port": {"number": 9898}}},
                }]}}]},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let through = curl(
        &loadtester,
        &[
            "-H",
            "Host: app.example.com",
            "http://ingress-nginx-controller.ingress-nginx/",
        ],
    )
    .await;
    let v: Value = serde_json::from_str(&through).unwrap();
    assert!(
        v["hostname"]
            .as_str()
            .unwrap()
            .starts_with("podinfo-svc-canary-"),
        "{v}"
    );
    assert_eq!(v["version"], "6.0.1");
    assert_eq!(
        dp.metrics.ingress_counts("test", "podinfo"),
        BTreeMap::from([((String::new(), 200), 1)])
    );
    // A host no Ingress has: the controller's default backend.
    let mut c = ProxyConn::open(dp.addr).await;
    let (status, body) = c
        .get("http://ingress-nginx-controller.ingress-nginx/")
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("default backend"), "{body}");
}
