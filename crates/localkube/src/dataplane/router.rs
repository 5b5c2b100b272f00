//! The routing seam: which Service port answers a request addressed to a Service, and which
//! ones get a mirrored copy.
//!
//! kube-proxy's behaviour is [`ServiceRouter`]: the Service itself, no mirrors. A mesh router
//! reads its routing objects (an Istio VirtualService, an SMI TrafficSplit, a Gateway API
//! HTTPRoute, an Ingress with canary annotations) through the [`Api`] it is given, picks a
//! backend Service by weight or header match, and lists mirrors; endpoint selection behind the
//! chosen Service stays the same.

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
/// discarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecision {
    pub backend: ServicePort,
    pub mirrors: Vec<ServicePort>,
}

/// Routes a request addressed to a Service port.
pub trait Router: Send + Sync + std::fmt::Debug {
    fn route(&self, api: &Api, to: &ServicePort, request: &RequestInfo<'_>) -> RouteDecision;
}

/// kube-proxy: a Service's traffic goes to that Service's endpoints.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServiceRouter;

impl Router for ServiceRouter {
    fn route(&self, _api: &Api, to: &ServicePort, _request: &RequestInfo<'_>) -> RouteDecision {
        RouteDecision {
            backend: to.clone(),
            mirrors: Vec::new(),
        }
    }
}
