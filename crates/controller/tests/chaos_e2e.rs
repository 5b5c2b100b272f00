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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use support::chaos::{self, EndpointStates, Outcome, Rng, name};
use support::{Env, NS, Options};

/// Canaries rolling out in parallel; the last [`MESH`] of them on Istio.
const CANARIES: usize = 8;
const MESH: usize = 2;

/// How long one rollout may take under the faults before the run fails.
const ROLLOUT_DEADLINE: Duration = Duration::from_secs(90);

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
    chaos::podinfo(&n, &env.hooks.url(&n), provider, analysis)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_under_a_random_fault_mix_end_right_and_keep_serving() {
    let seed = chaos::seed();
    let rounds = chaos::env_count("FLAGGER_CHAOS_ROUNDS", 3);
    println!("chaos: seed {seed} (FLAGGER_CHAOS_SEED={seed} replays it), {rounds} rounds");
    localkube::faults::seed_chance(seed);
    // Two in three rollouts promoted, one rolled back; every canary gets at least one of each
    // kind when it has two rounds or more.
    let plans = Rng(seed).plans(CANARIES, rounds);

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
    let (faults, [errors, conflicts]) = chaos::fault_mix();
    env.kube.set_faults(faults);

    let stop = Arc::new(AtomicBool::new(false));
    let endpoints = EndpointStates::start(&env.kube, (0..CANARIES).map(name).collect());
    chaos::wait_initialized(&env.client, CANARIES, ROLLOUT_DEADLINE).await;
    let traffic = Traffic::default();
    traffic.start(&env, stop.clone());

    let results = futures::future::join_all(plans.iter().enumerate().map(|(i, p)| {
        chaos::roll(&env.client, i, p, ROLLOUT_DEADLINE, |n, code| {
            env.hooks.set(n, code)
        })
    }))
    .await;
    let wall = started.elapsed();
    let (outcomes, primaries): (Vec<Vec<Outcome>>, Vec<String>) = results.into_iter().unzip();
    let outcomes: Vec<Outcome> = outcomes.into_iter().flatten().collect();

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

    let (median, max) = chaos::median_and_max(&outcomes);
    wrong.extend(chaos::wrong_phases(&outcomes));
    let mut duplicated = Vec::new();
    for (i, primary) in primaries.iter().enumerate() {
        let n = &name(i);
        let image = env
            .jsonpath(
                &format!("deployment/{n}-primary"),
                ".spec.template.spec.containers[0].image",
            )
            .await;
        if image != *primary {
            wrong.push(format!("{n}: primary runs {image}, meant {primary}"));
        }
        let ready = env
            .jsonpath(&format!("deployment/{n}-primary"), ".status.readyReplicas")
            .await;
        if ready.is_empty() || ready == "0" {
            wrong.push(format!("{n}: primary without ready replicas ({ready:?})"));
        }
        for (text, want) in chaos::step_events(n, &outcomes) {
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
    let empty = endpoints.empty();
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
        median,
        max,
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
