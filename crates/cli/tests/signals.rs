//! The long-running commands stop on SIGTERM (what a container runtime sends), within a bound,
//! with a clean exit: `flagger controller` while it reconciles (it gives its Lease back) and
//! while the API server withholds its Canary list, and `flagger loadtester` while a command it
//! runs has a detached grandchild holding the output pipe open. (`flagger local`: local.rs.)

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, NS, Replica};
use flagger_api::{Canary, CanaryPhase};
use kube::Api;

const CANARY: &str = r#"
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
  service: {port: 80, targetPort: http}
  analysis: {interval: 1s, threshold: 2, iterations: 100}
"#;

/// Reconciles in progress get `SHUTDOWN_GRACE`, the Lease release 5 s more.
fn controller_bound() -> Duration {
    flagger_controller::run::SHUTDOWN_GRACE + Duration::from_secs(5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_stops_on_sigterm_while_reconciling_and_before_its_cache_synced() {
    let cluster = Cluster::start().await;
    cluster.apply(CANARY);
    let election = [
        "--enable-leader-election",
        "--leader-election-namespace=test",
        "--leader-election-lease-duration=2s",
    ];
    let mut replica = Replica::start(&cluster.kubeconfig, cluster.dir.path(), "alpha", &election);
    let canaries = Api::<Canary>::namespaced(cluster.client.clone(), NS);
    common::wait_for(
        "the canary initialized",
        Duration::from_secs(60),
        || async {
            let phase = canaries.get("app").await.ok()?.status?.phase;
            (phase == CanaryPhase::Initialized).then_some(())
        },
    )
    .await;
    // A rollout in progress: the controller reconciles every second.
    common::kubectl(
        &cluster.kubeconfig,
        &[
            "-n",
            NS,
            "set",
            "image",
            "deployment/app",
            "app=ghcr.io/stefanprodan/podinfo:6.0.1",
        ],
        None,
    );
    common::wait_for(
        "the canary progressing",
        Duration::from_secs(60),
        || async {
            let phase = canaries.get("app").await.ok()?.status?.phase;
            (phase == CanaryPhase::Progressing).then_some(())
        },
    )
    .await;
    replica.signal("TERM");
    let (status, took) = replica
        .wait_exit(controller_bound())
        .await
        .unwrap_or_else(|| panic!("still running {:?} after SIGTERM", controller_bound()));
    let holder = cluster.lease_holder().await;
    println!(
        "controller reconciling: ended {took:.0?} after SIGTERM, {status}, Lease holder afterwards {holder:?}"
    );
    assert!(status.success(), "{status}\n{}", replica.log());
    assert_eq!(holder, "", "the Lease is given back");

    // The API server withholds the Canary list (10 minutes of latency).
    cluster.kube.set_faults(localkube::Faults {
        rules: vec![localkube::FaultRule {
            verb: Some("list".into()),
            resource: Some("canaries".into()),
            latency: Duration::from_secs(600),
            ..Default::default()
        }],
        watch_cut: None,
    });
    let mut replica = Replica::start(&cluster.kubeconfig, cluster.dir.path(), "beta", &[]);
    // Its signal handlers are in place once it logs its start; the list follows at once.
    common::wait_for(
        "the controller starting",
        Duration::from_secs(30),
        || async { replica.log().contains("Starting flagger-rs").then_some(()) },
    )
    .await;
    replica.signal("TERM");
    let bound = Duration::from_secs(3);
    let (status, took) = replica
        .wait_exit(bound)
        .await
        .unwrap_or_else(|| panic!("still running {bound:?} after SIGTERM:\n{}", replica.log()));
    println!("controller waiting for its Canary list: ended {took:.0?} after SIGTERM, {status}");
    assert!(status.success(), "{status}\n{}", replica.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_tester_stops_on_sigterm_with_a_command_holding_its_pipe() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = common::free_port();
    let mut child = Command::new(common::BIN)
        .args([
            "loadtester",
            "--listen-address=127.0.0.1",
            &format!("--port={port}"),
            "--shutdown-timeout=1s",
            "--log-level=info",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flagger loadtester starts");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    common::wait_for("the load tester", Duration::from_secs(30), || async {
        let r = http.get(format!("{base}/healthz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    // A blocking command that leaves a grandchild in its own session, holding the output pipe.
    let pid = dir.path().join("pid");
    let detached = dir.path().join("detached");
    let cmd = format!(
        "setsid sh -c 'echo $$ > {d}; exec sleep 600' & echo $$ > {p}; sleep 600",
        d = detached.display(),
        p = pid.display()
    );
    let body = serde_json::json!({
        "name": "app", "namespace": NS, "phase": "Progressing", "checksum": "abc",
        "metadata": {"type": "bash", "cmd": cmd},
    });
    let post = http.post(format!("{base}/")).json(&body).send();
    let request = tokio::spawn(post);
    let read = |p: &std::path::Path| -> Option<i32> {
        std::fs::read_to_string(p).ok()?.trim().parse().ok()
    };
    let (shell, grandchild) =
        common::wait_for("the command running", Duration::from_secs(30), || async {
            Some((read(&pid)?, read(&detached)?))
        })
        .await;
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -TERM");
    let asked = Instant::now();
    let bound = Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if asked.elapsed() > bound {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // The kill reaches the shell as the load tester exits, and the orphan is then reaped by
    // init: it is gone (or a zombie) within the bound, or it was not killed.
    let dead = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
    };
    let until = Instant::now() + bound;
    while !dead(shell) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let shell_alive = !dead(shell);
    // The detached grandchild left the load tester's process groups: the test ends it.
    let _ = Command::new("kill")
        .args(["-KILL", &grandchild.to_string()])
        .status();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    request.abort();
    let status = status
        .unwrap_or_else(|| panic!("flagger loadtester still running {bound:?} after SIGTERM"));
    println!(
        "load tester: ended {:.0?} after SIGTERM, {status}; the command killed: {}",
        asked.elapsed(),
        !shell_alive
    );
    assert!(status.success(), "{status}");
    assert!(!shell_alive, "the running command is killed");
}
