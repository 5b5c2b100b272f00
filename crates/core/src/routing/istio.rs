//! Istio: the VirtualService `<apex>` and the DestinationRules `<apex>-primary` /
//! `<apex>-canary` (reference §4.3), and reading the weights back from a VirtualService.
//!
//! The types carry the fields Flagger writes; unknown fields of an object read back are
//! ignored.

use super::observer::Standard;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use flagger_api::AbMatch;
use flagger_api::istio::{
    CorsPolicy, HeaderOperations, Headers, HttpMatchRequest, HttpRetry, TrafficPolicy,
};

use super::common::{RoutingError, apex_metadata, check_weights};
use super::cookies::{StickyCookies, cookie_regex, expire_cookie, set_cookie};
use super::descriptor::Descriptor;
use crate::effects::Routes;
use crate::generated::{self, Names};
use crate::model::Provider;
use crate::model::{Strategy, ValidatedCanary};

/// API version of the objects written.
pub const API_VERSION: &str = "networking.istio.io/v1beta1";

// === types ===

/// `networking.istio.io` VirtualService.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VirtualService {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: VirtualServiceSpec,
}

/// VirtualService spec.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRoute>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpRoute>,
}

/// A string condition. Istio's own StringMatch has no `suffix`, but `analysis.match` header
/// conditions may carry one and Flagger passes it through.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct StringMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// HTTPMatchRequest.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MatchRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StringMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, StringMatch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub without_headers: Option<BTreeMap<String, StringMatch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_params: Option<BTreeMap<String, StringMatch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_uri_case: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<Vec<String>>,
}

/// URI/authority rewrite (Istio has no `type`; that is Gateway API's).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
}

/// A destination host, with a port when Flagger sets one.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Destination {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// Destination port.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct PortSelector {
    pub number: i32,
}

/// A weighted destination of a route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteDestination {
    pub destination: Destination,
    #[serde(default)]
    pub weight: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// Mirrored percentage.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Percent {
    pub value: f64,
}

/// An HTTP route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<MatchRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<HttpRetry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_policy: Option<CorsPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
    #[serde(default)]
    pub route: Vec<RouteDestination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Destination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percentage: Option<Percent>,
}

/// L4 match of a TCP route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct L4Match {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
}

/// A TCP route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpRoute {
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<L4Match>,
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// `networking.istio.io` DestinationRule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRule {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: DestinationRuleSpec,
}

/// DestinationRule spec.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
}

// === builders ===

/// The DestinationRules `<apex>-canary` and `<apex>-primary`, in that order: host = the
/// Service, traffic policy = `service.trafficPolicy`, no other metadata.
pub fn destination_rules(canary: &ValidatedCanary) -> Vec<DestinationRule> {
    [canary.canary_service(), canary.primary_service()]
        .into_iter()
        .map(|host| DestinationRule {
            api_version: API_VERSION.into(),
            kind: "DestinationRule".into(),
            metadata: ObjectMeta {
                name: Some(host.clone()),
                namespace: Some(canary.namespace.clone()),
                ..Default::default()
            },
            spec: DestinationRuleSpec {
                host,
                traffic_policy: canary.service.traffic_policy.clone(),
            },
        })
        .collect()
}

/// Whether the canary routes TCP (`service.appProtocol` is `tcp`, any case).
pub fn is_tcp(canary: &ValidatedCanary) -> bool {
    canary
        .service
        .app_protocol
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case("tcp"))
}

/// The VirtualService `<apex>` with these routes. `cookies` are the session-affinity cookies
/// after [`super::cookies::next_sticky_cookies`]; they are ignored without `analysis.sessionAffinity`.
pub fn virtual_service(
    canary: &ValidatedCanary,
    routes: Routes,
    cookies: &StickyCookies,
) -> Result<VirtualService, RoutingError> {
    let svc = &canary.service;
    let delegation = svc.delegation.unwrap_or(false);
    let user_hosts = svc.hosts.clone().unwrap_or_default();
    let user_gateways = svc.gateways.clone().unwrap_or_default();
    let (hosts, gateways) = if delegation {
        if !user_hosts.is_empty() || !user_gateways.is_empty() {
            return Err(RoutingError::Unsupported(format!(
                "VirtualService {}.{} cannot have hosts and gateways when delegation enabled",
                canary.apex, canary.namespace
            )));
        }
        (Vec::new(), Vec::new())
    } else {
        let mut hosts = user_hosts;
        if !hosts.iter().any(|h| h == &canary.apex || h == "*") {
            hosts.push(canary.apex.clone());
        }
        let gateways = if user_gateways.is_empty() {
            vec!["mesh".to_string()]
        } else {
            user_gateways
        };
        (hosts, gateways)
    };
    let port = (svc.port_discovery.unwrap_or(false)
        && (delegation || gateways.first().is_some_and(|g| g != "mesh")))
    .then_some(PortSelector { number: svc.port });
    let dest = |host: String, weight: u32| RouteDestination {
        destination: Destination {
            host,
            port: port.clone(),
        },
        weight,
        headers: None,
    };
    let weighted = vec![
        dest(canary.primary_service(), routes.primary),
        dest(canary.canary_service(), routes.canary),
    ];

    let service_matches = svc
        .r#match
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(service_match)
        .collect::<Result<Vec<_>, _>>()?;

    let mut spec = VirtualServiceSpec {
        hosts,
        gateways,
        ..Default::default()
    };
    if is_tcp(canary) {
        spec.tcp = vec![TcpRoute {
            matches: service_matches
                .iter()
                .map(|m| L4Match { port: m.port })
                .collect(),
            route: weighted,
        }];
    } else {
        let base = HttpRoute {
            matches: service_matches.clone(),
            rewrite: svc.rewrite.as_ref().map(|r| Rewrite {
                uri: r.uri.clone(),
                authority: r.authority.clone(),
            }),
            timeout: svc.timeout.clone(),
            retries: svc.retries.clone(),
            cors_policy: svc.cors_policy.clone(),
            headers: svc.headers.clone(),
            ..Default::default()
        };
        let mut weighted_route = HttpRoute {
            route: weighted,
            ..base.clone()
        };
        if routes.mirrored {
            weighted_route.mirror = Some(Destination {
                host: canary.canary_service(),
                port: None,
            });
            if canary.analysis.mirror_weight > 0 {
                weighted_route.mirror_percentage = Some(Percent {
                    value: f64::from(canary.analysis.mirror_weight),
                });
            }
        }
        let ab = match &canary.analysis.strategy {
            Strategy::AbTesting { matches, .. } if !matches.is_empty() => Some(matches),
            _ => None,
        };
        spec.http = if let Some(ab) = ab {
            let ab = ab.iter().map(ab_match).collect::<Result<Vec<_>, _>>()?;
            vec![
                HttpRoute {
                    matches: merge_matches(&ab, &service_matches),
                    ..weighted_route
                },
                HttpRoute {
                    route: vec![dest(canary.primary_service(), 100)],
                    ..base
                },
            ]
        } else if let Some(affinity) = &canary.analysis.session_affinity {
            let cookie_match = |cookie: &str| {
                let m = MatchRequest {
                    headers: Some(BTreeMap::from([(
                        "Cookie".to_string(),
                        StringMatch {
                            regex: Some(cookie_regex(cookie)),
                            ..Default::default()
                        },
                    )])),
                    ..Default::default()
                };
                merge_matches(&[m], &service_matches)
            };
            if routes.canary > 0 {
                let cookie = cookies.canary.as_deref().ok_or_else(|| {
                    RoutingError::Missing(
                        "session affinity needs the canary cookie for a canary weight above 0"
                            .into(),
                    )
                })?;
                let mut rules = vec![HttpRoute {
                    matches: cookie_match(cookie),
                    route: vec![
                        dest(canary.primary_service(), 0),
                        dest(canary.canary_service(), 100),
                    ],
                    ..base.clone()
                }];
                weighted_route.route[1].headers = Some(add_response_header(
                    None,
                    set_cookie(affinity, cookie, affinity.max_age),
                ));
                if affinity.primary_cookie_name.is_some()
                    && let Some(primary) = cookies.primary.as_deref()
                {
                    rules.push(HttpRoute {
                        matches: cookie_match(primary),
                        route: vec![
                            dest(canary.primary_service(), 100),
                            dest(canary.canary_service(), 0),
                        ],
                        ..base.clone()
                    });
                    let max_age =
                        i64::try_from(canary.analysis.interval.as_secs()).unwrap_or(i64::MAX);
                    weighted_route.route[0].headers = Some(add_response_header(
                        None,
                        set_cookie(affinity, primary, max_age),
                    ));
                }
                rules.push(weighted_route);
                rules
            } else {
                let mut expire = weighted_route.clone();
                if let Some(previous) = cookies.previous.as_deref() {
                    expire.matches = cookie_match(previous);
                    expire.headers = Some(add_response_header(
                        base.headers.clone(),
                        expire_cookie(previous),
                    ));
                }
                vec![expire, weighted_route]
            }
        } else {
            vec![weighted_route]
        };
    }

    let (labels, annotations) = apex_metadata(canary);
    Ok(VirtualService {
        api_version: API_VERSION.into(),
        kind: "VirtualService".into(),
        metadata: ObjectMeta {
            name: Some(canary.apex.clone()),
            namespace: Some(canary.namespace.clone()),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec,
    })
}

/// Reads the weights back (the router's `GetRoutes`): the first HTTP (or TCP) route with a
/// `<apex>-canary` destination; with session affinity, the route whose destinations carry
/// headers (the weighted rule) when there is one.
pub fn read_routes(canary: &ValidatedCanary, vs: &VirtualService) -> Result<Routes, RoutingError> {
    let (primary_host, canary_host) = (canary.primary_service(), canary.canary_service());
    let has_canary =
        |route: &[RouteDestination]| route.iter().any(|d| d.destination.host == canary_host);
    let (route, mirrored): (&[RouteDestination], bool) = if is_tcp(canary) {
        match vs.spec.tcp.iter().find(|r| has_canary(&r.route)) {
            Some(r) => (&r.route, false),
            None => (&[], false),
        }
    } else {
        let mut candidates = vs.spec.http.iter().filter(|r| has_canary(&r.route));
        let first = candidates.clone().next();
        let chosen = if canary.analysis.session_affinity.is_some() {
            candidates
                .find(|r| r.route.iter().any(|d| d.headers.is_some()))
                .or(first)
        } else {
            first
        };
        match chosen {
            Some(r) => (&r.route, r.mirror.is_some()),
            None => (&[], false),
        }
    };
    let weight = |host: &str| {
        route
            .iter()
            .filter(|d| d.destination.host == host)
            .map(|d| d.weight)
            .next_back()
            .unwrap_or(0)
    };
    let (p, c) = (weight(&primary_host), weight(&canary_host));
    check_weights(p, c, || {
        format!(
            "VirtualService {}.{} does not contain routes for {primary_host} and {canary_host}",
            canary.apex, canary.namespace
        )
    })?;
    Ok(Routes {
        primary: p,
        canary: c,
        mirrored,
    })
}

// === helpers ===

/// `service.match[]` in the VirtualService's terms (a superset of the CRD's fields).
fn service_match(m: &HttpMatchRequest) -> Result<MatchRequest, RoutingError> {
    convert(m)
}

/// `analysis.match[]` (headers, queryParams, sourceLabels) in the VirtualService's terms.
fn ab_match(m: &AbMatch) -> Result<MatchRequest, RoutingError> {
    convert(m)
}

fn convert<T: Serialize>(m: &T) -> Result<MatchRequest, RoutingError> {
    serde_json::to_value(m)
        .and_then(serde_json::from_value)
        .map_err(|e| RoutingError::Decode(format!("match condition: {e}")))
}

/// Flagger's `mergeMatchConditions`: without service matches the A/B matches as they are;
/// otherwise, for each A/B match and each service match, the service match with its `headers`
/// and `sourceLabels` replaced by the A/B match's (when set).
pub fn merge_matches(ab: &[MatchRequest], service: &[MatchRequest]) -> Vec<MatchRequest> {
    if service.is_empty() {
        return ab.to_vec();
    }
    let mut merged = Vec::with_capacity(ab.len() * service.len());
    for a in ab {
        for s in service {
            let mut m = s.clone();
            if a.headers.is_some() {
                m.headers = a.headers.clone();
            }
            if a.source_labels.is_some() {
                m.source_labels = a.source_labels.clone();
            }
            merged.push(m);
        }
    }
    merged
}

/// `headers` with `Set-Cookie: value` added to the response operations.
fn add_response_header(headers: Option<Headers>, value: String) -> Headers {
    let mut headers = headers.unwrap_or_default();
    let response = headers
        .response
        .get_or_insert_with(HeaderOperations::default);
    response
        .add
        .get_or_insert_with(BTreeMap::new)
        .insert("Set-Cookie".into(), value);
    headers
}

// === builtin checks ===

/// The Istio observer: Istio's standard request metrics as the destination reports them. It is
/// also Flagger's default observer, which `smi:*` canaries get.
pub static OBSERVER: Standard = Standard {
    requests: "istio_requests_total",
    success: r#"response_code!~"5.*""#,
    latency: "istio_request_duration_milliseconds_bucket",
    selector: |m| {
        format!(
            r#"reporter="destination",destination_workload_namespace="{}",destination_workload=~"{}""#,
            m.namespace, m.target
        )
    },
    seconds: false,
};

/// `istio`: the VirtualService and the two DestinationRules; A/B, mirroring, session affinity.
pub static PROVIDER: Descriptor =
    Descriptor::new(Provider::Istio, "istio", &OBSERVER, |n: &Names<'_>| {
        vec![
            generated::route("VirtualService", "istio.io", n.apex.to_string()),
            generated::route("DestinationRule", "istio.io", format!("{}-primary", n.apex)),
            generated::route("DestinationRule", "istio.io", format!("{}-canary", n.apex)),
        ]
    })
    .ab()
    .mirroring_and_affinity()
    .checks(|spec| {
        super::descriptor::service_findings(spec, |svc| {
            (svc.delegation == Some(true)
                && (!svc.hosts.as_deref().unwrap_or_default().is_empty()
                    || !svc.gateways.as_deref().unwrap_or_default().is_empty()))
            .then(|| {
                super::descriptor::Finding::error(
                    "spec.service.delegation",
                    "a delegate VirtualService cannot have hosts and gateways: remove \
                     service.hosts and service.gateways, or turn delegation off",
                )
            })
        })
    });

#[cfg(test)]
mod tests {
    use super::*;

    fn m(header: &str, exact: &str) -> MatchRequest {
        MatchRequest {
            headers: Some(BTreeMap::from([(
                header.to_string(),
                StringMatch {
                    exact: Some(exact.into()),
                    ..Default::default()
                },
            )])),
            ..Default::default()
        }
    }

    #[test]
    fn merge_is_the_ab_matches_alone_without_service_matches() {
        assert_eq!(merge_matches(&[m("x", "1")], &[]), vec![m("x", "1")]);
    }

    #[test]
    fn merge_is_a_cartesian_product_keeping_service_uri() {
        let svc = |p: &str| MatchRequest {
            uri: Some(StringMatch {
                prefix: Some(p.into()),
                ..Default::default()
            }),
            ..m("dropped", "y")
        };
        let merged = merge_matches(&[m("a", "1"), m("b", "2")], &[svc("/api"), svc("/v2")]);
        assert_eq!(merged.len(), 4);
        assert_eq!(merged[1].uri, svc("/v2").uri);
        assert_eq!(merged[1].headers, m("a", "1").headers);
        assert_eq!(merged[2].headers, m("b", "2").headers);
    }

    #[test]
    fn istio_observer_reads_the_destinations_request_metrics() {
        use crate::model::BuiltinMetric;
        use crate::routing::observer::Observer;
        use crate::routing::observer::tests::model;
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestSuccessRate, &model("30s")),
            r#"sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="test",destination_workload=~"podinfo",response_code!~"5.*"}[30s])) / sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="test",destination_workload=~"podinfo"}[30s])) * 100"#
        );
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestDuration, &model("30s")),
            r#"histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload_namespace="test",destination_workload=~"podinfo"}[30s])) by (le))"#
        );
        assert_eq!(OBSERVER.duration_ms(256.7), 256.0);
    }
}
