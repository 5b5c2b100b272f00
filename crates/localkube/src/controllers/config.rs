//! The simulator's settings and the pod-template annotations that steer a simulated pod.

use std::collections::HashMap;
use std::time::Duration;

use super::hpa::HpaConfig;
use super::images::ImageRegistry;

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
