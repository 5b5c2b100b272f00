//! The CloudWatch provider (reference §5.4): the query is the JSON list of `MetricDataQuery`
//! that `GetMetricData` takes; it runs over ten metric intervals ending now with
//! `MaxDatapoints` 20, and the value is the first value of the first result (CloudWatch lists
//! the newest first). The availability check calls `GetMetricData` with no query: CloudWatch's
//! validation error (400) means it is reachable and the credentials are accepted; any other
//! failure (403 for a role without `cloudwatch:GetMetricData`) means it is not.
//!
//! The region is `provider.region`, else the one in a CloudWatch `address`
//! (`https://monitoring.<region>.amazonaws.com`); `address` (else `AWS_ENDPOINT_URL_CLOUDWATCH`
//! or `AWS_ENDPOINT_URL`) moves the endpoint. Requests use CloudWatch's JSON protocol
//! (`X-Amz-Target: GraniteServiceVersion20100801.GetMetricData`), signed with Signature
//! Version 4 by AWS's `aws-sigv4`; credentials come from the SDKs' standard chain
//! ([`super::aws`]), resolved at each query, never at construction. Like the SDK Flagger
//! uses, a throttled or failed-in-transit call is retried (3 retries).
//!
//! The query's field names are matched without regard to case, as Flagger's JSON decoding
//! does (`"id"` is `Id`), and unknown fields are dropped.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::aws::{self, Env};
use super::http;
use super::seam::{MetricsProvider, ProviderError, QueryError, Setup};

pub struct CloudWatch {
    region: String,
    endpoint: String,
    window: Duration,
    env: Env,
    http: reqwest::Client,
}

/// The SDK's retries (Flagger sets 3).
const MAX_RETRIES: usize = 3;

impl CloudWatch {
    pub fn build(setup: &Setup<'_>) -> Result<Box<dyn MetricsProvider>, ProviderError> {
        Self::with_env(setup, Env::process())
    }

    /// A provider reading the AWS variables from `env` (tests give their own).
    pub fn with_env(
        setup: &Setup<'_>,
        env: Env,
    ) -> Result<Box<dyn MetricsProvider>, ProviderError> {
        let address = setup.spec.address.as_deref().filter(|a| !a.is_empty());
        let region = match setup.spec.region.as_deref().filter(|r| !r.is_empty()) {
            Some(r) => r.to_string(),
            None => address
                .and_then(region_of)
                .ok_or_else(|| ProviderError::invalid("region not specified"))?,
        };
        let window = http::interval(setup.interval)? * 10;
        let endpoint = match address {
            Some(a) => http::url_address("cloudwatch", Some(a))?.to_string(),
            None => env
                .get("AWS_ENDPOINT_URL_CLOUDWATCH")
                .or_else(|| env.get("AWS_ENDPOINT_URL"))
                .map(str::to_string)
                .unwrap_or_else(|| {
                    format!("https://monitoring.{region}.{}", aws::dns_suffix(&region))
                }),
        };
        Ok(Box::new(CloudWatch {
            region,
            endpoint: format!("{}/", endpoint.trim_end_matches('/')),
            window,
            env,
            http: http::client(setup.http, setup.spec.insecure_skip_verify.unwrap_or(false)),
        }))
    }

    /// One signed `GetMetricData` call, retried when throttled or lost in transit.
    async fn get_metric_data(
        &self,
        input: &Value,
    ) -> Result<(reqwest::StatusCode, String), ProviderError> {
        let credentials = aws::credentials(&self.env, &self.region, &self.http)
            .await
            .map_err(ProviderError::auth)?;
        let identity = credentials.into();
        let body = input.to_string();
        let mut last = ProviderError::transient("");
        for attempt in 0..=MAX_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * (1 << attempt))).await;
            }
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region(&self.region)
                .name("monitoring")
                .time(SystemTime::now())
                .settings(SigningSettings::default())
                .build()
                .map_err(|e| ProviderError::auth(format!("signing failed: {e}")))?
                .into();
            let headers = [
                ("content-type", "application/x-amz-json-1.0"),
                (
                    "x-amz-target",
                    "GraniteServiceVersion20100801.GetMetricData",
                ),
            ];
            let signable = SignableRequest::new(
                "POST",
                &self.endpoint,
                headers.iter().copied(),
                SignableBody::Bytes(body.as_bytes()),
            )
            .map_err(|e| ProviderError::auth(format!("signing failed: {e}")))?;
            let (instructions, _) = sign(signable, &params)
                .map_err(|e| ProviderError::auth(format!("signing failed: {e}")))?
                .into_parts();
            let mut request = self.http.post(&self.endpoint).body(body.clone());
            for (name, value) in headers {
                request = request.header(name, value);
            }
            for (name, value) in instructions.headers() {
                request = request.header(name, value);
            }
            match http::send(request, &self.endpoint).await {
                Ok((status, text)) => {
                    let throttled = status.as_u16() == 429
                        || status.is_server_error()
                        || (status.as_u16() == 400 && error_code(&text).contains("Throttling"));
                    if throttled && attempt < MAX_RETRIES {
                        last = ProviderError::answered(status, failure(status, &text));
                        continue;
                    }
                    return Ok((status, text));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn query(&self, query: &str) -> Result<f64, QueryError> {
        let queries: Vec<Value> = serde_json::from_str(query)
            .map_err(|e| QueryError::Failed(format!("error unmarshaling query: {e}")))?;
        let queries: Vec<Value> = queries
            .iter()
            .map(|q| canonical(q, &METRIC_DATA_QUERY))
            .collect();
        let end = http::now_unix().as_secs();
        let start = end.saturating_sub(self.window.as_secs());
        let input = serde_json::json!({
            "MetricDataQueries": queries,
            "StartTime": start,
            "EndTime": end,
            "MaxDatapoints": 20,
        });
        let (status, body) = self
            .get_metric_data(&input)
            .await
            .map_err(|e| e.context("error requesting cloudwatch: "))?;
        if !status.is_success() {
            return Err(QueryError::Failed(format!(
                "error requesting cloudwatch: {}",
                failure(status, &body)
            )));
        }
        read(&body)
    }

    async fn online(&self) -> Result<(), ProviderError> {
        let input = serde_json::json!({"MetricDataQueries": [], "StartTime": 0, "EndTime": 0});
        let (status, body) = self.get_metric_data(&input).await?;
        if status.is_success() || status == reqwest::StatusCode::BAD_REQUEST {
            Ok(())
        } else {
            Err(ProviderError::answered(
                status,
                format!("unexpected status code: {}", failure(status, &body)),
            ))
        }
    }
}

impl MetricsProvider for CloudWatch {
    fn name(&self) -> &'static str {
        "cloudwatch"
    }

    fn run_query<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, QueryError>> {
        Box::pin(self.query(query))
    }

    fn is_online(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.online())
    }
}

/// The region of a CloudWatch endpoint address (`monitoring.<region>.amazonaws.com[.cn]`).
pub fn region_of(address: &str) -> Option<String> {
    let url = reqwest::Url::parse(address).ok()?;
    let host = url.host_str()?;
    let rest = host.strip_prefix("monitoring.")?;
    let region = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))?;
    (!region.is_empty() && !region.contains('.')).then(|| region.to_string())
}

/// A member of a structure: its name as CloudWatch spells it, and its own members when it is
/// a structure (or a list of them).
struct Shape {
    members: &'static [(&'static str, Option<&'static Shape>)],
}

const DIMENSION: Shape = Shape {
    members: &[("Name", None), ("Value", None)],
};
const METRIC: Shape = Shape {
    members: &[
        ("Namespace", None),
        ("MetricName", None),
        ("Dimensions", Some(&DIMENSION)),
    ],
};
const METRIC_STAT: Shape = Shape {
    members: &[
        ("Metric", Some(&METRIC)),
        ("Period", None),
        ("Stat", None),
        ("Unit", None),
    ],
};
const METRIC_DATA_QUERY: Shape = Shape {
    members: &[
        ("Id", None),
        ("MetricStat", Some(&METRIC_STAT)),
        ("Expression", None),
        ("Label", None),
        ("ReturnData", None),
        ("Period", None),
        ("AccountId", None),
    ],
};

/// A query object with CloudWatch's member names (matched without regard to case) and
/// without unknown members.
fn canonical(value: &Value, shape: &Shape) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|v| canonical(v, shape)).collect()),
        Value::Object(fields) => {
            let mut out = Map::new();
            for (key, v) in fields {
                if let Some((name, inner)) = shape
                    .members
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(key))
                {
                    let v = match inner {
                        Some(s) => canonical(v, s),
                        None => v.clone(),
                    };
                    out.insert((*name).to_string(), v);
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// The error code of a JSON-protocol error (`__type`, without its namespace).
fn error_code(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("__type").and_then(|t| t.as_str()).map(str::to_string))
        .map(|t| t.rsplit('#').next().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// `<status>: <code>: <message>` of an error answer.
fn failure(status: reqwest::StatusCode, body: &str) -> String {
    let message = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        v.get("message")
            .or_else(|| v.get("Message"))
            .and_then(|m| m.as_str())
            .map(str::to_string)
    });
    let code = error_code(body);
    let reason = match (code.is_empty(), message) {
        (false, Some(m)) => Some(format!("{code}: {m}")),
        (false, None) => Some(code),
        (true, m) => m,
    };
    http::error_response(status, reason, body)
}

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "MetricDataResults", default)]
    results: Vec<Result_>,
}

#[derive(Deserialize)]
struct Result_ {
    #[serde(rename = "Values", default)]
    values: Vec<f64>,
}

fn read(body: &str) -> Result<f64, QueryError> {
    let answer: Answer = serde_json::from_str(body)
        .map_err(|e| QueryError::Failed(format!("error unmarshaling result: {e}")))?;
    let Some(first) = answer.results.first() else {
        return Err(QueryError::NoValues(
            "invalid response: no metric data results: no values found".into(),
        ));
    };
    match first.values.first() {
        Some(v) if !v.is_nan() => Ok(*v),
        _ => Err(QueryError::NoValues(
            "invalid response: the first result has no values: no values found".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_comes_from_a_cloudwatch_address() {
        assert_eq!(
            region_of("https://monitoring.eu-west-1.amazonaws.com"),
            Some("eu-west-1".into())
        );
        assert_eq!(
            region_of("https://monitoring.cn-north-1.amazonaws.com.cn/"),
            Some("cn-north-1".into())
        );
        assert_eq!(region_of("http://127.0.0.1:4566"), None);
    }

    #[test]
    fn query_fields_match_without_case_and_unknown_ones_go() {
        let q: Value = serde_json::from_str(
            r#"{"id":"e1","metricStat":{"metric":{"namespace":"AWS/ApplicationELB","metricname":"HTTPCode_Target_5XX_Count","dimensions":[{"name":"LoadBalancer","value":"app/lb/1"}]},"period":60,"stat":"Sum"},"returnData":false,"color":"red"}"#,
        )
        .expect("json");
        assert_eq!(
            canonical(&q, &METRIC_DATA_QUERY),
            serde_json::json!({"Id":"e1","MetricStat":{"Metric":{"Namespace":"AWS/ApplicationELB","MetricName":"HTTPCode_Target_5XX_Count","Dimensions":[{"Name":"LoadBalancer","Value":"app/lb/1"}]},"Period":60,"Stat":"Sum"},"ReturnData":false})
        );
    }

    #[test]
    fn reads_the_first_value_of_the_first_result() {
        let body = r#"{"MetricDataResults":[{"Id":"e3","Label":"e3","Timestamps":[1700000060,1700000000],"Values":[0.5,9.0],"StatusCode":"Complete"},{"Id":"e1","Values":[7.0]}],"Messages":[]}"#;
        assert_eq!(read(body), Ok(0.5));
        for empty in [
            r#"{"MetricDataResults":[],"Messages":[]}"#,
            r#"{"MetricDataResults":[{"Id":"e3","Timestamps":[],"Values":[],"StatusCode":"Complete"}]}"#,
        ] {
            assert!(
                matches!(read(empty), Err(QueryError::NoValues(_))),
                "{empty}"
            );
        }
        assert_eq!(
            failure(
                reqwest::StatusCode::FORBIDDEN,
                r#"{"__type":"com.amazon.coral.service#AccessDeniedException","message":"User is not authorized to perform: cloudwatch:GetMetricData"}"#
            ),
            "error response: Status 403 Forbidden: AccessDeniedException: User is not authorized to perform: cloudwatch:GetMetricData"
        );
    }
}
