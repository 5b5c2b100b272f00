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

/// The builtin query for a canary, by the provider's observer. `None` when the observer for the
/// provider is not built yet.
pub fn builtin_query(
    canary: &ValidatedCanary,
    metric: BuiltinMetric,
    interval: &str,
) -> Option<String> {
    let ns = &canary.namespace;
    let target = &canary.target.name;
    match canary.provider {
        Provider::Kubernetes | Provider::GatewayApiV1 | Provider::GatewayApiV1Beta1 => {
            let selector = format!(
                r#"kubernetes_namespace="{ns}",kubernetes_pod_name=~"{target}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)""#
            );
            Some(match metric {
                BuiltinMetric::RequestSuccessRate => format!(
                    r#"sum(rate(http_request_duration_seconds_count{{{selector},status!~"5.*"}}[{interval}])) / sum(rate(http_request_duration_seconds_count{{{selector}}}[{interval}])) * 100"#
                ),
                BuiltinMetric::RequestDuration => format!(
                    r#"histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{{{selector}}}[{interval}])) by (le))"#
                ),
            })
        }
        _ => None,
    }
}

/// Converts a builtin duration value to milliseconds as the provider's observer does.
pub fn duration_to_ms(canary: &ValidatedCanary, value: f64) -> f64 {
    match canary.provider {
        // The HTTP observer reads seconds.
        Provider::Kubernetes | Provider::GatewayApiV1 | Provider::GatewayApiV1Beta1 => {
            (value * 1000.0).trunc()
        }
        _ => value.trunc(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
