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

use common::{Cluster, EndpointStates, Hooks, NS, Replica, Rng};
use flagger_api::{Canary, CanaryPhase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};

const PODINFO: &str = "ghcr.io/stefanprodan/podinfo";
const CANARIES: usize = 4;
const ROLLOUT_DEADLINE: Duration = Duration::from_secs(120);
/// Kills come after a random delay in this range (the controller restarts in well under it).
const KILL_AFTER: (Duration, Duration) = (Duration::from_millis(300), Duration::from_millis(3000));

fn name(i: usize) -> String {
    format!("app-{i}")
}

fn fixtures(hooks: &Hooks, i: usize) -> String {
    let n = name(i);
    let hook = hooks.url(&n);
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
  provider: kubernetes
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: {n}}}
  progressDeadlineSeconds: 120
  service: {{port: 80, targetPort: http}}
  analysis:
    interval: 1s
    threshold: 2
    iterations: 3
    webhooks:
    - {{name: check, type: rollout, url: "{hook}", timeout: 5s}}
"#
    )
}

/// (phase, lastAppliedSpec) of a canary; None while it cannot be read.
async fn status(api: &Api<Canary>, n: &str) -> Option<(CanaryPhase, Option<String>)> {
    let s = api.get(n).await.ok()?.status.unwrap_or_default();
    Some((s.phase, s.last_applied_spec))
}

struct Outcome {
    canary: String,
    round: usize,
    promote: bool,
    phase: CanaryPhase,
    took: Duration,
}

/// Rolls canary `i` through `plan` (promote or roll back each revision); returns the outcomes
/// and the image its primary should run at the end.
async fn roll(
    cluster: &Cluster,
    hooks: &Hooks,
    i: usize,
    plan: Vec<bool>,
) -> (Vec<Outcome>, String) {
    let n = name(i);
    let api = Api::<Canary>::namespaced(cluster.client.clone(), NS);
    let deployments = Api::<Deployment>::namespaced(cluster.client.clone(), NS);
    let mut primary = format!("{PODINFO}:6.0.0");
    let mut out = Vec::new();
    for (round, promote) in plan.into_iter().enumerate() {
        hooks.set(&n, if promote { 200 } else { 500 });
        let before = common::wait_for(&format!("{n} readable"), ROLLOUT_DEADLINE, || async {
            status(&api, &n).await.map(|s| s.1)
        })
        .await;
        let image = format!("{PODINFO}:6.{i}.{}", round + 1);
        let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [
            {"name": "podinfod", "image": image}]}}}});
        deployments
            .patch(&n, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
            .expect("new revision written");
        let start = Instant::now();
        let phase = common::wait_for(
            &format!("{n} round {round} ending"),
            ROLLOUT_DEADLINE,
            || async {
                let (phase, spec) = status(&api, &n).await?;
                (spec != before && matches!(phase, CanaryPhase::Succeeded | CanaryPhase::Failed))
                    .then_some(phase)
            },
        )
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
    (out, primary)
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
    let mut rng = Rng(seed);
    let plans: Vec<Vec<bool>> = (0..CANARIES)
        .map(|_| {
            let mut p: Vec<bool> = (0..rounds).map(|_| !rng.next().is_multiple_of(3)).collect();
            if rounds >= 2 && p.iter().all(|x| *x) {
                p[(rng.next() % rounds as u64) as usize] = false;
            }
            p
        })
        .collect();

    let cluster = Cluster::start().await;
    let hooks = Hooks::start().await;
    let endpoints = EndpointStates::start(&cluster.kube, (0..CANARIES).map(name).collect());
    let all: String = (0..CANARIES).map(|i| fixtures(&hooks, i)).collect();
    cluster.apply(&all);
    let mut controller = Replica::start(&cluster.kubeconfig, cluster.dir.path(), "flagger", &[]);
    let canaries = Api::<Canary>::namespaced(cluster.client.clone(), NS);
    for i in 0..CANARIES {
        common::wait_for(
            &format!("{} initialized", name(i)),
            ROLLOUT_DEADLINE,
            || async {
                (status(&canaries, &name(i)).await?.0 == CanaryPhase::Initialized).then_some(())
            },
        )
        .await;
    }

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
    let results = futures::future::join_all(
        plans
            .into_iter()
            .enumerate()
            .map(|(i, p)| roll(&cluster, &hooks, i, p)),
    )
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
    for o in &outcomes {
        let want = if o.promote {
            CanaryPhase::Succeeded
        } else {
            CanaryPhase::Failed
        };
        if o.phase != want {
            wrong.push(format!(
                "{} round {}: {:?}, meant {want:?}",
                o.canary, o.round, o.phase
            ));
        }
    }

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
        let of = |promote: bool| {
            outcomes
                .iter()
                .filter(|o| o.canary == n && o.promote == promote)
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
            let got = count(&events, &n, &text);
            if got < want {
                missing.push(format!("{n}: {got} x {text:?}, meant {want}"));
                lost += want - got;
            }
            extra += (got - want).max(0);
        }
    }

    let mut took: Vec<Duration> = outcomes.iter().map(|o| o.took).collect();
    took.sort();
    let promoted = outcomes.iter().filter(|o| o.promote).count();
    let empty = endpoints.empty.lock().expect("samples").clone();
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
        took[took.len() / 2].as_secs_f64(),
        took.last().map(|d| d.as_secs_f64()).unwrap_or(0.0),
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
