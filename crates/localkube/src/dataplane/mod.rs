//! The simulated data plane: simulated pods that answer HTTP like podinfo, localkube acting as
//! an HTTP proxy that resolves cluster DNS names, and the telemetry a cluster's Prometheus
//! would scrape.
//!
//! A request takes three steps, each in its own module:
//!
//! 1. [`resolve`]: the host a client asked for (`svc`, `svc.ns`, `svc.ns.svc.cluster.local`,
//!    a ClusterIP or a pod IP, with a port) becomes a Service port, a pod, or an outside
//!    address; single-label names resolve in the client's namespace (named in its proxy URL,
//!    [`DataPlane::proxy_url_for`]).
//! 2. [`router`]: a [`Router`] decides which Service port gets a request addressed to a
//!    Service, and which ones get a mirrored copy. [`ServiceRouter`] is plain kube-proxy: the
//!    Service itself. [`MeshRouter`] (the default) routes by the meshes' objects in the store,
//!    one module per mesh under [`mesh`] (Istio VirtualServices, Gateway API HTTPRoutes, SMI
//!    TrafficSplits, NGINX Ingresses: weights, matches, mirroring, header edits, rewrites) and
//!    is kube-proxy where there are none.
//! 3. [`endpoints`]: the chosen Service port becomes one ready endpoint of its Endpoints
//!    (round robin), a simulated pod or a real local process.
//!
//! [`app`] is what a simulated pod answers; [`metrics`] records every request (podinfo's own
//! series per pod, served at the pod's `/metrics`; the proxies' records, rendered by each
//! mesh's [`telemetry`]); [`discovery`] tells Prometheus which pods to scrape; [`proxy`] is
//! the HTTP listener that ties them together.
//!
//! Pod-template annotations shape a pod's answers ([`ERROR_RATIO`], [`ERROR_CODE`],
//! [`LATENCY`]); a Service annotation ([`UPSTREAM`]) sends its traffic to a real local process.
//!
//! This file only declares the modules, re-exports and starts the data plane ([`DataPlane`]);
//! the annotations live with their readers ([`app`], [`endpoints`]) and the settings in
//! [`config`], so no module reaches back up into it.

pub mod app;
pub mod config;
pub mod discovery;
pub mod endpoints;
pub mod mesh;
pub mod metrics;
pub mod proxy;
pub mod resolve;
pub mod router;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;

pub use app::{ERROR_CODE, ERROR_RATIO, LATENCY};
pub use config::DataPlaneConfig;
pub use endpoints::UPSTREAM;
pub use mesh::MeshRouter;
pub use router::{
    GatewayTelemetry, HeaderOps, IngressTelemetry, RequestInfo, RouteActions, RouteDecision,
    Router, ServicePort, ServiceRouter, Workload,
};

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

    /// The proxy URL for a process that is workload `name` in `namespace` (a Service
    /// registered for it, say): single-label names resolve in `namespace`, and the meshes'
    /// series name it as the client. `name` may be empty (only the namespace is known).
    pub fn proxy_url_for(&self, name: &str, namespace: &str) -> String {
        let user = if name.is_empty() {
            namespace.to_string()
        } else {
            format!("{name}.{namespace}")
        };
        format!("http://{user}@{}", self.addr)
    }

    /// Where Prometheus scrapes the proxies' and controllers' series (Istio, Linkerd, Envoy,
    /// OSM, ingress-nginx); the pods serve their own at their `/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// Prometheus's HTTP service discovery of the pods to scrape (`http_sd_configs`), with the
    /// targets and meta labels of Kubernetes service discovery's `pod` role.
    pub fn pod_discovery_url(&self) -> String {
        format!("http://{}{}", self.addr, discovery::PODS_PATH)
    }

    /// Prometheus `scrape_configs` entries (a YAML list) that see the data plane as a
    /// Prometheus on a cluster sees its pods and proxies:
    ///
    /// - `kubernetes-pods`: the pod job Flagger's Prometheus (and Prometheus's own example
    ///   configuration) has: pods annotated `prometheus.io/scrape: "true"`, scraped at their
    ///   `prometheus.io/port` and `prometheus.io/path`, labelled with their pod labels,
    ///   `kubernetes_namespace` and `kubernetes_pod_name`. Its relabeling is unchanged; the
    ///   discovery is the data plane's ([`Self::pod_discovery_url`], refreshed every
    ///   `refresh`), and the scrapes go through the data plane (`proxy_url`).
    /// - `localkube-dataplane`: the proxies' and controllers' series at [`Self::metrics_url`]
    ///   (they carry their own labels: `honor_labels`).
    pub fn prometheus_scrape_configs(&self, refresh: &str) -> String {
        let addr = self.addr;
        let sd = self.pod_discovery_url();
        format!(
            r#"- job_name: kubernetes-pods
  http_sd_configs:
  - url: {sd}
    refresh_interval: {refresh}
  proxy_url: http://{addr}
  relabel_configs:
  - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
    regex: true
    action: keep
  - source_labels: [__address__]
    regex: '.*9901.*'
    action: drop
  - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path]
    regex: (.+)
    target_label: __metrics_path__
    action: replace
  - source_labels: [__address__, __meta_kubernetes_pod_annotation_prometheus_io_port]
    regex: ([^:]+)(?::\d+)?;(\d+)
    replacement: $1:$2
    target_label: __address__
    action: replace
  - regex: __meta_kubernetes_pod_label_(.+)
    action: labelmap
  - source_labels: [__meta_kubernetes_namespace]
    target_label: kubernetes_namespace
    action: replace
  - source_labels: [__meta_kubernetes_pod_name]
    target_label: kubernetes_pod_name
    action: replace
- job_name: localkube-dataplane
  honor_labels: true
  static_configs:
  - targets: ['{addr}']
"#
        )
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
