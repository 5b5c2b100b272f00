//! AWS App Mesh (`appmesh`, `appmesh:v1beta2`): the virtual nodes, virtual routers and virtual
//! services of a canary (reference §4.5), reading the weights back, and App Mesh's builtin
//! checks.
//!
//! App Mesh reached its end of support upstream; these objects follow Flagger's routers for
//! the users who still run it.
//!
//! * `appmesh` (`appmesh.k8s.aws/v1beta1`): VirtualNodes `<apex>`, `<apex>-primary` and
//!   `<apex>-canary` (DNS discovery of `<apex>-primary.<ns>` for the first two), and
//!   VirtualServices `<apex>.<ns>` and `<apex>-canary.<ns>`, each with its own virtual router
//!   and routes; the weights are those of `<apex>.<ns>`'s first route. `service.meshName` is
//!   required.
//! * `appmesh:v1beta2` (`appmesh.k8s.aws/v1beta2`): VirtualNodes `<apex>-primary` and
//!   `<apex>-canary` (selecting the pods of `<target>-primary` and `<target>` by the selector
//!   label, listening on the target port), VirtualRouters `<apex>` and `<apex>-canary`, and a
//!   VirtualService of each router's name; the weights are those of the router `<apex>`'s
//!   first route. The mesh is the one App Mesh's controller gives the namespace.
//!
//! The apex router (or service) sends its first route's traffic by weight; with
//! `analysis.match` it has two routes, `<apex>-a` (priority 10, the headers) by weight and
//! `<apex>-b` (priority 20) all to the primary. The `-canary` router sends all to the canary.

use serde_json::{Map, Value, json};

use flagger_api::AbMatch;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::common::{RoutingError, apex_metadata, check_weights};
use super::descriptor::Descriptor;
use super::observer::Standard;
use crate::duration::parse_go_duration;
use crate::effects::Routes;
use crate::generated::{self, Names};
use crate::model::{Provider, Strategy, ValidatedCanary};

/// The Canary annotation that turns on the virtual nodes' access log.
pub const ACCESS_LOG_ANNOTATION: &str = "appmesh.flagger.app/accesslog";

/// The App Mesh CRD version of a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1Beta1,
    V1Beta2,
}

impl Version {
    /// The version a provider routes with, if it is an App Mesh one.
    pub fn of(provider: Provider) -> Option<Version> {
        match provider {
            Provider::AppMesh => Some(Self::V1Beta1),
            Provider::AppMeshV1Beta2 => Some(Self::V1Beta2),
            _ => None,
        }
    }

    /// `appmesh.k8s.aws/<version>`.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::V1Beta1 => "appmesh.k8s.aws/v1beta1",
            Self::V1Beta2 => "appmesh.k8s.aws/v1beta2",
        }
    }
}

/// What the builders need besides the canary: whether the Canary asks for an access log
/// (`appmesh.flagger.app/accesslog: enabled`), and the selector label key of the target's
/// pods (v1beta2 pod selectors).
#[derive(Clone, Copy, Debug)]
pub struct Options<'a> {
    pub access_log: bool,
    pub selector_label: &'a str,
}

/// The object holding the weights: (kind, name).
pub fn weights_object(canary: &ValidatedCanary, v: Version) -> (&'static str, String) {
    match v {
        Version::V1Beta1 => (
            "VirtualService",
            format!("{}.{}", canary.apex, canary.namespace),
        ),
        Version::V1Beta2 => ("VirtualRouter", canary.apex.clone()),
    }
}

/// Every object of the canary, in the order they are written (nodes first, so that routes
/// never name a missing node): the apex routes carry `routes`.
pub fn objects(
    canary: &ValidatedCanary,
    v: Version,
    opts: Options<'_>,
    routes: Routes,
) -> Result<Vec<Value>, RoutingError> {
    match v {
        Version::V1Beta1 => v1beta1(canary, opts, routes),
        Version::V1Beta2 => Ok(v1beta2(canary, opts, routes)),
    }
}

// === shared parts ===

/// `grpc` when the port name says so, else `http`.
fn protocol(canary: &ValidatedCanary) -> &'static str {
    if canary
        .service
        .port_name
        .as_deref()
        .is_some_and(|n| n.contains("grpc"))
    {
        "grpc"
    } else {
        "http"
    }
}

/// The URI prefix of the routes: `service.match[0].uri.prefix`, or `/`.
fn route_prefix(canary: &ValidatedCanary) -> String {
    canary
        .service
        .r#match
        .as_deref()
        .and_then(|m| m.first())
        .and_then(|m| m.uri.as_ref())
        .and_then(|u| u.prefix.clone())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into())
}

fn ab_matches(canary: &ValidatedCanary) -> Option<&[AbMatch]> {
    match &canary.analysis.strategy {
        Strategy::AbTesting { matches, .. } if !matches.is_empty() => Some(matches),
        _ => None,
    }
}

/// The route headers of `analysis.match` (exact, prefix, regex or suffix).
fn headers(matches: &[AbMatch]) -> Vec<Value> {
    let mut out = Vec::new();
    for m in matches {
        for (name, value) in m.headers.iter().flatten() {
            let mut how = Map::new();
            for (k, v) in [
                ("exact", &value.exact),
                ("prefix", &value.prefix),
                ("regex", &value.regex),
                ("suffix", &value.suffix),
            ] {
                if let Some(v) = v {
                    how.insert(k.into(), json!(v));
                }
            }
            out.push(json!({"name": name, "match": how}));
        }
    }
    out
}

/// A Go duration in milliseconds, when it parses.
fn millis(d: Option<&str>) -> Option<i64> {
    d.filter(|d| !d.is_empty())
        .and_then(|d| parse_go_duration(d).ok())
        .map(|d| d.as_millis() as i64)
}

/// The retry policy's parts from `service.retries`: per-retry timeout (250ms), attempts (1)
/// and events (`gateway-error`, or `retryOn` split at commas).
fn retries(canary: &ValidatedCanary) -> Option<(i64, i64, Vec<String>)> {
    let r = canary.service.retries.as_ref()?;
    let timeout = millis(r.per_try_timeout.as_deref()).unwrap_or(250);
    let attempts = r.attempts.filter(|a| *a > 0).unwrap_or(1);
    let events = match r.retry_on.as_deref().filter(|e| !e.is_empty()) {
        Some(on) => on.split(',').map(str::to_string).collect(),
        None => vec!["gateway-error".to_string()],
    };
    Some((timeout, i64::from(attempts), events))
}

/// The App Mesh gateway annotations of the apex virtual service, when `hosts` are set.
fn gateway_annotations(canary: &ValidatedCanary) -> Map<String, Value> {
    let mut a = Map::new();
    let domains: String = canary
        .service
        .hosts
        .iter()
        .flatten()
        .map(|h| format!("{h},"))
        .collect();
    if domains.is_empty() {
        return a;
    }
    a.insert("gateway.appmesh.k8s.aws/expose".into(), json!("true"));
    a.insert("gateway.appmesh.k8s.aws/domain".into(), json!(domains));
    if let Some(t) = canary.service.timeout.as_deref().filter(|t| !t.is_empty()) {
        a.insert("gateway.appmesh.k8s.aws/timeout".into(), json!(t));
    }
    if let Some(n) = canary
        .service
        .retries
        .as_ref()
        .and_then(|r| r.attempts)
        .filter(|n| *n > 0)
    {
        a.insert(
            "gateway.appmesh.k8s.aws/retries".into(),
            json!(n.to_string()),
        );
    }
    a
}

fn metadata(name: &str, namespace: &str, annotations: Map<String, Value>) -> Value {
    let mut m = json!({"name": name, "namespace": namespace});
    if !annotations.is_empty() {
        m["annotations"] = Value::Object(annotations);
    }
    m
}

/// The apex metadata of the virtual nodes.
fn node_metadata(canary: &ValidatedCanary, name: &str) -> Value {
    let (labels, annotations) = apex_metadata(canary);
    json!({"name": name, "namespace": canary.namespace, "labels": labels, "annotations": annotations})
}

fn access_log(opts: Options<'_>) -> Option<Value> {
    opts.access_log
        .then(|| json!({"accessLog": {"file": {"path": "/dev/stdout"}}}))
}

/// The routes of a router: the apex's (`role_canary` false) by weight, with the A/B pair when
/// the analysis matches headers; the canary's all to the canary. `target` makes a weighted
/// target from a node name and a weight; `route` wraps match, targets and the route name.
fn routes_of(
    canary: &ValidatedCanary,
    role_canary: bool,
    routes: Routes,
    target: impl Fn(&str, u32) -> Value,
    route: impl Fn(Value, Vec<Value>) -> Value,
) -> Vec<Value> {
    let (canary_node, primary_node) = (canary.canary_service(), canary.primary_service());
    let prefix = route_prefix(canary);
    let (cw, pw) = if role_canary {
        (100, 0)
    } else {
        (routes.canary, routes.primary)
    };
    let weighted = vec![target(&canary_node, cw), target(&primary_node, pw)];
    let router_name = if role_canary {
        canary.canary_service()
    } else {
        canary.apex.clone()
    };
    match ab_matches(canary).filter(|_| !role_canary) {
        None => {
            let mut r = route(json!({"prefix": prefix}), weighted);
            r["name"] = json!(router_name);
            vec![r]
        }
        Some(matches) => {
            let mut a = route(
                json!({"prefix": prefix, "headers": headers(matches)}),
                weighted,
            );
            a["name"] = json!(format!("{}-a", canary.apex));
            a["priority"] = json!(10);
            let mut b = route(json!({"prefix": prefix}), vec![target(&primary_node, 100)]);
            b["name"] = json!(format!("{}-b", canary.apex));
            b["priority"] = json!(20);
            vec![a, b]
        }
    }
}

// === v1beta1 ===

fn v1beta1(
    canary: &ValidatedCanary,
    opts: Options<'_>,
    routes: Routes,
) -> Result<Vec<Value>, RoutingError> {
    let mesh = canary
        .service
        .mesh_name
        .clone()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| RoutingError::Missing("mesh name cannot be empty".into()))?;
    let api_version = Version::V1Beta1.api_version();
    let ns = &canary.namespace;
    let port = canary.service.port;
    let proto = protocol(canary);
    let primary_host = format!("{}.{ns}", canary.primary_service());
    let canary_host = format!("{}.{ns}", canary.canary_service());
    let mut out = Vec::new();
    for (name, host) in [
        (canary.apex.clone(), primary_host.clone()),
        (canary.primary_service(), primary_host),
        (canary.canary_service(), canary_host),
    ] {
        let mut spec = json!({
            "meshName": mesh,
            "listeners": [{"portMapping": {"port": port, "protocol": proto}}],
            "serviceDiscovery": {"dns": {"hostName": host}},
        });
        let backends: Vec<Value> = canary
            .service
            .backends
            .iter()
            .flatten()
            .map(|b| json!({"virtualService": {"virtualServiceName": b}}))
            .collect();
        if !backends.is_empty() {
            spec["backends"] = json!(backends);
        }
        if let Some(log) = access_log(opts) {
            spec["logging"] = log;
        }
        out.push(json!({
            "apiVersion": api_version, "kind": "VirtualNode",
            "metadata": node_metadata(canary, &name), "spec": spec,
        }));
    }
    let retry = retries(canary).map(|(timeout, attempts, events)| {
        json!({"perRetryTimeoutMillis": timeout, "maxRetries": attempts, "httpRetryEvents": events})
    });
    for role_canary in [false, true] {
        let router_name = if role_canary {
            canary.canary_service()
        } else {
            canary.apex.clone()
        };
        let name = format!("{router_name}.{ns}");
        let rs = routes_of(
            canary,
            role_canary,
            routes,
            |node, w| json!({"virtualNodeName": node, "weight": w}),
            |m, targets| {
                let mut http = json!({"match": m, "action": {"weightedTargets": targets}});
                if let Some(r) = &retry {
                    http["retryPolicy"] = r.clone();
                }
                json!({"http": http})
            },
        );
        let annotations = if role_canary {
            Map::new()
        } else {
            gateway_annotations(canary)
        };
        out.push(json!({
            "apiVersion": api_version, "kind": "VirtualService",
            "metadata": metadata(&name, ns, annotations),
            "spec": {
                "meshName": mesh,
                "virtualRouter": {
                    "name": router_name,
                    "listeners": [{"portMapping": {"port": port, "protocol": proto}}],
                },
                "routes": rs,
            },
        }));
    }
    Ok(out)
}

// === v1beta2 ===

/// The listener port: a numeric `targetPort`, else `port`.
fn container_port(canary: &ValidatedCanary) -> i32 {
    match &canary.service.target_port {
        Some(IntOrString::Int(p)) if *p > 0 => *p,
        _ => canary.service.port,
    }
}

fn v1beta2(canary: &ValidatedCanary, opts: Options<'_>, routes: Routes) -> Vec<Value> {
    let api_version = Version::V1Beta2.api_version();
    let ns = &canary.namespace;
    let port = container_port(canary);
    let proto = protocol(canary);
    let timeout = millis(canary.service.timeout.as_deref())
        .map(|ms| json!({"perRequest": {"unit": "ms", "value": ms}}));
    let mut out = Vec::new();
    for (name, pods) in [
        (canary.primary_service(), canary.primary_workload()),
        (canary.canary_service(), canary.target.name.clone()),
    ] {
        let mut listener = json!({"portMapping": {"port": port, "protocol": proto}});
        if let Some(t) = &timeout {
            listener["timeout"] = json!({"http": t});
        }
        let mut spec = json!({
            "listeners": [listener],
            "serviceDiscovery": {"dns": {"hostname": format!("{name}.{ns}.svc.cluster.local.")}},
            "podSelector": {"matchLabels": {opts.selector_label: pods}},
        });
        let backends: Vec<Value> = canary
            .service
            .backends
            .iter()
            .flatten()
            .map(|b| {
                if b.starts_with("arn:aws") {
                    json!({"virtualService": {"virtualServiceARN": b}})
                } else {
                    json!({"virtualService": {"virtualServiceRef": {"name": b}}})
                }
            })
            .collect();
        if !backends.is_empty() {
            spec["backends"] = json!(backends);
        }
        if let Some(log) = access_log(opts) {
            spec["logging"] = log;
        }
        out.push(json!({
            "apiVersion": api_version, "kind": "VirtualNode",
            "metadata": node_metadata(canary, &name), "spec": spec,
        }));
    }
    let retry = retries(canary).map(|(timeout, attempts, events)| {
        json!({
            "perRetryTimeout": {"unit": "ms", "value": timeout},
            "maxRetries": attempts,
            "httpRetryEvents": events,
        })
    });
    let mut services = Vec::new();
    for role_canary in [false, true] {
        let name = if role_canary {
            canary.canary_service()
        } else {
            canary.apex.clone()
        };
        let rs = routes_of(
            canary,
            role_canary,
            routes,
            |node, w| json!({"virtualNodeRef": {"name": node}, "weight": w}),
            |m, targets| {
                let mut http = json!({"match": m, "action": {"weightedTargets": targets}});
                if let Some(t) = &timeout {
                    http["timeout"] = t.clone();
                }
                if let Some(r) = &retry {
                    http["retryPolicy"] = r.clone();
                }
                json!({"httpRoute": http})
            },
        );
        out.push(json!({
            "apiVersion": api_version, "kind": "VirtualRouter",
            "metadata": metadata(&name, ns, Map::new()),
            "spec": {
                "listeners": [{"portMapping": {"port": port, "protocol": proto}}],
                "routes": rs,
            },
        }));
        let annotations = if role_canary {
            Map::new()
        } else {
            gateway_annotations(canary)
        };
        services.push(json!({
            "apiVersion": api_version, "kind": "VirtualService",
            "metadata": metadata(&name, ns, annotations),
            "spec": {"provider": {"virtualRouter": {"virtualRouterRef": {"name": name}}}},
        }));
    }
    out.extend(services);
    out
}

// === reading back ===

/// Reads the weights of `<apex>-primary` and `<apex>-canary` from the first route of the
/// object holding them ([`weights_object`]); a first route without exactly two weighted
/// targets, or both weights 0, is an error.
pub fn read_routes(
    canary: &ValidatedCanary,
    v: Version,
    object: &Value,
) -> Result<Routes, RoutingError> {
    let (kind, name) = weights_object(canary, v);
    let (route_key, node_of): (&str, fn(&Value) -> Option<&str>) = match v {
        Version::V1Beta1 => ("http", |t| t["virtualNodeName"].as_str()),
        Version::V1Beta2 => ("httpRoute", |t| t["virtualNodeRef"]["name"].as_str()),
    };
    let targets = object["spec"]["routes"][0][route_key]["action"]["weightedTargets"]
        .as_array()
        .filter(|t| t.len() == 2)
        .ok_or_else(|| RoutingError::NoRoutes(format!("{kind} routes {name} not found")))?;
    let (mut primary, mut canary_w) = (0, 0);
    for t in targets {
        let w = t["weight"].as_u64().unwrap_or(0).min(100) as u32;
        match node_of(t) {
            Some(n) if n == canary.canary_service() => canary_w = w,
            Some(n) if n == canary.primary_service() => primary = w,
            _ => {}
        }
    }
    check_weights(primary, canary_w, || {
        format!(
            "{kind} {name} does not contain routes for {} and {}",
            canary.primary_service(),
            canary.canary_service()
        )
    })?;
    Ok(Routes::weights(primary, canary_w))
}

// === builtin checks ===

/// App Mesh's observer: the Envoy statistics of the canary's pods' sidecars, selected by pod
/// name.
pub static OBSERVER: Standard = Standard {
    requests: "envoy_cluster_upstream_rq",
    success: r#"envoy_response_code!~"5.*""#,
    latency: "envoy_cluster_upstream_rq_time_bucket",
    selector: |m| {
        format!(
            r#"kubernetes_namespace="{}",kubernetes_pod_name=~"{}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)""#,
            m.namespace, m.target
        )
    },
    seconds: false,
};

/// `appmesh` (v1beta1): three VirtualNodes and the VirtualServices named after the mesh host;
/// A/B by headers.
pub static V1BETA1_PROVIDER: Descriptor =
    Descriptor::new(Provider::AppMesh, "appmesh", &OBSERVER, |n: &Names<'_>| {
        let apex = n.apex;
        let mut objects = vec![
            generated::route("VirtualNode", "appmesh.k8s.aws", apex.to_string()),
            generated::route("VirtualNode", "appmesh.k8s.aws", format!("{apex}-primary")),
            generated::route("VirtualNode", "appmesh.k8s.aws", format!("{apex}-canary")),
        ];
        // v1beta1 names its VirtualServices after the mesh host, `<name>.<namespace>`.
        if let Some(ns) = n.namespace {
            objects.push(generated::route(
                "VirtualService",
                "appmesh.k8s.aws",
                format!("{apex}.{ns}"),
            ));
            objects.push(generated::route(
                "VirtualService",
                "appmesh.k8s.aws",
                format!("{apex}-canary.{ns}"),
            ));
        }
        objects
    })
    .ab()
    .checks(|spec| {
        super::descriptor::service_findings(spec, |svc| {
            svc.mesh_name.as_deref().is_none_or(str::is_empty).then(|| {
                super::descriptor::Finding::error(
                    "spec.service.meshName",
                    "mesh name cannot be empty: the appmesh provider needs the name of the App \
                     Mesh the virtual nodes join",
                )
            })
        })
    });
/// `appmesh:v1beta2`: the primary and canary VirtualNodes, VirtualRouters and VirtualServices.
pub static V1BETA2_PROVIDER: Descriptor = Descriptor::new(
    Provider::AppMeshV1Beta2,
    "appmesh:v1beta2",
    &OBSERVER,
    |n: &Names<'_>| {
        let (apex, primary, canary) = (
            n.apex.to_string(),
            format!("{}-primary", n.apex),
            format!("{}-canary", n.apex),
        );
        vec![
            generated::route("VirtualNode", "appmesh.k8s.aws", primary),
            generated::route("VirtualNode", "appmesh.k8s.aws", canary.clone()),
            generated::route("VirtualRouter", "appmesh.k8s.aws", apex.clone()),
            generated::route("VirtualRouter", "appmesh.k8s.aws", canary.clone()),
            generated::route("VirtualService", "appmesh.k8s.aws", apex),
            generated::route("VirtualService", "appmesh.k8s.aws", canary),
        ]
    },
)
.ab()
.flag_prefix();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BuiltinMetric;
    use crate::routing::observer::Observer;
    use crate::routing::observer::tests::model;

    #[test]
    fn app_meshs_queries_select_the_canarys_pods() {
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestSuccessRate, &model("1m")),
            r#"sum(rate(envoy_cluster_upstream_rq{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",envoy_response_code!~"5.*"}[1m])) / sum(rate(envoy_cluster_upstream_rq{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[1m])) * 100"#
        );
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestDuration, &model("1m")),
            r#"histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[1m])) by (le))"#
        );
    }

    #[test]
    fn versions_of_the_providers() {
        assert_eq!(Version::of(Provider::AppMesh), Some(Version::V1Beta1));
        assert_eq!(
            Version::of(Provider::AppMeshV1Beta2),
            Some(Version::V1Beta2)
        );
        assert_eq!(Version::of(Provider::Istio), None);
    }
}
