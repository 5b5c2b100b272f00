//! What the ingress gateways ([`super::contour`], [`super::gloo`], [`super::traefik`],
//! [`super::skipper`], [`super::apisix`]) share: their answers without a backend, the weighted
//! choice among backends, and the Service port a backend names.

use std::time::Duration;

use super::super::router::{GatewayTelemetry, HeaderOps, RouteActions, RouteDecision, ServicePort};
use super::common::{Tools, dest_port};
use crate::Api;

/// A Service port a gateway route may send a request to.
#[derive(Debug, Clone)]
pub struct Backend {
    pub to: ServicePort,
    /// Relative weight (a negative one counts as 0).
    pub weight: f64,
    /// Request headers set or added for this backend.
    pub request_headers: HeaderOps,
    /// Under what the gateway records the request, when it files it per backend.
    pub telemetry: Option<GatewayTelemetry>,
}

impl Backend {
    /// A backend to Service `ns/name` at `port` (its only port when the Service has no such
    /// port and one other).
    pub fn service(api: &Api, ns: &str, name: &str, port: Option<u32>, weight: f64) -> Self {
        let port = dest_port(api, ns, name, port, 80);
        Backend {
            to: ServicePort {
                namespace: ns.to_string(),
                service: name.to_string(),
                port,
            },
            weight,
            request_headers: HeaderOps::default(),
            telemetry: None,
        }
    }
}

/// Where a direct answer "goes": nowhere.
fn nowhere() -> ServicePort {
    ServicePort {
        namespace: String::new(),
        service: String::new(),
        port: 80,
    }
}

/// The gateway answers by itself with `status` and `body` (no route, no backend).
pub fn answer(status: u16, body: &str, telemetry: Option<GatewayTelemetry>) -> RouteDecision {
    RouteDecision {
        actions: RouteActions {
            direct: Some((status, format!("{body}\n"))),
            gateway_series: telemetry,
            ..Default::default()
        },
        ..RouteDecision::to(nowhere())
    }
}

/// The backend drawn by weight; `None` when every weight is 0 (or there is none).
pub fn pick<'a>(tools: &Tools, backends: &'a [Backend]) -> Option<&'a Backend> {
    let weights: Vec<f64> = backends.iter().map(|b| b.weight.max(0.0)).collect();
    tools.pick(&weights).map(|i| &backends[i])
}

/// Sends the request to `backend`, within `timeout` if any, filed under `telemetry` (the
/// route's) unless the backend has its own.
pub fn to_backend(
    backend: &Backend,
    timeout: Option<Duration>,
    telemetry: Option<GatewayTelemetry>,
) -> RouteDecision {
    RouteDecision {
        actions: RouteActions {
            request_headers: backend.request_headers.clone(),
            timeout,
            gateway_series: backend.telemetry.clone().or(telemetry),
            ..Default::default()
        },
        ..RouteDecision::to(backend.to.clone())
    }
}

/// Go's `time.ParseDuration` as gateways read timeouts (`15s`, `1m30s`, `250ms`); `None` for
/// anything else (`infinity` included: no timeout).
pub fn parse_timeout(s: &str) -> Option<Duration> {
    crate::util::parse_duration(s)
}
