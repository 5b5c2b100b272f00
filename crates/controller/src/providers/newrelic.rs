//! The New Relic provider (reference §5.4): the Insights query API,
//! `GET <address>/v1/accounts/<newrelic_account_id>/query?nrql=<query> SINCE <interval seconds>
//! seconds ago` with the `X-Query-Key` header; the value is `results[0].result` of an answer
//! with exactly one result. The availability check runs `SELECT * FROM Metric`.

use futures::future::BoxFuture;
use serde::Deserialize;

use super::http;
use super::seam::{MetricsProvider, ProviderError, QueryError, Setup};

/// Flagger's default address (the US Insights API).
pub const DEFAULT_ADDRESS: &str = "https://insights-api.newrelic.com";

pub struct NewRelic {
    address: String,
    endpoint: String,
    query_key: String,
    since_seconds: u64,
    http: reqwest::Client,
}

impl NewRelic {
    pub fn build(setup: &Setup<'_>) -> Result<Box<dyn MetricsProvider>, ProviderError> {
        let address = match setup.spec.address.as_deref() {
            Some(a) if !a.is_empty() => a.trim_end_matches('/').to_string(),
            _ => DEFAULT_ADDRESS.to_string(),
        };
        let account = http::secret_key(setup.secret, "newrelic_account_id", || {
            "newrelic credentials does not contain the key 'newrelic_account_id'".into()
        })?;
        let query_key = http::secret_key(setup.secret, "newrelic_query_key", || {
            "newrelic credentials does not contain the key 'newrelic_query_key'".into()
        })?;
        let since_seconds = http::interval(setup.interval)?.as_secs();
        Ok(Box::new(NewRelic {
            endpoint: format!("{address}/v1/accounts/{}/query", account.trim()),
            address,
            query_key,
            since_seconds,
            http: http::client(setup.http, setup.spec.insecure_skip_verify.unwrap_or(false)),
        }))
    }

    async fn nrql(&self, query: &str) -> Result<(reqwest::StatusCode, String), ProviderError> {
        let nrql = format!("{query} SINCE {} seconds ago", self.since_seconds);
        let request = self
            .http
            .get(&self.endpoint)
            .header("X-Query-Key", &self.query_key)
            .header(reqwest::header::ACCEPT, "application/json")
            .query(&[("nrql", nrql)]);
        http::send(request, &self.address).await
    }

    async fn query(&self, query: &str) -> Result<f64, QueryError> {
        let (status, body) = self.nrql(query).await?;
        if status != reqwest::StatusCode::OK {
            return Err(QueryError::Failed(failure(status, &body)));
        }
        read(&body)
    }

    async fn online(&self) -> Result<(), ProviderError> {
        let (status, body) = self.nrql("SELECT * FROM Metric").await?;
        if status == reqwest::StatusCode::OK {
            Ok(())
        } else {
            Err(ProviderError::answered(status, failure(status, &body)))
        }
    }
}

impl MetricsProvider for NewRelic {
    fn name(&self) -> &'static str {
        "newrelic"
    }

    fn run_query<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, QueryError>> {
        Box::pin(self.query(query))
    }

    fn is_online(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.online())
    }
}

/// Insights words its errors as `{"error": "..."}`.
fn failure(status: reqwest::StatusCode, body: &str) -> String {
    #[derive(Deserialize)]
    struct Error {
        error: String,
    }
    let reason = serde_json::from_str::<Error>(body).ok().map(|e| e.error);
    http::error_response(status, reason, body)
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    results: Vec<Result_>,
}

#[derive(Deserialize)]
struct Result_ {
    #[serde(default)]
    result: Option<f64>,
}

fn read(body: &str) -> Result<f64, QueryError> {
    let answer: Answer = serde_json::from_str(body)
        .map_err(|e| QueryError::Failed(format!("error unmarshaling result: {e}")))?;
    match answer.results.as_slice() {
        [one] => match one.result {
            Some(v) if !v.is_nan() => Ok(v),
            _ => Err(QueryError::NoValues(
                "no values found: the result is null".into(),
            )),
        },
        [] => Err(QueryError::NoValues("no values found: no results".into())),
        many => Err(QueryError::NoValues(format!(
            "no values found: {} results where one was expected",
            many.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_one_result() {
        let body = r#"{"results":[{"result":1.25}],"metadata":{"eventTypes":["Transaction"]}}"#;
        assert_eq!(read(body), Ok(1.25));
    }

    #[test]
    fn null_none_or_several_results_are_no_values() {
        for body in [
            r#"{"results":[{"result":null}]}"#,
            r#"{"results":[]}"#,
            r#"{"results":[{"result":1},{"result":2}]}"#,
            r#"{"results":[{"count":3}]}"#,
        ] {
            assert!(matches!(read(body), Err(QueryError::NoValues(_))), "{body}");
        }
    }

    #[test]
    fn errors_use_new_relics_words() {
        assert_eq!(
            failure(
                reqwest::StatusCode::BAD_REQUEST,
                r#"{"error":"NRQL Syntax Error: Error at line 1 position 8"}"#
            ),
            "error response: Status 400 Bad Request: NRQL Syntax Error: Error at line 1 position 8"
        );
    }
}
