//! The KEDA-like scaler: a ScaledObject with a prometheus trigger gets KEDA's HPA, its query
//! drives the target through the HPA, the pause annotations stop it (and scale to the paused
//! count), and removing them resumes it. The Prometheus here is a stand-in answering the
//! query API with a value the test sets (the controller e2e uses a real one).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use common::eventually;

/// Answers `/api/v1/query` with one sample of the value it is set to.
async fn prometheus() -> (u16, Arc<AtomicU64>) {
    let value = Arc::new(AtomicU64::new(0));
    async fn query(State(v): State<Arc<AtomicU64>>) -> String {
        let x = v.load(Ordering::Relaxed);
        json!({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, x.to_string()]}]}})
            .to_string()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route("/api/v1/query", axum::routing::get(query))
        .with_state(value.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, value)
}

fn api(
    client: &Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(client.clone(), "test", &ar)
}

fn scaled_objects(client: &Client) -> Api<DynamicObject> {
    api(
        client,
        "keda.sh",
        "v1alpha1",
        "ScaledObject",
        "scaledobjects",
    )
}

fn hpas(client: &Client) -> Api<DynamicObject> {
    api(
        client,
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    )
}

async fn json_of(a: &Api<DynamicObject>, name: &str) -> Option<Value> {
    let o = a.get_opt(name).await.ok().flatten()?;
    serde_json::to_value(o).ok()
}

async fn replicas(client: &Client) -> i32 {
    Api::<Deployment>::namespaced(client.clone(), "test")
        .get("web")
        .await
        .unwrap()
        .spec
        .unwrap()
        .replicas
        .unwrap_or(1)
}

/// Merge-patches the ScaledObject `web-so`.
async fn patch_so(client: &Client, patch: Value) {
    scaled_objects(client)
        .patch("web-so", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

fn condition(so: &Value, t: &str) -> (String, String) {
    let c = so["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .cloned()
        .unwrap_or_default();
    (
        c["status"].as_str().unwrap_or_default().to_string(),
        c["reason"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn a_scaled_object_scales_through_its_hpa_and_pauses() {
    let mut config = localkube::Config {
        dataplane: Some(localkube::dataplane::DataPlaneConfig::default()),
        ..Default::default()
    };
    config.sim.keda = true;
    config.sim.hpa.sync_period = Duration::from_secs(1);
    let (_h, client) = common::start_with(config).await;
    common::namespace(&client, "test").await;
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "podinfo:1"}]}}},
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), "test")
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let (port, value) = prometheus().await;
    // The CRD comes with the scaler, as with KEDA installed.
    let so: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "web-so"},
        "spec": {
            "scaleTargetRef": {"name": "web"},
            "pollingInterval": 1, "cooldownPeriod": 5, "minReplicaCount": 1, "maxReplicaCount": 3,
            "triggers": [{"type": "prometheus", "metadata": {
                "serverAddress": format!("http://127.0.0.1:{port}"),
                "query": "sum(rate(http_requests_total[30s]))", "threshold": "5"}}],
        },
    }))
    .unwrap();
    scaled_objects(&client)
        .create(&PostParams::default(), &so)
        .await
        .unwrap();

    let hpa = eventually(10, "KEDA's HPA", || async {
        json_of(&hpas(&client), "keda-hpa-web-so").await
    })
    .await;
    assert_eq!(hpa["spec"]["minReplicas"], 1);
    assert_eq!(hpa["spec"]["maxReplicas"], 3);
    assert_eq!(
        hpa["spec"]["metrics"][0],
        json!({"type": "External", "external": {
            "metric": {"name": "s0-prometheus", "selector": {"matchLabels": {"scaledobject.keda.sh/name": "web-so"}}},
            "target": {"type": "AverageValue", "averageValue": "5"}}})
    );
    assert_eq!(
        hpa["metadata"]["ownerReferences"][0]["kind"],
        "ScaledObject"
    );
    let so = eventually(10, "ready and inactive", || async {
        let so = json_of(&scaled_objects(&client), "web-so").await?;
        (condition(&so, "Ready").1 == "ScaledObjectReady"
            && condition(&so, "Active").1 == "ScalerNotActive")
            .then_some(so)
    })
    .await;
    assert_eq!(so["status"]["hpaName"], "keda-hpa-web-so");
    assert_eq!(so["status"]["scaleTargetKind"], "apps/v1.Deployment");
    assert_eq!(
        so["status"]["externalMetricNames"],
        json!(["s0-prometheus"])
    );
    assert_eq!(so["status"]["health"]["s0-prometheus"]["status"], "Happy");

    // 40 against 5 a pod: eight pods wanted, three allowed.
    value.store(40, Ordering::Relaxed);
    eventually(20, "scaled to the maximum", || async {
        (replicas(&client).await == 3).then_some(())
    })
    .await;
    let so = json_of(&scaled_objects(&client), "web-so").await.unwrap();
    assert_eq!(
        condition(&so, "Active"),
        ("True".into(), "ScalerActive".into())
    );
    assert!(so["status"]["lastActiveTime"].is_string());

    // Paused at zero: the target goes to zero and KEDA's HPA goes away.
    patch_so(
        &client,
        json!({"metadata": {"annotations": {"autoscaling.keda.sh/paused-replicas": "0"}}}),
    )
    .await;
    eventually(10, "paused at zero", || async {
        let so = json_of(&scaled_objects(&client), "web-so").await?;
        (replicas(&client).await == 0
            && condition(&so, "Paused") == ("True".into(), "ScaledObjectPaused".into())
            && so["status"]["pausedReplicaCount"] == 0
            && json_of(&hpas(&client), "keda-hpa-web-so").await.is_none())
        .then_some(())
    })
    .await;

    // Resumed: the HPA comes back, the active trigger brings the target back from zero and the
    // HPA scales it out again.
    patch_so(
        &client,
        json!({"metadata": {"annotations": {"autoscaling.keda.sh/paused-replicas": null}}}),
    )
    .await;
    eventually(20, "resumed and scaled out", || async {
        let so = json_of(&scaled_objects(&client), "web-so").await?;
        (replicas(&client).await == 3
            && condition(&so, "Paused").0 == "False"
            && so["status"].get("pausedReplicaCount").is_none()
            && json_of(&hpas(&client), "keda-hpa-web-so").await.is_some())
        .then_some(())
    })
    .await;

    // An unreachable Prometheus: the trigger fails, the HPA reports the external metric failing.
    patch_so(
        &client,
        json!({"spec": {"triggers": [{"type": "prometheus", "metadata": {
                "serverAddress": "http://127.0.0.1:9", "query": "up", "threshold": "5"}}]}}),
    )
    .await;
    eventually(15, "the failure reported", || async {
        let so = json_of(&scaled_objects(&client), "web-so").await?;
        let hpa = json_of(&hpas(&client), "keda-hpa-web-so").await?;
        let active = hpa["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "ScalingActive")?
            .clone();
        (so["status"]["health"]["s0-prometheus"]["status"] == "Failing"
            && active["reason"] == "FailedGetExternalMetric")
            .then_some(())
    })
    .await;
}
