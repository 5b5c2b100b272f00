//! Where the HPA controller reads its metrics, as a cluster's metrics APIs would answer:
//!
//! - resource metrics (`metrics.k8s.io`: `cpu`, `memory`) from the usage model
//!   ([`super::usage`]: CPU follows each pod's request rate);
//! - custom metrics (`custom.metrics.k8s.io`, as prometheus-adapter serves request counters):
//!   `http_requests_per_second` (alias `http_requests`), the requests per second each pod
//!   answered, for `Pods` metrics and for `Object` metrics of a Service or a workload (the sum
//!   over the pods it selects);
//! - external metrics (`external.metrics.k8s.io`) from the KEDA-like scaler, when it runs
//!   ([`ExternalMetrics`]).
//!
//! Any other metric is unavailable, with the error the controller reports for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};

use super::autoscaling::{self, PodMetric, Proposal};
use super::objects::{pod_ready, res, uid};
use super::quantity;
use super::usage::{self, Rates};
use crate::api::Api;
use crate::dataplane::metrics::RequestMetrics;
use crate::selectors::LabelSelector;
use crate::util;

/// The custom metric names the data plane answers: requests per second per pod.
const REQUEST_RATE: [&str; 2] = ["http_requests_per_second", "http_requests"];

/// (namespace, metric, ScaledObject).
type MetricKey = (String, String, String);

/// Values of external metrics, by (namespace, metric, ScaledObject): what KEDA's metrics
/// server would answer (`Err`: the message of its failure).
#[derive(Debug, Clone, Default)]
pub(super) struct ExternalMetrics(Arc<Mutex<HashMap<MetricKey, Result<f64, String>>>>);

impl ExternalMetrics {
    pub(super) fn set(&self, ns: &str, metric: &str, owner: &str, v: Result<f64, String>) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.insert((ns.into(), metric.into(), owner.into()), v);
    }

    fn get(&self, ns: &str, metric: &str, owner: &str) -> Option<Result<f64, String>> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&(ns.into(), metric.into(), owner.into())).cloned()
    }

    /// Forgets the metrics of a ScaledObject.
    pub(super) fn forget(&self, ns: &str, owner: &str) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|(n, _, o), _| !(n == ns && o == owner));
    }
}

/// The label KEDA's external metrics are selected by.
pub(super) const SCALED_OBJECT_LABEL: &str = "scaledobject.keda.sh/name";

/// What the metrics are read from in one sync.
pub(super) struct Sources<'a> {
    pub api: &'a Api,
    pub requests: Option<&'a RequestMetrics>,
    pub rates: &'a mut Rates,
    pub external: &'a ExternalMetrics,
    pub now: Instant,
    pub tolerance: f64,
}

/// The scale target, as the HPA sees it.
pub(super) struct Target {
    pub namespace: String,
    pub selector: LabelSelector,
    /// `spec.replicas`.
    pub current: i32,
    /// `status.replicas`.
    pub status_replicas: i32,
}

/// A metric computed: its proposal, its name in messages and its `currentMetrics` entry.
pub(super) struct Computed {
    pub proposal: Proposal,
    pub name: String,
    pub status: Value,
}

/// A metric that could not be computed: the condition reason and the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failed {
    pub reason: &'static str,
    pub message: String,
}

fn failed(reason: &'static str, message: impl Into<String>) -> Failed {
    Failed {
        reason,
        message: message.into(),
    }
}

/// A label selector as Go prints it (`&LabelSelector{MatchLabels:map[string]string{k: v,},...}`),
/// which is how the controller names external metrics in its messages.
pub(super) fn go_selector(sel: &Value) -> String {
    let mut labels: Vec<(String, String)> = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    labels.sort();
    let labels: String = labels.iter().map(|(k, v)| format!("{k}: {v},")).collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{}},}}"
    )
}

impl Sources<'_> {
    /// Computes one entry of `spec.metrics` for the target.
    pub(super) fn compute(&mut self, m: &Value, t: &Target) -> Result<Computed, Failed> {
        match m["type"].as_str().unwrap_or_default() {
            "Resource" => self.resource(&m["resource"], t),
            "Pods" => self.pods_metric(&m["pods"], t),
            "Object" => self.object(&m["object"], t),
            "External" => self.external_metric(&m["external"], t),
            "ContainerResource" => {
                let c = &m["containerResource"];
                let name = c["name"].as_str().unwrap_or_default();
                Err(failed(
                    "FailedGetContainerResourceMetric",
                    format!(
                        "failed to get {name} utilization of container {}: per-container usage is not simulated by localkube (use a Resource metric)",
                        c["container"].as_str().unwrap_or_default()
                    ),
                ))
            }
            other => Err(failed(
                "InvalidMetricSourceType",
                format!("unknown metric source type \"{other}\""),
            )),
        }
    }

    /// The target's pods (those being deleted or failed left out).
    fn pods(&self, t: &Target) -> Vec<Arc<Value>> {
        let Some(pinfo) = res(self.api, "v1", "Pod") else {
            return Vec::new();
        };
        // From the store's label index: the pods carrying the selector's labels, not every
        // pod of the namespace.
        self.api
            .store
            .select_shared(&pinfo.storage_key(), &t.namespace, &t.selector)
            .into_iter()
            .filter(|p| {
                p.pointer("/metadata/deletionTimestamp").is_none()
                    && p.pointer("/status/phase").and_then(Value::as_str) != Some("Failed")
            })
            .collect()
    }

    /// Requests per second the pod answered, or `None` when it runs no container.
    fn rate(&mut self, p: &Value) -> Option<f64> {
        let running = p
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c.pointer("/state/running").is_some()));
        if !running {
            return None;
        }
        let count: u64 = self
            .requests
            .map(|m| {
                m.counts(util::namespace(p), util::name(p))
                    .values()
                    .sum::<u64>()
            })
            .unwrap_or(0);
        let started = p
            .pointer("/status/startTime")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .and_then(|t| {
                (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                    .to_std()
                    .ok()
            })
            .and_then(|age| self.now.checked_sub(age))
            .unwrap_or(self.now);
        Some(self.rates.rate(uid(p), count, started, self.now))
    }

    fn pod_metric(&mut self, p: &Value, value: Option<f64>, request: f64) -> PodMetric {
        PodMetric {
            name: util::name(p).to_string(),
            pending: p.pointer("/status/phase").and_then(Value::as_str) != Some("Running"),
            ready: pod_ready(p),
            value,
            request,
        }
    }

    fn resource(&mut self, r: &Value, t: &Target) -> Result<Computed, Failed> {
        let name = r["name"].as_str().unwrap_or_default().to_string();
        let target = &r["target"];
        let pods = self.pods(t);
        let reason = "FailedGetResourceMetric";
        if name != "cpu" && name != "memory" {
            return Err(failed(
                reason,
                format!(
                    "failed to get {name} utilization: unable to get metrics for resource {name}: no metrics returned from resource metrics API"
                ),
            ));
        }
        if pods.is_empty() {
            return Err(failed(
                reason,
                format!(
                    "failed to get {name} utilization: no pods returned by selector while calculating replica count"
                ),
            ));
        }
        let cpu = name == "cpu";
        let utilization = target["type"].as_str() == Some("Utilization");
        let mut samples = Vec::new();
        for p in &pods {
            let usage = if cpu {
                self.rate(p).map(|r| usage::cpu(p, r))
            } else {
                self.rate(p).map(|_| usage::memory(p))
            };
            let request = if utilization {
                request_of(p, &name)
                    .map_err(|e| failed(reason, format!("failed to get {name} utilization: {e}")))?
            } else {
                0.0
            };
            samples.push(self.pod_metric(p, usage, request));
        }
        let fmt = |v: f64| {
            if cpu {
                quantity::format(v)
            } else {
                quantity::format_bytes(v)
            }
        };
        if utilization {
            let pct = target["averageUtilization"].as_f64().unwrap_or(80.0);
            let p =
                autoscaling::utilization_replicas(&samples, pct, t.current, cpu, self.tolerance)
                    .map_err(|e| {
                        failed(reason, format!("failed to get {name} utilization: {e}"))
                    })?;
            Ok(Computed {
                proposal: p,
                name: format!("{name} resource utilization (percentage of request)"),
                status: json!({"type": "Resource", "resource": {"name": name, "current": {"averageUtilization": p.utilization, "averageValue": fmt(p.value)}}}),
            })
        } else {
            let want = quantity::parse(&target["averageValue"]).unwrap_or(0.0);
            let p = autoscaling::average_replicas(&samples, want, t.current, cpu, self.tolerance)
                .map_err(|e| failed(reason, format!("failed to get {name} usage: {e}")))?;
            Ok(Computed {
                proposal: p,
                name: format!("{name} resource"),
                status: json!({"type": "Resource", "resource": {"name": name, "current": {"averageValue": fmt(p.value)}}}),
            })
        }
    }

    fn pods_metric(&mut self, m: &Value, t: &Target) -> Result<Computed, Failed> {
        let name = m
            .pointer("/metric/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let reason = "FailedGetPodsMetric";
        if !REQUEST_RATE.contains(&name) {
            return Err(failed(
                reason,
                format!(
                    "unable to get metric {name}: unable to fetch metrics from custom metrics API: the server could not find the metric {name} for pods"
                ),
            ));
        }
        let pods = self.pods(t);
        let mut samples = Vec::new();
        for p in &pods {
            let v = self.rate(p);
            samples.push(self.pod_metric(p, v, 0.0));
        }
        let want = quantity::parse(&m["target"]["averageValue"]).unwrap_or(0.0);
        let p = autoscaling::average_replicas(&samples, want, t.current, false, self.tolerance)
            .map_err(|e| failed(reason, format!("unable to get metric {name}: {e}")))?;
        Ok(Computed {
            proposal: p,
            name: format!("pods metric {name}"),
            status: json!({"type": "Pods", "pods": {"metric": m["metric"], "current": {"averageValue": quantity::format(p.value)}}}),
        })
    }

    fn object(&mut self, m: &Value, t: &Target) -> Result<Computed, Failed> {
        let name = m
            .pointer("/metric/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let obj = &m["describedObject"];
        let (kind, oname) = (
            obj["kind"].as_str().unwrap_or_default(),
            obj["name"].as_str().unwrap_or_default(),
        );
        let reason = "FailedGetObjectMetric";
        let unable = |why: String| {
            failed(
                reason,
                format!(
                    "unable to get metric {name}: {kind} on {} {oname}/{why}",
                    t.namespace
                ),
            )
        };
        if !REQUEST_RATE.contains(&name) {
            return Err(unable(format!(
                "unable to fetch metrics from custom metrics API: the server could not find the metric {name} for {}",
                kind.to_lowercase()
            )));
        }
        let selector = self.described_selector(obj, &t.namespace).ok_or_else(|| {
            unable(format!(
                "unable to fetch metrics from custom metrics API: {kind} \"{oname}\" not found"
            ))
        })?;
        let of_object = Target {
            namespace: t.namespace.clone(),
            selector,
            current: t.current,
            status_replicas: t.status_replicas,
        };
        let mut total = 0.0;
        for p in self.pods(&of_object) {
            total += self.rate(&p).unwrap_or(0.0);
        }
        let target = &m["target"];
        let (p, current) = if target["type"].as_str() == Some("AverageValue") {
            let want = quantity::parse(&target["averageValue"]).unwrap_or(0.0);
            let p = autoscaling::per_pod_replicas(total, want, t.status_replicas, self.tolerance)
                .map_err(unable)?;
            (p, json!({"averageValue": quantity::format(p.value)}))
        } else {
            let want = quantity::parse(&target["value"]).unwrap_or(0.0);
            let ready = self.pods(t).iter().filter(|p| pod_ready(p)).count();
            let p = autoscaling::value_replicas(total, want, t.current, ready, self.tolerance)
                .map_err(unable)?;
            (p, json!({"value": quantity::format(p.value)}))
        };
        Ok(Computed {
            proposal: p,
            name: format!("{kind} metric {name}"),
            status: json!({"type": "Object", "object": {"describedObject": obj, "metric": m["metric"], "current": current}}),
        })
    }

    /// The selector of a Service or workload in `ns`.
    fn described_selector(&self, obj: &Value, ns: &str) -> Option<LabelSelector> {
        let api_version = obj["apiVersion"].as_str().unwrap_or("v1");
        let info = res(self.api, api_version, obj["kind"].as_str()?)?;
        let o = self
            .api
            .store
            .get(&info.storage_key(), ns, obj["name"].as_str()?)?;
        let sel = o.pointer("/spec/selector")?;
        Some(
            match sel.get("matchLabels").or(sel.get("matchExpressions")) {
                Some(_) => LabelSelector::from_object(sel),
                None => LabelSelector::from_map(sel.as_object()?),
            },
        )
    }

    fn external_metric(&mut self, m: &Value, t: &Target) -> Result<Computed, Failed> {
        let name = m
            .pointer("/metric/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let selector = m.pointer("/metric/selector").cloned().unwrap_or(json!({}));
        let owner = selector
            .pointer(&format!(
                "/matchLabels/{}",
                SCALED_OBJECT_LABEL.replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let reason = "FailedGetExternalMetric";
        let prefix = format!(
            "unable to get external metric {}/{name}/{}: unable to fetch metrics from external metrics API",
            t.namespace,
            go_selector(&selector)
        );
        let total = match self.external.get(&t.namespace, name, owner) {
            Some(Ok(v)) => v,
            Some(Err(e)) => return Err(failed(reason, format!("{prefix}: {e}"))),
            None => {
                return Err(failed(
                    reason,
                    format!(
                        "{prefix}: the server could not find the requested resource (get {name}.external.metrics.k8s.io)"
                    ),
                ));
            }
        };
        let target = &m["target"];
        let (p, current) = if target["type"].as_str() == Some("Value") {
            let want = quantity::parse(&target["value"]).unwrap_or(0.0);
            let ready = self.pods(t).iter().filter(|p| pod_ready(p)).count();
            let p = autoscaling::value_replicas(total, want, t.current, ready, self.tolerance)
                .map_err(|e| failed(reason, format!("{prefix}: {e}")))?;
            (p, json!({"value": quantity::format(p.value)}))
        } else {
            let want = quantity::parse(&target["averageValue"]).unwrap_or(0.0);
            let p = autoscaling::per_pod_replicas(total, want, t.status_replicas, self.tolerance)
                .map_err(|e| failed(reason, format!("{prefix}: {e}")))?;
            (p, json!({"averageValue": quantity::format(p.value)}))
        };
        Ok(Computed {
            proposal: p,
            name: format!("external metric {name}({})", go_selector(&selector)),
            status: json!({"type": "External", "external": {"metric": m["metric"], "current": current}}),
        })
    }
}

/// The sum of a pod's containers' requests of `resource`.
fn request_of(p: &Value, resource: &str) -> Result<f64, String> {
    let mut total = 0.0;
    for c in p
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let req = c
            .pointer(&format!("/resources/requests/{resource}"))
            .and_then(quantity::parse);
        match req {
            Some(v) => total += v,
            None => {
                return Err(format!(
                    "missing request for {resource} in container {} of Pod {}",
                    c["name"].as_str().unwrap_or_default(),
                    util::name(p)
                ));
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_print_as_go_prints_them() {
        assert_eq!(
            go_selector(&json!({"matchLabels": {SCALED_OBJECT_LABEL: "podinfo-so"}})),
            "&LabelSelector{MatchLabels:map[string]string{scaledobject.keda.sh/name: podinfo-so,},MatchExpressions:[]LabelSelectorRequirement{},}"
        );
    }

    #[test]
    fn requests_are_summed_and_required() {
        let p = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m"}}},
            {"name": "b", "resources": {"requests": {"cpu": "50m"}}},
        ]}});
        let cpu = request_of(&p, "cpu").expect("every container has one");
        assert!((cpu - 0.15).abs() < 1e-9);
        assert_eq!(
            request_of(&p, "memory"),
            Err("missing request for memory in container a of Pod p".to_string())
        );
    }
}
