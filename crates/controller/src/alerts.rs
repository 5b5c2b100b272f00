//! Alert delivery (reference §8): the canary's alert routes, or the global notifier when it has
//! none, resolved to destinations; the bodies come from `flagger_core::notify`. Delivery runs
//! in the background: a failure is logged and never holds up or fails a reconcile. Works from
//! an [`Alerting`] (what delivery needs), not from the reconcile's context.

use std::time::Duration;

use flagger_api::AlertProvider;
use flagger_core::effects::Alert;
use flagger_core::model::{AlertRoute, ValidatedCanary};
use flagger_core::notify::{self, DEFAULT_CHANNEL, DEFAULT_USERNAME, Destination, Notification};
use flagger_core::redact;

use std::sync::Arc;

use crate::cache::{self, Caches};
use crate::error::api_text;

/// What alert delivery works with.
pub struct Alerting<'a> {
    pub client: &'a kube::Client,
    pub caches: &'a Caches,
    /// The global notifier (`-slack-*` / `-msteams-*`), for canaries without alert routes.
    pub notifier: Option<&'a Destination>,
    /// `-cluster-name`: the `Cluster` field of every alert.
    pub cluster_name: Option<&'a str>,
    pub outbox: &'a Outbox,
}

/// Flagger's notifier HTTP timeout.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Reads an AlertProvider from the watch cache (the API server when the cache lacks it).
pub async fn provider(
    a: &Alerting<'_>,
    namespace: &str,
    name: &str,
) -> Result<Arc<AlertProvider>, kube::Error> {
    cache::require(&a.caches.alert_providers, a.client, namespace, name).await
}

/// Sends an alert about canary `c` to every destination that takes its severity.
pub async fn send(ctx: &Alerting<'_>, c: &ValidatedCanary, alert: &Alert) {
    let canary = format!("{}.{}", c.name, c.namespace);
    let destinations: Vec<Destination> = if c.analysis.alerts.is_empty() {
        // The global notifier receives every alert, whatever its severity.
        ctx.notifier.iter().map(|d| (*d).clone()).collect()
    } else {
        let mut out = Vec::new();
        for route in &c.analysis.alerts {
            let Some(min) = route.severity else { continue };
            if !notify::route_receives(min, alert.severity) {
                continue;
            }
            match destination(ctx, route).await {
                Ok(d) => out.push(d),
                Err(e) => {
                    tracing::error!(canary = %canary, alert = %route.name, "{e}")
                }
            }
        }
        out
    };
    if destinations.is_empty() {
        return;
    }
    let notification = Notification {
        name: c.name.clone(),
        namespace: c.namespace.clone(),
        message: alert.message.clone(),
        fields: notify::fields(c, alert.with_metadata, ctx.cluster_name),
        severity: alert.severity,
    };
    for d in destinations {
        let body = notify::payload(&d, &notification);
        ctx.outbox.send(Delivery {
            canary: canary.clone(),
            destination: d,
            body,
        });
    }
}

/// One alert on its way to one destination.
pub struct Delivery {
    canary: String,
    destination: Destination,
    body: serde_json::Value,
}

/// Sends alerts in the background, one at a time and in the order they were raised (a chat
/// channel shows a canary's story in order), without holding up any reconcile.
pub struct Outbox {
    tx: tokio::sync::mpsc::UnboundedSender<Delivery>,
}

impl Outbox {
    /// Starts the sending task on the current runtime.
    pub fn start(http: reqwest::Client) -> Outbox {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Delivery>();
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                if let Err(e) = post(&http, &job.destination, &job.body).await {
                    // The address is a credential: only where it goes is logged.
                    let to = redact::credential_url(&job.destination.url);
                    tracing::warn!(canary = %job.canary, notifier = job.destination.kind.as_str(), "error sending alert to {to}: {e}");
                }
            }
        });
        Outbox { tx }
    }

    fn send(&self, delivery: Delivery) {
        if self.tx.send(delivery).is_err() {
            tracing::warn!("alert dropped: the sending task has stopped");
        }
    }
}

/// Resolves an alert route to where its alerts go.
async fn destination(ctx: &Alerting<'_>, route: &AlertRoute) -> Result<Destination, String> {
    let ns = &route.provider_namespace;
    let name = &route.provider_name;
    let provider = provider(ctx, ns, name)
        .await
        .map_err(|e| format!("alert provider {name}.{ns} error: {}", api_text(&e)))?;
    let spec = provider.spec.clone();
    let type_ = spec.r#type.clone().unwrap_or_default();
    let kind = notify::NotifierKind::parse(&type_)
        .ok_or_else(|| format!("alert provider {name}.{ns}: unsupported type {type_:?}"))?;
    let (url, token) = match &spec.secret_ref {
        Some(secret_ref) => {
            let secret = cache::require(&ctx.caches.secrets, ctx.client, ns, &secret_ref.name)
                .await
                .map_err(|e| {
                    format!(
                        "alert provider {name}.{ns}: secret {}.{ns} error: {}",
                        secret_ref.name,
                        api_text(&e)
                    )
                })?;
            let key = |k: &str| -> Option<String> {
                secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(k))
                    .map(|v| String::from_utf8_lossy(&v.0).trim().to_string())
                    .filter(|v| !v.is_empty())
            };
            let address = key("address").ok_or_else(|| {
                format!(
                    "alert provider {name}.{ns}: secret {}.{ns} has no address key",
                    secret_ref.name
                )
            })?;
            (address, key("token"))
        }
        None => (spec.address.clone().unwrap_or_default(), None),
    };
    notify::check_address(&url).map_err(|e| format!("alert provider {name}.{ns}: {e}"))?;
    let or_default = |v: &Option<String>, d: &str| {
        v.clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| d.to_string())
    };
    Ok(Destination {
        kind,
        url,
        channel: or_default(&spec.channel, DEFAULT_CHANNEL),
        username: or_default(&spec.username, DEFAULT_USERNAME),
        proxy: spec.proxy.clone().filter(|p| !p.is_empty()),
        token,
    })
}

/// POSTs the body as JSON (5s timeout, the destination's proxy, a bearer token for Slack).
/// Errors never quote the address, the proxy's credentials or the token.
pub async fn post(
    shared: &reqwest::Client,
    d: &Destination,
    body: &serde_json::Value,
) -> Result<(), String> {
    let client = match &d.proxy {
        Some(proxy) => reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(proxy).map_err(|e| {
                format!(
                    "invalid proxy {}: {}",
                    redact::url(proxy),
                    crate::webhook::error_text(e)
                )
            })?)
            .build()
            .map_err(crate::webhook::error_text)?,
        None => shared.clone(),
    };
    let mut request = client
        .post(notify::post_url(d.kind, &d.url))
        .timeout(TIMEOUT)
        .json(body);
    if let Some(token) = d.token.as_ref().filter(|_| d.kind.sends_token()) {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(crate::webhook::error_text)?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = crate::webhook::body_text(response).await;
    Err(format!(
        "sending notification bad response {}: {}",
        status.as_u16(),
        redact::text(text.trim())
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use flagger_core::notify::NotifierKind;
    use serde_json::json;

    use super::*;

    type Seen = Arc<Mutex<Vec<(String, Option<String>, serde_json::Value)>>>;

    /// A receiver recording path, Authorization header and body; `/fail` answers 500.
    async fn receiver() -> (String, Seen) {
        let seen: Seen = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let app = axum::Router::new()
            .fallback(
                |State(seen): State<Seen>, uri: Uri, headers: HeaderMap, body: Bytes| async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let body = serde_json::from_slice(&body).unwrap_or_default();
                    let path = uri.path().to_string();
                    let failed = path == "/fail";
                    if let Ok(mut s) = seen.lock() {
                        s.push((path, auth, body));
                    }
                    if failed {
                        (StatusCode::INTERNAL_SERVER_ERROR, "boom")
                    } else {
                        (StatusCode::OK, "ok")
                    }
                },
            )
            .with_state(seen.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}"), seen)
    }

    fn destination(kind: NotifierKind, url: String) -> Destination {
        Destination {
            kind,
            url,
            channel: "general".into(),
            username: "flagger".into(),
            proxy: None,
            token: Some("s3cret".into()),
        }
    }

    #[tokio::test]
    async fn delivery_sends_the_token_to_slack_only_and_discord_to_its_slack_endpoint() {
        let (base, seen) = receiver().await;
        let http = reqwest::Client::new();
        let body = json!({"text": "hi"});
        post(
            &http,
            &destination(NotifierKind::Slack, format!("{base}/slack")),
            &body,
        )
        .await
        .expect("slack delivered");
        post(
            &http,
            &destination(NotifierKind::MsTeams, format!("{base}/teams")),
            &body,
        )
        .await
        .expect("teams delivered");
        post(
            &http,
            &destination(NotifierKind::Discord, format!("{base}/discord")),
            &body,
        )
        .await
        .expect("discord delivered");
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(
            seen,
            vec![
                (
                    "/slack".to_string(),
                    Some("Bearer s3cret".to_string()),
                    body.clone()
                ),
                ("/teams".to_string(), None, body.clone()),
                ("/discord/slack".to_string(), None, body.clone()),
            ]
        );
    }

    #[tokio::test]
    async fn a_bad_response_is_an_error_with_flaggers_message() {
        let (base, _) = receiver().await;
        let err = post(
            &reqwest::Client::new(),
            &destination(NotifierKind::GChat, format!("{base}/fail")),
            &json!({}),
        )
        .await
        .expect_err("500 is a failure");
        assert_eq!(err, "sending notification bad response 500: boom");
    }

    #[tokio::test]
    async fn delivery_errors_never_quote_the_address_or_the_proxy_credentials() {
        // Nothing listens on port 9: the client's error would name the URL.
        let mut d = destination(
            NotifierKind::Slack,
            "http://127.0.0.1:9/services/T0/B0/MARKERPATH?token=MARKERQUERY".into(),
        );
        let err = post(&reqwest::Client::new(), &d, &json!({}))
            .await
            .expect_err("nothing listens");
        assert!(!err.contains("MARKER"), "{err}");
        assert!(err.contains("error sending request"), "{err}");
        d.proxy = Some("http://user:MARKERPASS@127.0.0.1:9".into());
        let err = post(&reqwest::Client::new(), &d, &json!({}))
            .await
            .expect_err("the proxy is down");
        assert!(!err.contains("MARKER"), "{err}");
    }

    #[tokio::test]
    async fn delivery_goes_through_the_providers_proxy() {
        // A plain-HTTP proxy receives the absolute-form request for the webhook URL.
        let (proxy, seen) = receiver().await;
        let mut d = destination(NotifierKind::Rocket, "http://rocket.invalid/hooks/x".into());
        d.proxy = Some(proxy);
        post(&reqwest::Client::new(), &d, &json!({"text": "via proxy"}))
            .await
            .expect("delivered through the proxy");
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, "/hooks/x");
        assert_eq!(seen[0].2, json!({"text": "via proxy"}));
    }
}
