//! Range queries against Prometheus for `flagger judge --prometheus`: each query must give one
//! series (aggregate in PromQL otherwise); its values over `[start, end]` at `step` are the
//! sample vector.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::input::{Series, matrix};

/// A time argument: RFC 3339, Unix seconds, `now`, or `now-<duration>` (e.g. `now-30m`).
pub fn parse_time(text: &str, now: SystemTime) -> Result<f64, String> {
    let t = text.trim();
    let unix = |s: SystemTime| {
        s.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    if t == "now" {
        return Ok(unix(now));
    }
    if let Some(ago) = t.strip_prefix("now-") {
        let d =
            flagger_core::duration::parse_go_duration(ago).map_err(|e| format!("{text:?}: {e}"))?;
        return Ok(unix(now) - d.as_secs_f64());
    }
    if let Ok(secs) = t.parse::<f64>()
        && secs.is_finite()
    {
        return Ok(secs);
    }
    t.parse::<k8s_openapi::jiff::Timestamp>()
        .map(|ts| ts.as_millisecond() as f64 / 1000.0)
        .map_err(|_| format!("{text:?} is not a time: use RFC 3339, Unix seconds, now or now-30m"))
}

/// A step argument: a duration (`30s`, `1m`) or a number of seconds.
pub fn parse_step(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let secs = match t.parse::<f64>() {
        Ok(s) => s,
        Err(_) => flagger_core::duration::parse_go_duration(t)
            .map(|d: Duration| d.as_secs_f64())
            .map_err(|e| format!("--step {text:?}: {e}"))?,
    };
    if secs > 0.0 && secs.is_finite() {
        Ok(secs)
    } else {
        Err(format!("--step {text:?}: must be above 0"))
    }
}

/// A Prometheus HTTP API endpoint.
pub struct Prometheus {
    base: String,
    http: reqwest::Client,
}

impl Prometheus {
    pub fn new(url: &str) -> Result<Prometheus, String> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "--prometheus {url:?}: an http:// or https:// URL is needed"
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("starting the HTTP client: {e}"))?;
        Ok(Prometheus { base, http })
    }

    /// The query's single series over the range, named `name`.
    pub async fn range(
        &self,
        name: &str,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Series, String> {
        let url = format!("{}/api/v1/query_range", self.base);
        let response = self
            .http
            .get(&url)
            .query(&[
                ("query", query.to_string()),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("step", step.to_string()),
            ])
            .send()
            .await
            .map_err(|e| format!("query {query:?}: {url}: {e}"))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| format!("query {query:?}: the answer (HTTP {status}) is not JSON: {e}"))?;
        if body.get("status").and_then(Value::as_str) != Some("success") {
            let why = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no error message");
            return Err(format!(
                "query {query:?}: Prometheus answered HTTP {status}: {why}"
            ));
        }
        let data = body
            .get("data")
            .ok_or_else(|| format!("query {query:?}: the answer has no data"))?;
        matrix(data, name).map_err(|e| format!("query {query:?}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_steps() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_time("now", now), Ok(1_000_000.0));
        assert_eq!(parse_time("now-30m", now), Ok(998_200.0));
        assert_eq!(parse_time("1700000000", now), Ok(1_700_000_000.0));
        assert_eq!(parse_time("2023-11-14T22:13:20Z", now), Ok(1_700_000_000.0));
        assert!(parse_time("yesterday", now).is_err());
        assert_eq!(parse_step("1m"), Ok(60.0));
        assert_eq!(parse_step("15"), Ok(15.0));
        assert!(parse_step("0s").is_err());
    }
}
