//! NGINX ingress: [`Nginx`] plays the ingress-nginx controller for hosts named by
//! `networking.k8s.io/v1` Ingresses, canary annotations included.
//!
//! Served Ingresses: those whose `kubernetes.io/ingress.class` annotation is `nginx`, else
//! whose `spec.ingressClassName` is `nginx`, else with neither (as if `nginx` were the
//! cluster's default IngressClass). An Ingress annotated `<prefix>/canary: "true"` is a
//! canary Ingress; the others are main Ingresses.
//!
//! As ingress-nginx builds one nginx server per host, a request is served by:
//!
//! 1. the server: the main Ingresses' rule hosts, the exact host first, else the longest
//!    matching wildcard (`*.example.com`, any number of labels, as nginx's `server_name`);
//!    rules without a host are not served here (they would capture every outside address);
//! 2. the location: over the main Ingresses' paths for that host, an `Exact` path equal to the
//!    request's, else the longest matching prefix (`Prefix` by path element,
//!    `ImplementationSpecific` as nginx's plain string prefix), the oldest Ingress on ties; no
//!    path matches: the `defaultBackend` of the oldest Ingress with a rule for the host, else
//!    404 from the controller's default backend;
//! 3. the canary: the oldest canary Ingress with a rule for the same host and a path with the
//!    same value and type takes the request by header, then cookie, then weight
//!    ([`CanaryPolicy`]); canary Ingresses without a matching main location serve nothing.
//!
//! The backend is `service.name` in the Ingress's namespace, at `service.port.number` or the
//! Service port named `service.port.name`. Every request is recorded as the controller
//! records it ([`IngressTelemetry`]): under the main Ingress, with `canary` set to the canary
//! upstream (`<namespace>-<service>-<port>`) when the canary Ingress took it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::http::HeaderMap;
use serde_json::Value;

use super::super::router::{IngressTelemetry, RouteActions, RouteDecision, ServicePort, Workload};
use super::super::telemetry::{
    BUCKETS, IngressLabels, Recorded, Telemetry, escape, header, histogram,
};
use super::common::{Mesh, Tools, View, hostname_matches, path_prefix_matches};
use crate::Api;
use crate::util;

/// ingress-nginx's default annotation prefix.
pub const DEFAULT_PREFIX: &str = "nginx.ingress.kubernetes.io";
/// The ingress class served.
pub const CLASS: &str = "nginx";

/// The ingress-nginx controller, reading the canary annotations under `prefix`.
#[derive(Debug, Clone)]
pub struct Nginx {
    /// The annotation prefix (`nginx.ingress.kubernetes.io`, or ingress-nginx's
    /// `--annotations-prefix`).
    pub prefix: String,
}

impl Default for Nginx {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

impl Nginx {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }
}

pub use super::ingress::{CLASS_ANNOTATION, PortRef};
use super::ingress::{HttpPath, IngressBackend as Backend, IngressSpec, served_ingresses};

/// How a path matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// The whole path, case-sensitively.
    Exact,
    /// By `/`-separated element: `/foo` matches `/foo` and `/foo/bar`, not `/foobar`.
    Prefix,
    /// nginx's `location /foo`: a plain string prefix (`/foo` matches `/foobar`). Also a
    /// missing `pathType`.
    ImplementationSpecific,
}

impl PathKind {
    pub fn parse(path_type: Option<&str>) -> Self {
        match path_type {
            Some("Exact") => Self::Exact,
            Some("Prefix") => Self::Prefix,
            _ => Self::ImplementationSpecific,
        }
    }

    /// How well `pattern` matches `path`: `None` if not at all; an exact match outranks every
    /// prefix, a longer prefix a shorter one.
    pub fn rank(self, pattern: &str, path: &str) -> Option<(u8, usize)> {
        match self {
            Self::Exact => (pattern == path).then_some((2, pattern.len())),
            Self::Prefix => path_prefix_matches(pattern, path).then_some((1, pattern.len())),
            Self::ImplementationSpecific => path.starts_with(pattern).then_some((1, pattern.len())),
        }
    }
}

/// What a canary Ingress's annotations say about taking a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CanaryPolicy {
    /// `canary-by-header`: the header deciding.
    pub header: Option<String>,
    /// `canary-by-header-value`: the header value sending to the canary.
    pub header_value: Option<String>,
    /// `canary-by-header-pattern`: a regex the header value must match somewhere (ignored
    /// when `header_value` is set).
    pub header_pattern: Option<String>,
    /// `canary-by-cookie`: the cookie deciding (`always` / `never`).
    pub cookie: Option<String>,
    /// `canary-weight` (default 0).
    pub weight: u64,
    /// `canary-weight-total` (default 100).
    pub weight_total: u64,
}

/// ingress-nginx reads boolean annotations as Go's `strconv.ParseBool`.
fn truthy(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

impl CanaryPolicy {
    /// The policy of an Ingress with these annotations; `None` when it is not a canary
    /// (`<prefix>/canary` is not true).
    pub fn from_annotations(annotations: &BTreeMap<String, String>, prefix: &str) -> Option<Self> {
        let get = |key: &str| {
            annotations
                .get(&format!("{prefix}/{key}"))
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        if !get("canary").is_some_and(truthy) {
            return None;
        }
        let number = |key: &str| get(key).and_then(|v| v.parse::<u64>().ok());
        Some(Self {
            header: get("canary-by-header").map(str::to_string),
            header_value: get("canary-by-header-value").map(str::to_string),
            header_pattern: get("canary-by-header-pattern").map(str::to_string),
            cookie: get("canary-by-cookie").map(str::to_string),
            weight: number("canary-weight").unwrap_or(0),
            weight_total: number("canary-weight-total")
                .filter(|t| *t > 0)
                .unwrap_or(100),
        })
    }

    /// What the request's `header` value (of the `canary-by-header` header) and `cookie`
    /// value (of the `canary-by-cookie` cookie) decide: `Some(true)` the canary,
    /// `Some(false)` the main backend, `None` the weight decides. `pattern(re, value)` tells
    /// whether `re` matches in `value`.
    ///
    /// The header first: equal to `canary-by-header-value` if set, else matching
    /// `canary-by-header-pattern` if set, else `always` / `never`; any other value is
    /// ignored. Then the cookie: `always` / `never`; any other value is ignored.
    pub fn by_request(
        &self,
        header: Option<&str>,
        cookie: Option<&str>,
        pattern: impl Fn(&str, &str) -> bool,
    ) -> Option<bool> {
        if self.header.is_some()
            && let Some(v) = header
        {
            if let Some(want) = &self.header_value {
                if v == want {
                    return Some(true);
                }
            } else if let Some(re) = &self.header_pattern {
                if pattern(re, v) {
                    return Some(true);
                }
            } else if v == "always" {
                return Some(true);
            } else if v == "never" {
                return Some(false);
            }
        }
        if self.cookie.is_some()
            && let Some(c) = cookie
        {
            match c {
                "always" => return Some(true),
                "never" => return Some(false),
                _ => {}
            }
        }
        None
    }

    /// Whether the weight sends a request to the canary, `chance` uniform in [0, 1): a draw
    /// of 1..=`weight_total` at most `weight`.
    pub fn by_weight(&self, chance: f64) -> bool {
        if self.weight == 0 {
            return false;
        }
        let draw = (chance * self.weight_total as f64) as u64 + 1;
        draw <= self.weight
    }
}

/// The first value of a header as nginx's `$http_<name>` has it: names compared without case,
/// `-` and `_` alike.
fn nginx_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let want = name.to_ascii_lowercase().replace('_', "-");
    headers
        .iter()
        .find(|(k, _)| k.as_str().replace('_', "-") == want)
        .and_then(|(_, v)| v.to_str().ok())
}

/// The first value of cookie `name` over the `Cookie` headers, as nginx's `$cookie_<name>`.
fn nginx_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
}

/// The server a request for `host` lands on among the rule `hosts`: the same host, else the
/// longest matching wildcard.
pub fn server_for<'a>(hosts: impl IntoIterator<Item = &'a str>, host: &str) -> Option<String> {
    let mut wildcard: Option<String> = None;
    for h in hosts {
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        if h == host {
            return Some(h);
        }
        if h.starts_with("*.")
            && hostname_matches(&h, host)
            && wildcard.as_ref().is_none_or(|w| h.len() > w.len())
        {
            wildcard = Some(h);
        }
    }
    wildcard
}

/// An Ingress served by the simulated controller.
#[derive(Debug)]
struct Ing {
    namespace: String,
    name: String,
    canary: Option<CanaryPolicy>,
    spec: IngressSpec,
}

impl Ing {
    /// The HTTP paths of the rules for `server` (a rule host, lower-cased).
    fn paths<'a>(&'a self, server: &'a str) -> impl Iterator<Item = &'a HttpPath> + 'a {
        self.spec
            .rules
            .iter()
            .filter(move |r| {
                r.host
                    .as_deref()
                    .is_some_and(|h| h.trim_end_matches('.').eq_ignore_ascii_case(server))
            })
            .filter_map(|r| r.http.as_ref())
            .flat_map(|h| h.paths.iter())
    }

    fn has_host(&self, server: &str) -> bool {
        self.spec.rules.iter().any(|r| {
            r.host
                .as_deref()
                .is_some_and(|h| h.trim_end_matches('.').eq_ignore_ascii_case(server))
        })
    }
}

/// Whether ingress-nginx (class `nginx`, the default class) serves an Ingress with these
/// annotations and `ingressClassName`.
pub fn served_class(annotations: &BTreeMap<String, String>, class_name: Option<&str>) -> bool {
    super::ingress::served(annotations, class_name, CLASS, true)
}

/// Where a location sends its traffic.
struct Location<'a> {
    ing: &'a Ing,
    /// The matched path (`None`: the Ingress's `defaultBackend`).
    path: Option<&'a HttpPath>,
    backend: &'a Backend,
}

impl Nginx {
    /// The served Ingresses, oldest first.
    fn nginx_ingresses(&self, api: &Api) -> Vec<Ing> {
        served_ingresses(api, CLASS, true)
            .into_iter()
            .map(|i| Ing {
                namespace: util::namespace(&i.object).to_string(),
                name: util::name(&i.object).to_string(),
                canary: CanaryPolicy::from_annotations(&i.annotations, &self.prefix),
                spec: i.spec,
            })
            .collect()
    }
}

impl Mesh for Nginx {
    /// Routes a request for `host` as ingress-nginx would; `None` when no main Ingress has a
    /// rule for the host.
    fn route_host(
        &self,
        api: &Api,
        t: &Tools,
        host: &str,
        view: &View<'_>,
    ) -> Option<RouteDecision> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let ingresses = self.nginx_ingresses(api);
        let mains: Vec<&Ing> = ingresses.iter().filter(|i| i.canary.is_none()).collect();
        let server = server_for(
            mains
                .iter()
                .flat_map(|i| i.spec.rules.iter().filter_map(|r| r.host.as_deref())),
            &host,
        )?;
        let none = ServicePort {
            namespace: String::new(),
            service: String::new(),
            port: 80,
        };

        // The location.
        let mut best: Option<((u8, usize), Location<'_>)> = None;
        for ing in &mains {
            for p in ing.paths(&server) {
                let pattern = p.path.as_deref().unwrap_or("/");
                let Some(rank) = PathKind::parse(p.path_type.as_deref()).rank(pattern, view.path)
                else {
                    continue;
                };
                if best.as_ref().is_none_or(|(b, _)| rank > *b) {
                    let location = Location {
                        ing,
                        path: Some(p),
                        backend: &p.backend,
                    };
                    best = Some((rank, location));
                }
            }
        }
        let location = best.map(|(_, l)| l).or_else(|| {
            mains.iter().find_map(|ing| {
                let backend = ing.spec.default_backend.as_ref()?;
                ing.has_host(&server).then_some(Location {
                    ing,
                    path: None,
                    backend,
                })
            })
        });
        let Some(location) = location else {
            return Some(RouteDecision {
                actions: RouteActions {
                    direct: Some((404, "default backend - 404\n".into())),
                    ..Default::default()
                },
                ..RouteDecision::to(none)
            });
        };

        // The canary Ingress of that location, and whether it takes this request.
        let canary = location.path.and_then(|main| {
            let value = main.path.as_deref().unwrap_or("/");
            let kind = PathKind::parse(main.path_type.as_deref());
            ingresses.iter().find_map(|ing| {
                let policy = ing.canary.as_ref()?;
                let p = ing.paths(&server).find(|p| {
                    p.path.as_deref().unwrap_or("/") == value
                        && PathKind::parse(p.path_type.as_deref()) == kind
                })?;
                Some((ing, policy, p))
            })
        });
        let chosen = canary.filter(|(_, policy, _)| {
            let header = policy
                .header
                .as_deref()
                .and_then(|h| nginx_header(view.headers, h));
            let cookie = policy
                .cookie
                .as_deref()
                .and_then(|c| nginx_cookie(view.headers, c));
            policy
                .by_request(header, cookie, |re, v| t.search(re, v))
                .unwrap_or_else(|| policy.by_weight(t.chance()))
        });

        let main_service = location.backend.service.as_ref();
        let (namespace, backend) = match chosen {
            Some((ing, _, p)) => (&ing.namespace, &p.backend),
            None => (&location.ing.namespace, location.backend),
        };
        let telemetry = IngressTelemetry {
            namespace: location.ing.namespace.clone(),
            ingress: location.ing.name.clone(),
            service: main_service.map(|s| s.name.clone()).unwrap_or_default(),
            canary: match (chosen, backend.service.as_ref()) {
                (Some(_), Some(s)) => format!("{namespace}-{}-{}", s.name, s.port.label()),
                _ => String::new(),
            },
            path: location
                .path
                .and_then(|p| p.path.clone())
                .unwrap_or_else(|| "/".into()),
            host,
        };
        let decision = match service_port(api, namespace, backend) {
            Ok(sp) => RouteDecision::to(sp),
            Err(why) => RouteDecision {
                actions: RouteActions {
                    direct: Some((503, format!("localkube ingress-nginx: {why}\n"))),
                    ..Default::default()
                },
                ..RouteDecision::to(none)
            },
        };
        Some(RouteDecision {
            actions: RouteActions {
                ingress: Some(telemetry),
                gateway: Some(Workload::new(CONTROLLER_NAMESPACE, CONTROLLER_NAME)),
                ..decision.actions
            },
            ..decision
        })
    }
}

/// ingress-nginx's constant labels, as a controller installed by its Helm chart in
/// `ingress-nginx` would have them.
const CONTROLLER_LABELS: &str = "controller_class=\"k8s.io/ingress-nginx\",controller_namespace=\"ingress-nginx\",controller_pod=\"ingress-nginx-controller-localkube\"";

/// The controller's workload, as its Helm chart installs it.
const CONTROLLER_NAMESPACE: &str = "ingress-nginx";
const CONTROLLER_NAME: &str = "ingress-nginx-controller";

fn labels(l: &IngressLabels) -> String {
    format!(
        "canary=\"{}\",{CONTROLLER_LABELS},host=\"{}\",ingress=\"{}\",method=\"{}\",namespace=\"{}\",path=\"{}\",service=\"{}\",status=\"{}\"",
        escape(&l.canary),
        escape(&l.host),
        escape(&l.ingress),
        escape(&l.method),
        escape(&l.namespace),
        escape(&l.path),
        escape(&l.service),
        l.status
    )
}

/// The controller's series as ingress-nginx's socket collector writes them.
impl Telemetry for Nginx {
    fn render(&self, recorded: &Recorded, out: &mut String) {
        header(
            out,
            "nginx_ingress_controller_requests",
            "counter",
            "The total number of client requests",
        );
        for (l, h) in &recorded.ingress {
            let _ = writeln!(
                out,
                "nginx_ingress_controller_requests{{{}}} {}",
                labels(l),
                h.request.count
            );
        }
        for (name, help, upstream) in [
            (
                "nginx_ingress_controller_request_duration_seconds",
                "The request processing time in seconds",
                false,
            ),
            (
                "nginx_ingress_controller_response_duration_seconds",
                "The time spent on receiving the response from the upstream server",
                true,
            ),
        ] {
            header(out, name, "histogram", help);
            for (l, h) in &recorded.ingress {
                let hist = if upstream { &h.response } else { &h.request };
                if hist.count == 0 {
                    continue;
                }
                histogram(
                    out,
                    name,
                    &labels(l),
                    &BUCKETS,
                    &hist.buckets,
                    hist.sum,
                    hist.count,
                );
            }
        }
    }
}

/// The Service port an Ingress backend names, in namespace `ns`.
fn service_port(api: &Api, ns: &str, backend: &Backend) -> Result<ServicePort, String> {
    let Some(s) = &backend.service else {
        return Err("only Service backends are supported".into());
    };
    let svc = api
        .resource("v1", "Service")
        .ok()
        .and_then(|info| api.store.get(&info.storage_key(), ns, &s.name))
        .ok_or_else(|| format!("service \"{ns}/{}\" not found", s.name))?;
    let port = match (s.port.number, &s.port.name) {
        (Some(n), _) => u16::try_from(n).ok(),
        (None, Some(name)) => svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .and_then(|ports| ports.iter().find(|p| p["name"] == name.as_str()))
            .and_then(|p| p["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok()),
        (None, None) => None,
    }
    .ok_or_else(|| format!("service \"{ns}/{}\" has no port {}", s.name, s.port.label()))?;
    Ok(ServicePort {
        namespace: ns.to_string(),
        service: s.name.clone(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{DEFAULT_PREFIX}/{k}"), v.to_string()))
            .collect()
    }

    fn policy(pairs: &[(&str, &str)]) -> CanaryPolicy {
        CanaryPolicy::from_annotations(&ann(pairs), DEFAULT_PREFIX).unwrap()
    }

    fn contains(re: &str, v: &str) -> bool {
        regex::Regex::new(re).is_ok_and(|r| r.is_match(v))
    }

    #[test]
    fn annotations_parse() {
        assert_eq!(
            CanaryPolicy::from_annotations(&ann(&[]), DEFAULT_PREFIX),
            None
        );
        assert_eq!(
            CanaryPolicy::from_annotations(
                &ann(&[("canary", "false"), ("canary-weight", "50")]),
                DEFAULT_PREFIX
            ),
            None
        );
        assert_eq!(
            policy(&[("canary", "true")]),
            CanaryPolicy {
                weight: 0,
                weight_total: 100,
                ..Default::default()
            }
        );
        let p = policy(&[
            ("canary", "True"),
            ("canary-weight", "30"),
            ("canary-weight-total", "1000"),
            ("canary-by-header", "X-Canary"),
            ("canary-by-header-value", "insider"),
            ("canary-by-cookie", "canary"),
        ]);
        assert_eq!(p.weight, 30);
        assert_eq!(p.weight_total, 1000);
        assert_eq!(p.header.as_deref(), Some("X-Canary"));
        assert_eq!(p.header_value.as_deref(), Some("insider"));
        assert_eq!(p.cookie.as_deref(), Some("canary"));
        // Unparsable numbers: the defaults.
        let p = policy(&[
            ("canary", "1"),
            ("canary-weight", "lots"),
            ("canary-weight-total", "0"),
        ]);
        assert_eq!((p.weight, p.weight_total), (0, 100));
        // Another prefix.
        let custom: BTreeMap<String, String> = [
            ("custom.io/canary", "true"),
            ("custom.io/canary-weight", "5"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            CanaryPolicy::from_annotations(&custom, "custom.io").map(|p| p.weight),
            Some(5)
        );
        assert_eq!(
            CanaryPolicy::from_annotations(&custom, DEFAULT_PREFIX),
            None
        );
    }

    #[test]
    fn header_then_cookie_then_weight() {
        let plain = policy(&[
            ("canary", "true"),
            ("canary-by-header", "x-canary"),
            ("canary-by-cookie", "canary"),
        ]);
        let d = |h: Option<&str>, c: Option<&str>| plain.by_request(h, c, contains);
        assert_eq!(d(Some("always"), None), Some(true));
        assert_eq!(d(Some("never"), Some("always")), Some(false));
        assert_eq!(d(Some("always"), Some("never")), Some(true));
        // Another header value is ignored: the cookie decides, then the weight.
        assert_eq!(d(Some("maybe"), Some("always")), Some(true));
        assert_eq!(d(Some("maybe"), Some("never")), Some(false));
        assert_eq!(d(Some("maybe"), Some("other")), None);
        assert_eq!(d(None, None), None);

        let valued = policy(&[
            ("canary", "true"),
            ("canary-by-header", "x-canary"),
            ("canary-by-header-value", "insider"),
            ("canary-by-header-pattern", "ignored.*"),
            ("canary-by-cookie", "canary"),
        ]);
        let d = |h: Option<&str>, c: Option<&str>| valued.by_request(h, c, contains);
        assert_eq!(d(Some("insider"), Some("never")), Some(true));
        // With a value, `always` and `never` are plain values; the pattern is ignored.
        assert_eq!(d(Some("always"), None), None);
        assert_eq!(d(Some("never"), Some("always")), Some(true));
        assert_eq!(d(Some("ignored-too"), None), None);

        let patterned = policy(&[
            ("canary", "true"),
            ("canary-by-header", "user-agent"),
            ("canary-by-header-pattern", "Firefox|Chrome/9[0-9]"),
        ]);
        let d = |h: Option<&str>| patterned.by_request(h, None, contains);
        // ngx.re.match: the expression matches anywhere in the value.
        assert_eq!(d(Some("Mozilla/5.0 Firefox/99")), Some(true));
        assert_eq!(d(Some("Chrome/95.1")), Some(true));
        assert_eq!(d(Some("Safari")), None);
        assert_eq!(d(Some("never")), None);

        // A cookie-only policy ignores headers.
        let cookie = policy(&[("canary", "true"), ("canary-by-cookie", "canary")]);
        assert_eq!(cookie.by_request(Some("always"), None, contains), None);
        assert_eq!(
            cookie.by_request(None, Some("always"), contains),
            Some(true)
        );
    }

    #[test]
    fn weights() {
        let zero = policy(&[("canary", "true")]);
        let all = policy(&[("canary", "true"), ("canary-weight", "100")]);
        let thirty = policy(&[("canary", "true"), ("canary-weight", "30")]);
        let per_mille = policy(&[
            ("canary", "true"),
            ("canary-weight", "5"),
            ("canary-weight-total", "1000"),
        ]);
        let mut hits = [0usize; 4];
        for i in 0..10_000 {
            let chance = (i as f64 + 0.5) / 10_000.0;
            for (n, p) in [&zero, &all, &thirty, &per_mille].iter().enumerate() {
                hits[n] += usize::from(p.by_weight(chance));
            }
        }
        assert_eq!(hits, [0, 10_000, 3_000, 50]);
        assert!(!zero.by_weight(0.0));
        assert!(all.by_weight(0.999_999));
    }

    #[test]
    fn headers_and_cookies_as_nginx_reads_them() {
        let mut h = HeaderMap::new();
        h.append("x-canary", HeaderValue::from_static("always"));
        h.append("x-canary", HeaderValue::from_static("never"));
        h.append("cookie", HeaderValue::from_static("a=1; Canary=never"));
        h.append("cookie", HeaderValue::from_static("canary=always"));
        assert_eq!(nginx_header(&h, "X-Canary"), Some("always"));
        assert_eq!(nginx_header(&h, "x_canary"), Some("always"));
        assert_eq!(nginx_header(&h, "x-other"), None);
        assert_eq!(nginx_cookie(&h, "canary"), Some("never"));
        assert_eq!(nginx_cookie(&h, "a"), Some("1"));
        assert_eq!(nginx_cookie(&h, "b"), None);
    }

    #[test]
    fn servers_paths_and_classes() {
        let hosts = ["app.example.com", "*.example.com", "*.b.example.com"];
        let s = |h: &str| server_for(hosts, h);
        assert_eq!(s("app.example.com").as_deref(), Some("app.example.com"));
        assert_eq!(s("x.example.com").as_deref(), Some("*.example.com"));
        assert_eq!(s("a.b.example.com").as_deref(), Some("*.b.example.com"));
        assert_eq!(s("example.com"), None);
        assert_eq!(s("other.org"), None);

        let (exact, prefix, spec) = (
            PathKind::Exact,
            PathKind::Prefix,
            PathKind::ImplementationSpecific,
        );
        assert_eq!(PathKind::parse(Some("Exact")), exact);
        assert_eq!(PathKind::parse(None), spec);
        assert!(exact.rank("/api", "/api").is_some());
        assert!(exact.rank("/api", "/api/").is_none());
        assert!(prefix.rank("/api", "/api/v1").is_some());
        assert!(prefix.rank("/api", "/apiv1").is_none());
        assert!(prefix.rank("/", "/anything").is_some());
        assert!(spec.rank("/api", "/apiv1").is_some());
        assert!(exact.rank("/api", "/api") > prefix.rank("/api", "/api"));
        assert!(prefix.rank("/api/v1", "/api/v1/x") > prefix.rank("/api", "/api/v1/x"));

        let class = |a: &[(&str, &str)], c: Option<&str>| {
            let a = a
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            served_class(&a, c)
        };
        assert!(class(&[], None));
        assert!(class(&[], Some("nginx")));
        assert!(!class(&[], Some("traefik")));
        assert!(class(&[(CLASS_ANNOTATION, "nginx")], Some("traefik")));
        assert!(!class(&[(CLASS_ANNOTATION, "skipper")], Some("nginx")));
        assert_eq!(
            PortRef {
                number: None,
                name: Some("http".into())
            }
            .label(),
            "http"
        );
    }
}
