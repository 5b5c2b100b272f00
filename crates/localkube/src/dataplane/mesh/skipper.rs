//! Skipper: [`Skipper`] plays Skipper's ingress (path mode `path-prefix`, as Flagger's Skipper
//! setup runs it) for the hosts of Ingresses of class `skipper` (`kubernetes.io/ingress.class`
//! annotation, else `spec.ingressClassName`).
//!
//! Each path of an Ingress rule is a Skipper route, its ID
//! `kube_<namespace>__<ingress>__<host>__<path>__<service>` (each part with its non-word
//! characters turned into `_`). The paths of a rule with the same path value share its traffic
//! by the `zalando.org/backend-weights` annotation, as Skipper's traffic predicates do: a
//! backend with weight 0 gets no route when another has one; no weights at all split equally.
//! The `zalando.org/skipper-predicate` annotation adds its predicates to every route of the
//! Ingress: `Weight(n)`, `True()`, `False()`, `Traffic(p)`, `Header("k", "v")`,
//! `HeaderRegexp("k", "re")`, `Method("M")`, `Cookie("name", "re")`; a route with another
//! predicate is left out, as Skipper drops what it cannot build.
//!
//! A request takes, among the routes for its host, the most specific path (`Exact` paths,
//! then `Prefix` / `ImplementationSpecific` subtrees, longest first), then the route of the
//! greatest weight (its `Weight(n)` plus one per other predicate and for its host), the first
//! whose predicates all hold. No route: 404.
//!
//! Telemetry: Skipper's route series (`-serve-route-metrics`, `-route-response-metrics`):
//! `skipper_serve_route_duration_seconds` and `skipper_response_duration_seconds`
//! (histograms, Prometheus's default buckets) and `skipper_serve_route_count`, labelled
//! `code`, `method` and `route`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::super::router::{GatewayTelemetry, RouteDecision};
use super::super::telemetry::{BUCKETS, Recorded, Telemetry, escape, header, histogram};
use super::common::{Mesh, Tools, View, path_prefix_matches};
use super::gateway::{Backend, answer, to_backend};
use super::ingress::{HttpPath, Served, served_ingresses};
use crate::Api;
use crate::util;

/// The ingress class served.
pub const CLASS: &str = "skipper";
/// The gateway name of Skipper's series.
pub const GATEWAY: &str = "skipper";
const BACKEND_WEIGHTS: &str = "zalando.org/backend-weights";
const PREDICATE: &str = "zalando.org/skipper-predicate";

/// Skipper, routing by Ingresses of class `skipper`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Skipper;

// === predicates ===

/// A route predicate.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    Weight(i64),
    True,
    False,
    Traffic(f64),
    Header(String, String),
    HeaderRegexp(String, String),
    Method(String),
    Cookie(String, String),
}

/// An argument of a predicate: a string or a number.
fn args(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let Some(c) = chars.next() else { break };
        match c {
            '"' | '`' | '/' => {
                let mut arg = String::new();
                loop {
                    match chars.next()? {
                        q if q == c => break,
                        '\\' => {
                            let e = chars.next()?;
                            if c == '/' && e != '/' {
                                arg.push('\\');
                            }
                            arg.push(e);
                        }
                        ch => arg.push(ch),
                    }
                }
                out.push(arg);
            }
            c if c.is_ascii_digit() || c == '.' || c == '-' => {
                let mut n = c.to_string();
                while let Some(d) = chars.next_if(|d| d.is_ascii_digit() || *d == '.') {
                    n.push(d);
                }
                out.push(n);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Parses `Name(args) && Name(args)`; `None` when a predicate is not one this data plane
/// knows (Skipper would drop the route).
pub fn parse_predicates(s: &str) -> Option<Vec<Predicate>> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let open = rest.find('(')?;
        let name = rest[..open].trim();
        // The closing parenthesis outside quotes.
        let mut quote = None;
        let mut close = None;
        for (i, c) in rest[open + 1..].char_indices() {
            match (quote, c) {
                (None, '"' | '`') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, ')') => {
                    close = Some(open + 1 + i);
                    break;
                }
                _ => {}
            }
        }
        let close = close?;
        let a = args(&rest[open + 1..close])?;
        let str_at = |i: usize| a.get(i).cloned();
        out.push(match (name, a.len()) {
            ("Weight", 1) => Predicate::Weight(a[0].parse::<f64>().ok()? as i64),
            ("True", 0) => Predicate::True,
            ("False", 0) => Predicate::False,
            ("Traffic", 1..=3) => Predicate::Traffic(a[0].parse().ok()?),
            ("Header", 2) => Predicate::Header(str_at(0)?, str_at(1)?),
            ("HeaderRegexp", 2) => Predicate::HeaderRegexp(str_at(0)?, str_at(1)?),
            ("Method", 1) => Predicate::Method(str_at(0)?),
            ("Cookie", 2) => Predicate::Cookie(str_at(0)?, str_at(1)?),
            _ => return None,
        });
        rest = rest[close + 1..].trim_start();
        if let Some(r) = rest.strip_prefix("&&") {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return None;
        }
    }
    Some(out)
}

impl Predicate {
    fn holds(&self, t: &Tools, view: &View<'_>) -> bool {
        let values = |k: &str| -> Vec<String> {
            view.headers
                .get_all(k)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect()
        };
        match self {
            Predicate::Weight(_) | Predicate::True => true,
            Predicate::False => false,
            Predicate::Traffic(p) => t.chance() < *p,
            Predicate::Header(k, v) => values(k).iter().any(|x| x == v),
            Predicate::HeaderRegexp(k, re) => values(k).iter().any(|x| t.search(re, x)),
            Predicate::Method(m) => m.eq_ignore_ascii_case(view.method),
            Predicate::Cookie(name, re) => values("cookie").iter().any(|c| {
                c.split(';').any(|pair| {
                    pair.trim()
                        .split_once('=')
                        .is_some_and(|(k, v)| k.trim() == name && t.search(re, v.trim()))
                })
            }),
        }
    }
}

// === routes ===

/// A name part of a route ID.
fn id_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `kube_<namespace>__<ingress>__<host>__<path>__<service>`.
pub fn route_id(ns: &str, ingress: &str, host: &str, path: &str, service: &str) -> String {
    format!(
        "kube_{}__{}__{}__{}__{}",
        id_part(ns),
        id_part(ingress),
        id_part(host),
        id_part(path),
        id_part(service)
    )
}

/// A route: where and for what it matches, and where it sends.
struct SkRoute {
    host: Option<String>,
    exact: bool,
    path: String,
    predicates: Vec<Predicate>,
    backend: Backend,
}

impl SkRoute {
    fn weight(&self) -> i64 {
        let mut w = i64::from(self.host.is_some());
        for p in &self.predicates {
            match p {
                Predicate::Weight(n) => w += n,
                _ => w += 1,
            }
        }
        w
    }

    /// How specific its path match is for `path`; `None` when it does not match.
    fn path_rank(&self, path: &str) -> Option<(u8, usize)> {
        if self.exact {
            (path == self.path).then_some((2, self.path.len()))
        } else {
            path_prefix_matches(&self.path, path).then_some((1, self.path.len()))
        }
    }
}

/// Skipper's traffic split of the backends of one path: each backend's `Traffic()` chance
/// among the ones after it, `None` for a backend that gets no route, plus its `True()` count.
fn traffic(weights: &[f64]) -> Vec<Option<(f64, usize)>> {
    let mut w: Vec<f64> = weights.to_vec();
    let mut sum: f64 = w.iter().sum();
    if sum == 0.0 {
        w = vec![1.0; w.len()];
        sum = w.len() as f64;
    }
    let last = w.iter().rposition(|x| *x > 0.0).unwrap_or(0);
    let n = w.len();
    let mut out = Vec::with_capacity(n);
    for (i, x) in w.iter().enumerate() {
        let value = if i == last {
            1.0
        } else if *x == 0.0 {
            0.0
        } else {
            x / sum
        };
        sum -= x;
        out.push((value > 0.0).then_some((value, n.saturating_sub(i + 2))));
    }
    out
}

impl Skipper {
    fn routes(api: &Api) -> Vec<SkRoute> {
        let mut out = Vec::new();
        for Served {
            object: o,
            annotations,
            spec,
        } in served_ingresses(api, CLASS, false)
        {
            let predicate = annotations.get(PREDICATE).map_or("", String::as_str);
            let Some(predicates) = parse_predicates(predicate) else {
                continue;
            };
            let weights: BTreeMap<String, f64> = annotations
                .get(BACKEND_WEIGHTS)
                .and_then(|w| serde_json::from_str(w).ok())
                .unwrap_or_default();
            let (ns, name) = (util::namespace(&o), util::name(&o));
            for rule in &spec.rules {
                let Some(http) = &rule.http else { continue };
                let host = rule.host.clone().filter(|h| !h.is_empty());
                // The backends of each path value, in order.
                let mut by_path: BTreeMap<String, Vec<&HttpPath>> = BTreeMap::new();
                for p in &http.paths {
                    by_path
                        .entry(p.path.clone().unwrap_or_default())
                        .or_default()
                        .push(p);
                }
                for (path, paths) in by_path {
                    let w: Vec<f64> = paths
                        .iter()
                        .map(|p| {
                            let svc = p.backend.service.as_ref().map(|s| s.name.as_str());
                            svc.and_then(|s| weights.get(s)).copied().unwrap_or(0.0)
                        })
                        .collect();
                    for (p, share) in paths.iter().zip(traffic(&w)) {
                        let (Some(svc), Some((chance, balance))) = (&p.backend.service, share)
                        else {
                            continue;
                        };
                        let mut preds = predicates.clone();
                        if chance < 1.0 {
                            preds.push(Predicate::Traffic(chance));
                            preds.extend(std::iter::repeat_n(Predicate::True, balance));
                        }
                        let mut backend =
                            Backend::service(api, ns, &svc.name, svc.port.number, 1.0);
                        backend.telemetry = Some(GatewayTelemetry {
                            gateway: GATEWAY,
                            name: route_id(
                                ns,
                                name,
                                host.as_deref().unwrap_or_default(),
                                &path,
                                &svc.name,
                            ),
                            labels: Vec::new(),
                        });
                        out.push(SkRoute {
                            host: host.clone(),
                            exact: p.path_type.as_deref() == Some("Exact"),
                            path: if path.is_empty() {
                                "/".into()
                            } else {
                                path.clone()
                            },
                            predicates: preds,
                            backend,
                        });
                    }
                }
            }
        }
        out
    }
}

impl Mesh for Skipper {
    fn route_host(
        &self,
        api: &Api,
        t: &Tools,
        host: &str,
        view: &View<'_>,
    ) -> Option<RouteDecision> {
        let routes = Self::routes(api);
        let for_host = |r: &&SkRoute| {
            r.host
                .as_deref()
                .is_none_or(|h| h.trim_end_matches('.').eq_ignore_ascii_case(host))
        };
        if !routes.iter().any(|r| {
            r.host
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(host))
        }) {
            return None;
        }
        let mut candidates: Vec<(usize, (u8, usize), &SkRoute)> = routes
            .iter()
            .filter(for_host)
            .enumerate()
            .filter_map(|(i, r)| Some((i, r.path_rank(view.path)?, r)))
            .collect();
        candidates.sort_by_key(|(i, rank, r)| {
            (std::cmp::Reverse(*rank), std::cmp::Reverse(r.weight()), *i)
        });
        let chosen = candidates
            .iter()
            .find(|(_, _, r)| r.predicates.iter().all(|p| p.holds(t, view)));
        match chosen {
            Some((_, _, r)) => Some(to_backend(&r.backend, None, None)),
            None => Some(answer(404, "Not Found", None)),
        }
    }
}

// === telemetry ===

impl Telemetry for Skipper {
    fn render(&self, recorded: &Recorded, out: &mut String) {
        let rows: Vec<_> = recorded
            .gateway
            .iter()
            .filter(|(l, _)| l.telemetry.gateway == GATEWAY)
            .map(|(l, h)| {
                (
                    format!(
                        "code=\"{}\",method=\"{}\",route=\"{}\"",
                        l.status,
                        escape(&l.method),
                        escape(&l.telemetry.name)
                    ),
                    h,
                )
            })
            .collect();
        let bounds_ms = BUCKETS.map(|b| b * 1000.0);
        for (name, help) in [
            (
                "skipper_serve_route_duration_seconds",
                "Duration in seconds of serving a route.",
            ),
            (
                "skipper_response_duration_seconds",
                "Duration in seconds of a response.",
            ),
        ] {
            header(out, name, "histogram", help);
            for (labels, h) in &rows {
                histogram(
                    out,
                    name,
                    labels,
                    &BUCKETS,
                    &h.request.cumulative(&bounds_ms),
                    h.request.sum_ms / 1000.0,
                    h.request.count,
                );
            }
        }
        header(
            out,
            "skipper_serve_route_count",
            "counter",
            "Total number of requests of serving a route.",
        );
        for (labels, h) in &rows {
            let _ = writeln!(
                out,
                "skipper_serve_route_count{{{labels}}} {}",
                h.request.count
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_parse() {
        assert_eq!(
            parse_predicates(r#"Weight(100) && Header("x-canary", "insider") && False()"#),
            Some(vec![
                Predicate::Weight(100),
                Predicate::Header("x-canary".into(), "insider".into()),
                Predicate::False,
            ])
        );
        assert_eq!(parse_predicates(""), Some(vec![]));
        assert_eq!(parse_predicates("Unknown()"), None);
        assert_eq!(
            parse_predicates("Cookie(\"c\", /^a$/)"),
            Some(vec![Predicate::Cookie("c".into(), "^a$".into())])
        );
    }

    #[test]
    fn traffic_follows_skippers_split() {
        // primary 90, canary 10: Traffic(0.9) on the primary, the canary takes the rest.
        assert_eq!(traffic(&[90.0, 10.0]), vec![Some((0.9, 0)), Some((1.0, 0))]);
        // canary 0: no canary route, the primary takes all.
        assert_eq!(traffic(&[100.0, 0.0]), vec![Some((1.0, 0)), None]);
        assert_eq!(traffic(&[0.0, 0.0]), vec![Some((0.5, 0)), Some((1.0, 0))]);
        let three = traffic(&[0.1, 0.2, 0.7]);
        assert_eq!(three[0].map(|(_, b)| b), Some(1));
        assert!((three[1].expect("route").0 - 0.2 / 0.9).abs() < 1e-9);
        assert_eq!(
            route_id(
                "test",
                "podinfo-canary",
                "app.example.com",
                "/",
                "podinfo-canary"
            ),
            "kube_test__podinfo_canary__app_example_com_____podinfo_canary"
        );
    }
}
