//! Gloo Edge (`gloo`): the Upstreams `<ns>-<apex>-primaryupstream-<port>` and
//! `<ns>-<apex>-canaryupstream-<port>` (`gloo.solo.io/v1`) and the RouteTable `<apex>`
//! (`gateway.solo.io/v1`) that splits between them (reference §4.8), and reading the weights
//! back.
//!
//! Each Upstream points Gloo at one of the generated Services (`kube`: name, namespace,
//! `service.port` and the Service's selector). With `upstreamRef`, the Upstream named there
//! is the template: its `labels`, `sslConfig`, `circuitBreakers`, `connectionConfig`,
//! `loadBalancerConfig`, `useHttp2`, `initialStreamWindowSize`,
//! `initialConnectionWindowSize` and `httpProxyHostname` are copied when the Upstream is
//! created, and afterwards only `loadBalancerConfig` follows the template (as Flagger does:
//! [`upstream_load_balancer_patch`]). Flagger spells the last field `httpProxyHostName`,
//! which the API server prunes; it is copied under Gloo's own name here.
//!
//! The RouteTable has one route, `inheritablePathMatchers: true` (the path comes from the
//! VirtualService that delegates to it), with a multi-destination action over the two
//! Upstreams. A/B testing adds one matcher with every header of `analysis.match` (Gloo ANDs
//! the headers of a matcher): `exact` as a value, `regex` as a regex value. Gloo has no prefix
//! or suffix header match (Flagger writes a bare name, which matches any value): refused.
//! Requests that match no route of the table get Gloo's 404, so during an A/B test the
//! requests without the headers are not served by this table, as in Flagger. Flagger's code
//! also reads `analysis.match[].method`, which its CRD prunes: never set, not built here.

use serde_json::{Map, Value, json};

use super::common::{RoutingError, apex_metadata};
use super::contour::weights_from_primary;
use super::descriptor::Descriptor;
use super::observer::Standard;
use crate::effects::Routes;
use crate::generated::{self, Names};
use crate::model::Provider;
use crate::model::{Strategy, ValidatedCanary};

/// API version of the Upstreams.
pub const UPSTREAM_API_VERSION: &str = "gloo.solo.io/v1";
/// API version of the RouteTable.
pub const ROUTE_TABLE_API_VERSION: &str = "gateway.solo.io/v1";

/// The Upstream fields copied from the `upstreamRef` template at creation.
pub const TEMPLATE_FIELDS: [&str; 9] = [
    "labels",
    "sslConfig",
    "circuitBreakers",
    "connectionConfig",
    "loadBalancerConfig",
    "useHttp2",
    "initialStreamWindowSize",
    "initialConnectionWindowSize",
    "httpProxyHostname",
];

/// `<ns>-<apex>-primaryupstream-<port>`.
pub fn primary_upstream(canary: &ValidatedCanary) -> String {
    format!(
        "{}-{}-primaryupstream-{}",
        canary.namespace, canary.apex, canary.service.port
    )
}

/// `<ns>-<apex>-canaryupstream-<port>`.
pub fn canary_upstream(canary: &ValidatedCanary) -> String {
    format!(
        "{}-{}-canaryupstream-{}",
        canary.namespace, canary.apex, canary.service.port
    )
}

/// The Upstream for the generated Service `service` (`<apex>-primary` or `<apex>-canary`),
/// whose selector is `selector`, named `name`; `template` is the `upstreamRef` Upstream, if
/// any.
pub fn upstream(
    canary: &ValidatedCanary,
    name: &str,
    service: &str,
    selector: &Value,
    template: Option<&Value>,
) -> Value {
    let mut spec = Map::new();
    if let Some(t) = template.and_then(|t| t["spec"].as_object()) {
        for field in TEMPLATE_FIELDS {
            if let Some(v) = t.get(field).filter(|v| !v.is_null()) {
                spec.insert(field.to_string(), v.clone());
            }
        }
    }
    let mut kube = json!({
        "serviceName": service,
        "serviceNamespace": canary.namespace,
        "servicePort": canary.service.port,
    });
    if selector.as_object().is_some_and(|s| !s.is_empty()) {
        kube["selector"] = selector.clone();
    }
    spec.insert("kube".into(), kube);
    json!({
        "apiVersion": UPSTREAM_API_VERSION,
        "kind": "Upstream",
        "metadata": {"name": name, "namespace": canary.namespace},
        "spec": spec,
    })
}

/// The merge patch that brings an existing Upstream's `loadBalancerConfig` to the template's,
/// or `None` when they already agree (or there is no template, or it sets none: Flagger's
/// patch then carries nothing). The policy is a one-of: the existing policy's keys the
/// template does not have are removed (Flagger's merge patch leaves them, so that the Upstream
/// ends with two policies).
pub fn upstream_load_balancer_patch(existing: &Value, template: Option<&Value>) -> Option<Value> {
    let want = template?["spec"]["loadBalancerConfig"].clone();
    let have = &existing["spec"]["loadBalancerConfig"];
    if want.is_null() || *have == want {
        return None;
    }
    let mut patch = want;
    if let (Some(p), Some(h)) = (patch.as_object_mut(), have.as_object()) {
        for k in h.keys() {
            p.entry(k.clone()).or_insert(Value::Null);
        }
    }
    Some(json!({"spec": {"loadBalancerConfig": patch}}))
}

/// The A/B matchers (none when the canary is not an A/B test).
fn matchers(canary: &ValidatedCanary) -> Result<Vec<Value>, RoutingError> {
    let Strategy::AbTesting { matches, .. } = &canary.analysis.strategy else {
        return Ok(Vec::new());
    };
    let mut headers = Vec::new();
    for m in matches {
        for (name, cond) in m.headers.iter().flatten() {
            if let Some(re) = cond.regex.as_deref().filter(|r| !r.is_empty()) {
                headers.push(json!({"name": name, "value": re, "regex": true}));
            } else if let Some(v) = &cond.exact {
                headers.push(json!({"name": name, "value": v}));
            } else {
                return Err(RoutingError::Unsupported(format!(
                    "RouteTable {}.{}: Gloo cannot match header {name} by prefix or suffix; \
                     use exact or regex",
                    canary.apex, canary.namespace
                )));
            }
        }
    }
    Ok(if headers.is_empty() {
        Vec::new()
    } else {
        vec![json!({"headers": headers})]
    })
}

fn destination(canary: &ValidatedCanary, upstream: String, weight: u32) -> Value {
    let mut d =
        json!({"destination": {"upstream": {"name": upstream, "namespace": canary.namespace}}});
    // Flagger's type omits a zero weight.
    if weight > 0 {
        d["weight"] = json!(weight);
    }
    d
}

/// The RouteTable `<apex>` for these routes.
pub fn route_table(canary: &ValidatedCanary, routes: Routes) -> Result<Value, RoutingError> {
    let mut route = json!({
        "inheritablePathMatchers": true,
        "routeAction": {"multi": {"destinations": [
            destination(canary, primary_upstream(canary), routes.primary),
            destination(canary, canary_upstream(canary), routes.canary),
        ]}},
    });
    let m = matchers(canary)?;
    if !m.is_empty() {
        route["matchers"] = Value::Array(m);
    }
    let (labels, annotations) = apex_metadata(canary);
    Ok(json!({
        "apiVersion": ROUTE_TABLE_API_VERSION,
        "kind": "RouteTable",
        "metadata": {
            "name": canary.apex,
            "namespace": canary.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {"routes": [route]},
    }))
}

/// Reads the weights from the first route: the primary Upstream's weight, the canary getting
/// the rest (as Flagger reads them). Gloo routing here has no mirroring.
pub fn read_routes(canary: &ValidatedCanary, table: &Value) -> Result<Routes, RoutingError> {
    let what = || format!("RouteTable {}.{}", canary.apex, canary.namespace);
    let destinations = table
        .pointer("/spec/routes/0/routeAction/multi/destinations")
        .and_then(Value::as_array)
        .filter(|d| d.len() >= 2)
        .ok_or_else(|| RoutingError::NoRoutes(format!("{} destinations not found", what())))?;
    let primary = primary_upstream(canary);
    let d = destinations
        .iter()
        .find(|d| d.pointer("/destination/upstream/name") == Some(&json!(primary)))
        .ok_or_else(|| {
            RoutingError::NoRoutes(format!("{} does not route to Upstream {primary}", what()))
        })?;
    weights_from_primary(&d["weight"], what)
}

// === builtin checks ===

/// The Gloo observer: Envoy's upstream statistics of the canary Upstream's cluster (Gloo names
/// a cluster `<upstream>_<upstream namespace>`), by the target's name as Flagger selects it.
pub static OBSERVER: Standard = Standard {
    requests: "envoy_cluster_upstream_rq",
    success: r#"envoy_response_code!~"5.*""#,
    latency: "envoy_cluster_upstream_rq_time_bucket",
    selector: |m| {
        format!(
            r#"envoy_cluster_name=~"{}-{}-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+""#,
            m.namespace, m.target
        )
    },
    seconds: false,
};

/// `gloo`: the RouteTable `<apex>` (and the Upstreams, owned by it); A/B by headers. The
/// `-mesh-provider` flag takes any `gloo*`.
pub static PROVIDER: Descriptor =
    Descriptor::new(Provider::Gloo, "gloo", &OBSERVER, |n: &Names<'_>| {
        vec![generated::route(
            "RouteTable",
            "solo.io",
            n.apex.to_string(),
        )]
    })
    .ab()
    .flag_prefix();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BuiltinMetric;
    use crate::routing::observer::Observer;
    use crate::routing::observer::tests::model;

    #[test]
    fn gloo_observer_reads_the_canary_upstreams_cluster() {
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestSuccessRate, &model("30s")),
            r#"sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"test-podinfo-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+",envoy_response_code!~"5.*"}[30s])) / sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"test-podinfo-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+"}[30s])) * 100"#
        );
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestDuration, &model("30s")),
            r#"histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=~"test-podinfo-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+"}[30s])) by (le))"#
        );
    }

    #[test]
    fn the_load_balancer_follows_the_template_and_nothing_else() {
        let template =
            json!({"spec": {"loadBalancerConfig": {"roundRobin": {}}, "useHttp2": true}});
        let existing = json!({"spec": {"loadBalancerConfig": {"random": {}}, "useHttp2": false}});
        assert_eq!(
            upstream_load_balancer_patch(&existing, Some(&template)),
            Some(json!({"spec": {"loadBalancerConfig": {"roundRobin": {}, "random": null}}}))
        );
        let same = json!({"spec": {"loadBalancerConfig": {"roundRobin": {}}}});
        assert_eq!(upstream_load_balancer_patch(&same, Some(&template)), None);
        assert_eq!(upstream_load_balancer_patch(&existing, None), None);
        let bare = json!({"spec": {"useHttp2": true}});
        assert_eq!(upstream_load_balancer_patch(&existing, Some(&bare)), None);
    }
}
