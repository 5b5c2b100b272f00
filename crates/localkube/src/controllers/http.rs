//! A minimal HTTP/1.1 GET client for the simulated cluster components that make requests: the
//! kubelet's probes and the KEDA scaler's Prometheus queries. With the data plane running, the
//! request goes through its proxy, so cluster names (`prometheus.monitoring:9090`), pod IPs and
//! real local addresses all resolve as they would from inside the cluster.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, header};

/// The largest answer read (probes and query results are small).
const MAX_BODY: usize = 4 << 20;

/// One GET request.
#[derive(Debug, Clone)]
pub(super) struct Get {
    /// An absolute `http://host:port/path?query` URL.
    pub url: url::Url,
    /// Extra headers (`Host` among them replaces the URL's authority).
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

/// Why a request got no answer, worded as Go's HTTP client words it (what the kubelet and
/// KEDA print).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HttpError {
    /// No answer within the timeout.
    Timeout,
    /// The connection failed.
    Connect(String),
    /// The exchange failed after connecting.
    Protocol(String),
}

impl HttpError {
    /// The error as Go reports it for `GET url`.
    pub(super) fn describe(&self, url: &url::Url) -> String {
        match self {
            HttpError::Timeout => format!(
                "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ),
            HttpError::Connect(e) | HttpError::Protocol(e) => format!("Get \"{url}\": {e}"),
        }
    }
}

/// The authority (`host:port`) of a URL, the port made explicit.
pub(super) fn authority(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port_or_known_default() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// Sends `req` (through the data plane's proxy at `proxy` when given); the status and body.
pub(super) async fn get(
    proxy: Option<SocketAddr>,
    req: &Get,
) -> Result<(u16, bytes::Bytes), HttpError> {
    match tokio::time::timeout(req.timeout, exchange(proxy, req)).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout),
    }
}

async fn exchange(proxy: Option<SocketAddr>, req: &Get) -> Result<(u16, bytes::Bytes), HttpError> {
    let stream = match proxy {
        Some(p) => tokio::net::TcpStream::connect(p).await,
        None => tokio::net::TcpStream::connect(authority(&req.url)).await,
    }
    .map_err(|e| HttpError::Connect(format!("dial tcp {}: {e}", authority(&req.url))))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| HttpError::Protocol(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // Through a proxy the request line carries the absolute URL; directly, the path.
    let target = match proxy {
        Some(_) => req.url.to_string(),
        None => match req.url.query() {
            Some(q) => format!("{}?{q}", req.url.path()),
            None => req.url.path().to_string(),
        },
    };
    let mut builder = Request::builder().method(Method::GET).uri(target);
    if let Some(h) = builder.headers_mut() {
        if let Ok(v) = HeaderValue::from_str(&authority(&req.url)) {
            h.insert(header::HOST, v);
        }
        for (k, v) in &req.headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                h.insert(k, v);
            }
        }
    }
    let request = builder
        .body(Body::empty())
        .map_err(|e| HttpError::Protocol(e.to_string()))?;
    let resp = sender
        .send_request(request)
        .await
        .map_err(|e| HttpError::Protocol(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(Body::new(resp.into_body()), MAX_BODY)
        .await
        .map_err(|e| HttpError::Protocol(e.to_string()))?;
    Ok((status, body))
}
