//! The simulated data plane: simulated pods that answer HTTP like podinfo, localkube acting as
//! an HTTP proxy that resolves cluster DNS names, and podinfo-style request metrics.
//!
//! A request takes three steps, each in its own module:
//!
//! 1. [`resolve`]: the host a client asked for (`svc`, `svc.ns`, `svc.ns.svc.cluster.local`,
//!    a ClusterIP or a pod IP, with a port) becomes a Service port, a pod, or an outside
//!    address.
//! 2. [`router`]: a [`Router`] decides which Service port gets a request addressed to a
//!    Service, and which ones get a mirrored copy. [`ServiceRouter`] is plain kube-proxy: the
//!    Service itself. [`MeshRouter`] (the default) routes by the Istio
//!    VirtualServices, Gateway API HTTPRoutes and SMI TrafficSplits in the store (weights,
//!    matches, mirroring, header edits, rewrites) and is kube-proxy where there are none; it
//!    also plays the NGINX ingress controller for hosts named by Ingresses
//!    ([`mesh::nginx`]). Each mesh is its own module under [`mesh`].
//! 3. [`endpoints`]: the chosen Service port becomes one ready endpoint of its Endpoints
//!    (round robin), a simulated pod or a real local process.
//!
//! [`app`] is what a simulated pod answers; [`metrics`] records every request; [`proxy`] is the
//! HTTP listener that ties them together.
//!
//! Pod-template annotations shape a pod's answers ([`ERROR_RATIO`], [`ERROR_CODE`],
//! [`LATENCY`]); a Service annotation ([`UPSTREAM`]) sends its traffic to a real local process.

pub mod app;
pub mod endpoints;
pub mod mesh;
pub mod metrics;
pub mod proxy;
pub mod resolve;
pub mod router;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;

pub use mesh::MeshRouter;
pub use router::{
    HeaderOps, IngressTelemetry, RequestInfo, RouteActions, RouteDecision, Router, ServicePort,
    ServiceRouter,
};

/// Pod-template annotation: the fraction (0..=1) of application requests that fail.
pub const ERROR_RATIO: &str = "localkube.dev/error-ratio";
/// Pod-template annotation: the HTTP status of injected failures (default 500).
pub const ERROR_CODE: &str = "localkube.dev/error-code";
/// Pod-template annotation: added latency, fixed (`50ms`) or uniform in a range (`20ms-80ms`).
pub const LATENCY: &str = "localkube.dev/latency";
/// Service annotation: `HOST:PORT` of a real local process that serves this Service.
pub const UPSTREAM: &str = "localkube.dev/upstream";

/// Data plane settings.
#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    /// Where the proxy (and the `/metrics` endpoint) listens; port 0 picks a free one.
    pub addr: SocketAddr,
    /// The namespace of single-label names (`podinfo` means `podinfo.default`).
    pub default_namespace: String,
    /// Routes requests addressed to Services; the default is [`MeshRouter`] (kube-proxy for
    /// Services without mesh routing objects).
    pub router: Arc<dyn Router>,
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            default_namespace: "default".into(),
            router: Arc::new(MeshRouter::default()),
        }
    }
}

/// A running data plane (see [`crate::Handle::dataplane`]).
#[derive(Debug, Clone)]
pub struct DataPlane {
    /// The proxy's address: `HTTP_PROXY=http://{addr}`; also serves `/metrics`.
    pub addr: SocketAddr,
    /// The request metrics.
    pub metrics: Arc<metrics::RequestMetrics>,
}

impl DataPlane {
    /// `http://ADDR`, the value for `HTTP_PROXY`.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where Prometheus scrapes the request metrics.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }
}

/// Binds the proxy and serves it until `shutdown` turns true.
pub(crate) async fn start(
    api: crate::Api,
    config: DataPlaneConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(DataPlane, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let addr = listener.local_addr()?;
    let metrics = Arc::new(metrics::RequestMetrics::default());
    let state = Arc::new(proxy::ProxyState::new(api, config, metrics.clone(), addr));
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|v| *v).await;
        };
        if let Err(e) = proxy::serve_on(listener, state, stop).await {
            tracing::error!("localkube data plane failed: {e}");
        }
    });
    tracing::info!(%addr, "localkube data plane serving");
    Ok((DataPlane { addr, metrics }, task))
}
