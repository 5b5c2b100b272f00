//! Leader election: two controllers on one localkube; only the Lease holder acts, and the other
//! takes over when the leader stops.

mod support;

use std::sync::Mutex;

use flagger_api::CanaryPhase;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use support::{Env, NS, Options};

const ELECTION: &[&str] = &[
    "--enable-leader-election",
    "--leader-election-namespace=test",
    "--leader-election-lease-duration=2s",
];

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
  analysis: {interval: 1s, threshold: 2, iterations: 1}
"#;

async fn holder(env: &Env) -> String {
    Api::<Lease>::namespaced(env.client.clone(), NS)
        .get_opt(flagger_controller::leader::LEASE_NAME)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .unwrap_or_default()
}

async fn wait_holder(env: &Env, pred: impl Fn(&str) -> bool) -> String {
    let last = Mutex::new(String::new());
    support::wait_for("the Lease holder", &last, || async {
        let h = holder(env).await;
        *last.lock().expect("lock") = h.clone();
        pred(&h).then_some(h)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_leader_acts_and_a_standby_takes_over() {
    let mut env = Env::start(Options {
        controller_args: ELECTION,
        ..Default::default()
    })
    .await;
    let first = wait_holder(&env, |h| !h.is_empty()).await;

    // A second replica waits for the Lease.
    let args = flagger_controller::Args::try_parse_from(
        [
            "controller",
            "--mesh-provider=kubernetes",
            "--min-analysis-interval=1s",
            "--port=0",
        ]
        .iter()
        .chain(ELECTION),
    )
    .expect("flags parse");
    let (stop_b, rx) = tokio::sync::oneshot::channel::<()>();
    let client = env.client.clone();
    let b = tokio::spawn(async move {
        flagger_controller::run::serve(client, args, async move {
            let _ = rx.await;
        })
        .await
    });

    env.apply(MANIFESTS).await;
    env.wait_phase("app", CanaryPhase::Initialized).await;
    assert_eq!(holder(&env).await, first, "the first replica still leads");
    assert_eq!(
        env.event_count("app", "Initialization done!").await,
        1,
        "one replica initialized the canary"
    );

    // The leader stops and releases the Lease; the standby takes over and runs the analysis.
    env.stop_controller().await;
    let second = wait_holder(&env, |h| !h.is_empty() && h != first).await;
    assert_ne!(second, first);
    env.kubectl(&[
        "-n",
        NS,
        "set",
        "image",
        "deployment/app",
        "app=ghcr.io/stefanprodan/podinfo:6.0.1",
    ])
    .await;
    env.wait_phase("app", CanaryPhase::Succeeded).await;

    let _ = stop_b.send(());
    b.await.expect("task").expect("second replica ran");
    assert_eq!(holder(&env).await, "", "the Lease is released on shutdown");
}
