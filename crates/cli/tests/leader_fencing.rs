//! The paused leader (issue 12): two `flagger controller` processes elect a leader on a 2s Lease
//! against an in-process localkube; the leader is stopped (SIGSTOP) past its Lease in the middle
//! of an analysis tick (its rollout webhook call is held open by the test, so the tick has read
//! the status and will write the next one when it resumes), the standby takes over and advances
//! the canary, then the old leader is resumed (SIGCONT) and its held call answered. A deposed
//! leader must not write: the status the canary goes through never goes back (iterations only
//! grow within a run). Without fencing the resumed tick writes its stale iteration (a forced
//! status write; the shutdown on losing the Lease lets a running reconcile finish).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, Replica, kubectl};
use flagger_api::{Canary, CanaryPhase};
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

const DEADLINE: Duration = Duration::from_secs(90);

/// Leader election on a 2s Lease.
const ELECTION: &[&str] = &[
    "--enable-leader-election",
    "--leader-election-namespace=test",
    "--leader-election-lease-duration=2s",
];

async fn wait_for<T, Fut: std::future::Future<Output = Option<T>>>(
    what: &str,
    f: impl FnMut() -> Fut,
) -> T {
    common::wait_for(what, DEADLINE, f).await
}

const MANIFESTS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: test, labels: {app: app}}
spec:
  replicas: 1
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      containers:
      - name: app
        image: ghcr.io/stefanprodan/podinfo:6.0.0
        ports: [{name: http, containerPort: 9898}]
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: app, namespace: test}
spec:
  provider: kubernetes
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: app}
  progressDeadlineSeconds: 60
  service: {port: 80, targetPort: http}
  analysis:
    interval: 1s
    threshold: 2
    iterations: 60
    webhooks:
    - {name: check, type: rollout, url: "HOOK_URL", timeout: 60s}
"#;

/// The rollout webhook: answers at once, except the one call it is armed to hold, which it
/// answers only when released.
#[derive(Default)]
struct Hook {
    armed: std::sync::atomic::AtomicBool,
    held: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

async fn hook_server(hook: Arc<Hook>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("hook listener");
    let addr = listener.local_addr().expect("hook address");
    let app = axum::Router::new().fallback(move || {
        let hook = hook.clone();
        async move {
            if hook.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                hook.held.notify_one();
                hook.release.notified().await;
            }
            axum::http::StatusCode::OK
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/check")
}

/// (phase, iterations, revision) of every status the Canary went through, in order.
type History = Arc<Mutex<Vec<(CanaryPhase, i32, String)>>>;

fn record(client: Client) -> History {
    let history: History = Arc::default();
    let log = history.clone();
    tokio::spawn(async move {
        let api = Api::<Canary>::namespaced(client, "test");
        let stream = watcher(api, watcher::Config::default()).applied_objects();
        futures::pin_mut!(stream);
        while let Some(Ok(c)) = stream.next().await {
            let s = c.status.unwrap_or_default();
            let entry = (
                s.phase,
                s.iterations.unwrap_or(0),
                s.last_applied_spec.unwrap_or_default(),
            );
            let mut h = log.lock().expect("history");
            if h.last() != Some(&entry) {
                h.push(entry);
            }
        }
    });
    history
}

fn iterations(history: &History) -> (CanaryPhase, i32) {
    history
        .lock()
        .expect("history")
        .last()
        .map(|(p, i, _)| (*p, *i))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_never_rolls_the_status_back() {
    let cluster = Cluster::start().await;
    let (kc, dir, client) = (&cluster.kubeconfig, &cluster.dir, cluster.client.clone());
    let hook = Arc::new(Hook::default());
    let url = hook_server(hook.clone()).await;
    cluster.apply(&MANIFESTS.replace("HOOK_URL", &url));
    let history = record(client.clone());

    let alpha = Replica::start(kc, dir.path(), "alpha", ELECTION);
    let beta = Replica::start(kc, dir.path(), "beta", ELECTION);
    let first = wait_for("a leader", || async {
        let h = cluster.lease_holder().await;
        (!h.is_empty()).then_some(h)
    })
    .await;
    let (leader, standby) = if first.starts_with("alpha_") {
        (&alpha, &beta)
    } else {
        (&beta, &alpha)
    };
    wait_for("the canary initialized", || async {
        (iterations(&history).0 == CanaryPhase::Initialized).then_some(())
    })
    .await;

    kubectl(
        kc,
        &[
            "-n",
            "test",
            "set",
            "image",
            "deployment/app",
            "app=ghcr.io/stefanprodan/podinfo:6.0.1",
        ],
        None,
    );
    wait_for("iteration 3", || async {
        let (phase, n) = iterations(&history);
        (phase == CanaryPhase::Progressing && n >= 3).then_some(())
    })
    .await;

    // The leader stalls past its Lease in the middle of a tick (its rollout check held open);
    // the standby takes over and runs further.
    hook.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::timeout(DEADLINE, hook.held.notified())
        .await
        .expect("the leader's rollout check arrives");
    leader.signal("STOP");
    let (_, at_stop) = iterations(&history);
    let stopped = Instant::now();
    let prefix = format!("{}_", standby.name);
    wait_for("the standby leading", || async {
        cluster
            .lease_holder()
            .await
            .starts_with(&prefix)
            .then_some(())
    })
    .await;
    let took_over = stopped.elapsed();
    wait_for("the standby advancing the canary", || async {
        (iterations(&history).1 >= at_stop + 3).then_some(())
    })
    .await;

    // The old leader resumes with its stale tick (the check now answered), and gets further
    // ticks' time to write.
    hook.release.notify_one();
    leader.signal("CONT");
    let (_, at_resume) = iterations(&history);
    wait_for("the canary advancing after the resume", || async {
        (iterations(&history).1 >= at_resume + 4).then_some(())
    })
    .await;

    let history = history.lock().expect("history").clone();
    let run: Vec<i32> = history
        .iter()
        .filter(|(p, _, _)| *p == CanaryPhase::Progressing)
        .map(|(_, i, _)| *i)
        .collect();
    let regressions: Vec<(i32, i32)> = run
        .windows(2)
        .filter(|w| w[1] < w[0])
        .map(|w| (w[0], w[1]))
        .collect();
    eprintln!(
        "paused leader: stopped at iteration {at_stop}, standby leading after {:.1}s, resumed at iteration {at_resume}; \
         {} statuses while Progressing, {} regressions {regressions:?}; iterations seen {run:?}",
        took_over.as_secs_f64(),
        run.len(),
        regressions.len()
    );
    let leader_log = leader.log();
    let refused = leader_log
        .lines()
        .filter(|l| l.contains("reconcile failed"))
        .count();
    eprintln!(
        "the resumed leader: {refused} reconciles refused (fence: {}, stale resourceVersion: {}), stepped down: {}",
        leader_log.matches("not writing").count(),
        leader_log.matches("the object has been modified").count(),
        leader_log.contains("leadership lost")
    );
    assert!(
        regressions.is_empty(),
        "the status went back: {regressions:?} in {run:?}\nresumed leader's log tail:\n{}",
        leader_log
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
