//! The Dynatrace provider (reference §5.4): the Metrics API v2,
//! `GET <address>/api/v2/metrics/query?metricSelector=<query>&resolution=Inf&from=<ms>&to=<ms>`
//! over ten metric intervals ending now, with `Authorization: Api-Token <dynatrace_token>`. The
//! value is the first value of the *last* data entry of the first result. The availability
//! check is `GET <address>/api/v2/metrics?pageSize=1`.

use futures::future::BoxFuture;
use serde::Deserialize;

use super::http;
use super::seam::{MetricsProvider, ProviderError, QueryError, Setup};

pub struct Dynatrace {
    address: String,
    authorization: String,
    window_ms: u128,
    http: reqwest::Client,
}

impl Dynatrace {
    pub fn build(setup: &Setup<'_>) -> Result<Box<dyn MetricsProvider>, ProviderError> {
        let address = match setup.spec.address.as_deref() {
            Some(a) if !a.is_empty() => a.trim_end_matches('/').to_string(),
            _ => return Err(ProviderError::invalid("dynatrace endpoint is not set")),
        };
        let token = http::secret_key(setup.secret, "dynatrace_token", || {
            "dynatrace credentials does not contain dynatrace_token".into()
        })?;
        let window_ms = http::interval(setup.interval)?.as_millis() * 10;
        Ok(Box::new(Dynatrace {
            address,
            authorization: format!("Api-Token {token}"),
            window_ms,
            http: http::client(setup.http, setup.spec.insecure_skip_verify.unwrap_or(false)),
        }))
    }

    async fn query(&self, query: &str) -> Result<f64, QueryError> {
        let to = http::now_unix().as_secs() as u128 * 1000;
        let from = to.saturating_sub(self.window_ms);
        let request = self
            .http
            .get(format!("{}/api/v2/metrics/query", self.address))
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .query(&[
                ("metricSelector", query),
                ("resolution", "Inf"),
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
        let request = self
            .http
            .get(format!("{}/api/v2/metrics", self.address))
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .query(&[("pageSize", "1")]);
        http::send_ok(request, &self.address, failure)
            .await
            .map(drop)
    }
}

impl MetricsProvider for Dynatrace {
    fn name(&self) -> &'static str {
        "dynatrace"
    }

    fn run_query<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, QueryError>> {
        Box::pin(self.query(query))
    }

    fn is_online(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.online())
    }
}

/// Dynatrace words its errors as `{"error": {"code": 400, "message": "..."}}`.
fn failure(status: reqwest::StatusCode, body: &str) -> String {
    #[derive(Deserialize)]
    struct Outer {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(default)]
        message: String,
    }
    let reason = serde_json::from_str::<Outer>(body)
        .ok()
        .map(|e| e.error.message);
    http::error_response(status, reason, body)
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    result: Vec<Collection>,
}

#[derive(Deserialize)]
struct Collection {
    #[serde(default)]
    data: Vec<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    values: Vec<Option<f64>>,
}

fn read(body: &str) -> Result<f64, QueryError> {
    let answer: Answer = serde_json::from_str(body)
        .map_err(|e| QueryError::Failed(format!("error unmarshaling result: {e}")))?;
    let Some(collection) = answer.result.first() else {
        return Err(QueryError::NoValues(
            "no values found: the selector matched no metric".into(),
        ));
    };
    let Some(data) = collection.data.last() else {
        return Err(QueryError::NoValues(
            "no values found: the metric has no data in the window".into(),
        ));
    };
    match data.values.first() {
        Some(Some(v)) if !v.is_nan() => Ok(*v),
        Some(_) => Err(QueryError::NoValues(
            "no values found: the value is null".into(),
        )),
        None => Err(QueryError::NoValues(
            "no values found: the data has no values".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_first_value_of_the_last_data_entry() {
        let body = r#"{"totalCount":2,"nextPageKey":null,"resolution":"Inf","result":[{"metricId":"builtin:service.errors.total.rate","dataPointCountRatio":0.1,"dimensionCountRatio":0.1,"data":[
            {"dimensions":["SERVICE-1"],"dimensionMap":{},"timestamps":[1700000000000],"values":[3.5]},
            {"dimensions":["SERVICE-2"],"dimensionMap":{},"timestamps":[1700000000000],"values":[0.5]}]}]}"#;
        assert_eq!(read(body), Ok(0.5));
    }

    #[test]
    fn empty_and_null_are_no_values() {
        for body in [
            r#"{"totalCount":0,"result":[]}"#,
            r#"{"totalCount":0,"result":[{"metricId":"m","data":[]}]}"#,
            r#"{"totalCount":1,"result":[{"metricId":"m","data":[{"timestamps":[1],"values":[null]}]}]}"#,
            r#"{"totalCount":1,"result":[{"metricId":"m","data":[{"timestamps":[],"values":[]}]}]}"#,
        ] {
            assert!(matches!(read(body), Err(QueryError::NoValues(_))), "{body}");
        }
    }

    #[test]
    fn errors_use_dynatraces_words() {
        assert_eq!(
            failure(
                reqwest::StatusCode::UNAUTHORIZED,
                r#"{"error":{"code":401,"message":"Missing authorization parameter."}}"#
            ),
            "error response: Status 401 Unauthorized: Missing authorization parameter."
        );
    }
}
