//! Controller bench: reaction time and idle footprint.
//!
//! Runs `flagger controller` (this package's binary, as a separate process) against an
//! in-process localkube and prints:
//! - the time from a `set image` on a canary's target (a strategic-merge patch of the
//!   container image, what `kubectl set image` sends) to the watch event that shows the canary
//!   `Progressing`, p50/p99 over 50 runs, with `analysis.interval: 60s` so that only the watch
//!   path can explain a fast reaction;
//! - the controller's resident memory and CPU with 1,000 initialized, idle canaries
//!   (`analysis.interval: 10s`, so idle ticks run during the sample window).
//!
//! `cargo bench -p flagger-cli --bench controller` (`-- --canaries N --window SECS` to change
//! the idle run).

#![allow(
    clippy::unwrap_used,
    reason = "bench code: a panic is the failure report"
)]

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use flagger_api::{Canary, CanaryPhase};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::mpsc;

const NS: &str = "bench";

fn main() -> anyhow::Result<()> {
    let mut canaries = 1000usize;
    let mut window = 30u64;
    let mut runs = 50usize;
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--canaries" => {
                canaries = args
                    .get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(canaries)
            }
            "--window" => {
                window = args
                    .get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(window)
            }
            "--runs" => runs = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(runs),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(runs, canaries, window))
}

async fn run(runs: usize, canaries: usize, window: u64) -> anyhow::Result<()> {
    let kube = localkube::Server::start(localkube::Config::default()).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig)?;
    let kc = kube::config::Kubeconfig::from_yaml(&kube.kubeconfig())?;
    let client =
        Client::try_from(kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?)?;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for crd in flagger_api::crd::crds() {
        crds.create(&PostParams::default(), &crd).await?;
    }
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": NS}}))?,
    )
    .await?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut controller = tokio::process::Command::new(env!("CARGO_BIN_EXE_flagger"))
        .args([
            "controller",
            "-kubeconfig",
            &kubeconfig.to_string_lossy(),
            "-mesh-provider=kubernetes",
            "-metrics-server=http://127.0.0.1:9",
            "-min-analysis-interval=1s",
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

    // Phases as the watch delivers them, with arrival times.
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, CanaryPhase, Instant)>();
    let api: Api<Canary> = Api::namespaced(client.clone(), NS);
    let watch_api = api.clone();
    tokio::spawn(async move {
        let stream = watcher(watch_api, watcher::Config::default()).applied_objects();
        futures::pin_mut!(stream);
        while let Some(Ok(c)) = stream.next().await {
            let phase = c.status.map(|s| s.phase).unwrap_or_default();
            let _ = tx.send((c.metadata.name.unwrap_or_default(), phase, Instant::now()));
        }
    });
    let mut phases: HashMap<String, CanaryPhase> = HashMap::new();

    // Reaction time.
    let started = Instant::now();
    create_canaries(&client, 0..runs, "60s").await?;
    wait_all(&mut rx, &mut phases, 0..runs, CanaryPhase::Initialized).await;
    println!(
        "initialized {runs} canaries in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let name = format!("app-{i}");
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "example.com/app:2"}]}}}});
        let t0 = Instant::now();
        deployments
            .patch(&name, &PatchParams::default(), &Patch::Strategic(patch))
            .await?;
        let t1 = loop {
            let (n, p, at) = rx
                .recv()
                .await
                .ok_or_else(|| anyhow::anyhow!("watch ended"))?;
            phases.insert(n.clone(), p);
            if n == name && p == CanaryPhase::Progressing {
                break at;
            }
        };
        samples.push(t1 - t0);
    }
    println!(
        "every run (ms, in order): {}",
        samples
            .iter()
            .map(|d| format!("{:.1}", ms(*d)))
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
        "set image -> Progressing over {runs} runs: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(samples[samples.len() - 1])
    );

    // Idle footprint.
    if canaries > runs {
        let started = Instant::now();
        create_canaries(&client, runs..canaries, "10s").await?;
        wait_all(
            &mut rx,
            &mut phases,
            runs..canaries,
            CanaryPhase::Initialized,
        )
        .await;
        println!(
            "initialized {} more canaries in {:.1}s",
            canaries - runs,
            started.elapsed().as_secs_f64()
        );
    }
    // Let the initialization burst settle before sampling.
    let drain = Instant::now() + Duration::from_secs(5);
    while tokio::time::timeout_at(drain.into(), rx.recv())
        .await
        .is_ok()
    {}
    let cpu0 = cpu_ticks(pid);
    let t0 = Instant::now();
    let mut peak_rss = 0u64;
    while t0.elapsed() < Duration::from_secs(window) {
        peak_rss = peak_rss.max(rss_kib(pid));
        let _ = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
    }
    let cpu = (cpu_ticks(pid) - cpu0) as f64 / clk_tck() / t0.elapsed().as_secs_f64();
    println!(
        "controller with {} idle canaries: RSS {:.1} MiB (peak over {window}s), CPU {:.2}% of one core",
        canaries.max(runs),
        peak_rss as f64 / 1024.0,
        cpu * 100.0
    );
    let _ = controller.kill().await;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn create_canaries(
    client: &Client,
    range: std::ops::Range<usize>,
    interval: &str,
) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let canaries: Api<Canary> = Api::namespaced(client.clone(), NS);
    for i in range {
        let name = format!("app-{i}");
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": "example.com/app:1", "ports": [{"containerPort": 8080}]}]}
                }
            }
        }))?;
        deployments.create(&PostParams::default(), &d).await?;
        let c: Canary = serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": name},
            "spec": {
                "provider": "kubernetes",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "service": {"port": 80, "targetPort": 8080},
                "analysis": {"interval": interval, "threshold": 2, "iterations": 2}
            }
        }))?;
        canaries.create(&PostParams::default(), &c).await?;
    }
    Ok(())
}

async fn wait_all(
    rx: &mut mpsc::UnboundedReceiver<(String, CanaryPhase, Instant)>,
    phases: &mut HashMap<String, CanaryPhase>,
    range: std::ops::Range<usize>,
    phase: CanaryPhase,
) {
    let deadline = Instant::now() + Duration::from_secs(600);
    let n = range.len();
    let reached = |phases: &HashMap<String, CanaryPhase>| {
        range
            .clone()
            .filter(|i| phases.get(&format!("app-{i}")) == Some(&phase))
            .count()
    };
    let mut report = Instant::now() + Duration::from_secs(10);
    while reached(phases) < n {
        if Instant::now() > report {
            eprintln!("  {} of {n} canaries {phase:?} so far", reached(phases));
            report = Instant::now() + Duration::from_secs(10);
        }
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some((name, p, _))) => {
                phases.insert(name, p);
            }
            _ => panic!("only {} of {n} canaries reached {phase:?}", reached(phases)),
        }
    }
}

fn proc_stat(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// utime + stime in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let f = proc_stat(pid);
    // After ')': state(0) ppid(1) ... utime is field 14 overall → index 11 here, stime 12.
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

fn clk_tck() -> f64 {
    // Linux reports /proc times in USER_HZ, 100 on every mainstream architecture.
    100.0
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
