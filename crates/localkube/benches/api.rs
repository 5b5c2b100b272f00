//! localkube's API figures, measured over HTTP through the `kube` crate as a controller would
//! see them: writes/s, list latency at 10,000 objects, and watch fan-out to 100 watchers.
//!
//! A last row measures the simulated data plane: requests/s through the proxy to simulated
//! pods. `cargo bench -p localkube` prints a small table. Sizes can be changed with
//! `LOCALKUBE_BENCH_OBJECTS` (default 10000), `LOCALKUBE_BENCH_WATCHERS` (100) and
//! `LOCALKUBE_BENCH_EVENTS` (1000). Simulated controllers are off so only the API is measured.

#![allow(
    clippy::unwrap_used,
    reason = "bench code: a panic is the failure report"
)]

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Client;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use tokio::time::Instant;

/// How many requests are in flight at once for the write phases.
const CONCURRENCY: usize = 16;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cm(name: &str, i: usize) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"bench": "list", "bucket": (i % 100).to_string()}},
        "data": {"index": i.to_string(), "payload": "x".repeat(256)},
    }))
    .unwrap()
}

async fn client_for(h: &localkube::Handle) -> Client {
    let kc = kube::config::Kubeconfig::from_yaml(&h.kubeconfig()).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

async fn make_namespace(client: &Client, name: &str) {
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .unwrap();
}

/// Creates `n` ConfigMaps named `{prefix}{i}` with `CONCURRENCY` requests in flight; returns
/// the elapsed time.
async fn create_many(api: &Api<ConfigMap>, prefix: &str, n: usize) -> Duration {
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let name = format!("{prefix}{i}");
            async move { api.create(&PostParams::default(), &cm(&name, i)).await }
        })
        .buffer_unordered(CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await
        .unwrap();
    start.elapsed()
}

/// Latency percentiles (p50, p99) in milliseconds of `runs` sequential calls of `f`.
async fn latencies<F, Fut>(runs: usize, mut f: F) -> (f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        std::hint::black_box(f().await);
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    (pct(0.5), pct(0.99))
}

struct Row {
    what: String,
    value: String,
}

fn row(what: impl Into<String>, value: impl Into<String>) -> Row {
    Row {
        what: what.into(),
        value: value.into(),
    }
}

#[tokio::main]
async fn main() {
    let objects = env_usize("LOCALKUBE_BENCH_OBJECTS", 10_000);
    let watchers = env_usize("LOCALKUBE_BENCH_WATCHERS", 100);
    let events = env_usize("LOCALKUBE_BENCH_EVENTS", 1_000);
    let h = localkube::Server::start(localkube::Config {
        controllers: false,
        watch_window: objects.max(events) * 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = client_for(&h).await;
    let mut rows = Vec::new();

    // Writes: creates, then single-key updates (merge patches).
    make_namespace(&client, "bench").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "bench");
    let took = create_many(&api, "cm-", objects).await;
    rows.push(row(
        format!("create, {CONCURRENCY} in flight ({objects} objects)"),
        format!("{:.0} writes/s", objects as f64 / took.as_secs_f64()),
    ));
    let patches = objects.min(2_000);
    let start = Instant::now();
    futures::stream::iter(0..patches)
        .map(|i| {
            let api = api.clone();
            async move {
                api.patch(
                    &format!("cm-{i}"),
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({"data": {"patched": "yes"}})),
                )
                .await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await
        .unwrap();
    rows.push(row(
        format!("merge patch, {CONCURRENCY} in flight ({patches} patches)"),
        format!(
            "{:.0} writes/s",
            patches as f64 / start.elapsed().as_secs_f64()
        ),
    ));

    // Lists at `objects` objects.
    let (p50, p99) = latencies(20, || {
        let api = api.clone();
        async move { api.list(&ListParams::default()).await.unwrap().items.len() }
    })
    .await;
    rows.push(row(
        format!("list all {objects} (one response)"),
        format!("p50 {p50:.1} ms, p99 {p99:.1} ms"),
    ));
    let (p50, p99) = latencies(20, || {
        let api = api.clone();
        async move {
            let mut lp = ListParams::default().limit(500);
            let mut n = 0;
            loop {
                let page = api.list(&lp).await.unwrap();
                n += page.items.len();
                match page.metadata.continue_ {
                    Some(c) if !c.is_empty() => {
                        lp = ListParams::default().limit(500).continue_token(&c)
                    }
                    _ => break n,
                }
            }
        }
    })
    .await;
    rows.push(row(
        format!("list all {objects}, pages of 500"),
        format!("p50 {p50:.1} ms, p99 {p99:.1} ms"),
    ));
    let (p50, p99) = latencies(20, || {
        let api = api.clone();
        async move {
            api.list(&ListParams::default().limit(500))
                .await
                .unwrap()
                .items
                .len()
        }
    })
    .await;
    rows.push(row(
        format!("list first page of 500 of {objects}"),
        format!("p50 {p50:.1} ms, p99 {p99:.1} ms"),
    ));
    let (p50, p99) = latencies(20, || {
        let api = api.clone();
        async move {
            api.list(&ListParams::default().labels("bucket=7"))
                .await
                .unwrap()
                .items
                .len()
        }
    })
    .await;
    rows.push(row(
        format!("list by label selector ({} of {objects})", objects / 100),
        format!("p50 {p50:.1} ms, p99 {p99:.1} ms"),
    ));

    // Watch fan-out: `watchers` watch streams on one namespace, `events` creates in it; the
    // clock runs from the first write until every watcher has seen every event.
    make_namespace(&client, "fan").await;
    let fan: Api<ConfigMap> = Api::namespaced(client.clone(), "fan");
    let rv = fan
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let ready = Arc::new(tokio::sync::Barrier::new(watchers + 1));
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        // Each watcher gets its own client (own connection), as separate controllers would.
        let api: Api<ConfigMap> = Api::namespaced(client_for(&h).await, "fan");
        let rv = rv.clone();
        let ready = ready.clone();
        tasks.push(tokio::spawn(async move {
            let wp = WatchParams::default().timeout(290);
            let mut s = api.watch(&wp, &rv).await.unwrap().boxed();
            ready.wait().await;
            let mut seen = 0;
            while seen < events {
                match s.try_next().await.unwrap() {
                    Some(WatchEvent::Added(_)) => seen += 1,
                    Some(WatchEvent::Error(e)) => panic!("watch error: {e:?}"),
                    Some(_) => {}
                    None => panic!("watch ended after {seen} events"),
                }
            }
            Instant::now()
        }));
    }
    ready.wait().await;
    let start = Instant::now();
    let write_took = create_many(&fan, "fan-", events).await;
    let mut last = start;
    for t in tasks {
        last = last.max(t.await.unwrap());
    }
    let took = last - start;
    rows.push(row(
        format!("watch fan-out: {watchers} watchers x {events} events"),
        format!(
            "{:.0} events/s delivered ({:.2} s; writes took {:.2} s)",
            (watchers * events) as f64 / took.as_secs_f64(),
            took.as_secs_f64(),
            write_took.as_secs_f64()
        ),
    ));

    drop(h);
    rows.push(dataplane_row(env_usize("LOCALKUBE_BENCH_REQUESTS", 20_000)).await);
    rows.push(validation_row(env_usize(
        "LOCALKUBE_BENCH_VALIDATIONS",
        20_000,
    )));

    let width = rows.iter().map(|r| r.what.len()).max().unwrap_or(0);
    println!("\nlocalkube API bench (HTTP via the kube crate, controllers off)\n");
    println!("| {:width$} | result |", "measure");
    println!("|-{}-|--------|", "-".repeat(width));
    for r in &rows {
        println!("| {:width$} | {} |", r.what, r.value);
    }
}

/// Requests/s through the data plane's proxy to a two-pod podinfo Service, `CONCURRENCY`
/// keep-alive connections.
async fn dataplane_row(requests: usize) -> Row {
    use axum::body::Body;
    let h = localkube::Server::start(localkube::Config {
        dataplane: Some(localkube::dataplane::DataPlaneConfig::default()),
        ..Default::default()
    })
    .await
    .unwrap();
    let client = client_for(&h).await;
    let deps: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "default");
    deps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "podinfo"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "podinfo"}},
                     "template": {"metadata": {"labels": {"app": "podinfo"}},
                                  "spec": {"containers": [{"name": "podinfo", "image": "podinfo:6.0.0", "ports": [{"name": "http", "containerPort": 9898}]}]}}},
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "default");
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "podinfo"},
            "spec": {"selector": {"app": "podinfo"}, "ports": [{"name": "http", "port": 9898, "targetPort": "http"}]},
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let eps: Api<k8s_openapi::api::core::v1::Endpoints> =
        Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = eps
            .get_opt("podinfo")
            .await
            .unwrap()
            .and_then(|e| e.subsets)
            .and_then(|mut s| s.pop())
            .and_then(|s| s.addresses)
            .map_or(0, |a| a.len());
        if ready == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "podinfo endpoints not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let proxy = h.dataplane.as_ref().unwrap().addr;
    let per_conn = requests / CONCURRENCY;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut ms = Vec::with_capacity(per_conn);
            for _ in 0..per_conn {
                let t = Instant::now();
                sender.ready().await.unwrap();
                let req = axum::http::Request::get("http://podinfo.default:9898/")
                    .header("host", "podinfo.default:9898")
                    .body(Body::empty())
                    .unwrap();
                let resp = sender.send_request(req).await.unwrap();
                assert_eq!(resp.status(), 200);
                axum::body::to_bytes(Body::new(resp.into_body()), usize::MAX)
                    .await
                    .unwrap();
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            ms
        }));
    }
    let mut ms = Vec::new();
    for t in tasks {
        ms.extend(t.await.unwrap());
    }
    let took = start.elapsed();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    row(
        format!(
            "data plane: GET / via the proxy, {CONCURRENCY} connections ({} requests)",
            ms.len()
        ),
        format!(
            "{:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms",
            ms.len() as f64 / took.as_secs_f64(),
            pct(0.5),
            pct(0.99)
        ),
    )
}

/// Defaulting plus validation of a Deployment update (what every write of a Deployment pays
/// in-process, before the store): microseconds per object.
fn validation_row(n: usize) -> Row {
    let reg = localkube::registry::Registry::new();
    let info = reg.by_kind("apps/v1", "Deployment").unwrap();
    let store = localkube::store::Store::new(16);
    let d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": "test", "labels": {"app": "podinfo"},
                     "annotations": {"flagger.app/config-tracking": "enabled"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {"metadata": {"labels": {"app": "podinfo"}}, "spec": {"containers": [{
                "name": "podinfod", "image": "ghcr.io/stefanprodan/podinfo:6.0.0",
                "ports": [{"name": "http", "containerPort": 9898}, {"name": "grpc", "containerPort": 9999}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": 9898}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 9898}},
                "resources": {"limits": {"cpu": "1", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}}
            }]}}}
    });
    let mut cur = d.clone();
    localkube::defaults::prepare_create(&store, &info, &mut cur, Default::default()).unwrap();
    let start = Instant::now();
    for _ in 0..n {
        let mut new = d.clone();
        localkube::defaults::prepare_update(&info, &cur, &mut new, "", Default::default()).unwrap();
    }
    let per = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    row(
        format!("defaults + validation of a Deployment update ({n} runs)"),
        format!("{per:.1} us per object"),
    )
}
