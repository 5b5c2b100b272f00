//! The simulated kubelet: probes as requests to the pods' apps (recorded by the data plane,
//! with the kubelet's User-Agent), readiness following the readiness probe, restarts on a
//! failing liveness probe, and images the simulated registry does not hold never running.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use k8s_openapi::api::core::v1::{ContainerStatus, Endpoints, Event, Pod};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

use common::eventually;

async fn start(config: localkube::Config) -> (localkube::Handle, Client) {
    let (h, client) = common::start_with(config).await;
    common::namespace(&client, "test").await;
    (h, client)
}

fn with_dataplane() -> localkube::Config {
    localkube::Config {
        dataplane: Some(localkube::dataplane::DataPlaneConfig {
            default_namespace: "test".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pod of one container `app` (port `http` 9898) with `extra` merged into the container.
async fn pod(client: &Client, name: &str, image: &str, extra: Value) -> Pod {
    let mut c =
        json!({"name": "app", "image": image, "ports": [{"name": "http", "containerPort": 9898}]});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [c]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "test")
        .create(&PostParams::default(), &p)
        .await
        .unwrap()
}

async fn get_pod(client: &Client, name: &str) -> Option<Pod> {
    Api::<Pod>::namespaced(client.clone(), "test")
        .get_opt(name)
        .await
        .ok()
        .flatten()
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn container(p: &Pod) -> Option<ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()
        .cloned()
}

/// `(reason, message, count)` of the events about pod `name`.
async fn events(client: &Client, name: &str) -> Vec<(String, String, i32)> {
    Api::<Event>::namespaced(client.clone(), "test")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
                e.count.unwrap_or(1),
            )
        })
        .collect()
}

async fn wait_event(client: &Client, name: &str, reason: &str, message: &str) -> i32 {
    let what = format!("event {reason}: {message}");
    eventually(20, &what, || async {
        events(client, name)
            .await
            .into_iter()
            .find(|(r, m, _)| r == reason && m.contains(message))
            .map(|(_, _, n)| n)
    })
    .await
}

/// A real HTTP server answering every request with the status it is set to, recording the
/// `User-Agent` of each request.
struct Backend {
    port: u16,
    status: Arc<AtomicU16>,
    agents: Arc<Mutex<Vec<String>>>,
}

type BackendState = (Arc<AtomicU16>, Arc<Mutex<Vec<String>>>);

async fn answer(State((status, agents)): State<BackendState>, headers: HeaderMap) -> StatusCode {
    let ua = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    agents.lock().unwrap().push(ua.to_string());
    StatusCode::from_u16(status.load(Ordering::Relaxed)).unwrap()
}

impl Backend {
    async fn start() -> Backend {
        let status = Arc::new(AtomicU16::new(200));
        let agents: Arc<Mutex<Vec<String>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new()
            .fallback(answer)
            .with_state((status.clone(), agents.clone()));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Backend {
            port,
            status,
            agents,
        }
    }

    fn set(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn readiness_follows_the_readiness_probe() {
    let (h, client) = start(with_dataplane()).await;
    let backend = Backend::start().await;
    // The probe's `host` names a real process: the kubelet's request reaches it through the
    // data plane, so the test decides what the probe answers.
    pod(
        &client,
        "web",
        "podinfo:1",
        json!({"readinessProbe": {"httpGet": {"host": "127.0.0.1", "port": backend.port, "path": "/ready"}, "periodSeconds": 1, "failureThreshold": 2}}),
    )
    .await;
    eventually(10, "ready after a successful probe", || async {
        get_pod(&client, "web").await.filter(ready)
    })
    .await;
    let agents = backend.agents.lock().unwrap().clone();
    assert!(
        !agents.is_empty()
            && agents
                .iter()
                .all(|a| a == localkube::controllers::PROBE_USER_AGENT),
        "{agents:?}"
    );
    assert_eq!(localkube::controllers::PROBE_USER_AGENT, "kube-probe/1.32");

    backend.set(503);
    let p = eventually(10, "not ready after two failures", || async {
        get_pod(&client, "web").await.filter(|p| !ready(p))
    })
    .await;
    let cond = p
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(cond.reason.as_deref(), Some("ContainersNotReady"));
    assert_eq!(
        cond.message.as_deref(),
        Some("containers with unready status: [app]")
    );
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "test");
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), "test")
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    eventually(10, "the pod among the not-ready addresses", || async {
        let e = eps.get_opt("web").await.ok().flatten()?;
        let subset = e.subsets?.pop()?;
        (subset.addresses.is_none() && subset.not_ready_addresses?.len() == 1).then_some(())
    })
    .await;
    let n = wait_event(
        &client,
        "web",
        "Unhealthy",
        "Readiness probe failed: HTTP probe failed with statuscode: 503",
    )
    .await;
    assert!(n >= 1);
    // Repeated failures are counted on one event, as the event recorder aggregates them.
    eventually(10, "the failure counted again", || async {
        let again = events(&client, "web")
            .await
            .into_iter()
            .filter(|(r, _, _)| r == "Unhealthy")
            .collect::<Vec<_>>();
        (again.len() == 1 && again[0].2 > n).then_some(())
    })
    .await;

    backend.set(200);
    eventually(10, "ready again", || async {
        get_pod(&client, "web").await.filter(ready)
    })
    .await;
    drop(h);
}

#[tokio::test]
async fn probes_are_requests_the_pod_answers_and_records() {
    let (h, client) = start(with_dataplane()).await;
    pod(
        &client,
        "podinfo",
        "ghcr.io/stefanprodan/podinfo:6.0.0",
        json!({
            "readinessProbe": {"httpGet": {"port": "http", "path": "/readyz"}, "periodSeconds": 1},
            "livenessProbe": {"httpGet": {"port": 9898, "path": "/healthz"}, "periodSeconds": 1},
        }),
    )
    .await;
    eventually(10, "ready", || async {
        get_pod(&client, "podinfo").await.filter(ready)
    })
    .await;
    let metrics = h.dataplane.as_ref().unwrap().metrics.clone();
    // Two probes a second, each one a request the pod answered.
    let counted = eventually(10, "probe requests recorded", || async {
        let ok = metrics
            .counts("test", "podinfo")
            .get(&200)
            .copied()
            .unwrap_or(0);
        (ok >= 4).then_some(ok)
    })
    .await;
    assert!(counted >= 4);
    let paths = metrics.counts_by_path("test", "podinfo");
    assert!(paths.get("readyz").is_some_and(|n| *n >= 2), "{paths:?}");
    assert!(paths.get("healthz").is_some_and(|n| *n >= 2), "{paths:?}");
    let p = get_pod(&client, "podinfo").await.unwrap();
    let cs = container(&p).unwrap();
    assert_eq!(cs.restart_count, 0);
    assert!(cs.started.unwrap());
    assert!(
        cs.image_id
            .starts_with("ghcr.io/stefanprodan/podinfo@sha256:")
    );
    let evs: Vec<String> = events(&client, "podinfo")
        .await
        .into_iter()
        .map(|(r, _, _)| r)
        .collect();
    for reason in ["Scheduled", "Pulled", "Created", "Started"] {
        assert!(evs.iter().any(|r| r == reason), "{reason} in {evs:?}");
    }
}

#[tokio::test]
async fn a_failing_liveness_probe_restarts_the_container() {
    let (_h, client) = start(with_dataplane()).await;
    pod(
        &client,
        "sick",
        "podinfo:1",
        json!({"livenessProbe": {"httpGet": {"port": "http", "path": "/status/500"}, "periodSeconds": 1, "failureThreshold": 2}}),
    )
    .await;
    let p = eventually(15, "a restart", || async {
        get_pod(&client, "sick")
            .await
            .filter(|p| container(p).is_some_and(|c| c.restart_count >= 1))
    })
    .await;
    let cs = container(&p).unwrap();
    let last = cs.last_state.unwrap().terminated.unwrap();
    assert_eq!(last.exit_code, 137);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    assert!(last.container_id.is_some());
    wait_event(
        &client,
        "sick",
        "Killing",
        "Container app failed liveness probe, will be restarted",
    )
    .await;
    wait_event(
        &client,
        "sick",
        "Unhealthy",
        "Liveness probe failed: HTTP probe failed with statuscode: 500",
    )
    .await;
    // The second restart waits: the container is in CrashLoopBackOff for 10 s.
    let p = eventually(15, "a crash loop back-off", || async {
        get_pod(&client, "sick").await.filter(|p| {
            container(p)
                .and_then(|c| c.state?.waiting?.reason)
                .as_deref()
                == Some("CrashLoopBackOff")
        })
    })
    .await;
    let cs = container(&p).unwrap();
    assert_eq!(cs.restart_count, 2);
    assert!(!cs.ready);
    let uid = p.metadata.uid.unwrap();
    assert_eq!(
        cs.state.unwrap().waiting.unwrap().message.unwrap(),
        format!("back-off 10s restarting failed container=app pod=sick_test({uid})")
    );
    wait_event(
        &client,
        "sick",
        "BackOff",
        &format!("Back-off restarting failed container app in pod sick_test({uid})"),
    )
    .await;
}

#[tokio::test]
async fn an_image_the_registry_does_not_hold_never_runs() {
    let (_h, client) = start(localkube::Config::default()).await;
    pod(&client, "potato", "stefanprodan/potato:1.0.0", json!({})).await;
    let p = eventually(10, "ImagePullBackOff", || async {
        get_pod(&client, "potato").await.filter(|p| {
            container(p)
                .and_then(|c| c.state?.waiting?.reason)
                .as_deref()
                == Some("ImagePullBackOff")
        })
    })
    .await;
    let status = p.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert!(status.pod_ip.is_some(), "the sandbox runs");
    assert!(!ready(&p));
    let cs = container(&p).unwrap();
    assert_eq!(
        cs.state.unwrap().waiting.unwrap().message.as_deref(),
        Some("Back-off pulling image \"stefanprodan/potato:1.0.0\"")
    );
    assert!(!cs.ready);
    assert_eq!(cs.started, Some(false));
    assert_eq!(cs.image_id, "");
    wait_event(
        &client,
        "potato",
        "Failed",
        "Failed to pull image \"stefanprodan/potato:1.0.0\": rpc error: code = NotFound desc = failed to pull and unpack image \"docker.io/stefanprodan/potato:1.0.0\"",
    )
    .await;
    wait_event(&client, "potato", "Failed", "Error: ErrImagePull").await;
    wait_event(&client, "potato", "Failed", "Error: ImagePullBackOff").await;
    wait_event(
        &client,
        "potato",
        "BackOff",
        "Back-off pulling image \"stefanprodan/potato:1.0.0\"",
    )
    .await;
    // `kubectl get pods` shows the waiting reason as the pod's status.
    let table = common::kubectl(&_h, &["-n", "test", "get", "pods"]).await;
    assert!(table.contains("ImagePullBackOff"), "{table}");
}

#[tokio::test]
async fn the_registry_is_configurable() {
    let mut config = localkube::Config::default();
    config.sim.registry = localkube::controllers::ImageRegistry::parse(
        "stefanprodan/potato:1.0.0\n!registry.example.com/*\n*\n",
    );
    let (_h, client) = start(config).await;
    pod(&client, "potato", "stefanprodan/potato:1.0.0", json!({})).await;
    pod(
        &client,
        "private",
        "registry.example.com/team/app:1",
        json!({}),
    )
    .await;
    eventually(10, "the listed image runs", || async {
        get_pod(&client, "potato").await.filter(ready)
    })
    .await;
    eventually(10, "the excluded one does not", || async {
        get_pod(&client, "private").await.filter(|p| {
            container(p)
                .and_then(|c| c.state?.waiting?.reason)
                .as_deref()
                .is_some_and(|r| r == "ErrImagePull" || r == "ImagePullBackOff")
        })
    })
    .await;
}
