//! Knative (`knative`): the canary's target is a Knative Service (`serving.knative.dev/v1`)
//! and the router writes no object of its own (reference §3.11, §4.14). The primary is the
//! revision named by the Service's `flagger.app/primary-revision` annotation, the canary is
//! the latest created revision, and the weights are the Service's `spec.traffic`: the latest
//! revision's percent and the primary revision's. They are read back from `status.traffic`,
//! which Knative writes once the route is programmed.
//!
//! Promotion moves the annotation to the latest created revision; a rollback sets the
//! traffic back on the primary revision, which the Service keeps serving.

use serde_json::{Value, json};

use flagger_api::labels::PRIMARY_REVISION;

use super::common::RoutingError;
use super::descriptor::Descriptor;
use super::observer::Standard;
use crate::effects::Routes;
use crate::model::Provider;
use crate::model::ValidatedCanary;

/// API version of the Knative Service.
pub const API_VERSION: &str = "serving.knative.dev/v1";

/// The revision the Service's annotation names as primary.
pub fn primary_revision(service: &Value) -> Option<&str> {
    service["metadata"]["annotations"][PRIMARY_REVISION]
        .as_str()
        .filter(|r| !r.is_empty())
}

/// The Service's latest created revision (`status.latestCreatedRevisionName`).
pub fn latest_created_revision(service: &Value) -> Option<&str> {
    service["status"]["latestCreatedRevisionName"]
        .as_str()
        .filter(|r| !r.is_empty())
}

/// The `spec.traffic` block for these weights: the latest revision (the canary) first, then
/// the primary revision.
pub fn traffic(primary_revision: &str, routes: Routes) -> Value {
    json!([
        {"latestRevision": true, "percent": routes.canary},
        {"revisionName": primary_revision, "percent": routes.primary},
    ])
}

/// What the router applies to the Knative Service: the primary-revision annotation and, when
/// `routes` are given, the traffic block (a server-side apply patch: only these fields).
pub fn service_patch(
    canary: &ValidatedCanary,
    primary_revision: &str,
    routes: Option<Routes>,
) -> Value {
    let mut patch = json!({
        "apiVersion": API_VERSION,
        "kind": "Service",
        "metadata": {
            "name": canary.target.name,
            "namespace": canary.namespace,
            "annotations": {PRIMARY_REVISION: primary_revision},
        },
    });
    if let Some(routes) = routes {
        patch["spec"] = json!({"traffic": traffic(primary_revision, routes)});
    }
    patch
}

/// Reads the weights from the Service's `status.traffic`: the entry with `latestRevision:
/// true` is the canary, the one naming the primary revision the primary. A missing entry or
/// percent is an error, as in Flagger.
pub fn read_routes(canary: &ValidatedCanary, service: &Value) -> Result<Routes, RoutingError> {
    let name = format!("{}.{}", canary.target.name, canary.namespace);
    let primary = primary_revision(service).ok_or_else(|| {
        RoutingError::NoRoutes(format!("Knative Service {name} annotation not found"))
    })?;
    let entries = service["status"]["traffic"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let latest = entries
        .iter()
        .find(|t| t["latestRevision"].as_bool() == Some(true));
    let named = entries
        .iter()
        .find(|t| t["revisionName"].as_str() == Some(primary));
    let (Some(latest), Some(named)) = (latest, named) else {
        return Err(RoutingError::NoRoutes(format!(
            "Knative Service {name} traffic spec invalid"
        )));
    };
    let percent = |t: &Value, role: &str| {
        t["percent"]
            .as_u64()
            .map(|p| p.min(100) as u32)
            .ok_or_else(|| {
                RoutingError::NoRoutes(format!(
                    "Knative Service {name} {role} revision traffic percent does not exist"
                ))
            })
    };
    Ok(Routes::weights(
        percent(named, "primary")?,
        percent(latest, "canary")?,
    ))
}

/// Whether a Revision is ready (its `Ready` condition is `True`).
pub fn revision_ready(revision: &Value) -> bool {
    revision["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

// === builtin checks ===

/// Knative's observer: the ingress gateway's Envoy statistics of the cluster of the latest
/// created revision, `<namespace>/<revision>` (the `route` of the model, reference §3.11).
pub static OBSERVER: Standard = Standard {
    requests: "envoy_cluster_upstream_rq",
    success: r#"envoy_response_code!~"5.*""#,
    latency: "envoy_cluster_upstream_rq_time_bucket",
    selector: |m| format!(r#"envoy_cluster_name=~"{}/{}""#, m.namespace, m.route),
    seconds: false,
};

/// `knative`: no routing object of its own (the Knative Service's traffic block).
pub static PROVIDER: Descriptor = Descriptor::new(
    Provider::Knative,
    "knative",
    &OBSERVER,
    crate::generated::no_routes,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BuiltinMetric;
    use crate::routing::observer::Observer;
    use crate::routing::observer::tests::model;

    #[test]
    fn knatives_queries_select_the_latest_revisions_cluster() {
        let mut m = model("1m");
        m.route = "podinfo-00002".into();
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestSuccessRate, &m),
            r#"sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"test/podinfo-00002",envoy_response_code!~"5.*"}[1m])) / sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"test/podinfo-00002"}[1m])) * 100"#
        );
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestDuration, &m),
            r#"histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=~"test/podinfo-00002"}[1m])) by (le))"#
        );
    }

    #[test]
    fn a_revision_is_ready_by_its_condition() {
        assert!(revision_ready(
            &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        ));
        assert!(!revision_ready(
            &json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}})
        ));
        assert!(!revision_ready(&json!({})));
    }
}
