//! What the chaos scenarios share: the podinfo workload and its Canary, the seeded choices,
//! the fault mix, one rollout round after another, and every stored state of the apex
//! Services' endpoints.
//!
//! One file for both places the scenarios run: `chaos_e2e.rs` here (the controller
//! in-process) and, through a `#[path]` module of `crates/cli/tests/common`,
//! `controller_kill.rs` and `leader_pause_faults.rs` (the `flagger` binary as real processes).
//! It reads only localkube, the kube client and the wire types, and `super::NS`, which both
//! parents define.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flagger_api::{Canary, CanaryPhase};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use super::NS;

pub const PODINFO: &str = "ghcr.io/stefanprodan/podinfo";

/// The name of the scenario's `i`-th canary (and of its Deployment and apex Service).
pub fn name(i: usize) -> String {
    format!("app-{i}")
}

/// The podinfo Deployment `n` (label `app: n`) on 6.0.0 with `replicas`, its port `http`.
pub fn podinfo_deployment(n: &str, replicas: u32) -> String {
    format!(
        r#"
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {n}, namespace: {NS}, labels: {{app: {n}}}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {n}}}}}
  template:
    metadata: {{labels: {{app: {n}}}}}
    spec:
      containers:
      - name: podinfod
        image: {PODINFO}:6.0.0
        ports: [{{name: http, containerPort: 9898}}]
"#
    )
}

/// A podinfo Deployment `n` on 6.0.0 and its [`canary`] (blue/green or progressive as
/// `analysis` says, 120 s progress deadline).
pub fn podinfo(n: &str, hook: &str, spec: &str, analysis: &str) -> String {
    let deployment = podinfo_deployment(n, 1);
    let canary = canary(n, "Deployment", spec, analysis, hook, 120);
    format!("{deployment}{canary}")
}

/// The Canary `n` of the `kind` `n`: `spec` is what follows `provider:` (the provider, then
/// any lines of the spec at two spaces), `analysis` the lines of the analysis at four spaces
/// (iterations or weights); 1 s interval, threshold 2, a rollout webhook at `hook` that the
/// scenario answers 200 or 500, and `deadline` seconds of progress deadline.
pub fn canary(
    n: &str,
    kind: &str,
    spec: &str,
    analysis: &str,
    hook: &str,
    deadline: u32,
) -> String {
    format!(
        r#"---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: {n}, namespace: {NS}}}
spec:
  provider: {spec}
  targetRef: {{apiVersion: apps/v1, kind: {kind}, name: {n}}}
  progressDeadlineSeconds: {deadline}
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

/// splitmix64: a run's choices, drawn from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A duration in `[low, high)`.
    pub fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = (high - low).as_millis().max(1) as u64;
        low + Duration::from_millis(self.next() % span)
    }

    /// For each of `canaries`, `rounds` rollouts to promote (`true`) or roll back: two in
    /// three promoted, and each canary gets both kinds once it has two rounds or more.
    pub fn plans(&mut self, canaries: usize, rounds: usize) -> Vec<Vec<bool>> {
        (0..canaries)
            .map(|_| {
                let mut p: Vec<bool> = (0..rounds)
                    .map(|_| !self.next().is_multiple_of(3))
                    .collect();
                for kind in [false, true] {
                    if rounds >= 2 && p.iter().all(|x| *x != kind) {
                        p[(self.next() % rounds as u64) as usize] = kind;
                    }
                }
                p
            })
            .collect()
    }
}

/// The run's seed: `FLAGGER_CHAOS_SEED`, or the clock.
pub fn seed() -> u64 {
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

/// A count from the environment variable `name`, or `default`.
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// The fault mix: 5% of the requests (watches aside) answered 500, 5% of the writes 409, every
/// watch cut after 3 s; with the counters of the 500s and the 409s injected.
pub fn fault_mix() -> (localkube::Faults, [Arc<AtomicU64>; 2]) {
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
        rules: localkube::faults::VERBS
            .iter()
            .filter(|v| **v != "watch")
            .map(|v| localkube::FaultRule {
                verb: Some(v.to_string()),
                ..errors.clone()
            })
            .chain(std::iter::once(conflicts))
            .collect(),
        watch_cut: Some(Duration::from_secs(3)),
    };
    (faults, counters)
}

/// Polls `f` every 50 ms until it yields a value; panics after `deadline`.
pub async fn wait_for<T, Fut: std::future::Future<Output = Option<T>>>(
    what: &str,
    deadline: Duration,
    mut f: impl FnMut() -> Fut,
) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (phase, lastAppliedSpec) of a canary; None while it cannot be read (a fault, a restart).
pub async fn status(api: &Api<Canary>, n: &str) -> Option<(CanaryPhase, Option<String>)> {
    let s = api.get(n).await.ok()?.status.unwrap_or_default();
    Some((s.phase, s.last_applied_spec))
}

/// Waits until each of `canaries` is Initialized.
pub async fn wait_initialized(client: &Client, canaries: usize, deadline: Duration) {
    let api = Api::<Canary>::namespaced(client.clone(), NS);
    for i in 0..canaries {
        let n = name(i);
        wait_for(&format!("{n} initialized"), deadline, || async {
            (status(&api, &n).await?.0 == CanaryPhase::Initialized).then_some(())
        })
        .await;
    }
}

/// What one rollout was meant to do and did.
pub struct Outcome {
    pub canary: String,
    pub round: usize,
    pub promote: bool,
    pub phase: CanaryPhase,
    pub took: Duration,
}

impl Outcome {
    /// The phase the rollout's webhook called for.
    pub fn meant(&self) -> CanaryPhase {
        if self.promote {
            CanaryPhase::Succeeded
        } else {
            CanaryPhase::Failed
        }
    }
}

/// Rolls canary `i` through `plan`, one revision (`6.<i>.<round>`) after the other: before
/// each, `answer(name, code)` sets what its rollout webhook answers (200 to promote, 500 to
/// roll back); the new image is written (retried through faults), and the round ends when the
/// canary has taken it in (its lastAppliedSpec moved) and reached Succeeded or Failed, within
/// `deadline`. Returns the outcomes and the image its primary should run at the end.
pub async fn roll(
    client: &Client,
    i: usize,
    plan: &[bool],
    deadline: Duration,
    answer: impl Fn(&str, u16),
) -> (Vec<Outcome>, String) {
    let n = name(i);
    let api = Api::<Canary>::namespaced(client.clone(), NS);
    let deployments = Api::<Deployment>::namespaced(client.clone(), NS);
    let mut primary = format!("{PODINFO}:6.0.0");
    let mut out = Vec::new();
    for (round, promote) in plan.iter().copied().enumerate() {
        answer(&n, if promote { 200 } else { 500 });
        let before = wait_for(&format!("{n} readable"), deadline, || async {
            status(&api, &n).await.map(|s| s.1)
        })
        .await;
        let image = format!("{PODINFO}:6.{i}.{}", round + 1);
        let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [
            {"name": "podinfod", "image": image}]}}}});
        let start = Instant::now();
        wait_for(&format!("{n} round {round} written"), deadline, || async {
            deployments
                .patch(&n, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        let phase = wait_for(&format!("{n} round {round} ending"), deadline, || async {
            let (phase, spec) = status(&api, &n).await?;
            (spec != before && matches!(phase, CanaryPhase::Succeeded | CanaryPhase::Failed))
                .then_some(phase)
        })
        .await;
        if promote {
            primary = image;
        }
        out.push(Outcome {
            canary: n.clone(),
            round,
            promote,
            phase,
            took: start.elapsed(),
        });
    }
    answer(&n, 200);
    (out, primary)
}

/// The rollouts that ended otherwise than their webhook called for.
pub fn wrong_phases(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter(|o| o.phase != o.meant())
        .map(|o| {
            format!(
                "{} round {}: {:?}, meant {:?}",
                o.canary,
                o.round,
                o.phase,
                o.meant()
            )
        })
        .collect()
}

/// The step events canary `n` should have recorded for its `outcomes`, and how many of each.
pub fn step_events(n: &str, outcomes: &[Outcome]) -> [(String, i32); 4] {
    let of = |promote: bool| {
        outcomes
            .iter()
            .filter(|o| o.canary == n && o.promote == promote)
            .count() as i32
    };
    [
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
    ]
}

/// The median and the longest time a rollout took, in seconds.
pub fn median_and_max(outcomes: &[Outcome]) -> (f64, f64) {
    let mut took: Vec<Duration> = outcomes.iter().map(|o| o.took).collect();
    took.sort();
    (
        took.get(took.len() / 2).map_or(0.0, Duration::as_secs_f64),
        took.last().map_or(0.0, Duration::as_secs_f64),
    )
}

/// Calls `f` with every change localkube stores, in order, from a task of its own; the
/// changes a slow reader missed are counted in `lagged`.
pub fn on_changes(
    kube: &localkube::Handle,
    lagged: Arc<AtomicU64>,
    mut f: impl FnMut(&localkube::store::StoreEvent) + Send + 'static,
) {
    let mut feed = kube.subscribe();
    tokio::spawn(async move {
        loop {
            match feed.recv().await {
                Ok(ev) => f(&ev),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    lagged.fetch_add(n, Ordering::Relaxed);
                }
                Err(_) => return,
            }
        }
    });
}

/// Every state localkube stored of the Endpoints and EndpointSlices of the named Services: the
/// states without a ready address once the Service had one. Read from the store's change feed,
/// so no state is missed between two polls (a lagging reader is counted).
#[derive(Clone, Default)]
pub struct EndpointStates {
    pub samples: Arc<AtomicU64>,
    pub lagged: Arc<AtomicU64>,
    pub empty: Arc<Mutex<Vec<String>>>,
}

impl EndpointStates {
    pub fn start(kube: &localkube::Handle, services: Vec<String>) -> EndpointStates {
        let me = EndpointStates::default();
        let out = me.clone();
        let watched: HashSet<String> = services.into_iter().collect();
        let mut served: HashSet<String> = HashSet::new();
        // Slices by Service: whether each has a ready endpoint.
        let mut slices: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
        on_changes(kube, me.lagged.clone(), move |ev| {
            if ev.namespace != NS {
                return;
            }
            let deleted = matches!(ev.type_, localkube::store::EventType::Deleted);
            let (service, ready, what) = match ev.key.resource.as_str() {
                "endpoints" => {
                    let ready = !deleted
                        && ev.object["subsets"].as_array().is_some_and(|subsets| {
                            subsets
                                .iter()
                                .any(|s| s["addresses"].as_array().is_some_and(|a| !a.is_empty()))
                        });
                    (ev.name.clone(), ready, "Endpoints")
                }
                "endpointslices" => {
                    let Some(service) =
                        ev.object["metadata"]["labels"]["kubernetes.io/service-name"]
                            .as_str()
                            .map(str::to_string)
                    else {
                        return;
                    };
                    let ready = !deleted
                        && ev.object["endpoints"].as_array().is_some_and(|eps| {
                            eps.iter()
                                .any(|e| e["conditions"]["ready"].as_bool().unwrap_or(true))
                        });
                    let of = slices.entry(service.clone()).or_default();
                    of.insert(ev.name.clone(), ready);
                    (service, of.values().any(|r| *r), "EndpointSlices")
                }
                _ => return,
            };
            if !watched.contains(&service) {
                return;
            }
            out.samples.fetch_add(1, Ordering::Relaxed);
            if ready {
                served.insert(service);
            } else if served.contains(&service)
                && let Ok(mut e) = out.empty.lock()
            {
                e.push(format!(
                    "{what} of {service} without a ready address (resourceVersion {})",
                    ev.resource_version
                ));
            }
        });
        me
    }

    /// The states without a ready address so far.
    pub fn empty(&self) -> Vec<String> {
        self.empty.lock().map(|e| e.clone()).unwrap_or_default()
    }
}
