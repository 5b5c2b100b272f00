//! `flagger demo`: a blue/green canary and a weighted (Istio) canary on localkube, from nothing
//! to a promotion and a rollback each.
//!
//! It starts localkube in-process with its simulated data plane, then three real processes:
//! Prometheus (found on `PATH`), `flagger loadtester` and `flagger controller`, the last two with
//! `HTTP_PROXY` pointing at the data plane so that `http://podinfo-canary.test:9898/` and
//! `http://flagger-loadtester.test/` resolve as in a cluster. It applies podinfo and a Canary
//! (kubernetes provider, builtin metrics, an acceptance pre-rollout hook and a load-test rollout
//! hook through the load tester), rolls out v2 (promoted), then v3 made faulty by annotation
//! (rolled back by the failed requests the load test sees), and prints a timeline. Then the same
//! with `frontend` on the istio provider: the controller writes a VirtualService, the data plane
//! splits `http://frontend.test:9898/` by its weights (20%, 40%, 60%) and records Istio's series,
//! and the builtin checks run Flagger's Istio queries against them.
//!
//! `flagger demo --provider NAME` runs only the weighted demo, on that router: the data plane
//! plays its mesh or ingress gateway from the objects a user of that router creates
//! ([`routers`], one row per router), and the builtin checks read that router's series.

mod manifests;
mod processes;
mod progress;
mod routers;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use flagger_api::{Canary, CanaryPhase};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use processes::Processes;
use progress::Progress;

pub const NS: &str = "test";
const IMAGE: &str = "ghcr.io/stefanprodan/podinfo";

/// Flags of `flagger demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Leave localkube, Prometheus, the controller and the load tester running at the end and
    /// print how to reach them; stop with Ctrl-C.
    #[arg(long)]
    pub keep: bool,
    /// Where to write the kubeconfig of the demo cluster (default: a temporary directory).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Where localkube's API listens (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: std::net::SocketAddr,
    /// `analysis.interval` of the demo canary.
    #[arg(long, default_value = "2s")]
    pub interval: String,
    /// `analysis.iterations` of the demo canary.
    #[arg(long, default_value_t = 6)]
    pub iterations: u32,
    /// Plain progress lines even on a terminal.
    #[arg(long)]
    pub plain: bool,
    /// Serve the web dashboard (docs/dashboard.md) for the demo's cluster on this loopback
    /// address, without login (e.g. 127.0.0.1:9090).
    #[arg(long, value_name = "ADDR")]
    pub dashboard: Option<std::net::SocketAddr>,
    /// Give up when a rollout takes longer than this many seconds.
    #[arg(long, default_value_t = 180)]
    pub rollout_timeout: u64,
    /// Run only the weighted demo, on this router (any provider but `kubernetes`, which is
    /// blue/green only, and `knative`, whose target is a Knative Service); without it, the
    /// blue/green demo and the weighted one on istio.
    #[arg(long)]
    pub provider: Option<String>,
}

/// Runs the demo; `Ok(true)` when both outcomes were the expected ones.
pub async fn run(args: DemoArgs) -> anyhow::Result<bool> {
    let router = match args.provider.as_deref() {
        None => routers::find("istio"),
        Some(p) => routers::find(p),
    };
    let Some(router) = router else {
        bail!(
            "the weighted demo has no router {}; choose one of: {}",
            args.provider.as_deref().unwrap_or_default(),
            routers::names().join(", ")
        );
    };
    let started = Instant::now();
    let prometheus = processes::find_prometheus()?;
    let dir = tempfile::tempdir().context("creating a working directory")?;
    let kubeconfig = args
        .kubeconfig
        .clone()
        .unwrap_or_else(|| dir.path().join("kubeconfig"));

    step("starting localkube with its data plane");
    let config = localkube::Config {
        addr: args.addr,
        dataplane: Some(localkube::dataplane::DataPlaneConfig::default()),
        ..Default::default()
    };
    let kube = localkube::Server::start(config).await?;
    kube.write_kubeconfig(&kubeconfig)
        .with_context(|| format!("writing {}", kubeconfig.display()))?;
    let dataplane = kube
        .dataplane
        .clone()
        .context("the data plane did not start")?;
    let proxy = dataplane.proxy_url();
    let client = client_for(&kube).await?;
    manifests::install_crds(&client).await?;
    manifests::namespace(&client, NS).await?;
    if let Some(addr) = args.dashboard {
        let bound = crate::dashboard::serve_anonymous(client.clone(), addr).await?;
        println!("dashboard: http://{bound}/ (no login: loopback only)");
    }

    let mut procs = Processes::new(dir.path().to_path_buf(), kubeconfig.clone(), dataplane);
    step("starting Prometheus, the load tester and the controller");
    let prom_url = procs.prometheus(&prometheus).await?;
    let loadtester = procs.loadtester(NS).await?;
    let controller_metrics = procs.controller(&prom_url).await?;
    manifests::loadtester_service(&client, NS, loadtester).await?;

    let timeout = Duration::from_secs(args.rollout_timeout);
    // The healthy runs must count no failed check (no data before the first scrape is held).
    let most_failed = std::cell::Cell::new(0);
    let failed_checks = |c: &Canary| {
        let n = c.status.as_ref().and_then(|s| s.failed_checks).unwrap_or(0);
        most_failed.set(most_failed.get().max(n));
    };
    // The blue/green demo, unless a router was chosen.
    let blue_green = if args.provider.is_none() {
        step("deploying podinfo 6.0.0 and its Canary");
        manifests::podinfo(&client, NS, &format!("{IMAGE}:6.0.0")).await?;
        manifests::canary(&client, NS, &args.interval, args.iterations).await?;
        let mut progress = Progress::new(
            client.clone(),
            NS,
            "podinfo",
            controller_metrics.clone(),
            args.plain,
        );
        progress
            .until("initialized", timeout, &mut procs, |c| {
                phase(c) == CanaryPhase::Initialized
            })
            .await?;

        step("rolling out podinfo 6.0.1 (healthy)");
        set_image(&client, "podinfo", "6.0.1", None).await?;
        progress
            .until("v2 analysed", timeout, &mut procs, |c| {
                failed_checks(c);
                matches!(phase(c), CanaryPhase::Succeeded | CanaryPhase::Failed)
            })
            .await?;
        let v2_failed = most_failed.replace(0);
        let v2 = phase(&progress.canary().await?);
        let v2_image = primary_image(&client, "podinfo").await?;

        step("rolling out podinfo 6.0.2 (faulty: half of its requests fail)");
        set_image(&client, "podinfo", "6.0.2", Some("0.5")).await?;
        progress
            .until("v3 started", timeout, &mut procs, |c| {
                phase(c) == CanaryPhase::Progressing
            })
            .await?;
        progress
            .until("v3 analysed", timeout, &mut procs, |c| {
                matches!(phase(c), CanaryPhase::Succeeded | CanaryPhase::Failed)
            })
            .await?;
        let v3 = phase(&progress.canary().await?);
        let v3_image = primary_image(&client, "podinfo").await?;

        println!();
        println!("Timeline (podinfo, blue/green)");
        for line in progress.timeline().await {
            println!("  {line}");
        }
        Some((v2, v2_failed, v2_image, v3, v3_image))
    } else {
        None
    };

    // A weighted canary: the router's objects split the traffic of the load test, which
    // localkube's data plane honours; the builtin checks read the series it records for that
    // router.
    println!();
    step(&format!(
        "deploying frontend 6.0.0 and a weighted Canary ({} provider, steps of 20% up to 60%)",
        router.provider
    ));
    router.install(&client, NS).await?;
    manifests::workload(&client, NS, "frontend", &format!("{IMAGE}:6.0.0")).await?;
    manifests::weighted_canary(
        &client,
        NS,
        &args.interval,
        router.provider,
        &router.url(NS),
        router.spec()?,
    )
    .await?;
    let mut weighted = Progress::new(
        client.clone(),
        NS,
        "frontend",
        controller_metrics.clone(),
        args.plain,
    );
    weighted
        .until("frontend initialized", timeout, &mut procs, |c| {
            phase(c) == CanaryPhase::Initialized
        })
        .await?;
    step("rolling out frontend 6.0.1 (healthy): the canary's share of traffic grows step by step");
    set_image(&client, "frontend", "6.0.1", None).await?;
    let seen = std::cell::RefCell::new(Vec::<i32>::new());
    let record = |c: &Canary| {
        let w = c.status.as_ref().and_then(|s| s.canary_weight).unwrap_or(0);
        let mut seen = seen.borrow_mut();
        if seen.last() != Some(&w) {
            seen.push(w);
        }
    };
    weighted
        .until("frontend v2 analysed", timeout, &mut procs, |c| {
            record(c);
            failed_checks(c);
            matches!(phase(c), CanaryPhase::Succeeded | CanaryPhase::Failed)
        })
        .await?;
    let w2_failed = most_failed.replace(0);
    let w2 = phase(&weighted.canary().await?);
    let w2_image = primary_image(&client, "frontend").await?;
    let w2_weights = seen.replace(Vec::new());
    step("rolling out frontend 6.0.2 (faulty: half of its requests fail)");
    set_image(&client, "frontend", "6.0.2", Some("0.5")).await?;
    weighted
        .until("frontend v3 started", timeout, &mut procs, |c| {
            phase(c) == CanaryPhase::Progressing
        })
        .await?;
    weighted
        .until("frontend v3 analysed", timeout, &mut procs, |c| {
            record(c);
            matches!(phase(c), CanaryPhase::Succeeded | CanaryPhase::Failed)
        })
        .await?;
    let w3 = phase(&weighted.canary().await?);
    let w3_image = primary_image(&client, "frontend").await?;
    let w3_weights = seen.take();
    println!();
    println!("Timeline (frontend, weighted)");
    for line in weighted.timeline().await {
        println!("  {line}");
    }
    println!();
    let mut ok_blue_green = true;
    if let Some((v2, v2_failed, v2_image, v3, v3_image)) = blue_green {
        let ok_v2 = v2 == CanaryPhase::Succeeded && v2_image.ends_with(":6.0.1") && v2_failed == 0;
        let ok_v3 = v3 == CanaryPhase::Failed && v3_image.ends_with(":6.0.1");
        println!(
            "podinfo 6.0.1: {} with {v2_failed} failed checks (primary runs {v2_image})",
            if ok_v2 { "promoted" } else { "NOT promoted" }
        );
        println!(
            "podinfo 6.0.2: {} (primary runs {v3_image})",
            if ok_v3 {
                "rolled back"
            } else {
                "NOT rolled back"
            }
        );
        ok_blue_green = ok_v2 && ok_v3;
    }
    let ok_w2 = w2 == CanaryPhase::Succeeded
        && w2_image.ends_with(":6.0.1")
        && w2_weights.contains(&60)
        && w2_failed == 0;
    let ok_w3 = w3 == CanaryPhase::Failed && w3_image.ends_with(":6.0.1");
    let shown = |w: &[i32]| {
        w.iter()
            .map(|w| format!("{w}%"))
            .collect::<Vec<_>>()
            .join(" -> ")
    };
    println!(
        "frontend 6.0.1: {} after canary weights {} with {w2_failed} failed checks (primary \
         runs {w2_image})",
        if ok_w2 { "promoted" } else { "NOT promoted" },
        shown(&w2_weights)
    );
    println!(
        "frontend 6.0.2: {} after canary weights {} (primary runs {w3_image})",
        if ok_w3 {
            "rolled back"
        } else {
            "NOT rolled back"
        },
        shown(&w3_weights)
    );
    println!("demo finished in {:.0}s", started.elapsed().as_secs_f64());

    if args.keep {
        println!();
        println!("Everything is still running. In another shell:");
        println!("  export KUBECONFIG={}", kubeconfig.display());
        println!("  export HTTP_PROXY={proxy} http_proxy={proxy} NO_PROXY=127.0.0.1,localhost");
        println!("  kubectl -n {NS} get canaries,deployments,services");
        if args.provider.is_none() {
            println!("  curl http://podinfo.{NS}:9898/");
        }
        println!("  curl {}", router.url(NS));
        println!("Prometheus: {prom_url}   Stop with Ctrl-C.");
        let _ = tokio::signal::ctrl_c().await;
        // Keep the temporary directory (the kubeconfig) alive until here.
        drop(dir);
    }
    procs.stop().await;
    kube.shutdown();
    Ok(ok_blue_green && ok_w2 && ok_w3)
}

fn step(what: &str) {
    println!("==> {what}");
}

fn phase(c: &Canary) -> CanaryPhase {
    c.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

async fn client_for(kube: &localkube::Handle) -> anyhow::Result<Client> {
    let kc = kube::config::Kubeconfig::from_yaml(&kube.kubeconfig())?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(Client::try_from(cfg)?)
}

/// `kubectl set image` (plus the fault annotation for the faulty version).
async fn set_image(
    client: &Client,
    name: &str,
    tag: &str,
    error_ratio: Option<&str>,
) -> anyhow::Result<()> {
    let mut annotations = serde_json::Map::new();
    annotations.insert(
        localkube::dataplane::ERROR_RATIO.into(),
        match error_ratio {
            Some(r) => r.into(),
            None => serde_json::Value::Null,
        },
    );
    let patch = serde_json::json!({"spec": {"template": {
        "metadata": {"annotations": annotations},
        "spec": {"containers": [{"name": "podinfod", "image": format!("{IMAGE}:{tag}")}]}
    }}});
    Api::<Deployment>::namespaced(client.clone(), NS)
        .patch(
            name,
            &PatchParams {
                field_manager: Some("flagger-demo".into()),
                ..Default::default()
            },
            &Patch::Strategic(patch),
        )
        .await
        .with_context(|| format!("updating the {name} Deployment"))?;
    Ok(())
}

async fn primary_image(client: &Client, name: &str) -> anyhow::Result<String> {
    let d = Api::<Deployment>::namespaced(client.clone(), NS)
        .get(&format!("{name}-primary"))
        .await?;
    let image = d
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.image);
    match image {
        Some(i) => Ok(i),
        None => bail!("{name}-primary has no container image"),
    }
}
