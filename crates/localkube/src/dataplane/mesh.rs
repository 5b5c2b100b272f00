//! Mesh routing: a [`Router`] that reads Istio VirtualServices, Gateway API HTTPRoutes and SMI
//! TrafficSplits from the store and routes as the mesh would.
//!
//! Which mesh is "installed" is decided per Service, by the objects that exist: a request to a
//! Service is routed by the oldest VirtualService (any served version of
//! `networking.istio.io`) whose `hosts` name the Service and whose `gateways` are empty or list
//! `mesh`; failing that, by the HTTPRoutes (`gateway.networking.k8s.io`) with a `parentRef` to
//! the Service (GAMMA); failing that, by the oldest TrafficSplit (`split.smi-spec.io`) whose
//! `spec.service` is the Service; failing all three, by kube-proxy (the Service itself).
//!
//! A request for a host that is not a cluster name (`app.example.com`) goes through the
//! "gateway": HTTPRoutes with a Gateway parent whose `hostnames` match the host, then
//! VirtualServices bound to a gateway other than `mesh` whose `hosts` match it, then the NGINX
//! ingress: Ingresses with a rule for the host and their canary annotations
//! ([`super::ingress`]). Without any of these it is forwarded outside the cluster as before.
//!
//! The mesh routes once, as a client sidecar does: the chosen backend Service is not routed
//! again. Weighted choices and mirror percentages draw from a seeded generator
//! ([`MeshRouter::seeded`]) so tests are deterministic.
//!
//! The objects are read as JSON from the store and parsed here into the fields honoured; this
//! crate depends on no mesh or Flagger crate.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use axum::http::HeaderMap;
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use super::router::{HeaderOps, RequestInfo, RouteActions, RouteDecision, Router, ServicePort};
use crate::Api;
use crate::controllers::parse_duration;
use crate::util;

const ISTIO_GROUP: &str = "networking.istio.io";
const ISTIO_VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];
const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
const GATEWAY_VERSIONS: &[&str] = &["v1", "v1beta1"];
const SMI_GROUP: &str = "split.smi-spec.io";
const SMI_VERSIONS: &[&str] = &["v1alpha3", "v1alpha2", "v1alpha1"];

/// Routes by the mesh objects in the store (see the module docs); kube-proxy when there are
/// none.
#[derive(Debug)]
pub struct MeshRouter {
    rng: Mutex<u64>,
    regexes: Mutex<HashMap<String, Option<Regex>>>,
    /// The prefix of the NGINX ingress annotations (`nginx.ingress.kubernetes.io`).
    pub(super) nginx_prefix: String,
}

impl Default for MeshRouter {
    fn default() -> Self {
        Self::seeded(uuid::Uuid::new_v4().as_u128() as u64)
    }
}

impl MeshRouter {
    /// A router whose weighted choices follow from `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self {
            rng: Mutex::new(seed),
            regexes: Mutex::new(HashMap::new()),
            nginx_prefix: super::ingress::DEFAULT_PREFIX.to_string(),
        }
    }

    /// The same router reading the NGINX ingress annotations under `prefix` instead of
    /// `nginx.ingress.kubernetes.io` (ingress-nginx's `--annotations-prefix`, Flagger's
    /// `-ingress-annotations-prefix`).
    pub fn with_nginx_annotations_prefix(mut self, prefix: &str) -> Self {
        self.nginx_prefix = prefix.trim_end_matches('/').to_string();
        self
    }

    /// A uniform number in [0, 1) (splitmix64).
    pub(super) fn chance(&self) -> f64 {
        let mut s = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether `value` matches `re` entirely (RE2-style full match); an invalid expression
    /// matches nothing.
    fn full_match(&self, re: &str, value: &str) -> bool {
        let mut cache = self.regexes.lock().unwrap_or_else(|e| e.into_inner());
        let compiled = cache
            .entry(re.to_string())
            .or_insert_with(|| Regex::new(&format!("^(?:{re})$")).ok());
        compiled.as_ref().is_some_and(|r| r.is_match(value))
    }

    /// Whether `re` matches somewhere in `value` (an unanchored search, as PCRE's and
    /// `ngx.re.match`'s); an invalid expression matches nothing.
    pub(super) fn search(&self, re: &str, value: &str) -> bool {
        let mut cache = self.regexes.lock().unwrap_or_else(|e| e.into_inner());
        // Keyed apart from the anchored forms `full_match` caches.
        let compiled = cache
            .entry(format!("\u{0}{re}"))
            .or_insert_with(|| Regex::new(re).ok());
        compiled.as_ref().is_some_and(|r| r.is_match(value))
    }

    /// Index of the entry of `weights` drawn at random in proportion to the weights; `None`
    /// when they are all zero.
    fn pick(&self, weights: &[f64]) -> Option<usize> {
        let total: f64 = weights.iter().filter(|w| **w > 0.0).sum();
        if total <= 0.0 {
            return None;
        }
        let mut x = self.chance() * total;
        let mut last = None;
        for (i, w) in weights.iter().enumerate() {
            if *w <= 0.0 {
                continue;
            }
            if x < *w {
                return Some(i);
            }
            x -= *w;
            last = Some(i);
        }
        last
    }

    /// Whether a copy goes out, at `percent` (0..=100).
    fn sample(&self, percent: f64) -> bool {
        percent >= 100.0 || (percent > 0.0 && self.chance() * 100.0 < percent)
    }
}

// ---------------------------------------------------------------------------------------------
// The request as the matchers see it.

pub(super) struct View<'a> {
    method: &'a str,
    pub(super) path: &'a str,
    /// The query string as sent (kept as is when the path is rewritten).
    raw_query: &'a str,
    query: Vec<(String, String)>,
    pub(super) headers: &'a HeaderMap,
    port: u16,
}

impl<'a> View<'a> {
    pub(super) fn new(request: &'a RequestInfo<'a>, port: u16) -> Self {
        let (path, query) = match request.path_and_query.split_once('?') {
            Some((p, q)) => (p, q),
            None => (request.path_and_query, ""),
        };
        Self {
            method: request.method.as_str(),
            path: if path.is_empty() { "/" } else { path },
            raw_query: query,
            query: url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            headers: request.headers,
            port,
        }
    }

    /// All values of a header, joined (`; ` for cookies, `, ` otherwise).
    fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        let values: Vec<&str> = self
            .headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            return None;
        }
        Some(values.join(if name == "cookie" { "; " } else { ", " }))
    }

    fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `path` with the request's query string.
    fn path_and_query(&self, path: &str) -> String {
        if self.raw_query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", self.raw_query)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Names.

/// `(namespace, name)` of a Service named `host` from namespace `ns` (`svc`, `svc.ns`,
/// `svc.ns.svc`, `svc.ns.svc.cluster.local`); `None` for other host names.
fn service_of(host: &str, ns: &str) -> Option<(String, String)> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let base = host
        .strip_suffix(".svc.cluster.local")
        .or_else(|| host.strip_suffix(".svc"))
        .unwrap_or(&host);
    let parts: Vec<&str> = base.split('.').collect();
    match parts.as_slice() {
        [name] if !name.is_empty() => Some((ns.to_string(), (*name).to_string())),
        [name, ns] => Some(((*ns).to_string(), (*name).to_string())),
        _ => None,
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

/// Whether a hostname pattern (`app.example.com`, `*.example.com`) matches `host`.
pub(super) fn hostname_matches(pattern: &str, host: &str) -> bool {
    let (pattern, host) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    match pattern.strip_prefix('*') {
        Some(suffix) if suffix.starts_with('.') => {
            host.ends_with(suffix) && host.len() > suffix.len()
        }
        _ => pattern == host,
    }
}

/// The port of Service `ns/name` a request to `port` lands on: `explicit` if given, else
/// `port` if the Service has it, else its only port.
fn dest_port(api: &Api, ns: &str, name: &str, explicit: Option<u32>, port: u16) -> u16 {
    if let Some(p) = explicit.and_then(|p| u16::try_from(p).ok()) {
        return p;
    }
    let ports: Vec<u16> = api
        .resource("v1", "Service")
        .ok()
        .and_then(|info| api.store.get(&info.storage_key(), ns, name))
        .and_then(|s| s.pointer("/spec/ports").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p["port"].as_u64().and_then(|p| u16::try_from(p).ok()))
        .collect();
    match ports.as_slice() {
        [only] if *only != port => *only,
        _ => port,
    }
}

/// The objects of a kind, across namespaces and every served version, oldest first.
pub(super) fn objects(api: &Api, group: &str, versions: &[&str], kind: &str) -> Vec<Value> {
    let mut keys = Vec::new();
    for v in versions {
        if let Ok(info) = api.resource(&format!("{group}/{v}"), kind) {
            let key = info.storage_key();
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    let mut out: Vec<Value> = keys
        .iter()
        .flat_map(|k| api.store.list(k, None).0)
        .filter(|o| o.pointer("/metadata/deletionTimestamp").is_none())
        .collect();
    out.sort_by_cached_key(|o| {
        (
            util::str_at(o, &["metadata", "creationTimestamp"])
                .unwrap_or_default()
                .to_string(),
            util::namespace(o).to_string(),
            util::name(o).to_string(),
        )
    });
    out
}

pub(super) fn spec<T: for<'de> Deserialize<'de>>(o: &Value) -> Option<T> {
    match serde_json::from_value(o.get("spec").cloned().unwrap_or(Value::Null)) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!(
                namespace = util::namespace(o),
                name = util::name(o),
                "mesh routing ignores an object it cannot read: {e}"
            );
            None
        }
    }
}

fn direct(status: u16, message: &str) -> RouteActions {
    RouteActions {
        direct: Some((status, format!("localkube mesh: {message}\n"))),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Istio.

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

impl MeshRouter {
    fn string_match(&self, m: &StringMatch, value: Option<&str>, ignore_case: bool) -> bool {
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
            return self.full_match(r, value);
        }
        true
    }

    fn vs_match(&self, m: &VsMatch, view: &View<'_>) -> bool {
        if !m.source_labels.is_empty() {
            // The proxy does not know which workload sent a request.
            return false;
        }
        if m.port.is_some_and(|p| p != u32::from(view.port)) {
            return false;
        }
        if let Some(u) = &m.uri
            && !self.string_match(u, Some(view.path), m.ignore_uri_case)
        {
            return false;
        }
        if let Some(x) = &m.method
            && !self.string_match(x, Some(view.method), false)
        {
            return false;
        }
        if let Some(a) = &m.authority
            && !self.string_match(a, view.header("host").as_deref(), false)
        {
            return false;
        }
        for (name, sm) in &m.headers {
            if !self.string_match(sm, view.header(name).as_deref(), false) {
                return false;
            }
        }
        for (name, sm) in &m.without_headers {
            if self.string_match(sm, view.header(name).as_deref(), false) {
                return false;
            }
        }
        for (name, sm) in &m.query_params {
            if !self.string_match(sm, view.query_param(name), false) {
                return false;
            }
        }
        true
    }

    /// The first of `routes` that matches, and the match that did (`None`: no `match`).
    fn vs_select<'r>(
        &self,
        routes: &'r [VsRoute],
        view: &View<'_>,
    ) -> Option<(&'r VsRoute, Option<&'r VsMatch>)> {
        routes.iter().find_map(|r| {
            if r.matches.is_empty() {
                return Some((r, None));
            }
            r.matches
                .iter()
                .find(|m| self.vs_match(m, view))
                .map(|m| (r, Some(m)))
        })
    }

    fn vs_port(&self, api: &Api, d: &VsDestination, ns: &str, port: u16) -> Option<ServicePort> {
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
    fn vs_answer(&self, route: &VsRoute, view: &View<'_>) -> Option<RouteActions> {
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
        &self,
        api: &Api,
        ns: &str,
        vs: &VsSpec,
        fallback: &ServicePort,
        view: &View<'_>,
    ) -> RouteDecision {
        let Some((route, matched)) = self.vs_select(&vs.http, view) else {
            return RouteDecision {
                actions: direct(404, "no VirtualService route matches"),
                ..RouteDecision::to(fallback.clone())
            };
        };
        if let Some(actions) = self.vs_answer(route, view) {
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
        let chosen = self
            .pick(&weights)
            .or_else(|| (!route.route.is_empty()).then_some(0));
        let Some(dest) = chosen.map(|i| &route.route[i]) else {
            return RouteDecision {
                actions: direct(503, "VirtualService route has no destination"),
                ..RouteDecision::to(fallback.clone())
            };
        };
        let Some(backend) = self.vs_port(api, &dest.destination, ns, view.port) else {
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
            if self.sample(pct)
                && let Some(sp) = self.vs_port(api, m, ns, view.port)
            {
                mirrors.push(sp);
            }
        }
        for m in &route.mirrors {
            let pct = m.percentage.as_ref().map_or(100.0, |p| p.value);
            if self.sample(pct)
                && let Some(sp) = self.vs_port(api, &m.destination, ns, view.port)
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
                && self.sample(d.percentage.as_ref().map_or(100.0, |p| p.value))
            {
                actions.delay = d.fixed_delay.as_deref().and_then(parse_duration);
            }
            if let Some(a) = &f.abort
                && self.sample(a.percentage.as_ref().map_or(100.0, |p| p.value))
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

    fn istio(&self, api: &Api, to: &ServicePort, view: &View<'_>) -> Option<RouteDecision> {
        for o in objects(api, ISTIO_GROUP, ISTIO_VERSIONS, "VirtualService") {
            let ns = util::namespace(&o);
            let Some(vs) = spec::<VsSpec>(&o) else {
                continue;
            };
            let mesh = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh");
            if mesh && vs.hosts.iter().any(|h| vs_host_names(h, ns, to)) {
                return Some(self.vs_route(api, ns, &vs, to, view));
            }
        }
        None
    }

    fn istio_gateway(&self, api: &Api, host: &str, view: &View<'_>) -> Option<RouteDecision> {
        for o in objects(api, ISTIO_GROUP, ISTIO_VERSIONS, "VirtualService") {
            let ns = util::namespace(&o);
            let Some(vs) = spec::<VsSpec>(&o) else {
                continue;
            };
            let gateway = vs.gateways.iter().any(|g| g != "mesh");
            if gateway && vs.hosts.iter().any(|h| hostname_matches(h, host)) {
                let none = ServicePort {
                    namespace: ns.to_string(),
                    service: String::new(),
                    port: view.port,
                };
                return Some(self.vs_route(api, ns, &vs, &none, view));
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Gateway API.

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

/// `/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`.
pub(super) fn path_prefix_matches(prefix: &str, path: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    p.is_empty()
        || path == p
        || path
            .strip_prefix(p)
            .is_some_and(|rest| rest.starts_with('/'))
}

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

impl MeshRouter {
    /// Whether `m` matches, and how specific it is.
    fn gw_match(&self, m: &GwMatch, view: &View<'_>) -> Option<Specificity> {
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
            "RegularExpression" if self.full_match(value, view.path) => 0,
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
                "RegularExpression" => self.full_match(&h.value, &v),
                _ => v == h.value,
            };
            if !ok {
                return None;
            }
        }
        for q in &m.query_params {
            let v = view.query_param(&q.name)?;
            let ok = match q.kind.as_deref().unwrap_or("Exact") {
                "RegularExpression" => self.full_match(&q.value, v),
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
        &self,
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
                    let Some(spec) = self.gw_match(m, view) else {
                        continue;
                    };
                    if best.as_ref().is_none_or(|(b, ..)| spec > *b) {
                        let prefix = match &m.path {
                            Some(p)
                                if p.kind.as_deref().unwrap_or("PathPrefix") == "PathPrefix" =>
                            {
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
        &self,
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
                        if self.sample(pct)
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
                        decision.actions.direct =
                            Some((r.status_code.unwrap_or(302), String::new()));
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
        &self,
        api: &Api,
        routes: &[(String, HttpRouteSpec)],
        fallback: &ServicePort,
        view: &View<'_>,
    ) -> RouteDecision {
        let Some((ns, rule, prefix)) = self.gw_select(routes, view) else {
            return RouteDecision {
                actions: direct(404, "no HTTPRoute rule matches"),
                ..RouteDecision::to(fallback.clone())
            };
        };
        if rule.filters.iter().any(|f| f.kind == "RequestRedirect") {
            let mut d = RouteDecision::to(fallback.clone());
            self.apply_filters(api, ns, &rule.filters, prefix, view, &mut d);
            return d;
        }
        let weights: Vec<f64> = rule
            .backend_refs
            .iter()
            .map(|b| b.weight.unwrap_or(1).max(0) as f64)
            .collect();
        let Some(b) = self.pick(&weights).map(|i| &rule.backend_refs[i]) else {
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
        self.apply_filters(api, ns, &rule.filters, prefix, view, &mut d);
        self.apply_filters(api, ns, &b.filters, prefix, view, &mut d);
        d.actions.timeout = rule
            .timeouts
            .as_ref()
            .and_then(|t| t.request.as_deref())
            .and_then(parse_duration)
            .filter(|t| !t.is_zero());
        d
    }

    fn httproutes(
        &self,
        api: &Api,
        attached: impl Fn(&str, &HttpRouteSpec) -> bool,
    ) -> Vec<(String, HttpRouteSpec)> {
        objects(api, GATEWAY_GROUP, GATEWAY_VERSIONS, "HTTPRoute")
            .iter()
            .filter_map(|o| {
                let ns = util::namespace(o).to_string();
                let s = spec::<HttpRouteSpec>(o)?;
                attached(&ns, &s).then_some((ns, s))
            })
            .collect()
    }

    fn gamma(&self, api: &Api, to: &ServicePort, view: &View<'_>) -> Option<RouteDecision> {
        let routes = self.httproutes(api, |ns, s| {
            s.parent_refs.iter().any(|p| {
                p.is_service()
                    && p.name == to.service
                    && p.namespace.as_deref().unwrap_or(ns) == to.namespace
                    && p.port.is_none_or(|port| port == u32::from(to.port))
            })
        });
        (!routes.is_empty()).then(|| self.gw_route(api, &routes, to, view))
    }

    fn gateway(&self, api: &Api, host: &str, view: &View<'_>) -> Option<RouteDecision> {
        let routes = self.httproutes(api, |_, s| {
            s.parent_refs.iter().any(ParentRef::is_gateway)
                && s.hostnames.iter().any(|h| hostname_matches(h, host))
        });
        let none = ServicePort {
            namespace: String::new(),
            service: String::new(),
            port: view.port,
        };
        (!routes.is_empty()).then(|| self.gw_route(api, &routes, &none, view))
    }
}

// ---------------------------------------------------------------------------------------------
// SMI.

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TrafficSplitSpec {
    service: String,
    backends: Vec<TsBackend>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TsBackend {
    service: String,
    weight: Value,
}

/// A TrafficSplit weight: an integer (v1alpha2, v1alpha3) or a quantity (v1alpha1: `50`,
/// `"50"`, `"500m"`, `"1k"`).
fn weight_of(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => {
            let s = s.trim();
            let split = s
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
                .unwrap_or(s.len());
            let (num, suffix) = s.split_at(split);
            let n: f64 = num.parse().unwrap_or(0.0);
            let scale = match suffix {
                "" => 1.0,
                "m" => 1e-3,
                "k" => 1e3,
                "M" => 1e6,
                "G" => 1e9,
                "Ki" => 1024.0,
                "Mi" => 1024.0 * 1024.0,
                "Gi" => 1024.0 * 1024.0 * 1024.0,
                _ => 0.0,
            };
            n * scale
        }
        _ => 0.0,
    }
}

impl MeshRouter {
    fn smi(&self, api: &Api, to: &ServicePort, view: &View<'_>) -> Option<RouteDecision> {
        for o in objects(api, SMI_GROUP, SMI_VERSIONS, "TrafficSplit") {
            let ns = util::namespace(&o);
            if ns != to.namespace {
                continue;
            }
            let Some(ts) = spec::<TrafficSplitSpec>(&o) else {
                continue;
            };
            if service_of(&ts.service, ns).is_none_or(|(n, s)| n != to.namespace || s != to.service)
            {
                continue;
            }
            let weights: Vec<f64> = ts.backends.iter().map(|b| weight_of(&b.weight)).collect();
            let Some(b) = self.pick(&weights).map(|i| &ts.backends[i]) else {
                return Some(RouteDecision {
                    actions: direct(503, "TrafficSplit has no backend with a weight"),
                    ..RouteDecision::to(to.clone())
                });
            };
            let Some((bns, name)) = service_of(&b.service, ns) else {
                continue;
            };
            let port = dest_port(api, &bns, &name, None, view.port);
            return Some(RouteDecision::to(ServicePort {
                namespace: bns,
                service: name,
                port,
            }));
        }
        None
    }
}

impl Router for MeshRouter {
    fn route(&self, api: &Api, to: &ServicePort, request: &RequestInfo<'_>) -> RouteDecision {
        let view = View::new(request, to.port);
        self.istio(api, to, &view)
            .or_else(|| self.gamma(api, to, &view))
            .or_else(|| self.smi(api, to, &view))
            .unwrap_or_else(|| RouteDecision::to(to.clone()))
    }

    fn route_host(
        &self,
        api: &Api,
        host: &str,
        port: u16,
        request: &RequestInfo<'_>,
    ) -> Option<RouteDecision> {
        if host == "localhost" || host.parse::<std::net::IpAddr>().is_ok() {
            return None;
        }
        let view = View::new(request, port);
        self.gateway(api, host, &view)
            .or_else(|| self.istio_gateway(api, host, &view))
            .or_else(|| self.nginx_ingress(api, host, &view))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, Method};
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn with_view<T>(method: &Method, pq: &str, h: &HeaderMap, f: impl FnOnce(&View<'_>) -> T) -> T {
        let info = RequestInfo {
            method,
            path_and_query: pq,
            headers: h,
        };
        let view = View::new(&info, 9898);
        f(&view)
    }

    fn vs_match(m: Value) -> VsMatch {
        serde_json::from_value(m).unwrap_or_default()
    }

    #[test]
    fn istio_string_matches() {
        let r = MeshRouter::seeded(1);
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
                assert!(r.vs_match(&vs_match(m.clone()), v), "{m}");
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
                assert!(!r.vs_match(&vs_match(m.clone()), v), "{m}");
            }
        });
    }

    #[test]
    fn istio_routes_are_tried_in_order() {
        let r = MeshRouter::seeded(1);
        let routes: Vec<VsRoute> = serde_json::from_value(json!([
            {"match": [{"headers": {"x-a": {"exact": "1"}}}, {"uri": {"prefix": "/b"}}], "route": [{"destination": {"host": "one"}}]},
            {"route": [{"destination": {"host": "two"}}]},
        ]))
        .unwrap();
        let pick = |pq: &str, h: &HeaderMap| {
            with_view(&Method::GET, pq, h, |v| {
                r.vs_select(&routes, v)
                    .map(|(route, _)| route.route[0].destination.host.clone())
            })
        };
        assert_eq!(pick("/", &headers(&[("x-a", "1")])).as_deref(), Some("one"));
        assert_eq!(pick("/b/c", &headers(&[])).as_deref(), Some("one"));
        assert_eq!(pick("/", &headers(&[("x-a", "2")])).as_deref(), Some("two"));
    }

    #[test]
    fn gateway_matches_and_precedence() {
        let r = MeshRouter::seeded(1);
        let m = |v: Value| -> GwMatch { serde_json::from_value(v).unwrap() };
        let h = headers(&[("x-canary", "insider"), ("cookie", "a=b; sticky=xyz")]);
        with_view(&Method::POST, "/api/items?tier=gold", &h, |v| {
            assert!(r.gw_match(&m(json!({})), v).is_some());
            assert!(
                r.gw_match(
                    &m(json!({"path": {"type": "PathPrefix", "value": "/api"}})),
                    v
                )
                .is_some()
            );
            assert!(
                r.gw_match(
                    &m(json!({"path": {"type": "PathPrefix", "value": "/ap"}})),
                    v
                )
                .is_none()
            );
            assert!(
                r.gw_match(
                    &m(json!({"path": {"type": "Exact", "value": "/api/items"}})),
                    v
                )
                .is_some()
            );
            assert!(
                r.gw_match(
                    &m(json!({"path": {"type": "RegularExpression", "value": "/api/.*"}})),
                    v
                )
                .is_some()
            );
            assert!(r.gw_match(&m(json!({"method": "POST"})), v).is_some());
            assert!(r.gw_match(&m(json!({"method": "GET"})), v).is_none());
            assert!(
                r.gw_match(
                    &m(json!({"headers": [{"name": "X-Canary", "value": "insider"}]})),
                    v
                )
                .is_some()
            );
            assert!(
                r.gw_match(
                    &m(json!({"headers": [{"name": "x-canary", "value": "ins"}]})),
                    v
                )
                .is_none()
            );
            assert!(r.gw_match(&m(json!({"headers": [{"type": "RegularExpression", "name": "cookie", "value": ".*sticky=xyz.*"}]})), v).is_some());
            assert!(
                r.gw_match(
                    &m(json!({"queryParams": [{"name": "tier", "value": "gold"}]})),
                    v
                )
                .is_some()
            );
            assert!(
                r.gw_match(
                    &m(json!({"queryParams": [{"name": "tier", "value": "silver"}]})),
                    v
                )
                .is_none()
            );
            let exact = r.gw_match(
                &m(json!({"path": {"type": "Exact", "value": "/api/items"}})),
                v,
            );
            let long = r.gw_match(
                &m(json!({"path": {"type": "PathPrefix", "value": "/api/items"}})),
                v,
            );
            let short = r.gw_match(
                &m(json!({"path": {"type": "PathPrefix", "value": "/api"}})),
                v,
            );
            let headered = r.gw_match(&m(json!({"path": {"type": "PathPrefix", "value": "/api"}, "headers": [{"name": "x-canary", "value": "insider"}]})), v);
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
                r.gw_select(&routes, v)
                    .map(|(_, rule, _)| rule.backend_refs[0].name.clone())
            })
        };
        assert_eq!(pick(&h).as_deref(), Some("canary"));
        assert_eq!(pick(&headers(&[])).as_deref(), Some("primary"));
    }

    #[test]
    fn paths_and_rewrites() {
        assert!(path_prefix_matches("/", "/anything"));
        assert!(path_prefix_matches("/foo", "/foo"));
        assert!(path_prefix_matches("/foo", "/foo/bar"));
        assert!(path_prefix_matches("/foo/", "/foo/bar"));
        assert!(!path_prefix_matches("/foo", "/foobar"));
        assert_eq!(replace_prefix("/foo/bar", "/foo", "/baz"), "/baz/bar");
        assert_eq!(replace_prefix("/foo/bar", "/foo/", "/"), "/bar");
        assert_eq!(replace_prefix("/foo", "/foo", "/"), "/");
        assert_eq!(replace_prefix("/foo", "/foo", "/baz/"), "/baz");
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
        assert!(hostname_matches("app.example.com", "APP.example.com"));
        assert!(hostname_matches("*.example.com", "a.b.example.com"));
        assert!(!hostname_matches("*.example.com", "example.com"));
        assert_eq!(
            service_of("podinfo-canary.test.svc.cluster.local", "x"),
            Some(("test".into(), "podinfo-canary".into()))
        );
        assert_eq!(service_of("app.example.com", "x"), None);
    }

    #[test]
    fn weights() {
        assert_eq!(weight_of(&json!(50)), 50.0);
        assert_eq!(weight_of(&json!("50")), 50.0);
        assert_eq!(weight_of(&json!("500m")), 0.5);
        assert_eq!(weight_of(&json!("1k")), 1000.0);
        assert_eq!(weight_of(&json!("lots")), 0.0);
        let r = MeshRouter::seeded(42);
        assert_eq!(r.pick(&[0.0, 0.0]), None);
        assert_eq!(r.pick(&[0.0, 5.0]), Some(1));
        let mut hits = [0usize; 2];
        for _ in 0..10_000 {
            hits[r.pick(&[80.0, 20.0]).unwrap()] += 1;
        }
        assert!((7_800..8_200).contains(&hits[0]), "{hits:?}");
        // Same seed, same draws.
        let (a, b) = (MeshRouter::seeded(7), MeshRouter::seeded(7));
        let da: Vec<_> = (0..50).map(|_| a.pick(&[1.0, 1.0, 1.0])).collect();
        let db: Vec<_> = (0..50).map(|_| b.pick(&[1.0, 1.0, 1.0])).collect();
        assert_eq!(da, db);
    }
}
