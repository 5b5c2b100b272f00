//! NGINX Ingress (`nginx`): the canary Ingress `<ingressRef.name>-canary` cloned from the
//! user's Ingress (reference §4.6), and reading the weights back from its annotations.

use super::observer::{Observer, success_rate};
use crate::gotemplate::Model;
use crate::model::BuiltinMetric;
use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use flagger_api::labels::{FLUX_RECONCILE_DISABLED, HELM_DRIFT_DISABLED, LAST_APPLIED};

use super::common::RoutingError;
use super::descriptor::Descriptor;
use crate::effects::Routes;
use crate::generated::{self, Generated, Names};
use crate::model::Provider;
use crate::model::{Strategy, ValidatedCanary};

/// Flagger's default `-ingress-annotations-prefix`.
pub const DEFAULT_PREFIX: &str = "nginx.ingress.kubernetes.io";

fn key(prefix: &str, name: &str) -> String {
    format!("{prefix}/{name}")
}

/// Whether the canary routes A/B by `analysis.match`.
fn ab_matches(canary: &ValidatedCanary) -> Option<&[flagger_api::AbMatch]> {
    match &canary.analysis.strategy {
        Strategy::AbTesting { matches, .. } if !matches.is_empty() => Some(matches),
        _ => None,
    }
}

/// The canary Ingress for these routes, cloned from the user's `ingress` (the one
/// `ingressRef` names). `prefix` is the controller's `-ingress-annotations-prefix`
/// ([`DEFAULT_PREFIX`]).
///
/// Spec: the source spec with every path backend to `<apex>` pointed at `<apex>-canary` (an
/// error when there is none). Metadata: the source labels; the source annotations minus every
/// key containing `<prefix>/canary` and the kubectl last-applied annotation, plus the toolkit
/// annotations and the canary annotations:
/// * canary weight 0: `canary: "true"`, `canary-weight: "0"` (as at creation);
/// * canary strategy: `canary-weight: <weight>`, `canary: "true"`;
/// * A/B: `canary-by-cookie` for a `cookie` header match (its `exact` value), otherwise
///   `canary-by-header` with `canary-by-header-value` (exact) or `canary-by-header-pattern`
///   (regex); the last match wins.
pub fn canary_ingress(
    canary: &ValidatedCanary,
    ingress: &Ingress,
    routes: Routes,
    prefix: &str,
) -> Result<Ingress, RoutingError> {
    let source = ingress.metadata.name.clone().unwrap_or_default();
    let mut spec = ingress.spec.clone().unwrap_or_default();
    let mut found = false;
    for rule in spec.rules.iter_mut().flatten() {
        for path in rule.http.iter_mut().flat_map(|h| h.paths.iter_mut()) {
            if let Some(svc) = path.backend.service.as_mut()
                && svc.name == canary.apex
            {
                svc.name = canary.canary_service();
                found = true;
            }
        }
    }
    if !found {
        return Err(RoutingError::Missing(format!(
            "backend {} not found in ingress {source}",
            canary.apex
        )));
    }

    let canary_marker = key(prefix, "canary");
    let mut annotations: BTreeMap<String, String> = ingress
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !k.contains(&canary_marker) && k.as_str() != LAST_APPLIED)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in [FLUX_RECONCILE_DISABLED, HELM_DRIFT_DISABLED] {
        annotations.insert(k.to_string(), v.to_string());
    }
    annotations.insert(canary_marker.clone(), "true".into());
    annotations.insert(key(prefix, "canary-weight"), "0".into());
    if routes.canary > 0 {
        if let Some(matches) = ab_matches(canary) {
            for m in matches {
                for (header, cond) in m.headers.iter().flatten() {
                    if header == "cookie" {
                        annotations.insert(
                            key(prefix, "canary-by-cookie"),
                            cond.exact.clone().unwrap_or_default(),
                        );
                    } else {
                        annotations.insert(key(prefix, "canary-by-header"), header.clone());
                        if let Some(exact) = cond.exact.as_deref().filter(|e| !e.is_empty()) {
                            annotations.insert(key(prefix, "canary-by-header-value"), exact.into());
                        } else if let Some(re) = cond.regex.as_deref().filter(|r| !r.is_empty()) {
                            annotations.insert(key(prefix, "canary-by-header-pattern"), re.into());
                        }
                    }
                }
            }
        } else {
            annotations.insert(key(prefix, "canary-weight"), routes.canary.to_string());
        }
    }

    Ok(Ingress {
        metadata: ObjectMeta {
            name: Some(format!("{source}-canary")),
            namespace: Some(canary.namespace.clone()),
            labels: ingress.metadata.labels.clone(),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    })
}

/// Reads the weights back from the canary Ingress: with A/B configured and a
/// `canary-by-cookie` or `canary-by-header` annotation present, 0/100; otherwise the
/// `canary-weight` annotation (default 0) and 100 minus it. NGINX has no mirroring.
pub fn read_routes(
    canary: &ValidatedCanary,
    canary_ingress: &Ingress,
    prefix: &str,
) -> Result<Routes, RoutingError> {
    let empty = BTreeMap::new();
    let annotations = canary_ingress
        .metadata
        .annotations
        .as_ref()
        .unwrap_or(&empty);
    if ab_matches(canary).is_some()
        && (annotations.contains_key(&key(prefix, "canary-by-cookie"))
            || annotations.contains_key(&key(prefix, "canary-by-header")))
    {
        return Ok(Routes::CANARY);
    }
    let weight = match annotations.get(&key(prefix, "canary-weight")) {
        None => 0,
        Some(w) => w.parse::<u32>().ok().filter(|w| *w <= 100).ok_or_else(|| {
            RoutingError::Decode(format!(
                "{} annotation \"{w}\" of ingress {} is not a weight",
                key(prefix, "canary-weight"),
                canary_ingress.metadata.name.as_deref().unwrap_or_default()
            ))
        })?,
    };
    Ok(Routes::weights(100 - weight, weight))
}

// === builtin checks ===

/// The NGINX observer: the ingress controller's request counter and its mean response time
/// (not a quantile), by the `ingress` label (`spec.ingressRef.name`).
pub struct NginxObserver;

/// The NGINX observer.
pub static OBSERVER: NginxObserver = NginxObserver;

impl Observer for NginxObserver {
    fn query(&self, metric: BuiltinMetric, m: &Model) -> String {
        let selector = format!(
            r#"namespace="{}",ingress="{}",canary!="""#,
            m.namespace, m.ingress
        );
        let i = &m.interval;
        match metric {
            BuiltinMetric::RequestSuccessRate => success_rate(
                "nginx_ingress_controller_requests",
                &selector,
                r#"status!~"5.*""#,
                i,
            ),
            // The mean, in milliseconds.
            BuiltinMetric::RequestDuration => format!(
                r#"sum(rate(nginx_ingress_controller_response_duration_seconds_sum{{{selector}}}[{i}])) / sum(rate(nginx_ingress_controller_response_duration_seconds_count{{{selector}}}[{i}])) * 1000"#
            ),
        }
    }
}

/// `nginx`: the canary Ingress cloned from `ingressRef`; A/B by headers and cookies.
pub static PROVIDER: Descriptor = Descriptor::new(
    Provider::Nginx,
    "nginx",
    &OBSERVER,
    generated_canary_ingress,
)
.ab()
.checks(|spec| needs_ingress_ref(spec, "nginx"));

/// The providers that clone the user's Ingress (nginx, skipper) need `ingressRef`.
pub fn needs_ingress_ref(
    spec: &flagger_api::canary::CanarySpec,
    provider: &str,
) -> Vec<super::descriptor::Finding> {
    if spec.ingress_ref.is_some() {
        return Vec::new();
    }
    vec![super::descriptor::Finding::error(
        "spec.ingressRef",
        format!(
            "missing: the {provider} provider clones an existing Ingress into a canary \
             Ingress; set ingressRef (apiVersion networking.k8s.io/v1, kind Ingress, \
             name of the Ingress that routes to the apex Service)"
        ),
    )]
}

/// The `<ingressRef>-canary` Ingress (nginx, skipper).
pub fn generated_canary_ingress(n: &Names<'_>) -> Vec<Generated> {
    n.ingress_ref
        .map(|i| generated::route("Ingress", "", format!("{i}-canary")))
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_observer_reads_the_ingress_controllers_metrics_by_ingress() {
        use crate::routing::observer::tests::model;
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestSuccessRate, &model("30s")),
            r#"sum(rate(nginx_ingress_controller_requests{namespace="test",ingress="web",canary!="",status!~"5.*"}[30s])) / sum(rate(nginx_ingress_controller_requests{namespace="test",ingress="web",canary!=""}[30s])) * 100"#
        );
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestDuration, &model("30s")),
            r#"sum(rate(nginx_ingress_controller_response_duration_seconds_sum{namespace="test",ingress="web",canary!=""}[30s])) / sum(rate(nginx_ingress_controller_response_duration_seconds_count{namespace="test",ingress="web",canary!=""}[30s])) * 1000"#
        );
        assert_eq!(OBSERVER.duration_ms(256.7), 256.0);
    }
}
