//! `type: concord` tasks: start a process of a Concord project's repository and wait for it to
//! end, as Flagger's load tester does (a blocking task: the webhook's answer is the process's
//! outcome).
//!
//! Concord's process API (walmartlabs/concord `docs/src/api/process.md`): `POST
//! /api/v1/process` with a `multipart/form-data` body (`org`, `project`, `repo`, `entryPoint`,
//! `arguments.<name>` fields) answers `{"instanceId": "...", "ok": true}`; `GET
//! /api/v1/process/<instanceId>` answers the process entry with its `status` (`NEW`, `ENQUEUED`,
//! `RUNNING`, ..., `FINISHED`, `FAILED`, `CANCELLED`, `TIMED_OUT`). Every request carries the API
//! key read from `apiKeyPath` as its `Authorization` header.
//!
//! Metadata, as in Flagger: `server`, `org`, `project`, `repo`, `entrypoint`, `apiKeyPath` (a
//! file, e.g. a mounted Secret) and `endpoint` (passed to the flow as `arguments.endpoint`) are
//! required; `pollInterval` and `pollTimeout` are whole seconds (5 and 30 by default);
//! `arguments.<name>` entries become process arguments (`arguments.endpoint` is refused: set
//! `endpoint`).
//!
//! Differences from Flagger, on purpose: `pollTimeout` bounds the whole wait (Flagger's timer
//! restarts at every poll, so with the defaults it never fires and only the load tester's
//! `-timeout` ends the wait); `CANCELLED` and `TIMED_OUT` end the wait as failures (Flagger keeps
//! polling them until the timeout); surrounding whitespace of the API key file is dropped (a
//! trailing newline would make the header invalid).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

const PROCESS_PATH: &str = "/api/v1/process";
const ARGUMENTS_PREFIX: &str = "arguments.";

/// A concord task, checked and ready to run.
#[derive(Debug, Clone)]
pub struct ConcordTask {
    pub server: url::Url,
    pub org: String,
    pub project: String,
    pub repo: String,
    pub entry_point: String,
    pub api_key_path: PathBuf,
    pub endpoint: String,
    pub arguments: BTreeMap<String, String>,
    pub poll_interval: Duration,
    pub poll_timeout: Duration,
}

/// The part of a process entry the task reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Process {
    #[serde(default)]
    instance_id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    ok: bool,
}

impl ConcordTask {
    /// Reads the task from the webhook's metadata; the error says which entry is wrong.
    pub fn from_metadata(metadata: &HashMap<String, String>) -> Result<ConcordTask, String> {
        let required = |key: &str| {
            metadata
                .get(key)
                .cloned()
                .ok_or_else(|| format!("`{key}` is required with type concord"))
        };
        let server = required("server")?;
        let server = url::Url::parse(&server)
            .map_err(|e| format!("`server` is not a valid URL ({server}): {e}"))?;
        let org = required("org")?;
        let project = required("project")?;
        let repo = required("repo")?;
        let entry_point = required("entrypoint")?;
        let api_key_path = PathBuf::from(required("apiKeyPath")?);
        if !api_key_path.exists() {
            return Err(format!(
                "`apiKeyPath` file doesn't exist {}",
                api_key_path.display()
            ));
        }
        let endpoint = required("endpoint")?;
        let seconds = |key: &str, default: u64| -> Result<Duration, String> {
            match metadata.get(key) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|_| format!("`{key}` must be a whole number of seconds, not {v:?}")),
            }
        };
        let poll_interval = seconds("pollInterval", 5)?.max(Duration::from_millis(100));
        let poll_timeout = seconds("pollTimeout", 30)?;
        let mut arguments = BTreeMap::new();
        for (key, value) in metadata {
            if let Some(name) = key.strip_prefix(ARGUMENTS_PREFIX) {
                if name == "endpoint" {
                    return Err("`arguments.endpoint` cannot be set: use `endpoint`".into());
                }
                arguments.insert(name.to_string(), value.clone());
            }
        }
        Ok(ConcordTask {
            server,
            org,
            project,
            repo,
            entry_point,
            api_key_path,
            endpoint,
            arguments,
            poll_interval,
            poll_timeout,
        })
    }

    /// What the logs call it.
    pub fn describe(&self) -> String {
        format!(
            "{} {} {} {}",
            self.org, self.project, self.repo, self.entry_point
        )
    }

    fn url(&self, path: &str) -> Result<url::Url, String> {
        self.server
            .join(path)
            .map_err(|e| format!("cannot build the URL of {path} on {}: {e}", self.server))
    }

    fn api_key(&self) -> Result<String, String> {
        std::fs::read_to_string(&self.api_key_path)
            .map(|k| k.trim().to_string())
            .map_err(|e| format!("reading `apiKeyPath` {}: {e}", self.api_key_path.display()))
    }

    /// Starts the process and polls it until it ends, `pollTimeout` passes or `deadline` (the
    /// load tester's `-timeout`) passes. `Ok` when the process finished.
    pub async fn run(&self, http: &reqwest::Client, deadline: Duration) -> Result<(), String> {
        let started = tokio::time::Instant::now();
        let id = self.start(http).await?;
        tracing::info!("concord process {id} started for {}", self.describe());
        let wait = self
            .poll_timeout
            .min(deadline.saturating_sub(started.elapsed()));
        let give_up = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.poll_interval) => {}
                _ = tokio::time::sleep_until(give_up) => {
                    return Err(format!(
                        "concord process {id} timed out after {} seconds",
                        wait.as_secs()
                    ));
                }
            }
            let process = self.status(http, &id).await?;
            tracing::info!("concord process {id} status {}", process.status);
            match process.status.as_str() {
                "FINISHED" => return Ok(()),
                "FAILED" | "CANCELLED" | "TIMED_OUT" => {
                    return Err(format!(
                        "concord process {id} ended with status {}",
                        process.status
                    ));
                }
                _ => {}
            }
        }
    }

    async fn start(&self, http: &reqwest::Client) -> Result<String, String> {
        let mut form = reqwest::multipart::Form::new()
            .text("org", self.org.clone())
            .text("project", self.project.clone())
            .text("repo", self.repo.clone())
            .text("entryPoint", self.entry_point.clone())
            .text("arguments.endpoint", self.endpoint.clone());
        for (name, value) in &self.arguments {
            form = form.text(format!("{ARGUMENTS_PREFIX}{name}"), value.clone());
        }
        let url = self.url(PROCESS_PATH)?;
        let request = http
            .post(url.clone())
            .header(reqwest::header::AUTHORIZATION, self.api_key()?)
            .multipart(form);
        let process = send(request, &url).await?;
        if process.instance_id.is_empty() {
            return Err(format!(
                "concord did not start a process (ok: {}): no instanceId in its answer",
                process.ok
            ));
        }
        Ok(process.instance_id)
    }

    async fn status(&self, http: &reqwest::Client, id: &str) -> Result<Process, String> {
        let url = self.url(&format!("{PROCESS_PATH}/{id}"))?;
        let request = http
            .get(url.clone())
            .header(reqwest::header::AUTHORIZATION, self.api_key()?);
        send(request, &url).await
    }
}

/// Sends a request and reads a process entry from a 2xx answer.
async fn send(request: reqwest::RequestBuilder, url: &url::Url) -> Result<Process, String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("calling concord {url}: {e}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("reading concord's answer from {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "concord answered {status} to {url}: {}",
            body.trim()
        ));
    }
    serde_json::from_str(&body)
        .map_err(|e| format!("concord's answer from {url} is not a process entry: {e}"))
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
    fn metadata_is_checked_entry_by_entry() {
        let key = std::env::temp_dir().join(format!("concord-key-{}", std::process::id()));
        std::fs::write(&key, "s3cr3t\n").expect("key written");
        let key_path = key.to_string_lossy().to_string();
        let full = [
            ("server", "http://concord:8001"),
            ("org", "o"),
            ("project", "p"),
            ("repo", "r"),
            ("entrypoint", "main"),
            ("apiKeyPath", key_path.as_str()),
            ("endpoint", "http://podinfo-canary.test"),
            ("arguments.users", "10"),
        ];
        let task = ConcordTask::from_metadata(&metadata(&full)).expect("valid");
        assert_eq!(task.poll_interval, Duration::from_secs(5));
        assert_eq!(task.poll_timeout, Duration::from_secs(30));
        assert_eq!(task.arguments.get("users").map(String::as_str), Some("10"));
        assert_eq!(task.api_key().expect("readable"), "s3cr3t");
        for missing in [
            "server",
            "org",
            "project",
            "repo",
            "entrypoint",
            "apiKeyPath",
            "endpoint",
        ] {
            let m: Vec<_> = full
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = ConcordTask::from_metadata(&metadata(&m)).expect_err(missing);
            assert_eq!(err, format!("`{missing}` is required with type concord"));
        }
        let mut bad = full.to_vec();
        bad.push(("pollInterval", "5s"));
        assert!(
            ConcordTask::from_metadata(&metadata(&bad))
                .expect_err("not whole seconds")
                .contains("`pollInterval` must be a whole number of seconds")
        );
        let mut bad = full.to_vec();
        bad.push(("arguments.endpoint", "x"));
        assert!(ConcordTask::from_metadata(&metadata(&bad)).is_err());
        let mut bad = full.to_vec();
        bad[5] = ("apiKeyPath", "/nonexistent/key");
        assert!(
            ConcordTask::from_metadata(&metadata(&bad))
                .expect_err("missing file")
                .contains("doesn't exist")
        );
        let _ = std::fs::remove_file(key);
    }
}
