//! Sharding across replicas (issue 21): three `flagger controller` processes run with
//! `-shards=3` on 3s Leases against an in-process localkube and share thirty canaries. Before
//! the change, each replica holds one shard, and each canary is acted on by exactly one replica
//! (the replicas' `flagger_canary_status` series: a replica sets it for the canaries it acts
//! on). One shared change starts thirty runs of eight iterations; mid-run the replica holding
//! shard 0 is killed (SIGKILL: its Leases are not given back). Its shard is taken over by
//! another replica once its Lease expires (a lease after the kill, plus a round of the
//! survivors: a twelfth of the lease), its canaries resume at their iteration within that plus
//! one interval, and all thirty are promoted, each acted on by one live replica. No step is done
//! twice: a canary's iteration never goes back within its run, and no step event (each
//! iteration's `Advance`, the start and the promotion) is recorded twice.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, NS, Replica};
use flagger_api::{Canary, CanaryPhase};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

const CANARIES: usize = 30;
const SHARDS: u32 = 3;
const LEASE: Duration = Duration::from_secs(3);
const INTERVAL: Duration = Duration::from_secs(1);
const ITERATIONS: u32 = 8;
const DEADLINE: Duration = Duration::from_secs(90);

const FLAGS: &[&str] = &[
    "--shards=3",
    "--leader-election-namespace=test",
    "--leader-election-lease-duration=3s",
];

fn name(i: usize) -> String {
    format!("app-{i}")
}

fn fixtures() -> String {
    (0..CANARIES)
        .map(|i| {
            let n = name(i);
            format!(
                r#"---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {n}, namespace: {NS}, labels: {{app: {n}, role: target}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {n}}}}}
  template:
    metadata: {{labels: {{app: {n}}}}}
    spec:
      containers:
      - name: app
        image: example.com/app:1
        ports: [{{containerPort: 8080}}]
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: {n}, namespace: {NS}}}
spec:
  provider: kubernetes
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: {n}}}
  progressDeadlineSeconds: 120
  service: {{port: 80, targetPort: 8080}}
  analysis: {{interval: 1s, threshold: 2, iterations: {ITERATIONS}}}
"#
            )
        })
        .collect()
}

/// The holder of each shard Lease ("" when free or missing).
async fn holders(client: &kube::Client) -> Vec<String> {
    let api = Api::<Lease>::namespaced(client.clone(), NS);
    let mut out = Vec::new();
    for i in 0..SHARDS {
        let h = api
            .get_opt(&flagger_core::shard::shard_lease(i))
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .unwrap_or_default();
        out.push(h);
    }
    out
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The replica (by name) an identity `<name>_<uuid>` belongs to.
fn replica_of(identity: &str) -> &str {
    identity.split('_').next().unwrap_or_default()
}

/// The canaries a replica acted on: its `flagger_canary_status` series.
async fn acted_on(replica: &Replica) -> BTreeSet<String> {
    let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", replica.port))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with("flagger_canary_status{"))
        .filter_map(|l| {
            let rest = l.split("name=\"").nth(1)?;
            Some(rest.split('"').next()?.to_string())
        })
        .collect()
}

/// Every status the canaries went through, as (when, name, phase, iterations).
type Seen = Arc<Mutex<Vec<(Instant, String, CanaryPhase, i32)>>>;

fn watch(client: kube::Client) -> Seen {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        let api = Api::<Canary>::namespaced(client, NS);
        let stream = watcher(api, watcher::Config::default()).applied_objects();
        futures::pin_mut!(stream);
        while let Some(Ok(c)) = stream.next().await {
            let s = c.status.clone().unwrap_or_default();
            if let Ok(mut l) = log.lock() {
                l.push((
                    Instant::now(),
                    c.name_any(),
                    s.phase,
                    s.iterations.unwrap_or(0),
                ));
            }
        }
    });
    seen
}

async fn phases(client: &kube::Client) -> BTreeMap<String, CanaryPhase> {
    Api::<Canary>::namespaced(client.clone(), NS)
        .list(&Default::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .map(|c| {
                    let p = c.status.map(|s| s.phase).unwrap_or_default();
                    (c.metadata.name.unwrap_or_default(), p)
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_all(client: &kube::Client, phase: CanaryPhase) {
    common::wait_for(
        &format!("{CANARIES} canaries {phase:?}"),
        DEADLINE,
        || async {
            let p = phases(client).await;
            (p.len() == CANARIES && p.values().all(|x| *x == phase)).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_thirty_canaries_and_take_over_a_killed_one() {
    let wall = Instant::now();
    let cluster = Cluster::start().await;
    let mut replicas: Vec<Replica> = (0..3)
        .map(|k| {
            Replica::start(
                &cluster.kubeconfig,
                cluster.dir.path(),
                &format!("r{k}"),
                FLAGS,
            )
        })
        .collect();
    // The shards spread: one per replica.
    let spread = common::wait_for("one shard per replica", DEADLINE, || async {
        let h = holders(&cluster.client).await;
        let distinct: BTreeSet<&str> = h.iter().map(|i| replica_of(i)).collect();
        (h.iter().all(|i| !i.is_empty()) && distinct.len() == 3).then_some(h)
    })
    .await;
    println!("shards spread after {:?}: {spread:?}", wall.elapsed());

    cluster.apply(&fixtures());
    wait_all(&cluster.client, CanaryPhase::Initialized).await;
    // Every canary was acted on by exactly one replica: the owner of its shard.
    let mut actors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &replicas {
        for c in acted_on(r).await {
            actors.entry(c).or_default().push(r.name.clone());
        }
    }
    assert_eq!(actors.len(), CANARIES, "{actors:?}");
    for (canary, by) in &actors {
        let shard = flagger_core::shard::shard_of(NS, canary, SHARDS);
        assert_eq!(
            by,
            &vec![replica_of(&spread[shard as usize]).to_string()],
            "{canary} (shard {shard}) was acted on by {by:?}"
        );
    }

    // One change starts thirty runs (the targets only: not their `-primary` copies).
    let seen = watch(cluster.client.clone());
    common::kubectl(
        &cluster.kubeconfig,
        &[
            "-n",
            NS,
            "set",
            "image",
            "deployment",
            "-l",
            "role=target",
            "app=example.com/app:2",
        ],
        None,
    );
    // Mid-run (half the canaries of shard 0 under way, one at iteration 2), the owner of shard 0
    // is killed.
    let victim_name = replica_of(&spread[0]).to_string();
    let doomed: Vec<String> = (0..CANARIES)
        .map(name)
        .filter(|n| flagger_core::shard::shard_of(NS, n, SHARDS) == 0)
        .collect();
    assert!(!doomed.is_empty());
    let until = Instant::now() + DEADLINE;
    loop {
        let list = Api::<Canary>::namespaced(cluster.client.clone(), NS)
            .list(&Default::default())
            .await
            .expect("list canaries");
        let states: Vec<(String, CanaryPhase, i32)> = list
            .items
            .iter()
            .filter(|c| doomed.contains(&c.name_any()))
            .map(|c| {
                let s = c.status.clone().unwrap_or_default();
                (c.name_any(), s.phase, s.iterations.unwrap_or(0))
            })
            .collect();
        let under_way = states
            .iter()
            .filter(|(_, p, _)| *p == CanaryPhase::Progressing)
            .count();
        if under_way * 2 >= doomed.len() && states.iter().any(|(_, _, i)| *i >= 2) {
            break;
        }
        if Instant::now() > until {
            for r in &replicas {
                eprintln!("=== {} log tail:\n{}", r.name, tail(&r.log(), 40));
            }
            panic!("shard 0's canaries never all under way: {states:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let victim = replicas
        .iter_mut()
        .find(|r| r.name == victim_name)
        .expect("the owner of shard 0 runs");
    victim.kill9();
    let killed = Instant::now();
    println!("killed {victim_name} (shard 0, {} canaries)", doomed.len());

    let taker = common::wait_for("shard 0 taken over", DEADLINE, || async {
        let h = holders(&cluster.client).await;
        let r = replica_of(&h[0]).to_string();
        (!r.is_empty() && r != victim_name).then_some(r)
    })
    .await;
    let takeover = killed.elapsed();
    println!("shard 0 taken over by {taker} {takeover:?} after the kill");
    wait_all(&cluster.client, CanaryPhase::Succeeded).await;
    let finished = killed.elapsed();

    // Each of the killed replica's canaries under way at the kill moved on (next iteration or
    // phase) on the new owner within the lease duration plus one interval of the kill.
    let log = seen.lock().expect("watch log").clone();
    let mut slowest = Duration::ZERO;
    let mut resumed_runs = 0;
    for n in &doomed {
        let at_kill = log
            .iter()
            .rfind(|(t, c, ..)| c == n && *t <= killed)
            .map(|(_, _, p, i)| (*p, *i))
            .expect("a status before the kill");
        if at_kill.0 != CanaryPhase::Progressing {
            continue;
        }
        resumed_runs += 1;
        let resumed = log
            .iter()
            .find(|(t, c, p, i)| c == n && *t > killed && (*p, *i) != at_kill)
            .map(|(t, ..)| t.duration_since(killed))
            .expect("the canary moved on after the kill");
        println!("  {n}: {at_kill:?} at the kill, moved on after {resumed:?}");
        slowest = slowest.max(resumed);
    }
    println!(
        "{resumed_runs} runs of the killed replica under way at the kill resumed within {slowest:?} (lease {LEASE:?} + interval {INTERVAL:?}); all {CANARIES} promoted {finished:?} after the kill"
    );
    // The bound: the dead replica's Leases expire at most a lease after the kill, a survivor's
    // next round (every twelfth of the lease) takes the shard, and a canary's next step is due
    // at most one interval later.
    let round = LEASE / 12;
    assert!(
        slowest <= LEASE + round + INTERVAL,
        "resumed {slowest:?} after the kill, past the lease duration plus a round plus one \
         interval"
    );
    // After the takeover, each canary is acted on by exactly one live replica: the killed
    // replica's by the one that took shard 0, the others by their owner as before.
    let mut after: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in replicas.iter().filter(|r| r.name != victim_name) {
        for c in acted_on(r).await {
            after.entry(c).or_default().push(r.name.clone());
        }
    }
    for (canary, by) in &after {
        let owner = if doomed.contains(canary) {
            taker.clone()
        } else {
            actors[canary][0].clone()
        };
        assert_eq!(by, &vec![owner], "{canary} after the takeover");
    }
    assert_eq!(after.len(), CANARIES, "{after:?}");

    // No step twice: iterations never go back within a run, and no step event repeats.
    for i in 0..CANARIES {
        let n = name(i);
        let mut last = 0;
        for (_, c, p, it) in log.iter().filter(|(_, c, ..)| *c == n) {
            if *p == CanaryPhase::Progressing {
                assert!(*it >= last, "{c}: iteration {it} after {last}");
                last = *it;
            }
        }
    }
    let events = Api::<Event>::namespaced(cluster.client.clone(), NS)
        .list(&Default::default())
        .await
        .expect("events")
        .items;
    let mut counts: BTreeMap<String, i32> = BTreeMap::new();
    for e in &events {
        let m = e.message.clone().unwrap_or_default();
        if m.starts_with("Advance ")
            || m.starts_with("Starting canary analysis")
            || m.starts_with("Promotion completed")
        {
            *counts.entry(m).or_default() += e.count.unwrap_or(1);
        }
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "steps recorded twice: {twice:?}");
    let advances = counts.keys().filter(|m| m.starts_with("Advance ")).count();
    // At most one step event may be lost per kill (a kill between a status write and its
    // event); each canary announces ITERATIONS advances.
    let expected = CANARIES * ITERATIONS as usize;
    assert!(
        advances + doomed.len() >= expected,
        "{advances} of {expected} advance events"
    );
    println!(
        "{advances} of {expected} advance events, none twice; wall time {:?}",
        wall.elapsed()
    );
    for r in replicas.iter_mut() {
        if r.exited().is_none() {
            r.signal("TERM");
            let _ = r.wait_exit(Duration::from_secs(10)).await;
        }
    }
}
