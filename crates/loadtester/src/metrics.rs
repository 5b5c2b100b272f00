//! Prometheus metrics of the load tester (OpenMetrics text format on `/metrics`).

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum TaskResult {
    /// The command exited with status 0.
    success,
    /// The command failed (non-zero exit, signal, or could not start).
    failure,
    /// The command was killed at its timeout.
    timeout,
    /// An asynchronous task was not started because the same one was already running.
    skipped,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TaskLabels {
    pub r#type: String,
    pub result: TaskResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TypeLabels {
    pub r#type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct GateLabels {
    pub kind: String,
    pub action: String,
}

/// All metrics, registered in one registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub tasks: Family<TaskLabels, Counter>,
    pub durations: Family<TypeLabels, Histogram>,
    pub running: Family<TypeLabels, Gauge>,
    pub gate_changes: Family<GateLabels, Counter>,
    pub rejected: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("flagger_loadtester");
        let tasks = Family::<TaskLabels, Counter>::default();
        registry.register("tasks", "Tasks run, by type and result", tasks.clone());
        let durations = Family::<TypeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 4.0, 10))
        });
        registry.register(
            "task_duration_seconds",
            "Run time of the tasks' commands, by type",
            durations.clone(),
        );
        let running = Family::<TypeLabels, Gauge>::default();
        registry.register(
            "tasks_running",
            "Tasks running now, by type",
            running.clone(),
        );
        let gate_changes = Family::<GateLabels, Counter>::default();
        registry.register(
            "gate_changes",
            "Gate opens and closes",
            gate_changes.clone(),
        );
        let rejected = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "requests_rejected",
            "Requests refused, by reason (bad_request, unauthorized, forbidden)",
            rejected.clone(),
        );
        Self {
            registry,
            tasks,
            durations,
            running,
            gate_changes,
            rejected,
        }
    }

    pub fn task_done(&self, task_type: &str, result: TaskResult, seconds: Option<f64>) {
        self.tasks
            .get_or_create(&TaskLabels {
                r#type: task_type.into(),
                result,
            })
            .inc();
        if let Some(s) = seconds {
            self.durations
                .get_or_create(&TypeLabels {
                    r#type: task_type.into(),
                })
                .observe(s);
        }
    }

    pub fn running(&self, task_type: &str) -> Gauge {
        self.running
            .get_or_create(&TypeLabels {
                r#type: task_type.into(),
            })
            .clone()
    }

    pub fn gate_changed(&self, kind: &str, action: &str) {
        self.gate_changes
            .get_or_create(&GateLabels {
                kind: kind.into(),
                action: action.into(),
            })
            .inc();
    }

    pub fn rejected(&self, reason: &str) {
        self.rejected
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
