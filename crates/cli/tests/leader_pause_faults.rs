//! A paused leader under the fault mix (issue 12): two `flagger controller` processes elect a
//! leader on a 2 s Lease against an in-process localkube that answers 5% of the API requests
//! with 500, 5% of the writes with 409 and cuts every watch after 3 s, while canaries roll out
//! (blue/green iterations on `kubernetes`, progressive weights on `nginx`). At random moments
//! the leader is stopped (SIGSTOP) past its Lease until the standby has taken over and written,
//! then resumed (SIGCONT); a replica that ends (it steps down when it finds its Lease taken, or
//! when the faults keep it from renewing) is started again, as the kubelet would.
//!
//! Every state localkube stored of every Canary is checked (its change feed, so no state
//! between two watch events is missed): within one revision, the iterations and the canary
//! weight never go back while it progresses, and the phase never goes back (Progressing <
//! Promoting < Finalising < Succeeded/Failed). Each rollout must end as its rollout webhook
//! says, with the primary on the right image.
//!
//! Seeded (printed; `FLAGGER_CHAOS_SEED` replays the pause moments, the plans and localkube's
//! fault draws). `FLAGGER_PAUSE_ROUNDS` (default 3) sets the revisions per canary.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, Hooks, NS, Replica, Rng, name};
use flagger_api::{Canary, CanaryPhase};
use kube::Api;

const CANARIES: usize = 4;
/// The last of them route with NGINX Ingress weights.
const WEIGHTED: usize = 2;
const ROLLOUT_DEADLINE: Duration = Duration::from_secs(120);
const ELECTION: &[&str] = &[
    "--enable-leader-election",
    "--leader-election-namespace=test",
    "--leader-election-lease-duration=2s",
];

fn weighted(i: usize) -> bool {
    i >= CANARIES - WEIGHTED
}

fn fixtures(hooks: &Hooks, i: usize) -> String {
    let n = name(i);
    let hook = hooks.url(&n);
    let (provider, analysis, ingress) = if weighted(i) {
        (
            "nginx",
            "maxWeight: 40\n    stepWeight: 10",
            format!(
                r#"
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {n}, namespace: {NS}, annotations: {{kubernetes.io/ingress.class: nginx}}}}
spec:
  rules:
  - host: {n}.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {{service: {{name: {n}, port: {{number: 80}}}}}}
"#
            ),
        )
    } else {
        ("kubernetes", "iterations: 4", String::new())
    };
    let ingress_ref = if weighted(i) {
        format!("\n  ingressRef: {{apiVersion: networking.k8s.io/v1, kind: Ingress, name: {n}}}")
    } else {
        String::new()
    };
    format!(
        "{ingress}{}",
        common::podinfo(&n, &hook, &format!("{provider}{ingress_ref}"), analysis)
    )
}

/// One stored state of a Canary's status.
#[derive(Clone, Debug, PartialEq)]
struct State {
    phase: CanaryPhase,
    iterations: i32,
    weight: i32,
    revision: String,
    resource_version: u64,
}

fn rank(phase: CanaryPhase) -> u8 {
    match phase {
        CanaryPhase::Progressing => 1,
        CanaryPhase::Promoting => 2,
        CanaryPhase::Finalising => 3,
        CanaryPhase::Succeeded | CanaryPhase::Failed => 4,
        _ => 0,
    }
}

/// Every status each Canary was stored with, from localkube's change feed.
#[derive(Clone, Default)]
struct Statuses {
    by_canary: Arc<Mutex<BTreeMap<String, Vec<State>>>>,
    lagged: Arc<AtomicU64>,
}

impl Statuses {
    fn start(kube: &localkube::Handle) -> Statuses {
        let me = Statuses::default();
        let out = me.clone();
        common::on_changes(kube, me.lagged.clone(), move |ev| {
            if ev.key.resource != "canaries" {
                return;
            }
            let Ok(canary) = serde_json::from_value::<Canary>(serde_json::Value::clone(&ev.object))
            else {
                return;
            };
            let s = canary.status.unwrap_or_default();
            let state = State {
                phase: s.phase,
                iterations: s.iterations.unwrap_or(0),
                weight: s.canary_weight.unwrap_or(0),
                revision: s.last_applied_spec.unwrap_or_default(),
                resource_version: ev.resource_version,
            };
            if let Ok(mut all) = out.by_canary.lock() {
                let of = all.entry(ev.name.clone()).or_default();
                let same = of.last().is_some_and(|l| {
                    State {
                        resource_version: l.resource_version,
                        ..state.clone()
                    } == *l
                });
                if !same {
                    of.push(state);
                }
            }
        });
        me
    }

    fn count(&self) -> usize {
        self.by_canary
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// Consecutive states of one revision where a counter or the phase went back.
    fn regressions(&self) -> Vec<String> {
        let all = self.by_canary.lock().map(|m| m.clone()).unwrap_or_default();
        let mut out = Vec::new();
        for (n, states) in &all {
            for w in states.windows(2) {
                let (a, b) = (&w[0], &w[1]);
                if a.revision != b.revision || rank(a.phase) == 0 || rank(b.phase) == 0 {
                    continue;
                }
                let back = rank(b.phase) < rank(a.phase)
                    || (a.phase == CanaryPhase::Progressing
                        && b.phase == CanaryPhase::Progressing
                        && (b.iterations < a.iterations || b.weight < a.weight));
                if back {
                    out.push(format!(
                        "{n}: {:?} iterations {} weight {} -> {:?} iterations {} weight {} (resourceVersion {})",
                        a.phase, a.iterations, a.weight, b.phase, b.iterations, b.weight,
                        b.resource_version
                    ));
                }
            }
        }
        out
    }
}

/// What the pauser saw.
#[derive(Default)]
struct Pauses {
    pauses: u32,
    /// Seconds from the SIGSTOP until the standby held the Lease.
    takeovers: Vec<f64>,
    /// Replica ends (a resumed leader stepping down, or a replica that could not renew
    /// through the faults), each followed by a restart.
    step_downs: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_under_the_fault_mix_never_rolls_a_status_back() {
    let seed = common::seed();
    let rounds = common::env_count("FLAGGER_PAUSE_ROUNDS", 3);
    println!(
        "paused leader under faults: seed {seed} (FLAGGER_CHAOS_SEED={seed} replays it), {rounds} rounds"
    );
    localkube::faults::seed_chance(seed);
    let plans = Rng(seed).plans(CANARIES, rounds);

    let cluster = Cluster::start().await;
    let hooks = Hooks::start().await;
    let statuses = Statuses::start(&cluster.kube);
    let all: String = (0..CANARIES).map(|i| fixtures(&hooks, i)).collect();
    cluster.apply(&all);
    let dir = cluster.dir.path();
    let mut replicas = vec![
        Replica::start(&cluster.kubeconfig, dir, "alpha", ELECTION),
        Replica::start(&cluster.kubeconfig, dir, "beta", ELECTION),
    ];
    common::wait_initialized(&cluster.client, CANARIES, ROLLOUT_DEADLINE).await;
    let (faults, [errors, conflicts]) = common::fault_mix();
    cluster.kube.set_faults(faults);

    // The pauser: after a random delay, stop the leader until the standby leads and has
    // written a status, then resume it; restart any replica that ended.
    let done = Arc::new(AtomicBool::new(false));
    let pauser = {
        let done = done.clone();
        let cluster_client = cluster.client.clone();
        let statuses = statuses.clone();
        let mut rng = Rng(seed ^ 0x7061_7573);
        async move {
            let mut seen = Pauses::default();
            let holder = |client: kube::Client| async move {
                Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client, NS)
                    .get_opt(flagger_controller::leader::LEASE_NAME)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|l| l.spec)
                    .and_then(|s| s.holder_identity)
                    .unwrap_or_default()
            };
            while !done.load(Ordering::Relaxed) {
                let until =
                    Instant::now() + rng.between(Duration::from_secs(1), Duration::from_secs(4));
                while Instant::now() < until && !done.load(Ordering::Relaxed) {
                    for r in replicas.iter_mut() {
                        if r.exited().is_some() {
                            seen.step_downs += 1;
                            r.restart();
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if done.load(Ordering::Relaxed) {
                    break;
                }
                let lead = holder(cluster_client.clone()).await;
                let Some(leader) = replicas
                    .iter()
                    .position(|r| lead.starts_with(&format!("{}_", r.name)))
                else {
                    continue;
                };
                if replicas[leader].exited().is_some() {
                    continue;
                }
                replicas[leader].signal("STOP");
                seen.pauses += 1;
                let stopped = Instant::now();
                let standby = format!("{}_", replicas[1 - leader].name);
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut took_over = None;
                let mut written_at = None;
                while Instant::now() < deadline {
                    if replicas[1 - leader].exited().is_some() {
                        seen.step_downs += 1;
                        replicas[1 - leader].restart();
                    }
                    if took_over.is_none()
                        && holder(cluster_client.clone()).await.starts_with(&standby)
                    {
                        took_over = Some(stopped.elapsed());
                        written_at = Some(statuses.count());
                    }
                    // The standby has written at least one status since it took over (or
                    // there is nothing left to write).
                    if written_at
                        .is_some_and(|w| statuses.count() > w || done.load(Ordering::Relaxed))
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if let Some(t) = took_over {
                    seen.takeovers.push(t.as_secs_f64());
                }
                replicas[leader].signal("CONT");
            }
            (replicas, seen)
        }
    };
    let pauser = tokio::spawn(pauser);

    let started = Instant::now();
    let results = futures::future::join_all(plans.iter().enumerate().map(|(i, p)| {
        common::roll(&cluster.client, i, p, ROLLOUT_DEADLINE, |n, code| {
            hooks.set(n, code)
        })
    }))
    .await;
    let wall = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let (replicas, seen) = pauser.await.expect("pauser ends");
    cluster.kube.set_faults(localkube::Faults::default());

    let mut wrong = Vec::new();
    for (i, (outcomes, primary)) in results.iter().enumerate() {
        let n = name(i);
        wrong.extend(common::wrong_phases(outcomes));
        let image = common::kubectl(
            &cluster.kubeconfig,
            &[
                "-n",
                NS,
                "get",
                &format!("deployment/{n}-primary"),
                "-o",
                "jsonpath={.spec.template.spec.containers[0].image}",
            ],
            None,
        );
        if image != *primary {
            wrong.push(format!("{n}: primary runs {image}, meant {primary}"));
        }
    }
    let regressions = statuses.regressions();
    let refused: usize = replicas
        .iter()
        .map(|r| r.log().matches("not writing").count())
        .sum();
    let stale: usize = replicas
        .iter()
        .map(|r| r.log().matches("the object has been modified").count())
        .sum();
    let mut takeovers = seen.takeovers.clone();
    takeovers.sort_by(f64::total_cmp);
    let rollouts: usize = plans.iter().map(Vec::len).sum();
    let promoted: usize = plans.iter().flatten().filter(|p| **p).count();
    println!(
        "paused leader under faults: seed {seed}: {rollouts} rollouts ({promoted} promoted, {} rolled back; {} on NGINX weights) in {:.1}s; \
         {} pauses past the 2s Lease, standby leading after median {:.1}s (max {:.1}s); {} replica ends restarted; \
         faults injected: {} x 500, {} x 409, watches cut every 3s; \
         {} Canary states checked ({} lagged), {} regressions; writes refused by the fence {refused}, by a stale resourceVersion {stale}; \
         {} wrong end states",
        rollouts - promoted,
        WEIGHTED * rounds,
        wall.as_secs_f64(),
        seen.pauses,
        takeovers.get(takeovers.len() / 2).copied().unwrap_or(0.0),
        takeovers.last().copied().unwrap_or(0.0),
        seen.step_downs,
        errors.load(Ordering::Relaxed),
        conflicts.load(Ordering::Relaxed),
        statuses.count(),
        statuses.lagged.load(Ordering::Relaxed),
        regressions.len(),
        wrong.len(),
    );
    assert!(seen.pauses > 0, "the leader was paused");
    assert!(
        regressions.is_empty(),
        "seed {seed}: a status went back: {regressions:#?}"
    );
    assert!(
        wrong.is_empty(),
        "seed {seed}: wrong end states: {wrong:#?}"
    );
    drop(replicas);
}
