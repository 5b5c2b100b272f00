//! The Prometheus provider (reference §5.4): instant queries with Flagger's reading of the
//! answer, credentials from a MetricTemplate's Secret, `provider.headers`, `insecureSkipVerify`,
//! and the `vector(1)` availability check. The builtin checks' queries live in
//! [`flagger_core::routing::observer`].

use std::collections::BTreeMap;

use base64::Engine as _;
use flagger_api::metric::MetricProvider as ProviderSpec;
use futures::future::BoxFuture;
use serde::Deserialize;

use super::http::{self, TIMEOUT, collapse_whitespace, request_failed};
use super::seam::{MetricsProvider, ProviderError, QueryError, RangeWindow, Setup};
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

    /// A MetricTemplate's Prometheus, as Flagger builds it: `address` must be a URL;
    /// credentials from the Secret's data when `secretRef` is set.
    pub fn from_template(
        spec: &ProviderSpec,
        secret: Option<&BTreeMap<String, Vec<u8>>>,
    ) -> Result<Server, ProviderError> {
        let address = spec.address.clone().unwrap_or_default();
        http::url_address("prometheus", Some(&address))?;
        let auth: Option<Auth> = secret
            .map(Auth::from_secret)
            .transpose()
            .map_err(ProviderError::auth)?;
        Ok(Server {
            address,
            auth,
            headers: spec.headers.clone().unwrap_or_default(),
            insecure_skip_verify: spec.insecure_skip_verify.unwrap_or(false),
        })
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

/// A Prometheus and the HTTP client that reaches it.
#[derive(Clone, Debug)]
pub struct Prometheus {
    server: Server,
    http: reqwest::Client,
}

impl Prometheus {
    /// A Prometheus reached with no credentials: the one of builtin checks and inline queries
    /// (`-metrics-server`, `spec.metricsServer`).
    pub fn plain(clients: &Clients, address: &str) -> Self {
        Self::new(clients, Server::plain(address))
    }

    /// A Prometheus as a server description says.
    pub fn new(clients: &Clients, server: Server) -> Self {
        let http = if server.insecure_skip_verify {
            clients.insecure.clone()
        } else {
            clients.verified.clone()
        };
        Self { server, http }
    }

    /// The provider of a MetricTemplate of type `prometheus` (or of a type Flagger does not
    /// know), as Flagger builds it.
    pub fn build(setup: &Setup<'_>) -> Result<Box<dyn MetricsProvider>, ProviderError> {
        let server = Server::from_template(setup.spec, setup.secret)?;
        Ok(Box::new(Self::new(setup.http, server)))
    }

    /// What this Prometheus is (address, credentials, headers, TLS verification).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Runs an instant query and reduces the answer as Flagger does: the value of the *last*
    /// sample of a vector; no sample (or NaN) is "no values".
    pub async fn query(&self, promql: &str) -> Result<f64, QueryError> {
        let q = collapse_whitespace(promql);
        let body = self.get("query", &[("query", q)]).await?;
        reduce(&body)
    }

    /// Runs a range query (`/api/v1/query_range`) whose answer is one series: its values in
    /// time order; no series is "no values", more than one an error (aggregate in PromQL).
    pub async fn query_range(
        &self,
        promql: &str,
        window: RangeWindow,
    ) -> Result<Vec<f64>, QueryError> {
        let q = collapse_whitespace(promql);
        let params = [
            ("query", q),
            ("start", format!("{:.3}", window.start)),
            ("end", format!("{:.3}", window.end)),
            ("step", format!("{:.3}", window.step)),
        ];
        let body = self.get("query_range", &params).await?;
        series(&body)
    }

    /// A GET of `/api/v1/{path}` with the server's headers and credentials: the body of a
    /// success.
    async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<String, ProviderError> {
        let url = format!(
            "{}/api/v1/{path}",
            self.server.address.trim_end_matches('/')
        );
        let mut request = self.http.get(&url).query(params).timeout(TIMEOUT);
        for (name, values) in &self.server.headers {
            for value in values {
                request = request.header(name, value);
            }
        }
        if let Some(auth) = &self.server.auth {
            request = request.header(reqwest::header::AUTHORIZATION, auth.header());
        }
        let response = request
            .send()
            .await
            .map_err(|e| ProviderError::transient(request_failed(&e, &self.server.address)))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| {
            ProviderError::transient(format!("reading response failed: {}", http::cause(&e)))
        })?;
        if status.as_u16() >= 400 {
            return Err(ProviderError::answered(
                status,
                error_response(status, &body),
            ));
        }
        Ok(body)
    }

    /// Whether the Prometheus answers `vector(1)` with 1.
    pub async fn check_online(&self) -> Result<(), ProviderError> {
        let body = self
            .get("query", &[("query", "vector(1)".into())])
            .await
            .map_err(|e| e.context("prometheus not available: "))?;
        match reduce(&body) {
            Ok(1.0) => Ok(()),
            Ok(v) => Err(ProviderError::provider(format!(
                "prometheus not available: unexpected value {v}"
            ))),
            Err(e) => Err(ProviderError::provider(format!(
                "prometheus not available: {e}"
            ))),
        }
    }
}

impl MetricsProvider for Prometheus {
    fn name(&self) -> &'static str {
        "prometheus"
    }

    fn run_query<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, QueryError>> {
        Box::pin(self.query(query))
    }

    fn is_online(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.check_online())
    }

    fn range_queries(&self) -> bool {
        true
    }

    fn run_range_query<'a>(
        &'a self,
        query: &'a str,
        window: RangeWindow,
    ) -> BoxFuture<'a, Result<Vec<f64>, QueryError>> {
        Box::pin(self.query_range(query, window))
    }
}

/// An error answer, as Prometheus words it (`{"errorType":"bad_data","error":"..."}`) or, from
/// something else in the way (a proxy's page), the start of its first line.
fn error_response(status: reqwest::StatusCode, body: &str) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(rename = "errorType", default)]
        error_type: String,
        #[serde(default)]
        error: String,
    }
    let reason = match serde_json::from_str::<ErrorBody>(body) {
        Ok(b) if !b.error.is_empty() && !b.error_type.is_empty() => {
            Some(format!("{}: {}", b.error_type, b.error))
        }
        Ok(b) if !b.error.is_empty() => Some(b.error),
        _ => None,
    };
    http::error_response(status, reason, body)
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

fn reduce(body: &str) -> Result<f64, QueryError> {
    let parsed: Response = serde_json::from_str(body)
        .map_err(|e| QueryError::Failed(format!("unmarshaling result failed: {e}")))?;
    let results = parsed.data.map(|d| d.result).unwrap_or_default();
    if results.iter().any(|s| s.values.is_some()) {
        return Err(QueryError::Failed("query returned multiple values".into()));
    }
    match results.last().and_then(|s| s.value.as_ref()) {
        None => Err(QueryError::NoValues("no values found".into())),
        Some((_, v)) => match v.parse::<f64>() {
            Ok(f) if f.is_nan() => Err(QueryError::NoValues("no values found".into())),
            Ok(f) => Ok(f),
            Err(e) => Err(QueryError::Failed(format!("invalid value \"{v}\": {e}"))),
        },
    }
}

/// The values of a range query's single series, in time order ("NaN", "+Inf" kept as such).
fn series(body: &str) -> Result<Vec<f64>, QueryError> {
    #[derive(Deserialize)]
    struct Matrix {
        data: Option<MatrixData>,
    }
    #[derive(Deserialize)]
    struct MatrixData {
        #[serde(rename = "resultType", default)]
        result_type: String,
        #[serde(default)]
        result: Vec<Stream>,
    }
    #[derive(Deserialize)]
    struct Stream {
        #[serde(default)]
        values: Vec<(f64, String)>,
    }
    let parsed: Matrix = serde_json::from_str(body)
        .map_err(|e| QueryError::Failed(format!("unmarshaling result failed: {e}")))?;
    let data = parsed
        .data
        .ok_or_else(|| QueryError::Failed("the answer has no data".into()))?;
    if data.result_type != "matrix" {
        return Err(QueryError::Failed(format!(
            "a range query answered a {} instead of a matrix",
            data.result_type
        )));
    }
    match data.result.as_slice() {
        [] => Err(QueryError::NoValues("no values found".into())),
        [one] => one
            .values
            .iter()
            .map(|(_, v)| {
                v.parse::<f64>()
                    .map_err(|e| QueryError::Failed(format!("invalid value \"{v}\": {e}")))
            })
            .collect(),
        many => Err(QueryError::Failed(format!(
            "the query gave {} series; a comparison needs one per side (aggregate with sum, avg, ...)",
            many.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_last_sample() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{},"value":[1,"1.5"]},{"metric":{},"value":[1,"99.5"]}]}}"#;
        assert_eq!(reduce(body), Ok(99.5));
    }

    #[test]
    fn empty_and_nan_are_no_values() {
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(
            reduce(empty),
            Err(QueryError::NoValues("no values found".into()))
        );
        let nan = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        assert_eq!(
            reduce(nan),
            Err(QueryError::NoValues("no values found".into()))
        );
    }

    #[test]
    fn matrix_is_an_error() {
        let m = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}"#;
        assert_eq!(
            reduce(m),
            Err(QueryError::Failed("query returned multiple values".into()))
        );
    }

    #[test]
    fn a_range_query_gives_one_series_in_time_order() {
        let one = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"app":"podinfo"},"values":[[1,"0.1"],[2,"NaN"],[3,"+Inf"],[4,"0.3"]]}]}}"#;
        let got = series(one).expect("one series");
        assert_eq!(got.len(), 4);
        assert_eq!((got[0], got[3]), (0.1, 0.3));
        assert!(got[1].is_nan() && got[2].is_infinite());
        let none = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert_eq!(
            series(none),
            Err(QueryError::NoValues("no values found".into()))
        );
        let two = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"pod":"a"},"values":[[1,"1"]]},{"metric":{"pod":"b"},"values":[[1,"2"]]}]}}"#;
        assert_eq!(
            series(two),
            Err(QueryError::Failed(
                "the query gave 2 series; a comparison needs one per side (aggregate with sum, avg, ...)".into()
            ))
        );
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(series(vector).is_err());
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

    fn spec(address: Option<&str>) -> ProviderSpec {
        ProviderSpec {
            r#type: "prometheus".into(),
            address: address.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn a_template_prometheus_needs_a_url() {
        for bad in [None, Some(""), Some("prometheus:9090"), Some("not a url")] {
            let e = Server::from_template(&spec(bad), None).unwrap_err().message;
            assert!(e.starts_with("prometheus address"), "{e}");
            assert!(e.ends_with("is not a valid URL"), "{e}");
        }
        let s = Server::from_template(&spec(Some("http://prom:9090")), None).expect("server");
        assert_eq!(s, Server::plain("http://prom:9090"));
    }

    #[test]
    fn secret_headers_and_tls_flags_reach_the_client() {
        let mut p = spec(Some("https://prom.example:9090/prefix"));
        p.insecure_skip_verify = Some(true);
        p.headers = Some(BTreeMap::from([(
            "X-Scope-OrgID".to_string(),
            vec!["tenant-a".to_string()],
        )]));
        let secret = BTreeMap::from([("token".to_string(), b"t0k".to_vec())]);
        let s = Server::from_template(&p, Some(&secret)).expect("server");
        assert!(s.insecure_skip_verify);
        assert_eq!(s.auth, Some(Auth::Bearer("t0k".into())));
        assert_eq!(s.headers["X-Scope-OrgID"], vec!["tenant-a".to_string()]);
        let empty = BTreeMap::new();
        assert_eq!(
            Server::from_template(&p, Some(&empty)).unwrap_err(),
            ProviderError::auth("prometheus credentials does not contain a username")
        );
    }

    #[test]
    fn error_answers_read_as_prometheus_words_them() {
        let status = reqwest::StatusCode::BAD_REQUEST;
        assert_eq!(
            error_response(
                status,
                r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unexpected \"}\""}"#
            ),
            r#"error response: Status 400 Bad Request: bad_data: invalid parameter "query": 1:5: parse error: unexpected "}""#
        );
        // A proxy's page: its first line, cut short.
        let page = format!("<html><body>{}</body></html>\n<p>more</p>", "x".repeat(500));
        let e = error_response(reqwest::StatusCode::BAD_GATEWAY, &page);
        assert!(
            e.starts_with("error response: Status 502 Bad Gateway: <html><body>xxx"),
            "{e}"
        );
        assert!(e.ends_with("..."), "{e}");
        assert!(e.len() < 260, "{e}");
        assert_eq!(
            error_response(reqwest::StatusCode::SERVICE_UNAVAILABLE, ""),
            "error response: Status 503 Service Unavailable"
        );
    }

    #[tokio::test]
    async fn a_failed_request_says_why_without_the_url_or_credentials() {
        // A port nothing listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let clients = Clients::new().expect("clients");
        let mut server = Server::plain(&format!("http://admin:s3cret@127.0.0.1:{port}"));
        server.auth = Some(Auth::Bearer("t0ken".into()));
        let prom = Prometheus::new(&clients, server);
        let query = r#"sum(rate(http_requests_total{namespace="test",status=~"5.*"}[1m]))"#;
        let Err(QueryError::Failed(e)) = prom.query(query).await else {
            panic!("a closed port answered");
        };
        assert!(
            e.starts_with(&format!(
                "request failed: cannot connect to 127.0.0.1:{port}: "
            )),
            "{e}"
        );
        for secret in [
            "s3cret",
            "t0ken",
            "admin",
            "http_requests_total",
            "query=",
            "%7B",
        ] {
            assert!(!e.contains(secret), "{secret} in {e}");
        }
        assert!(e.len() < 120, "{e}");
    }
}
