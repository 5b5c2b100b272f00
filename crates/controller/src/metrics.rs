//! The controller's own Prometheus metrics, named and labelled as Flagger's (§9.4 of the
//! behaviour reference), plus reconcile error counters.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use flagger_api::CanaryPhase;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabels {
    pub version: String,
    pub mesh_provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CanaryLabels {
    /// The target name, as Flagger labels it.
    pub name: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WeightLabels {
    pub workload: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetricLabels {
    pub name: String,
    pub namespace: String,
    pub metric: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub name: String,
    pub namespace: String,
    pub deployment_strategy: String,
    pub analysis_status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The step of the reconcile that failed (`observe`, `execute`, ...).
    pub step: String,
    /// `transient`, `invalid_spec`, `conflict` or `provider`.
    pub category: String,
}

/// Every metric the controller exports.
#[derive(Clone)]
pub struct Metrics {
    pub info: Family<InfoLabels, Gauge>,
    pub canary_total: Family<NamespaceLabels, Gauge>,
    pub status: Family<CanaryLabels, Gauge>,
    pub weight: Family<WeightLabels, Gauge>,
    pub metric_analysis: Family<MetricLabels, Gauge<f64, AtomicU64>>,
    pub duration: Family<CanaryLabels, Histogram>,
    pub successes: Family<RunLabels, Counter>,
    pub failures: Family<RunLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub conflicts: Family<ConflictLabels, Counter>,
    pub reconcile_duration: Histogram,
}

/// Labels of `flagger_field_conflicts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConflictLabels {
    pub name: String,
    pub namespace: String,
    /// `Service/app`
    pub object: String,
    /// The other field manager.
    pub manager: String,
    /// `reverted` or `yielded`.
    pub action: String,
}

impl Metrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            info: Family::default(),
            canary_total: Family::default(),
            status: Family::default(),
            weight: Family::default(),
            metric_analysis: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            successes: Family::default(),
            failures: Family::default(),
            reconcile_errors: Family::default(),
            conflicts: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
        };
        registry.register(
            "flagger_info",
            "Flagger version and mesh provider information",
            m.info.clone(),
        );
        registry.register(
            "flagger_canary_total",
            "Number of canaries per namespace",
            m.canary_total.clone(),
        );
        registry.register(
            "flagger_canary_status",
            "Last canary analysis result: 0 progressing, 1 succeeded or idle, 2 failed",
            m.status.clone(),
        );
        registry.register(
            "flagger_canary_weight",
            "Current traffic weight of the primary and canary",
            m.weight.clone(),
        );
        registry.register(
            "flagger_canary_metric_analysis",
            "Last value of each metric check",
            m.metric_analysis.clone(),
        );
        registry.register(
            "flagger_canary_duration_seconds",
            "Seconds taken by analysis ticks",
            m.duration.clone(),
        );
        registry.register(
            "flagger_canary_successes",
            "Completed canary runs",
            m.successes.clone(),
        );
        registry.register(
            "flagger_canary_failures",
            "Failed canary runs",
            m.failures.clone(),
        );
        registry.register(
            "flagger_reconcile_errors",
            "Reconcile errors by step and category",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "flagger_reconcile_duration_seconds",
            "Seconds taken by each reconcile of a canary (flagger-rs)",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "flagger_field_conflicts",
            "Changes by other field managers to fields of generated objects, by what the controller did",
            m.conflicts.clone(),
        );
        m
    }

    /// Sets `flagger_canary_status` from a phase (0 progressing, 2 failed, 1 otherwise).
    pub fn set_phase(&self, target: &str, namespace: &str, phase: CanaryPhase) {
        let value = match phase {
            CanaryPhase::Progressing => 0,
            CanaryPhase::Failed => 2,
            _ => 1,
        };
        self.status
            .get_or_create(&CanaryLabels {
                name: target.into(),
                namespace: namespace.into(),
            })
            .set(value);
    }

    /// Sets `flagger_canary_weight` for the primary and the canary.
    pub fn set_weights(&self, target: &str, namespace: &str, primary: u32, canary: u32) {
        self.weight
            .get_or_create(&WeightLabels {
                workload: format!("{target}-primary"),
                namespace: namespace.into(),
            })
            .set(primary as i64);
        self.weight
            .get_or_create(&WeightLabels {
                workload: target.into(),
                namespace: namespace.into(),
            })
            .set(canary as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flaggers_metric_names_and_ours_are_exported() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.set_phase("podinfo", "test", CanaryPhase::Progressing);
        m.set_weights("podinfo", "test", 90, 10);
        m.reconcile_duration.observe(0.002);
        m.conflicts
            .get_or_create(&ConflictLabels {
                name: "podinfo".into(),
                namespace: "test".into(),
                object: "Service/podinfo".into(),
                manager: "kustomize-controller".into(),
                action: "reverted".into(),
            })
            .inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        for name in [
            "flagger_canary_status{name=\"podinfo\",namespace=\"test\"} 0",
            "flagger_canary_weight{workload=\"podinfo-primary\",namespace=\"test\"} 90",
            "flagger_reconcile_duration_seconds_count 1",
            "flagger_field_conflicts_total{name=\"podinfo\",namespace=\"test\",object=\"Service/podinfo\",manager=\"kustomize-controller\",action=\"reverted\"} 1",
        ] {
            assert!(text.contains(name), "missing {name:?} in:\n{text}");
        }
    }
}
