//! Traefik (`traefik`): the TraefikService `<apex>` (reference §4.10), a weighted round robin
//! over `<apex>-primary` and `<apex>-canary` on `service.port`, which the user's IngressRoute
//! names as its service; and reading the weights back.
//!
//! The canary is listed only while its weight is above 0, as Flagger writes it. Flagger omits
//! a zero weight, which Traefik reads as weight 1 (the primary would keep about 1% of the
//! traffic when the canary has it all); the primary's weight is always written here, 0
//! included, so that 0/100 means what it says.
//!
//! Traefik moved its CRDs from `traefik.containo.us` to `traefik.io` (v2.10); Flagger writes
//! `traefik.io/v1alpha1`. The builder takes the API version the controller found served
//! ([`API_VERSION`], else [`LEGACY_API_VERSION`]).

use serde_json::{Value, json};

use super::common::{RoutingError, apex_metadata};
use super::contour::weights_from_primary;
use super::descriptor::Descriptor;
use super::observer::Observer;
use crate::effects::Routes;
use crate::generated::{self, Names};
use crate::gotemplate::Model;
use crate::model::Provider;
use crate::model::{BuiltinMetric, ValidatedCanary};

/// The API version Flagger writes.
pub const API_VERSION: &str = "traefik.io/v1alpha1";
/// The API version of Traefik before v2.10.
pub const LEGACY_API_VERSION: &str = "traefik.containo.us/v1alpha1";

fn service(canary: &ValidatedCanary, name: String, weight: u32) -> Value {
    json!({
        "name": name,
        "namespace": canary.namespace,
        "port": canary.service.port,
        "weight": weight,
    })
}

/// The TraefikService `<apex>` for these routes, of `api_version`.
pub fn traefik_service(canary: &ValidatedCanary, routes: Routes, api_version: &str) -> Value {
    let mut services = vec![service(canary, canary.primary_service(), routes.primary)];
    if routes.canary > 0 {
        services.push(service(canary, canary.canary_service(), routes.canary));
    }
    let (labels, annotations) = apex_metadata(canary);
    json!({
        "apiVersion": api_version,
        "kind": "TraefikService",
        "metadata": {
            "name": canary.apex,
            "namespace": canary.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {"weighted": {"services": services}},
    })
}

/// Reads the weights: the primary's weight, the canary getting the rest (as Flagger reads
/// them). Traefik routing here has no mirroring.
pub fn read_routes(canary: &ValidatedCanary, ts: &Value) -> Result<Routes, RoutingError> {
    let what = || format!("TraefikService {}.{}", canary.apex, canary.namespace);
    let services = ts
        .pointer("/spec/weighted/services")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| RoutingError::NoRoutes(format!("{} services not found", what())))?;
    let primary = services
        .iter()
        .find(|s| s["name"] == canary.primary_service().as_str())
        .ok_or_else(|| {
            RoutingError::NoRoutes(format!(
                "{} does not route to {}",
                what(),
                canary.primary_service()
            ))
        })?;
    weights_from_primary(&primary["weight"], what)
}

// === builtin checks ===

/// The Traefik observer: Traefik's service histogram of the canary Service as Traefik names
/// it (`<namespace>-<service>-<port>@kubernetescrd`), by the target's name as Flagger selects
/// it; the `+Inf` bucket counts the requests; the duration is the 99th percentile in seconds,
/// times 1000.
pub struct TraefikObserver;

/// The Traefik observer.
pub static OBSERVER: TraefikObserver = TraefikObserver;

impl Observer for TraefikObserver {
    fn query(&self, metric: BuiltinMetric, m: &Model) -> String {
        let service = format!(
            r#"service=~"{}-{}-canary-[0-9a-zA-Z-]+@kubernetescrd""#,
            m.namespace, m.target
        );
        let i = &m.interval;
        let series = "traefik_service_request_duration_seconds_bucket";
        match metric {
            BuiltinMetric::RequestSuccessRate => format!(
                r#"sum(rate({series}{{{service},code!~"5..",le="+Inf"}}[{i}])) / sum(rate({series}{{{service},le="+Inf"}}[{i}])) * 100"#
            ),
            BuiltinMetric::RequestDuration => format!(
                r#"histogram_quantile(0.99, sum(rate({series}{{{service}}}[{i}])) by (le)) * 1000"#
            ),
        }
    }
}

/// `traefik`: the TraefikService `<apex>` (in `traefik.io` or `traefik.containo.us`).
pub static PROVIDER: Descriptor =
    Descriptor::new(Provider::Traefik, "traefik", &OBSERVER, |n: &Names<'_>| {
        vec![generated::route("TraefikService", "", n.apex.to_string())]
    });

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::observer::tests::model;

    #[test]
    fn traefik_observer_reads_the_canary_services_histogram() {
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestSuccessRate, &model("1m")),
            r#"sum(rate(traefik_service_request_duration_seconds_bucket{service=~"test-podinfo-canary-[0-9a-zA-Z-]+@kubernetescrd",code!~"5..",le="+Inf"}[1m])) / sum(rate(traefik_service_request_duration_seconds_bucket{service=~"test-podinfo-canary-[0-9a-zA-Z-]+@kubernetescrd",le="+Inf"}[1m])) * 100"#
        );
        assert_eq!(
            OBSERVER.query(BuiltinMetric::RequestDuration, &model("1m")),
            r#"histogram_quantile(0.99, sum(rate(traefik_service_request_duration_seconds_bucket{service=~"test-podinfo-canary-[0-9a-zA-Z-]+@kubernetescrd"}[1m])) by (le)) * 1000"#
        );
        assert_eq!(OBSERVER.duration_ms(256.7), 256.0);
    }
}
