//! Gateway API: HTTPRoutes (`gateway.networking.k8s.io`, `v1` and `v1beta1`) route requests to
//! the Services they name as a `parentRef` (GAMMA, the mesh side), and requests for the
//! `hostnames` of routes attached to a Gateway (the gateway side).
//!
//! Over all the routes attached, the matching rule is chosen by Gateway API's precedence, a
//! backend drawn by weight, and the rule's and backend's filters applied (see
//! `docs/localkube.md`).

use serde::Deserialize;

use super::super::router::{HeaderOps, RouteDecision, ServicePort, Workload};
use super::common::{
    Mesh, Tools, View, dest_port, direct, hostname_matches, objects, path_prefix_matches, spec,
};
use crate::Api;
use crate::util;
use crate::util::parse_duration;

const GROUP: &str = "gateway.networking.k8s.io";
const VERSIONS: &[&str] = &["v1", "v1beta1"];

/// Gateway API's routing by HTTPRoutes.
#[derive(Debug, Default, Clone, Copy)]
pub struct GatewayApi;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct HttpRouteSpec {
    parent_refs: Vec<ParentRef>,
    hostnames: Vec<String>,
    rules: Vec<Rule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ParentRef {
    group: Option<String>,
    kind: Option<String>,
    namespace: Option<String>,
    name: String,
    port: Option<u32>,
}

impl ParentRef {
    fn is_service(&self) -> bool {
        self.kind.as_deref() == Some("Service")
            && matches!(self.group.as_deref(), None | Some("") | Some("core"))
    }

    fn is_gateway(&self) -> bool {
        matches!(self.kind.as_deref(), None | Some("Gateway"))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Rule {
    matches: Vec<GwMatch>,
    filters: Vec<Filter>,
    backend_refs: Vec<BackendRef>,
    timeouts: Option<Timeouts>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Timeouts {
    request: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct GwMatch {
    path: Option<PathMatch>,
    headers: Vec<NamedMatch>,
    query_params: Vec<NamedMatch>,
    method: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PathMatch {
    #[serde(rename = "type")]
    kind: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NamedMatch {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: String,
    value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BackendRef {
    group: Option<String>,
    kind: Option<String>,
    namespace: Option<String>,
    name: String,
    port: Option<u32>,
    weight: Option<i64>,
    filters: Vec<Filter>,
}

impl BackendRef {
    fn service_port(&self, api: &Api, ns: &str, port: u16) -> Option<ServicePort> {
        let service = matches!(self.kind.as_deref(), None | Some("Service"))
            && matches!(self.group.as_deref(), None | Some("") | Some("core"));
        if !service || self.name.is_empty() {
            return None;
        }
        let ns = self.namespace.clone().unwrap_or_else(|| ns.to_string());
        let port = dest_port(api, &ns, &self.name, self.port, port);
        Some(ServicePort {
            namespace: ns,
            service: self.name.clone(),
            port,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Filter {
    #[serde(rename = "type")]
    kind: String,
    request_header_modifier: Option<GwHeaderOps>,
    response_header_modifier: Option<GwHeaderOps>,
    request_mirror: Option<GwMirror>,
    url_rewrite: Option<UrlRewrite>,
    request_redirect: Option<Redirect>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Redirect {
    scheme: Option<String>,
    hostname: Option<String>,
    path: Option<PathModifier>,
    port: Option<u16>,
    status_code: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GwHeaderOps {
    set: Vec<NameValue>,
    add: Vec<NameValue>,
    remove: Vec<String>,
}

impl GwHeaderOps {
    fn ops(&self) -> HeaderOps {
        let pairs = |v: &[NameValue]| {
            v.iter()
                .map(|nv| (nv.name.clone(), nv.value.clone()))
                .collect()
        };
        HeaderOps {
            set: pairs(&self.set),
            add: pairs(&self.add),
            remove: self.remove.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NameValue {
    name: String,
    value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct GwMirror {
    backend_ref: BackendRef,
    percent: Option<f64>,
    fraction: Option<Fraction>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Fraction {
    numerator: f64,
    denominator: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct UrlRewrite {
    hostname: Option<String>,
    path: Option<PathModifier>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PathModifier {
    #[serde(rename = "type")]
    kind: String,
    replace_full_path: Option<String>,
    replace_prefix_match: Option<String>,
}

/// A rule without `matches` matches every path.
static MATCH_ALL: GwMatch = GwMatch {
    path: None,
    headers: Vec::new(),
    query_params: Vec::new(),
    method: None,
};

/// Gateway API's precedence of a match: exact path, longest prefix, method, most headers, most
/// query parameters (larger wins).
type Specificity = (u8, usize, bool, usize, usize);

/// A path modifier applied to `path` (matched by the `PathPrefix` `prefix`, if any).
fn modified_path(p: &PathModifier, prefix: Option<&str>, path: &str) -> Option<String> {
    match p.kind.as_str() {
        "ReplaceFullPath" => p.replace_full_path.clone(),
        "ReplacePrefixMatch" => match (prefix, &p.replace_prefix_match) {
            (Some(pre), Some(with)) => Some(replace_prefix(path, pre, with)),
            _ => None,
        },
        _ => None,
    }
}

/// `path` with the matched `prefix` replaced by `with`.
fn replace_prefix(path: &str, prefix: &str, with: &str) -> String {
    let p = prefix.trim_end_matches('/');
    let rest = path.get(p.len()..).unwrap_or_default();
    let out = format!("{}{rest}", with.trim_end_matches('/'));
    if out.is_empty() { "/".into() } else { out }
}

/// Whether `m` matches, and how specific it is.
fn gw_match(t: &Tools, m: &GwMatch, view: &View<'_>) -> Option<Specificity> {
    let (kind, value) = match &m.path {
        Some(p) => (
            p.kind.as_deref().unwrap_or("PathPrefix"),
            p.value.as_deref().unwrap_or("/"),
        ),
        None => ("PathPrefix", "/"),
    };
    let rank = match kind {
        "Exact" if view.path == value => 2,
        "PathPrefix" if path_prefix_matches(value, view.path) => 1,
        "RegularExpression" if t.full_match(value, view.path) => 0,
        _ => return None,
    };
    if let Some(method) = &m.method
        && !method.eq_ignore_ascii_case(view.method)
    {
        return None;
    }
    for h in &m.headers {
        let v = view.header(&h.name)?;
        let ok = match h.kind.as_deref().unwrap_or("Exact") {
            "RegularExpression" => t.full_match(&h.value, &v),
            _ => v == h.value,
        };
        if !ok {
            return None;
        }
    }
    for q in &m.query_params {
        let v = view.query_param(&q.name)?;
        let ok = match q.kind.as_deref().unwrap_or("Exact") {
            "RegularExpression" => t.full_match(&q.value, v),
            _ => v == q.value,
        };
        if !ok {
            return None;
        }
    }
    Some((
        rank,
        if rank == 0 { 0 } else { value.len() },
        m.method.is_some(),
        m.headers.len(),
        m.query_params.len(),
    ))
}

/// The best matching rule over `routes` (oldest first): `(route, rule, matched path
/// prefix)`.
fn gw_select<'r>(
    t: &Tools,
    routes: &'r [(String, HttpRouteSpec)],
    view: &View<'_>,
) -> Option<(&'r str, &'r Rule, Option<&'r str>)> {
    let mut best: Option<(Specificity, &str, &Rule, Option<&str>)> = None;
    for (ns, route) in routes {
        for rule in &route.rules {
            let matches: &[GwMatch] = if rule.matches.is_empty() {
                std::slice::from_ref(&MATCH_ALL)
            } else {
                &rule.matches
            };
            for m in matches {
                let Some(spec) = gw_match(t, m, view) else {
                    continue;
                };
                if best.as_ref().is_none_or(|(b, ..)| spec > *b) {
                    let prefix = match &m.path {
                        Some(p) if p.kind.as_deref().unwrap_or("PathPrefix") == "PathPrefix" => {
                            Some(p.value.as_deref().unwrap_or("/"))
                        }
                        None => Some("/"),
                        _ => None,
                    };
                    best = Some((spec, ns.as_str(), rule, prefix));
                }
            }
        }
    }
    best.map(|(_, ns, rule, prefix)| (ns, rule, prefix))
}

fn apply_filters(
    t: &Tools,
    api: &Api,
    ns: &str,
    filters: &[Filter],
    prefix: Option<&str>,
    view: &View<'_>,
    decision: &mut RouteDecision,
) {
    for f in filters {
        match f.kind.as_str() {
            "RequestHeaderModifier" => {
                if let Some(h) = &f.request_header_modifier {
                    decision.actions.request_headers.extend(h.ops());
                }
            }
            "ResponseHeaderModifier" => {
                if let Some(h) = &f.response_header_modifier {
                    decision.actions.response_headers.extend(h.ops());
                }
            }
            "RequestMirror" => {
                if let Some(m) = &f.request_mirror {
                    let pct = match (&m.percent, &m.fraction) {
                        (Some(p), _) => *p,
                        (None, Some(fr)) => {
                            100.0 * fr.numerator / fr.denominator.unwrap_or(100.0).max(1.0)
                        }
                        (None, None) => 100.0,
                    };
                    if t.sample(pct)
                        && let Some(sp) = m.backend_ref.service_port(api, ns, view.port)
                    {
                        decision.mirrors.push(sp);
                    }
                }
            }
            "RequestRedirect" => {
                if let Some(r) = &f.request_redirect {
                    let path = r
                        .path
                        .as_ref()
                        .and_then(|p| modified_path(p, prefix, view.path))
                        .unwrap_or_else(|| view.path.to_string());
                    let request_host = view.header("host").unwrap_or_default();
                    let host = r.hostname.clone().unwrap_or_else(|| {
                        request_host
                            .rsplit_once(':')
                            .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
                            .map_or(request_host.clone(), |(h, _)| h.to_string())
                    });
                    let port = r.port.map(|p| format!(":{p}")).unwrap_or_default();
                    let location = format!(
                        "{}://{host}{port}{}",
                        r.scheme.as_deref().unwrap_or("http"),
                        view.path_and_query(&path)
                    );
                    decision.actions.direct = Some((r.status_code.unwrap_or(302), String::new()));
                    decision
                        .actions
                        .response_headers
                        .set
                        .push(("location".into(), location));
                }
            }
            "URLRewrite" => {
                if let Some(rw) = &f.url_rewrite {
                    if let Some(h) = &rw.hostname {
                        decision.actions.authority = Some(h.clone());
                    }
                    if let Some(p) = &rw.path
                        && let Some(path) = modified_path(p, prefix, view.path)
                    {
                        decision.actions.path_and_query = Some(view.path_and_query(&path));
                    }
                }
            }
            _ => {}
        }
    }
}

fn gw_route(
    t: &Tools,
    api: &Api,
    routes: &[(String, HttpRouteSpec)],
    fallback: &ServicePort,
    view: &View<'_>,
) -> RouteDecision {
    let Some((ns, rule, prefix)) = gw_select(t, routes, view) else {
        return RouteDecision {
            actions: direct(404, "no HTTPRoute rule matches"),
            ..RouteDecision::to(fallback.clone())
        };
    };
    if rule.filters.iter().any(|f| f.kind == "RequestRedirect") {
        let mut d = RouteDecision::to(fallback.clone());
        apply_filters(t, api, ns, &rule.filters, prefix, view, &mut d);
        return d;
    }
    let weights: Vec<f64> = rule
        .backend_refs
        .iter()
        .map(|b| b.weight.unwrap_or(1).max(0) as f64)
        .collect();
    let Some(b) = t.pick(&weights).map(|i| &rule.backend_refs[i]) else {
        return RouteDecision {
            actions: direct(500, "HTTPRoute rule has no backend with a weight"),
            ..RouteDecision::to(fallback.clone())
        };
    };
    let Some(backend) = b.service_port(api, ns, view.port) else {
        return RouteDecision {
            actions: direct(500, &format!("backendRef {:?} is not a Service", b.name)),
            ..RouteDecision::to(fallback.clone())
        };
    };
    let mut d = RouteDecision::to(backend);
    apply_filters(t, api, ns, &rule.filters, prefix, view, &mut d);
    apply_filters(t, api, ns, &b.filters, prefix, view, &mut d);
    d.actions.timeout = rule
        .timeouts
        .as_ref()
        .and_then(|t| t.request.as_deref())
        .and_then(parse_duration)
        .filter(|t| !t.is_zero());
    d
}

fn httproutes(
    api: &Api,
    attached: impl Fn(&str, &HttpRouteSpec) -> bool,
) -> Vec<(String, HttpRouteSpec)> {
    objects(api, GROUP, VERSIONS, "HTTPRoute")
        .iter()
        .filter_map(|o| {
            let ns = util::namespace(o).to_string();
            let s = spec::<HttpRouteSpec>(o)?;
            attached(&ns, &s).then_some((ns, s))
        })
        .collect()
}

impl Mesh for GatewayApi {
    fn route_service(
        &self,
        api: &Api,
        t: &Tools,
        to: &ServicePort,
        view: &View<'_>,
    ) -> Option<RouteDecision> {
        let routes = httproutes(api, |ns, s| {
            s.parent_refs.iter().any(|p| {
                p.is_service()
                    && p.name == to.service
                    && p.namespace.as_deref().unwrap_or(ns) == to.namespace
                    && p.port.is_none_or(|port| port == u32::from(to.port))
            })
        });
        (!routes.is_empty()).then(|| gw_route(t, api, &routes, to, view))
    }

    fn route_host(
        &self,
        api: &Api,
        t: &Tools,
        host: &str,
        view: &View<'_>,
    ) -> Option<RouteDecision> {
        let routes = httproutes(api, |_, s| {
            s.parent_refs.iter().any(ParentRef::is_gateway)
                && s.hostnames.iter().any(|h| hostname_matches(h, host))
        });
        // The gateway's workload, as Istio's Gateway API implementation names the Deployment
        // it makes for a Gateway: `<gateway>-istio` in the Gateway's namespace.
        let (ns, route) = routes.first()?;
        let gateway = route.parent_refs.iter().find(|p| p.is_gateway())?;
        let none = ServicePort {
            namespace: String::new(),
            service: String::new(),
            port: view.port,
        };
        let mut d = gw_route(t, api, &routes, &none, view);
        d.actions.gateway = Some(Workload::new(
            gateway.namespace.as_deref().unwrap_or(ns),
            &format!("{}-istio", gateway.name),
        ));
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::testing::{headers, with_view};
    use super::*;
    use axum::http::{HeaderMap, Method};
    use serde_json::{Value, json};

    #[test]
    fn gateway_matches_and_precedence() {
        let r = Tools::seeded(1);
        let m = |v: Value| -> GwMatch { serde_json::from_value(v).unwrap() };
        let h = headers(&[("x-canary", "insider"), ("cookie", "a=b; sticky=xyz")]);
        with_view(&Method::POST, "/api/items?tier=gold", &h, |v| {
            assert!(gw_match(&r, &m(json!({})), v).is_some());
            assert!(
                gw_match(
                    &r,
                    &m(json!({"path": {"type": "PathPrefix", "value": "/api"}})),
                    v
                )
                .is_some()
            );
            assert!(
                gw_match(
                    &r,
                    &m(json!({"path": {"type": "PathPrefix", "value": "/ap"}})),
                    v
                )
                .is_none()
            );
            assert!(
                gw_match(
                    &r,
                    &m(json!({"path": {"type": "Exact", "value": "/api/items"}})),
                    v
                )
                .is_some()
            );
            assert!(
                gw_match(
                    &r,
                    &m(json!({"path": {"type": "RegularExpression", "value": "/api/.*"}})),
                    v
                )
                .is_some()
            );
            assert!(gw_match(&r, &m(json!({"method": "POST"})), v).is_some());
            assert!(gw_match(&r, &m(json!({"method": "GET"})), v).is_none());
            assert!(
                gw_match(
                    &r,
                    &m(json!({"headers": [{"name": "X-Canary", "value": "insider"}]})),
                    v
                )
                .is_some()
            );
            assert!(
                gw_match(
                    &r,
                    &m(json!({"headers": [{"name": "x-canary", "value": "ins"}]})),
                    v
                )
                .is_none()
            );
            assert!(gw_match(&r, &m(json!({"headers": [{"type": "RegularExpression", "name": "cookie", "value": ".*sticky=xyz.*"}]})), v).is_some());
            assert!(
                gw_match(
                    &r,
                    &m(json!({"queryParams": [{"name": "tier", "value": "gold"}]})),
                    v
                )
                .is_some()
            );
            assert!(
                gw_match(
                    &r,
                    &m(json!({"queryParams": [{"name": "tier", "value": "silver"}]})),
                    v
                )
                .is_none()
            );
            let exact = gw_match(
                &r,
                &m(json!({"path": {"type": "Exact", "value": "/api/items"}})),
                v,
            );
            let long = gw_match(
                &r,
                &m(json!({"path": {"type": "PathPrefix", "value": "/api/items"}})),
                v,
            );
            let short = gw_match(
                &r,
                &m(json!({"path": {"type": "PathPrefix", "value": "/api"}})),
                v,
            );
            let headered = gw_match(
                &r,
                &m(
                    json!({"path": {"type": "PathPrefix", "value": "/api"}, "headers": [{"name": "x-canary", "value": "insider"}]}),
                ),
                v,
            );
            assert!(exact > long && long > headered && headered > short);
        });

        // The rule with more header matches wins over an earlier catch-all (Flagger's A/B).
        let routes: Vec<(String, HttpRouteSpec)> = vec![(
            "test".into(),
            serde_json::from_value(json!({"rules": [
                {"backendRefs": [{"name": "primary"}]},
                {"matches": [{"headers": [{"name": "x-canary", "value": "insider"}]}], "backendRefs": [{"name": "canary"}]},
            ]}))
            .unwrap(),
        )];
        let pick = |h: &HeaderMap| {
            with_view(&Method::GET, "/", h, |v| {
                gw_select(&r, &routes, v).map(|(_, rule, _)| rule.backend_refs[0].name.clone())
            })
        };
        assert_eq!(pick(&h).as_deref(), Some("canary"));
        assert_eq!(pick(&headers(&[])).as_deref(), Some("primary"));
    }

    #[test]
    fn rewrites() {
        assert_eq!(replace_prefix("/foo/bar", "/foo", "/baz"), "/baz/bar");
        assert_eq!(replace_prefix("/foo/bar", "/foo/", "/"), "/bar");
        assert_eq!(replace_prefix("/foo", "/foo", "/"), "/");
        assert_eq!(replace_prefix("/foo", "/foo", "/baz/"), "/baz");
    }
}
