//! What every mesh module shares: the [`Mesh`] seam, the request as matchers see it
//! ([`View`]), the router's seeded draws and regex cache ([`Tools`]), cluster names, and
//! reading routing objects from the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use super::super::router::{RequestInfo, RouteActions, RouteDecision, ServicePort};
use crate::Api;
use crate::util;

/// One mesh (or ingress controller, or gateway) as the data plane plays it: it reads its
/// routing objects through the [`Api`] and claims the requests they describe. A mesh that
/// does not route a kind of request keeps the default (`None`: not mine).
pub trait Mesh: Send + Sync + std::fmt::Debug {
    /// Routes a request addressed to the Service port `to`, as the client's sidecar would.
    fn route_service(
        &self,
        _api: &Api,
        _tools: &Tools,
        _to: &ServicePort,
        _view: &View<'_>,
    ) -> Option<RouteDecision> {
        None
    }

    /// Routes a request for `host`, a name that is not a cluster name (`app.example.com`), as
    /// an ingress gateway would.
    fn route_host(
        &self,
        _api: &Api,
        _tools: &Tools,
        _host: &str,
        _view: &View<'_>,
    ) -> Option<RouteDecision> {
        None
    }
}

/// The router's shared state: a seeded generator for weighted choices and sampled
/// percentages, and a cache of compiled regular expressions.
#[derive(Debug)]
pub struct Tools {
    rng: Mutex<u64>,
    regexes: Mutex<HashMap<String, Option<Regex>>>,
}

impl Tools {
    /// Draws follow from `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self {
            rng: Mutex::new(seed),
            regexes: Mutex::new(HashMap::new()),
        }
    }

    /// A uniform number in [0, 1) (splitmix64).
    pub fn chance(&self) -> f64 {
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
    pub fn full_match(&self, re: &str, value: &str) -> bool {
        let mut cache = self.regexes.lock().unwrap_or_else(|e| e.into_inner());
        let compiled = cache
            .entry(re.to_string())
            .or_insert_with(|| Regex::new(&format!("^(?:{re})$")).ok());
        compiled.as_ref().is_some_and(|r| r.is_match(value))
    }

    /// Whether `re` matches somewhere in `value` (an unanchored search, as PCRE's and
    /// `ngx.re.match`'s); an invalid expression matches nothing.
    pub fn search(&self, re: &str, value: &str) -> bool {
        let mut cache = self.regexes.lock().unwrap_or_else(|e| e.into_inner());
        // Keyed apart from the anchored forms `full_match` caches.
        let compiled = cache
            .entry(format!("\u{0}{re}"))
            .or_insert_with(|| Regex::new(re).ok());
        compiled.as_ref().is_some_and(|r| r.is_match(value))
    }

    /// Index of the entry of `weights` drawn at random in proportion to the weights; `None`
    /// when they are all zero.
    pub fn pick(&self, weights: &[f64]) -> Option<usize> {
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
    pub fn sample(&self, percent: f64) -> bool {
        percent >= 100.0 || (percent > 0.0 && self.chance() * 100.0 < percent)
    }
}

// ---------------------------------------------------------------------------------------------
// The request as the matchers see it.

pub struct View<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The query string as sent (kept as is when the path is rewritten).
    raw_query: &'a str,
    query: Vec<(String, String)>,
    pub headers: &'a HeaderMap,
    pub port: u16,
}

impl<'a> View<'a> {
    pub fn new(request: &'a RequestInfo<'a>, port: u16) -> Self {
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
    pub fn header(&self, name: &str) -> Option<String> {
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

    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `path` with the request's query string.
    pub fn path_and_query(&self, path: &str) -> String {
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
pub fn service_of(host: &str, ns: &str) -> Option<(String, String)> {
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

/// Whether a hostname pattern (`app.example.com`, `*.example.com`) matches `host`.
pub fn hostname_matches(pattern: &str, host: &str) -> bool {
    let (pattern, host) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    match pattern.strip_prefix('*') {
        Some(suffix) if suffix.starts_with('.') => {
            host.ends_with(suffix) && host.len() > suffix.len()
        }
        _ => pattern == host,
    }
}

/// `/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`.
pub fn path_prefix_matches(prefix: &str, path: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    p.is_empty()
        || path == p
        || path
            .strip_prefix(p)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The port of Service `ns/name` a request to `port` lands on: `explicit` if given, else
/// `port` if the Service has it, else its only port.
pub fn dest_port(api: &Api, ns: &str, name: &str, explicit: Option<u32>, port: u16) -> u16 {
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

// ---------------------------------------------------------------------------------------------
// Objects.

/// The objects of a kind, across namespaces and every served version, oldest first (shared
/// with the store).
pub fn objects(api: &Api, group: &str, versions: &[&str], kind: &str) -> Vec<Arc<Value>> {
    let mut keys = Vec::new();
    for v in versions {
        if let Ok(info) = api.resource(&format!("{group}/{v}"), kind) {
            let key = info.storage_key();
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    let mut out: Vec<Arc<Value>> = keys
        .iter()
        .flat_map(|k| api.store.list_shared(k, None).0)
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

/// An object's `spec` read into `T`; `None` (and a debug line) when it does not fit.
pub fn spec<T: for<'de> Deserialize<'de>>(o: &Value) -> Option<T> {
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

/// A direct answer from the mesh instead of a backend.
pub fn direct(status: u16, message: &str) -> RouteActions {
    RouteActions {
        direct: Some((status, format!("localkube mesh: {message}\n"))),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
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
    fn path_prefixes() {
        assert!(path_prefix_matches("/", "/anything"));
        assert!(path_prefix_matches("/foo", "/foo"));
        assert!(path_prefix_matches("/foo", "/foo/bar"));
        assert!(path_prefix_matches("/foo/", "/foo/bar"));
        assert!(!path_prefix_matches("/foo", "/foobar"));
    }

    #[test]
    fn weighted_draws() {
        let r = Tools::seeded(42);
        assert_eq!(r.pick(&[0.0, 0.0]), None);
        assert_eq!(r.pick(&[0.0, 5.0]), Some(1));
        let mut hits = [0usize; 2];
        for _ in 0..10_000 {
            hits[r.pick(&[80.0, 20.0]).expect("a weight")] += 1;
        }
        assert!((7_800..8_200).contains(&hits[0]), "{hits:?}");
        // Same seed, same draws.
        let (a, b) = (Tools::seeded(7), Tools::seeded(7));
        let da: Vec<_> = (0..50).map(|_| a.pick(&[1.0, 1.0, 1.0])).collect();
        let db: Vec<_> = (0..50).map(|_| b.pick(&[1.0, 1.0, 1.0])).collect();
        assert_eq!(da, db);
    }
}

/// Helpers for the mesh modules' unit tests.
#[cfg(test)]
pub mod testing {
    use axum::http::{HeaderMap, HeaderValue, Method};

    use super::View;
    use crate::dataplane::router::RequestInfo;

    pub fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    /// Runs `f` on the view of a request to port 9898.
    pub fn with_view<T>(
        method: &Method,
        pq: &str,
        h: &HeaderMap,
        f: impl FnOnce(&View<'_>) -> T,
    ) -> T {
        let info = RequestInfo {
            method,
            path_and_query: pq,
            headers: h,
        };
        let view = View::new(&info, 9898);
        f(&view)
    }
}
