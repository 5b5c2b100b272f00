//! The controller's own Prometheus metrics, named and labelled as Flagger's (§9.4 of the
//! behaviour reference: `flagger_info`, `flagger_canary_total`, `_status`, `_weight`,
//! `_metric_analysis`, `_duration_seconds`, `_successes_total`, `_failures_total`), the
//! process metrics Go's client exports (`process_*`, see [`process`]), and flagger-rs's own
//! reconcile and conflict counters.

pub mod process;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use flagger_api::{Canary, CanaryPhase};
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use tokio::task::JoinHandle;

/// The buckets of `flagger_canary_duration_seconds`: Flagger's (the Go client's defaults).
pub const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

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

/// Labels of `flagger_canary_check_value` (flagger-rs).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub name: String,
    pub namespace: String,
    pub metric: String,
    pub provider: String,
}

/// Labels of `flagger_canary_check_threshold` (flagger-rs): `bound` is `min` or `max`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThresholdLabels {
    pub name: String,
    pub namespace: String,
    pub metric: String,
    pub provider: String,
    pub bound: String,
}

/// Labels of `flagger_canary_checks_total` (flagger-rs): `verdict` is `pass`, `fail`,
/// `insufficient_data` or `error`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub name: String,
    pub namespace: String,
    pub metric: String,
    pub verdict: String,
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
    /// `transient`, `invalid_spec`, `conflict`, `provider` or `auth`.
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
    pub check_value: Family<CheckLabels, Gauge<f64, AtomicU64>>,
    pub check_threshold: Family<ThresholdLabels, Gauge<f64, AtomicU64>>,
    pub checks: Family<VerdictLabels, Counter>,
    pub duration: Family<CanaryLabels, Histogram>,
    pub successes: Family<RunLabels, Counter>,
    pub failures: Family<RunLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub conflicts: Family<ConflictLabels, Counter>,
    pub reconcile_duration: Histogram,
    /// How late analysis ticks began (flagger-rs).
    pub tick_lateness: Histogram,
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
            check_value: Family::default(),
            check_threshold: Family::default(),
            checks: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
            successes: Family::default(),
            failures: Family::default(),
            reconcile_errors: Family::default(),
            conflicts: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            // 1 ms to about 70 s in steps of 25%: fine enough for the scale bench's p50/p99.
            tick_lateness: Histogram::new(exponential_buckets(0.001, 1.25, 51)),
        };
        registry.register(
            "flagger_info",
            "Flagger version and mesh provider information",
            m.info.clone(),
        );
        registry.register(
            "flagger_canary_total",
            "Canaries per namespace, counted every control-loop interval",
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
            "flagger_canary_check_value",
            "Last value of each metric check, next to flagger_canary_check_threshold (flagger-rs)",
            m.check_value.clone(),
        );
        registry.register(
            "flagger_canary_check_threshold",
            "Accepted range of each metric check, bound=min or max (flagger-rs)",
            m.check_threshold.clone(),
        );
        registry.register(
            "flagger_canary_checks",
            "Metric checks by verdict: pass, fail, insufficient_data, error (flagger-rs)",
            m.checks.clone(),
        );
        registry.register(
            "flagger_canary_duration_seconds",
            "Seconds taken by the analysis of a canary's tick",
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
            "flagger_tick_lateness_seconds",
            "Seconds between when a canary's analysis tick was due and when its reconcile began (flagger-rs)",
            m.tick_lateness.clone(),
        );
        registry.register(
            "flagger_field_conflicts",
            "Changes by other field managers to fields of generated objects, by what the controller did",
            m.conflicts.clone(),
        );
        registry.register_collector(Box::new(process::ProcessCollector));
        m
    }

    /// Sets `flagger_canary_total` for every namespace that has canaries. As Flagger's, a
    /// namespace whose last canary went keeps its last count.
    pub fn set_totals<'a>(&self, namespaces: impl IntoIterator<Item = &'a str>) {
        let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
        for ns in namespaces {
            *totals.entry(ns).or_default() += 1;
        }
        for (ns, total) in totals {
            self.canary_total
                .get_or_create(&NamespaceLabels {
                    namespace: ns.into(),
                })
                .set(total);
        }
    }

    /// Counts the canaries of `store` every `every` (Flagger's control-loop interval), for
    /// `flagger_canary_total`, until the returned task is aborted.
    pub fn count_canaries(&self, store: Store<Canary>, every: Duration) -> JoinHandle<()> {
        let metrics = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every.max(Duration::from_millis(100)));
            loop {
                ticks.tick().await;
                let canaries = store.state();
                let namespaces: Vec<String> =
                    canaries.iter().filter_map(|c| c.namespace()).collect();
                metrics.set_totals(namespaces.iter().map(String::as_str));
            }
        })
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

    /// Exports one metric check: its value next to its range, and its verdict counted.
    pub fn record_check(&self, target: &str, namespace: &str, check: &flagger_api::CheckStatus) {
        let provider = check.provider.clone().unwrap_or_default();
        if let Some(v) = check.value {
            self.check_value
                .get_or_create(&CheckLabels {
                    name: target.into(),
                    namespace: namespace.into(),
                    metric: check.name.clone(),
                    provider: provider.clone(),
                })
                .set(v);
        }
        for (bound, value) in [("min", check.min), ("max", check.max)] {
            if let Some(v) = value {
                self.check_threshold
                    .get_or_create(&ThresholdLabels {
                        name: target.into(),
                        namespace: namespace.into(),
                        metric: check.name.clone(),
                        provider: provider.clone(),
                        bound: bound.into(),
                    })
                    .set(v);
            }
        }
        let verdict = flagger_core::explain::Verdict::parse(&check.verdict)
            .map(|v| v.label())
            .unwrap_or("error");
        self.checks
            .get_or_create(&VerdictLabels {
                name: target.into(),
                namespace: namespace.into(),
                metric: check.name.clone(),
                verdict: verdict.into(),
            })
            .inc();
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
        m.set_totals(["test", "prod", "test"]);
        m.duration
            .get_or_create(&CanaryLabels {
                name: "podinfo".into(),
                namespace: "test".into(),
            })
            .observe(0.2);
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
            "flagger_canary_total{namespace=\"test\"} 2",
            "flagger_canary_total{namespace=\"prod\"} 1",
            "flagger_canary_duration_seconds_count{name=\"podinfo\",namespace=\"test\"} 1",
            "# TYPE process_cpu_seconds counter",
            "flagger_field_conflicts_total{name=\"podinfo\",namespace=\"test\",object=\"Service/podinfo\",manager=\"kustomize-controller\",action=\"reverted\"} 1",
        ] {
            assert!(text.contains(name), "missing {name:?} in:\n{text}");
        }
        // Flagger's buckets (the Go client's defaults) and +Inf.
        let buckets = text
            .lines()
            .filter(|l| l.starts_with("flagger_canary_duration_seconds_bucket{"))
            .count();
        assert_eq!(buckets, DURATION_BUCKETS.len() + 1, "{text}");
    }

    #[test]
    fn a_check_exports_its_value_next_to_its_threshold_and_its_verdict() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        let check = |value: Option<f64>, verdict: &str| flagger_api::CheckStatus {
            name: "request-success-rate".into(),
            provider: Some("prometheus".into()),
            value,
            min: Some(99.0),
            verdict: verdict.into(),
            ..Default::default()
        };
        m.record_check("podinfo", "test", &check(Some(94.5), "Fail"));
        m.record_check("podinfo", "test", &check(None, "InsufficientData"));
        m.record_check("podinfo", "test", &check(None, "InsufficientData"));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        let labels = r#"name="podinfo",namespace="test",metric="request-success-rate""#;
        for line in [
            format!(r#"flagger_canary_check_value{{{labels},provider="prometheus"}} 94.5"#),
            format!(
                r#"flagger_canary_check_threshold{{{labels},provider="prometheus",bound="min"}} 99.0"#
            ),
            format!(r#"flagger_canary_checks_total{{{labels},verdict="fail"}} 1"#),
            format!(r#"flagger_canary_checks_total{{{labels},verdict="insufficient_data"}} 2"#),
        ] {
            assert!(text.contains(&line), "missing {line:?} in:\n{text}");
        }
        assert!(!text.contains(r#"bound="max""#), "no max was set:\n{text}");
    }
}
