//! Seed 000 on localkube: a GitOps tool (server-side apply, field manager
//! `kustomize-controller`, force) keeps re-applying the Service `app` with a selector for the
//! `app` pods, which the controller manages as the apex Service of Canary `app` (selector
//! `app-primary`), while requests flow through localkube's data plane.
//!
//! Phase A runs the controller as Flagger behaves (`--gitops-max-reversions=0`: revert
//! forever); phase B with the stop-fighting rule (3 reversions). Both print their figures.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flagger_api::CanaryPhase;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;
use support::{Env, NS, Options};

/// The GitOps tool's pace (Flux's is minutes; the fight is the same at any pace).
const GITOPS_INTERVAL: Duration = Duration::from_millis(400);

const WORKLOAD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: test, labels: {app: app}}
spec:
  replicas: 2
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      containers:
      - name: app
        image: ghcr.io/stefanprodan/podinfo:6.0.0
        ports: [{name: http, containerPort: 9898}]
"#;

const CANARY: &str = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: app, namespace: test}
spec:
  provider: kubernetes
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: app}
  progressDeadlineSeconds: 60
  service: {port: 80, targetPort: http}
  analysis: {interval: 10s, threshold: 2, iterations: 2}
"#;

/// The Service as the GitOps repository has it (the seed's missed step: it was left there).
fn gitops_service() -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "app", "namespace": NS},
        "spec": {"selector": {"app": "app"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    })
}

async fn gitops_apply(client: &Client) {
    Api::<Service>::namespaced(client.clone(), NS)
        .patch(
            "app",
            &PatchParams::apply("kustomize-controller").force(),
            &Patch::Apply(gitops_service()),
        )
        .await
        .expect("GitOps apply");
}

/// A timestamped record of something observed.
type Log<T> = Arc<Mutex<Vec<(Instant, T)>>>;

/// Watches the apex Service's selector and its Endpoints, and sends requests through the
/// data plane, recording all three with timestamps.
struct Observer {
    selectors: Log<String>,
    endpoints: Log<bool>,
    requests: Log<u16>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Observer {
    fn start(env: &Env) -> Observer {
        let selectors: Log<String> = Default::default();
        let endpoints: Log<bool> = Default::default();
        let requests: Log<u16> = Default::default();
        let mut tasks = Vec::new();

        let svc_api: Api<Service> = Api::namespaced(env.client.clone(), NS);
        let log = selectors.clone();
        tasks.push(tokio::spawn(async move {
            let cfg = watcher::Config::default().fields("metadata.name=app");
            let mut s = watcher::watcher(svc_api, cfg).boxed();
            while let Some(Ok(ev)) = s.next().await {
                if let watcher::Event::Apply(svc) | watcher::Event::InitApply(svc) = ev {
                    let app = svc
                        .spec
                        .and_then(|s| s.selector)
                        .and_then(|s| s.get("app").cloned())
                        .unwrap_or_default();
                    log.lock().expect("log lock").push((Instant::now(), app));
                }
            }
        }));

        let ep_api: Api<Endpoints> = Api::namespaced(env.client.clone(), NS);
        let log = endpoints.clone();
        tasks.push(tokio::spawn(async move {
            let cfg = watcher::Config::default().fields("metadata.name=app");
            let mut s = watcher::watcher(ep_api, cfg).boxed();
            while let Some(Ok(ev)) = s.next().await {
                if let watcher::Event::Apply(ep) | watcher::Event::InitApply(ep) = ev {
                    let ready = ep
                        .subsets
                        .iter()
                        .flatten()
                        .any(|s| s.addresses.as_ref().is_some_and(|a| !a.is_empty()));
                    log.lock().expect("log lock").push((Instant::now(), ready));
                }
            }
        }));

        let proxy = env.kube.proxy_url().expect("data plane");
        let log = requests.clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .proxy(reqwest::Proxy::http(&proxy).expect("proxy"))
                .timeout(Duration::from_secs(2))
                .build()
                .expect("client");
            loop {
                let code = match http.get("http://app.test/").send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 599,
                };
                log.lock().expect("log lock").push((Instant::now(), code));
            }
        }));
        Observer {
            selectors,
            endpoints,
            requests,
            tasks,
        }
    }

    /// Waits until both watches have delivered their initial state and a request was answered,
    /// so nothing that follows goes unseen.
    async fn ready(&self) {
        let last = Mutex::new(String::new());
        support::wait_for(
            "the observer's watches and first request",
            &last,
            || async {
                let started = !self.selectors.lock().expect("log lock").is_empty()
                    && !self.endpoints.lock().expect("log lock").is_empty()
                    && !self.requests.lock().expect("log lock").is_empty();
                started.then_some(())
            },
        )
        .await;
    }

    /// Selector changes to `app: app` (the GitOps version) after `since`.
    fn flips_to_gitops(&self, since: Instant) -> usize {
        self.selectors
            .lock()
            .expect("log lock")
            .iter()
            .filter(|(t, app)| *t >= since && app == "app")
            .count()
    }

    fn selector_changes_to(&self, since: Instant, app: &str) -> usize {
        self.selectors
            .lock()
            .expect("log lock")
            .iter()
            .filter(|(t, a)| *t >= since && a == app)
            .count()
    }

    /// Time in `[from, to]` during which the Service's Endpoints had no ready address.
    fn without_endpoints(&self, from: Instant, to: Instant) -> Duration {
        let log = self.endpoints.lock().expect("log lock");
        let mut state = log
            .iter()
            .rev()
            .find(|(t, _)| *t <= from)
            .map(|(_, r)| *r)
            .unwrap_or(true);
        let mut at = from;
        let mut empty = Duration::ZERO;
        for (t, ready) in log.iter().filter(|(t, _)| *t > from && *t <= to) {
            if !state {
                empty += *t - at;
            }
            state = *ready;
            at = *t;
        }
        if !state {
            empty += to - at;
        }
        empty
    }

    /// (failed, total) requests in `[from, to]`; failed: 5xx or no answer.
    fn failures(&self, from: Instant, to: Instant) -> (usize, usize) {
        let log = self.requests.lock().expect("log lock");
        let window: Vec<u16> = log
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, c)| *c)
            .collect();
        (window.iter().filter(|c| **c >= 500).count(), window.len())
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Applies the workload, the GitOps Service, then the Canary, and waits for `Initialized`
/// with the apex Service taken over.
async fn install(env: &Env) {
    env.apply(WORKLOAD).await;
    gitops_apply(&env.client).await;
    env.apply(CANARY).await;
    env.wait_phase("app", CanaryPhase::Initialized).await;
    env.wait_jsonpath("service/app", ".spec.selector.app", "app-primary")
        .await;
}

/// Runs one GitOps cycle, then waits the GitOps interval.
async fn cycle(env: &Env) {
    gitops_apply(&env.client).await;
    tokio::time::sleep(GITOPS_INTERVAL).await;
}

fn pct(part: Duration, whole: Duration) -> f64 {
    100.0 * part.as_secs_f64() / whole.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gitops_fight_is_reported_and_stopped_without_an_outage() {
    let mut env = Env::start(Options {
        dataplane: true,
        controller_args: &["--gitops-max-reversions=0"],
        ..Default::default()
    })
    .await;
    install(&env).await;
    let obs = Observer::start(&env);
    obs.ready().await;

    // Phase A: revert forever (Flagger's behaviour). Every GitOps cycle flips the selector to
    // the scaled-to-zero `app` pods and the controller flips it back.
    const CYCLES_A: usize = 8;
    let a_start = Instant::now();
    for _ in 0..CYCLES_A {
        cycle(&env).await;
    }
    env.wait_jsonpath("service/app", ".spec.selector.app", "app-primary")
        .await;
    let a_end = Instant::now();
    let flips = obs.flips_to_gitops(a_start);
    let reverts = obs.selector_changes_to(a_start, "app-primary");
    let empty_a = obs.without_endpoints(a_start, a_end);
    let (failed_a, total_a) = obs.failures(a_start, a_end);
    eprintln!(
        "phase A (revert forever): {CYCLES_A} GitOps cycles in {:.1}s: {flips} flips to the GitOps selector, \
         {reverts} reversions, no ready endpoints {:.3}s ({:.2}% of the time), failed requests {failed_a}/{total_a} ({:.2}%)",
        (a_end - a_start).as_secs_f64(),
        empty_a.as_secs_f64(),
        pct(empty_a, a_end - a_start),
        100.0 * failed_a as f64 / total_a.max(1) as f64,
    );
    assert_eq!(flips, CYCLES_A, "every GitOps cycle changed the selector");
    assert!(reverts >= CYCLES_A, "the controller reverted every change");
    let warning = env
        .wait_event(
            "app",
            "field manager kustomize-controller changed spec.selector.app",
        )
        .await;
    assert!(
        warning.contains("kustomize.toolkit.fluxcd.io/ssa: IfNotPresent"),
        "the event gives the Flux fix: {warning}"
    );
    env.wait_jsonpath(
        "canary/app",
        ".status.conditions[?(@.type==\"FieldConflict\")].reason",
        "Reverting",
    )
    .await;
    // Promoted is still there next to it.
    assert_eq!(
        env.jsonpath(
            "canary/app",
            ".status.conditions[?(@.type==\"Promoted\")].status"
        )
        .await,
        "True"
    );

    // Phase B: the stop-fighting rule (3 reversions in the window).
    env.stop_controller().await;
    env.start_controller_with(&[]).await;
    let b_start = Instant::now();
    let mut first_warning_cycle = None;
    let mut yield_cycle = None;
    for n in 1..=10 {
        cycle(&env).await;
        if first_warning_cycle.is_none()
            && env
                .event_count("app", "put back (1 times in 30m0s; stops after 3)")
                .await
                > 0
        {
            first_warning_cycle = Some(n);
        }
        let reason = env
            .jsonpath(
                "canary/app",
                ".status.conditions[?(@.type==\"FieldConflict\")].reason",
            )
            .await;
        if reason == "StoppedReverting" {
            yield_cycle = Some(n);
            break;
        }
    }
    let yield_cycle = yield_cycle.expect("the controller stopped reverting within 10 cycles");
    let first_warning_cycle = first_warning_cycle.unwrap_or(yield_cycle);
    assert!(
        first_warning_cycle <= 2,
        "warned within two GitOps cycles (at cycle {first_warning_cycle})"
    );
    // The target serves the GitOps selector's traffic, and the Service stays as GitOps wrote it.
    env.wait_jsonpath("deployment/app", ".status.readyReplicas", "2")
        .await;
    cycle(&env).await;
    env.wait_jsonpath("service/app", ".spec.selector.app", "app")
        .await;
    let settled = Instant::now();
    for _ in 0..6 {
        cycle(&env).await;
    }
    let b_end = Instant::now();
    let empty_after = obs.without_endpoints(settled, b_end);
    let (failed_after, total_after) = obs.failures(settled, b_end);
    let empty_b = obs.without_endpoints(b_start, b_end);
    let (failed_b, total_b) = obs.failures(b_start, b_end);
    eprintln!(
        "phase B (stop after 3): first warning at cycle {first_warning_cycle}, stopped reverting at cycle {yield_cycle}; \
         whole phase {:.1}s: no ready endpoints {:.3}s, failed requests {failed_b}/{total_b}; \
         after stopping, 6 cycles in {:.1}s: no ready endpoints {:.3}s, failed requests {failed_after}/{total_after}, \
         flips back to app-primary {}",
        (b_end - b_start).as_secs_f64(),
        empty_b.as_secs_f64(),
        (b_end - settled).as_secs_f64(),
        empty_after.as_secs_f64(),
        obs.selector_changes_to(settled, "app-primary"),
    );
    assert_eq!(
        obs.selector_changes_to(settled, "app-primary"),
        0,
        "no more flapping"
    );
    assert_eq!(
        empty_after,
        Duration::ZERO,
        "the Service always had ready endpoints"
    );
    assert_eq!(failed_after, 0, "no failed request once the fight stopped");
    assert!(total_after > 0, "requests flowed");
    let stopped = env
        .wait_event(
            "app",
            "stopped reverting, the object is left to kustomize-controller",
        )
        .await;
    assert!(stopped.contains("Deployment app"), "{stopped}");

    // Someone edits the primary Deployment by hand: noted (it is rewritten at promotion).
    env.kubectl(&[
        "-n",
        NS,
        "set",
        "image",
        "deployment/app-primary",
        "app=ghcr.io/stefanprodan/podinfo:6.0.9",
    ])
    .await;
    let noted = env
        .wait_event(
            "app",
            "Deployment app-primary: field manager kubectl-set changed spec.template.spec.containers",
        )
        .await;
    assert!(
        noted.contains("written again at the next promotion"),
        "{noted}"
    );
}

/// The corrected GitOps repository of the seed: the Deployment without `replicas` and the
/// Canary; no Service `app`.
const FIXED_WORKLOAD: &str = r#"{
  "apiVersion": "apps/v1", "kind": "Deployment",
  "metadata": {"name": "app", "namespace": "test", "labels": {"app": "app"}},
  "spec": {
    "selector": {"matchLabels": {"app": "app"}},
    "template": {
      "metadata": {"labels": {"app": "app"}},
      "spec": {"containers": [{"name": "app", "image": "ghcr.io/stefanprodan/podinfo:6.0.0",
                               "ports": [{"name": "http", "containerPort": 9898}]}]}
    }
  }
}"#;

const FIXED_CANARY: &str = r#"{
  "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
  "metadata": {"name": "app", "namespace": "test"},
  "spec": {
    "provider": "kubernetes",
    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
    "progressDeadlineSeconds": 60,
    "service": {"port": 80, "targetPort": "http"},
    "analysis": {"interval": "10s", "threshold": 2, "iterations": 2}
  }
}"#;

/// A GitOps applier reconciling the fixed repository every [`GITOPS_INTERVAL`], whatever
/// happens (the Canary apply fails while its CRD is gone). Counts its cycles.
struct GitOps {
    cycles: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl GitOps {
    fn start(client: Client) -> GitOps {
        let cycles = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = cycles.clone();
        let task = tokio::spawn(async move {
            let params = PatchParams::apply("kustomize-controller").force();
            let workload: serde_json::Value =
                serde_json::from_str(FIXED_WORKLOAD).expect("workload JSON");
            let canary: serde_json::Value =
                serde_json::from_str(FIXED_CANARY).expect("canary JSON");
            loop {
                let _ =
                    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), NS)
                        .patch("app", &params, &Patch::Apply(&workload))
                        .await;
                let _ = Api::<flagger_api::Canary>::namespaced(client.clone(), NS)
                    .patch("app", &params, &Patch::Apply(&canary))
                    .await;
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(GITOPS_INTERVAL).await;
            }
        });
        GitOps { cycles, task }
    }

    /// Waits until `n` more cycles have run.
    async fn cycles(&self, n: usize) {
        let until = self.cycles.load(std::sync::atomic::Ordering::SeqCst) + n;
        let last = Mutex::new(String::new());
        support::wait_for("GitOps cycles", &last, || async {
            (self.cycles.load(std::sync::atomic::Ordering::SeqCst) >= until).then_some(())
        })
        .await;
    }
}

impl Drop for GitOps {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migration_from_manifests_to_helm_keeps_serving() {
    let mut env = Env::start(Options {
        dataplane: true,
        ..Default::default()
    })
    .await;
    let gitops = GitOps::start(env.client.clone());
    env.wait_phase("app", CanaryPhase::Initialized).await;
    env.wait_jsonpath("service/app", ".spec.selector.app", "app-primary")
        .await;
    env.wait_jsonpath("deployment/app", ".spec.replicas", "0")
        .await;
    let obs = Observer::start(&env);
    obs.ready().await;
    gitops.cycles(2).await;
    let start = Instant::now();

    // 1. The manifest-installed controller goes; first, traffic goes back to the target.
    env.stop_controller().await;
    let mut steps = Vec::new();
    let opts = flagger_controller::handover::Options {
        namespace: Some(NS.into()),
        timeout: support::DEADLINE,
        labels: Default::default(),
        keep_canaries: false,
    };
    let handed = flagger_controller::handover::uninstall(&env.client, &opts, &mut |line| {
        eprintln!("uninstall: {line}");
        steps.push(line);
    })
    .await
    .expect("uninstall hands every Canary over");
    assert_eq!(handed, 1);
    assert!(
        steps
            .iter()
            .any(|s| s.contains("Service app kept and released")),
        "{steps:?}"
    );
    assert_eq!(
        env.jsonpath("service/app", ".spec.selector.app").await,
        "app"
    );

    // 2. The CRDs go too (a manifest install removes them), while GitOps keeps applying.
    env.kubectl(&[
        "delete",
        "crd",
        "canaries.flagger.app",
        "metrictemplates.flagger.app",
        "alertproviders.flagger.app",
    ])
    .await;
    gitops.cycles(3).await;
    env.wait_gone("deployment/app-primary").await;

    // 3. Installed again (the Helm chart: CRDs, then the controller); GitOps recreates the
    // Canary and the controller takes over once the new primary is ready.
    let crds = env.dir.path().join("crds-again.yaml");
    std::fs::write(&crds, flagger_api::crd::crds_yaml()).expect("crds written");
    env.kubectl(&["apply", "-f", &crds.to_string_lossy()]).await;
    env.start_controller().await;
    env.wait_phase("app", CanaryPhase::Initialized).await;
    env.wait_jsonpath("service/app", ".spec.selector.app", "app-primary")
        .await;
    env.wait_jsonpath("deployment/app", ".spec.replicas", "0")
        .await;
    gitops.cycles(3).await;
    let end = Instant::now();

    let empty = obs.without_endpoints(start, end);
    let (failed, total) = obs.failures(start, end);
    eprintln!(
        "migration (controller removed, CRDs deleted, reinstalled) in {:.1}s with GitOps applying every {}ms: \
         no ready endpoints {:.3}s, failed requests {failed}/{total}",
        (end - start).as_secs_f64(),
        GITOPS_INTERVAL.as_millis(),
        empty.as_secs_f64(),
    );
    assert!(
        total > 100,
        "requests flowed during the migration ({total})"
    );
    assert_eq!(
        empty,
        Duration::ZERO,
        "the apex Service always had ready endpoints"
    );
    assert_eq!(failed, 0, "no request failed because of the migration");
}
