//! The Splunk Observability (SignalFx) provider (reference §5.4): a SignalFlow program run over
//! SignalFlow's WebSocket API with the `sf_token_key` token, over ten metric intervals ending
//! now, immediately. The stream address comes from `address` as Flagger derives it (the first
//! `http` becomes `ws`, the first `api` becomes `stream`: `https://api.us1.signalfx.com` →
//! `wss://stream.us1.signalfx.com/v2/signalflow/connect`). The value is the last data point of
//! the one time series the program yields (null points dropped); several series is an error
//! ("query returned multiple values"). The availability check is
//! `GET <api address>/v2/metric?limit=1` with `X-SF-Token`.
//!
//! The WebSocket is `tokio-tungstenite`'s; the SignalFlow messages (JSON control messages and
//! binary data messages) are read here, after Splunk's reference of the WebSocket messages.

use std::collections::BTreeSet;

use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use super::http;
use super::seam::{MetricsProvider, ProviderError, QueryError, Setup};

pub struct Splunk {
    /// `ws(s)://stream.../v2/signalflow`.
    stream: String,
    /// `http(s)://api.../v2/metric?limit=1`.
    validation: String,
    token: String,
    window_ms: u128,
    http: reqwest::Client,
}

impl Splunk {
    pub fn build(setup: &Setup<'_>) -> Result<Box<dyn MetricsProvider>, ProviderError> {
        let address = match setup.spec.address.as_deref() {
            Some(a) if !a.is_empty() => a.to_string(),
            _ => return Err(ProviderError::invalid("splunk endpoint is not set")),
        };
        let token = http::secret_key(setup.secret, "sf_token_key", || {
            "splunk credentials does not contain sf_token_key".into()
        })?;
        let window_ms = http::interval(setup.interval)?.as_millis() * 10;
        let stream = format!("{address}/v2/signalflow")
            .replacen("http", "ws", 1)
            .replacen("api", "stream", 1);
        let validation = format!("{address}/v2/metric?limit=1")
            .replacen("ws", "http", 1)
            .replacen("stream", "api", 1);
        Ok(Box::new(Splunk {
            stream,
            validation,
            token,
            window_ms,
            http: http::client(setup.http, setup.spec.insecure_skip_verify.unwrap_or(false)),
        }))
    }

    async fn query(&self, program: &str) -> Result<f64, QueryError> {
        match tokio::time::timeout(http::TIMEOUT, self.execute(program)).await {
            Ok(answer) => answer,
            Err(_) => Err(QueryError::Failed(format!(
                "error executing query: no end of the computation within {}s",
                http::TIMEOUT.as_secs()
            ))),
        }
    }

    async fn execute(&self, program: &str) -> Result<f64, QueryError> {
        let failed = |e: String| QueryError::Failed(format!("error executing query: {e}"));
        let url = format!("{}/connect", self.stream.trim_end_matches('/'));
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| {
                failed(format!(
                    "cannot open the SignalFlow WebSocket: {}",
                    ws_cause(&e)
                ))
            })?;
        let send = |m: serde_json::Value| Message::Text(m.to_string().into());
        ws.send(send(serde_json::json!({
            "type": "authenticate",
            "token": self.token,
            "userAgent": "flagger-rs",
        })))
        .await
        .map_err(|e| failed(ws_cause(&e)))?;
        let stop = http::now_unix().as_millis();
        let start = stop.saturating_sub(self.window_ms);
        ws.send(send(serde_json::json!({
            "type": "execute",
            "program": program,
            "channel": CHANNEL,
            "start": start,
            "stop": stop,
            "resolution": 0,
            "maxDelay": 0,
            "immediate": true,
            "timezone": "",
        })))
        .await
        .map_err(|e| failed(ws_cause(&e)))?;
        let mut points: Vec<Point> = Vec::new();
        while let Some(message) = ws.next().await {
            let message = message.map_err(|e| failed(ws_cause(&e)))?;
            match message {
                Message::Text(text) => match serde_json::from_str::<Control>(&text) {
                    Ok(c) if c.r#type == "error" => {
                        let _ = ws.close(None).await;
                        return Err(failed(c.describe()));
                    }
                    Ok(c)
                        if c.r#type == "control-message"
                            && matches!(
                                c.event.as_deref(),
                                Some("END_OF_CHANNEL" | "CHANNEL_ABORT")
                            ) =>
                    {
                        let _ = ws.close(None).await;
                        if c.event.as_deref() == Some("CHANNEL_ABORT") {
                            return Err(failed(format!(
                                "the computation was aborted{}",
                                c.reason()
                            )));
                        }
                        break;
                    }
                    Ok(c) if c.r#type == "data" => points.extend(c.points()),
                    Ok(_) => {}
                    Err(e) => return Err(failed(format!("unreadable message: {e}"))),
                },
                Message::Binary(bytes) => points.extend(binary_data(&bytes).map_err(failed)?),
                Message::Close(frame) => {
                    let why = frame
                        .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                        .unwrap_or_default();
                    return Err(failed(format!(
                        "SignalFlow closed the connection before the end of the computation: {}",
                        why.trim()
                    )));
                }
                _ => {}
            }
        }
        reduce(points)
    }

    async fn online(&self) -> Result<(), ProviderError> {
        let request = self
            .http
            .get(&self.validation)
            .header("X-SF-Token", &self.token);
        http::send_ok(request, &self.validation, |status, body| {
            http::error_response(status, None, body)
        })
        .await
        .map(drop)
    }
}

impl MetricsProvider for Splunk {
    fn name(&self) -> &'static str {
        "splunk"
    }

    fn run_query<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, QueryError>> {
        Box::pin(self.query(query))
    }

    fn is_online(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.online())
    }
}

/// The channel of the one computation a query runs.
const CHANNEL: &str = "ch-1";

fn ws_cause(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Http(response) => format!("the server answered {}", response.status()),
        E::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// A data point: its time series and value (`None` for a null point).
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub tsid: String,
    pub value: Option<f64>,
}

/// A JSON message (control, error, metadata, or data in its JSON form).
#[derive(Deserialize)]
struct Control {
    r#type: String,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default, rename = "abortInfo")]
    abort_info: Option<serde_json::Value>,
    #[serde(default)]
    data: Vec<JsonPoint>,
}

#[derive(Deserialize)]
struct JsonPoint {
    #[serde(rename = "tsId")]
    tsid: String,
    value: Option<f64>,
}

impl Control {
    fn describe(&self) -> String {
        let code = self
            .error
            .as_ref()
            .map(|e| format!("{e} "))
            .unwrap_or_default();
        format!(
            "SignalFlow error {code}{}",
            self.message.as_deref().unwrap_or("without a message")
        )
        .replace("  ", " ")
    }

    fn reason(&self) -> String {
        self.abort_info
            .as_ref()
            .and_then(|a| a.get("sf_job_abortReason"))
            .and_then(|r| r.as_str())
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    }

    fn points(&self) -> Vec<Point> {
        self.data
            .iter()
            .map(|p| Point {
                tsid: p.tsid.clone(),
                value: p.value,
            })
            .collect()
    }
}

/// A binary data message: a 20-byte header (version, message type 5, flags, reserved, the
/// channel name), then the logical timestamp (8 bytes), the number of points (4 bytes) and 17
/// bytes per point (value type: 1 long, 2 double, 3 int; 8 bytes of time-series id; 8 bytes
/// of value), all big-endian.
pub fn binary_data(bytes: &[u8]) -> Result<Vec<Point>, String> {
    if bytes.len() < 32 {
        return Err(format!(
            "a binary message of {} bytes is too short",
            bytes.len()
        ));
    }
    let flags = bytes[2];
    if flags & 1 != 0 {
        return Err("compressed binary messages are not read (none was asked for)".into());
    }
    if flags & 2 != 0 {
        return Err("JSON-encoded binary messages are not read".into());
    }
    if bytes[1] != 5 {
        return Ok(Vec::new());
    }
    let body = &bytes[20..];
    let count = u32::from_be_bytes([body[8], body[9], body[10], body[11]]) as usize;
    let mut points = Vec::with_capacity(count);
    for i in 0..count {
        let at = 12 + 17 * i;
        let Some(p) = body.get(at..at + 17) else {
            return Err(format!("the binary message ends before point {}", i + 1));
        };
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&p[9..17]);
        let value = match p[0] {
            1 => Some(i64::from_be_bytes(raw) as f64),
            2 => Some(f64::from_be_bytes(raw)),
            3 => Some(f64::from(i32::from_be_bytes([
                raw[0], raw[1], raw[2], raw[3],
            ]))),
            _ => None,
        };
        points.push(Point {
            tsid: tsid(&p[1..9]),
            value,
        })
    }
    Ok(points)
}

/// A time-series id as SignalFx spells it: URL-safe base64 of its 8 bytes, unpadded.
fn tsid(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The value of the last non-null point of the one time series.
pub fn reduce(points: Vec<Point>) -> Result<f64, QueryError> {
    let points: Vec<Point> = points.into_iter().filter(|p| p.value.is_some()).collect();
    let series: BTreeSet<&str> = points.iter().map(|p| p.tsid.as_str()).collect();
    if series.len() > 1 {
        return Err(QueryError::Failed(format!(
            "invalid response: query returned multiple values ({} time series)",
            series.len()
        )));
    }
    match points.last().and_then(|p| p.value) {
        Some(v) if !v.is_nan() => Ok(v),
        _ => Err(QueryError::NoValues(
            "invalid response: no values found".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_message(points: &[(u8, [u8; 8], [u8; 8])]) -> Vec<u8> {
        let mut m = vec![1u8, 5, 0, 0];
        let mut channel = [0u8; 16];
        channel[..4].copy_from_slice(b"ch-1");
        m.extend_from_slice(&channel);
        m.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
        m.extend_from_slice(&(points.len() as u32).to_be_bytes());
        for (t, id, v) in points {
            m.push(*t);
            m.extend_from_slice(id);
            m.extend_from_slice(v);
        }
        m
    }

    #[test]
    fn binary_data_messages_carry_typed_points() {
        let id = [0, 0, 0, 0, 0, 0, 0, 7];
        let mut int = [0u8; 8];
        int[..4].copy_from_slice(&(-3i32).to_be_bytes());
        let m = data_message(&[
            (2, id, 1.5f64.to_be_bytes()),
            (1, id, 42i64.to_be_bytes()),
            (3, id, int),
        ]);
        let points = binary_data(&m).expect("points");
        assert_eq!(
            points.iter().map(|p| p.value).collect::<Vec<_>>(),
            vec![Some(1.5), Some(42.0), Some(-3.0)]
        );
        assert_eq!(points[0].tsid, "AAAAAAAAAAc");
        assert!(binary_data(&m[..30]).is_err());
    }

    #[test]
    fn one_series_gives_its_last_value_several_are_an_error() {
        let p = |tsid: &str, value: Option<f64>| Point {
            tsid: tsid.into(),
            value,
        };
        assert_eq!(
            reduce(vec![p("A", Some(1.0)), p("A", Some(2.0)), p("B", None)]),
            Ok(2.0)
        );
        assert!(matches!(reduce(vec![]), Err(QueryError::NoValues(_))));
        assert!(matches!(
            reduce(vec![p("A", None)]),
            Err(QueryError::NoValues(_))
        ));
        assert_eq!(
            reduce(vec![p("A", Some(1.0)), p("B", Some(2.0))]),
            Err(QueryError::Failed(
                "invalid response: query returned multiple values (2 time series)".into()
            ))
        );
    }
}
