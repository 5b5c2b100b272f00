//! SMI: TrafficSplits (`split.smi-spec.io`, `v1alpha1` to `v1alpha3`) route requests to the
//! Service named by `spec.service` among `backends` by weight, as Linkerd and OSM do.

use serde::Deserialize;
use serde_json::Value;

use super::super::router::{RouteDecision, ServicePort};
use super::common::{Mesh, Tools, View, dest_port, direct, objects, service_of, spec};
use crate::Api;
use crate::util;

const GROUP: &str = "split.smi-spec.io";
const VERSIONS: &[&str] = &["v1alpha3", "v1alpha2", "v1alpha1"];

/// SMI routing by TrafficSplits (Linkerd, OSM).
#[derive(Debug, Default, Clone, Copy)]
pub struct Smi;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TrafficSplitSpec {
    service: String,
    backends: Vec<TsBackend>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TsBackend {
    service: String,
    weight: Value,
}

/// A TrafficSplit weight: an integer (v1alpha2, v1alpha3) or a quantity (v1alpha1: `50`,
/// `"50"`, `"500m"`, `"1k"`).
fn weight_of(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => {
            let s = s.trim();
            let split = s
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
                .unwrap_or(s.len());
            let (num, suffix) = s.split_at(split);
            let n: f64 = num.parse().unwrap_or(0.0);
            let scale = match suffix {
                "" => 1.0,
                "m" => 1e-3,
                "k" => 1e3,
                "M" => 1e6,
                "G" => 1e9,
                "Ki" => 1024.0,
                "Mi" => 1024.0 * 1024.0,
                "Gi" => 1024.0 * 1024.0 * 1024.0,
                _ => 0.0,
            };
            n * scale
        }
        _ => 0.0,
    }
}

impl Mesh for Smi {
    fn route_service(
        &self,
        api: &Api,
        t: &Tools,
        to: &ServicePort,
        view: &View<'_>,
    ) -> Option<RouteDecision> {
        for o in objects(api, GROUP, VERSIONS, "TrafficSplit") {
            let ns = util::namespace(&o);
            if ns != to.namespace {
                continue;
            }
            let Some(ts) = spec::<TrafficSplitSpec>(&o) else {
                continue;
            };
            if service_of(&ts.service, ns).is_none_or(|(n, s)| n != to.namespace || s != to.service)
            {
                continue;
            }
            let weights: Vec<f64> = ts.backends.iter().map(|b| weight_of(&b.weight)).collect();
            let Some(b) = t.pick(&weights).map(|i| &ts.backends[i]) else {
                return Some(RouteDecision {
                    actions: direct(503, "TrafficSplit has no backend with a weight"),
                    ..RouteDecision::to(to.clone())
                });
            };
            let Some((bns, name)) = service_of(&b.service, ns) else {
                continue;
            };
            let port = dest_port(api, &bns, &name, None, view.port);
            return Some(RouteDecision::to(ServicePort {
                namespace: bns,
                service: name,
                port,
            }));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn weights() {
        assert_eq!(weight_of(&json!(50)), 50.0);
        assert_eq!(weight_of(&json!("50")), 50.0);
        assert_eq!(weight_of(&json!("500m")), 0.5);
        assert_eq!(weight_of(&json!("1k")), 1000.0);
        assert_eq!(weight_of(&json!("lots")), 0.0);
    }
}
