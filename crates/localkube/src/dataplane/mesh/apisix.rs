//! Apache APISIX: [`Apisix`] plays the APISIX gateway, as its ingress controller configures it
//! from ApisixRoutes (`apisix.apache.org/v2`), for the hosts their HTTP rules match.
//!
//! Served routes: `spec.ingressClassName` `apisix` or unset. Each HTTP rule is an APISIX route
//! named `<namespace>_<ApisixRoute>_<rule>`; it matches by `match.hosts` (exact or `*.`
//! wildcard; none: any host), `match.paths` (a trailing `*` makes a prefix, else exact),
//! `match.methods` and `match.exprs` (`Header`, `Query` or `Cookie` subjects with `Equal`,
//! `NotEqual`, `RegexMatch`, `RegexNotMatch`, `In`, `NotIn`; another operator never holds). A
//! request takes the most specific path (exact, then the longest prefix), then the highest
//! `priority`, then the older route. Its backends are drawn by `weight` (100 when not written;
//! all 0: 503). No route: APISIX's 404.
//!
//! Telemetry: APISIX's Prometheus plugin series, `apisix_http_status` (`code`, `route`,
//! `matched_uri`, `matched_host`, `service`, `consumer`, `node`) and `apisix_http_latency`
//! (histogram in milliseconds, APISIX's default buckets, `type` `request` for the whole
//! request and `upstream` for the backend's part, `route`, `service`, `consumer`, `node`).
//! `service`, `consumer` and `node` are empty: no APISIX Service or consumer is configured,
//! and the upstream node is chosen after routing here.

use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::Value;

use super::super::router::{GatewayTelemetry, RouteDecision};
use super::super::telemetry::{Recorded, Telemetry, escape, header, histogram};
use super::common::{Mesh, Tools, View, objects, spec};
use super::gateway::{Backend, answer, pick, to_backend};
use crate::Api;
use crate::util;

const GROUP: &str = "apisix.apache.org";
const VERSIONS: &[&str] = &["v2"];
/// The ingress class served.
pub const CLASS: &str = "apisix";
/// The gateway name of APISIX's series.
pub const GATEWAY: &str = "apisix";
/// APISIX's default latency buckets, in milliseconds.
const BUCKETS_MS: [f64; 15] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0,
    60000.0,
];

/// APISIX, routing by ApisixRoutes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Apisix;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RouteSpec {
    ingress_class_name: Option<String>,
    http: Vec<HttpRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HttpRule {
    name: String,
    priority: i64,
    #[serde(rename = "match")]
    matches: RuleMatch,
    backends: Vec<RuleBackend>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuleMatch {
    hosts: Vec<String>,
    paths: Vec<String>,
    methods: Vec<String>,
    exprs: Vec<Expr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Expr {
    subject: Subject,
    op: String,
    value: Option<String>,
    set: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Subject {
    scope: String,
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RuleBackend {
    service_name: String,
    service_port: Option<Value>,
    weight: Option<i64>,
}

/// How a rule's path matches `path`: exact 2, prefix 1 (with its length); `None` if not.
fn path_rank(pattern: &str, path: &str) -> Option<(u8, usize)> {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix).then_some((1, prefix.len())),
        None => (pattern == path).then_some((2, pattern.len())),
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    match p.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
        None => p == host,
    }
}

fn cookie(view: &View<'_>, name: &str) -> Option<String> {
    view.header("cookie")?.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim().to_string())
    })
}

impl Expr {
    fn holds(&self, t: &Tools, view: &View<'_>) -> bool {
        let subject = match self.subject.scope.as_str() {
            "Header" => view.header(&self.subject.name),
            "Query" => view.query_param(&self.subject.name).map(str::to_string),
            "Cookie" => cookie(view, &self.subject.name),
            "Path" => Some(view.path.to_string()),
            _ => None,
        };
        let value = self.value.as_deref().unwrap_or_default();
        match (self.op.as_str(), subject.as_deref()) {
            ("Equal", Some(s)) => s == value,
            ("NotEqual", s) => s != Some(value),
            ("RegexMatch", Some(s)) => t.search(value, s),
            ("RegexNotMatch", s) => s.is_none_or(|s| !t.search(value, s)),
            ("In", Some(s)) => self.set.iter().any(|v| v == s),
            ("NotIn", s) => s.is_none_or(|s| !self.set.iter().any(|v| v == s)),
            _ => false,
        }
    }
}

impl Mesh for Apisix {
    fn route_host(
        &self,
        api: &Api,
        t: &Tools,
        host: &str,
        view: &View<'_>,
    ) -> Option<RouteDecision> {
        let host = host.to_ascii_lowercase();
        let mut named_host = false;
        // (path rank, priority, order, namespace, route name, rule, matched path, matched host)
        let mut candidates = Vec::new();
        let routes: Vec<(String, String, RouteSpec)> = objects(api, GROUP, VERSIONS, "ApisixRoute")
            .iter()
            .filter_map(|o| {
                let s: RouteSpec = spec(o)?;
                if s.ingress_class_name.as_deref().is_some_and(|c| c != CLASS) {
                    return None;
                }
                Some((util::namespace(o).to_string(), util::name(o).to_string(), s))
            })
            .collect();
        for (order, (ns, name, s)) in routes.iter().enumerate() {
            for rule in &s.http {
                let matched_host = if rule.matches.hosts.is_empty() {
                    Some(String::new())
                } else {
                    rule.matches
                        .hosts
                        .iter()
                        .find(|h| host_matches(h, &host))
                        .cloned()
                };
                let Some(matched_host) = matched_host else {
                    continue;
                };
                named_host |= !matched_host.is_empty();
                let Some((rank, matched_uri)) = rule
                    .matches
                    .paths
                    .iter()
                    .filter_map(|p| Some((path_rank(p, view.path)?, p.clone())))
                    .max_by_key(|(r, _)| *r)
                else {
                    continue;
                };
                let method = rule.matches.methods.is_empty()
                    || rule
                        .matches
                        .methods
                        .iter()
                        .any(|m| m.eq_ignore_ascii_case(view.method));
                if !method || !rule.matches.exprs.iter().all(|e| e.holds(t, view)) {
                    continue;
                }
                candidates.push((
                    rank,
                    rule.priority,
                    order,
                    ns,
                    name,
                    rule,
                    matched_uri,
                    matched_host,
                ));
            }
        }
        if !named_host {
            return None;
        }
        candidates.sort_by_key(|(rank, priority, order, ..)| {
            (
                std::cmp::Reverse(*rank),
                std::cmp::Reverse(*priority),
                *order,
            )
        });
        let Some((_, _, _, ns, name, rule, matched_uri, matched_host)) = candidates.first() else {
            return Some(answer(404, r#"{"error_msg":"404 Route Not Found"}"#, None));
        };
        let telemetry = GatewayTelemetry {
            gateway: GATEWAY,
            name: format!("{ns}_{name}_{}", rule.name),
            labels: vec![
                ("matched_uri".into(), matched_uri.clone()),
                ("matched_host".into(), matched_host.clone()),
            ],
        };
        let backends: Vec<Backend> = rule
            .backends
            .iter()
            .map(|b| {
                let port = b.service_port.as_ref().and_then(Value::as_u64);
                Backend::service(
                    api,
                    ns,
                    &b.service_name,
                    port.and_then(|p| u32::try_from(p).ok()),
                    b.weight.unwrap_or(100) as f64,
                )
            })
            .collect();
        match pick(t, &backends) {
            Some(b) => Some(to_backend(b, None, Some(telemetry))),
            None => Some(answer(
                503,
                r#"{"error_msg":"no valid upstream node"}"#,
                Some(telemetry),
            )),
        }
    }
}

// === telemetry ===

impl Telemetry for Apisix {
    fn render(&self, recorded: &Recorded, out: &mut String) {
        let rows: Vec<_> = recorded
            .gateway
            .iter()
            .filter(|(l, _)| l.telemetry.gateway == GATEWAY)
            .collect();
        let label = |l: &super::super::telemetry::GatewayLabels, k: &str| {
            l.telemetry
                .labels
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| escape(v))
                .unwrap_or_default()
        };
        header(
            out,
            "apisix_http_status",
            "counter",
            "HTTP status codes per service in APISIX",
        );
        // APISIX's series have no method label: the requests of every method add up.
        let mut statuses: std::collections::BTreeMap<String, u64> = Default::default();
        for (l, h) in &rows {
            *statuses
                .entry(format!(
                    "code=\"{}\",route=\"{}\",matched_uri=\"{}\",matched_host=\"{}\",service=\"\",consumer=\"\",node=\"\"",
                    l.status,
                    escape(&l.telemetry.name),
                    label(l, "matched_uri"),
                    label(l, "matched_host"),
                ))
                .or_default() += h.request.count;
        }
        for (labels, n) in &statuses {
            let _ = writeln!(out, "apisix_http_status{{{labels}}} {n}");
        }
        header(
            out,
            "apisix_http_latency",
            "histogram",
            "HTTP request latency in milliseconds per service in APISIX",
        );
        // One histogram per route and type: APISIX's latency has no status label.
        let mut by_route: std::collections::BTreeMap<
            &str,
            [super::super::telemetry::Durations; 2],
        > = Default::default();
        for (l, h) in &rows {
            let e = by_route.entry(l.telemetry.name.as_str()).or_default();
            for (acc, d) in e.iter_mut().zip([&h.request, &h.upstream]) {
                for (a, b) in acc.buckets.iter_mut().zip(d.buckets) {
                    *a += b;
                }
                acc.sum_ms += d.sum_ms;
                acc.count += d.count;
            }
        }
        for (route, [request, upstream]) in &by_route {
            for (kind, d) in [("request", request), ("upstream", upstream)] {
                histogram(
                    out,
                    "apisix_http_latency",
                    &format!(
                        "type=\"{kind}\",route=\"{}\",service=\"\",consumer=\"\",node=\"\"",
                        escape(route)
                    ),
                    &BUCKETS_MS,
                    &d.cumulative(&BUCKETS_MS),
                    d.sum_ms,
                    d.count,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_hosts_match_as_apisix_does() {
        assert_eq!(path_rank("/*", "/api"), Some((1, 1)));
        assert_eq!(path_rank("/api/*", "/api/x"), Some((1, 5)));
        assert_eq!(path_rank("/api", "/api"), Some((2, 4)));
        assert_eq!(path_rank("/api", "/api/x"), None);
        assert!(host_matches("app.example.com", "app.example.com"));
        assert!(host_matches("*.example.com", "app.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
    }
}
