//! Chaos: many rollouts under a random mix of API faults (issue 12).
//!
//! One localkube with its data plane, the real kubectl for the fixtures, `flagger controller`
//! in-process, and a set of canaries (most on the `kubernetes` provider, some on Istio with
//! progressive weights) rolling out new revisions in parallel, round after round, while
//! localkube answers 5% of the API requests with 500, 5% of the writes with 409 and cuts every
//! watch stream after a few seconds. Each rollout is meant to be promoted or rolled back (its
//! rollout webhook answers 200 or 500, as a failing check would); the run counts:
//! - wrong end states: a phase other than the one the checks call for, a primary not running
//!   the image it should, a target not back at zero replicas;
//! - samples of an apex Service without ready endpoints, from a watch of its Endpoints and
//!   EndpointSlices, once it had some;
//! - failed requests of a steady stream through the data plane to every apex Service;
//! - duplicated events for a step.
//!
//! The run is seeded: the seed is printed, and `FLAGGER_CHAOS_SEED` replays it (the choice of
//! promotions and rollbacks, and localkube's fault draws; which request meets which draw still
//! depends on timing). `FLAGGER_CHAOS_ROUNDS` (default 3) sets the revisions per canary; the CI
//! run is 8 canaries x 3 rounds = 24 rollouts. The long soak is the same test with more rounds
//! (`scripts/chaos-soak.sh`).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flagger_api::{Canary, CanaryPhase};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::PostParams;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use support::{Env, NS, Options};

const PODINFO: &str = "ghcr.io/stefanprodan/podinfo";

/// Canaries rolling out in parallel; the last [`MESH`] of them on Istio.
const CANARIES: usize = 8;
const MESH: usize = 2;

/// How long one rollout may take under the faults before the run fails.
const ROLLOUT_DEADLINE: Duration = Duration::from_secs(90);

/// splitmix64: the run's choices, drawn from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn seed() -> u64 {
    std::env::var("FLAGGER_CHAOS_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

fn rounds() -> usize {
    std::env::var("FLAGGER_CHAOS_ROUNDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(3)
}

/// The Istio routing CRDs (schemas preserve unknown fields).
fn istio_crds() -> String {
    let mut out = String::new();
    for (kind, plural) in [
        ("VirtualService", "virtualservices"),
        ("DestinationRule", "destinationrules"),
    ] {
        out.push_str(&format!(
            "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
             metadata: {{name: {plural}.networking.istio.io}}\nspec:\n  group: networking.istio.io\n  \
             scope: Namespaced\n  names: {{kind: {kind}, plural: {plural}, singular: {}, listKind: {kind}List}}\n  \
             versions:\n  - name: v1beta1\n    served: true\n    storage: true\n    \
             schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}\n",
            kind.to_lowercase()
        ));
    }
    out
}

fn name(i: usize) -> String {
    format!("app-{i}")
}

fn is_mesh(i: usize) -> bool {
    i >= CANARIES - MESH
}

/// The workload and its Canary: blue/green with 3 iterations on `kubernetes`, 10% steps to
/// 30% on Istio; a rollout webhook (hook `<name>`) the test answers 200 or 500.
fn fixtures(env: &Env, i: usize) -> String {
    let n = name(i);
    let (provider, analysis) = if is_mesh(i) {
        ("istio", "maxWeight: 30\n    stepWeight: 10")
    } else {
        ("kubernetes", "iterations: 3")
    };
    let hook = env.hooks.url(&n);
    format!(
        r#"
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {n}, namespace: {NS}, labels: {{app: {n}}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {n}}}}}
  template:
    metadata: {{labels: {{app: {n}}}}}
    spec:
      containers:
      - name: podinfod
        image: {PODINFO}:6.0.0
        ports: [{{name: http, containerPort: 9898}}]
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: {n}, namespace: {NS}}}
spec:
  provider: {provider}
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: {n}}}
  progressDeadlineSeconds: 120
  service: {{port: 80, targetPort: http}}
  analysis:
    interval: 1s
    threshold: 2
    {analysis}
    webhooks:
    - {{name: check, type: rollout, url: "{hook}", timeout: 5s}}
"#
    )
}

/// The fault mix: 5% of requests (watches aside) answered 500, 5% of the writes 409, every
/// watch cut after 3 s.
fn fault_mix() -> (localkube::Faults, [Arc<AtomicU64>; 2]) {
    let errors = localkube::FaultRule {
        error_rate: 0.05,
        code: 500,
        ..Default::default()
    };
    let conflicts = localkube::FaultRule {
        conflict_rate: 0.05,
        ..Default::default()
    };
    let counters = [errors.injected.clone(), conflicts.injected.clone()];
    let faults = localkube::Faults {
        rules: ["get", "list", "create", "update", "patch", "delete"]
            .iter()
            .map(|verb| localkube::FaultRule {
                verb: Some(verb.to_string()),
                ..errors.clone()
            })
            .chain(std::iter::once(conflicts))
            .collect(),
        watch_cut: Some(Duration::from_secs(3)),
    };
    (faults, counters)
}

/// Watch streams opened so far (each cut is followed by one more).
async fn watches_opened(env: &Env) -> u64 {
    // Through the kube client: its TLS and credentials are the cluster's (HTTPS with RBAC).
    let text = env
        .client
        .request_text(
            http::Request::get("/metrics")
                .body(Vec::new())
                .expect("metrics request"),
        )
        .await
        .expect("localkube metrics");
    text.lines()
        .filter(|l| l.starts_with("apiserver_request_total{verb=\"watch\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<u64>().ok())
        .sum()
}

/// Every state of every apex Service's Endpoints and EndpointSlices, from watches: the states
/// without a ready address after the Service first had one.
#[derive(Clone, Default)]
struct EndpointSamples {
    samples: Arc<AtomicU64>,
    empty: Arc<Mutex<Vec<String>>>,
    /// Apex Services that have had ready endpoints.
    served: Arc<Mutex<HashMap<String, bool>>>,
}

impl EndpointSamples {
    fn record(&self, what: &str, service: &str, ready: bool) {
        if !(0..CANARIES).any(|i| name(i) == service) {
            return;
        }
        self.samples.fetch_add(1, Ordering::Relaxed);
        let mut served = self.served.lock().unwrap();
        let had = served.entry(service.to_string()).or_default();
        if ready {
            *had = true;
        } else if *had {
            self.empty
                .lock()
                .unwrap()
                .push(format!("{what} of {service} without a ready address"));
        }
    }

    fn start(&self, env: &Env, stop: Arc<AtomicBool>) {
        let endpoints: Api<Endpoints> = Api::namespaced(env.client.clone(), NS);
        let me = self.clone();
        let s = stop.clone();
        tokio::spawn(async move {
            let mut w = watcher::watcher(endpoints, watcher::Config::default()).boxed();
            while !s.load(Ordering::Relaxed) {
                // Errors (an injected 500 on the re-list) are retried by the next poll.
                let Some(ev) = w.next().await else { break };
                if let Ok(watcher::Event::Apply(ep) | watcher::Event::InitApply(ep)) = ev {
                    let ready = ep
                        .subsets
                        .iter()
                        .flatten()
                        .any(|s| s.addresses.as_ref().is_some_and(|a| !a.is_empty()));
                    me.record("Endpoints", &ep.name_any(), ready);
                }
            }
        });
        let slices: Api<EndpointSlice> = Api::namespaced(env.client.clone(), NS);
        let me = self.clone();
        tokio::spawn(async move {
            // The slices of one Service, by slice name: whether each has a ready endpoint.
            let mut by_service: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
            let mut w = watcher::watcher(slices, watcher::Config::default()).boxed();
            while !stop.load(Ordering::Relaxed) {
                let Some(ev) = w.next().await else { break };
                let (slice, deleted) = match ev {
                    Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => (s, false),
                    Ok(watcher::Event::Delete(s)) => (s, true),
                    _ => continue,
                };
                let Some(service) = slice.labels().get("kubernetes.io/service-name").cloned()
                else {
                    continue;
                };
                let ready = !deleted
                    && slice
                        .endpoints
                        .iter()
                        .any(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true));
                let of = by_service.entry(service.clone()).or_default();
                of.insert(slice.name_any(), ready);
                let any = of.values().any(|r| *r);
                me.record("EndpointSlices", &service, any);
            }
        });
    }
}

/// A steady stream of requests through the data plane to every apex Service in turn.
#[derive(Clone, Default)]
struct Traffic {
    sent: Arc<AtomicU64>,
    failed: Arc<Mutex<Vec<String>>>,
}

impl Traffic {
    fn start(&self, env: &Env, stop: Arc<AtomicBool>) {
        let proxy = env.kube.proxy_url().expect("data plane");
        let http = reqwest::Client::builder()
            .proxy(reqwest::Proxy::http(&proxy).expect("proxy"))
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let me = self.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let url = format!("http://{}.{NS}/", name(i % CANARIES));
                i += 1;
                me.sent.fetch_add(1, Ordering::Relaxed);
                match http.get(&url).send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => me
                        .failed
                        .lock()
                        .unwrap()
                        .push(format!("{url}: status {}", r.status().as_u16())),
                    Err(e) => me.failed.lock().unwrap().push(format!("{url}: {e}")),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }
}

/// The canary's status as far as the run needs it, read through the faults (None on an error).
async fn status(api: &Api<Canary>, n: &str) -> Option<(CanaryPhase, Option<String>)> {
    let c = api.get(n).await.ok()?;
    let s = c.status.unwrap_or_default();
    Some((s.phase, s.last_applied_spec))
}

/// Sets the target's image to `tag` with an update, retried through the faults.
async fn new_revision(env: &Env, n: &str, tag: &str) {
    let api = Api::<Deployment>::namespaced(env.client.clone(), NS);
    let deadline = Instant::now() + ROLLOUT_DEADLINE;
    loop {
        let attempt = async {
            let mut d = api.get(n).await.ok()?;
            let spec = d.spec.as_mut()?.template.spec.as_mut()?;
            spec.containers[0].image = Some(format!("{PODINFO}:{tag}"));
            d.metadata.managed_fields = None;
            api.replace(n, &PostParams::default(), &d).await.ok()
        };
        if attempt.await.is_some() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n}: the new revision was never written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the canary has taken in the revision written after `before` (its
/// lastAppliedSpec moved) and reached a terminal phase; returns that phase.
async fn wait_end(env: &Env, n: &str, before: Option<String>) -> CanaryPhase {
    let api = Api::<Canary>::namespaced(env.client.clone(), NS);
    let deadline = Instant::now() + ROLLOUT_DEADLINE;
    let mut last = None;
    loop {
        if let Some((phase, spec)) = status(&api, n).await {
            if spec != before && matches!(phase, CanaryPhase::Succeeded | CanaryPhase::Failed) {
                return phase;
            }
            last = Some(phase);
        }
        assert!(
            Instant::now() < deadline,
            "{n}: no end state within {ROLLOUT_DEADLINE:?} (last phase {last:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one rollout was meant to do and did.
struct Outcome {
    canary: String,
    round: usize,
    promote: bool,
    phase: CanaryPhase,
    /// The image the primary should run at the end.
    want_image: String,
    took: Duration,
}

/// Runs `rounds` rollouts of canary `i`, each promoted or rolled back as `plan` says.
async fn roll(env: &Env, i: usize, plan: Vec<bool>) -> Vec<Outcome> {
    let n = name(i);
    let api = Api::<Canary>::namespaced(env.client.clone(), NS);
    let mut primary_tag = "6.0.0".to_string();
    let mut out = Vec::new();
    for (round, promote) in plan.into_iter().enumerate() {
        let tag = format!("6.{i}.{}", round + 1);
        env.hooks.set(&n, if promote { 200 } else { 500 });
        let before = loop {
            if let Some((_, spec)) = status(&api, &n).await {
                break spec;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let start = Instant::now();
        new_revision(env, &n, &tag).await;
        let phase = wait_end(env, &n, before).await;
        if promote {
            primary_tag = tag;
        }
        out.push(Outcome {
            canary: n.clone(),
            round,
            promote,
            phase,
            want_image: format!("{PODINFO}:{primary_tag}"),
            took: start.elapsed(),
        });
    }
    env.hooks.set(&n, 200);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_under_a_random_fault_mix_end_right_and_keep_serving() {
    let seed = seed();
    let rounds = rounds();
    println!("chaos: seed {seed} (FLAGGER_CHAOS_SEED={seed} replays it), {rounds} rounds");
    localkube::faults::seed_chance(seed);
    let mut rng = Rng(seed);
    // Two in three rollouts promoted, one rolled back; every canary gets at least one of each
    // kind when it has two rounds or more.
    let plans: Vec<Vec<bool>> = (0..CANARIES)
        .map(|_| {
            let mut p: Vec<bool> = (0..rounds).map(|_| !rng.next().is_multiple_of(3)).collect();
            if rounds >= 2 && p.iter().all(|x| *x) {
                p[(rng.next() % rounds as u64) as usize] = false;
            }
            if rounds >= 2 && p.iter().all(|x| !*x) {
                p[(rng.next() % rounds as u64) as usize] = true;
            }
            p
        })
        .collect();

    let env = Env::start(Options {
        dataplane: true,
        ..Options::default()
    })
    .await;
    env.apply(&istio_crds()).await;
    let all: String = (0..CANARIES).map(|i| fixtures(&env, i)).collect();
    env.apply(&all).await;

    let started = Instant::now();
    let watches_before = watches_opened(&env).await;
    let (faults, [errors, conflicts]) = fault_mix();
    env.kube.set_faults(faults);

    let stop = Arc::new(AtomicBool::new(false));
    let endpoints = EndpointSamples::default();
    endpoints.start(&env, stop.clone());
    let canaries = Api::<Canary>::namespaced(env.client.clone(), NS);
    for i in 0..CANARIES {
        let deadline = Instant::now() + ROLLOUT_DEADLINE;
        while status(&canaries, &name(i)).await.map(|s| s.0) != Some(CanaryPhase::Initialized) {
            assert!(Instant::now() < deadline, "{} never initialized", name(i));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let traffic = Traffic::default();
    traffic.start(&env, stop.clone());

    let outcomes: Vec<Outcome> =
        futures::future::join_all(plans.into_iter().enumerate().map(|(i, p)| roll(&env, i, p)))
            .await
            .into_iter()
            .flatten()
            .collect();
    let wall = started.elapsed();

    // The end state of each canary, read with the faults still on: the target goes to zero
    // within a few intervals of the terminal phase.
    let mut wrong = Vec::new();
    let deployments = Api::<Deployment>::namespaced(env.client.clone(), NS);
    for i in 0..CANARIES {
        let n = name(i);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let replicas = match deployments.get(&n).await {
                Ok(d) => d.spec.and_then(|s| s.replicas),
                Err(_) => None,
            };
            if replicas == Some(0) {
                break;
            }
            if Instant::now() > deadline {
                wrong.push(format!("{n}: target at {replicas:?} replicas at the end"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    env.kube.set_faults(localkube::Faults::default());

    let mut durations: Vec<Duration> = outcomes.iter().map(|o| o.took).collect();
    durations.sort();
    let mut last_of: BTreeMap<String, &Outcome> = BTreeMap::new();
    for o in &outcomes {
        let want = if o.promote {
            CanaryPhase::Succeeded
        } else {
            CanaryPhase::Failed
        };
        if o.phase != want {
            wrong.push(format!(
                "{} round {}: {:?}, meant to be {want:?}",
                o.canary, o.round, o.phase
            ));
        }
        last_of.insert(o.canary.clone(), o);
    }
    let mut duplicated = Vec::new();
    for (n, o) in &last_of {
        let image = env
            .jsonpath(
                &format!("deployment/{n}-primary"),
                ".spec.template.spec.containers[0].image",
            )
            .await;
        if image != o.want_image {
            wrong.push(format!("{n}: primary runs {image}, meant {}", o.want_image));
        }
        let ready = env
            .jsonpath(&format!("deployment/{n}-primary"), ".status.readyReplicas")
            .await;
        if ready.is_empty() || ready == "0" {
            wrong.push(format!("{n}: primary without ready replicas ({ready:?})"));
        }
        let of = |promote: bool| {
            outcomes
                .iter()
                .filter(|x| &x.canary == n && x.promote == promote)
                .count() as i32
        };
        for (text, want) in [
            (
                format!("New revision detected! Scaling up {n}.{NS}"),
                of(true) + of(false),
            ),
            (
                format!("Promotion completed! Scaling down {n}.{NS}"),
                of(true),
            ),
            (format!("Canary failed! Scaling down {n}.{NS}"), of(false)),
            (format!("Initialization done! {n}.{NS}"), 1),
        ] {
            let got = env.event_count(n, &text).await;
            if got != want {
                duplicated.push(format!("{n}: {got} x {text:?}, meant {want}"));
            }
        }
    }

    let promoted = outcomes.iter().filter(|o| o.promote).count();
    let mesh = outcomes
        .iter()
        .filter(|o| (0..CANARIES).any(|i| is_mesh(i) && name(i) == o.canary))
        .count();
    let empty = endpoints.empty.lock().unwrap().clone();
    let failed = traffic.failed.lock().unwrap().clone();
    println!(
        "chaos: seed {seed}: {} rollouts ({promoted} promoted, {} rolled back; {mesh} on Istio) in {:.1}s; \
         faults injected: {} x 500, {} x 409, {} watch streams opened (cut every 3s); \
         rollout time median {:.1}s, max {:.1}s; \
         {} endpoint samples, {} without a ready address; {} requests through the data plane, {} failed; \
         {} wrong end states, {} event counts off",
        outcomes.len(),
        outcomes.len() - promoted,
        wall.as_secs_f64(),
        errors.load(Ordering::Relaxed),
        conflicts.load(Ordering::Relaxed),
        watches_opened(&env).await - watches_before,
        durations[durations.len() / 2].as_secs_f64(),
        durations.last().map(|d| d.as_secs_f64()).unwrap_or(0.0),
        endpoints.samples.load(Ordering::Relaxed),
        empty.len(),
        traffic.sent.load(Ordering::Relaxed),
        failed.len(),
        wrong.len(),
        duplicated.len(),
    );
    assert!(outcomes.len() >= 20 || rounds < 3, "at least 20 rollouts");
    assert!(
        wrong.is_empty(),
        "seed {seed}: wrong end states: {wrong:#?}"
    );
    assert!(
        empty.is_empty(),
        "seed {seed}: apex Services without ready endpoints: {empty:#?}"
    );
    assert!(
        failed.is_empty(),
        "seed {seed}: failed requests through the data plane: {failed:#?}"
    );
    assert!(
        duplicated.is_empty(),
        "seed {seed}: events missing or duplicated: {duplicated:#?}"
    );
    assert!(
        errors.load(Ordering::Relaxed) > 0 && conflicts.load(Ordering::Relaxed) > 0,
        "the faults were injected"
    );
}
