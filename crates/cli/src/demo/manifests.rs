//! The demo's objects, as a user would apply them: the CRDs, podinfo, its Canary and the
//! Service that makes `flagger-loadtester.test` reach the local load tester.

use std::net::SocketAddr;

use anyhow::Context as _;
use flagger_api::Canary;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

const MANAGER: &str = "flagger-demo";

pub(super) fn apply() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in flagger_api::crd::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &apply(), &Patch::Apply(&crd))
            .await
            .with_context(|| format!("installing CRD {name}"))?;
    }
    Ok(())
}

pub async fn namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
    }))?;
    Api::<Namespace>::all(client.clone())
        .patch(name, &apply(), &Patch::Apply(&ns))
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// `flagger-loadtester.<ns>:80`, served by the local load tester process.
pub async fn loadtester_service(
    client: &Client,
    ns: &str,
    upstream: SocketAddr,
) -> anyhow::Result<()> {
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": "flagger-loadtester", "namespace": ns,
            "annotations": {localkube::dataplane::UPSTREAM: upstream.to_string()}
        },
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }))?;
    Api::<Service>::namespaced(client.clone(), ns)
        .patch("flagger-loadtester", &apply(), &Patch::Apply(&svc))
        .await
        .context("creating the flagger-loadtester Service")?;
    Ok(())
}

/// The podinfo Deployment of Flagger's tutorials.
pub async fn podinfo(client: &Client, ns: &str, image: &str) -> anyhow::Result<()> {
    workload(client, ns, "podinfo", image).await
}

/// A podinfo Deployment named `name`.
pub async fn workload(client: &Client, ns: &str, name: &str, image: &str) -> anyhow::Result<()> {
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    "annotations": {
                        localkube::dataplane::LATENCY: "5ms-40ms",
                        // Scraped as Flagger's podinfo is (metrics on port 9797).
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": "9797"
                    }
                },
                "spec": {"containers": [{
                    "name": "podinfod",
                    "image": image,
                    "ports": [{"name": "http", "containerPort": 9898}]
                }]}
            }
        }
    }))?;
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(name, &apply(), &Patch::Apply(&d))
        .await
        .with_context(|| format!("creating the {name} Deployment"))?;
    Ok(())
}

/// A weighted canary on a router's `provider`, with `router_spec` (the router's row in
/// [`super::routers`]) merged into its spec: the traffic of its load test (to `url`,
/// `http://frontend.<ns>:9898/` for a mesh, `http://app.example.com/` for an ingress gateway)
/// is split by the routing objects the controller writes, in steps of 20% up to 60%, checked
/// by the builtin checks on the series the data plane records for that router. The load test
/// starts with the first step, so a gateway's series of the canary may not have reached
/// Prometheus by the first check or two: the no-data policy `hold` waits for them instead of
/// failing the check.
pub async fn weighted_canary(
    client: &Client,
    ns: &str,
    interval: &str,
    provider: &str,
    url: &str,
    router_spec: serde_json::Value,
) -> anyhow::Result<()> {
    let mut spec = json!({
        "provider": provider,
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "frontend"},
        "progressDeadlineSeconds": 60,
        "service": {"port": 9898, "targetPort": 9898},
        "analysis": {
            "interval": interval,
            "threshold": 2,
            "maxWeight": 60,
            "stepWeight": 20,
            "metrics": [
                {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "10s"},
                {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "10s"}
            ],
            "webhooks": [{
                "name": "load-test",
                "type": "rollout",
                "url": format!("http://flagger-loadtester.{ns}/"),
                "timeout": "5s",
                "metadata": {"cmd": format!("hey -z 1m -q 20 -c 2 {url}")}
            }]
        }
    });
    merge(&mut spec, router_spec);
    let c: Canary = serde_json::from_value(json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        // Until the load test has been scraped a check has no data: held, not failed.
        "metadata": {"name": "frontend", "namespace": ns,
                     "annotations": {flagger_api::labels::NO_DATA_POLICY: "hold"}},
        "spec": spec,
    }))?;
    Api::<Canary>::namespaced(client.clone(), ns)
        .patch("frontend", &apply(), &Patch::Apply(&c))
        .await
        .context("creating the frontend Canary")?;
    Ok(())
}

/// Merges the object `extra` into `into`, key by key (objects recursively).
fn merge(into: &mut serde_json::Value, extra: serde_json::Value) {
    match (into, extra) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The Canary: kubernetes provider (blue/green), builtin checks, an acceptance test before the
/// rollout and a load test during it, both through the load tester.
pub async fn canary(
    client: &Client,
    ns: &str,
    interval: &str,
    iterations: u32,
) -> anyhow::Result<()> {
    let c: Canary = serde_json::from_value(json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        // Until the load test has been scraped a check has no data: held, not failed.
        "metadata": {"name": "podinfo", "namespace": ns,
                     "annotations": {flagger_api::labels::NO_DATA_POLICY: "hold"}},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 60,
            "service": {"port": 9898, "targetPort": 9898},
            "analysis": {
                "interval": interval,
                "threshold": 3,
                "iterations": iterations,
                "metrics": [
                    {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "10s"},
                    {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "10s"}
                ],
                "webhooks": [
                    {
                        "name": "acceptance-test",
                        "type": "pre-rollout",
                        "url": format!("http://flagger-loadtester.{ns}/"),
                        "timeout": "30s",
                        "metadata": {
                            "type": "bash",
                            // A single-label name, as Flagger's flows write it: the load
                            // tester resolves it in its own namespace.
                            "cmd": "curl -sd 'test' http://podinfo-canary:9898/token | grep token"
                        }
                    },
                    {
                        "name": "load-test",
                        "type": "rollout",
                        "url": format!("http://flagger-loadtester.{ns}/"),
                        "timeout": "5s",
                        "metadata": {
                            "cmd": format!("hey -z 1m -q 10 -c 2 http://podinfo-canary.{ns}:9898/")
                        }
                    }
                ]
            }
        }
    }))?;
    Api::<Canary>::namespaced(client.clone(), ns)
        .patch("podinfo", &apply(), &Patch::Apply(&c))
        .await
        .context("creating the podinfo Canary")?;
    Ok(())
}
