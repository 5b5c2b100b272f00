//! localkube: an embedded, in-memory, Kubernetes-API-compatible server.
//!
//! It serves the kube-apiserver REST surface (discovery, OpenAPI v3, CRUD, watch, patch
//! flavours, server-side apply, subresources, Tables) over plain HTTP, keeps objects as JSON in
//! an in-memory [`store::Store`], defaults and validates built-in objects as kube-apiserver does
//! ([`defaults`], [`validation`]), and runs simulated controllers (Deployments, ReplicaSets, a
//! kubelet with probes and an image registry, DaemonSets, Endpoints, HorizontalPodAutoscalers,
//! an optional KEDA-like scaler, garbage collection: [`controllers`]; namespace termination in
//! [`namespace`]). Every change is broadcast to in-process subscribers ([`Handle::subscribe`]).
//!
//! Modules are layered, each using only those before it: the leaves (`error`, `util`, `faults`,
//! `metrics`), the store and codecs (`store`, `patch`, `protobuf`, `selectors`), the resource
//! registry (`registry`, `ssa`, `external_metrics`), what reads it (`validation`, `discovery`,
//! `openapi`, `table`), then `crd`, `defaults`, the API ([`api`]), what runs on it (`auth`,
//! `namespace`, `dataplane`), and on top the simulated `controllers` and the HTTP `server`
//! (this file starts them). Inside a directory, `mod.rs` only re-exports and ties its children
//! together; no child reaches back up into it (`crates/cli/tests/module_cycles.rs`).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let handle = localkube::Server::start(localkube::Config::default()).await?;
//! println!("{}", handle.kubeconfig());
//! # Ok(()) }
//! ```

pub mod api;
pub mod auth;
pub mod controllers;
pub mod crd;
pub mod dataplane;
pub mod defaults;
pub mod discovery;
pub mod error;
pub mod event_ttl;
pub mod external_metrics;
pub mod faults;
pub mod metrics;
pub mod namespace;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod selectors;
pub mod server;
pub mod ssa;
pub mod store;
pub mod table;
pub mod util;
pub mod validation;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::json;

pub use api::Api;
pub use error::ApiError;
pub use faults::{FaultRule, Faults};

/// Server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free one.
    pub addr: SocketAddr,
    /// How many change events are kept for watch resumption (older resourceVersions get 410).
    pub watch_window: usize,
    /// How often watch streams with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// How long an Event lives after its last write (kube-apiserver's `--event-ttl`, one
    /// hour by default; [`event_ttl`]).
    pub event_ttl: Duration,
    /// Run the simulated controllers.
    pub controllers: bool,
    /// Simulated controller settings.
    pub sim: controllers::SimConfig,
    /// Fault injection (off by default).
    pub faults: Faults,
    /// The simulated data plane (pods answering HTTP behind an HTTP proxy); off by default.
    pub dataplane: Option<dataplane::DataPlaneConfig>,
    /// `Host` names served besides loopback ones and `addr`'s address (requests naming
    /// another host are refused: DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Authentication and RBAC authorization ([`auth`]); off by default (everything allowed).
    pub auth: auth::AuthConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            watch_window: 10_000,
            bookmark_interval: Duration::from_secs(5),
            event_ttl: event_ttl::DEFAULT_TTL,
            controllers: true,
            sim: controllers::SimConfig::default(),
            faults: Faults::default(),
            dataplane: None,
            allowed_hosts: Vec::new(),
            auth: auth::AuthConfig::default(),
        }
    }
}

/// The server entry point.
#[derive(Debug)]
pub struct Server;

/// A running server; shuts down when dropped.
#[derive(Debug)]
pub struct Handle {
    pub addr: SocketAddr,
    /// The CA of the serving certificate, when the server serves HTTPS (with RBAC).
    pub ca_pem: Option<String>,
    pub api: Api,
    /// The data plane, when [`Config::dataplane`] is set.
    pub dataplane: Option<dataplane::DataPlane>,
    state: Arc<server::AppState>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Binds, seeds the default namespaces and nodes, starts controllers and serves.
    pub async fn start(config: Config) -> anyhow::Result<Handle> {
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let registry = Arc::new(registry::Registry::new());
        let store = Arc::new(store::Store::new(config.watch_window));
        let api = Api::new(registry, store);
        seed(&api, &config)?;
        let auth = Arc::new(auth::Auth::new(config.auth.clone())?);
        let tls = if auth.enabled() {
            auth::bootstrap::seed(&api)?;
            Some(auth::tls::Tls::generate(addr, &config.allowed_hosts)?)
        } else {
            None
        };
        let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let state = Arc::new(server::AppState {
            api: api.clone(),
            shutdown: rx.clone(),
            metrics: metrics::Metrics::default(),
            faults: RwLock::new(config.faults.clone()),
            addr: RwLock::new(addr.to_string()),
            bookmark_interval: config.bookmark_interval,
            hosts: input_guard::origin::HostPolicy::for_listener(addr, &config.allowed_hosts),
            external_metrics: Default::default(),
            auth: auth.clone(),
        });
        let mut tasks = Vec::new();
        let mut rx_srv = rx.clone();
        let st = state.clone();
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx_srv.wait_for(|v| *v).await;
            };
            if let Err(e) = server::serve_on(listener, st, shutdown, acceptor).await {
                tracing::error!("localkube server failed: {e}");
            }
        }));
        tasks.push(tokio::spawn(event_ttl::run(
            api.clone(),
            config.event_ttl,
            rx.clone(),
        )));
        let dataplane = match config.dataplane.clone() {
            Some(dp) => {
                let (dp, task) = dataplane::start(api.clone(), dp, rx.clone()).await?;
                tasks.push(task);
                Some(dp)
            }
            None => None,
        };
        if config.controllers {
            let link = controllers::DataPlaneLink {
                proxy: dataplane.as_ref().map(|d| d.addr),
                requests: dataplane.as_ref().map(|d| d.metrics.clone()),
            };
            tasks.extend(controllers::spawn_all(
                api.clone(),
                config.sim.clone(),
                link,
                rx.clone(),
            ));
        }
        tracing::info!(%addr, "localkube serving");
        Ok(Handle {
            addr,
            ca_pem: tls.map(|t| t.ca_pem),
            api,
            dataplane,
            state,
            shutdown: tx,
            tasks,
        })
    }
}

fn seed(api: &Api, config: &Config) -> anyhow::Result<()> {
    let ns = api.resource("v1", "Namespace")?;
    let opts = api::WriteOptions {
        field_manager: Some("localkube".into()),
        ..Default::default()
    };
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        api.create(&ns, "", json!({"metadata": {"name": n}}), &opts)?;
    }
    let node = api.resource("v1", "Node")?;
    for i in 0..config.sim.nodes {
        let name = format!("localkube-node-{i}");
        let mut labels = json!({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"});
        if let Some(extra) = config.sim.node_labels.get(i) {
            for (k, v) in extra {
                labels[k] = json!(v);
            }
        }
        let created = api.create(&node, "", json!({"metadata": {"name": name, "labels": labels}, "spec": {"podCIDR": format!("10.244.{i}.0/24")}}), &opts)?;
        let mut o = created.object;
        o["status"] = json!({
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": util::now(), "lastTransitionTime": util::now()}],
            "addresses": [{"type": "InternalIP", "address": format!("172.18.0.{}", i + 2)}, {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.32.0", "kubeProxyVersion": "v1.32.0", "operatingSystem": "linux", "architecture": "amd64", "containerRuntimeVersion": "localkube://1.0"},
            "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
            "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"},
        });
        api.update(&node, "", &name, o, "status", &opts)?;
    }
    Ok(())
}

impl Handle {
    /// The base URL (`http://127.0.0.1:PORT`; `https://` with RBAC).
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The External Metrics API's adapter: install it, publish values.
    pub fn external_metrics(&self) -> &external_metrics::ExternalMetrics {
        &self.state.external_metrics
    }

    /// A kubeconfig (YAML) for kubectl and kube: plain HTTP, namespace `default`; with RBAC,
    /// it carries the admin token (`kubernetes-admin` in `system:masters`).
    pub fn kubeconfig(&self) -> String {
        if self.state.auth.enabled() {
            self.kubeconfig_with_token(&self.state.auth.admin_token)
        } else {
            kubeconfig_for(&self.url())
        }
    }

    /// A kubeconfig whose user presents the bearer `token` (and trusts the server's CA).
    pub fn kubeconfig_with_token(&self, token: &str) -> String {
        let kc = kubeconfig_with_token(&self.url(), token);
        match &self.ca_pem {
            Some(ca) => {
                use base64::Engine;
                let data = base64::engine::general_purpose::STANDARD.encode(ca);
                kc.replacen(
                    "  cluster:\n",
                    &format!("  cluster:\n    certificate-authority-data: {data}\n"),
                    1,
                )
            }
            None => kc,
        }
    }

    /// Authentication and authorization state (the audit of decisions, the signing key).
    pub fn auth(&self) -> &auth::Auth {
        &self.state.auth
    }

    /// A token for the ServiceAccount `namespace/name`, as `kubectl create token` gets one
    /// (the TokenRequest subresource, default audience, `expiration_seconds` lifetime).
    pub fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        expiration_seconds: i64,
    ) -> anyhow::Result<String> {
        auth::reviews::mint(
            &self.state.auth,
            &self.api,
            namespace,
            name,
            expiration_seconds,
        )
        .map_err(|e| anyhow::anyhow!("{}", e.message))
    }

    /// Writes the kubeconfig to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// The data plane's proxy URL (`HTTP_PROXY` for processes that should reach Services by
    /// name), when the data plane runs.
    pub fn proxy_url(&self) -> Option<String> {
        self.dataplane.as_ref().map(dataplane::DataPlane::proxy_url)
    }

    /// Where Prometheus scrapes the data plane's request metrics, when it runs.
    pub fn dataplane_metrics_url(&self) -> Option<String> {
        self.dataplane
            .as_ref()
            .map(dataplane::DataPlane::metrics_url)
    }

    /// Subscribes to every change in the store (for in-process observers).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<store::StoreEvent>> {
        self.api.store.subscribe()
    }

    /// Replaces the fault injection settings at run time.
    pub fn set_faults(&self, faults: Faults) {
        if let Ok(mut f) = self.state.faults.write() {
            *f = faults;
        }
    }

    /// Stops serving (also done on drop).
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A kubeconfig pointing at `url` whose user presents the bearer `token`.
pub fn kubeconfig_with_token(url: &str, token: &str) -> String {
    kubeconfig_for(url).replace("  user: {}\n", &format!("  user:\n    token: {token}\n"))
}

/// A kubeconfig pointing at `url`.
pub fn kubeconfig_for(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: localkube
  cluster:
    server: {url}
contexts:
- name: localkube
  context:
    cluster: localkube
    user: localkube
    namespace: default
current-context: localkube
users:
- name: localkube
  user: {{}}
preferences: {{}}
"
    )
}
