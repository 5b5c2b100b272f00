//! Knative Serving with Kourier: a request for a Knative Service's address (the Service
//! `<name>` the simulated Knative controller makes for its Route) is split between revisions
//! by the Route's `status.traffic` percents, and sent to the chosen revision's Service, as
//! Kourier's gateway does. The gateway (`3scale-kourier-gateway` in `kourier-system`) is the
//! client the meshes' series name.
//!
//! Telemetry: the gateway's Envoy statistics per revision cluster, `envoy_cluster_name` =
//! `<namespace>/<revision>` (Flagger's Knative queries read them), rendered in Envoy's families
//! ([`super::envoy`]).

use serde::Deserialize;

use super::super::router::{RouteDecision, ServicePort, Workload};
use super::super::telemetry::{Recorded, Reporter, Row, escape};
use super::common::{Mesh, Tools, View, dest_port, direct};
use crate::Api;

/// Kourier's gateway, as the series name it.
pub const GATEWAY_NAMESPACE: &str = "kourier-system";
pub const GATEWAY: &str = "3scale-kourier-gateway";

/// Knative's routing by Routes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Knative;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RouteStatus {
    traffic: Vec<TrafficTarget>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct TrafficTarget {
    revision_name: String,
    percent: f64,
}

impl Mesh for Knative {
    fn route_service(
        &self,
        api: &Api,
        t: &Tools,
        to: &ServicePort,
        view: &View<'_>,
    ) -> Option<RouteDecision> {
        let info = api.resource("serving.knative.dev/v1", "Route").ok()?;
        let route = api
            .store
            .get(&info.storage_key(), &to.namespace, &to.service)?;
        let status: RouteStatus =
            serde_json::from_value(route.get("status").cloned().unwrap_or_default())
                .unwrap_or_default();
        let weights: Vec<f64> = status.traffic.iter().map(|x| x.percent).collect();
        let mut d = match t.pick(&weights).map(|i| &status.traffic[i]) {
            Some(target) => {
                let port = dest_port(api, &to.namespace, &target.revision_name, None, view.port);
                RouteDecision::to(ServicePort {
                    namespace: to.namespace.clone(),
                    service: target.revision_name.clone(),
                    port,
                })
            }
            None => RouteDecision {
                actions: direct(503, "Knative Route has no traffic target ready"),
                ..RouteDecision::to(to.clone())
            },
        };
        d.actions.gateway = Some(Workload::new(GATEWAY_NAMESPACE, GATEWAY));
        Some(d)
    }
}

/// The gateway's rows of Envoy's families: the requests it sent to each revision.
pub fn envoy_rows(recorded: &Recorded) -> Vec<Row<'_>> {
    recorded
        .mesh
        .iter()
        .filter(|(l, _)| {
            l.reporter == Reporter::Source
                && l.source_workload == GATEWAY
                && l.source_namespace == GATEWAY_NAMESPACE
                && !l.service.is_empty()
        })
        .map(|(l, h)| Row {
            labels: format!(
                "envoy_cluster_name=\"{}/{}\",kubernetes_namespace=\"{GATEWAY_NAMESPACE}\",kubernetes_pod_name=\"{GATEWAY}\"",
                escape(&l.service_namespace),
                escape(&l.service)
            ),
            counter_only: format!(",envoy_response_code=\"{}\"", l.status),
            buckets: &h.istio,
            sum: h.sum_ms,
            count: h.count,
        })
        .collect()
}
