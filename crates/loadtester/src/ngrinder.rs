//! `type: ngrinder` tasks: clone an nGrinder performance test and run it, as Flagger's load
//! tester does (an asynchronous task: the webhook is answered 202 at once; while one runs for a
//! canary and test, the same one is not started again).
//!
//! nGrinder's REST API (`PerfTestApiController`): `POST perftest/api/<id>/clone_and_start`
//! answers the new test (`{"id": 961, "status": "READY", ...}`); `GET
//! perftest/api/<id>/status` answers `{"status": [{"id": 961, "status_id": "TESTING", ...}]}`;
//! `PUT perftest/api/<id>?action=stop` stops it. Every call uses HTTP basic authentication; an
//! answer `{"success": false, ...}` is a failure.
//!
//! Metadata, as in Flagger: `server` (the base URL; paths are resolved against it as URL
//! references), `clone` (the test to clone, a number), `username` and `passwd` (base64) are
//! required; `pollInterval` is a Go duration, 1s by default. `FINISHED` ends the task as a
//! success, `STOP_BY_ERROR`, `CANCELED` and `UNKNOWN` as a failure; at the load tester's
//! `-timeout` the test is stopped.
//!
//! Difference from Flagger, on purpose: `pollInterval` is honoured (Flagger multiplies the
//! parsed duration by a second again, so a `pollInterval` given polls almost never, and an
//! absent one polls every second).

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;

/// An ngrinder task, checked and ready to run.
#[derive(Debug, Clone)]
pub struct NGrinderTask {
    pub server: url::Url,
    pub clone_id: u64,
    pub username: String,
    pub password: String,
    pub poll_interval: Duration,
}

impl NGrinderTask {
    /// Reads the task from the webhook's metadata; the error says what is wrong.
    pub fn from_metadata(metadata: &HashMap<String, String>) -> Result<NGrinderTask, String> {
        let get = |key: &str| metadata.get(key).map(String::as_str).unwrap_or_default();
        let (server, clone, username, passwd) =
            (get("server"), get("clone"), get("username"), get("passwd"));
        if server.is_empty() || clone.is_empty() || username.is_empty() || passwd.is_empty() {
            return Err("server, clone, username and passwd are required metadata".into());
        }
        let server = url::Url::parse(server).map_err(|e| format!("invalid url: {server}: {e}"))?;
        let clone_id = clone
            .trim()
            .parse()
            .map_err(|_| format!("metadata clone must be an integer, not {clone:?}"))?;
        let password = base64::engine::general_purpose::STANDARD
            .decode(passwd.trim())
            .map_err(|e| format!("metadata passwd is not base64: {e}"))
            .and_then(|p| {
                String::from_utf8(p).map_err(|_| "metadata passwd is not UTF-8 text".to_string())
            })?;
        let poll_interval = match metadata.get("pollInterval") {
            None => Duration::from_secs(1),
            Some(v) => flagger_core::duration::parse_go_duration(v)
                .map_err(|e| format!("metadata pollInterval: {e}"))?,
        }
        .max(Duration::from_millis(50));
        Ok(NGrinderTask {
            server,
            clone_id,
            username: username.to_string(),
            password,
            poll_interval,
        })
    }

    /// The key that deduplicates runs: one per canary and cloned test.
    pub fn key(&self, canary: &str) -> String {
        format!("ngrinder\n{canary}\n{}", self.clone_id)
    }

    /// What the logs call it.
    pub fn describe(&self) -> String {
        self.url(&format!("perftest/api/{}/clone_and_start", self.clone_id))
            .map_or_else(|e| e, |u| u.to_string())
    }

    fn url(&self, path: &str) -> Result<url::Url, String> {
        self.server
            .join(path)
            .map_err(|e| format!("cannot build the URL of {path} on {}: {e}", self.server))
    }

    async fn call(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> Result<serde_json::Value, String> {
        let url = self.url(path)?;
        let response = http
            .request(method.clone(), url.clone())
            .basic_auth(&self.username, Some(&self.password))
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| format!("{method} {url}: reading the answer: {e}"))?;
        if !status.is_success() {
            return Err(format!("{method} {url}: {status}: {}", body.trim()));
        }
        let value: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| format!("{method} {url}: the answer is not JSON ({e}): {body}"))?;
        if value.get("success") == Some(&serde_json::Value::Bool(false)) {
            return Err(format!("{method} {url}: request failed: {body}"));
        }
        Ok(value)
    }

    /// Clones and starts the test, then polls its status until it ends or `timeout` passes
    /// (then the test is stopped). `Ok` when it finished.
    pub async fn run(&self, http: &reqwest::Client, timeout: Duration) -> Result<(), String> {
        let give_up = tokio::time::Instant::now() + timeout;
        let started = self
            .call(
                http,
                reqwest::Method::POST,
                &format!("perftest/api/{}/clone_and_start", self.clone_id),
            )
            .await?;
        let test_id = started
            .get("id")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("nGrinder's answer has no test id: {started}"))?;
        tracing::info!(
            "ngrinder test {test_id} started from test {}",
            self.clone_id
        );
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.poll_interval) => {}
                _ = tokio::time::sleep_until(give_up) => {
                    tracing::warn!("ngrinder test {test_id} still running at the timeout: stopping it");
                    let stop = self
                        .call(http, reqwest::Method::PUT, &format!("perftest/api/{test_id}?action=stop"))
                        .await;
                    if let Err(e) = stop {
                        tracing::error!("stopping ngrinder test {test_id}: {e}");
                    }
                    return Err(format!("ngrinder test {test_id} timed out and was stopped"));
                }
            }
            let status = match self
                .call(
                    http,
                    reqwest::Method::GET,
                    &format!("perftest/api/{test_id}/status"),
                )
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    // A failed poll is retried at the next interval, as Flagger does.
                    tracing::warn!("polling ngrinder test {test_id}: {e}");
                    continue;
                }
            };
            let status_id = status
                .pointer("/status/0/status_id")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default();
            tracing::debug!("ngrinder test {test_id} status {status_id}");
            match status_id {
                "FINISHED" => return Ok(()),
                "STOP_BY_ERROR" | "CANCELED" | "UNKNOWN" => {
                    return Err(format!("ngrinder test {test_id} ended with {status_id}"));
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn metadata_is_checked() {
        let ok = metadata(&[
            ("server", "http://ngrinder:8080"),
            ("clone", "960"),
            ("username", "admin"),
            ("passwd", "YWRtaW4="),
        ]);
        let task = NGrinderTask::from_metadata(&ok).expect("valid");
        assert_eq!(task.password, "admin");
        assert_eq!(task.poll_interval, Duration::from_secs(1));
        assert_eq!(
            task.describe(),
            "http://ngrinder:8080/perftest/api/960/clone_and_start"
        );
        let mut with_interval = ok.clone();
        with_interval.insert("pollInterval".into(), "5s".into());
        assert_eq!(
            NGrinderTask::from_metadata(&with_interval)
                .expect("valid")
                .poll_interval,
            Duration::from_secs(5)
        );
        for (key, value, error) in [
            (
                "server",
                "",
                "server, clone, username and passwd are required metadata",
            ),
            ("clone", "abc", "metadata clone must be an integer"),
            ("passwd", "%%%", "metadata passwd is not base64"),
            ("pollInterval", "often", "metadata pollInterval"),
        ] {
            let mut bad = ok.clone();
            bad.insert(key.into(), value.into());
            let err = NGrinderTask::from_metadata(&bad).expect_err(key);
            assert!(err.starts_with(error), "{key}: {err}");
        }
    }
}
