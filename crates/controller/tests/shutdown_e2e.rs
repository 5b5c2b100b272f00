//! A stopped controller ends within a bound at every stage (issue 12): while the API server has
//! not answered its first Canary list, and while its Canary cache has not synced because the
//! list is slow or refused. kube-runtime holds reconciles back until that cache syncs, and its
//! graceful shutdown waits for them: before the fix, a controller told to stop then never did
//! (a rolling update of the Deployment waited for the kubelet's SIGKILL, with the Lease held).
//!
//! The controller runs in-process under its RBAC; localkube withholds the Canary list with a
//! fault rule (a 10-minute latency, or a 500 on every attempt). For the cache stage the list
//! must pass once (the controller's start-up check) and then be withheld: the test holds the
//! Lease under another identity while the controller starts, turns the fault on, and gives the
//! Lease up; the controller takes it and starts its watches into the fault.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use support::{Env, NS, Options};

/// How long a stopped controller may take to end when no reconcile is running.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// A rule on every Canary list: 10 minutes of latency, or a 500.
fn withheld(slow: bool) -> localkube::Faults {
    localkube::Faults {
        rules: vec![localkube::FaultRule {
            verb: Some("list".into()),
            resource: Some("canaries".into()),
            latency: if slow {
                Duration::from_secs(600)
            } else {
                Duration::ZERO
            },
            error_rate: if slow { 0.0 } else { 1.0 },
            code: 500,
            ..Default::default()
        }],
        watch_cut: None,
    }
}

fn args(election: bool) -> flagger_controller::Args {
    let mut argv = vec![
        "controller",
        "--mesh-provider=kubernetes",
        "--min-analysis-interval=1s",
        "--metrics-server=http://127.0.0.1:9",
        "--port=0",
    ];
    if election {
        argv.extend([
            "--enable-leader-election",
            "--leader-election-namespace=test",
            "--leader-election-lease-duration=2s",
        ]);
    }
    flagger_controller::Args::try_parse_from(argv).expect("controller flags parse")
}

struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn start(env: &Env, election: bool) -> Running {
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let client = env.controller_client.clone();
    let args = args(election);
    let task = tokio::spawn(async move {
        flagger_controller::run::serve(client, args, async move {
            let _ = rx.await;
        })
        .await
    });
    Running { stop, task }
}

/// Sends the stop and returns how long the controller took to end; fails past [`STOP_DEADLINE`].
async fn stop(r: Running, stage: &str) -> Duration {
    let asked = Instant::now();
    let _ = r.stop.send(());
    let mut task = r.task;
    match tokio::time::timeout(STOP_DEADLINE, &mut task).await {
        Ok(ended) => {
            ended
                .expect("controller task")
                .expect("controller ended cleanly");
            asked.elapsed()
        }
        Err(_) => {
            task.abort();
            panic!("{stage}: the controller did not end within {STOP_DEADLINE:?} of the stop");
        }
    }
}

/// How many requests `verb` on `resource` the controller has sent so far.
fn asked(env: &Env, verb: &str, resource: &str) -> u64 {
    env.controller_audit()
        .iter()
        .filter(|a| a.verb == verb && a.resource == resource)
        .map(|a| a.count)
        .sum()
}

async fn holder(env: &Env) -> Option<String> {
    Api::<Lease>::namespaced(env.client.clone(), NS)
        .get_opt(flagger_controller::leader::LEASE_NAME)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_stopped_before_its_canary_cache_synced_ends_in_time() {
    let mut env = Env::start(Options::default()).await;
    env.stop_controller().await;
    let leases = Api::<Lease>::namespaced(env.client.clone(), NS);
    let mut figures = Vec::new();

    // 1. The first Canary list (the start-up check) is slow.
    env.kube.set_faults(withheld(true));
    let lists = asked(&env, "list", "canaries");
    let r = start(&env, false);
    // The stop comes once the list is in flight (localkube authorizes, and so records, a
    // request before it delays it).
    let last = std::sync::Mutex::new(String::new());
    support::wait_for("the controller listing Canaries", &last, || async {
        (asked(&env, "list", "canaries") > lists).then_some(())
    })
    .await;
    let took = stop(r, "first list slow").await;
    figures.push(format!("first list slow: ended {took:.2?} after the stop"));
    env.kube.set_faults(localkube::Faults::default());

    // 2. and 3. The Canary cache never syncs: its list is slow, or refused.
    for (slow, stage) in [(true, "cache list slow"), (false, "cache list refused")] {
        let now = k8s_openapi::jiff::Timestamp::now();
        leases
            .create(
                &PostParams::default(),
                &Lease {
                    metadata: ObjectMeta {
                        name: Some(flagger_controller::leader::LEASE_NAME.into()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some("another-replica".into()),
                        lease_duration_seconds: Some(3600),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        ..Default::default()
                    }),
                },
            )
            .await
            .expect("the Lease held by another replica");
        let gets = asked(&env, "get", "leases");
        let r = start(&env, true);
        // The start-up list has passed once the controller asks for the Lease (a get).
        support::wait_for("the controller asking for the Lease", &last, || async {
            (asked(&env, "get", "leases") > gets).then_some(())
        })
        .await;
        env.kube.set_faults(withheld(slow));
        leases
            .delete(
                flagger_controller::leader::LEASE_NAME,
                &DeleteParams::default(),
            )
            .await
            .expect("the other replica gives the Lease up");
        support::wait_for("the controller taking the Lease", &last, || async {
            holder(&env).await.filter(|h| h != "another-replica")
        })
        .await;
        let took = stop(r, stage).await;
        let after = holder(&env).await;
        figures.push(format!(
            "{stage}: ended {took:.2?} after the stop, Lease holder afterwards {after:?}"
        ));
        assert_eq!(after, None, "{stage}: the Lease is released on the way out");
        env.kube.set_faults(localkube::Faults::default());
        let _ = leases
            .delete(
                flagger_controller::leader::LEASE_NAME,
                &DeleteParams::default(),
            )
            .await;
    }
    println!("shutdown before sync (bound {STOP_DEADLINE:?}):");
    for f in &figures {
        println!("  {f}");
    }
}

/// A rollout whose webhook never answers (its timeout is a minute): the reconcile waiting on it
/// is given `SHUTDOWN_GRACE`, then dropped; the controller ends well before the webhook's
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_stopped_during_a_reconcile_ends_within_the_grace() {
    let mut env = Env::start(Options::default()).await;
    // Accepts connections and never answers; counts them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("hook listener");
    let addr = listener.local_addr().expect("hook address");
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = calls.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(conn);
        }
    });
    env.apply(&format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: app, namespace: {NS}, labels: {{app: app}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec:
      containers:
      - name: app
        image: ghcr.io/stefanprodan/podinfo:6.0.0
        ports: [{{name: http, containerPort: 9898}}]
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: app, namespace: {NS}}}
spec:
  provider: kubernetes
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: app}}
  service: {{port: 80, targetPort: http}}
  analysis:
    interval: 1s
    threshold: 2
    iterations: 3
    webhooks:
    - {{name: held, type: pre-rollout, url: "http://{addr}/", timeout: 60s}}
"#
    ))
    .await;
    env.wait_phase("app", flagger_api::CanaryPhase::Initialized)
        .await;
    env.stop_controller().await;
    let r = start(&env, false);
    env.kubectl(&[
        "-n",
        NS,
        "set",
        "image",
        "deployment/app",
        "app=ghcr.io/stefanprodan/podinfo:6.0.1",
    ])
    .await;
    let last = std::sync::Mutex::new(String::new());
    support::wait_for("the pre-rollout webhook called", &last, || async {
        (calls.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    let asked = Instant::now();
    let _ = r.stop.send(());
    let bound = flagger_controller::run::SHUTDOWN_GRACE + Duration::from_secs(5);
    let mut task = r.task;
    let ended = tokio::time::timeout(bound, &mut task).await;
    let took = asked.elapsed();
    if ended.is_err() {
        task.abort();
    }
    println!(
        "stop during a reconcile held by a webhook (timeout 60s): ended {took:.2?} after the stop (grace {:?})",
        flagger_controller::run::SHUTDOWN_GRACE
    );
    ended
        .unwrap_or_else(|_| panic!("the controller did not end within {bound:?} of the stop"))
        .expect("controller task")
        .expect("controller ended cleanly");
}
