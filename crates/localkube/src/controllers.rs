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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::api::Api;
use crate::util;

mod autoscaling;
mod clusterrole_aggregation;
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

pub use hpa::HpaConfig;
pub use images::ImageRegistry;
use objects::{log_err, opts, res, uid};
pub use probes::USER_AGENT as PROBE_USER_AGENT;

/// Pod-template annotation: the pod never becomes ready.
pub const NEVER_READY: &str = "localkube.dev/never-ready";
/// Pod-template annotation: the pod's containers crash-loop.
pub const CRASH_LOOP: &str = "localkube.dev/crash-loop";
/// Pod-template annotation: the pod becomes ready after this long (e.g. `5s`, `500ms`).
pub const READY_AFTER: &str = "localkube.dev/ready-after";

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of simulated nodes.
    pub nodes: usize,
    /// Extra labels per node (by index).
    pub node_labels: Vec<HashMap<String, String>>,
    /// How long a new pod takes to become ready (overridden by `localkube.dev/ready-after`).
    pub readiness_delay: Duration,
    /// How often time-dependent work (readiness delays, progress deadlines) is rechecked.
    pub tick: Duration,
    /// The images that exist: a pod whose image is not there never runs (`ErrImagePull`).
    pub registry: ImageRegistry,
    /// The HorizontalPodAutoscaler controller's settings.
    pub hpa: HpaConfig,
    /// Run the KEDA-like scaler of ScaledObjects (and install their CRD), as a cluster with
    /// KEDA installed.
    pub keda: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 1,
            node_labels: Vec::new(),
            readiness_delay: Duration::from_millis(0),
            tick: Duration::from_millis(100),
            registry: ImageRegistry::default(),
            hpa: HpaConfig::default(),
            keda: false,
        }
    }
}

/// Parses durations like `5s`, `500ms`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// A short stable hash, like pod-template-hash.
pub fn short_hash(v: &Value) -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h: u64 = 0xcbf29ce484222325;
    for b in v.to_string().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (0..10)
        .map(|i| ALPHA[((h >> (i * 6)) % ALPHA.len() as u64) as usize] as char)
        .collect()
}

/// The Event resource and the namespace of events about `obj`.
fn event_home<'a>(
    api: &Api,
    obj: &'a Value,
) -> Option<(Arc<crate::registry::ResourceInfo>, &'a str)> {
    let ns = match util::namespace(obj) {
        "" => "default",
        n => n,
    };
    Some((res(api, "v1", "Event")?, ns))
}

/// Records a core/v1 Event about `obj`.
pub fn record_event(
    api: &Api,
    obj: &Value,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let Some((info, ns)) = event_home(api, obj) else {
        return;
    };
    let now = util::now();
    let ev = json!({
        "metadata": {"generateName": format!("{}.", util::name(obj)), "namespace": ns},
        "involvedObject": {
            "apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": util::name(obj),
            "namespace": util::namespace(obj), "uid": uid(obj),
            "resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null),
        },
        "reason": reason, "message": message, "type": type_,
        "source": {"component": component},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        "reportingComponent": component, "reportingInstance": "localkube",
        "eventTime": Value::Null,
    });
    log_err("event", api.create(&info, ns, ev, &opts(component)));
}

/// Records an Event about `obj`, or counts one more on the same event (same object, reason,
/// message and component), as the event recorder aggregates repeated events.
pub fn record_repeated_event(
    api: &Api,
    obj: &Value,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let Some((info, ns)) = event_home(api, obj) else {
        return;
    };
    let same = |e: &Value| {
        e.pointer("/involvedObject/uid").and_then(Value::as_str) == Some(uid(obj))
            && e["reason"] == reason
            && e["message"] == message
            && e.pointer("/source/component").and_then(Value::as_str) == Some(component)
    };
    let found = objects::list(api, &info, Some(ns)).into_iter().find(same);
    let Some(mut e) = found else {
        return record_event(api, obj, type_, reason, message, component);
    };
    let n = e["count"].as_i64().unwrap_or(1) + 1;
    e["count"] = json!(n);
    e["lastTimestamp"] = json!(util::now());
    let name = util::name(&e).to_string();
    log_err(
        "event",
        api.update(&info, ns, &name, e, "", &opts(component)),
    );
}

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
