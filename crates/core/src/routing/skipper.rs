//! Skipper (`skipper`): the canary Ingress `<ingressRef.name>-canary` cloned from the user's
//! Ingress (reference §4.9), and reading the weights back from its annotations.
//!
//! Every path of the user's Ingress whose backend is the apex Service is pointed at
//! `<apex>-primary`, and a copy of it pointed at `<apex>-canary` is appended to the same
//! rule: Skipper splits the traffic of one path between its backends by the
//! `zalando.org/backend-weights` annotation. The `zalando.org/skipper-predicate` annotation
//! gets `Weight(100)` first, so that the canary Ingress's routes outrank the user's Ingress's
//! for the same path; at canary weight 0, `False()` instead, which disables them and leaves
//! the traffic to the user's Ingress. The user's own predicates follow, joined with ` && `.
//!
//! Metadata: the source labels; the source annotations (the kubectl last-applied annotation
//! excepted) with the toolkit annotations and the two above. Flagger writes the toolkit
//! annotations only when it updates the canary Ingress, not when it creates it; here they are
//! always there. Flagger builds the canary Ingress even when no path names the apex Service
//! (its check compares two fresh pointers); that is an error here, as for `nginx`. Skipper has
//! no A/B routing in Flagger: an A/B test sends all the traffic to the canary.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use flagger_api::labels::{FLUX_RECONCILE_DISABLED, HELM_DRIFT_DISABLED, LAST_APPLIED};

use super::common::{RoutingError, check_weights};
use super::descriptor::Descriptor;
use super::observer::Observer;
use crate::effects::Routes;
use crate::gotemplate::Model;
use crate::model::Provider;
use crate::model::{BuiltinMetric, ValidatedCanary};

/// The annotation holding the backend weights.
pub const BACKEND_WEIGHTS: &str = "zalando.org/backend-weights";
/// The annotation holding the route predicates.
pub const PREDICATE: &str = "zalando.org/skipper-predicate";
/// What makes the canary Ingress's routes win.
pub const WEIGHT_PREDICATE: &str = "Weight(100)";
/// What disables the canary Ingress's routes.
pub const DISABLE_PREDICATE: &str = "False()";

/// `first` followed by the predicates of `existing` (split on `&&`), without blanks and
/// without the two predicates this router manages.
fn insert_predicate(existing: &str, first: &str) -> String {
    let mut out = vec![first.to_string()];
    out.extend(
        existing
            .split("&&")
            .map(str::trim)
            .filter(|p| !p.is_empty() && *p != WEIGHT_PREDICATE && *p != DISABLE_PREDICATE)
            .map(str::to_string),
    );
    out.join(" && ")
}

/// The canary Ingress for these routes, cloned from the user's `ingress` (the one
/// `ingressRef` names).
pub fn canary_ingress(
    canary: &ValidatedCanary,
    ingress: &Ingress,
    routes: Routes,
) -> Result<Ingress, RoutingError> {
    let source = ingress.metadata.name.clone().unwrap_or_default();
    let mut spec = ingress.spec.clone().unwrap_or_default();
    let mut found = false;
    for rule in spec.rules.iter_mut().flatten() {
        let Some(http) = rule.http.as_mut() else {
            continue;
        };
        let mut copies = Vec::new();
        for path in &mut http.paths {
            if let Some(svc) = path.backend.service.as_mut()
                && svc.name == canary.apex
            {
                svc.name = canary.primary_service();
                let mut copy = path.clone();
                if let Some(c) = copy.backend.service.as_mut() {
                    c.name = canary.canary_service();
                }
                copies.push(copy);
                found = true;
            }
        }
        http.paths.extend(copies);
    }
    if !found {
        return Err(RoutingError::Missing(format!(
            "backend {} not found in ingress {source}",
            canary.apex
        )));
    }

    let mut annotations: BTreeMap<String, String> = ingress
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != LAST_APPLIED)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in [FLUX_RECONCILE_DISABLED, HELM_DRIFT_DISABLED] {
        annotations.insert(k.to_string(), v.to_string());
    }
    // Sorted by Service name, as Go writes a map.
    let weights = BTreeMap::from([
        (canary.primary_service(), routes.primary),
        (canary.canary_service(), routes.canary),
    ]);
    annotations.insert(
        BACKEND_WEIGHTS.into(),
        serde_json::to_string(&weights).unwrap_or_default(),
    );
    let user = annotations.get(PREDICATE).cloned().unwrap_or_default();
    let first = if routes.canary == 0 {
        DISABLE_PREDICATE
    } else {
        WEIGHT_PREDICATE
    };
    annotations.insert(PREDICATE.into(), insert_predicate(&user, first));

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

/// Reads the weights from the canary Ingress's `zalando.org/backend-weights` annotation;
/// both Services must be there, and not both at 0. Skipper has no mirroring.
pub fn read_routes(
    canary: &ValidatedCanary,
    canary_ingress: &Ingress,
) -> Result<Routes, RoutingError> {
    let name = canary_ingress.metadata.name.as_deref().unwrap_or_default();
    let what = || format!("ingress {name}.{}", canary.namespace);
    let raw = canary_ingress
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(BACKEND_WEIGHTS))
        .ok_or_else(|| {
            RoutingError::NoRoutes(format!("{} has no {BACKEND_WEIGHTS} annotation", what()))
        })?;
    let weights: BTreeMap<String, u32> = serde_json::from_str(raw).map_err(|e| {
        RoutingError::Decode(format!("{} {BACKEND_WEIGHTS} annotation: {e}", what()))
    })?;
    let get = |svc: String| {
        weights
            .get(&svc)
            .copied()
            .ok_or_else(|| RoutingError::NoRoutes(format!("{} has no weight for {svc}", what())))
    };
    let primary = get(canary.primary_service())?;
    let canary_w = get(canary.canary_service())?;
    check_weights(primary, canary_w, || {
        format!(
            "{} weighs both {} and {} at 0",
            what(),
            canary.primary_service(),
            canary.canary_service()
        )
    })?;
    Ok(Routes::weights(primary, canary_w))
}

// === builtin checks ===

/// A name as it appears in a Skipper route ID: every character that is not an ASCII letter,
/// digit or `_` becomes `_` (Go's `\W`).
pub fn route_id_part(s: &str) -> String {
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

/// The routes of the canary Ingress's canary backend:
/// `kube(ew)?_<ns>__<ingress>_canary__<host>__<path>__<service>_canary`.
fn canary_route(m: &Model) -> String {
    format!(
        "kube(ew)?_{}__{}_canary__.*__{}_canary(_[0-9]+)?",
        route_id_part(&m.namespace),
        route_id_part(&m.ingress),
        route_id_part(&m.service)
    )
}

/// The Skipper observer: the success rate from Skipper's response histogram (its `+Inf`
/// bucket counts the responses), the duration as the mean time serving the route, in
/// milliseconds.
pub struct SkipperObserver;

/// The Skipper observer.
pub static OBSERVER: SkipperObserver = SkipperObserver;

impl Observer for SkipperObserver {
    fn query(&self, metric: BuiltinMetric, m: &Model) -> String {
        let route = canary_route(m);
        let i = &m.interval;
        match metric {
            BuiltinMetric::RequestSuccessRate => format!(
                r#"sum(rate(skipper_response_duration_seconds_bucket{{route=~"{route}",code!~"5..",le="+Inf"}}[{i}])) / sum(rate(skipper_response_duration_seconds_bucket{{route=~"{route}",le="+Inf"}}[{i}])) * 100"#
            ),
            BuiltinMetric::RequestDuration => format!(
                r#"sum(rate(skipper_serve_route_duration_seconds_sum{{route=~"{route}"}}[{i}])) / sum(rate(skipper_serve_route_duration_seconds_count{{route=~"{route}"}}[{i}])) * 1000"#
            ),
        }
    }
}

/// `skipper`: the canary Ingress cloned from `ingressRef`.
pub static PROVIDER: Descriptor = Descriptor::new(
    Provider::Skipper,
    "skipper",
    &OBSERVER,
    super::nginx::generated_canary_ingress,
)
.checks(|spec| super::nginx::needs_ingress_ref(spec, "skipper"));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::observer::tests::model;

    #[test]
    fn predicates_keep_the_users_and_put_ours_first() {
        assert_eq!(insert_predicate("", WEIGHT_PREDICATE), "Weight(100)");
        assert_eq!(
            insert_predicate("Weight(100) && Header(\"x\", \"y\")", DISABLE_PREDICATE),
            "False() && Header(\"x\", \"y\")"
        );
        assert_eq!(
            insert_predicate(" False() &&  Method(\"GET\") && ", WEIGHT_PREDICATE),
            "Weight(100) && Method(\"GET\")"
        );
    }

    #[test]
    fn skipper_observer_matches_the_canary_routes() {
        let mut m = model("1m");
        m.namespace = "my-ns".into();
        m.ingress = "web.ing".into();
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestSuccessRate, &m),
            r#"sum(rate(skipper_response_duration_seconds_bucket{route=~"kube(ew)?_my_ns__web_ing_canary__.*__podinfo_canary(_[0-9]+)?",code!~"5..",le="+Inf"}[1m])) / sum(rate(skipper_response_duration_seconds_bucket{route=~"kube(ew)?_my_ns__web_ing_canary__.*__podinfo_canary(_[0-9]+)?",le="+Inf"}[1m])) * 100"#
        );
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestDuration, &m),
            r#"sum(rate(skipper_serve_route_duration_seconds_sum{route=~"kube(ew)?_my_ns__web_ing_canary__.*__podinfo_canary(_[0-9]+)?"}[1m])) / sum(rate(skipper_serve_route_duration_seconds_count{route=~"kube(ew)?_my_ns__web_ing_canary__.*__podinfo_canary(_[0-9]+)?"}[1m])) * 1000"#
        );
        assert_eq!(route_id_part("app.example.com/x-y"), "app_example_com_x_y");
    }
}
