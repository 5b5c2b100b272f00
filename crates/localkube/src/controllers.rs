//! Simulated controllers, one per file: Deployment → ReplicaSet → Pod (`deployment`,
//! `replicaset`), the scheduler (`scheduler`) and the kubelet (`kubelet`, running
//! containers (`containers`) from a simulated registry (`images`) and probing them
//! (`probes`)), DaemonSets (`daemonset`), Endpoints/EndpointSlices (`endpoints`),
//! HorizontalPodAutoscalers (`hpa`: the algorithm in `autoscaling`, the metrics in
//! `hpa_metrics` and `usage`), the optional KEDA-like scaler (`keda`), garbage collection
//! by ownerReferences (`gc`), which also drives namespace termination (`crate::namespace`).
//!
//! Each controller is level-triggered: it wakes on store events of the resources it cares
//! about (and on a timer while something is time-dependent) and reconciles every object
//! (`queue`).
//!
//! Layering inside: `config`, `objects` (helpers, events), `queue`, `http`, `quantity` at the
//! bottom, the controllers above them (the kubelet above `containers`, `probes` and
//! `scheduler`; `hpa` and `keda` above `hpa_metrics`, `usage` and `autoscaling`); this file
//! only declares, re-exports and starts them, and no controller reaches back up into it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::api::Api;

mod autoscaling;
mod clusterrole_aggregation;
mod config;
mod containers;
mod daemonset;
mod deployment;
mod endpoints;
mod gc;
mod hpa;
mod hpa_metrics;
mod http;
pub mod images;
pub mod keda;
mod knative;
mod kubelet;
mod objects;
mod probes;
mod quantity;
mod queue;
mod replicaset;
mod scheduler;
pub mod usage;

pub use crate::util::parse_duration;
pub use config::{CRASH_LOOP, NEVER_READY, READY_AFTER, SimConfig};
pub use hpa::HpaConfig;
pub use images::ImageRegistry;
pub use probes::USER_AGENT as PROBE_USER_AGENT;

/// What the simulated cluster reaches of the data plane, when it runs.
#[derive(Debug, Clone, Default)]
pub struct DataPlaneLink {
    /// Its proxy: the kubelet's probes and other in-cluster requests go through it.
    pub proxy: Option<SocketAddr>,
    /// The requests it recorded (the HPA's simulated CPU follows them).
    pub requests: Option<Arc<crate::dataplane::metrics::RequestMetrics>>,
}

/// Starts all simulated controllers.
pub fn spawn_all(
    api: Api,
    sim: SimConfig,
    link: DataPlaneLink,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let tick = sim.tick;
    let sim = Arc::new(sim);
    let (kubelet, probe_reports) = kubelet::Kubelet::new(sim.clone(), link.proxy);
    let external = hpa_metrics::ExternalMetrics::default();
    let autoscalers =
        hpa::Autoscalers::new(sim.hpa.clone(), link.requests.clone(), external.clone());
    let mut tasks = vec![
        tokio::spawn(queue::run(
            api.clone(),
            "deployment",
            deployment::Deployments::new(tick),
            shutdown.clone(),
        )),
        tokio::spawn(queue::run(
            api.clone(),
            "replicaset",
            replicaset::ReplicaSets,
            shutdown.clone(),
        )),
        tokio::spawn(queue::run_with_inputs(
            api.clone(),
            "kubelet",
            kubelet,
            probe_reports,
            shutdown.clone(),
        )),
        tokio::spawn(queue::run(
            api.clone(),
            "daemonset",
            daemonset::DaemonSets,
            shutdown.clone(),
        )),
        tokio::spawn(queue::run(
            api.clone(),
            "endpoints",
            endpoints::EndpointsController::default(),
            shutdown.clone(),
        )),
        tokio::spawn(queue::run(
            api.clone(),
            "horizontal-pod-autoscaler",
            autoscalers,
            shutdown.clone(),
        )),
        tokio::spawn(queue::run(
            api.clone(),
            "knative-serving",
            knative::KnativeServices,
            shutdown.clone(),
        )),
        tokio::spawn(queue::run(
            api.clone(),
            "clusterrole-aggregation",
            clusterrole_aggregation::Aggregation,
            shutdown.clone(),
        )),
        tokio::spawn(queue::run(
            api.clone(),
            "garbage-collector",
            gc::GarbageCollector::new(tick),
            shutdown.clone(),
        )),
    ];
    if sim.keda {
        let (keda, answers) = keda::Keda::new(link.proxy, external);
        tasks.push(tokio::spawn(queue::run_with_inputs(
            api.clone(),
            "keda",
            keda,
            answers,
            shutdown.clone(),
        )));
    }
    tasks
}
