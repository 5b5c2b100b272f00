//! Gloo Edge: [`Gloo`] plays Gloo's `gateway-proxy` Envoy for the domains of its
//! VirtualServices (`gateway.solo.io/v1`), delegating to RouteTables and sending requests to
//! Upstreams (`gloo.solo.io/v1`, `kube` Upstreams: a Service port).
//!
//! The host picks the VirtualService whose `virtualHost.domains` has it exactly, else the
//! longest matching `*.` suffix, else `*`. Its routes are tried in order, a delegating route
//! (`delegateAction.ref`, or the older `delegateAction.name`/`namespace`) standing for the
//! routes of the RouteTable it names, in their order: a route of the table inherits the
//! parent's path matcher when it has `inheritablePathMatchers`, and otherwise must sit under
//! the parent's prefix (a route that does not is dropped, as Gloo rejects it); the parent's
//! header matchers are added to it. A route without matchers matches every path (`/`).
//!
//! Matchers (any of a route's): path `prefix` (a string prefix, as Envoy's), `exact` or
//! `regex`; `headers` (`value`, `regex: true`, a bare name for presence, `invertMatch`), all
//! of them; `methods`, any of them; `queryParameters`. The action: `single.upstream` or
//! `multi.destinations` drawn by weight. No route: 404; every weight 0, or an Upstream that is
//! not there: 503.
//!
//! Telemetry: each request sent to an Upstream is filed under its Envoy cluster,
//! `<upstream>_<upstream namespace>` as Gloo names clusters, in Envoy's series
//! ([`super::envoy`]), with the discovery labels of the `gateway-proxy` pod.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::super::router::{GatewayTelemetry, RouteDecision};
use super::common::{Mesh, Tools, View, objects, spec};
use super::gateway::{Backend, answer, pick, to_backend};
use crate::Api;
use crate::util;

const GATEWAY_GROUP: &str = "gateway.solo.io";
const GLOO_GROUP: &str = "gloo.solo.io";
const VERSIONS: &[&str] = &["v1"];
/// Where Gloo's gateway proxy runs, for the discovery labels of its series.
const PROXY_NAMESPACE: &str = "gloo-system";
const PROXY_POD: &str = "gateway-proxy-localkube";
/// How deep delegation may go before a chain counts as a cycle.
const MAX_DEPTH: usize = 8;

/// Gloo's gateway proxy, routing by VirtualServices and RouteTables.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gloo;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct VirtualServiceSpec {
    virtual_host: VirtualHost,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VirtualHost {
    domains: Vec<String>,
    routes: Vec<Route>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RouteTableSpec {
    routes: Vec<Route>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default, rename_all = "camelCase")]
struct Route {
    matchers: Vec<Matcher>,
    route_action: Option<RouteAction>,
    delegate_action: Option<DelegateAction>,
    inheritable_path_matchers: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default, rename_all = "camelCase")]
struct Matcher {
    prefix: Option<String>,
    exact: Option<String>,
    regex: Option<String>,
    headers: Vec<HeaderMatcher>,
    query_parameters: Vec<QueryMatcher>,
    methods: Vec<String>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default, rename_all = "camelCase")]
struct HeaderMatcher {
    name: String,
    value: String,
    regex: bool,
    invert_match: bool,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
struct QueryMatcher {
    name: String,
    value: String,
    regex: bool,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
struct RouteAction {
    single: Option<Destination>,
    multi: Option<Multi>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
struct Multi {
    destinations: Vec<Weighted>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
struct Weighted {
    destination: Destination,
    weight: Option<u32>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
struct Destination {
    upstream: Option<Ref>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
struct Ref {
    name: String,
    namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
struct DelegateAction {
    #[serde(rename = "ref")]
    reference: Option<Ref>,
    name: Option<String>,
    namespace: Option<String>,
}

/// The path part of a matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathMatch {
    Prefix(String),
    Exact(String),
    Regex(String),
}

impl Matcher {
    fn path(&self) -> PathMatch {
        if let Some(e) = &self.exact {
            PathMatch::Exact(e.clone())
        } else if let Some(r) = &self.regex {
            PathMatch::Regex(r.clone())
        } else {
            PathMatch::Prefix(self.prefix.clone().unwrap_or_else(|| "/".into()))
        }
    }

    fn with_path(&self, path: &PathMatch) -> Matcher {
        let (prefix, exact, regex) = match path {
            PathMatch::Prefix(p) => (Some(p.clone()), None, None),
            PathMatch::Exact(p) => (None, Some(p.clone()), None),
            PathMatch::Regex(p) => (None, None, Some(p.clone())),
        };
        Matcher {
            prefix,
            exact,
            regex,
            ..self.clone()
        }
    }

    fn matches(&self, t: &Tools, view: &View<'_>) -> bool {
        let path = match self.path() {
            PathMatch::Prefix(p) => view.path.starts_with(p.as_str()),
            PathMatch::Exact(p) => view.path == p,
            PathMatch::Regex(re) => t.full_match(&re, view.path),
        };
        let headers = self.headers.iter().all(|h| {
            let v = view.header(&h.name);
            let hit = match (&v, h.value.is_empty(), h.regex) {
                (None, _, _) => false,
                (Some(_), true, false) => true,
                (Some(v), _, true) => t.full_match(&h.value, v),
                (Some(v), _, false) => *v == h.value,
            };
            hit != h.invert_match
        });
        let methods = self.methods.is_empty()
            || self
                .methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(view.method));
        let query = self
            .query_parameters
            .iter()
            .all(|q| match view.query_param(&q.name) {
                None => false,
                Some(v) if q.regex => t.full_match(&q.value, v),
                Some(v) => q.value.is_empty() || v == q.value,
            });
        path && headers && methods && query
    }
}

/// A route of the host, delegation resolved: its matchers (empty: every request) and action.
struct Flat {
    namespace: String,
    matchers: Vec<Matcher>,
    action: Option<RouteAction>,
}

/// How well a domain pattern matches the host: exact 3, a `*.` suffix 2 (longer better), `*`
/// 1; `None` when it does not.
fn domain_rank(domain: &str, host: &str) -> Option<(u8, usize)> {
    let d = domain.to_ascii_lowercase();
    if d == "*" {
        Some((1, 0))
    } else if let Some(suffix) = d.strip_prefix('*') {
        (host.ends_with(suffix) && host.len() > suffix.len()).then_some((2, suffix.len()))
    } else {
        (d == host).then_some((3, d.len()))
    }
}

impl Gloo {
    /// The routes of `routes` (in `ns`), under the parent's `parent` matchers, delegation
    /// resolved, appended to `out`.
    fn flatten(
        api: &Api,
        ns: &str,
        routes: &[Route],
        parent: Option<&Matcher>,
        depth: usize,
        out: &mut Vec<Flat>,
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        for r in routes {
            let own = if r.matchers.is_empty() {
                vec![Matcher::default()]
            } else {
                r.matchers.clone()
            };
            let mut matchers = Vec::new();
            for m in &own {
                let Some(p) = parent else {
                    matchers.push(m.clone());
                    continue;
                };
                let mut merged = if r.inheritable_path_matchers.unwrap_or(false) {
                    m.with_path(&p.path())
                } else {
                    match (p.path(), m.path()) {
                        (PathMatch::Prefix(pp), PathMatch::Prefix(c) | PathMatch::Exact(c))
                            if c.starts_with(pp.as_str()) =>
                        {
                            m.clone()
                        }
                        // Not under the parent's prefix: Gloo rejects the route.
                        _ => continue,
                    }
                };
                merged.headers.extend(p.headers.iter().cloned());
                merged
                    .query_parameters
                    .extend(p.query_parameters.iter().cloned());
                matchers.push(merged);
            }
            if let Some(d) = &r.delegate_action {
                let (name, table_ns) = match &d.reference {
                    Some(rf) => (rf.name.clone(), rf.namespace.clone()),
                    None => (d.name.clone().unwrap_or_default(), d.namespace.clone()),
                };
                let table_ns = table_ns.unwrap_or_else(|| ns.to_string());
                let Some(table) = objects(api, GATEWAY_GROUP, VERSIONS, "RouteTable")
                    .into_iter()
                    .find(|o| util::namespace(o) == table_ns && util::name(o) == name)
                else {
                    continue;
                };
                let Some(spec) = spec::<RouteTableSpec>(&table) else {
                    continue;
                };
                for m in &matchers {
                    Self::flatten(api, &table_ns, &spec.routes, Some(m), depth + 1, out);
                }
            } else if !matchers.is_empty() {
                out.push(Flat {
                    namespace: ns.to_string(),
                    matchers,
                    action: r.route_action.clone(),
                });
            }
        }
    }

    /// The backend of an Upstream reference, filed under the Upstream's cluster.
    fn backend(api: &Api, ns: &str, r: &Ref, weight: f64) -> Option<Backend> {
        let up_ns = r.namespace.clone().unwrap_or_else(|| ns.to_string());
        let upstream = objects(api, GLOO_GROUP, VERSIONS, "Upstream")
            .into_iter()
            .find(|o| util::namespace(o) == up_ns && util::name(o) == r.name)?;
        let kube = upstream.pointer("/spec/kube")?;
        let svc = kube["serviceName"].as_str()?;
        let svc_ns = kube["serviceNamespace"].as_str().unwrap_or(&up_ns);
        let port = kube["servicePort"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok());
        let mut b = Backend::service(api, svc_ns, svc, port, weight);
        b.telemetry = Some(GatewayTelemetry {
            gateway: super::envoy::GATEWAY,
            name: format!("{}_{up_ns}", r.name),
            labels: vec![
                ("kubernetes_namespace".into(), PROXY_NAMESPACE.into()),
                ("kubernetes_pod_name".into(), PROXY_POD.into()),
            ],
        });
        Some(b)
    }
}

impl Mesh for Gloo {
    fn route_host(
        &self,
        api: &Api,
        t: &Tools,
        host: &str,
        view: &View<'_>,
    ) -> Option<RouteDecision> {
        let (vs, _) = objects(api, GATEWAY_GROUP, VERSIONS, "VirtualService")
            .into_iter()
            .filter_map(|o| {
                let s: VirtualServiceSpec = spec(&o)?;
                let rank = s
                    .virtual_host
                    .domains
                    .iter()
                    .filter_map(|d| domain_rank(d, host))
                    .max()?;
                Some(((o, s), rank))
            })
            // The best match; the oldest among equals.
            .fold(
                None::<((Arc<Value>, VirtualServiceSpec), (u8, usize))>,
                |best, c| match best {
                    Some(b) if b.1 >= c.1 => Some(b),
                    _ => Some(c),
                },
            )?;
        let ns = util::namespace(&vs.0).to_string();
        let mut routes = Vec::new();
        Self::flatten(api, &ns, &vs.1.virtual_host.routes, None, 0, &mut routes);
        let Some(route) = routes
            .iter()
            .find(|r| r.matchers.iter().any(|m| m.matches(t, view)))
        else {
            return Some(answer(404, "", None));
        };
        let backends: Vec<Backend> = match &route.action {
            Some(RouteAction { multi: Some(m), .. }) => m
                .destinations
                .iter()
                .filter_map(|d| {
                    let r = d.destination.upstream.as_ref()?;
                    Self::backend(api, &route.namespace, r, f64::from(d.weight.unwrap_or(0)))
                })
                .collect(),
            Some(RouteAction {
                single: Some(Destination { upstream: Some(r) }),
                ..
            }) => Self::backend(api, &route.namespace, r, 1.0)
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        match pick(t, &backends) {
            Some(b) => Some(to_backend(b, None, None)),
            None => Some(answer(503, "no healthy upstream", None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_rank_exact_then_suffix_then_any() {
        assert_eq!(
            domain_rank("app.example.com", "app.example.com"),
            Some((3, 15))
        );
        assert_eq!(
            domain_rank("*.example.com", "app.example.com"),
            Some((2, 12))
        );
        assert_eq!(domain_rank("*", "app.example.com"), Some((1, 0)));
        assert_eq!(domain_rank("other.com", "app.example.com"), None);
        assert_eq!(domain_rank("*.example.com", "example.com"), None);
    }
}
