//! kill -9 of the controller at random moments (issue 12): the `flagger controller` binary runs
//! as a real process against an in-process localkube while canaries roll out new revisions in
//! parallel, round after round; the test kills it with SIGKILL after a random delay and starts
//! it again at once (as the kubelet restarts a container), over and over. Each rollout is meant
//! to be promoted or rolled back (its rollout webhook answers 200 or 500). The run counts:
//! - wrong end states: a phase other than the one the checks call for, a primary not running
//!   the image it should, a target not back at zero replicas;
//! - states of an apex Service's Endpoints or EndpointSlices without a ready address, once it
//!   had one (every state localkube stored, from its change feed);
//! - step events lost or duplicated: at most one per kill. Events are announced after the
//!   status write that makes the step true (so a failed step is never announced, and a retried
//!   one never twice); a kill between the two loses that one event, at most once per kill, as
//!   Flagger's asynchronous event recorder does when its process dies.
//!
//! Seeded: the seed is printed and `FLAGGER_CHAOS_SEED` replays the kill delays and the choice
//! of promotions and rollbacks (what each kill interrupts still depends on timing).
//! `FLAGGER_KILL_ROUNDS` (default 15) sets the revisions per canary: 4 canaries x 15 = 60
//! rollouts in CI; `scripts/chaos-soak.sh` runs more.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Cluster, EndpointStates, Hooks, NS, Replica, Rng, name};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::ListParams;

const CANARIES: usize = 4;
const ROLLOUT_DEADLINE: Duration = Duration::from_secs(120);
/// Kills come after a random delay in this range (the controller restarts in well under it).
const KILL_AFTER: (Duration, Duration) = (Duration::from_millis(300), Duration::from_millis(3000));

/// Blue/green on `kubernetes`, 3 iterations.
fn fixtures(hooks: &Hooks, i: usize) -> String {
    let n = name(i);
    common::podinfo(&n, &hooks.url(&n), "kubernetes", "iterations: 3")
}

/// How many times an event on `name` containing `text` was recorded (aggregated counts too).
fn count(events: &[Event], name: &str, text: &str) -> i32 {
    events
        .iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .filter(|e| e.message.as_deref().is_some_and(|m| m.contains(text)))
        .map(|e| e.count.unwrap_or(1))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_survive_kill_9_of_the_controller_at_random_moments() {
    let seed = common::seed();
    let rounds = common::env_count("FLAGGER_KILL_ROUNDS", 15);
    println!("kill -9: seed {seed} (FLAGGER_CHAOS_SEED={seed} replays it), {rounds} rounds");
    let plans = Rng(seed).plans(CANARIES, rounds);

    let cluster = Cluster::start().await;
    let hooks = Hooks::start().await;
    let endpoints = EndpointStates::start(&cluster.kube, (0..CANARIES).map(name).collect());
    let all: String = (0..CANARIES).map(|i| fixtures(&hooks, i)).collect();
    cluster.apply(&all);
    let mut controller = Replica::start(&cluster.kubeconfig, cluster.dir.path(), "flagger", &[]);
    common::wait_initialized(&cluster.client, CANARIES, ROLLOUT_DEADLINE).await;

    // The killer: SIGKILL after a random delay, restart at once, until the rollouts are done.
    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let mut kill_rng = Rng(seed ^ 0x6b69_6c6c);
    let killer = tokio::spawn(async move {
        let mut kills = 0u32;
        let mut exits = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let until = Instant::now() + kill_rng.between(KILL_AFTER.0, KILL_AFTER.1);
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if let Some(status) = controller.exited() {
                // It ended by itself: a crash the kill did not cause.
                exits.push(status.to_string());
            } else {
                controller.kill9();
                kills += 1;
            }
            controller.restart();
        }
        (controller, kills, exits)
    });

    let started = Instant::now();
    let results = futures::future::join_all(plans.iter().enumerate().map(|(i, p)| {
        common::roll(&cluster.client, i, p, ROLLOUT_DEADLINE, |n, code| {
            hooks.set(n, code)
        })
    }))
    .await;
    let wall = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let (controller, kills, exits) = killer.await.expect("killer ends");

    // End states, with the last controller process running: the target back at zero, the
    // primary on the right image and ready.
    let mut wrong = Vec::new();
    let deployments = Api::<Deployment>::namespaced(cluster.client.clone(), NS);
    let mut outcomes = Vec::new();
    for (i, (of, primary)) in results.into_iter().enumerate() {
        let n = name(i);
        let settled = common::wait_for(&format!("{n} settled"), ROLLOUT_DEADLINE, || async {
            let target = deployments.get(&n).await.ok()?;
            let main = deployments.get(&format!("{n}-primary")).await.ok()?;
            let replicas = target.spec.and_then(|s| s.replicas);
            let image = main
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone());
            let ready = main.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            Some((replicas, image, ready))
        })
        .await;
        if settled.0 != Some(0) {
            wrong.push(format!("{n}: target at {:?} replicas", settled.0));
        }
        if settled.1.as_deref() != Some(primary.as_str()) {
            wrong.push(format!(
                "{n}: primary runs {:?}, meant {primary}",
                settled.1
            ));
        }
        if settled.2 == 0 {
            wrong.push(format!("{n}: primary without ready replicas"));
        }
        outcomes.extend(of);
    }
    wrong.extend(common::wrong_phases(&outcomes));

    // Step events: lost or duplicated at most once per kill.
    let events = Api::<Event>::namespaced(cluster.client.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("events")
        .items;
    let mut missing = Vec::new();
    let mut lost = 0;
    let mut extra = 0;
    for i in 0..CANARIES {
        let n = name(i);
        for (text, want) in common::step_events(&n, &outcomes) {
            let got = count(&events, &n, &text);
            if got < want {
                missing.push(format!("{n}: {got} x {text:?}, meant {want}"));
                lost += want - got;
            }
            extra += (got - want).max(0);
        }
    }

    let (median, max) = common::median_and_max(&outcomes);
    let promoted = outcomes.iter().filter(|o| o.promote).count();
    let empty = endpoints.empty();
    println!(
        "kill -9: seed {seed}: {kills} kills (every {:.1}-{:.1}s), {} controller starts, {} exits not caused by a kill; \
         {} rollouts ({promoted} promoted, {} rolled back) in {:.1}s, rollout median {:.1}s, max {:.1}s; \
         {} wrong end states; {} endpoint states sampled ({} lagged), {} without a ready address; \
         step events: {lost} lost, {extra} re-announced (bound: {kills}) {missing:?}",
        KILL_AFTER.0.as_secs_f64(),
        KILL_AFTER.1.as_secs_f64(),
        controller.starts,
        exits.len(),
        outcomes.len(),
        outcomes.len() - promoted,
        wall.as_secs_f64(),
        median,
        max,
        wrong.len(),
        endpoints.samples.load(Ordering::Relaxed),
        endpoints.lagged.load(Ordering::Relaxed),
        empty.len(),
    );
    assert!(kills > 0, "the controller was killed");
    assert!(
        exits.is_empty(),
        "seed {seed}: the controller ended by itself: {exits:?}"
    );
    assert!(
        wrong.is_empty(),
        "seed {seed}: wrong end states: {wrong:#?}"
    );
    assert!(
        empty.is_empty(),
        "seed {seed}: apex Services without ready endpoints: {empty:#?}"
    );
    assert!(
        lost + extra <= kills as i32,
        "seed {seed}: {lost} step events lost and {extra} duplicated for {kills} kills: {missing:#?}"
    );
    drop(controller);
}
