//! A Prometheus query client (instant queries) and the builtin checks' queries.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use flagger_core::effects::MetricOutcome;
use flagger_core::model::{BuiltinMetric, Provider, ValidatedCanary};
use serde::Deserialize;

use crate::webhook::Clients;

/// A Prometheus to query: the canary's or the controller's (address only), or a MetricTemplate's
/// (credentials, headers, TLS verification).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Server {
    pub address: String,
    pub auth: Option<Auth>,
    /// `provider.headers`, sent with every query.
    pub headers: BTreeMap<String, Vec<String>>,
    /// `provider.insecureSkipVerify`.
    pub insecure_skip_verify: bool,
}

impl Server {
    /// A Prometheus reached with no credentials (`-metrics-server`, `spec.metricsServer`).
    pub fn plain(address: &str) -> Self {
        Self {
            address: address.to_string(),
            ..Default::default()
        }
    }
}

/// Credentials from a MetricTemplate's `secretRef`.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// `username` and `password` keys: HTTP basic auth.
    Basic { username: String, password: String },
    /// A `token` key: `Authorization: Bearer <token>`.
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Auth::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

impl Auth {
    /// Reads the Secret's data as Flagger's Prometheus provider does: `token` wins; otherwise
    /// both `username` and `password` are required.
    pub fn from_secret(data: &BTreeMap<String, Vec<u8>>) -> Result<Auth, String> {
        let text = |key: &str| {
            data.get(key)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        if let Some(token) = text("token") {
            return Ok(Auth::Bearer(token));
        }
        let username =
            text("username").ok_or("prometheus credentials does not contain a username")?;
        let password =
            text("password").ok_or("prometheus credentials does not contain a password")?;
        Ok(Auth::Basic { username, password })
    }

    /// The `Authorization` header value.
    pub fn header(&self) -> String {
        match self {
            Auth::Bearer(token) => format!("Bearer {token}"),
            Auth::Basic { username, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            ),
        }
    }
}

/// Runs an instant query and reduces the answer as Flagger does: the value of the *last*
/// sample of a vector; no sample (or NaN) is "no values".
pub async fn query(clients: &Clients, server: &Server, promql: &str) -> MetricOutcome {
    let q = collapse_whitespace(promql);
    let url = format!("{}/api/v1/query", server.address.trim_end_matches('/'));
    let http = if server.insecure_skip_verify {
        &clients.insecure
    } else {
        &clients.verified
    };
    let mut request = http
        .get(&url)
        .query(&[("query", q.as_str())])
        .timeout(Duration::from_secs(5));
    for (name, values) in &server.headers {
        for value in values {
            request = request.header(name, value);
        }
    }
    if let Some(auth) = &server.auth {
        request = request.header(reqwest::header::AUTHORIZATION, auth.header());
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return MetricOutcome::Error(format!("request failed: {e}")),
    };
    let status = response.status();
    let body = match response.text().await {
        Ok(b) => b,
        Err(e) => return MetricOutcome::Error(format!("reading response failed: {e}")),
    };
    if status.as_u16() >= 400 {
        return MetricOutcome::Error(format!("error response: Status {status}: {body}"));
    }
    reduce(&body)
}

/// Whether the Prometheus answers `vector(1)` with 1.
pub async fn is_online(clients: &Clients, server: &Server) -> Result<(), String> {
    match query(clients, server, "vector(1)").await {
        MetricOutcome::Value(1.0) => Ok(()),
        MetricOutcome::Value(v) => Err(format!("prometheus not available: unexpected value {v}")),
        MetricOutcome::NoValues(e) | MetricOutcome::Error(e) | MetricOutcome::Unusable(e) => {
            Err(format!("prometheus not available: {e}"))
        }
    }
}

#[derive(Deserialize)]
struct Response {
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    result: Vec<Sample>,
}

#[derive(Deserialize)]
struct Sample {
    value: Option<(f64, String)>,
    values: Option<serde_json::Value>,
}

fn reduce(body: &str) -> MetricOutcome {
    let parsed: Response = match serde_json::from_str(body) {
        Ok(p) => p,
        Err(e) => return MetricOutcome::Error(format!("unmarshaling result failed: {e}")),
    };
    let results = parsed.data.map(|d| d.result).unwrap_or_default();
    if results.iter().any(|s| s.values.is_some()) {
        return MetricOutcome::Error("query returned multiple values".into());
    }
    match results.last().and_then(|s| s.value.as_ref()) {
        None => MetricOutcome::NoValues("no values found".into()),
        Some((_, v)) => match v.parse::<f64>() {
            Ok(f) if f.is_nan() => MetricOutcome::NoValues("no values found".into()),
            Ok(f) => MetricOutcome::Value(f),
            Err(e) => MetricOutcome::Error(format!("invalid value {v:?}: {e}")),
        },
    }
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The builtin query for a canary, by the provider's observer (reference §5.1). `ingress` is
/// `spec.ingressRef.name` (the nginx observer's `ingress` label). `None` when the observer for
/// the provider is not built yet.
pub fn builtin_query(
    canary: &ValidatedCanary,
    metric: BuiltinMetric,
    interval: &str,
    ingress: &str,
) -> Option<String> {
    let ns = &canary.namespace;
    let target = &canary.target.name;
    // Success rate: 100 × non-5xx / all of a counter; duration: p99 of a histogram.
    let ratio = |series: &str, selector: &str, success: &str| {
        format!(
            r#"sum(rate({series}{{{selector},{success}}}[{interval}])) / sum(rate({series}{{{selector}}}[{interval}])) * 100"#
        )
    };
    let p99 = |bucket: &str, selector: &str| {
        format!(
            r#"histogram_quantile(0.99, sum(rate({bucket}{{{selector}}}[{interval}])) by (le))"#
        )
    };
    let (series, bucket, selector, success) = match canary.provider {
        Provider::Kubernetes | Provider::GatewayApiV1 | Provider::GatewayApiV1Beta1 => (
            "http_request_duration_seconds_count",
            "http_request_duration_seconds_bucket",
            format!(
                r#"kubernetes_namespace="{ns}",kubernetes_pod_name=~"{target}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)""#
            ),
            r#"status!~"5.*""#,
        ),
        // SMI providers other than linkerd and osm fall to the Istio observer, as in Flagger.
        Provider::Istio | Provider::Smi(_) => (
            "istio_requests_total",
            "istio_request_duration_milliseconds_bucket",
            format!(
                r#"reporter="destination",destination_workload_namespace="{ns}",destination_workload=~"{target}""#
            ),
            r#"response_code!~"5.*""#,
        ),
        Provider::Linkerd => (
            "response_total",
            "response_latency_ms_bucket",
            format!(r#"namespace="{ns}",deployment=~"{target}",direction="inbound""#),
            r#"classification!="failure""#,
        ),
        Provider::Osm => (
            "osm_request_total",
            "osm_request_duration_ms_bucket",
            format!(
                r#"destination_namespace="{ns}",destination_kind="Deployment",destination_name="{target}""#
            ),
            r#"response_code!~"5.*""#,
        ),
        Provider::Nginx => {
            let selector = format!(r#"namespace="{ns}",ingress="{ingress}",canary!="""#);
            return Some(match metric {
                BuiltinMetric::RequestSuccessRate => ratio(
                    "nginx_ingress_controller_requests",
                    &selector,
                    r#"status!~"5.*""#,
                ),
                // The mean, not a quantile, in milliseconds.
                BuiltinMetric::RequestDuration => format!(
                    r#"sum(rate(nginx_ingress_controller_response_duration_seconds_sum{{{selector}}}[{interval}])) / sum(rate(nginx_ingress_controller_response_duration_seconds_count{{{selector}}}[{interval}])) * 1000"#
                ),
            });
        }
        _ => return None,
    };
    Some(match metric {
        BuiltinMetric::RequestSuccessRate => ratio(series, &selector, success),
        BuiltinMetric::RequestDuration => p99(bucket, &selector),
    })
}

/// Converts a builtin duration value to milliseconds as the provider's observer does.
pub fn duration_to_ms(canary: &ValidatedCanary, value: f64) -> f64 {
    match canary.provider {
        // The HTTP observer reads seconds; the mesh observers' histograms (and the nginx
        // query) are in milliseconds already.
        Provider::Kubernetes | Provider::GatewayApiV1 | Provider::GatewayApiV1Beta1 => {
            (value * 1000.0).trunc()
        }
        _ => value.trunc(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(provider: &str) -> ValidatedCanary {
        let wire: flagger_api::Canary = serde_json::from_value(serde_json::json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "provider": provider,
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898, "gatewayRefs": [{"name": "gw"}]},
                "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "web"},
                "analysis": {"interval": "1m", "threshold": 1, "maxWeight": 50, "stepWeight": 10}
            }
        }))
        .expect("canary");
        flagger_core::validate::validate(&wire, &Default::default())
            .expect("valid")
            .canary
    }

    #[test]
    fn builtin_queries_follow_each_providers_observer() {
        let q = |p: &str, m| builtin_query(&canary(p), m, "30s", "web").expect(p);
        let sr = BuiltinMetric::RequestSuccessRate;
        let d = BuiltinMetric::RequestDuration;
        assert_eq!(
            q("istio", sr),
            r#"sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="test",destination_workload=~"podinfo",response_code!~"5.*"}[30s])) / sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="test",destination_workload=~"podinfo"}[30s])) * 100"#
        );
        assert_eq!(
            q("istio", d),
            r#"histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload_namespace="test",destination_workload=~"podinfo"}[30s])) by (le))"#
        );
        // smi:* uses the Istio observer.
        assert_eq!(q("smi:v1alpha3", sr), q("istio", sr));
        assert_eq!(
            q("linkerd", sr),
            r#"sum(rate(response_total{namespace="test",deployment=~"podinfo",direction="inbound",classification!="failure"}[30s])) / sum(rate(response_total{namespace="test",deployment=~"podinfo",direction="inbound"}[30s])) * 100"#
        );
        assert_eq!(
            q("linkerd", d),
            r#"histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{namespace="test",deployment=~"podinfo",direction="inbound"}[30s])) by (le))"#
        );
        assert_eq!(
            q("osm", sr),
            r#"sum(rate(osm_request_total{destination_namespace="test",destination_kind="Deployment",destination_name="podinfo",response_code!~"5.*"}[30s])) / sum(rate(osm_request_total{destination_namespace="test",destination_kind="Deployment",destination_name="podinfo"}[30s])) * 100"#
        );
        assert_eq!(
            q("osm", d),
            r#"histogram_quantile(0.99, sum(rate(osm_request_duration_ms_bucket{destination_namespace="test",destination_kind="Deployment",destination_name="podinfo"}[30s])) by (le))"#
        );
        assert_eq!(
            q("nginx", sr),
            r#"sum(rate(nginx_ingress_controller_requests{namespace="test",ingress="web",canary!="",status!~"5.*"}[30s])) / sum(rate(nginx_ingress_controller_requests{namespace="test",ingress="web",canary!=""}[30s])) * 100"#
        );
        assert_eq!(
            q("nginx", d),
            r#"sum(rate(nginx_ingress_controller_response_duration_seconds_sum{namespace="test",ingress="web",canary!=""}[30s])) / sum(rate(nginx_ingress_controller_response_duration_seconds_count{namespace="test",ingress="web",canary!=""}[30s])) * 1000"#
        );
        assert_eq!(
            q("gatewayapi:v1", sr),
            r#"sum(rate(http_request_duration_seconds_count{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",status!~"5.*"}[30s])) / sum(rate(http_request_duration_seconds_count{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[30s])) * 100"#
        );
        assert!(builtin_query(&canary("contour"), sr, "1m", "").is_none());
    }

    #[test]
    fn durations_are_converted_to_milliseconds_per_observer() {
        // The HTTP observer's histogram is in seconds; the mesh ones and nginx's mean in ms.
        assert_eq!(duration_to_ms(&canary("gatewayapi:v1beta1"), 0.2567), 256.0);
        assert_eq!(duration_to_ms(&canary("kubernetes"), 0.5), 500.0);
        for p in ["istio", "linkerd", "osm", "nginx", "smi:v1alpha2"] {
            assert_eq!(duration_to_ms(&canary(p), 256.7), 256.0, "{p}");
        }
    }

    #[test]
    fn takes_the_last_sample() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{},"value":[1,"1.5"]},{"metric":{},"value":[1,"99.5"]}]}}"#;
        assert_eq!(reduce(body), MetricOutcome::Value(99.5));
    }

    #[test]
    fn empty_and_nan_are_no_values() {
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(matches!(reduce(empty), MetricOutcome::NoValues(_)));
        let nan = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        assert!(matches!(reduce(nan), MetricOutcome::NoValues(_)));
    }

    #[test]
    fn matrix_is_an_error() {
        let m = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}"#;
        assert_eq!(
            reduce(m),
            MetricOutcome::Error("query returned multiple values".into())
        );
    }

    #[test]
    fn a_token_means_bearer_auth_and_wins_over_basic() {
        let data = BTreeMap::from([
            ("token".to_string(), b"s3cr3t".to_vec()),
            ("username".to_string(), b"u".to_vec()),
            ("password".to_string(), b"p".to_vec()),
        ]);
        let auth = Auth::from_secret(&data).expect("auth");
        assert_eq!(auth, Auth::Bearer("s3cr3t".into()));
        assert_eq!(auth.header(), "Bearer s3cr3t");
    }

    #[test]
    fn username_and_password_mean_basic_auth() {
        let data = BTreeMap::from([
            ("username".to_string(), b"admin".to_vec()),
            ("password".to_string(), b"pa:ss".to_vec()),
        ]);
        let auth = Auth::from_secret(&data).expect("auth");
        // base64("admin:pa:ss")
        assert_eq!(auth.header(), "Basic YWRtaW46cGE6c3M=");
        assert_eq!(format!("{auth:?}"), "Basic(admin, ***)");
    }

    #[test]
    fn basic_auth_needs_both_keys() {
        let only_user = BTreeMap::from([("username".to_string(), b"admin".to_vec())]);
        assert_eq!(
            Auth::from_secret(&only_user),
            Err("prometheus credentials does not contain a password".into())
        );
        assert_eq!(
            Auth::from_secret(&BTreeMap::new()),
            Err("prometheus credentials does not contain a username".into())
        );
    }

    #[test]
    fn whitespace_is_collapsed() {
        assert_eq!(
            collapse_whitespace("sum(\n\t rate(x[1m])\n)"),
            "sum( rate(x[1m]) )"
        );
    }
}
