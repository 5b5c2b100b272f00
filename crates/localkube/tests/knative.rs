//! The simulated Knative Serving controller and Kourier's routing: a revision per template
//! change, each backed by a Deployment and a Service and ready with its pod, the traffic split
//! of the Service resolved into the Route's and Service's status and honoured by the data
//! plane, and Kourier's Envoy series per revision.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use localkube::dataplane::{self, MeshRouter};
use serde_json::{Value, json};

use common::eventually;

/// Knative Serving's CRDs (serving 1.x: namespaced, status subresources).
fn crds() -> Vec<Value> {
    ["Service", "Configuration", "Revision", "Route"]
        .iter()
        .map(|kind| {
            let plural = format!("{}s", kind.to_lowercase());
            json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.serving.knative.dev")},
                "spec": {"group": "serving.knative.dev", "scope": "Namespaced",
                    "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
                    "versions": [{"name": "v1", "served": true, "storage": true,
                        "subresources": {"status": {}},
                        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]},
            })
        })
        .collect()
}

async fn start() -> (localkube::Handle, Client) {
    let (h, client) = common::start_with(localkube::Config {
        dataplane: Some(dataplane::DataPlaneConfig {
            router: Arc::new(MeshRouter::seeded(16)),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await;
    common::namespace(&client, "test").await;
    let crd_api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    for crd in crds() {
        crd_api
            .create(&Default::default(), &serde_json::from_value(crd).unwrap())
            .await
            .unwrap();
    }
    (h, client)
}

fn api(client: &Client, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("serving.knative.dev", "v1", kind);
    let plural = format!("{}s", kind.to_lowercase());
    Api::namespaced_with(
        client.clone(),
        "test",
        &ApiResource::from_gvk_with_plural(&gvk, &plural),
    )
}

async fn get(client: &Client, kind: &str, name: &str) -> Option<Value> {
    let o = api(client, kind).get_opt(name).await.ok().flatten()?;
    serde_json::to_value(o).ok()
}

/// Applies the Knative Service `podinfo` running `tag` with this traffic block.
async fn apply(client: &Client, tag: &str, traffic: Value) {
    let mut svc = json!({
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"template": {"spec": {"containers": [{
            "image": format!("ghcr.io/stefanprodan/podinfo:{tag}"),
            "ports": [{"containerPort": 9898}],
        }]}}},
    });
    if !traffic.is_null() {
        svc["spec"]["traffic"] = traffic;
    }
    api(client, "Service")
        .patch(
            "podinfo",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&svc),
        )
        .await
        .unwrap();
}

/// The Service's `status.traffic` as (revision, percent), once it has `want` entries.
async fn status_traffic(client: &Client, want: &[(&str, u64)]) -> Value {
    let want: Vec<(String, u64)> = want.iter().map(|(r, p)| (r.to_string(), *p)).collect();
    eventually(10, &format!("status.traffic {want:?}"), || async {
        let s = get(client, "Service", "podinfo").await?;
        let got: Vec<(String, u64)> = s
            .pointer("/status/traffic")?
            .as_array()?
            .iter()
            .map(|t| {
                (
                    t["revisionName"].as_str().unwrap_or_default().to_string(),
                    t["percent"].as_u64().unwrap_or_default(),
                )
            })
            .collect();
        (got == want).then_some(s)
    })
    .await
}

/// `n` requests to the Service's address through the data plane, by the version answering.
async fn versions(h: &localkube::Handle, n: usize) -> BTreeMap<String, usize> {
    let addr = h.dataplane.as_ref().expect("data plane").addr;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let req = axum::http::Request::builder()
            .uri("http://podinfo.test/")
            .header("host", "podinfo.test")
            .body(Body::empty())
            .unwrap();
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let bytes = axum::body::to_bytes(Body::new(resp.into_body()), usize::MAX)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        *seen
            .entry(body["version"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    seen
}

#[tokio::test]
async fn revisions_per_template_change_and_the_traffic_split() {
    let (h, client) = start().await;
    apply(&client, "1.0.0", Value::Null).await;
    // The first revision, ready with its pod, gets all the traffic (`latestRevision`).
    let s = status_traffic(&client, &[("podinfo-00001", 100)]).await;
    assert_eq!(s["status"]["latestReadyRevisionName"], "podinfo-00001");
    let rev = get(&client, "Revision", "podinfo-00001").await.unwrap();
    assert_eq!(
        rev["metadata"]["labels"]["serving.knative.dev/service"],
        "podinfo"
    );
    assert_eq!(
        get(&client, "Route", "podinfo").await.unwrap()["status"]["url"],
        "http://podinfo.test.svc.cluster.local"
    );
    assert_eq!(
        versions(&h, 10).await,
        BTreeMap::from([("1.0.0".into(), 10)])
    );

    // A new template: a second revision; the first keeps the traffic pinned to it by name.
    apply(
        &client,
        "2.0.0",
        json!([
            {"revisionName": "podinfo-00001", "percent": 70},
            {"latestRevision": true, "percent": 30},
        ]),
    )
    .await;
    status_traffic(&client, &[("podinfo-00001", 70), ("podinfo-00002", 30)]).await;
    let seen = versions(&h, 1000).await;
    eprintln!("70/30 over 1000 requests: {seen:?}");
    let canary = seen.get("2.0.0").copied().unwrap_or(0) as f64 / 1000.0;
    assert!((0.26..=0.34).contains(&canary), "{seen:?}");

    // The same template with other traffic makes no revision.
    apply(
        &client,
        "2.0.0",
        json!([{"revisionName": "podinfo-00002", "percent": 100}]),
    )
    .await;
    status_traffic(&client, &[("podinfo-00002", 100)]).await;
    assert!(get(&client, "Revision", "podinfo-00003").await.is_none());
    assert_eq!(
        versions(&h, 10).await,
        BTreeMap::from([("2.0.0".into(), 10)])
    );

    // A revision that does not exist: the Route keeps its traffic and says why.
    apply(
        &client,
        "2.0.0",
        json!([{"revisionName": "podinfo-00009", "percent": 100}]),
    )
    .await;
    let route = eventually(10, "the Route not ready", || async {
        let r = get(&client, "Route", "podinfo").await?;
        let c = r
            .pointer("/status/conditions")?
            .as_array()?
            .first()?
            .clone();
        (c["status"] == "Unknown").then_some(r)
    })
    .await;
    let message = route["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("podinfo-00009"), "{message}");
    assert_eq!(
        route["status"]["traffic"][0]["revisionName"],
        "podinfo-00002"
    );
    assert_eq!(versions(&h, 5).await, BTreeMap::from([("2.0.0".into(), 5)]));

    // Kourier's series name each revision's cluster.
    let metrics = common::http_get(&format!(
        "http://{}/metrics",
        h.dataplane.as_ref().unwrap().addr
    ))
    .await;
    for rev in ["podinfo-00001", "podinfo-00002"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("envoy_cluster_upstream_rq{")
                    && l.contains(&format!("envoy_cluster_name=\"test/{rev}\""))),
            "{rev}"
        );
    }
}

#[tokio::test]
async fn an_unchanged_service_is_not_written_again() {
    let (h, client) = start().await;
    apply(&client, "1.0.0", Value::Null).await;
    status_traffic(&client, &[("podinfo-00001", 100)]).await;
    // Settled: the controller's objects keep their resource versions.
    let versions = || async {
        let mut out = Vec::new();
        for (kind, name) in [
            ("Service", "podinfo"),
            ("Route", "podinfo"),
            ("Configuration", "podinfo"),
            ("Revision", "podinfo-00001"),
        ] {
            out.push(
                get(&client, kind, name).await.unwrap()["metadata"]["resourceVersion"].clone(),
            );
        }
        out
    };
    let before = versions().await;
    // Another write somewhere in the namespace queues the Service again (its revision's
    // Deployment is labelled with it).
    common::kubectl(
        &h,
        &[
            "-n",
            "test",
            "annotate",
            "deployment/podinfo-00001-deployment",
            "x=y",
        ],
    )
    .await;
    eventually(10, "the annotation stored", || async {
        let out = common::kubectl(
            &h,
            &[
                "-n",
                "test",
                "get",
                "deployment/podinfo-00001-deployment",
                "-o",
                "jsonpath={.metadata.annotations.x}",
            ],
        )
        .await;
        (out == "y").then_some(())
    })
    .await;
    let after = versions().await;
    assert_eq!(before, after);
}
