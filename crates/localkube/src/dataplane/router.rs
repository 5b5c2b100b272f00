//! The routing seam: which Service port answers a request addressed to a Service, and which
//! ones get a mirrored copy.
//!
//! kube-proxy's behaviour is [`ServiceRouter`]: the Service itself, no mirrors. A mesh router
//! ([`super::MeshRouter`]) reads its routing objects (an Istio VirtualService, an SMI
//! TrafficSplit, a Gateway API HTTPRoute) through the [`Api`] it is given, picks a backend
//! Service by weight or match, lists mirrors and says how to edit the request and the answer
//! ([`RouteActions`]); endpoint selection behind the chosen Service stays the same.

use std::time::Duration;

use axum::http::{HeaderMap, Method};

use crate::Api;

/// A port of a Service, as a request addresses it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServicePort {
    pub namespace: String,
    pub service: String,
    pub port: u16,
}

/// What a router may look at.
#[derive(Debug)]
pub struct RequestInfo<'a> {
    pub method: &'a Method,
    /// Path and query, as the client sent them.
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
}

/// Where a request goes: `backend` answers it; each of `mirrors` gets a copy whose answer is
/// discarded; `actions` change the request and the answer on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecision {
    pub backend: ServicePort,
    pub mirrors: Vec<ServicePort>,
    pub actions: RouteActions,
}

impl RouteDecision {
    /// `backend`, no mirrors, nothing changed.
    pub fn to(backend: ServicePort) -> Self {
        Self {
            backend,
            mirrors: Vec::new(),
            actions: RouteActions::default(),
        }
    }
}

/// Header edits: `set` replaces, `add` appends, `remove` drops (applied remove, set, add).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderOps {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Appends `other`'s edits after this one's.
    pub fn extend(&mut self, other: HeaderOps) {
        self.set.extend(other.set);
        self.add.extend(other.add);
        self.remove.extend(other.remove);
    }

    /// Applies the edits (invalid names or values are skipped).
    pub fn apply(&self, headers: &mut HeaderMap) {
        use axum::http::{HeaderName, HeaderValue};
        for name in &self.remove {
            if let Ok(n) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                headers.remove(n);
            }
        }
        for (ops, replace) in [(&self.set, true), (&self.add, false)] {
            for (k, v) in ops {
                let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()),
                    HeaderValue::from_str(v),
                ) else {
                    continue;
                };
                if replace {
                    headers.insert(n, v);
                } else {
                    headers.append(n, v);
                }
            }
        }
    }
}

/// What a mesh route does besides choosing backends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteActions {
    /// Edits of the request sent to the backend (and the mirrors).
    pub request_headers: HeaderOps,
    /// Edits of the answer the client gets (a `Set-Cookie` for session affinity, say).
    pub response_headers: HeaderOps,
    /// The new path and query the backend sees.
    pub path_and_query: Option<String>,
    /// The new `Host` (authority) the backend sees.
    pub authority: Option<String>,
    /// The backend must answer within this time, or the client gets 504.
    pub timeout: Option<Duration>,
    /// Wait this long first (an injected delay).
    pub delay: Option<Duration>,
    /// Answer with this status and body (and `response_headers`) instead of routing: no route
    /// matched (404), every backend weighted 0 (500), an injected abort, a redirect (with a
    /// `Location` header), a direct response.
    pub direct: Option<(u16, String)>,
    /// An ingress controller served the request: record it in the controller's series
    /// (`nginx_ingress_controller_*`) with these labels.
    pub ingress: Option<IngressTelemetry>,
    /// The gateway (or ingress controller) that took the request: the meshes' series name it
    /// as the client (Istio's `reporter="source"`).
    pub gateway: Option<Workload>,
    /// A gateway (Gloo's Envoy, Traefik, Skipper, APISIX) served the request: record it in
    /// that gateway's series.
    pub gateway_series: Option<GatewayTelemetry>,
}

/// Under what a gateway records a request it served (besides method, status and durations):
/// which gateway's series, the name it files the request under (Gloo's Envoy cluster,
/// Traefik's service, Skipper's route, APISIX's route) and its other labels, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct GatewayTelemetry {
    /// The telemetry module that renders it (`envoy`, `traefik`, `skipper`, `apisix`).
    pub gateway: &'static str,
    pub name: String,
    pub labels: Vec<(String, String)>,
}

/// A workload as the meshes' series name it: its namespace and name (empty: not known).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Workload {
    pub namespace: String,
    pub name: String,
}

impl Workload {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// The labels an ingress controller records a request under (besides `method` and `status`),
/// as ingress-nginx does: the Ingress owning the matched location, its namespace and Service,
/// and the canary upstream (`<namespace>-<service>-<port>`) when a canary Ingress took the
/// request, empty otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct IngressTelemetry {
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    pub canary: String,
    /// The matched Ingress path (`/` for a default backend).
    pub path: String,
    /// The request's host.
    pub host: String,
}

/// Routes a request addressed to a Service port.
pub trait Router: Send + Sync + std::fmt::Debug {
    fn route(&self, api: &Api, to: &ServicePort, request: &RequestInfo<'_>) -> RouteDecision;

    /// Routes a request for a host that is not a cluster name (`app.example.com`), as an
    /// ingress gateway would; `None` (the default) forwards it outside the cluster.
    fn route_host(
        &self,
        _api: &Api,
        _host: &str,
        _port: u16,
        _request: &RequestInfo<'_>,
    ) -> Option<RouteDecision> {
        None
    }
}

/// kube-proxy: a Service's traffic goes to that Service's endpoints.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServiceRouter;

impl Router for ServiceRouter {
    fn route(&self, _api: &Api, to: &ServicePort, _request: &RequestInfo<'_>) -> RouteDecision {
        RouteDecision::to(to.clone())
    }
}
