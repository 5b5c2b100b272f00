//! The Keptn provider (reference §5.4): values Keptn's metrics operator keeps in the cluster.
//!
//! * `keptnmetric/<namespace>/<name>` (or `keptnmetrics/...`): the `status.value` of the
//!   KeptnMetric `metrics.keptn.sh/v1beta1`, read as a number.
//! * `analysis/<namespace>/<definition>[/<timeframe, 1m by default>[/<k=v;k=v>]]` (or
//!   `analyses/...`): creates an Analysis of that AnalysisDefinition over the recent timeframe
//!   with those arguments, waits (checking every second, 10 s at most) until Keptn marks it
//!   `Completed`, reads 1 when it passed and 0 when it did not, and deletes it.
//!
//! As in Flagger, the whole query is lower-cased before it is read, and the provider is
//! always available (its availability check asks nothing).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use kube::api::{Api, DeleteParams, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};

use super::seam::{MetricsProvider, ProviderError, QueryError, Setup};

pub struct Keptn {
    client: kube::Client,
}

/// How long an Analysis may take.
const ANALYSIS_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    Metric {
        namespace: String,
        name: String,
    },
    Analysis {
        namespace: String,
        definition: String,
        timeframe: String,
        args: BTreeMap<String, String>,
    },
}

impl Keptn {
    pub fn build(setup: &Setup<'_>) -> Result<Box<dyn MetricsProvider>, ProviderError> {
        Ok(Box::new(Keptn {
            client: setup.kube.clone(),
        }))
    }

    fn api(&self, kind: &str, plural: &str, namespace: &str) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("metrics.keptn.sh", "v1beta1", kind);
        let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
        Api::namespaced_with(self.client.clone(), namespace, &resource)
    }

    async fn query(&self, query: &str) -> Result<f64, QueryError> {
        match parse(query).map_err(QueryError::Failed)? {
            Query::Metric { namespace, name } => self.metric(&namespace, &name).await,
            Query::Analysis {
                namespace,
                definition,
                timeframe,
                args,
            } => {
                self.analysis(&namespace, &definition, &timeframe, args)
                    .await
            }
        }
    }

    async fn metric(&self, namespace: &str, name: &str) -> Result<f64, QueryError> {
        let metric = self
            .api("KeptnMetric", "keptnmetrics", namespace)
            .get(name)
            .await
            .map_err(|e| {
                QueryError::Failed(format!(
                    "could not retrieve KeptnMetric {namespace}/{name}: {}",
                    api_message(e)
                ))
            })?;
        let Some(value) = metric
            .data
            .pointer("/status/value")
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
        else {
            return Err(QueryError::NoValues(format!(
                "no values found: KeptnMetric {namespace}/{name} has no status.value yet"
            )));
        };
        match value.trim().parse::<f64>() {
            Ok(v) if v.is_nan() => Err(QueryError::NoValues("no values found".into())),
            Ok(v) => Ok(v),
            Err(e) => Err(QueryError::Failed(format!(
                "could not parse value of KeptnMetric {namespace}/{name} to float: {value:?}: {e}"
            ))),
        }
    }

    async fn analysis(
        &self,
        namespace: &str,
        definition: &str,
        timeframe: &str,
        args: BTreeMap<String, String>,
    ) -> Result<f64, QueryError> {
        let api = self.api("Analysis", "analyses", namespace);
        let suffix: String = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
        let name = format!("{definition}-{suffix}");
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "metrics.keptn.sh/v1beta1",
            "kind": "Analysis",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "analysisDefinition": {"name": definition},
                "timeframe": {"recent": timeframe},
                "args": args,
            },
        }))
        .map_err(|e| QueryError::Failed(format!("could not build the Analysis: {e}")))?;
        api.create(&crate::write::post_params(), &object)
            .await
            .map_err(|e| {
                QueryError::Failed(format!(
                    "could not create Keptn Analysis {namespace}/{definition}: {}",
                    api_message(e)
                ))
            })?;
        let outcome = tokio::time::timeout(ANALYSIS_TIMEOUT, async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let current = api.get(&name).await.map_err(|e| {
                    QueryError::Failed(format!(
                        "could not check status of created Keptn Analysis {namespace}/{definition}: {}",
                        api_message(e)
                    ))
                })?;
                let state = current.data.pointer("/status/state").and_then(|s| s.as_str());
                if state == Some("Completed")
                    && let Some(pass) = current.data.pointer("/status/pass").and_then(|p| p.as_bool())
                {
                    return Ok(if pass { 1.0 } else { 0.0 });
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            Err(QueryError::Failed(format!(
                "encountered timeout while waiting for Keptn Analysis {namespace}/{definition} to be finished"
            )))
        });
        if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
            tracing::warn!(
                "could not delete Keptn Analysis {namespace}/{name}: {}",
                api_message(e)
            );
        }
        outcome
    }
}

impl MetricsProvider for Keptn {
    fn name(&self) -> &'static str {
        "keptn"
    }

    fn run_query<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, QueryError>> {
        Box::pin(self.query(query))
    }

    fn is_online(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async { Ok(()) })
    }
}

fn api_message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message,
        other => other.to_string(),
    }
}

/// Reads a query as Flagger does (lower-cased, trimmed, split on `/`).
pub fn parse(query: &str) -> Result<Query, String> {
    let lower = query.to_lowercase();
    let parts: Vec<&str> = lower.trim().split('/').collect();
    if parts.len() < 3 {
        return Err("unexpected query format. query must be in the format <keptnmetric|analysis>/<namespace>/<resourceName>/<duration>/<arguments>".into());
    }
    let namespace = parts[1].to_string();
    let name = parts[2].to_string();
    match parts[0] {
        "keptnmetric" | "keptnmetrics" => Ok(Query::Metric { namespace, name }),
        "analysis" | "analyses" => {
            let timeframe = parts.get(3).map_or("1m", |d| *d).to_string();
            let args = parts
                .get(4)
                .map(|a| {
                    a.split(';')
                        .filter_map(|kv| {
                            let mut it = kv.split('=');
                            match (it.next(), it.next(), it.next()) {
                                (Some(k), Some(v), None) => Some((k.to_string(), v.to_string())),
                                _ => None,
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(Query::Analysis {
                namespace,
                definition: name,
                timeframe,
                args,
            })
        }
        _ => Err("unexpected resource kind provided in the query. must be one of: ['keptnmetric', 'analysis']".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_read_as_flagger_reads_them() {
        assert_eq!(
            parse("KeptnMetric/Test/Error-Rate\n"),
            Ok(Query::Metric {
                namespace: "test".into(),
                name: "error-rate".into()
            })
        );
        assert_eq!(
            parse("analyses/test/podinfo-slo/5m/service=podinfo;bad;x=1=2"),
            Ok(Query::Analysis {
                namespace: "test".into(),
                definition: "podinfo-slo".into(),
                timeframe: "5m".into(),
                args: BTreeMap::from([("service".into(), "podinfo".into())]),
            })
        );
        assert_eq!(
            parse("analysis/test/slo"),
            Ok(Query::Analysis {
                namespace: "test".into(),
                definition: "slo".into(),
                timeframe: "1m".into(),
                args: BTreeMap::new(),
            })
        );
        assert!(
            parse("keptnmetric/test")
                .unwrap_err()
                .starts_with("unexpected query format")
        );
        assert!(
            parse("metric/test/x")
                .unwrap_err()
                .starts_with("unexpected resource kind")
        );
    }
}
