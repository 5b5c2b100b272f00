//! Simulated controllers.

use std::collections::HashMap;
use std::time::Duration;

use crate::api::Api;

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of simulated nodes.
    pub nodes: usize,
    /// Extra labels per node (by index).
    pub node_labels: Vec<HashMap<String, String>>,
    /// How long a new pod takes to become ready (overridden by `localkube.dev/ready-after`).
    pub readiness_delay: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 1,
            node_labels: Vec::new(),
            readiness_delay: Duration::from_millis(0),
        }
    }
}

/// Starts all simulated controllers.
pub fn spawn_all(_api: Api, _sim: SimConfig, _shutdown: tokio::sync::watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    Vec::new()
}
