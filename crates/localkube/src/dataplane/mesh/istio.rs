//! Istio: VirtualServices (`networking.istio.io`, any served version) route requests to the
//! Services their `hosts` name from the mesh (`gateways` empty or listing `mesh`), and requests
//! for the hosts of a gateway (a `gateways` entry other than `mesh`).
//!
//! `http` routes are tried in order; the first matching one picks a destination by weight and
//! carries mirrors, header edits, rewrites, a timeout, faults, a redirect or a direct response
//! (see `docs/localkube.md`).

use serde::Deserialize;
use std::collections::BTreeMap;

use super::super::router::{HeaderOps, RouteActions, RouteDecision, ServicePort, Workload};
use super::super::telemetry::{
    ISTIO_BUCKETS, MeshLabels, Recorded, Row, Telemetry, counter_and_histogram, escape, or_unknown,
};
use super::common::{
    Mesh, Tools, View, dest_port, direct, hostname_matches, objects, service_of, spec,
};
use crate::Api;
use crate::util;
use crate::util::parse_duration;

const GROUP: &str = "networking.istio.io";
const VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];

/// Istio: routing by VirtualServices, and the sidecars' standard metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Istio;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct VsSpec {
    hosts: Vec<String>,
    gateways: Vec<String>,
    http: Vec<VsRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct VsRoute {
    #[serde(rename = "match")]
    matches: Vec<VsMatch>,
    route: Vec<VsDest>,
    mirror: Option<VsDestination>,
    mirror_percentage: Option<Percent>,
    mirrors: Vec<VsMirror>,
    rewrite: Option<VsRewrite>,
    timeout: Option<String>,
    headers: Option<VsHeaders>,
    fault: Option<VsFault>,
    redirect: Option<VsRedirect>,
    direct_response: Option<VsDirectResponse>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VsFault {
    delay: Option<VsDelay>,
    abort: Option<VsAbort>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct VsDelay {
    fixed_delay: Option<String>,
    percentage: Option<Percent>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct VsAbort {
    http_status: Option<u16>,
    percentage: Option<Percent>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct VsRedirect {
    uri: Option<String>,
    authority: Option<String>,
    scheme: Option<String>,
    redirect_code: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VsDirectResponse {
    status: u16,
    body: Option<VsBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VsBody {
    string: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct VsMatch {
    uri: Option<StringMatch>,
    method: Option<StringMatch>,
    authority: Option<StringMatch>,
    headers: BTreeMap<String, StringMatch>,
    without_headers: BTreeMap<String, StringMatch>,
    query_params: BTreeMap<String, StringMatch>,
    ignore_uri_case: bool,
    port: Option<u32>,
    source_labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StringMatch {
    exact: Option<String>,
    prefix: Option<String>,
    regex: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VsDest {
    destination: VsDestination,
    weight: Option<i64>,
    headers: Option<VsHeaders>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VsDestination {
    host: String,
    port: Option<PortSelector>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PortSelector {
    number: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Percent {
    value: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VsMirror {
    destination: VsDestination,
    percentage: Option<Percent>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VsRewrite {
    uri: Option<String>,
    authority: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VsHeaders {
    request: Option<VsHeaderOps>,
    response: Option<VsHeaderOps>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VsHeaderOps {
    set: BTreeMap<String, String>,
    add: BTreeMap<String, String>,
    remove: Vec<String>,
}

impl VsHeaderOps {
    fn ops(&self) -> HeaderOps {
        HeaderOps {
            set: self.set.clone().into_iter().collect(),
            add: self.add.clone().into_iter().collect(),
            remove: self.remove.clone(),
        }
    }
}

fn vs_ops(h: Option<&VsHeaders>) -> (HeaderOps, HeaderOps) {
    let pick = |o: Option<&VsHeaderOps>| o.map(VsHeaderOps::ops).unwrap_or_default();
    (
        pick(h.and_then(|h| h.request.as_ref())),
        pick(h.and_then(|h| h.response.as_ref())),
    )
}

/// `path`, matched by `prefix`, with the prefix replaced by `uri`; a slash is not doubled
/// (`/api` rewritten to `/` makes `/api/version` `/version`, as Istio does).
fn istio_prefix_rewrite(path: &str, prefix: &str, uri: &str) -> String {
    let rest = path.get(prefix.len()..).unwrap_or_default();
    match rest.strip_prefix('/') {
        Some(r) if uri.ends_with('/') => format!("{uri}{r}"),
        _ => format!("{uri}{rest}"),
    }
}

/// Whether a VirtualService `host` written in namespace `ns` names the Service `to`.
fn vs_host_names(host: &str, ns: &str, to: &ServicePort) -> bool {
    let fqdn = format!("{}.{}.svc.cluster.local", to.service, to.namespace);
    match host {
        "*" => true,
        h if h.starts_with("*.") => fqdn.ends_with(&h[1..]),
        h => service_of(h, ns).is_some_and(|(n, s)| n == to.namespace && s == to.service),
    }
}

fn string_match(t: &Tools, m: &StringMatch, value: Option<&str>, ignore_case: bool) -> bool {
    let Some(value) = value else {
        return false;
    };
    let lower = |s: &str| {
        if ignore_case {
            s.to_ascii_lowercase()
        } else {
            s.to_string()
        }
    };
    let v = lower(value);
    if let Some(e) = &m.exact {
        return v == lower(e);
    }
    if let Some(p) = &m.prefix {
        return v.starts_with(&lower(p));
    }
    if let Some(r) = &m.regex {
        return t.full_match(r, value);
    }
    true
}

fn vs_match(t: &Tools, m: &VsMatch, view: &View<'_>) -> bool {
    if !m.source_labels.is_empty() {
        // The proxy does not know which workload sent a request.
        return false;
    }
    if m.port.is_some_and(|p| p != u32::from(view.port)) {
        return false;
    }
    if let Some(u) = &m.uri
        && !string_match(t, u, Some(view.path), m.ignore_uri_case)
    {
        return false;
    }
    if let Some(x) = &m.method
        && !string_match(t, x, Some(view.method), false)
    {
        return false;
    }
    if let Some(a) = &m.authority
        && !string_match(t, a, view.header("host").as_deref(), false)
    {
        return false;
    }
    for (name, sm) in &m.headers {
        if !string_match(t, sm, view.header(name).as_deref(), false) {
            return false;
        }
    }
    for (name, sm) in &m.without_headers {
        if string_match(t, sm, view.header(name).as_deref(), false) {
            return false;
        }
    }
    for (name, sm) in &m.query_params {
        if !string_match(t, sm, view.query_param(name), false) {
            return false;
        }
    }
    true
}

/// The first of `routes` that matches, and the match that did (`None`: no `match`).
fn vs_select<'r>(
    t: &Tools,
    routes: &'r [VsRoute],
    view: &View<'_>,
) -> Option<(&'r VsRoute, Option<&'r VsMatch>)> {
    routes.iter().find_map(|r| {
        if r.matches.is_empty() {
            return Some((r, None));
        }
        r.matches
            .iter()
            .find(|m| vs_match(t, m, view))
            .map(|m| (r, Some(m)))
    })
}

fn vs_port(api: &Api, d: &VsDestination, ns: &str, port: u16) -> Option<ServicePort> {
    let (dns, name) = service_of(&d.host, ns)?;
    let port = dest_port(
        api,
        &dns,
        &name,
        d.port.as_ref().and_then(|p| p.number),
        port,
    );
    Some(ServicePort {
        namespace: dns,
        service: name,
        port,
    })
}

/// A route's `redirect` or `directResponse`: answered without a backend.
fn vs_answer(route: &VsRoute, view: &View<'_>) -> Option<RouteActions> {
    if let Some(d) = &route.direct_response {
        let body = d.body.as_ref().and_then(|b| b.string.clone());
        return Some(RouteActions {
            direct: Some((d.status, body.unwrap_or_default())),
            ..Default::default()
        });
    }
    let r = route.redirect.as_ref()?;
    let path = r.uri.as_deref().unwrap_or(view.path);
    let location = match (&r.authority, &r.scheme) {
        (None, None) => view.path_and_query(path),
        (authority, scheme) => {
            let host = authority
                .clone()
                .or_else(|| view.header("host"))
                .unwrap_or_default();
            format!(
                "{}://{host}{}",
                scheme.as_deref().unwrap_or("http"),
                view.path_and_query(path)
            )
        }
    };
    Some(RouteActions {
        direct: Some((r.redirect_code.unwrap_or(301), String::new())),
        response_headers: HeaderOps {
            set: vec![("location".into(), location)],
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Routes by one VirtualService `vs` in namespace `ns`.
fn vs_route(
    t: &Tools,
    api: &Api,
    ns: &str,
    vs: &VsSpec,
    fallback: &ServicePort,
    view: &View<'_>,
) -> RouteDecision {
    let Some((route, matched)) = vs_select(t, &vs.http, view) else {
        return RouteDecision {
            actions: direct(404, "no VirtualService route matches"),
            ..RouteDecision::to(fallback.clone())
        };
    };
    if let Some(actions) = vs_answer(route, view) {
        return RouteDecision {
            actions,
            ..RouteDecision::to(fallback.clone())
        };
    }
    let all_unweighted = route.route.iter().all(|d| d.weight.is_none());
    let weights: Vec<f64> = route
        .route
        .iter()
        .map(|d| match d.weight {
            Some(w) => w.max(0) as f64,
            None if all_unweighted => 1.0,
            None => 0.0,
        })
        .collect();
    let chosen = t
        .pick(&weights)
        .or_else(|| (!route.route.is_empty()).then_some(0));
    let Some(dest) = chosen.map(|i| &route.route[i]) else {
        return RouteDecision {
            actions: direct(503, "VirtualService route has no destination"),
            ..RouteDecision::to(fallback.clone())
        };
    };
    let Some(backend) = vs_port(api, &dest.destination, ns, view.port) else {
        return RouteDecision {
            actions: direct(
                502,
                &format!(
                    "destination {:?} is not a cluster Service",
                    dest.destination.host
                ),
            ),
            ..RouteDecision::to(fallback.clone())
        };
    };
    let (mut req_ops, mut resp_ops) = vs_ops(route.headers.as_ref());
    let (dreq, dresp) = vs_ops(dest.headers.as_ref());
    req_ops.extend(dreq);
    resp_ops.extend(dresp);
    let mut mirrors = Vec::new();
    if let Some(m) = &route.mirror {
        let pct = route.mirror_percentage.as_ref().map_or(100.0, |p| p.value);
        if t.sample(pct)
            && let Some(sp) = vs_port(api, m, ns, view.port)
        {
            mirrors.push(sp);
        }
    }
    for m in &route.mirrors {
        let pct = m.percentage.as_ref().map_or(100.0, |p| p.value);
        if t.sample(pct)
            && let Some(sp) = vs_port(api, &m.destination, ns, view.port)
        {
            mirrors.push(sp);
        }
    }
    let mut actions = RouteActions {
        request_headers: req_ops,
        response_headers: resp_ops,
        timeout: route.timeout.as_deref().and_then(parse_duration),
        ..Default::default()
    };
    if let Some(f) = &route.fault {
        if let Some(d) = &f.delay
            && t.sample(d.percentage.as_ref().map_or(100.0, |p| p.value))
        {
            actions.delay = d.fixed_delay.as_deref().and_then(parse_duration);
        }
        if let Some(a) = &f.abort
            && t.sample(a.percentage.as_ref().map_or(100.0, |p| p.value))
        {
            actions.direct = Some((
                a.http_status.unwrap_or(503),
                "fault filter abort\n".to_string(),
            ));
        }
    }
    if let Some(rw) = &route.rewrite {
        if let Some(uri) = &rw.uri {
            let prefix = matched
                .and_then(|m| m.uri.as_ref())
                .and_then(|u| u.prefix.as_deref());
            let path = match prefix {
                Some(p) => istio_prefix_rewrite(view.path, p, uri),
                None => uri.clone(),
            };
            actions.path_and_query = Some(view.path_and_query(&path));
        }
        actions.authority = rw.authority.clone();
    }
    RouteDecision {
        backend,
        mirrors,
        actions,
    }
}

/// Whether a gateway-bound VirtualService `host` takes a request for `host`: `*` takes every
/// host, `*.example.com` every name under `example.com`, others the same name.
fn gateway_host_matches(pattern: &str, host: &str) -> bool {
    pattern == "*" || hostname_matches(pattern, host)
}

/// The oldest VirtualService for which `claims(namespace, spec)` holds, with its namespace.
fn first_vs(api: &Api, claims: impl Fn(&str, &VsSpec) -> bool) -> Option<(String, VsSpec)> {
    objects(api, GROUP, VERSIONS, "VirtualService")
        .iter()
        .find_map(|o| {
            let ns = util::namespace(o);
            let vs = spec::<VsSpec>(o)?;
            claims(ns, &vs).then(|| (ns.to_string(), vs))
        })
}

impl Mesh for Istio {
    fn route_service(
        &self,
        api: &Api,
        t: &Tools,
        to: &ServicePort,
        view: &View<'_>,
    ) -> Option<RouteDecision> {
        let (ns, vs) = first_vs(api, |ns, vs| {
            let mesh = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh");
            mesh && vs.hosts.iter().any(|h| vs_host_names(h, ns, to))
        })?;
        Some(vs_route(t, api, &ns, &vs, to, view))
    }

    fn route_host(
        &self,
        api: &Api,
        t: &Tools,
        host: &str,
        view: &View<'_>,
    ) -> Option<RouteDecision> {
        let (ns, vs) = first_vs(api, |_, vs| {
            let gateway = vs.gateways.iter().any(|g| g != "mesh");
            gateway && vs.hosts.iter().any(|h| gateway_host_matches(h, host))
        })?;
        let none = ServicePort {
            namespace: ns.clone(),
            service: String::new(),
            port: view.port,
        };
        let mut d = vs_route(t, api, &ns, &vs, &none, view);
        d.actions.gateway = Some(Workload::new("istio-system", "istio-ingressgateway"));
        Some(d)
    }
}

/// Istio's standard labels of one series, as either reporter fills them: the client (`source_*`,
/// `unknown` when the data plane does not know it), the workload that answered and the Service
/// the request was sent to (`unknown` when none), the answer.
fn labels(l: &MeshLabels) -> String {
    let fqdn = if l.service.is_empty() {
        "unknown".to_string()
    } else {
        format!(
            "{}.{}.svc.cluster.local",
            escape(&l.service),
            escape(&l.service_namespace)
        )
    };
    format!(
        "reporter=\"{}\",source_workload=\"{}\",source_workload_namespace=\"{}\",destination_workload=\"{}\",destination_workload_namespace=\"{}\",destination_service=\"{fqdn}\",destination_service_name=\"{}\",destination_service_namespace=\"{}\",request_protocol=\"http\",response_code=\"{}\",response_flags=\"{}\"",
        l.reporter.as_str(),
        or_unknown(&l.source_workload),
        or_unknown(&l.source_namespace),
        or_unknown(&l.workload),
        or_unknown(&l.namespace),
        or_unknown(&l.service),
        or_unknown(&l.service_namespace),
        l.status,
        l.response_flags,
    )
}

/// `istio_requests_total` and `istio_request_duration_milliseconds`, from both reporters.
impl Telemetry for Istio {
    fn render(&self, recorded: &Recorded, out: &mut String) {
        let rows: Vec<Row<'_>> = recorded
            .mesh
            .iter()
            .map(|(l, h)| Row {
                labels: labels(l),
                counter_only: String::new(),
                buckets: &h.istio,
                sum: h.sum_ms,
                count: h.count,
            })
            .collect();
        counter_and_histogram(
            out,
            (
                "istio_requests_total",
                "Requests, as the client's and the destination's proxies report them.",
            ),
            (
                "istio_request_duration_milliseconds",
                "Request durations, as the client's and the destination's proxies report them.",
            ),
            &ISTIO_BUCKETS,
            &rows,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::testing::{headers, with_view};
    use super::*;
    use axum::http::{HeaderMap, Method};
    use serde_json::{Value, json};

    fn parse(m: Value) -> VsMatch {
        serde_json::from_value(m).unwrap_or_default()
    }

    #[test]
    fn istio_string_matches() {
        let r = Tools::seeded(1);
        let h = headers(&[
            ("x-canary", "insider"),
            ("cookie", "a=1"),
            ("cookie", "flagger-cookie=abcdefghij"),
            ("user-agent", "Mozilla/5.0 Firefox/99"),
        ]);
        with_view(&Method::GET, "/api/v1/items?tier=gold&x=1", &h, |v| {
            let yes = [
                json!({"headers": {"x-canary": {"exact": "insider"}}}),
                json!({"headers": {"X-Canary": {"prefix": "ins"}}}),
                json!({"headers": {"Cookie": {"regex": ".*flagger-cookie.*abcdefghij.*"}}}),
                json!({"headers": {"user-agent": {"regex": ".*Firefox.*"}}}),
                json!({"headers": {"x-canary": {}}}),
                json!({"uri": {"prefix": "/api"}}),
                json!({"uri": {"exact": "/api/v1/items"}}),
                json!({"uri": {"regex": "/api/v[0-9]+/.*"}}),
                json!({"uri": {"exact": "/API/v1/items"}, "ignoreUriCase": true}),
                json!({"method": {"exact": "GET"}}),
                json!({"queryParams": {"tier": {"exact": "gold"}}}),
                json!({"queryParams": {"tier": {"regex": "g.*"}}}),
                json!({"withoutHeaders": {"x-other": {}}}),
                json!({"port": 9898}),
                json!({}),
            ];
            for m in yes {
                assert!(vs_match(&r, &parse(m.clone()), v), "{m}");
            }
            let no = [
                json!({"headers": {"x-canary": {"exact": "outsider"}}}),
                json!({"headers": {"x-missing": {}}}),
                json!({"headers": {"Cookie": {"regex": ".*other-cookie.*"}}}),
                // Regexes match whole values.
                json!({"headers": {"user-agent": {"regex": "Firefox"}}}),
                json!({"uri": {"prefix": "/web"}}),
                json!({"uri": {"exact": "/API/v1/items"}}),
                json!({"method": {"exact": "POST"}}),
                json!({"queryParams": {"tier": {"exact": "silver"}}}),
                json!({"withoutHeaders": {"x-canary": {"exact": "insider"}}}),
                json!({"sourceLabels": {"app": "front"}}),
                json!({"port": 80}),
                json!({"headers": {"x-canary": {"regex": "(unclosed"}}}),
            ];
            for m in no {
                assert!(!vs_match(&r, &parse(m.clone()), v), "{m}");
            }
        });
    }

    #[test]
    fn istio_routes_are_tried_in_order() {
        let r = Tools::seeded(1);
        let routes: Vec<VsRoute> = serde_json::from_value(json!([
            {"match": [{"headers": {"x-a": {"exact": "1"}}}, {"uri": {"prefix": "/b"}}], "route": [{"destination": {"host": "one"}}]},
            {"route": [{"destination": {"host": "two"}}]},
        ]))
        .unwrap();
        let pick = |pq: &str, h: &HeaderMap| {
            with_view(&Method::GET, pq, h, |v| {
                vs_select(&r, &routes, v).map(|(route, _)| route.route[0].destination.host.clone())
            })
        };
        assert_eq!(pick("/", &headers(&[("x-a", "1")])).as_deref(), Some("one"));
        assert_eq!(pick("/b/c", &headers(&[])).as_deref(), Some("one"));
        assert_eq!(pick("/", &headers(&[("x-a", "2")])).as_deref(), Some("two"));
    }

    #[test]
    fn rewrites() {
        assert_eq!(
            istio_prefix_rewrite("/api/version", "/api", "/"),
            "/version"
        );
        assert_eq!(
            istio_prefix_rewrite("/api/version", "/api/", "/"),
            "/version"
        );
        assert_eq!(istio_prefix_rewrite("/api", "/api", "/"), "/");
        assert_eq!(istio_prefix_rewrite("/api/x", "/api", "/v2"), "/v2/x");
    }

    #[test]
    fn names() {
        let to = ServicePort {
            namespace: "test".into(),
            service: "podinfo".into(),
            port: 9898,
        };
        for h in [
            "podinfo",
            "podinfo.test",
            "podinfo.test.svc",
            "podinfo.test.svc.cluster.local",
            "*.test.svc.cluster.local",
            "*",
        ] {
            assert!(vs_host_names(h, "test", &to), "{h}");
        }
        for h in [
            "podinfo.other",
            "front",
            "app.example.com",
            "*.other.svc.cluster.local",
        ] {
            assert!(!vs_host_names(h, "test", &to), "{h}");
        }
        assert!(!vs_host_names("podinfo", "other", &to));
        for (pattern, host, yes) in [
            ("*", "app.example.com", true),
            ("*", "anything", true),
            ("*.example.com", "app.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("app.example.com", "APP.example.com", true),
            ("app.example.com", "www.example.com", false),
        ] {
            assert_eq!(gateway_host_matches(pattern, host), yes, "{pattern} {host}");
        }
    }
}
