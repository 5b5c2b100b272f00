//! Apache APISIX (`apisix`): the ApisixRoute `<routeRef>-<apex>-canary`
//! (`apisix.apache.org/v2`) derived from the route `routeRef` names (reference §4.11), and
//! reading the weights back.
//!
//! The user's route must have an HTTP rule whose one backend is the apex Service. The canary
//! route keeps the user's spec with `http` reduced to that rule, at priority 10000 (so it wins
//! over the user's rule for the same requests), and with two backends: the user's backend
//! pointed at `<apex>-primary` and a copy (same port, `resolveGranularity` and `subset`) for
//! `<apex>-canary`, weights written even at 0. Labels and annotations are the user's route's
//! (the kubectl last-applied annotation excepted). APISIX has no A/B routing in Flagger.

use serde_json::{Map, Value, json};

use super::common::RoutingError;
use super::contour::weights_from_primary;
use super::descriptor::Descriptor;
use super::observer::Observer;
use crate::effects::Routes;
use crate::generated::{self, Names};
use crate::gotemplate::Model;
use crate::model::Provider;
use crate::model::{BuiltinMetric, ValidatedCanary};
use flagger_api::labels::LAST_APPLIED;

/// API version of the ApisixRoute written.
pub const API_VERSION: &str = "apisix.apache.org/v2";
/// The priority of the canary rule.
pub const PRIORITY: u32 = 10000;

/// `<routeRef>-<apex>-canary`.
pub fn canary_route_name(canary: &ValidatedCanary, route_ref: &str) -> String {
    format!("{route_ref}-{}-canary", canary.apex)
}

/// The index of the first HTTP rule with a backend named `service`.
fn rule_index(rules: &[Value], service: &str) -> Option<usize> {
    rules.iter().position(|r| {
        r["backends"]
            .as_array()
            .is_some_and(|bs| bs.iter().any(|b| b["serviceName"] == service))
    })
}

fn backend_weight(b: &Value, service: String, weight: u32) -> Value {
    let mut b = b.clone();
    b["serviceName"] = json!(service);
    b["weight"] = json!(weight);
    b
}

/// The canary ApisixRoute for these routes, derived from the user's `route` (the one
/// `routeRef` names).
pub fn canary_route(
    canary: &ValidatedCanary,
    route: &Value,
    routes: Routes,
) -> Result<Value, RoutingError> {
    let source = route["metadata"]["name"].as_str().unwrap_or_default();
    let what = || format!("APISIX route {source}.{}", canary.namespace);
    let rules = route["spec"]["http"]
        .as_array()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| RoutingError::Missing(format!("{}'s spec.http is empty", what())))?;
    let i = rule_index(rules, &canary.apex).ok_or_else(|| {
        RoutingError::Missing(format!(
            "Can not find {} backend on apisix route {source}.{}",
            canary.apex, canary.namespace
        ))
    })?;
    let mut rule = rules[i].clone();
    let backends = rule["backends"].as_array().cloned().unwrap_or_default();
    let [backend] = backends.as_slice() else {
        return Err(RoutingError::Unsupported(format!(
            "{}'s http route {} has {} backends; only one http backend is supported",
            what(),
            rule["name"].as_str().unwrap_or_default(),
            backends.len()
        )));
    };
    let mut canary_backend = Map::new();
    for field in ["servicePort", "resolveGranularity", "subset"] {
        if let Some(v) = backend.get(field).filter(|v| !v.is_null()) {
            canary_backend.insert(field.into(), v.clone());
        }
    }
    rule["priority"] = json!(PRIORITY);
    rule["backends"] = json!([
        backend_weight(backend, canary.primary_service(), routes.primary),
        backend_weight(
            &Value::Object(canary_backend),
            canary.canary_service(),
            routes.canary
        ),
    ]);
    let mut spec = route["spec"].clone();
    spec["http"] = json!([rule]);
    let mut annotations = route["metadata"]["annotations"].clone();
    if let Some(a) = annotations.as_object_mut() {
        a.remove(LAST_APPLIED);
    }
    Ok(json!({
        "apiVersion": API_VERSION,
        "kind": "ApisixRoute",
        "metadata": {
            "name": canary_route_name(canary, source),
            "namespace": canary.namespace,
            "labels": route["metadata"]["labels"],
            "annotations": annotations,
        },
        "spec": spec,
    }))
}

/// Reads the weights from the rule of the canary route that has the primary backend: its
/// weight, the canary getting the rest (as Flagger reads them). No mirroring.
pub fn read_routes(canary: &ValidatedCanary, route: &Value) -> Result<Routes, RoutingError> {
    let name = route["metadata"]["name"].as_str().unwrap_or_default();
    let what = || format!("APISIX route {name}.{}", canary.namespace);
    let rules = route["spec"]["http"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let primary = canary.primary_service();
    let backend = rule_index(rules, &primary)
        .and_then(|i| {
            rules[i]["backends"]
                .as_array()?
                .iter()
                .find(|b| b["serviceName"] == primary.as_str())
        })
        .ok_or_else(|| RoutingError::NoRoutes(format!("{} has no backend {primary}", what())))?;
    weights_from_primary(&backend["weight"], what)
}

// === builtin checks ===

/// The APISIX observer: APISIX's status counter and request latency histogram (ms) of the
/// canary route's rules (`<namespace>_<routeRef>-<target>-canary_<rule>`).
pub struct ApisixObserver;

/// The APISIX observer.
pub static OBSERVER: ApisixObserver = ApisixObserver;

impl Observer for ApisixObserver {
    fn query(&self, metric: BuiltinMetric, m: &Model) -> String {
        let route = format!(
            r#"route=~"{}_{}-{}-canary_.+""#,
            m.namespace, m.route, m.target
        );
        let i = &m.interval;
        match metric {
            BuiltinMetric::RequestSuccessRate => format!(
                r#"sum(rate(apisix_http_status{{{route},code!~"5.."}}[{i}])) / sum(rate(apisix_http_status{{{route}}}[{i}])) * 100"#
            ),
            BuiltinMetric::RequestDuration => format!(
                r#"histogram_quantile(0.99, sum(rate(apisix_http_latency_bucket{{type=~"request",{route}}}[{i}])) by (le))"#
            ),
        }
    }
}

/// `apisix`: the ApisixRoute `<routeRef>-<apex>-canary`.
pub static PROVIDER: Descriptor =
    Descriptor::new(Provider::Apisix, "apisix", &OBSERVER, |n: &Names<'_>| {
        n.route_ref
            .map(|r| {
                generated::route(
                    "ApisixRoute",
                    "apisix.apache.org",
                    format!("{r}-{}-canary", n.apex),
                )
            })
            .into_iter()
            .collect()
    })
    .checks(|spec| {
        if spec.route_ref.is_some() {
            return Vec::new();
        }
        vec![super::descriptor::Finding::error(
            "spec.routeRef",
            "missing: the apisix provider derives the canary route from an existing \
             ApisixRoute; set routeRef (apiVersion apisix.apache.org/v2, kind ApisixRoute, \
             name)",
        )]
    });

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::observer::tests::model;

    #[test]
    fn apisix_observer_reads_the_canary_routes_series() {
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestSuccessRate, &model("1m")),
            r#"sum(rate(apisix_http_status{route=~"test_podinfo-podinfo-canary_.+",code!~"5.."}[1m])) / sum(rate(apisix_http_status{route=~"test_podinfo-podinfo-canary_.+"}[1m])) * 100"#
        );
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestDuration, &model("1m")),
            r#"histogram_quantile(0.99, sum(rate(apisix_http_latency_bucket{type=~"request",route=~"test_podinfo-podinfo-canary_.+"}[1m])) by (le))"#
        );
        assert_eq!(OBSERVER.duration_ms(12.7), 12.0);
    }
}
