//! The Kubernetes External Metrics API (`external.metrics.k8s.io/v1beta1`) as a cluster with
//! an external-metrics adapter (KEDA's metrics server, prometheus-adapter, a cloud's adapter)
//! serves it through the API server's aggregation layer: absent until an adapter is installed
//! ([`ExternalMetrics::install`]; the API server then answers 404 for the group, as one
//! without the APIService does), then listed in discovery and answering
//! `GET /apis/external.metrics.k8s.io/v1beta1/namespaces/<ns>/<metric>?labelSelector=` with an
//! `ExternalMetricValueList` of the values the adapter publishes ([`ExternalMetrics::set`])
//! whose labels match the selector. A metric the adapter does not know is an empty list.

use std::sync::RwLock;

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::selectors::LabelSelector;

pub const GROUP: &str = "external.metrics.k8s.io";
pub const VERSION: &str = "v1beta1";

/// One published value.
#[derive(Clone, Debug)]
struct Sample {
    namespace: String,
    name: String,
    labels: Value,
    /// A quantity, as adapters write it (`1500m`, `42`).
    value: String,
}

/// The adapter's values; `None` until an adapter is installed.
#[derive(Debug, Default)]
pub struct ExternalMetrics {
    samples: RwLock<Option<Vec<Sample>>>,
}

impl ExternalMetrics {
    /// Installs the adapter: the group is served from now on.
    pub fn install(&self) {
        if let Ok(mut s) = self.samples.write() {
            s.get_or_insert_with(Vec::new);
        }
    }

    pub fn installed(&self) -> bool {
        self.samples.read().map(|s| s.is_some()).unwrap_or(false)
    }

    /// Publishes (or replaces) the value of a metric with these labels; installs the adapter.
    pub fn set(&self, namespace: &str, name: &str, labels: Value, value: &str) {
        if let Ok(mut s) = self.samples.write() {
            let samples = s.get_or_insert_with(Vec::new);
            samples.retain(|x| !(x.namespace == namespace && x.name == name && x.labels == labels));
            samples.push(Sample {
                namespace: namespace.into(),
                name: name.into(),
                labels,
                value: value.into(),
            });
        }
    }

    /// The group's entry of the legacy APIGroupList, when installed.
    pub fn group_entry(&self) -> Option<Value> {
        self.installed().then(|| {
            let v = json!({"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION});
            json!({"name": GROUP, "versions": [v.clone()], "preferredVersion": v})
        })
    }

    /// Answers a request under `/apis/external.metrics.k8s.io`; `None` when the path is not
    /// the group's.
    pub fn serve(
        &self,
        segs: &[&str],
        label_selector: Option<&str>,
    ) -> Option<Result<Value, ApiError>> {
        let ["apis", GROUP, rest @ ..] = segs else {
            return None;
        };
        if !self.installed() {
            return Some(Err(ApiError::path_not_found()));
        }
        Some(match rest {
            [] => Ok(json!({
                "kind": "APIGroup", "apiVersion": "v1", "name": GROUP,
                "versions": [{"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION}],
                "preferredVersion": {"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION},
            })),
            [VERSION] => Ok(json!({
                "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{GROUP}/{VERSION}"),
                "resources": [{"name": "externalmetrics", "singularName": "", "namespaced": true, "kind": "ExternalMetricValueList", "verbs": ["get"]}],
            })),
            [VERSION, "namespaces", ns, metric] => self.list(ns, metric, label_selector),
            _ => Err(ApiError::path_not_found()),
        })
    }

    fn list(&self, ns: &str, metric: &str, selector: Option<&str>) -> Result<Value, ApiError> {
        let selector = LabelSelector::parse(selector.unwrap_or_default())?;
        let samples = self
            .samples
            .read()
            .map(|s| s.clone().unwrap_or_default())
            .unwrap_or_default();
        let items: Vec<Value> = samples
            .iter()
            .filter(|s| s.namespace == ns && s.name == metric && selector.matches(Some(&s.labels)))
            .map(|s| {
                json!({
                    "metricName": s.name,
                    "metricLabels": s.labels,
                    "timestamp": crate::util::now(),
                    "value": s.value,
                })
            })
            .collect();
        Ok(json!({
            "kind": "ExternalMetricValueList",
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "metadata": {},
            "items": items,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_until_installed_then_lists_matching_values() {
        let m = ExternalMetrics::default();
        let path = ["apis", GROUP, VERSION, "namespaces", "test", "errors"];
        assert!(matches!(m.serve(&path, None), Some(Err(_))));
        assert!(m.serve(&["apis", "apps"], None).is_none());
        m.set("test", "errors", json!({"app": "podinfo"}), "1500m");
        m.set("test", "errors", json!({"app": "other"}), "9");
        let list = m
            .serve(&path, Some("app=podinfo"))
            .and_then(Result::ok)
            .expect("list");
        assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
        assert_eq!(list["items"][0]["value"], "1500m");
        let unknown = m
            .serve(
                &[
                    "apis",
                    GROUP,
                    VERSION,
                    "namespaces",
                    "kube-system",
                    "dummy-metric",
                ],
                None,
            )
            .and_then(Result::ok)
            .expect("list");
        assert_eq!(unknown["items"], json!([]));
        assert!(m.group_entry().is_some());
    }
}
