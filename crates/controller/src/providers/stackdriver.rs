//! The Google Cloud Monitoring (Stackdriver) provider (reference §5.4): MQL queries through
//! `projects.timeSeries.query` (`POST <endpoint>/v3/projects/<project>/timeSeries:query` with
//! `{"query": ...}`), the value being the first value of the first point of the first time
//! series. The availability check sends an empty query: Cloud Monitoring's `INVALID_ARGUMENT`
//! (or a success) means it is reachable with these credentials; anything else
//! (`PERMISSION_DENIED` without the `monitoring.read` scope) means it is not.
//!
//! Credentials: with `secretRef`, the Secret's `project` (required) and optional
//! `serviceAccountKey` (a service account's JSON key); without a key, Application Default
//! Credentials: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's default credentials, then the
//! metadata server (GKE Workload Identity, GCE). Tokens come from `gcp_auth`, resolved at each
//! query, never at construction. Without `secretRef` the project is the credentials' own.
//!
//! `address`, which Flagger ignores here, moves the endpoint (private endpoints; tests).

use futures::future::BoxFuture;
use serde::Deserialize;

use super::http;
use super::seam::{MetricsProvider, ProviderError, QueryError, Setup};

pub const DEFAULT_ENDPOINT: &str = "https://monitoring.googleapis.com";
const SCOPE: &str = "https://www.googleapis.com/auth/monitoring.read";

pub struct Stackdriver {
    endpoint: String,
    project: Option<String>,
    key: Option<String>,
    http: reqwest::Client,
}

impl Stackdriver {
    pub fn build(setup: &Setup<'_>) -> Result<Box<dyn MetricsProvider>, ProviderError> {
        let (project, key) = match setup.spec.secret_ref {
            None => (None, None),
            Some(_) => (
                Some(http::secret_key(setup.secret, "project", || {
                    "stackdriver credentials does not contain a project id".into()
                })?),
                setup
                    .secret
                    .and_then(|s| s.get("serviceAccountKey"))
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
            ),
        };
        if let Some(k) = &key {
            // A key that cannot be read fails construction, as in Flagger.
            gcp_auth::CustomServiceAccount::from_json(k)
                .map_err(|e| ProviderError::auth(format!("invalid serviceAccountKey: {e}")))?;
        }
        let endpoint = match setup.spec.address.as_deref().filter(|a| !a.is_empty()) {
            Some(a) => http::url_address("stackdriver", Some(a))?
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            None => DEFAULT_ENDPOINT.to_string(),
        };
        Ok(Box::new(Stackdriver {
            endpoint,
            project: project.map(|p| p.trim().to_string()),
            key,
            http: http::client(setup.http, setup.spec.insecure_skip_verify.unwrap_or(false)),
        }))
    }

    /// An access token and the project to query.
    async fn authorize(&self) -> Result<(String, String), ProviderError> {
        self.credentials().await.map_err(ProviderError::auth)
    }

    async fn credentials(&self) -> Result<(String, String), String> {
        let provider: std::sync::Arc<dyn gcp_auth::TokenProvider> = match &self.key {
            Some(key) => std::sync::Arc::new(
                gcp_auth::CustomServiceAccount::from_json(key)
                    .map_err(|e| format!("invalid serviceAccountKey: {e}"))?,
            ),
            None => gcp_auth::provider()
                .await
                .map_err(|e| format!("no Google credentials: {}", auth_cause(&e)))?,
        };
        let token = provider
            .token(&[SCOPE])
            .await
            .map_err(|e| format!("getting an access token failed: {}", auth_cause(&e)))?;
        let project = match &self.project {
            Some(p) => p.clone(),
            None => provider
                .project_id()
                .await
                .map(|p| p.to_string())
                .map_err(|e| format!("no project: {}", auth_cause(&e)))?,
        };
        Ok((token.as_str().to_string(), project))
    }

    async fn call(&self, query: &str) -> Result<(reqwest::StatusCode, String), ProviderError> {
        let (token, project) = self.authorize().await?;
        let request = self
            .http
            .post(format!(
                "{}/v3/projects/{project}/timeSeries:query",
                self.endpoint
            ))
            .bearer_auth(token)
            .json(&serde_json::json!({ "query": query }));
        http::send(request, &self.endpoint).await
    }

    async fn query(&self, query: &str) -> Result<f64, QueryError> {
        let (status, body) = self
            .call(query)
            .await
            .map_err(|e| e.context("error requesting stackdriver: "))?;
        if !status.is_success() {
            return Err(QueryError::Failed(format!(
                "error requesting stackdriver: {}",
                failure(status, &body).1
            )));
        }
        read(&body)
    }

    async fn online(&self) -> Result<(), ProviderError> {
        let (status, body) = self.call("").await?;
        if status.is_success() {
            return Ok(());
        }
        match failure(status, &body) {
            (Some(code), _) if code == "INVALID_ARGUMENT" => Ok(()),
            (Some(code), message) => Err(ProviderError::answered(
                status,
                format!("unexpected status code: {code}: {message}"),
            )),
            (None, message) => Err(ProviderError::answered(
                status,
                format!("unexpected error: {message}"),
            )),
        }
    }
}

impl MetricsProvider for Stackdriver {
    fn name(&self) -> &'static str {
        "stackdriver"
    }

    fn run_query<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, QueryError>> {
        Box::pin(self.query(query))
    }

    fn is_online(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.online())
    }
}

/// The innermost reason of a credentials error.
fn auth_cause(e: &gcp_auth::Error) -> String {
    let mut text = e.to_string();
    let mut next = std::error::Error::source(e);
    while let Some(source) = next {
        text = format!("{text}: {source}");
        next = source.source();
    }
    text
}

/// Google's error answer `{"error": {"code": 400, "message": "...", "status": "INVALID_ARGUMENT"}}`:
/// its status and the whole sentence.
fn failure(status: reqwest::StatusCode, body: &str) -> (Option<String>, String) {
    #[derive(Deserialize)]
    struct Outer {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(default)]
        message: String,
        #[serde(default)]
        status: String,
    }
    match serde_json::from_str::<Outer>(body) {
        Ok(o) => (
            Some(o.error.status.clone()).filter(|s| !s.is_empty()),
            http::error_response(
                status,
                Some(format!("{}: {}", o.error.status, o.error.message)),
                body,
            ),
        ),
        Err(_) => (None, http::error_response(status, None, body)),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    #[serde(default)]
    time_series_data: Vec<TimeSeriesData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimeSeriesData {
    #[serde(default)]
    point_data: Vec<PointData>,
}

#[derive(Deserialize)]
struct PointData {
    #[serde(default)]
    values: Vec<TypedValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypedValue {
    double_value: Option<f64>,
    /// int64 travels as a string in Google's JSON.
    int64_value: Option<String>,
}

fn read(body: &str) -> Result<f64, QueryError> {
    let answer: Answer = serde_json::from_str(body)
        .map_err(|e| QueryError::Failed(format!("error unmarshaling result: {e}")))?;
    let Some(series) = answer.time_series_data.first() else {
        return Err(QueryError::NoValues(
            "invalid response: no time series: no values found".into(),
        ));
    };
    let Some(value) = series.point_data.first().and_then(|p| p.values.first()) else {
        return Err(QueryError::NoValues(
            "invalid response: the time series has no points: no values found".into(),
        ));
    };
    match (value.double_value, value.int64_value.as_deref()) {
        (Some(v), _) if !v.is_nan() => Ok(v),
        (None, Some(i)) => i
            .parse::<i64>()
            .map(|i| i as f64)
            .map_err(|e| QueryError::Failed(format!("invalid int64Value {i:?}: {e}"))),
        _ => Err(QueryError::NoValues(
            "invalid response: the point has no numeric value: no values found".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_value_of_the_first_point() {
        let body = r#"{"timeSeriesDescriptor":{"labelDescriptors":[{"key":"resource.project_id"}],"pointDescriptors":[{"key":"value.ratio","valueType":"DOUBLE","metricKind":"GAUGE"}]},
            "timeSeriesData":[{"labelValues":[{"stringValue":"p"}],"pointData":[{"values":[{"doubleValue":0.25}],"timeInterval":{"startTime":"2024-01-01T00:00:00Z","endTime":"2024-01-01T00:01:00Z"}},{"values":[{"doubleValue":9}]}]}]}"#;
        assert_eq!(read(body), Ok(0.25));
        let int = r#"{"timeSeriesData":[{"pointData":[{"values":[{"int64Value":"42"}]}]}]}"#;
        assert_eq!(read(int), Ok(42.0));
    }

    #[test]
    fn no_series_or_points_are_no_values() {
        for body in ["{}", r#"{"timeSeriesData":[{"pointData":[]}]}"#] {
            assert!(matches!(read(body), Err(QueryError::NoValues(_))), "{body}");
        }
    }

    #[test]
    fn errors_keep_googles_status_and_message() {
        let (code, text) = failure(
            reqwest::StatusCode::FORBIDDEN,
            r#"{"error":{"code":403,"message":"Permission monitoring.timeSeries.list denied (or the resource may not exist).","status":"PERMISSION_DENIED"}}"#,
        );
        assert_eq!(code.as_deref(), Some("PERMISSION_DENIED"));
        assert_eq!(
            text,
            "error response: Status 403 Forbidden: PERMISSION_DENIED: Permission monitoring.timeSeries.list denied (or the resource may not exist)."
        );
    }
}
