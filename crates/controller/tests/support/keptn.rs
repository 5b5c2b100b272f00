//! Keptn's metrics objects in localkube: the CustomResourceDefinitions of `KeptnMetric` and
//! `Analysis` (`metrics.keptn.sh/v1beta1`, names, scope and status subresource as Keptn's
//! metrics-operator publishes them in `config/crd/bases`; the schemas here keep only the
//! fields Flagger reads and writes and preserve the rest), and a stand-in for Keptn's metrics
//! operator that completes each Analysis with the verdict the test chooses.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};

pub const CRDS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: keptnmetrics.metrics.keptn.sh}
spec:
  group: metrics.keptn.sh
  scope: Namespaced
  names: {kind: KeptnMetric, listKind: KeptnMetricList, plural: keptnmetrics, singular: keptnmetric}
  versions:
  - name: v1beta1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {jsonPath: .spec.provider.name, name: Provider, type: string}
    - {jsonPath: .spec.query, name: Query, type: string}
    - {jsonPath: .status.value, name: Value, type: string}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [provider, query]
            properties:
              fetchIntervalSeconds: {type: integer}
              provider: {type: object, required: [name], properties: {name: {type: string}}}
              query: {type: string}
              range: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status:
            type: object
            properties:
              value: {type: string}
              rawValue: {type: string, format: byte}
              lastUpdated: {type: string, format: date-time}
              errMsg: {type: string}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: analyses.metrics.keptn.sh}
spec:
  group: metrics.keptn.sh
  scope: Namespaced
  names: {kind: Analysis, listKind: AnalysisList, plural: analyses, singular: analysis}
  versions:
  - name: v1beta1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [analysisDefinition, timeframe]
            properties:
              analysisDefinition: {type: object, required: [name], properties: {name: {type: string}, namespace: {type: string}}}
              args: {type: object, additionalProperties: {type: string}}
              timeframe: {type: object, properties: {recent: {type: string}, from: {type: string}, to: {type: string}}}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"#;

fn api(client: &kube::Client, kind: &str, plural: &str, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("metrics.keptn.sh", "v1beta1", kind);
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

/// Creates or updates a KeptnMetric and sets its `status.value`, as Keptn's operator does.
pub async fn set_metric(client: &kube::Client, ns: &str, name: &str, value: &str) {
    let metrics = api(client, "KeptnMetric", "keptnmetrics", ns);
    if metrics.get_opt(name).await.ok().flatten().is_none() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "metrics.keptn.sh/v1beta1", "kind": "KeptnMetric",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"provider": {"name": "prometheus"}, "query": "sum(rate(http_requests_total[1m]))", "fetchIntervalSeconds": 10},
        }))
        .expect("metric");
        metrics
            .create(&PostParams::default(), &obj)
            .await
            .expect("KeptnMetric created");
    }
    if value.is_empty() {
        return;
    }
    metrics
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"value": value, "rawValue": "", "lastUpdated": "2024-01-01T00:00:00Z"}})),
        )
        .await
        .expect("KeptnMetric status set");
}

/// Completes every Analysis created in `ns` with `pass` (what the test sets), recording each
/// one's spec.
#[derive(Clone, Default)]
pub struct Operator {
    pub pass: Arc<Mutex<bool>>,
    pub specs: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Operator {
    pub fn start(client: &kube::Client, ns: &str) -> Operator {
        let op = Operator::default();
        let analyses = api(client, "Analysis", "analyses", ns);
        let me = op.clone();
        tokio::spawn(async move {
            let stream = watcher(analyses.clone(), watcher::Config::default()).applied_objects();
            futures::pin_mut!(stream);
            while let Some(Ok(a)) = stream.next().await {
                if a.data.pointer("/status/state").is_some() {
                    continue;
                }
                let name = a.metadata.name.clone().unwrap_or_default();
                me.specs.lock().expect("specs").push(a.data["spec"].clone());
                let pass = *me.pass.lock().expect("pass");
                let _ = analyses
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(serde_json::json!({"status": {"state": "Completed", "pass": pass, "raw": "{}"}})),
                    )
                    .await;
            }
        });
        op
    }

    pub fn set_pass(&self, pass: bool) {
        *self.pass.lock().expect("pass") = pass;
    }
}
