//! The Kubernetes External Metrics API provider (reference §5.4): a query
//! `[<namespace>/]<metricName>[?labelSelector=<urlencoded selector>]` (namespace `default` when
//! left out) is the list
//! `GET /apis/external.metrics.k8s.io/v1beta1/namespaces/<namespace>/<metricName>?labelSelector=`
//! of the cluster's API server, through whatever adapter serves that aggregated group (KEDA,
//! prometheus-adapter, a cloud's adapter). The value is the first item's `value` (a quantity:
//! `1500m` is 1.5). The availability check lists `dummy-metric` in `kube-system`.
//!
//! `address` points the query at another server (with the Secret's `token` as a bearer token
//! and `insecureSkipVerify`); without it the controller's own connection to the cluster is
//! used, credentials and all.

use futures::future::BoxFuture;
use serde::Deserialize;

use super::http;
use super::seam::{MetricsProvider, ProviderError, QueryError, Setup};

pub struct ExternalMetrics {
    target: Target,
}

enum Target {
    /// The controller's cluster.
    Cluster(kube::Client),
    /// Another server.
    Address {
        url: reqwest::Url,
        token: Option<String>,
        http: reqwest::Client,
    },
}

impl ExternalMetrics {
    pub fn build(setup: &Setup<'_>) -> Result<Box<dyn MetricsProvider>, ProviderError> {
        let token = setup
            .secret
            .and_then(|s| s.get("token"))
            .map(|t| String::from_utf8_lossy(t).trim().to_string());
        let target = match setup.spec.address.as_deref() {
            Some(a) if !a.is_empty() => Target::Address {
                url: http::url_address("externalmetrics", Some(a))?,
                token,
                http: http::client(setup.http, setup.spec.insecure_skip_verify.unwrap_or(false)),
            },
            _ => Target::Cluster(setup.kube.clone()),
        };
        Ok(Box::new(ExternalMetrics { target }))
    }

    /// The API server's answer to a list of a metric.
    async fn list(
        &self,
        namespace: &str,
        metric: &str,
        selector: &str,
    ) -> Result<String, ProviderError> {
        let mut path = format!(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/{}/{}",
            encode(namespace),
            encode(metric)
        );
        if !selector.is_empty() {
            path.push_str("?labelSelector=");
            path.push_str(&encode(selector));
        }
        match &self.target {
            Target::Cluster(client) => {
                let request = ::http::Request::get(&path)
                    .body(Vec::new())
                    .map_err(|e| ProviderError::invalid(e.to_string()))?;
                let call = client.request_text(request);
                match tokio::time::timeout(http::TIMEOUT, call).await {
                    Ok(Ok(body)) => Ok(body),
                    Ok(Err(kube::Error::Api(status))) => Err(ProviderError::new(
                        reqwest::StatusCode::from_u16(status.code).map_or(
                            super::seam::Category::Provider,
                            super::seam::Category::of_status,
                        ),
                        format!(
                            "the server answered {} {}: {}",
                            status.code, status.reason, status.message
                        ),
                    )),
                    Ok(Err(e)) => Err(ProviderError::transient(e.to_string())),
                    Err(_) => Err(ProviderError::transient(format!(
                        "no answer from the API server within {}s",
                        http::TIMEOUT.as_secs()
                    ))),
                }
            }
            Target::Address { url, token, http } => {
                let full = format!("{}{}", url.as_str().trim_end_matches('/'), path);
                let mut request = http.get(&full);
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                let (status, body) = self::http::send(request, url.as_str()).await?;
                if status.is_success() {
                    Ok(body)
                } else {
                    Err(ProviderError::answered(status, failure(status, &body)))
                }
            }
        }
    }

    async fn query(&self, query: &str) -> Result<f64, QueryError> {
        let (namespace, metric, selector) = parse(query)
            .map_err(|e| QueryError::Failed(format!("error parsing metric query: {e}")))?;
        let body = self
            .list(&namespace, &metric, &selector)
            .await
            .map_err(|e| e.context("error querying external metrics API: "))?;
        read(&body)
    }

    async fn online(&self) -> Result<(), ProviderError> {
        self.list("kube-system", "dummy-metric", "")
            .await
            .map(|_| ())
            .map_err(|e| e.context("external metrics service unavailable: "))
    }
}

impl MetricsProvider for ExternalMetrics {
    fn name(&self) -> &'static str {
        "externalmetrics"
    }

    fn run_query<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, QueryError>> {
        Box::pin(self.query(query))
    }

    fn is_online(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.online())
    }
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A Kubernetes `Status` answer's message.
fn failure(status: reqwest::StatusCode, body: &str) -> String {
    #[derive(Deserialize)]
    struct Status {
        #[serde(default)]
        message: String,
    }
    let reason = serde_json::from_str::<Status>(body).ok().map(|s| s.message);
    http::error_response(status, reason, body)
}

/// Splits a query into namespace, metric name and label selector.
pub fn parse(query: &str) -> Result<(String, String, String), String> {
    let query = query.trim();
    let expected = "expected <namespace>/<metricName>?labelSelector=<urlencoded label selectors>";
    let url = url::Url::parse(&format!("dummy:///{query}"))
        .map_err(|_| format!("malformed query string, {expected}, got {query}"))?;
    let path = url.path().trim_start_matches('/');
    let parts: Vec<String> = path
        .split('/')
        .map(|p| {
            url::form_urlencoded::parse(p.as_bytes())
                .map(|(k, v)| {
                    if v.is_empty() {
                        k.into_owned()
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect::<String>()
        })
        .collect();
    let (namespace, metric) = match parts.as_slice() {
        [metric] => ("default".to_string(), metric.clone()),
        [ns, metric] if ns.is_empty() => ("default".to_string(), metric.clone()),
        [ns, metric] => (ns.clone(), metric.clone()),
        _ => {
            return Err(format!(
                "malformed query string, too many slashes, {expected}, got {query}"
            ));
        }
    };
    if metric.is_empty() {
        return Err("metric name cannot be empty".into());
    }
    let selector = url
        .query_pairs()
        .find(|(k, _)| k == "labelSelector")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    Ok((namespace, metric, selector))
}

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    value: String,
}

fn read(body: &str) -> Result<f64, QueryError> {
    let list: List = serde_json::from_str(body)
        .map_err(|e| QueryError::Failed(format!("error unmarshaling result: {e}")))?;
    let Some(item) = list.items.first() else {
        return Err(QueryError::NoValues(
            "no external metrics found: no values found".into(),
        ));
    };
    quantity(&item.value)
        .map_err(|e| QueryError::Failed(format!("invalid metric value {:?}: {e}", item.value)))
}

/// A Kubernetes quantity as a number: decimal SI suffixes (`n`, `u`, `m`, `k`, `M`, `G`, `T`,
/// `P`, `E`), binary ones (`Ki` ... `Ei`) and exponents (`1e3`).
pub fn quantity(q: &str) -> Result<f64, String> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let (number, suffix) = match suffix.strip_prefix(['e', 'E']) {
        Some(exp) if exp.parse::<i32>().is_ok() => (q, ""),
        _ => (number, suffix),
    };
    let base: f64 = number
        .parse()
        .map_err(|_| "not a quantity such as 1500m, 2 or 1Ki".to_string())?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        other => return Err(format!("unknown suffix {other:?}")),
    };
    Ok(base * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_split_into_namespace_metric_and_selector() {
        assert_eq!(
            parse("test/http_errors?labelSelector=app%3Dpodinfo%2Ctrack%3Dcanary"),
            Ok((
                "test".into(),
                "http_errors".into(),
                "app=podinfo,track=canary".into()
            ))
        );
        assert_eq!(
            parse("queue_depth"),
            Ok(("default".into(), "queue_depth".into(), String::new()))
        );
        assert_eq!(
            parse("/queue_depth"),
            Ok(("default".into(), "queue_depth".into(), String::new()))
        );
        assert!(parse("a/b/c").unwrap_err().contains("too many slashes"));
        assert_eq!(parse("test/"), Err("metric name cannot be empty".into()));
    }

    #[test]
    fn quantities_read_as_numbers() {
        for (q, v) in [
            ("1500m", 1.5),
            ("2", 2.0),
            ("1k", 1000.0),
            ("1Ki", 1024.0),
            ("1e3", 1000.0),
            ("0.25", 0.25),
            ("250u", 0.00025),
        ] {
            assert_eq!(quantity(q), Ok(v), "{q}");
        }
        assert!(quantity("lots").is_err());
        assert!(quantity("1X").is_err());
    }

    #[test]
    fn the_first_item_is_the_value() {
        let body = r#"{"kind":"ExternalMetricValueList","apiVersion":"external.metrics.k8s.io/v1beta1","metadata":{},"items":[
            {"metricName":"errors","metricLabels":{"app":"podinfo"},"timestamp":"2024-01-01T00:00:00Z","value":"500m"},
            {"metricName":"errors","metricLabels":{},"timestamp":"2024-01-01T00:00:00Z","value":"9"}]}"#;
        assert_eq!(read(body), Ok(0.5));
        assert!(matches!(
            read(r#"{"kind":"ExternalMetricValueList","items":[]}"#),
            Err(QueryError::NoValues(_))
        ));
    }
}
