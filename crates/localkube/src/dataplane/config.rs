//! The data plane's settings.

use std::net::SocketAddr;
use std::sync::Arc;

use super::mesh::MeshRouter;
use super::router::Router;

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
