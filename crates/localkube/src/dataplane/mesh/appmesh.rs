//! AWS App Mesh: VirtualServices (`appmesh.k8s.aws`, `v1beta2` and `v1beta1`) route the
//! requests for the Service they name through their virtual router's routes to weighted
//! virtual nodes, whose DNS service discovery names the Service that answers, as the App Mesh
//! Envoy sidecars do.
//!
//! * v1beta2: the VirtualService `<name>` (its `awsName`, default `<name>.<namespace>`) names
//!   its provider, `virtualRouter.virtualRouterRef`, a VirtualRouter of the namespace; its
//!   weighted targets are `virtualNodeRef`s.
//! * v1beta1: the VirtualService `<service>.<namespace>` carries its own router and routes; its
//!   weighted targets are `virtualNodeName`s.
//!
//! Of a router's routes, the matching one with the lowest `priority` (unset: after every set
//! one) takes the request; a route matches a path prefix and every one of its headers (exact,
//! prefix, suffix, regex; `invert`). Retry policies and timeouts are not played.
//!
//! Telemetry: App Mesh's Envoy statistics are the `envoy_cluster_upstream_rq` rows every pod's
//! sidecar reports with the pod's `kubernetes_namespace` and `kubernetes_pod_name`, which
//! [`super::envoy`] renders.

use serde::Deserialize;

use super::super::router::{RouteDecision, ServicePort};
use super::common::{Mesh, Tools, View, dest_port, direct, objects, service_of, spec};
use crate::Api;
use crate::util;

const GROUP: &str = "appmesh.k8s.aws";

/// App Mesh's routing by virtual services, routers and nodes.
#[derive(Debug, Default, Clone, Copy)]
pub struct AppMesh;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct VirtualServiceSpec {
    aws_name: Option<String>,
    provider: Provider,
    /// v1beta1: the router is part of the service.
    routes: Vec<Route>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Provider {
    virtual_router: Option<RouterRef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RouterRef {
    virtual_router_ref: Option<Named>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Named {
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RouterSpec {
    routes: Vec<Route>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Route {
    priority: Option<i64>,
    /// v1beta1.
    http: Option<HttpRoute>,
    /// v1beta2.
    http_route: Option<HttpRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HttpRoute {
    #[serde(rename = "match")]
    matches: RouteMatch,
    action: Action,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RouteMatch {
    prefix: String,
    headers: Vec<Header>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Header {
    name: String,
    invert: bool,
    #[serde(rename = "match")]
    how: Option<HeaderMatch>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HeaderMatch {
    exact: Option<String>,
    prefix: Option<String>,
    suffix: Option<String>,
    regex: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Action {
    weighted_targets: Vec<Target>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Target {
    virtual_node_name: Option<String>,
    virtual_node_ref: Option<Named>,
    weight: f64,
}

impl Target {
    fn node(&self) -> Option<&str> {
        self.virtual_node_ref
            .as_ref()
            .map(|n| n.name.as_str())
            .or(self.virtual_node_name.as_deref())
    }
}

fn header_matches(t: &Tools, h: &Header, view: &View<'_>) -> bool {
    let value = view.header(&h.name);
    let hit = match (&h.how, value.as_deref()) {
        (None, v) => v.is_some(),
        (Some(_), None) => false,
        (Some(m), Some(v)) => {
            m.exact.as_deref().is_none_or(|e| e == v)
                && m.prefix.as_deref().is_none_or(|p| v.starts_with(p))
                && m.suffix.as_deref().is_none_or(|s| v.ends_with(s))
                && m.regex.as_deref().is_none_or(|r| t.full_match(r, v))
        }
    };
    hit != h.invert
}

fn route_matches(t: &Tools, r: &HttpRoute, view: &View<'_>) -> bool {
    let prefix = if r.matches.prefix.is_empty() {
        "/"
    } else {
        r.matches.prefix.as_str()
    };
    view.path.starts_with(prefix) && r.matches.headers.iter().all(|h| header_matches(t, h, view))
}

/// The Service a virtual node's DNS discovery names (`spec.serviceDiscovery.dns.hostname`, or
/// v1beta1's `hostName`).
fn node_service(api: &Api, version: &str, ns: &str, node: &str) -> Option<(String, String)> {
    let info = api
        .resource(&format!("{GROUP}/{version}"), "VirtualNode")
        .ok()?;
    let n = api.store.get(&info.storage_key(), ns, node)?;
    let dns = n.pointer("/spec/serviceDiscovery/dns")?;
    let host = dns
        .get("hostname")
        .or_else(|| dns.get("hostName"))?
        .as_str()?;
    service_of(host, ns)
}

/// Picks a route and a weighted target, and resolves the target's node to its Service.
fn decide(
    api: &Api,
    t: &Tools,
    version: &str,
    ns: &str,
    mut routes: Vec<Route>,
    to: &ServicePort,
    view: &View<'_>,
) -> RouteDecision {
    routes.sort_by_key(|r| r.priority.unwrap_or(i64::MAX));
    let Some(route) = routes
        .iter()
        .filter_map(|r| r.http_route.as_ref().or(r.http.as_ref()))
        .find(|r| route_matches(t, r, view))
    else {
        return RouteDecision {
            actions: direct(404, "no App Mesh route matched"),
            ..RouteDecision::to(to.clone())
        };
    };
    let weights: Vec<f64> = route
        .action
        .weighted_targets
        .iter()
        .map(|w| w.weight)
        .collect();
    let Some(target) = t.pick(&weights).map(|i| &route.action.weighted_targets[i]) else {
        return RouteDecision {
            actions: direct(503, "App Mesh route has no target with a weight"),
            ..RouteDecision::to(to.clone())
        };
    };
    match target
        .node()
        .and_then(|n| node_service(api, version, ns, n))
    {
        Some((sns, name)) => {
            let port = dest_port(api, &sns, &name, None, view.port);
            RouteDecision::to(ServicePort {
                namespace: sns,
                service: name,
                port,
            })
        }
        None => RouteDecision {
            actions: direct(503, "App Mesh virtual node has no DNS service discovery"),
            ..RouteDecision::to(to.clone())
        },
    }
}

impl Mesh for AppMesh {
    fn route_service(
        &self,
        api: &Api,
        t: &Tools,
        to: &ServicePort,
        view: &View<'_>,
    ) -> Option<RouteDecision> {
        for version in ["v1beta2", "v1beta1"] {
            for vs in objects(api, GROUP, &[version], "VirtualService") {
                let ns = util::namespace(&vs);
                let Some(s) = spec::<VirtualServiceSpec>(&vs) else {
                    continue;
                };
                let host = match (&s.aws_name, version) {
                    (Some(a), _) if !a.is_empty() => a.clone(),
                    (_, "v1beta2") => format!("{}.{ns}", util::name(&vs)),
                    _ => util::name(&vs).to_string(),
                };
                if service_of(&host, ns).is_none_or(|(n, s)| n != to.namespace || s != to.service) {
                    continue;
                }
                let routes = match s.provider.virtual_router.and_then(|r| r.virtual_router_ref) {
                    Some(router) => {
                        let router = api
                            .resource(&format!("{GROUP}/{version}"), "VirtualRouter")
                            .ok()
                            .and_then(|i| api.store.get(&i.storage_key(), ns, &router.name))
                            .and_then(|r| spec::<RouterSpec>(&r));
                        match router {
                            Some(r) => r.routes,
                            None => continue,
                        }
                    }
                    None => s.routes,
                };
                return Some(decide(api, t, version, ns, routes, to, view));
            }
        }
        None
    }
}
