//! The Datadog provider (reference §5.4): `GET <address>/api/v1/query` with the query and a
//! window of ten metric intervals ending now (seconds), the API and application keys in the
//! `DD-API-KEY` / `DD-APPLICATION-KEY` headers, and the availability check
//! `GET <address>/api/v1/validate`.
//!
//! The value is the *first* point of the first series, as Flagger reads it: the newest point
//! of a window usually holds an incomplete bucket. A point whose value is null (Datadog's
//! answer for a bucket without data) is "no values", where Flagger's Go decoder would read 0
//! and pass an error-rate check on no data at all.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::http;
use super::seam::{MetricsProvider, ProviderError, QueryError, Setup};

/// Flagger's default address (Datadog's US1 site).
pub const DEFAULT_ADDRESS: &str = "https://api.datadoghq.com";

pub struct Datadog {
    address: String,
    api_key: String,
    application_key: String,
    /// Ten metric intervals.
    window: Duration,
    http: reqwest::Client,
}

impl Datadog {
    pub fn build(setup: &Setup<'_>) -> Result<Box<dyn MetricsProvider>, ProviderError> {
        let address = match setup.spec.address.as_deref() {
            Some(a) if !a.is_empty() => a.trim_end_matches('/').to_string(),
            _ => DEFAULT_ADDRESS.to_string(),
        };
        let api_key = http::secret_key(setup.secret, "datadog_api_key", || {
            "datadog credentials does not contain datadog_api_key".into()
        })?;
        let application_key = http::secret_key(setup.secret, "datadog_application_key", || {
            "datadog credentials does not contain datadog_application_key".into()
        })?;
        let window = http::interval(setup.interval)? * 10;
        Ok(Box::new(Datadog {
            address,
            api_key,
            application_key,
            window,
            http: http::client(setup.http, setup.spec.insecure_skip_verify.unwrap_or(false)),
        }))
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.address))
            .header("DD-API-KEY", &self.api_key)
            .header("DD-APPLICATION-KEY", &self.application_key)
    }

    async fn query(&self, query: &str) -> Result<f64, QueryError> {
        let to = http::now_unix().as_secs();
        let from = to.saturating_sub(self.window.as_secs());
        let request = self.get("/api/v1/query").query(&[
            ("query", query),
            ("from", &from.to_string()),
            ("to", &to.to_string()),
        ]);
        let (status, body) = http::query(request, &self.address).await?;
        if status != reqwest::StatusCode::OK {
            return Err(QueryError::Failed(failure(status, &body)));
        }
        read(&body)
    }

    async fn online(&self) -> Result<(), ProviderError> {
        http::send_ok(self.get("/api/v1/validate"), &self.address, failure)
            .await
            .map(drop)
    }
}

impl MetricsProvider for Datadog {
    fn name(&self) -> &'static str {
        "datadog"
    }

    fn run_query<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, QueryError>> {
        Box::pin(self.query(query))
    }

    fn is_online(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.online())
    }
}

/// Datadog words its errors as `{"errors": ["..."]}`.
fn failure(status: reqwest::StatusCode, body: &str) -> String {
    #[derive(Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<String>,
    }
    let reason = serde_json::from_str::<Errors>(body)
        .ok()
        .map(|e| e.errors.join("; "));
    http::error_response(status, reason, body)
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    series: Vec<Series>,
    /// Set with status `error` (a query Datadog cannot run answers 200 with it).
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    pointlist: Vec<Vec<Option<f64>>>,
}

fn read(body: &str) -> Result<f64, QueryError> {
    let answer: Answer = serde_json::from_str(body)
        .map_err(|e| QueryError::Failed(format!("error unmarshaling result: {e}")))?;
    if let Some(error) = answer.error.filter(|e| !e.is_empty()) {
        return Err(QueryError::Failed(format!("query error: {error}")));
    }
    let Some(series) = answer.series.first() else {
        return Err(QueryError::NoValues(
            "no values found: the query matched no series".into(),
        ));
    };
    match series
        .pointlist
        .first()
        .map(|p| p.get(1).copied().flatten())
    {
        None => Err(QueryError::NoValues(
            "no values found: the series has no points".into(),
        )),
        Some(None) => Err(QueryError::NoValues(
            "no values found: the first point of the series is null".into(),
        )),
        Some(Some(v)) if v.is_nan() => Err(QueryError::NoValues("no values found".into())),
        Some(Some(v)) => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_first_point_of_the_first_series() {
        let body = r#"{"status":"ok","res_type":"time_series","series":[
            {"metric":"trace.http.request.errors","pointlist":[[1700000000000.0,0.25],[1700000010000.0,7.0]]},
            {"metric":"other","pointlist":[[1700000000000.0,99.0]]}],"from_date":1,"to_date":2}"#;
        assert_eq!(read(body), Ok(0.25));
    }

    #[test]
    fn no_series_no_points_and_null_points_are_no_values() {
        for body in [
            r#"{"status":"ok","series":[]}"#,
            r#"{"status":"ok","series":[{"pointlist":[]}]}"#,
            r#"{"status":"ok","series":[{"pointlist":[[1700000000000.0,null],[1700000010000.0,1.0]]}]}"#,
        ] {
            assert!(matches!(read(body), Err(QueryError::NoValues(_))), "{body}");
        }
    }

    #[test]
    fn an_error_answer_is_a_failure_with_datadogs_words() {
        assert_eq!(
            read(r#"{"status":"error","error":"Error parsing query: unable to parse avg:: Rule 'scope_expr' didn't match","series":[]}"#),
            Err(QueryError::Failed(
                "query error: Error parsing query: unable to parse avg:: Rule 'scope_expr' didn't match".into()
            ))
        );
        assert_eq!(
            failure(
                reqwest::StatusCode::FORBIDDEN,
                r#"{"errors":["Forbidden"]}"#
            ),
            "error response: Status 403 Forbidden: Forbidden"
        );
        assert!(matches!(read("<html>"), Err(QueryError::Failed(_))));
    }
}
