//! SMI (`linkerd`, `osm`, `smi:v1alpha1|2|3`): the TrafficSplit `<apex>` (reference §4.4), and
//! reading the weights back.
//!
//! v1alpha1 writes weights as Kubernetes quantities (strings such as `"90"`), v1alpha2 and
//! v1alpha3 as integers. The TrafficSplit carries no labels and no toolkit annotations
//! (reference §3.12).
//!
//! Not built here: the `VirtualService.v1alpha3.networking.istio.io/spec.gateways` annotation
//! Flagger adds for the target mesh `istio` (`-mesh-provider=smi:<version>:istio`): the target
//! mesh suffix is a controller flag the [`ValidatedCanary`] does not carry.

use super::observer::Standard;
use serde_json::{Value, json};

use super::common::{RoutingError, check_weights};
use super::descriptor::Descriptor;
use crate::effects::Routes;
use crate::generated::{self, Generated, Names};
use crate::model::{Provider, SmiVersion, ValidatedCanary};

/// The TrafficSplit API version of a provider, if it routes with SMI.
pub fn version(provider: Provider) -> Option<SmiVersion> {
    match provider {
        Provider::Linkerd => Some(SmiVersion::V1Alpha1),
        Provider::Osm => Some(SmiVersion::V1Alpha2),
        Provider::SmiV1Alpha1 => Some(SmiVersion::V1Alpha1),
        Provider::SmiV1Alpha2 => Some(SmiVersion::V1Alpha2),
        Provider::SmiV1Alpha3 => Some(SmiVersion::V1Alpha3),
        _ => None,
    }
}

/// `split.smi-spec.io/<version>`.
pub fn api_version(v: SmiVersion) -> &'static str {
    match v {
        SmiVersion::V1Alpha1 => "split.smi-spec.io/v1alpha1",
        SmiVersion::V1Alpha2 => "split.smi-spec.io/v1alpha2",
        SmiVersion::V1Alpha3 => "split.smi-spec.io/v1alpha3",
    }
}

fn weight(v: SmiVersion, w: u32) -> Value {
    match v {
        SmiVersion::V1Alpha1 => Value::String(w.to_string()),
        SmiVersion::V1Alpha2 | SmiVersion::V1Alpha3 => json!(w),
    }
}

/// The TrafficSplit `<apex>`: root service `service.hosts[0]` or the apex, backends canary
/// first, then primary.
pub fn traffic_split(canary: &ValidatedCanary, v: SmiVersion, routes: Routes) -> Value {
    let root = canary
        .service
        .hosts
        .as_deref()
        .and_then(|h| h.first())
        .cloned()
        .unwrap_or_else(|| canary.apex.clone());
    json!({
        "apiVersion": api_version(v),
        "kind": "TrafficSplit",
        "metadata": {"name": canary.apex, "namespace": canary.namespace},
        "spec": {
            "service": root,
            "backends": [
                {"service": canary.canary_service(), "weight": weight(v, routes.canary)},
                {"service": canary.primary_service(), "weight": weight(v, routes.primary)},
            ],
        },
    })
}

/// A backend weight as read back: an integer, or a quantity string (`"90"`, `"500m"`), rounded
/// up to a whole number as a quantity's integer value is.
fn parse_weight(w: &Value) -> Result<u32, RoutingError> {
    let bad = || RoutingError::Decode(format!("TrafficSplit backend weight {w} is not a number"));
    match w {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(bad),
        Value::String(s) => {
            if let Some(milli) = s.strip_suffix('m') {
                let n: u64 = milli.parse().map_err(|_| bad())?;
                u32::try_from(n.div_ceil(1000)).map_err(|_| bad())
            } else {
                s.parse().map_err(|_| bad())
            }
        }
        Value::Null => Ok(0),
        _ => Err(bad()),
    }
}

/// Reads the weights of `<apex>-primary` and `<apex>-canary` from a TrafficSplit (any
/// version); both 0 (or absent) is an error. SMI has no mirroring.
pub fn read_routes(canary: &ValidatedCanary, split: &Value) -> Result<Routes, RoutingError> {
    let mut primary = 0;
    let mut canary_w = 0;
    let backends = split["spec"]["backends"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for b in backends {
        let service = b["service"].as_str().unwrap_or_default();
        if service == canary.primary_service() {
            primary = parse_weight(&b["weight"])?;
        } else if service == canary.canary_service() {
            canary_w = parse_weight(&b["weight"])?;
        }
    }
    check_weights(primary, canary_w, || {
        format!(
            "TrafficSplit {}.{} does not contain routes for {} and {}",
            canary.apex,
            canary.namespace,
            canary.primary_service(),
            canary.canary_service()
        )
    })?;
    Ok(Routes::weights(primary, canary_w))
}

// === builtin checks ===

/// The Linkerd observer: the proxy's inbound `response_total` and latency histogram.
pub static LINKERD: Standard = Standard {
    requests: "response_total",
    success: r#"classification!="failure""#,
    latency: "response_latency_ms_bucket",
    selector: |m| {
        format!(
            r#"namespace="{}",deployment=~"{}",direction="inbound""#,
            m.namespace, m.target
        )
    },
    seconds: false,
};

/// The OSM observer: OSM's request counter and latency histogram of the destination.
pub static OSM: Standard = Standard {
    requests: "osm_request_total",
    success: r#"response_code!~"5.*""#,
    latency: "osm_request_duration_ms_bucket",
    selector: |m| {
        format!(
            r#"destination_namespace="{}",destination_kind="Deployment",destination_name="{}""#,
            m.namespace, m.target
        )
    },
    seconds: false,
};

fn generated_traffic_split(n: &Names<'_>) -> Vec<Generated> {
    vec![generated::route(
        "TrafficSplit",
        "smi-spec.io",
        n.apex.to_string(),
    )]
}

/// A provider that routes with a TrafficSplit.
const fn split(
    provider: Provider,
    name: &'static str,
    observer: &'static dyn super::observer::Observer,
) -> Descriptor {
    Descriptor::new(provider, name, observer, generated_traffic_split)
}

/// `linkerd`: SMI v1alpha1 TrafficSplit, Linkerd's observer.
pub static LINKERD_PROVIDER: Descriptor = split(Provider::Linkerd, "linkerd", &LINKERD);
/// `osm`: SMI v1alpha2 TrafficSplit, OSM's observer.
pub static OSM_PROVIDER: Descriptor = split(Provider::Osm, "osm", &OSM);
// Flagger's observer factory has no case for `smi:*`: they fall to its default, Istio; the
// `-mesh-provider` flag takes them with a target mesh (`smi:v1alpha3:linkerd`).
/// `smi:v1alpha1`.
pub static V1ALPHA1_PROVIDER: Descriptor = split(
    Provider::SmiV1Alpha1,
    "smi:v1alpha1",
    &super::istio::OBSERVER,
)
.flag_prefix();
/// `smi:v1alpha2`.
pub static V1ALPHA2_PROVIDER: Descriptor = split(
    Provider::SmiV1Alpha2,
    "smi:v1alpha2",
    &super::istio::OBSERVER,
)
.flag_prefix();
/// `smi:v1alpha3`.
pub static V1ALPHA3_PROVIDER: Descriptor = split(
    Provider::SmiV1Alpha3,
    "smi:v1alpha3",
    &super::istio::OBSERVER,
)
.flag_prefix();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_back_as_whole_numbers() {
        assert_eq!(parse_weight(&json!("90")), Ok(90));
        assert_eq!(parse_weight(&json!("500m")), Ok(1));
        assert_eq!(parse_weight(&json!("10000m")), Ok(10));
        assert_eq!(parse_weight(&json!(7)), Ok(7));
        assert!(parse_weight(&json!("x")).is_err());
    }

    #[test]
    fn providers_map_to_their_traffic_split_version() {
        assert_eq!(version(Provider::Linkerd), Some(SmiVersion::V1Alpha1));
        assert_eq!(version(Provider::Osm), Some(SmiVersion::V1Alpha2));
        assert_eq!(version(Provider::SmiV1Alpha3), Some(SmiVersion::V1Alpha3));
        assert_eq!(version(Provider::Istio), None);
    }

    #[test]
    fn linkerd_and_osm_observers_read_their_meshs_metrics() {
        use crate::model::BuiltinMetric;
        use crate::routing::observer::Observer;
        use crate::routing::observer::tests::model;
        let (sr, d) = (
            BuiltinMetric::RequestSuccessRate,
            BuiltinMetric::RequestDuration,
        );
        assert_eq!(
            LINKERD.query(sr, &model("30s")),
            r#"sum(rate(response_total{namespace="test",deployment=~"podinfo",direction="inbound",classification!="failure"}[30s])) / sum(rate(response_total{namespace="test",deployment=~"podinfo",direction="inbound"}[30s])) * 100"#
        );
        assert_eq!(
            LINKERD.query(d, &model("30s")),
            r#"histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{namespace="test",deployment=~"podinfo",direction="inbound"}[30s])) by (le))"#
        );
        assert_eq!(
            OSM.query(sr, &model("30s")),
            r#"sum(rate(osm_request_total{destination_namespace="test",destination_kind="Deployment",destination_name="podinfo",response_code!~"5.*"}[30s])) / sum(rate(osm_request_total{destination_namespace="test",destination_kind="Deployment",destination_name="podinfo"}[30s])) * 100"#
        );
        assert_eq!(
            OSM.query(d, &model("30s")),
            r#"histogram_quantile(0.99, sum(rate(osm_request_duration_ms_bucket{destination_namespace="test",destination_kind="Deployment",destination_name="podinfo"}[30s])) by (le))"#
        );
        assert_eq!(LINKERD.duration_ms(256.7), 256.0);
        assert_eq!(OSM.duration_ms(256.7), 256.0);
    }
}
