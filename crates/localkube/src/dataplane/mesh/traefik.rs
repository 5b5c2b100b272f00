//! Traefik: [`Traefik`] plays Traefik's `web` entry point for the hosts its IngressRoutes
//! (`traefik.io/v1alpha1`, and the older `traefik.containo.us/v1alpha1`) match, through their
//! services: Kubernetes Services and TraefikServices (weighted round robin over Services and
//! other TraefikServices).
//!
//! A route's `match` is Traefik's rule language: `Host`, `HostRegexp`, `Path`, `PathPrefix`,
//! `PathRegexp`, `Method`, `Header`/`Headers`, `HeaderRegexp`/`HeadersRegexp`, `Query`,
//! combined with `&&`, `||`, `!` and parentheses, arguments in backquotes or double quotes
//! (v2's several hosts in one `Host` and v3's one). A request takes the matching route of the
//! highest priority (`priority`, else the length of the rule, as Traefik's default), the older
//! route among equals; a host no rule names is not Traefik's. Services are drawn by weight (1
//! when not written; all 0: 503), a TraefikService's children too, recursively. No route: 404.
//!
//! Telemetry: Traefik's service series, `traefik_service_requests_total` and
//! `traefik_service_request_duration_seconds` (histogram, Traefik's default buckets 0.1, 0.3,
//! 1.2 and 5 seconds), labelled `code`, `method`, `protocol` and `service`, the Kubernetes
//! Service that answered as Traefik names it: `<namespace>-<service>-<port>@kubernetescrd`.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::super::router::{GatewayTelemetry, RouteDecision};
use super::super::telemetry::{Recorded, Telemetry, escape, header, histogram};
use super::common::{Mesh, Tools, View, objects, spec};
use super::gateway::{Backend, answer, to_backend};
use crate::Api;
use crate::util;

const GROUPS: &[&str] = &["traefik.io", "traefik.containo.us"];
const VERSIONS: &[&str] = &["v1alpha1"];
/// The gateway name of Traefik's series.
pub const GATEWAY: &str = "traefik";
/// Traefik's default histogram buckets, in milliseconds.
const BUCKETS_MS: [f64; 4] = [100.0, 300.0, 1200.0, 5000.0];
/// How deep TraefikServices may nest before a chain counts as a cycle.
const MAX_DEPTH: usize = 8;

/// Traefik, routing by IngressRoutes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Traefik;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct IngressRouteSpec {
    routes: Vec<Route>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Route {
    #[serde(rename = "match")]
    rule: String,
    priority: Option<i64>,
    services: Vec<ServiceRef>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
struct ServiceRef {
    name: String,
    kind: Option<String>,
    namespace: Option<String>,
    port: Option<Value>,
    weight: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TraefikServiceSpec {
    weighted: Option<Weighted>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Weighted {
    services: Vec<ServiceRef>,
}

// === the rule language ===

/// A parsed rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Matcher(String, Vec<String>),
    Not(Box<Rule>),
    And(Box<Rule>, Box<Rule>),
    Or(Box<Rule>, Box<Rule>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Arg(String),
    Open,
    Close,
    Comma,
    And,
    Or,
    Not,
}

fn tokens(s: &str) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => out.push(Token::Open),
            ')' => out.push(Token::Close),
            ',' => out.push(Token::Comma),
            '!' => out.push(Token::Not),
            '&' if chars.next_if_eq(&'&').is_some() => out.push(Token::And),
            '|' if chars.next_if_eq(&'|').is_some() => out.push(Token::Or),
            '`' | '"' => {
                let mut arg = String::new();
                loop {
                    match chars.next()? {
                        q if q == c => break,
                        '\\' if c == '"' => arg.push(chars.next()?),
                        ch => arg.push(ch),
                    }
                }
                out.push(Token::Arg(arg));
            }
            c if c.is_ascii_alphabetic() => {
                let mut name = c.to_string();
                while let Some(n) = chars.next_if(|n| n.is_ascii_alphanumeric()) {
                    name.push(n);
                }
                out.push(Token::Name(name));
            }
            _ => return None,
        }
    }
    Some(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn or(&mut self) -> Option<Rule> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            left = Rule::Or(Box::new(left), Box::new(self.and()?));
        }
        Some(left)
    }

    fn and(&mut self) -> Option<Rule> {
        let mut left = self.unary()?;
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            left = Rule::And(Box::new(left), Box::new(self.unary()?));
        }
        Some(left)
    }

    fn unary(&mut self) -> Option<Rule> {
        match self.next()? {
            Token::Not => Some(Rule::Not(Box::new(self.unary()?))),
            Token::Open => {
                let r = self.or()?;
                (self.next()? == Token::Close).then_some(r)
            }
            Token::Name(name) => {
                if self.next()? != Token::Open {
                    return None;
                }
                let mut args = Vec::new();
                loop {
                    match self.next()? {
                        Token::Arg(a) => args.push(a),
                        Token::Comma => {}
                        Token::Close => break,
                        _ => return None,
                    }
                }
                Some(Rule::Matcher(name, args))
            }
            _ => None,
        }
    }
}

/// Parses a rule; `None` when it is not one.
pub fn parse(rule: &str) -> Option<Rule> {
    let mut p = Parser {
        tokens: tokens(rule)?,
        at: 0,
    };
    let r = p.or()?;
    (p.at == p.tokens.len()).then_some(r)
}

/// v2's `{name:regex}` and `{name}` host patterns as a plain regex.
fn host_regex(pattern: &str) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find('}') else { break };
        let inner = &rest[i + 1..i + j];
        match inner.split_once(':') {
            Some((_, re)) => out.push_str(&format!("({re})")),
            None => out.push_str("([^.]+)"),
        }
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    out
}

impl Rule {
    /// Whether the request for `host` matches.
    pub fn matches(&self, t: &Tools, host: &str, view: &View<'_>) -> bool {
        match self {
            Rule::Not(r) => !r.matches(t, host, view),
            Rule::And(a, b) => a.matches(t, host, view) && b.matches(t, host, view),
            Rule::Or(a, b) => a.matches(t, host, view) || b.matches(t, host, view),
            Rule::Matcher(name, args) => {
                let first = args.first().map(String::as_str).unwrap_or_default();
                match name.as_str() {
                    "Host" => args.iter().any(|h| h.eq_ignore_ascii_case(host)),
                    "HostRegexp" => args.iter().any(|h| t.full_match(&host_regex(h), host)),
                    "Path" => args.iter().any(|p| p == view.path),
                    // A plain string prefix, as Traefik's.
                    "PathPrefix" => args.iter().any(|p| view.path.starts_with(p.as_str())),
                    "PathRegexp" => t.search(first, view.path),
                    "Method" => args.iter().any(|m| m.eq_ignore_ascii_case(view.method)),
                    "Header" | "Headers" => view
                        .headers
                        .get_all(first)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .any(|v| Some(v) == args.get(1).map(String::as_str)),
                    "HeaderRegexp" | "HeadersRegexp" => view
                        .headers
                        .get_all(first)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .any(|v| args.get(1).is_some_and(|re| t.search(re, v))),
                    "Query" => {
                        // v2: `Query(`k=v`)`; v3: `Query(`k`, `v`)`.
                        let (k, v) = match args.get(1) {
                            Some(v) => (first, v.as_str()),
                            None => first.split_once('=').unwrap_or((first, "")),
                        };
                        view.query_param(k).is_some_and(|q| v.is_empty() || q == v)
                    }
                    _ => false,
                }
            }
        }
    }

    /// The hosts a rule names with `Host` (to know whether a host is Traefik's at all).
    fn hosts(&self, out: &mut Vec<String>) {
        match self {
            Rule::Matcher(name, args) if name == "Host" => out.extend(args.iter().cloned()),
            Rule::Matcher(..) => {}
            Rule::Not(_) => {}
            Rule::And(a, b) | Rule::Or(a, b) => {
                a.hosts(out);
                b.hosts(out);
            }
        }
    }
}

// === routing ===

fn port_label(port: &Option<Value>) -> String {
    match port {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

impl Traefik {
    fn find(api: &Api, kind: &str, ns: &str, name: &str) -> Option<Value> {
        GROUPS.iter().find_map(|g| {
            objects(api, g, VERSIONS, kind)
                .into_iter()
                .find(|o| util::namespace(o) == ns && util::name(o) == name)
                .map(Arc::unwrap_or_clone)
        })
    }

    /// The Kubernetes Service a reference leads to, drawn through TraefikServices by weight.
    fn resolve(api: &Api, t: &Tools, ns: &str, r: &ServiceRef, depth: usize) -> Option<Backend> {
        let ns = r.namespace.as_deref().unwrap_or(ns);
        if r.kind.as_deref() == Some("TraefikService") {
            if depth > MAX_DEPTH {
                return None;
            }
            let ts = Self::find(api, "TraefikService", ns, &r.name)?;
            let children = spec::<TraefikServiceSpec>(&ts)?.weighted?.services;
            let weights: Vec<f64> = children
                .iter()
                .map(|c| c.weight.unwrap_or(1).max(0) as f64)
                .collect();
            let i = t.pick(&weights)?;
            return Self::resolve(api, t, ns, &children[i], depth + 1);
        }
        let port = r.port.as_ref().and_then(|p| {
            p.as_u64().and_then(|p| u32::try_from(p).ok()).or_else(|| {
                // A named port: the Service's port of that name.
                let svc = api
                    .resource("v1", "Service")
                    .ok()
                    .and_then(|info| api.store.get(&info.storage_key(), ns, &r.name))?;
                svc.pointer("/spec/ports")?
                    .as_array()?
                    .iter()
                    .find(|sp| sp["name"] == *p)?["port"]
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
            })
        });
        let mut b = Backend::service(api, ns, &r.name, port, 1.0);
        b.telemetry = Some(GatewayTelemetry {
            gateway: GATEWAY,
            name: format!("{ns}-{}-{}@kubernetescrd", r.name, port_label(&r.port)),
            labels: vec![("protocol".into(), "http".into())],
        });
        Some(b)
    }
}

impl Mesh for Traefik {
    fn route_host(
        &self,
        api: &Api,
        t: &Tools,
        host: &str,
        view: &View<'_>,
    ) -> Option<RouteDecision> {
        let mut routes: Vec<(i64, String, Route, Rule)> = Vec::new();
        for g in GROUPS {
            for o in objects(api, g, VERSIONS, "IngressRoute") {
                let Some(s) = spec::<IngressRouteSpec>(&o) else {
                    continue;
                };
                for r in s.routes {
                    let Some(rule) = parse(&r.rule) else { continue };
                    let priority = r.priority.unwrap_or(r.rule.len() as i64);
                    routes.push((priority, util::namespace(&o).to_string(), r, rule));
                }
            }
        }
        let mut hosts = Vec::new();
        for (_, _, _, rule) in &routes {
            rule.hosts(&mut hosts);
        }
        if !hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return None;
        }
        routes.sort_by_key(|(p, ..)| std::cmp::Reverse(*p));
        let Some((_, ns, route, _)) = routes
            .iter()
            .find(|(_, _, _, rule)| rule.matches(t, host, view))
        else {
            return Some(answer(404, "404 page not found", None));
        };
        let weights: Vec<f64> = route
            .services
            .iter()
            .map(|s| s.weight.unwrap_or(1).max(0) as f64)
            .collect();
        let backend = t
            .pick(&weights)
            .and_then(|i| Self::resolve(api, t, ns, &route.services[i], 0));
        match backend {
            Some(b) => Some(to_backend(&b, None, None)),
            None => Some(answer(503, "no available server", None)),
        }
    }
}

// === telemetry ===

impl Telemetry for Traefik {
    fn render(&self, recorded: &Recorded, out: &mut String) {
        let rows: Vec<_> = recorded
            .gateway
            .iter()
            .filter(|(l, _)| l.telemetry.gateway == GATEWAY)
            .map(|(l, h)| {
                let mut labels = format!("code=\"{}\",method=\"{}\"", l.status, escape(&l.method));
                for (k, v) in &l.telemetry.labels {
                    let _ = write!(labels, ",{k}=\"{}\"", escape(v));
                }
                let _ = write!(labels, ",service=\"{}\"", escape(&l.telemetry.name));
                (labels, h)
            })
            .collect();
        header(
            out,
            "traefik_service_requests_total",
            "counter",
            "How many HTTP requests processed on a service, partitioned by status code, protocol, and method.",
        );
        for (labels, h) in &rows {
            let _ = writeln!(
                out,
                "traefik_service_requests_total{{{labels}}} {}",
                h.request.count
            );
        }
        header(
            out,
            "traefik_service_request_duration_seconds",
            "histogram",
            "How long it took to process the request on a service, partitioned by status code, protocol, and method.",
        );
        for (labels, h) in &rows {
            histogram(
                out,
                "traefik_service_request_duration_seconds",
                labels,
                &BUCKETS_MS.map(|b| b / 1000.0),
                &h.request.cumulative(&BUCKETS_MS),
                h.request.sum_ms / 1000.0,
                h.request.count,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::mesh::common::testing::{headers, with_view};
    use axum::http::Method;

    #[test]
    fn rules_parse_and_match_as_traefik_reads_them() {
        let t = Tools::seeded(1);
        let rule = parse("Host(`app.example.com`) && (PathPrefix(`/api`) || Headers(`x-canary`, `insider`)) && !Method(`POST`)")
            .expect("parses");
        let h = headers(&[("x-canary", "insider")]);
        let m = |method: &Method, pq: &str, h: &axum::http::HeaderMap, host: &str| {
            with_view(method, pq, h, |v| rule.matches(&t, host, v))
        };
        let none = headers(&[]);
        assert!(m(&Method::GET, "/api/x", &none, "app.example.com"));
        assert!(m(&Method::GET, "/", &h, "APP.example.com"));
        assert!(!m(&Method::GET, "/", &none, "app.example.com"));
        assert!(!m(&Method::POST, "/api", &none, "app.example.com"));
        assert!(!m(&Method::GET, "/api", &none, "other.example.com"));
        assert_eq!(
            parse("Host(\"a\", \"b\")"),
            Some(Rule::Matcher("Host".into(), vec!["a".into(), "b".into()]))
        );
        assert_eq!(parse("Host(`a`"), None);
        assert_eq!(parse("Host(`a`) &&"), None);
        assert_eq!(
            host_regex("{sub:[a-z]+}.example.com"),
            "([a-z]+).example.com"
        );
    }
}
