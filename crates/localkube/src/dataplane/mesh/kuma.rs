//! Kuma: TrafficRoutes (`kuma.io/v1alpha1`, cluster-scoped) route the requests for a Service
//! port, named by its `kuma.io/service` tag `<service>_<namespace>_svc_<port>`, to the tags of
//! `conf.split` by weight (or to `conf.destination`), as Kuma's data plane proxies do.
//!
//! A TrafficRoute applies when one of its `destinations` matches the tag (or `*`); every
//! `sources` selector is taken to match (the client's own tag is not known here). The oldest
//! TrafficRoute that applies wins (Kuma picks the most specific; Flagger writes one per apex).
//!
//! Telemetry: every pod's data plane proxy reports Envoy's statistics of the requests it
//! answered, labelled with its `kuma.io/service` tag as `service` (and `mesh`, `dataplane`), as
//! Kuma's Prometheus integration scrapes them; rendered in Envoy's families ([`super::envoy`]).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::super::router::{RouteDecision, ServicePort};
use super::super::telemetry::{Recorded, Row, escape};
use super::common::{Mesh, Tools, View, direct, objects, spec};
use crate::Api;

const GROUP: &str = "kuma.io";
const VERSIONS: &[&str] = &["v1alpha1"];
const TAG: &str = "kuma.io/service";

/// Kuma's routing by TrafficRoutes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Kuma;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TrafficRouteSpec {
    destinations: Vec<Selector>,
    conf: Conf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Selector {
    #[serde(rename = "match")]
    matches: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Conf {
    split: Vec<Split>,
    destination: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Split {
    weight: f64,
    destination: BTreeMap<String, String>,
}

/// The tag of a Service port.
fn tag(to: &ServicePort) -> String {
    format!("{}_{}_svc_{}", to.service, to.namespace, to.port)
}

/// The Service port a `kuma.io/service` tag names.
fn service_port(tag: &str) -> Option<ServicePort> {
    let (rest, port) = tag.rsplit_once("_svc_")?;
    let (service, namespace) = rest.rsplit_once('_')?;
    Some(ServicePort {
        namespace: namespace.to_string(),
        service: service.to_string(),
        port: port.parse().ok()?,
    })
}

impl Mesh for Kuma {
    fn route_service(
        &self,
        api: &Api,
        t: &Tools,
        to: &ServicePort,
        _view: &View<'_>,
    ) -> Option<RouteDecision> {
        let mine = tag(to);
        let route = objects(api, GROUP, VERSIONS, "TrafficRoute")
            .iter()
            .filter_map(|o| spec::<TrafficRouteSpec>(o))
            .find(|r| {
                r.destinations
                    .iter()
                    .any(|d| d.matches.get(TAG).is_some_and(|v| v == "*" || *v == mine))
            })?;
        let chosen = if route.conf.split.is_empty() {
            route.conf.destination.get(TAG).cloned()
        } else {
            let weights: Vec<f64> = route.conf.split.iter().map(|s| s.weight).collect();
            match t.pick(&weights) {
                Some(i) => route.conf.split[i].destination.get(TAG).cloned(),
                None => {
                    return Some(RouteDecision {
                        actions: direct(503, "TrafficRoute has no destination with a weight"),
                        ..RouteDecision::to(to.clone())
                    });
                }
            }
        };
        let backend = match chosen.as_deref() {
            Some("*") | None => to.clone(),
            Some(tag) => service_port(tag)?,
        };
        Some(RouteDecision::to(backend))
    }
}

/// Kuma's rows of Envoy's families: the requests each pod's proxy answered, by its tag.
pub fn envoy_rows(recorded: &Recorded) -> Vec<Row<'_>> {
    recorded
        .destination()
        .filter(|(l, _)| !l.service.is_empty())
        .map(|(l, h)| Row {
            labels: format!(
                "envoy_cluster_name=\"localhost_{}\",mesh=\"default\",dataplane=\"{}.{}\",service=\"{}_{}_svc_{}\"",
                l.port,
                escape(&l.pod),
                escape(&l.namespace),
                escape(&l.service),
                escape(&l.service_namespace),
                l.port
            ),
            counter_only: format!(",envoy_response_code=\"{}\"", l.status),
            buckets: &h.istio,
            sum: h.sum_ms,
            count: h.count,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_name_service_ports() {
        let sp = ServicePort {
            namespace: "test".into(),
            service: "podinfo-canary".into(),
            port: 80,
        };
        assert_eq!(tag(&sp), "podinfo-canary_test_svc_80");
        assert_eq!(service_port("podinfo-canary_test_svc_80"), Some(sp));
        assert_eq!(service_port("podinfo"), None);
    }
}
