//! A fake of Splunk Observability Cloud's SignalFlow API, after Splunk's developer reference
//! "SignalFlow WebSocket messages" (dev.splunk.com/observability/docs/signalflow/messages/):
//! the WebSocket at `/v2/signalflow/connect`; an `authenticate` request answered by
//! `{"type": "authenticated", "orgId", "userId"}` (a bad token closes the socket with code 4401);
//! an `execute` request answered on its channel by the `STREAM_START`, `JOB_START` control
//! messages, a `metadata` message per time series, binary data messages (version 1, type 5,
//! 20-byte header, big-endian timestamp, count and 17-byte points) and `END_OF_CHANNEL`; a
//! program that does not compile gets an `error` message (`{"type": "error", "error": 400,
//! "message": ...}`). Plus the REST API's "Retrieve metrics" (`GET /v2/metric?limit=`,
//! dev.splunk.com/observability/reference/api/metrics_metadata/latest) with `X-SF-Token`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Answer, Seen, State};

pub const TOKEN: &str = "sf-token-0123456789";

#[derive(Clone, Default)]
pub struct Splunk {
    pub state: State,
}

impl Splunk {
    /// The fake and the address a MetricTemplate names (`http://...`, as the REST API's).
    pub async fn start() -> (Splunk, String) {
        let sp = Splunk::default();
        let app = Router::new()
            .route("/v2/signalflow/connect", get(connect))
            .route("/v2/metric", get(metrics))
            .with_state(sp.clone());
        let addr = super::serve(app).await;
        (sp, format!("http://{addr}"))
    }
}

async fn metrics(
    Shared(sp): Shared<Splunk>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sp.state.record(super::seen(&method, &uri, &headers, &body));
    if headers.get("x-sf-token").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
        return (
            StatusCode::UNAUTHORIZED,
            [("content-type", "application/json")],
            r#"{"code":401,"message":"Unauthorized"}"#,
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        r#"{"count":1,"results":[{"name":"service.request.count","type":"COUNTER"}]}"#,
    )
        .into_response()
}

async fn connect(
    Shared(sp): Shared<Splunk>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    sp.state.record(super::seen(&method, &uri, &headers, &[]));
    ws.on_upgrade(move |socket| session(sp, socket))
}

fn text(v: serde_json::Value) -> Message {
    Message::Text(v.to_string().into())
}

async fn session(sp: Splunk, mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let Message::Text(body) = message else {
            continue;
        };
        let request: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        sp.state.record(Seen {
            method: "WS".into(),
            path: format!(
                "/v2/signalflow/{}",
                request.get("type").and_then(|t| t.as_str()).unwrap_or("?")
            ),
            body: body.to_string(),
            ..Default::default()
        });
        match request.get("type").and_then(|t| t.as_str()) {
            Some("authenticate") => {
                if request.get("token").and_then(|t| t.as_str()) != Some(TOKEN) {
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: 4401,
                            reason: "Unauthorized".into(),
                        })))
                        .await;
                    return;
                }
                let _ = socket
                    .send(text(serde_json::json!({"type": "authenticated", "orgId": "ORG1", "userId": "USER1"})))
                    .await;
            }
            Some("execute") => {
                let channel = request
                    .get("channel")
                    .and_then(|c| c.as_str())
                    .unwrap_or_default()
                    .to_string();
                let stop = request
                    .get("stop")
                    .and_then(|s| s.as_u64())
                    .unwrap_or_default();
                for m in execute(&sp.state.answer(), &channel, stop) {
                    if socket.send(m).await.is_err() {
                        return;
                    }
                }
            }
            _ => {}
        }
    }
}

fn control(channel: &str, event: &str) -> Message {
    text(
        serde_json::json!({"type": "control-message", "channel": channel, "event": event, "timestampMs": 1_700_000_000_000u64}),
    )
}

/// A binary data message with `points` of (time-series id, double value).
fn data(channel: &str, timestamp: u64, points: &[(u64, f64)]) -> Message {
    let mut m = vec![1u8, 5, 0, 0];
    let mut name = [0u8; 16];
    let n = channel.len().min(16);
    name[..n].copy_from_slice(&channel.as_bytes()[..n]);
    m.extend_from_slice(&name);
    m.extend_from_slice(&timestamp.to_be_bytes());
    m.extend_from_slice(&(points.len() as u32).to_be_bytes());
    for (tsid, v) in points {
        m.push(2);
        m.extend_from_slice(&tsid.to_be_bytes());
        m.extend_from_slice(&v.to_be_bytes());
    }
    Message::Binary(m.into())
}

fn execute(answer: &Answer, channel: &str, stop: u64) -> Vec<Message> {
    let mut out = vec![control(channel, "STREAM_START")];
    if *answer == Answer::BadQuery {
        out.push(text(serde_json::json!({"type": "error", "channel": channel, "error": 400, "errorType": "ANALYTICS_PROGRAM_NAME_ERROR", "message": "Unable to compile the program: line 1: unknown function 'dat'"})));
        return out;
    }
    out.push(text(serde_json::json!({"type": "control-message", "channel": channel, "event": "JOB_START", "handle": "JOB1"})));
    match answer {
        Answer::Value(v) => {
            out.push(text(serde_json::json!({"type": "metadata", "channel": channel, "tsId": "AAAAAAAAAAc", "properties": {"sf_metric": "errors"}})));
            out.push(data(channel, stop - 20_000, &[(7, v * 2.0)]));
            out.push(data(channel, stop - 10_000, &[(7, *v)]));
        }
        Answer::Null | Answer::Empty | Answer::BadQuery => {}
        Answer::RateLimited => {
            out.push(text(serde_json::json!({"type": "control-message", "channel": channel, "event": "CHANNEL_ABORT", "abortInfo": {"sf_job_abortReason": "Too many concurrent jobs", "sf_job_abortState": "ABORTED"}})));
            return out;
        }
    }
    out.push(control(channel, "END_OF_CHANNEL"));
    out
}
