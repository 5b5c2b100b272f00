//! Kuma (`kuma`): the TrafficRoute `<apex>` (`kuma.io/v1alpha1`, cluster-scoped, reference
//! §4.12), reading the weights back, and Kuma's builtin checks.
//!
//! Kuma names a Service port `<service>_<namespace>_svc_<port>` (its `kuma.io/service` tag).
//! The TrafficRoute sends every source (`kuma.io/service: "*"`) to the apex tag and splits it
//! between the primary's and the canary's tags. The mesh is not in the spec: it is the
//! object's top-level `mesh`, taken from the Canary's `kuma.io/mesh` annotation (`default`).
//! A TrafficRoute is cluster-scoped, so it carries no owner reference (a namespaced Canary
//! cannot own it) and two canaries with the same apex name in different namespaces would
//! share it, as in Flagger.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::common::{RoutingError, apex_metadata, check_weights};
use super::descriptor::Descriptor;
use super::observer::Standard;
use crate::effects::Routes;
use crate::generated::{self, Names};
use crate::model::Provider;
use crate::model::ValidatedCanary;

/// API version of the TrafficRoute.
pub const API_VERSION: &str = "kuma.io/v1alpha1";

/// The Canary annotation naming the Kuma mesh.
pub const MESH_ANNOTATION: &str = "kuma.io/mesh";

/// The tag Kuma gives a Service's port.
const SERVICE_TAG: &str = "kuma.io/service";

/// The mesh of a Canary: its `kuma.io/mesh` annotation, or `default`.
pub fn mesh_of(annotations: Option<&BTreeMap<String, String>>) -> String {
    annotations
        .and_then(|a| a.get(MESH_ANNOTATION))
        .cloned()
        .unwrap_or_else(|| "default".into())
}

/// `<service>_<namespace>_svc_<port>`.
pub fn service_tag(service: &str, namespace: &str, port: i32) -> String {
    format!("{service}_{namespace}_svc_{port}")
}

fn destination(canary: &ValidatedCanary, service: &str, weight: u32) -> Value {
    json!({
        "weight": weight,
        "destination": {SERVICE_TAG: service_tag(service, &canary.namespace, canary.service.port)},
    })
}

/// The TrafficRoute `<apex>` in `mesh` with these weights (primary first, then canary), with
/// the apex metadata and the toolkit annotations.
pub fn traffic_route(canary: &ValidatedCanary, mesh: &str, routes: Routes) -> Value {
    let (labels, annotations) = apex_metadata(canary);
    json!({
        "apiVersion": API_VERSION,
        "kind": "TrafficRoute",
        "mesh": mesh,
        "metadata": {"name": canary.apex, "labels": labels, "annotations": annotations},
        "spec": {
            "sources": [{"match": {SERVICE_TAG: "*"}}],
            "destinations": [{"match": {SERVICE_TAG: service_tag(&canary.apex, &canary.namespace, canary.service.port)}}],
            "conf": {
                "split": [
                    destination(canary, &canary.primary_service(), routes.primary),
                    destination(canary, &canary.canary_service(), routes.canary),
                ],
            },
        },
    })
}

/// Reads the weights from a TrafficRoute: the primary's is the split entry whose tag starts
/// with `<apex>-primary_`, the canary's is the rest of 100 (as Flagger reads it). Neither
/// found is an error.
pub fn read_routes(canary: &ValidatedCanary, route: &Value) -> Result<Routes, RoutingError> {
    let primary_name = canary.primary_service();
    let mut weights = None;
    for split in route["spec"]["conf"]["split"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let tag = split["destination"][SERVICE_TAG]
            .as_str()
            .unwrap_or_default();
        if tag.split('_').next() == Some(primary_name.as_str()) {
            let w = split["weight"].as_u64().unwrap_or(0).min(100) as u32;
            weights = Some((w, 100 - w));
        }
    }
    let (primary, canary_w) = weights.unwrap_or((0, 0));
    check_weights(primary, canary_w, || {
        format!(
            "TrafficRoute {} does not contain routes for {} and {}",
            canary.apex,
            primary_name,
            canary.canary_service()
        )
    })?;
    Ok(Routes::weights(primary, canary_w))
}

// === builtin checks ===

/// Kuma's observer: the Envoy statistics of the canary's data plane proxies, whose
/// `service` label is their `kuma.io/service` tag.
pub static OBSERVER: Standard = Standard {
    requests: "envoy_cluster_upstream_rq",
    success: r#"envoy_response_code!~"5.*""#,
    latency: "envoy_cluster_upstream_rq_time_bucket",
    selector: |m| {
        format!(
            r#"service=~"{}-canary_{}_svc_[0-9a-zA-Z-]+""#,
            m.target, m.namespace
        )
    },
    seconds: false,
};

/// `kuma`: the cluster-scoped TrafficRoute `<apex>`.
pub static PROVIDER: Descriptor =
    Descriptor::new(Provider::Kuma, "kuma", &OBSERVER, |n: &Names<'_>| {
        vec![generated::route(
            "TrafficRoute",
            "kuma.io",
            n.apex.to_string(),
        )]
    });

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BuiltinMetric;
    use crate::routing::observer::Observer;
    use crate::routing::observer::tests::model;

    #[test]
    fn the_mesh_comes_from_the_annotation() {
        assert_eq!(mesh_of(None), "default");
        let a = BTreeMap::from([(MESH_ANNOTATION.to_string(), "prod".to_string())]);
        assert_eq!(mesh_of(Some(&a)), "prod");
    }

    #[test]
    fn kumas_queries_select_the_canarys_proxies() {
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestSuccessRate, &model("1m")),
            r#"sum(rate(envoy_cluster_upstream_rq{service=~"podinfo-canary_test_svc_[0-9a-zA-Z-]+",envoy_response_code!~"5.*"}[1m])) / sum(rate(envoy_cluster_upstream_rq{service=~"podinfo-canary_test_svc_[0-9a-zA-Z-]+"}[1m])) * 100"#
        );
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestDuration, &model("1m")),
            r#"histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{service=~"podinfo-canary_test_svc_[0-9a-zA-Z-]+"}[1m])) by (le))"#
        );
        assert_eq!(OBSERVER.duration_ms(12.9), 12.0);
    }
}
