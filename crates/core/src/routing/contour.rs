//! Contour (`contour`): the HTTPProxy `<apex>` (`projectcontour.io/v1`, reference §4.7), and
//! reading the weights back from it.
//!
//! The proxy has no virtual host: the user's root HTTPProxy includes it. Its one route (two
//! for A/B testing) sends the request to `<apex>-primary` and `<apex>-canary` on
//! `service.port` by weight, each service setting Linkerd's `l5d-dst-override` header (so a
//! meshed Envoy keeps the Service as destination). `service.match[0].uri.prefix` (default `/`)
//! is the route's prefix condition, `service.timeout` its response timeout (idle `5m`),
//! `service.retries` its retry policy. `-ingress-class` becomes `spec.ingressClassName`.
//!
//! A/B testing: the first route carries one condition per header of `analysis.match` (the
//! prefix repeated in each, `exact`, or `contains` for `prefix` and `suffix` matches), the
//! second is the default route (primary 100). As in Flagger, every header condition repeats
//! the prefix: Contour accepts one path condition per route, so more than one header makes
//! the route invalid in Contour (its routes are dropped). A `regex` header match cannot be
//! written (Contour has no regex header condition) and is refused.

use serde_json::{Value, json};

use super::common::{RoutingError, apex_metadata};
use super::descriptor::Descriptor;
use super::observer::Standard;
use crate::effects::Routes;
use crate::generated::{self, Names};
use crate::model::Provider;
use crate::model::{Strategy, ValidatedCanary};

/// API version of the HTTPProxy written.
pub const API_VERSION: &str = "projectcontour.io/v1";

/// The route's path prefix: `service.match[0].uri.prefix`, else `/`.
fn prefix(canary: &ValidatedCanary) -> String {
    canary
        .service
        .r#match
        .as_deref()
        .and_then(|m| m.first())
        .and_then(|m| m.uri.as_ref())
        .and_then(|u| u.prefix.clone())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

/// The A/B header conditions (empty when the canary is not an A/B test).
fn header_conditions(canary: &ValidatedCanary, prefix: &str) -> Result<Vec<Value>, RoutingError> {
    let Strategy::AbTesting { matches, .. } = &canary.analysis.strategy else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for m in matches {
        for (name, cond) in m.headers.iter().flatten() {
            let header = if let Some(v) = cond.prefix.as_ref().or(cond.suffix.as_ref()) {
                json!({"name": name, "contains": v})
            } else if let Some(v) = &cond.exact {
                json!({"name": name, "exact": v})
            } else {
                return Err(RoutingError::Unsupported(format!(
                    "HTTPProxy {}.{}: Contour cannot match header {name} by regex; use exact, \
                     prefix or suffix",
                    canary.apex, canary.namespace
                )));
            };
            out.push(json!({"prefix": prefix, "header": header}));
        }
    }
    Ok(out)
}

fn service(canary: &ValidatedCanary, name: String, weight: u32) -> Value {
    let port = canary.service.port;
    let mut s = json!({
        "name": name,
        "port": port,
        "requestHeadersPolicy": {"set": [{
            "name": "l5d-dst-override",
            "value": format!("{name}.{}.svc.cluster.local:{port}", canary.namespace),
        }]},
    });
    // Flagger's type omits a zero weight.
    if weight > 0 {
        s["weight"] = json!(weight);
    }
    s
}

fn route(canary: &ValidatedCanary, conditions: Vec<Value>, routes: Routes) -> Value {
    let svc = &canary.service;
    let mut r = json!({
        "services": [
            service(canary, canary.primary_service(), routes.primary),
            service(canary, canary.canary_service(), routes.canary),
        ],
    });
    if !conditions.is_empty() {
        r["conditions"] = Value::Array(conditions);
    }
    if let Some(t) = svc.timeout.as_deref().filter(|t| !t.is_empty()) {
        r["timeoutPolicy"] = json!({"response": t, "idle": "5m"});
    }
    if let Some(retries) = &svc.retries {
        let mut policy = json!({"count": retries.attempts.unwrap_or(0)});
        if let Some(t) = retries.per_try_timeout.as_deref().filter(|t| !t.is_empty()) {
            policy["perTryTimeout"] = json!(t);
        }
        let on: Vec<&str> = retries
            .retry_on
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter(|c| !c.is_empty())
            .collect();
        if !on.is_empty() {
            policy["retryOn"] = json!(on);
        }
        r["retryPolicy"] = policy;
    }
    r
}

/// The HTTPProxy `<apex>` for these routes. `ingress_class` is the controller's
/// `-ingress-class` (empty: none).
pub fn http_proxy(
    canary: &ValidatedCanary,
    routes: Routes,
    ingress_class: &str,
) -> Result<Value, RoutingError> {
    let prefix = prefix(canary);
    let plain = vec![json!({"prefix": prefix})];
    let headers = header_conditions(canary, &prefix)?;
    let spec_routes = if matches!(canary.analysis.strategy, Strategy::AbTesting { .. }) {
        vec![
            route(canary, headers, routes),
            route(canary, plain, Routes::PRIMARY),
        ]
    } else {
        vec![route(canary, plain, routes)]
    };
    let (labels, annotations) = apex_metadata(canary);
    let mut spec = json!({"routes": spec_routes});
    if !ingress_class.is_empty() {
        spec["ingressClassName"] = json!(ingress_class);
    }
    Ok(json!({
        "apiVersion": API_VERSION,
        "kind": "HTTPProxy",
        "metadata": {
            "name": canary.apex,
            "namespace": canary.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    }))
}

/// Reads the weights from the first route: the primary service's weight, the canary getting
/// the rest (as Flagger reads them). Contour has no mirroring.
pub fn read_routes(canary: &ValidatedCanary, proxy: &Value) -> Result<Routes, RoutingError> {
    let services = proxy
        .pointer("/spec/routes/0/services")
        .and_then(Value::as_array)
        .filter(|s| s.len() >= 2)
        .ok_or_else(|| {
            RoutingError::NoRoutes(format!(
                "HTTPProxy {}.{} services not found",
                canary.apex, canary.namespace
            ))
        })?;
    let primary = services
        .iter()
        .find(|s| s["name"] == canary.primary_service().as_str())
        .ok_or_else(|| {
            RoutingError::NoRoutes(format!(
                "HTTPProxy {}.{} does not route to {}",
                canary.apex,
                canary.namespace,
                canary.primary_service()
            ))
        })?;
    weights_from_primary(&primary["weight"], || {
        format!("HTTPProxy {}.{}", canary.apex, canary.namespace)
    })
}

/// The routes when the primary has weight `w` (absent: 0) and the canary the rest.
pub(crate) fn weights_from_primary(
    w: &Value,
    what: impl FnOnce() -> String,
) -> Result<Routes, RoutingError> {
    let primary = match w {
        Value::Null => 0,
        w => w
            .as_u64()
            .and_then(|w| u32::try_from(w).ok())
            .filter(|w| *w <= 100)
            .ok_or_else(|| RoutingError::Decode(format!("{}: weight {w} is not 0-100", what())))?,
    };
    Ok(Routes::weights(primary, 100 - primary))
}

// === builtin checks ===

/// The Contour observer: Envoy's upstream statistics of the canary Service's cluster
/// (`<namespace>_<apex>-canary_<port>`, Contour's cluster stat name).
pub static OBSERVER: Standard = Standard {
    requests: "envoy_cluster_upstream_rq",
    success: r#"envoy_response_code!~"5.*""#,
    latency: "envoy_cluster_upstream_rq_time_bucket",
    selector: |m| {
        format!(
            r#"envoy_cluster_name=~"{}_{}-canary_[0-9a-zA-Z-]+""#,
            m.namespace, m.service
        )
    },
    seconds: false,
};

/// `contour`: the HTTPProxy `<apex>`; A/B by headers.
pub static PROVIDER: Descriptor =
    Descriptor::new(Provider::Contour, "contour", &OBSERVER, |n: &Names<'_>| {
        vec![generated::route(
            "HTTPProxy",
            "projectcontour.io",
            n.apex.to_string(),
        )]
    })
    .ab();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BuiltinMetric;
    use crate::routing::observer::Observer;
    use crate::routing::observer::tests::model;

    #[test]
    fn contour_observer_reads_envoy_cluster_stats_of_the_canary_service() {
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestSuccessRate, &model("1m")),
            r#"sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"test_podinfo-canary_[0-9a-zA-Z-]+",envoy_response_code!~"5.*"}[1m])) / sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"test_podinfo-canary_[0-9a-zA-Z-]+"}[1m])) * 100"#
        );
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestDuration, &model("1m")),
            r#"histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=~"test_podinfo-canary_[0-9a-zA-Z-]+"}[1m])) by (le))"#
        );
        assert_eq!(OBSERVER.duration_ms(12.9), 12.0);
    }

    #[test]
    fn weights_are_read_from_the_primary() {
        assert_eq!(
            weights_from_primary(&json!(90), String::new),
            Ok(Routes::weights(90, 10))
        );
        assert_eq!(
            weights_from_primary(&Value::Null, String::new),
            Ok(Routes::CANARY)
        );
        assert!(weights_from_primary(&json!(101), String::new).is_err());
        assert!(weights_from_primary(&json!("x"), String::new).is_err());
    }
}
