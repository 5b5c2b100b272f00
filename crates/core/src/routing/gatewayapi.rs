//! Gateway API (`gatewayapi:v1`, `gatewayapi:v1beta1`): the HTTPRoute `<apex>`
//! (reference §4.13), and reading the weights back.
//!
//! Typed structs with the fields Flagger writes, rather than the `gateway-api` crate: its
//! current release (0.22) is built on k8s-openapi 0.28 and kube 4, while this workspace is on
//! k8s-openapi 0.29 and kube 5, so it would bring a second copy of both; and it has no
//! v1beta1 HTTPRoute, which `gatewayapi:v1beta1` writes.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use flagger_api::gateway::{GatewayParentRef, MirrorBackendRef};
use flagger_api::istio::{HeaderOperations, HttpMatchRequest, StringMatch};
use flagger_api::{AbMatch, HeaderMatch};

use super::common::{RoutingError, apex_metadata, check_weights};
use super::cookies::{StickyCookies, cookie_regex, expire_cookie, set_cookie};
use super::descriptor::{Descriptor, Finding};
use crate::duration::parse_go_duration;
use crate::effects::Routes;
use crate::generated::{self, Generated, Names};
use crate::model::{Provider, Strategy, ValidatedCanary};

/// The HTTPRoute API version a provider writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V1Beta1,
}

impl Version {
    /// The version of a Gateway API provider.
    pub fn of(provider: Provider) -> Option<Version> {
        match provider {
            Provider::GatewayApiV1 => Some(Version::V1),
            Provider::GatewayApiV1Beta1 => Some(Version::V1Beta1),
            _ => None,
        }
    }

    /// `gateway.networking.k8s.io/<version>`.
    pub fn api_version(self) -> &'static str {
        match self {
            Version::V1 => "gateway.networking.k8s.io/v1",
            Version::V1Beta1 => "gateway.networking.k8s.io/v1beta1",
        }
    }
}

// === types ===

/// HTTPRoute.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: HttpRouteSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<HttpRouteStatus>,
}

/// HTTPRoute spec.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<GatewayParentRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub rules: Vec<HttpRouteRule>,
}

/// A rule: matches, filters, weighted backends.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpRouteMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpRouteFilter>,
    #[serde(default)]
    pub backend_refs: Vec<HttpBackendRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<HttpRouteTimeouts>,
}

/// A request match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpPathMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpValueMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<HttpValueMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// A path match: `Exact`, `PathPrefix` or `RegularExpression`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpPathMatch {
    pub r#type: String,
    pub value: String,
}

/// A header or query parameter match: `Exact` or `RegularExpression`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpValueMatch {
    pub r#type: String,
    pub name: String,
    pub value: String,
}

/// A filter; `type` names the one field set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteFilter {
    pub r#type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<UrlRewrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<RequestMirror>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
}

/// Header additions, replacements and removals.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderModifier {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HttpHeader>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HttpHeader>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A header name and value.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

/// URL rewrite.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct UrlRewrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
}

/// Path rewrite: `ReplaceFullPath` or `ReplacePrefixMatch`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PathModifier {
    pub r#type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_full_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
}

/// Request mirroring.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RequestMirror {
    pub backend_ref: MirrorBackendRef,
}

/// CORS (v1).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Cors {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
}

/// A weighted backend.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpBackendRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpRouteFilter>,
}

/// Rule timeouts (v1).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteTimeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request: Option<String>,
}

/// HTTPRoute status: what the parents say.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteStatus {
    #[serde(default)]
    pub parents: Vec<RouteParentStatus>,
}

/// Status of the route under one parent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    pub parent_ref: GatewayParentRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_name: Option<String>,
    #[serde(default)]
    pub conditions: Vec<RouteCondition>,
}

/// A status condition (the fields read).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RouteCondition {
    pub r#type: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

// === builders ===

/// The HTTPRoute `<apex>` with these routes. `cookies` are the session-affinity cookies after
/// [`super::cookies::next_sticky_cookies`]; they are ignored without `analysis.sessionAffinity`.
pub fn http_route(
    canary: &ValidatedCanary,
    version: Version,
    routes: Routes,
    cookies: &StickyCookies,
) -> Result<HttpRoute, RoutingError> {
    let svc = &canary.service;
    let parent_refs = svc.gateway_refs.clone().unwrap_or_default();
    if parent_refs.is_empty() {
        return Err(RoutingError::Missing(
            "GatewayRefs must be specified when using Gateway API as a provider.".into(),
        ));
    }
    let mut service_matches = svc
        .r#match
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(service_match)
        .collect::<Result<Vec<_>, _>>()?;
    if service_matches.is_empty() {
        service_matches.push(HttpRouteMatch {
            path: Some(HttpPathMatch {
                r#type: "PathPrefix".into(),
                value: "/".into(),
            }),
            ..Default::default()
        });
    }
    let filters = service_filters(canary, version);
    let timeouts = match version {
        Version::V1 if svc.timeout.is_some() || svc.backend_timeout.is_some() => {
            Some(HttpRouteTimeouts {
                request: svc.timeout.clone(),
                backend_request: svc.backend_timeout.clone(),
            })
        }
        _ => None,
    };
    let backend = |name: String, weight: u32| HttpBackendRef {
        group: Some(String::new()),
        kind: Some("Service".into()),
        name,
        namespace: None,
        port: Some(svc.port),
        weight: Some(weight),
        filters: Vec::new(),
    };
    let base = HttpRouteRule {
        matches: service_matches.clone(),
        filters,
        backend_refs: Vec::new(),
        timeouts,
    };
    let mut weighted = HttpRouteRule {
        backend_refs: vec![
            backend(canary.primary_service(), routes.primary),
            backend(canary.canary_service(), routes.canary),
        ],
        ..base.clone()
    };
    if routes.mirrored && canary.analysis.strategy.iterations() > 0 {
        weighted.filters.push(HttpRouteFilter {
            r#type: "RequestMirror".into(),
            request_mirror: Some(RequestMirror {
                backend_ref: MirrorBackendRef {
                    group: Some(String::new()),
                    kind: Some("Service".into()),
                    name: canary.canary_service(),
                    namespace: None,
                    port: Some(svc.port),
                },
            }),
            ..Default::default()
        });
    }

    let ab = match &canary.analysis.strategy {
        Strategy::AbTesting { matches, .. } if !matches.is_empty() => Some(matches),
        _ => None,
    };
    let rules = if let Some(ab) = ab {
        let ab = ab.iter().map(ab_match).collect::<Result<Vec<_>, _>>()?;
        vec![
            HttpRouteRule {
                matches: merge_matches(&ab, &service_matches),
                ..weighted
            },
            HttpRouteRule {
                backend_refs: vec![backend(canary.primary_service(), 100)],
                ..base
            },
        ]
    } else if let Some(affinity) = &canary.analysis.session_affinity {
        let cookie_match = |cookie: &str| {
            let m = HttpRouteMatch {
                headers: vec![HttpValueMatch {
                    r#type: "RegularExpression".into(),
                    name: "Cookie".into(),
                    value: cookie_regex(cookie),
                }],
                ..Default::default()
            };
            merge_matches(&[m], &service_matches)
        };
        if routes.canary > 0 {
            let cookie = cookies.canary.as_deref().ok_or_else(|| {
                RoutingError::Missing(
                    "session affinity needs the canary cookie for a canary weight above 0".into(),
                )
            })?;
            let mut rules = vec![HttpRouteRule {
                matches: cookie_match(cookie),
                backend_refs: vec![
                    backend(canary.primary_service(), 0),
                    backend(canary.canary_service(), 100),
                ],
                ..base.clone()
            }];
            weighted.backend_refs[1].filters = vec![add_response_header(set_cookie(
                affinity,
                cookie,
                affinity.max_age,
            ))];
            if version == Version::V1
                && affinity.primary_cookie_name.is_some()
                && let Some(primary) = cookies.primary.as_deref()
            {
                rules.push(HttpRouteRule {
                    matches: cookie_match(primary),
                    backend_refs: vec![
                        backend(canary.primary_service(), 100),
                        backend(canary.canary_service(), 0),
                    ],
                    ..base.clone()
                });
                let max_age = i64::try_from(canary.analysis.interval.as_secs()).unwrap_or(i64::MAX);
                weighted.backend_refs[0].filters =
                    vec![add_response_header(set_cookie(affinity, primary, max_age))];
            }
            rules.push(weighted);
            rules
        } else {
            let mut expire = weighted.clone();
            if let Some(previous) = cookies.previous.as_deref() {
                expire.matches = cookie_match(previous);
                let header = HttpHeader {
                    name: "Set-Cookie".into(),
                    value: expire_cookie(previous),
                };
                match expire
                    .filters
                    .iter_mut()
                    .find_map(|f| f.response_header_modifier.as_mut())
                {
                    Some(modifier) => modifier.add.push(header),
                    None => expire.filters.push(HttpRouteFilter {
                        r#type: "ResponseHeaderModifier".into(),
                        response_header_modifier: Some(HeaderModifier {
                            add: vec![header],
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                }
            }
            vec![expire, weighted]
        }
    } else {
        vec![weighted]
    };

    let (labels, annotations) = apex_metadata(canary);
    Ok(HttpRoute {
        api_version: version.api_version().into(),
        kind: "HTTPRoute".into(),
        metadata: ObjectMeta {
            name: Some(canary.apex.clone()),
            namespace: Some(canary.namespace.clone()),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: HttpRouteSpec {
            parent_refs,
            hostnames: svc.hosts.clone().unwrap_or_default(),
            rules,
        },
        status: None,
    })
}

/// Reads the weights back (the router's `GetRoutes`).
///
/// v1 first checks the parents: for each parentRef with an entry in `status.parents`, an
/// `Accepted` condition that is not `True` or observed an older generation is an error.
/// Weights come from the rules with exactly two backendRefs (the last one; with session
/// affinity the one whose backendRefs carry filters); `mirrored` is any rule mirroring to
/// `<apex>-canary`.
pub fn read_routes(
    canary: &ValidatedCanary,
    version: Version,
    route: &HttpRoute,
) -> Result<Routes, RoutingError> {
    if version == Version::V1 {
        check_parents(canary, route)?;
    }
    let (primary_name, canary_name) = (canary.primary_service(), canary.canary_service());
    let candidates: Vec<&HttpRouteRule> = route
        .spec
        .rules
        .iter()
        .filter(|r| r.backend_refs.len() == 2)
        .collect();
    let sticky = canary.analysis.session_affinity.as_ref().and_then(|_| {
        candidates
            .iter()
            .rev()
            .find(|r| r.backend_refs.iter().any(|b| !b.filters.is_empty()))
    });
    let rule = sticky.or(candidates.last());
    let weight = |name: &str| {
        rule.iter()
            .flat_map(|r| r.backend_refs.iter())
            .filter(|b| b.name == name)
            .map(|b| b.weight.unwrap_or(1))
            .next_back()
            .unwrap_or(0)
    };
    let (p, c) = (weight(&primary_name), weight(&canary_name));
    check_weights(p, c, || {
        format!(
            "HTTPRoute {}.{} does not contain routes for {primary_name} and {canary_name}",
            canary.apex, canary.namespace
        )
    })?;
    let mirrored = route.spec.rules.iter().any(|r| {
        r.filters.iter().any(|f| {
            f.request_mirror
                .as_ref()
                .is_some_and(|m| m.backend_ref.name == canary_name)
        })
    });
    Ok(Routes {
        primary: p,
        canary: c,
        mirrored,
    })
}

fn check_parents(canary: &ValidatedCanary, route: &HttpRoute) -> Result<(), RoutingError> {
    let Some(status) = &route.status else {
        return Ok(());
    };
    let generation = route.metadata.generation.unwrap_or(0);
    let ns = |r: &GatewayParentRef| {
        r.namespace
            .clone()
            .unwrap_or_else(|| canary.namespace.clone())
    };
    for parent in &route.spec.parent_refs {
        let entries = status.parents.iter().filter(|s| {
            s.parent_ref.name == parent.name
                && ns(&s.parent_ref) == ns(parent)
                && s.parent_ref.section_name == parent.section_name
        });
        for entry in entries {
            for c in entry.conditions.iter().filter(|c| c.r#type == "Accepted") {
                let observed = c.observed_generation.unwrap_or(0);
                if c.status != "True" || observed < generation {
                    return Err(RoutingError::NotReady(format!(
                        "HTTPRoute {}.{} parent {} is not ready (status: {}, observed generation: {observed}, current generation: {generation})",
                        canary.apex, canary.namespace, parent.name, c.status
                    )));
                }
            }
        }
    }
    Ok(())
}

// === helpers ===

fn string_match(kind: &str, name: &str, m: &StringMatch) -> Result<HttpValueMatch, RoutingError> {
    let (r#type, value) = if let Some(v) = &m.exact {
        ("Exact", v)
    } else if let Some(v) = &m.regex {
        ("RegularExpression", v)
    } else {
        return Err(RoutingError::Unsupported(format!(
            "{kind} match {name}: Gateway API supports only exact and regex matches"
        )));
    };
    Ok(HttpValueMatch {
        r#type: r#type.into(),
        name: name.into(),
        value: value.clone(),
    })
}

fn header_match(name: &str, m: &HeaderMatch) -> Result<HttpValueMatch, RoutingError> {
    if m.prefix.is_some() || m.suffix.is_some() {
        return Err(RoutingError::Unsupported(format!(
            "header match {name}: Gateway API supports only exact and regex matches"
        )));
    }
    string_match(
        "header",
        name,
        &StringMatch {
            exact: m.exact.clone(),
            prefix: None,
            regex: m.regex.clone(),
        },
    )
}

fn value_matches(
    kind: &str,
    map: Option<&BTreeMap<String, StringMatch>>,
) -> Result<Vec<HttpValueMatch>, RoutingError> {
    map.into_iter()
        .flatten()
        .map(|(name, m)| string_match(kind, name, m))
        .collect()
}

/// `service.match[]` converted: uri (regex, exact, prefix), method (exact), headers and query
/// parameters (exact, regex). Anything else those fields carry is an error.
fn service_match(m: &HttpMatchRequest) -> Result<HttpRouteMatch, RoutingError> {
    let path = match &m.uri {
        None => None,
        Some(uri) => Some(if let Some(v) = &uri.regex {
            HttpPathMatch {
                r#type: "RegularExpression".into(),
                value: v.clone(),
            }
        } else if let Some(v) = &uri.exact {
            HttpPathMatch {
                r#type: "Exact".into(),
                value: v.clone(),
            }
        } else if let Some(v) = &uri.prefix {
            HttpPathMatch {
                r#type: "PathPrefix".into(),
                value: v.clone(),
            }
        } else {
            return Err(RoutingError::Unsupported("empty uri match".into()));
        }),
    };
    let method = match &m.method {
        None => None,
        Some(StringMatch {
            exact: Some(method),
            prefix: None,
            regex: None,
        }) => Some(method.clone()),
        Some(_) => {
            return Err(RoutingError::Unsupported(
                "method match: Gateway API supports only exact methods".into(),
            ));
        }
    };
    Ok(HttpRouteMatch {
        path,
        headers: value_matches("header", m.headers.as_ref())?,
        query_params: value_matches("query parameter", m.query_params.as_ref())?,
        method,
    })
}

/// `analysis.match[]` converted: headers and query parameters (exact, regex).
fn ab_match(m: &AbMatch) -> Result<HttpRouteMatch, RoutingError> {
    Ok(HttpRouteMatch {
        headers: m
            .headers
            .iter()
            .flatten()
            .map(|(name, h)| header_match(name, h))
            .collect::<Result<_, _>>()?,
        query_params: value_matches("query parameter", m.query_params.as_ref())?,
        ..Default::default()
    })
}

/// For each A/B match and each service match, the service match with its headers and query
/// parameters replaced by the A/B match's (when it has any).
fn merge_matches(ab: &[HttpRouteMatch], service: &[HttpRouteMatch]) -> Vec<HttpRouteMatch> {
    if service.is_empty() {
        return ab.to_vec();
    }
    let mut merged = Vec::with_capacity(ab.len() * service.len());
    for a in ab {
        for s in service {
            let mut m = s.clone();
            if !a.headers.is_empty() {
                m.headers = a.headers.clone();
            }
            if !a.query_params.is_empty() {
                m.query_params = a.query_params.clone();
            }
            merged.push(m);
        }
    }
    merged
}

fn header_modifier(ops: &HeaderOperations) -> HeaderModifier {
    let sorted = |map: &Option<BTreeMap<String, String>>| {
        let mut headers: Vec<HttpHeader> = map
            .iter()
            .flatten()
            .map(|(name, value)| HttpHeader {
                name: name.clone(),
                value: value.clone(),
            })
            .collect();
        headers.sort();
        headers
    };
    HeaderModifier {
        set: sorted(&ops.set),
        add: sorted(&ops.add),
        remove: ops.remove.clone().unwrap_or_default(),
    }
}

/// The rule filters from `service`: request and response header modifiers, URL rewrite, one
/// RequestMirror per `service.mirror[]`, and (v1) CORS.
fn service_filters(canary: &ValidatedCanary, version: Version) -> Vec<HttpRouteFilter> {
    let svc = &canary.service;
    let mut filters = Vec::new();
    if let Some(headers) = &svc.headers {
        if let Some(request) = &headers.request {
            filters.push(HttpRouteFilter {
                r#type: "RequestHeaderModifier".into(),
                request_header_modifier: Some(header_modifier(request)),
                ..Default::default()
            });
        }
        if let Some(response) = &headers.response {
            filters.push(HttpRouteFilter {
                r#type: "ResponseHeaderModifier".into(),
                response_header_modifier: Some(header_modifier(response)),
                ..Default::default()
            });
        }
    }
    if let Some(rewrite) = &svc.rewrite {
        let path = rewrite.uri.as_ref().map(|uri| {
            if rewrite.r#type.as_deref() == Some("ReplacePrefixMatch") {
                PathModifier {
                    r#type: "ReplacePrefixMatch".into(),
                    replace_prefix_match: Some(uri.clone()),
                    ..Default::default()
                }
            } else {
                PathModifier {
                    r#type: "ReplaceFullPath".into(),
                    replace_full_path: Some(uri.clone()),
                    ..Default::default()
                }
            }
        });
        filters.push(HttpRouteFilter {
            r#type: "URLRewrite".into(),
            url_rewrite: Some(UrlRewrite {
                hostname: rewrite.authority.clone(),
                path,
            }),
            ..Default::default()
        });
    }
    for mirror in svc.mirror.iter().flatten() {
        filters.push(HttpRouteFilter {
            r#type: "RequestMirror".into(),
            request_mirror: Some(RequestMirror {
                backend_ref: mirror.backend_ref.clone(),
            }),
            ..Default::default()
        });
    }
    if version == Version::V1
        && let Some(cors) = &svc.cors_policy
    {
        filters.push(HttpRouteFilter {
            r#type: "CORS".into(),
            cors: Some(Cors {
                allow_origins: cors.allow_origin.clone().unwrap_or_default(),
                allow_methods: cors.allow_methods.clone().unwrap_or_default(),
                allow_headers: cors.allow_headers.clone().unwrap_or_default(),
                expose_headers: cors.expose_headers.clone().unwrap_or_default(),
                allow_credentials: cors.allow_credentials,
                // Flagger logs an unparsable maxAge and leaves it out.
                max_age: cors
                    .max_age
                    .as_deref()
                    .and_then(|d| parse_go_duration(d).ok())
                    .and_then(|d| i64::try_from(d.as_secs()).ok()),
            }),
            ..Default::default()
        });
    }
    filters
}

/// A backend filter adding `Set-Cookie: value` to responses.
fn add_response_header(value: String) -> HttpRouteFilter {
    HttpRouteFilter {
        r#type: "ResponseHeaderModifier".into(),
        response_header_modifier: Some(HeaderModifier {
            add: vec![HttpHeader {
                name: "Set-Cookie".into(),
                value,
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn generated_http_route(n: &Names<'_>) -> Vec<Generated> {
    vec![generated::route(
        "HTTPRoute",
        "gateway.networking.k8s.io",
        n.apex.to_string(),
    )]
}

/// A version of the HTTPRoute: A/B, mirroring, session affinity; the `-mesh-provider` flag
/// takes it with a suffix (`gatewayapi:v1:istio`). Flagger's observer for `gatewayapi:*` is the
/// HTTP one of `kubernetes`.
const fn version_of_http_route(provider: Provider, name: &'static str) -> Descriptor {
    Descriptor::new(
        provider,
        name,
        &super::kubernetes::HTTP,
        generated_http_route,
    )
    .ab()
    .mirroring_and_affinity()
    .flag_prefix()
    .checks(needs_gateway_refs)
}

/// The HTTPRoute attaches to the Gateways of `gatewayRefs`.
fn needs_gateway_refs(spec: &flagger_api::canary::CanarySpec) -> Vec<Finding> {
    super::descriptor::service_findings(spec, |svc| {
        svc.gateway_refs
            .as_deref()
            .unwrap_or_default()
            .is_empty()
            .then(|| {
                Finding::error(
                    "spec.service.gatewayRefs",
                    "GatewayRefs must be specified when using Gateway API as a provider: add \
                     the Gateway the HTTPRoute attaches to, e.g. gatewayRefs: [{name: \
                     public-gateway, namespace: istio-ingress}]",
                )
            })
    })
}

/// `gatewayapi:v1`.
pub static V1_PROVIDER: Descriptor = version_of_http_route(Provider::GatewayApiV1, "gatewayapi:v1");
/// `gatewayapi:v1beta1`: sets only the canary cookie of session affinity.
pub static V1BETA1_PROVIDER: Descriptor =
    version_of_http_route(Provider::GatewayApiV1Beta1, "gatewayapi:v1beta1").checks(|spec| {
        let mut findings = needs_gateway_refs(spec);
        let primary_cookie = spec
            .analysis
            .as_ref()
            .and_then(|a| a.session_affinity.as_ref())
            .and_then(|s| s.primary_cookie_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        if primary_cookie {
            findings.push(Finding::warning(
                "spec.analysis.sessionAffinity.primaryCookieName",
                "gatewayapi:v1beta1 sets only the canary cookie; the primary cookie is ignored",
            ));
        }
        findings
    });
