//! Scale bench (issue 21): the controller with 1,000 / 5,000 / 10,000 canaries.
//!
//! For each size, a fresh in-process localkube and `flagger controller` (this package's binary,
//! a separate process) with a fleet of canaries: providers `kubernetes`, `istio` and
//! `gatewayapi:v1` in turn, one in ten with an HPA, one in ten tracking its own ConfigMap,
//! `analysis.interval: 60s` (Flagger's usual), and prints:
//! - the time from the first object created to every canary `Initialized`;
//! - over an idle window longer than the interval (every canary ticks in it): the
//!   controller's RSS (peak) and CPU, tick lateness p50/p99 (`flagger_tick_lateness_seconds`:
//!   when each tick began against when it was due; bucket bounds, 25% apart), and the API
//!   requests localkube served per second and per tick, by verb and resource (watches
//!   excluded: they are streams, not requests per tick);
//! - the `set image` → `Progressing` latency of `--runs` kubernetes canaries, one after the
//!   other, every run and p50/p99;
//! - the RSS of this process: localkube, with the bench's own client and Canary watch.
//!
//! `cargo bench -p flagger-cli --bench scale -- --sizes 1000,5000,10000 --window 70 --runs 20`
//! (`--qps`/`--burst`: the controller's client limit, default 500/1000; Flagger's default 100
//! makes initialising 10,000 canaries take over 20 minutes of client waits).

#![allow(
    clippy::unwrap_used,
    reason = "bench code: a panic is the failure report"
)]

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::time::{Duration, Instant};

use flagger_api::{Canary, CanaryPhase};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const NS: &str = "bench";

struct Opts {
    sizes: Vec<usize>,
    window: u64,
    runs: usize,
    qps: u32,
    burst: u32,
}

/// The requests localkube serves while [`RECORDING`] is set (its `localkube::request` log lines),
/// watches left out: which objects an idle tick asked for, when the counts say it asked.
static RECORDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static RECORDED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

struct RequestLog;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RequestLog {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        use std::sync::atomic::Ordering;
        if !RECORDING.load(Ordering::Relaxed) || event.metadata().target() != "localkube::request" {
            return;
        }
        #[derive(Default)]
        struct Fields {
            method: String,
            path: String,
            verb: String,
            code: String,
        }
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                let v = format!("{v:?}");
                match f.name() {
                    "method" => self.method = v,
                    "path" => self.path = v,
                    "verb" => self.verb = v,
                    "code" => self.code = v,
                    _ => {}
                }
            }
        }
        let mut f = Fields::default();
        event.record(&mut f);
        if f.verb == "watch" || f.path.starts_with("/metrics") {
            return;
        }
        if let Ok(mut r) = RECORDED.lock() {
            r.push(format!("{} {} {} ({})", f.method, f.path, f.code, f.verb));
        }
    }
}

fn main() -> anyhow::Result<()> {
    {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let _ = tracing_subscriber::registry()
            .with(
                RequestLog.with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("localkube::request", tracing::Level::DEBUG),
                ),
            )
            .try_init();
    }
    let mut o = Opts {
        sizes: vec![1000, 5000, 10000],
        window: 70,
        runs: 20,
        qps: 500,
        burst: 1000,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--sizes" => o.sizes = v.split(',').filter_map(|s| s.parse().ok()).collect(),
            "--window" => o.window = v.parse().unwrap_or(o.window),
            "--runs" => o.runs = v.parse().unwrap_or(o.runs),
            "--qps" => o.qps = v.parse().unwrap_or(o.qps),
            "--burst" => o.burst = v.parse().unwrap_or(o.burst),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    for &n in &o.sizes {
        rt.block_on(run(n, &o))?;
    }
    Ok(())
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Minimal CRDs of the routing kinds (schemas keep unknown fields).
fn mesh_crds() -> Vec<Value> {
    [
        ("networking.istio.io", "VirtualService", "virtualservices", "v1beta1"),
        ("networking.istio.io", "DestinationRule", "destinationrules", "v1beta1"),
        ("gateway.networking.k8s.io", "HTTPRoute", "httproutes", "v1"),
    ]
    .iter()
    .map(|(group, kind, plural, version)| {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.{group}")},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
                "versions": [{"name": version, "served": true, "storage": true,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
            }
        })
    })
    .collect()
}

const PROVIDERS: [&str; 3] = ["kubernetes", "istio", "gatewayapi:v1"];

fn has_hpa(i: usize) -> bool {
    i % 10 == 3
}

fn has_config(i: usize) -> bool {
    i % 10 == 7
}

/// The objects of canary `i`, in creation order.
fn objects(i: usize) -> Vec<(&'static str, Value)> {
    let name = format!("app-{i}");
    let mut out = Vec::new();
    let mut container = json!({"name": "app", "image": "example.com/app:1",
        "ports": [{"containerPort": 8080}], "resources": {"requests": {"cpu": "10m"}}});
    if has_config(i) {
        out.push((
            "configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cfg-{i}"), "namespace": NS},
                "data": {"level": "info"}}),
        ));
        container["envFrom"] = json!([{"configMapRef": {"name": format!("cfg-{i}")}}]);
    }
    out.push((
        "deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [container]}}}}),
    ));
    let mut spec = json!({
        "provider": PROVIDERS[i % 3],
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "service": {"port": 80, "targetPort": 8080},
        "analysis": {"interval": "60s", "threshold": 2, "iterations": 2}
    });
    if PROVIDERS[i % 3] == "gatewayapi:v1" {
        spec["service"]["gatewayRefs"] = json!([{"name": name, "kind": "Service", "group": ""}]);
    }
    if has_hpa(i) {
        out.push((
            "horizontalpodautoscalers",
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": 1, "maxReplicas": 2,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 90}}}]}}),
        ));
        spec["autoscalerRef"] = json!({"apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler", "name": name});
    }
    out.push((
        "canaries",
        json!({"apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}),
    ));
    out
}

async fn create(client: &Client, plural: &str, obj: Value) -> anyhow::Result<()> {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, &kind), plural);
    let api: Api<DynamicObject> = match obj["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let obj: DynamicObject = serde_json::from_value(obj)?;
    api.create(&PostParams::default(), &obj).await?;
    Ok(())
}

/// `flagger_tick_lateness_seconds` buckets (`le` → count) and the reconcile count.
struct ControllerSample {
    lateness: Vec<(f64, f64)>,
    ticks: f64,
    reconciles: f64,
}

async fn controller_sample(port: u16) -> ControllerSample {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut lateness = Vec::new();
    let mut ticks = 0.0;
    let mut reconciles = 0.0;
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("flagger_tick_lateness_seconds_bucket{le=\"") {
            let (le, v) = rest.split_once("\"} ").unwrap();
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            lateness.push((le, v.trim().parse().unwrap()));
        } else if let Some(v) = l.strip_prefix("flagger_tick_lateness_seconds_count ") {
            ticks = v.trim().parse().unwrap();
        } else if let Some(v) = l.strip_prefix("flagger_reconcile_duration_seconds_count ") {
            reconciles = v.trim().parse().unwrap();
        }
    }
    ControllerSample {
        lateness,
        ticks,
        reconciles,
    }
}

/// The bucket bound under which a `q` share of the ticks between two samples began.
fn lateness_quantile(before: &ControllerSample, after: &ControllerSample, q: f64) -> f64 {
    let total = after.ticks - before.ticks;
    for ((le, a), (_, b)) in after.lateness.iter().zip(before.lateness.iter()) {
        if a - b >= q * total {
            return *le;
        }
    }
    f64::INFINITY
}

/// localkube's `apiserver_request_total` by (verb, resource).
async fn requests(url: &str) -> BTreeMap<(String, String), f64> {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let (labels, v) = rest.split_once("} ").unwrap();
        let get = |k: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                .map(|x| x.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        *out.entry((get("verb"), get("resource"))).or_default() += v.parse::<f64>().unwrap();
    }
    out
}

async fn run(n: usize, o: &Opts) -> anyhow::Result<()> {
    println!(
        "== {n} canaries ({}, load average {} at start)",
        std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default(),
        load_avg()
    );
    let kube = localkube::Server::start(localkube::Config::default()).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig)?;
    let kc = kube::config::Kubeconfig::from_yaml(&kube.kubeconfig())?;
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    config.read_timeout = Some(Duration::from_secs(600));
    let client = Client::try_from(config)?;
    for crd in flagger_api::crd::crds() {
        create(
            &client,
            "customresourcedefinitions",
            serde_json::to_value(&crd)?,
        )
        .await?;
    }
    for crd in mesh_crds() {
        create(&client, "customresourcedefinitions", crd).await?;
    }
    create(
        &client,
        "namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )
    .await?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    // `SCALE_FLAGGER`: another build of the binary (to compare two builds on one bench).
    let binary =
        std::env::var("SCALE_FLAGGER").unwrap_or_else(|_| env!("CARGO_BIN_EXE_flagger").into());
    let mut controller = tokio::process::Command::new(binary)
        .args([
            "controller",
            "-kubeconfig",
            &kubeconfig.to_string_lossy(),
            "-mesh-provider=kubernetes",
            "-metrics-server=http://127.0.0.1:9",
            &format!("-kubeconfig-qps={}", o.qps),
            &format!("-kubeconfig-burst={}", o.burst),
            &format!("-port={port}"),
            &format!(
                "-log-level={}",
                std::env::var("BENCH_LOG").unwrap_or_else(|_| "error".into())
            ),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let pid = controller.id().unwrap_or_default();

    let (tx, mut rx) = mpsc::unbounded_channel::<(String, CanaryPhase, Instant)>();
    let watch_api: Api<Canary> = Api::namespaced(client.clone(), NS);
    tokio::spawn(async move {
        let stream = watcher(watch_api, watcher::Config::default()).applied_objects();
        futures::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            if let Ok(c) = item {
                let phase = c.status.map(|s| s.phase).unwrap_or_default();
                let _ = tx.send((c.metadata.name.unwrap_or_default(), phase, Instant::now()));
            }
        }
    });
    let mut phases: HashMap<String, CanaryPhase> = HashMap::new();

    // Initialization.
    let started = Instant::now();
    let creating = {
        let client = client.clone();
        tokio::spawn(async move {
            futures::stream::iter(0..n)
                .map(|i| {
                    let client = client.clone();
                    async move {
                        for (plural, obj) in objects(i) {
                            create(&client, plural, obj).await.unwrap();
                        }
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<()>>()
                .await;
        })
    };
    let mut report = Instant::now() + Duration::from_secs(30);
    let mut peak_init_rss = 0u64;
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let done = phases
            .values()
            .filter(|p| **p == CanaryPhase::Initialized)
            .count();
        if done == n {
            break;
        }
        if Instant::now() > report {
            eprintln!(
                "  {done} of {n} Initialized after {:.0}s (load {})",
                started.elapsed().as_secs_f64(),
                load_avg()
            );
            report = Instant::now() + Duration::from_secs(30);
        }
        peak_init_rss = peak_init_rss.max(rss_kib(pid));
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some((name, p, _))) => {
                phases.insert(name, p);
            }
            _ => anyhow::bail!("only {done} of {n} canaries Initialized within an hour"),
        }
    }
    creating.await?;
    let init = started.elapsed();
    println!(
        "  initialized {n} canaries in {:.1}s ({:.0} canaries/s; load average {}); controller peak RSS while initializing {:.1} MiB",
        init.as_secs_f64(),
        n as f64 / init.as_secs_f64(),
        load_avg(),
        peak_init_rss as f64 / 1024.0
    );

    // Let the burst settle, then the idle window.
    let drain = Instant::now() + Duration::from_secs(10);
    while tokio::time::timeout_at(drain.into(), rx.recv())
        .await
        .is_ok()
    {}
    let req0 = requests(&kube.url()).await;
    RECORDED.lock().unwrap().clear();
    RECORDING.store(true, std::sync::atomic::Ordering::Relaxed);
    let c0 = controller_sample(port).await;
    let cpu0 = cpu_ticks(pid);
    let t0 = Instant::now();
    let mut peak_rss = 0u64;
    while t0.elapsed() < Duration::from_secs(o.window) {
        peak_rss = peak_rss.max(rss_kib(pid));
        let _ = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid) - cpu0) as f64 / 100.0 / secs;
    let c1 = controller_sample(port).await;
    let req1 = requests(&kube.url()).await;
    RECORDING.store(false, std::sync::atomic::Ordering::Relaxed);
    let ticks = c1.ticks - c0.ticks;
    println!(
        "  idle over {secs:.0}s (load average {}): controller RSS {:.1} MiB (peak), {:.1} KiB per canary; CPU {:.1}% of one core; {ticks:.0} ticks, {:.0} reconciles",
        load_avg(),
        peak_rss as f64 / 1024.0,
        peak_rss as f64 / n as f64,
        cpu * 100.0,
        c1.reconciles - c0.reconciles
    );
    print_memory(port, n).await;
    println!(
        "  tick lateness: p50 <= {:.3}s, p99 <= {:.3}s (bucket bounds)",
        lateness_quantile(&c0, &c1, 0.50),
        lateness_quantile(&c0, &c1, 0.99)
    );
    let mut any = false;
    for ((verb, resource), v) in &req1 {
        let d = v - req0
            .get(&(verb.clone(), resource.clone()))
            .copied()
            .unwrap_or(0.0);
        // The bench's own two reads of /metrics have no resource.
        if d > 0.0 && verb != "watch" && !resource.is_empty() {
            any = true;
            println!(
                "  idle requests: {verb} {resource}: {d:.0} ({:.2}/s, {:.4} per tick)",
                d / secs,
                d / ticks.max(1.0)
            );
        }
    }
    if !any {
        println!("  idle requests: none but watches (0/s, 0 per tick)");
    }
    // Which objects: localkube's request log over the window.
    let recorded = std::mem::take(&mut *RECORDED.lock().unwrap());
    for r in recorded.iter().take(40) {
        println!("  idle request: {r}");
    }
    if recorded.len() > 40 {
        println!("  idle request: ... {} more", recorded.len() - 40);
    }

    // Detection under that load.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let targets: Vec<usize> = (0..n)
        .filter(|i| i % 3 == 0 && !has_hpa(*i) && !has_config(*i))
        .step_by((n / 3 / o.runs.max(1)).max(1))
        .take(o.runs)
        .collect();
    let mut samples = Vec::new();
    for i in &targets {
        let name = format!("app-{i}");
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "example.com/app:2"}]}}}});
        let t0 = Instant::now();
        deployments
            .patch(&name, &PatchParams::default(), &Patch::Strategic(patch))
            .await?;
        let t1 = loop {
            let (got, p, at) = tokio::time::timeout(Duration::from_secs(120), rx.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("watch ended"))?;
            if got == name && p == CanaryPhase::Progressing {
                break at;
            }
        };
        samples.push(t1 - t0);
    }
    println!(
        "  set image -> Progressing, every run (ms): {}",
        samples
            .iter()
            .map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    samples.sort();
    let pct = |q: f64| {
        samples[((samples.len() as f64 * q).ceil() as usize)
            .saturating_sub(1)
            .min(samples.len() - 1)]
    };
    println!(
        "  detection over {} runs: p50 {:.1} ms, p99 {:.1} ms (load average {})",
        samples.len(),
        pct(0.5).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        load_avg()
    );
    println!(
        "  localkube (this process, with the bench's client): RSS {:.1} MiB",
        rss_kib(std::process::id()) as f64 / 1024.0
    );
    let fp = kube.api.store.footprint();
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    let heap: usize = fp.resources.iter().map(|r| r.heap_bytes).sum();
    let mf: usize = fp
        .resources
        .iter()
        .map(|r| r.managed_fields_heap_bytes)
        .sum();
    println!(
        "  localkube's store: {} objects, {:.1} MiB as JSON, about {:.1} MiB of heap ({:.1} KiB per canary; managedFields {:.1} MiB); watch window: {} events keeping {} earlier states alive (about {:.1} MiB)",
        fp.resources.iter().map(|r| r.objects).sum::<usize>(),
        mib(fp.resources.iter().map(|r| r.json_bytes).sum()),
        mib(heap),
        heap as f64 / 1024.0 / n as f64,
        mib(mf),
        fp.events,
        fp.history_only_states,
        mib(fp.history_only_heap_bytes)
    );
    println!(
        "  subscribers of localkube's change feed fell behind it {} times (a simulated controller then resyncs, an API watch ends with 410 Gone)",
        kube.api.store.lagged()
    );
    for r in fp.resources.iter().take(12) {
        println!(
            "    {}/{}: {} objects, {:.1} MiB as JSON, about {:.1} MiB of heap (managedFields {:.1} MiB)",
            if r.key.group.is_empty() {
                "core"
            } else {
                &r.key.group
            },
            r.key.resource,
            r.objects,
            mib(r.json_bytes),
            mib(r.heap_bytes),
            mib(r.managed_fields_heap_bytes)
        );
    }
    let _ = controller.kill().await;
    kube.shutdown();
    drop(kube);
    Ok(())
}

/// The controller's `/debug/memory`: each cache and table in KiB and bytes per canary, then
/// the allocator's figures.
async fn print_memory(port: u16, n: usize) {
    let Ok(text) = reqwest::get(format!("http://127.0.0.1:{port}/debug/memory"))
        .await
        .and_then(|r| r.error_for_status())
    else {
        println!("  memory: /debug/memory did not answer");
        return;
    };
    let text = text.text().await.unwrap_or_default();
    let field = |line: &str, key: &str| -> Option<f64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
    };
    for line in text.lines() {
        let name = line.split(" entries=").next().unwrap_or(line);
        match (field(line, "entries"), field(line, "bytes")) {
            (Some(entries), Some(bytes)) if bytes > 0.0 => println!(
                "  memory: {name}: {entries:.0} entries, {:.1} KiB ({:.0} B per canary)",
                bytes / 1024.0,
                bytes / n as f64
            ),
            (Some(entries), None) if entries > 0.0 => {
                println!("  memory: {name}: {entries:.0} entries (size unknown)")
            }
            (Some(_), _) => {}
            _ if line.starts_with("sized total") => println!(
                "  memory: sized total {:.1} MiB ({:.1} KiB per canary)",
                field(line, "bytes").unwrap_or(0.0) / 1048576.0,
                field(line, "bytes").unwrap_or(0.0) / 1024.0 / n as f64
            ),
            _ if line.starts_with("allocator jemalloc") => {
                let mib = |k: &str| field(line, k).unwrap_or(0.0) / 1048576.0;
                println!(
                    "  memory: jemalloc live heap {:.1} MiB, active {:.1} MiB, resident {:.1} MiB, metadata {:.1} MiB, retained {:.1} MiB",
                    mib("allocated"),
                    mib("active"),
                    mib("resident"),
                    mib("metadata"),
                    mib("retained")
                );
            }
            _ if line.starts_with("process rss") => println!(
                "  memory: process RSS {:.1} MiB",
                field(line, "rss").unwrap_or(0.0) / 1048576.0
            ),
            _ => println!("  memory: {line}"),
        }
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
