//! Contour: [`Contour`] plays Contour's Envoy for the hosts of root HTTPProxies
//! (`projectcontour.io/v1`, `spec.virtualhost.fqdn`).
//!
//! Served proxies: those whose `spec.ingressClassName` (else `projectcontour.io/ingress.class`
//! or `kubernetes.io/ingress.class` annotation) is `contour` or unset, as a Contour started
//! without `--ingress-class-name` serves them. A root proxy's routes and the routes of the
//! proxies it `includes` (in the include's namespace, default the root's; recursively) make
//! the host's route table: an include's conditions prefix the included routes' path and add
//! their header conditions. As in Contour, a route (or include) with more than one path
//! condition (`prefix`, `exact`, `regex`) makes its proxy invalid: none of that proxy's routes
//! are served.
//!
//! A request takes the first route that matches, routes ordered as Contour orders them: exact
//! paths first, then prefixes by length, longest first, then the routes with more header
//! conditions. A prefix matches by path segment (`/api` matches `/api/x`, not `/apix`); header
//! conditions are `present`, `notpresent`, `contains`, `notcontains`, `exact`, `notexact`.
//! Its service is drawn by weight (all weights 0: equally, as Contour does), the service's
//! `requestHeadersPolicy.set` is applied, and `timeoutPolicy.response` bounds the answer (504
//! after it). No route: Envoy's 404. Retry policies are not simulated.
//!
//! Telemetry: the requests reach the Services, whose Envoy cluster statistics
//! ([`super::envoy`], clusters `<namespace>_<service>_<port>` as Contour names them) are what
//! Flagger's Contour queries read.

use serde::Deserialize;
use serde_json::Value;

use super::super::router::{HeaderOps, RouteDecision};
use super::common::{Mesh, Tools, View, hostname_matches, objects, path_prefix_matches, spec};
use super::gateway::{Backend, answer, parse_timeout, pick, to_backend};
use crate::Api;
use crate::util;

const GROUP: &str = "projectcontour.io";
const VERSIONS: &[&str] = &["v1"];
/// The ingress class served.
pub const CLASS: &str = "contour";

/// Contour's Envoy, routing by HTTPProxies.
#[derive(Debug, Default, Clone, Copy)]
pub struct Contour;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ProxySpec {
    virtualhost: Option<VirtualHost>,
    ingress_class_name: Option<String>,
    routes: Vec<Route>,
    includes: Vec<Include>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VirtualHost {
    fqdn: String,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
struct Condition {
    prefix: Option<String>,
    exact: Option<String>,
    regex: Option<String>,
    header: Option<HeaderCondition>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
struct HeaderCondition {
    name: String,
    present: bool,
    notpresent: bool,
    contains: Option<String>,
    notcontains: Option<String>,
    exact: Option<String>,
    notexact: Option<String>,
}

impl HeaderCondition {
    fn matches(&self, view: &View<'_>) -> bool {
        let value = view.header(&self.name);
        let v = value.as_deref();
        if self.present {
            return v.is_some();
        }
        if self.notpresent {
            return v.is_none();
        }
        if let Some(want) = &self.exact {
            return v == Some(want.as_str());
        }
        if let Some(want) = &self.notexact {
            return v != Some(want.as_str());
        }
        if let Some(want) = &self.contains {
            return v.is_some_and(|v| v.contains(want.as_str()));
        }
        if let Some(want) = &self.notcontains {
            return v.is_none_or(|v| !v.contains(want.as_str()));
        }
        false
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Route {
    conditions: Vec<Condition>,
    services: Vec<Service>,
    timeout_policy: Option<TimeoutPolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Service {
    name: String,
    port: Option<u32>,
    weight: Option<i64>,
    request_headers_policy: Option<HeadersPolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HeadersPolicy {
    set: Vec<NameValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NameValue {
    name: String,
    value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TimeoutPolicy {
    response: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Include {
    name: String,
    namespace: Option<String>,
    conditions: Vec<Condition>,
}

/// A path condition: exact or prefix (a regex matches as Envoy would, anchored).
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathCond {
    Exact(String),
    Prefix(String),
    Regex(String),
}

/// A route of the host's table, its conditions merged with its includes'.
#[derive(Debug)]
struct Flat {
    path: PathCond,
    headers: Vec<HeaderCondition>,
    backends: Vec<Backend>,
    timeout: Option<std::time::Duration>,
}

impl Flat {
    /// Contour's order: exact, then regex, then prefixes longest first; more header
    /// conditions first.
    fn rank(&self) -> (u8, usize, usize) {
        match &self.path {
            PathCond::Exact(p) => (3, p.len(), self.headers.len()),
            PathCond::Regex(p) => (2, p.len(), self.headers.len()),
            PathCond::Prefix(p) => (1, p.len(), self.headers.len()),
        }
    }

    fn matches(&self, t: &Tools, view: &View<'_>) -> bool {
        let path = match &self.path {
            PathCond::Exact(p) => view.path == p,
            PathCond::Prefix(p) => path_prefix_matches(p, view.path),
            PathCond::Regex(re) => t.full_match(re, view.path),
        };
        path && self.headers.iter().all(|h| h.matches(view))
    }
}

/// Joins an include's prefix and an included route's prefix (`/api` + `/v1` = `/api/v1`).
fn join(parent: &str, child: &str) -> String {
    match (parent.trim_end_matches('/'), child) {
        ("", c) => c.to_string(),
        (p, "" | "/") => p.to_string(),
        (p, c) => format!("{p}{c}"),
    }
}

/// The path and header conditions of a condition block; `None` when it has more than one
/// path condition (invalid in Contour).
fn split(conds: &[Condition]) -> Option<(Option<PathCond>, Vec<HeaderCondition>)> {
    let mut path = None;
    let mut headers = Vec::new();
    for c in conds {
        for p in [
            c.prefix.clone().map(PathCond::Prefix),
            c.exact.clone().map(PathCond::Exact),
            c.regex.clone().map(PathCond::Regex),
        ]
        .into_iter()
        .flatten()
        {
            if path.replace(p).is_some() {
                return None;
            }
        }
        headers.extend(c.header.clone());
    }
    Some((path, headers))
}

fn annotations_class(o: &Value) -> Option<String> {
    [
        "projectcontour.io/ingress.class",
        "kubernetes.io/ingress.class",
    ]
    .iter()
    .find_map(|k| {
        o.pointer(&format!("/metadata/annotations/{}", k.replace('/', "~1")))
            .and_then(Value::as_str)
            .map(str::to_string)
    })
}

struct Proxy {
    namespace: String,
    name: String,
    spec: ProxySpec,
}

impl Contour {
    fn proxies(api: &Api) -> Vec<Proxy> {
        objects(api, GROUP, VERSIONS, "HTTPProxy")
            .iter()
            .filter_map(|o| {
                let spec: ProxySpec = spec(o)?;
                let class = spec
                    .ingress_class_name
                    .clone()
                    .or_else(|| annotations_class(o));
                if class.is_some_and(|c| c != CLASS) {
                    return None;
                }
                Some(Proxy {
                    namespace: util::namespace(o).to_string(),
                    name: util::name(o).to_string(),
                    spec,
                })
            })
            .collect()
    }

    /// The routes of `proxy` under an include's path and headers, appended to `out`;
    /// `visited` guards against include cycles.
    #[allow(clippy::too_many_arguments)]
    fn flatten(
        api: &Api,
        all: &[Proxy],
        proxy: &Proxy,
        prefix: &str,
        headers: &[HeaderCondition],
        visited: &mut Vec<(String, String)>,
        out: &mut Vec<Flat>,
    ) {
        let key = (proxy.namespace.clone(), proxy.name.clone());
        if visited.contains(&key) {
            return;
        }
        visited.push(key);
        let mut mine = Vec::new();
        for r in &proxy.spec.routes {
            let Some((path, hs)) = split(&r.conditions) else {
                // An invalid route invalidates its proxy.
                visited.pop();
                return;
            };
            let path = match path {
                None => PathCond::Prefix(join(prefix, "/")),
                Some(PathCond::Prefix(p)) => PathCond::Prefix(join(prefix, &p)),
                Some(PathCond::Exact(p)) => PathCond::Exact(join(prefix, &p)),
                Some(PathCond::Regex(p)) => PathCond::Regex(join(prefix, &p)),
            };
            let backends = r
                .services
                .iter()
                .map(|s| {
                    let mut b = Backend::service(
                        api,
                        &proxy.namespace,
                        &s.name,
                        s.port,
                        s.weight.unwrap_or(0) as f64,
                    );
                    b.request_headers = HeaderOps {
                        set: s
                            .request_headers_policy
                            .iter()
                            .flat_map(|p| &p.set)
                            .map(|h| (h.name.clone(), h.value.clone()))
                            .collect(),
                        ..Default::default()
                    };
                    b
                })
                .collect::<Vec<_>>();
            // All weights 0: Contour splits equally.
            let backends = if backends.iter().all(|b| b.weight <= 0.0) {
                backends
                    .into_iter()
                    .map(|b| Backend { weight: 1.0, ..b })
                    .collect()
            } else {
                backends
            };
            mine.push(Flat {
                path,
                headers: headers.iter().cloned().chain(hs).collect(),
                backends,
                timeout: r
                    .timeout_policy
                    .as_ref()
                    .and_then(|t| t.response.as_deref())
                    .and_then(parse_timeout),
            });
        }
        for inc in &proxy.spec.includes {
            let Some((path, hs)) = split(&inc.conditions) else {
                continue;
            };
            let p = match path {
                None => prefix.to_string(),
                Some(PathCond::Prefix(p)) => join(prefix, &p),
                // Includes accept prefixes only.
                Some(_) => continue,
            };
            let ns = inc.namespace.as_deref().unwrap_or(&proxy.namespace);
            if let Some(child) = all.iter().find(|c| c.namespace == ns && c.name == inc.name) {
                let headers: Vec<HeaderCondition> = headers.iter().cloned().chain(hs).collect();
                Self::flatten(api, all, child, &p, &headers, visited, &mut mine);
            }
        }
        out.extend(mine);
        visited.pop();
    }
}

impl Mesh for Contour {
    fn route_host(
        &self,
        api: &Api,
        t: &Tools,
        host: &str,
        view: &View<'_>,
    ) -> Option<RouteDecision> {
        let all = Self::proxies(api);
        let root = all.iter().find(|p| {
            p.spec
                .virtualhost
                .as_ref()
                .is_some_and(|v| !v.fqdn.is_empty() && hostname_matches(&v.fqdn, host))
        })?;
        let mut routes = Vec::new();
        Self::flatten(api, &all, root, "", &[], &mut Vec::new(), &mut routes);
        // A stable sort keeps the definition order among equals.
        routes.sort_by_key(|r| std::cmp::Reverse(r.rank()));
        let Some(route) = routes.iter().find(|r| r.matches(t, view)) else {
            return Some(answer(404, "", None));
        };
        match pick(t, &route.backends) {
            Some(b) => Some(to_backend(b, route.timeout, None)),
            None => Some(answer(503, "no healthy upstream", None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_paths_join_and_condition_blocks_allow_one_path() {
        assert_eq!(join("", "/"), "/");
        assert_eq!(join("/", "/api"), "/api");
        assert_eq!(join("/api", "/v1"), "/api/v1");
        assert_eq!(join("/api/", "/"), "/api");
        let c = |prefix: Option<&str>, header: Option<&str>| Condition {
            prefix: prefix.map(str::to_string),
            header: header.map(|h| HeaderCondition {
                name: h.into(),
                exact: Some("v".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let one = split(&[c(Some("/"), Some("x-canary"))]).expect("valid");
        assert_eq!(one.0, Some(PathCond::Prefix("/".into())));
        assert_eq!(one.1.len(), 1);
        // Flagger's A/B route with two headers repeats the prefix: invalid in Contour.
        assert!(split(&[c(Some("/"), Some("a")), c(Some("/"), Some("b"))]).is_none());
        assert!(split(&[c(None, Some("a")), c(Some("/"), Some("b"))]).is_some());
    }
}
