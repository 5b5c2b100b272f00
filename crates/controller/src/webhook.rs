//! Webhook calls with Flagger's contract: a JSON payload POSTed to the hook, success only for
//! status 200–202, retries on connection errors, 429 and 5xx (but 501) with exponential backoff.

use std::collections::BTreeMap;
use std::time::Duration;

use flagger_api::CanaryPhase;
use flagger_core::model::Webhook;
use flagger_core::redact;
use serde::Serialize;

/// The body of every webhook call.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Payload {
    pub name: String,
    pub namespace: String,
    pub phase: CanaryPhase,
    pub checksum: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// Two HTTP clients: one that verifies TLS and one for hooks with `disableTLS: true`.
#[derive(Clone, Debug)]
pub struct Clients {
    pub verified: reqwest::Client,
    pub insecure: reqwest::Client,
}

impl Clients {
    /// Clients that honour `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY` as any HTTP client would.
    pub fn new() -> Result<Self, reqwest::Error> {
        Ok(Self {
            verified: reqwest::Client::builder().build()?,
            insecure: reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .build()?,
        })
    }
}

/// An HTTP client error as it may be shown: without the URL the client puts in it (it may
/// carry a token), with its causes (`connection refused`), credentials redacted.
pub fn error_text(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    redact::text(&text).into_owned()
}

/// The most of an answer's body read for an error text (a hook or a chat service answering
/// with megabytes would otherwise fill memory, logs and events).
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// An answer's body as text, at most [`MAX_ERROR_BODY`] bytes of it.
pub async fn body_text(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ERROR_BODY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// Calls a hook. `Err` carries the reason Flagger would give: the response body for a rejected
/// call, or the retry summary when every attempt failed; credentials in either (the hook's
/// URL may carry an `access_token`) are redacted.
pub async fn call(clients: &Clients, hook: &Webhook, payload: &Payload) -> Result<(), String> {
    let client = if hook.disable_tls {
        &clients.insecure
    } else {
        &clients.verified
    };
    let attempts = hook.retries + 1;
    let mut wait = Duration::from_secs(1);
    let mut last_error = String::new();
    for attempt in 1..=attempts {
        let sent = client
            .post(&hook.url)
            .timeout(hook.timeout)
            .json(payload)
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                if (200..=202).contains(&status) {
                    return Ok(());
                }
                let body = redact::text(&body_text(response).await).into_owned();
                let retriable = status == 429 || (status >= 500 && status != 501);
                if !retriable {
                    return Err(if body.is_empty() {
                        format!("status {status}")
                    } else {
                        body
                    });
                }
                last_error = format!("status {status}: {}", body.trim());
            }
            Err(e) => last_error = error_text(e),
        }
        if attempt < attempts {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }
    Err(format!(
        "POST {} giving up after {attempts} attempt(s): {last_error}",
        redact::url(&hook.url)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_omits_empty_metadata() {
        let p = Payload {
            name: "podinfo".into(),
            namespace: "test".into(),
            phase: CanaryPhase::Progressing,
            checksum: "rs1-x".into(),
            metadata: BTreeMap::new(),
        };
        assert_eq!(
            serde_json::to_value(&p).expect("json"),
            serde_json::json!({"name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "rs1-x"})
        );
    }

    fn hook(url: String) -> Webhook {
        Webhook {
            name: "load".into(),
            hook_type: flagger_core::model::HookType::Rollout,
            url,
            timeout: Duration::from_secs(5),
            retries: 0,
            mute_alert: false,
            disable_tls: false,
            metadata: BTreeMap::new(),
        }
    }

    fn payload() -> Payload {
        Payload {
            name: "podinfo".into(),
            namespace: "test".into(),
            phase: CanaryPhase::Progressing,
            checksum: "x".into(),
            metadata: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn errors_hide_the_hooks_token_and_keep_their_cause() {
        let clients = Clients::new().expect("clients");
        let err = call(
            &clients,
            &hook("http://127.0.0.1:9/?access_token=MARKER".into()),
            &payload(),
        )
        .await
        .expect_err("nothing listens on port 9");
        assert!(!err.contains("MARKER"), "{err}");
        assert!(
            err.starts_with("POST http://127.0.0.1:9/?access_token=REDACTED giving up after 1 attempt(s): error sending request"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_huge_answer_is_read_only_in_part() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let app = axum::Router::new().fallback(|| async {
            (
                axum::http::StatusCode::BAD_REQUEST,
                "token=MARKER ".repeat(200_000),
            )
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let err = call(
            &Clients::new().expect("clients"),
            &hook(format!("http://{addr}/")),
            &payload(),
        )
        .await
        .expect_err("400");
        // 64 KiB read of 2.6 MB (longer once redacted).
        assert!(err.len() < 2 * MAX_ERROR_BODY, "{}", err.len());
        assert!(!err.contains("MARKER"));
        assert!(
            err.starts_with("token=REDACTED token=REDACTED"),
            "{}",
            &err[..60]
        );
    }
}
