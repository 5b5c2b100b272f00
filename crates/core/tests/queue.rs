//! The cap on concurrent rollouts, driven tick by tick through the decision core for a fleet
//! of canaries that all see a new revision at once (a shared ConfigMap changed).

mod support;

use flagger_api::CanaryPhase::{self, *};
use flagger_core::queue::{Caps, State, member_of};
use support::{World, canary};

fn manifest(ns: &str, name: &str) -> String {
    format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: {name}, namespace: {ns}}}
spec:
  provider: istio
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}
  service: {{port: 80}}
  analysis: {{interval: 1m, threshold: 2, stepWeight: 50, maxWeight: 50}}
"#
    )
}

/// `n` initialized canaries (in `namespaces` round robin) under `caps`.
fn fleet(n: usize, namespaces: &[&str], caps: Caps) -> Vec<World> {
    (0..n)
        .map(|i| {
            let ns = namespaces[i % namespaces.len()];
            let mut w = World::new(canary(&manifest(ns, &format!("app-{i}"))));
            w.caps = caps;
            w.initialize();
            w
        })
        .collect()
}

fn members(worlds: &[World]) -> Vec<flagger_core::queue::Member> {
    worlds
        .iter()
        .map(|w| member_of(&w.canary.namespace, &w.canary.name, &w.status))
        .collect()
}

/// Ticks every canary in turn (each sees the fleet as the others left it) until all succeed;
/// returns the most runs seen under way at once, overall and per namespace, and the order in
/// which the runs started.
fn roll(worlds: &mut [World], rounds: usize) -> (usize, usize, Vec<String>) {
    let mut most = 0;
    let mut most_in_ns = 0;
    let mut started = Vec::new();
    for _ in 0..rounds {
        for i in 0..worlds.len() {
            worlds[i].fleet = members(worlds);
            let before = worlds[i].status.phase;
            worlds[i].tick();
            let after = worlds[i].status.phase;
            if !flagger_core::queue::running(before) && after == Progressing {
                started.push(worlds[i].canary.name.clone());
            }
            let all = members(worlds);
            let running: Vec<_> = all.iter().filter(|m| m.state == State::Running).collect();
            most = most.max(running.len());
            for ns in running.iter().map(|m| &m.namespace) {
                most_in_ns = most_in_ns.max(running.iter().filter(|m| &m.namespace == ns).count());
            }
        }
        if worlds.iter().all(|w| w.status.phase == Succeeded) {
            return (most, most_in_ns, started);
        }
    }
    let phases: Vec<CanaryPhase> = worlds.iter().map(|w| w.status.phase).collect();
    panic!("not all canaries finished in {rounds} rounds: {phases:?}");
}

#[test]
fn a_shared_change_rolls_out_three_at_a_time_first_come_first_served() {
    let caps = Caps {
        cluster: Some(3),
        namespace: None,
        shard: None,
    };
    let mut worlds = fleet(20, &["ns"], caps);
    for w in &mut worlds {
        w.set_revision("v2");
    }
    let (most, _, started) = roll(&mut worlds, 200);
    assert_eq!(most, 3, "never more than the cap, and the cap is used");
    assert_eq!(started.len(), 20, "every canary ran once: {started:?}");
    // The first three go at once; the rest in the order they were put in line (their detection
    // time, the same tick here, then by name).
    assert_eq!(started[..3], ["app-0", "app-1", "app-2"]);
    let queued_at: Vec<_> = worlds
        .iter()
        .map(|w| {
            w.events
                .iter()
                .any(|e| e.message.contains("waiting for a rollout slot"))
        })
        .collect();
    assert_eq!(queued_at.iter().filter(|q| **q).count(), 17);
}

#[test]
fn a_queued_canary_says_its_place_in_line_and_leaves_the_line_when_it_starts() {
    let caps = Caps {
        cluster: Some(1),
        namespace: None,
        shard: None,
    };
    let mut worlds = fleet(3, &["ns"], caps);
    for w in &mut worlds {
        w.set_revision("v2");
    }
    for i in 0..3 {
        worlds[i].fleet = members(&worlds);
        worlds[i].tick();
    }
    assert_eq!(worlds[0].status.phase, Progressing);
    // Each in line learns its place at its tick: app-1 stood alone in line at its first one.
    for i in 1..3 {
        worlds[i].fleet = members(&worlds);
        worlds[i].tick();
    }
    for (i, place) in [(1, "1 of 2"), (2, "2 of 2")] {
        assert_eq!(worlds[i].status.phase, Waiting);
        let queued = worlds[i].condition("Queued").expect("Queued condition");
        assert_eq!(queued.status, "True");
        assert_eq!(
            queued.message.as_deref(),
            Some(
                format!(
                    "waiting for a rollout slot: {place} in line; slots in use: 1 of 1 cluster-wide"
                )
                .as_str()
            )
        );
        assert_eq!(
            worlds[i].sentence(),
            queued.message,
            "the explanation says the same"
        );
    }
    let (_, _, started) = roll(&mut worlds, 50);
    assert_eq!(started, ["app-1", "app-2"]);
    assert!(worlds.iter().all(|w| w.condition("Queued").is_none()));
    assert!(worlds.iter().all(|w| w.condition("Promoted").is_some()));
}

#[test]
fn a_run_under_way_is_never_held_back_by_the_cap() {
    // Two runs under way, then the cap drops to one (the controller restarted with a smaller
    // cap): both still promote; the one in line waits for both.
    let mut worlds = fleet(3, &["ns"], Caps::default());
    worlds[0].set_revision("v2");
    worlds[1].set_revision("v2");
    worlds[0].tick();
    worlds[1].tick();
    assert_eq!(
        (worlds[0].status.phase, worlds[1].status.phase),
        (Progressing, Progressing)
    );
    let cap = Caps {
        cluster: Some(1),
        namespace: None,
        shard: None,
    };
    for w in &mut worlds {
        w.caps = cap;
    }
    worlds[2].set_revision("v2");
    let (most, _, started) = roll(&mut worlds, 50);
    assert_eq!(most, 2);
    assert_eq!(started, ["app-2"]);
}

#[test]
fn the_per_namespace_cap_holds_each_namespace_to_its_share() {
    let caps = Caps {
        cluster: Some(4),
        namespace: Some(1),
        shard: None,
    };
    let mut worlds = fleet(9, &["a", "b", "c"], caps);
    for w in &mut worlds {
        w.set_revision("v2");
    }
    let (most, most_in_ns, started) = roll(&mut worlds, 200);
    assert_eq!((most, most_in_ns), (3, 1));
    assert_eq!(started.len(), 9);
}
