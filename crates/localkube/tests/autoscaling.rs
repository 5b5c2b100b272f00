//! The simulated HorizontalPodAutoscaler controller: scaling a Deployment on the simulated CPU
//! that follows the requests its pods answer, the status, conditions and events a cluster
//! shows, a target at zero left alone, and metrics that cannot be read reported.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Service};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use common::eventually;

async fn start() -> (localkube::Handle, Client) {
    let mut config = localkube::Config {
        dataplane: Some(localkube::dataplane::DataPlaneConfig {
            default_namespace: "test".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    config.sim.hpa.sync_period = Duration::from_secs(1);
    let (h, client) = common::start_with(config).await;
    common::namespace(&client, "test").await;
    (h, client)
}

/// Deployment and Service `web`: `replicas` pods requesting `cpu` (none when `None`).
async fn workload(client: &Client, replicas: i32, cpu: Option<&str>) {
    let mut c = json!({"name": "app", "image": "podinfo:1", "ports": [{"name": "http", "containerPort": 9898}]});
    if let Some(cpu) = cpu {
        c["resources"] = json!({"requests": {"cpu": cpu}});
    }
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}, "annotations": {localkube::controllers::usage::CPU_PER_REQUEST: "5ms"}},
                         "spec": {"containers": [c]}},
        },
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), "test")
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let s: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), "test")
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

fn hpas(client: &Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("autoscaling", "v2", "HorizontalPodAutoscaler"),
        "horizontalpodautoscalers",
    );
    Api::namespaced_with(client.clone(), "test", &ar)
}

async fn hpa(client: &Client, spec: Value) {
    let mut o = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
    });
    if let (Some(s), Some(extra)) = (o["spec"].as_object_mut(), spec.as_object()) {
        s.extend(extra.clone());
    }
    let o: DynamicObject = serde_json::from_value(o).unwrap();
    hpas(client)
        .create(&PostParams::default(), &o)
        .await
        .unwrap();
}

async fn status(client: &Client) -> Value {
    let o = hpas(client).get("web").await.unwrap();
    serde_json::to_value(o).unwrap()["status"].clone()
}

fn condition(status: &Value, t: &str) -> (String, String, String) {
    let c = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .cloned()
        .unwrap_or_default();
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    (s("status"), s("reason"), s("message"))
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

async fn event_messages(client: &Client, reason: &str) -> Vec<String> {
    Api::<Event>::namespaced(client.clone(), "test")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.message)
        .collect()
}

/// Requests to `url` through the proxy, one every 10 ms, until dropped.
struct Load(Arc<AtomicBool>);

impl Load {
    fn start(proxy: SocketAddr, url: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            while !s.load(Ordering::Relaxed) {
                let uri: axum::http::Uri = url.parse().unwrap();
                let req = axum::http::Request::builder()
                    .uri(url)
                    .header("host", uri.authority().unwrap().as_str())
                    .body(Body::empty())
                    .unwrap();
                if let Ok(r) = sender.send_request(req).await {
                    let _ = axum::body::to_bytes(Body::new(r.into_body()), 1 << 20).await;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Load(stop)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn an_hpa_scales_a_deployment_on_the_cpu_its_requests_use() {
    let (h, client) = start().await;
    workload(&client, 1, Some("50m")).await;
    hpa(
        &client,
        json!({
            "minReplicas": 1, "maxReplicas": 4,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
        }),
    )
    .await;
    // Idle: 1m of 50m, 2%: one pod is enough.
    let st = eventually(10, "an idle reading", || async {
        let st = status(&client).await;
        (st["currentMetrics"][0]["resource"]["current"]["averageUtilization"] == 2).then_some(st)
    })
    .await;
    assert_eq!(
        condition(&st, "ScalingActive"),
        (
            "True".into(),
            "ValidMetricFound".into(),
            "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)".into()
        )
    );
    assert_eq!(condition(&st, "ScalingLimited").1, "DesiredWithinRange");
    assert_eq!(st["desiredReplicas"], 1);

    // About 100 requests a second at 5 ms of CPU each: 500m of 50m, far above 50%.
    let proxy = h.dataplane.as_ref().unwrap().addr;
    let load = Load::start(proxy, "http://web.test/");
    eventually(30, "scaled to the maximum", || async {
        (replicas(&client).await == 4).then_some(())
    })
    .await;
    let st = status(&client).await;
    assert!(st["lastScaleTime"].is_string());
    let rescales = event_messages(&client, "SuccessfulRescale").await;
    assert!(
        rescales.iter().any(|m| m.starts_with(
            "New size: 4; reason: cpu resource utilization (percentage of request) above target"
        )),
        "{rescales:?}"
    );
    eventually(10, "the limit reported", || async {
        let st = status(&client).await;
        (condition(&st, "ScalingLimited").1 == "TooManyReplicas").then_some(())
    })
    .await;
    let table = common::kubectl(&h, &["-n", "test", "get", "hpa", "web"]).await;
    assert!(table.contains("TARGETS"), "{table}");
    assert!(
        table.contains("cpu: ") && table.contains("%/50%"),
        "{table}"
    );

    // Without load the request rate falls over the metrics window and the HPA scales down.
    drop(load);
    eventually(40, "scaled back down", || async {
        (replicas(&client).await == 1).then_some(())
    })
    .await;
    let rescales = event_messages(&client, "SuccessfulRescale").await;
    assert!(
        rescales
            .iter()
            .any(|m| m.ends_with("reason: All metrics below target")),
        "{rescales:?}"
    );
}

#[tokio::test]
async fn a_target_at_zero_is_left_alone() {
    let (_h, client) = start().await;
    workload(&client, 0, Some("50m")).await;
    hpa(
        &client,
        json!({"minReplicas": 2, "maxReplicas": 4, "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}),
    )
    .await;
    let st = eventually(10, "scaling disabled", || async {
        let st = status(&client).await;
        (condition(&st, "ScalingActive").1 == "ScalingDisabled").then_some(st)
    })
    .await;
    assert_eq!(
        condition(&st, "ScalingActive"),
        (
            "False".into(),
            "ScalingDisabled".into(),
            "scaling is disabled since the replica count of the target is zero".into()
        )
    );
    assert_eq!(st["desiredReplicas"], 0);
    assert_eq!(replicas(&client).await, 0);
    // Scaled from zero (as Flagger does when a canary starts), the HPA takes over again and
    // brings it to its minimum.
    Api::<Deployment>::namespaced(client.clone(), "test")
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    eventually(10, "scaled to the minimum", || async {
        (replicas(&client).await == 2).then_some(())
    })
    .await;
    let rescales = event_messages(&client, "SuccessfulRescale").await;
    assert!(
        rescales.contains(
            &"New size: 2; reason: Current number of replicas below Spec.MinReplicas".to_string()
        ),
        "{rescales:?}"
    );
}

#[tokio::test]
async fn metrics_that_cannot_be_read_stop_scaling_with_a_reason() {
    let (h, client) = start().await;
    workload(&client, 1, None).await;
    hpa(
        &client,
        json!({"minReplicas": 1, "maxReplicas": 4, "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}),
    )
    .await;
    let st = eventually(10, "the missing request reported", || async {
        let st = status(&client).await;
        (condition(&st, "ScalingActive").1 == "FailedGetResourceMetric").then_some(st)
    })
    .await;
    let (status_, _, message) = condition(&st, "ScalingActive");
    assert_eq!(status_, "False");
    assert!(
        message.starts_with("the HPA was unable to compute the replica count: failed to get cpu utilization: missing request for cpu in container app of Pod web-"),
        "{message}"
    );
    let failures = event_messages(&client, "FailedComputeMetricsReplicas").await;
    assert!(
        failures.iter().any(|m| m.starts_with(
            "invalid metrics (1 invalid out of 1), first error is: failed to get cpu utilization"
        )),
        "{failures:?}"
    );
    let table = common::kubectl(&h, &["-n", "test", "get", "hpa", "web"]).await;
    assert!(table.contains("cpu: <unknown>/50%"), "{table}");

    // An external metric nobody serves (no KEDA): unavailable, as on a cluster without an
    // external metrics API.
    hpas(&client)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"metrics": [{"type": "External", "external": {
                "metric": {"name": "s0-prometheus", "selector": {"matchLabels": {"scaledobject.keda.sh/name": "web"}}},
                "target": {"type": "AverageValue", "averageValue": "5"}}}]}})),
        )
        .await
        .unwrap();
    let st = eventually(10, "the external metric reported", || async {
        let st = status(&client).await;
        (condition(&st, "ScalingActive").1 == "FailedGetExternalMetric").then_some(st)
    })
    .await;
    assert_eq!(
        condition(&st, "ScalingActive").2,
        "the HPA was unable to compute the replica count: unable to get external metric test/s0-prometheus/&LabelSelector{MatchLabels:map[string]string{scaledobject.keda.sh/name: web,},MatchExpressions:[]LabelSelectorRequirement{},}: unable to fetch metrics from external metrics API: the server could not find the requested resource (get s0-prometheus.external.metrics.k8s.io)"
    );
    // A Pods metric the data plane answers: requests per second per pod.
    hpas(&client)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"metrics": [{"type": "Pods", "pods": {
                "metric": {"name": "http_requests_per_second"},
                "target": {"type": "AverageValue", "averageValue": "10"}}}]}})),
        )
        .await
        .unwrap();
    let _load = Load::start(h.dataplane.as_ref().unwrap().addr, "http://web.test/");
    eventually(30, "scaled on requests per second", || async {
        (replicas(&client).await > 1).then_some(())
    })
    .await;
    let st = status(&client).await;
    assert_eq!(
        condition(&st, "ScalingActive").2,
        "the HPA was able to successfully calculate a replica count from pods metric http_requests_per_second"
    );
}
