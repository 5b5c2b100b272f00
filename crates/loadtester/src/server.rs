//! The load tester's HTTP API (Flagger's `flagger-loadtester` endpoints plus `GET /gates`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use input_guard::origin::{self, HostPolicy};
use input_guard::{LimitError, Limits};
use regex::Regex;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::conn::{self, ConnLimits};
use crate::gates::{GateKind, GateStore};
use crate::goflags::parse_bool;
use crate::metrics::Metrics;
use crate::tasks::{self, DEFAULT_TYPE, SUPPORTED_TYPES, TaskRunner};

/// Settings of the server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Maximum run time of every command.
    pub timeout: Duration,
    /// Only payloads whose namespace matches are served (unanchored, like Go's `MatchString`).
    pub namespace_regexp: Option<Regex>,
    /// Bearer token required on every endpoint but `/healthz`.
    pub token: Option<String>,
    /// File keeping the gates across restarts.
    pub gates_file: Option<PathBuf>,
    /// Executable that acts as `hey` (default: the running executable).
    pub hey_exe: Option<PathBuf>,
    /// Use the built-in `hey` even when a `hey` is on `PATH`.
    pub prefer_builtin_hey: bool,
    /// Connection cap and timeouts.
    pub connections: ConnLimits,
    /// `Host` names accepted besides loopback ones when listening on a loopback address (a
    /// proxy that reaches it under a Service name); ignored on other addresses.
    pub allowed_hosts: Vec<String>,
    /// The `Host` check in force: set by [`spawn`] from the address it binds (loopback: on).
    pub hosts: Option<HostPolicy>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3600),
            namespace_regexp: None,
            token: None,
            gates_file: None,
            hey_exe: None,
            prefer_builtin_hey: false,
            connections: ConnLimits::default(),
            allowed_hosts: Vec::new(),
            hosts: None,
        }
    }
}

/// Largest request body: webhook payloads are a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Longest command a task may carry (Linux refuses a single argument over 128 KiB).
pub const MAX_CMD_BYTES: usize = 64 * 1024;

/// State shared by the handlers.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub tasks: Arc<TaskRunner>,
    pub gates: GateStore,
    pub metrics: Arc<Metrics>,
}

/// Flagger's webhook payload.
#[derive(Debug, Deserialize)]
pub struct Payload {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub phase: String,
    #[serde(default)]
    pub checksum: String,
    #[serde(default)]
    pub metadata: Option<HashMap<String, String>>,
}

/// Builds the state and the router.
pub async fn build(config: Config) -> anyhow::Result<(Router, Arc<AppState>)> {
    let metrics = Arc::new(Metrics::new());
    for t in SUPPORTED_TYPES {
        // Expose the gauges from the start, at 0.
        metrics.running(t);
    }
    let hey_dir = tasks::provide_builtin_hey(config.hey_exe.clone(), config.prefer_builtin_hey);
    let tasks = Arc::new(TaskRunner::new(config.timeout, hey_dir, metrics.clone()));
    let gates = match &config.gates_file {
        Some(path) => GateStore::persistent(path.clone()).await?,
        None => GateStore::in_memory(),
    };
    let state = Arc::new(AppState {
        config,
        tasks,
        gates,
        metrics,
    });
    Ok((router(state.clone()), state))
}

/// The routes. Like Go's `ServeMux` pattern `/`, any unknown path runs a task.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", any(new_task))
        .route("/healthz", any(|| async { "OK" }))
        .route("/metrics", any(metrics))
        .route("/gate/approve", any(|| async { "OK" }))
        .route(
            "/gate/halt",
            any(|| async { (StatusCode::FORBIDDEN, "Forbidden") }),
        )
        .route("/gate/check", any(gate_check))
        .route("/gate/open", any(gate_open))
        .route("/gate/close", any(gate_close))
        .route("/rollback/check", any(rollback_check))
        .route("/rollback/open", any(rollback_open))
        .route("/rollback/close", any(rollback_close))
        .route("/gates", get(list_gates))
        .fallback(new_task)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), same_origin))
        // Bodies over the limit are read no further (the handlers answer 413).
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// A server running in the background (used by `flagger loadtester` and the tests).
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    join: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Stops accepting requests, waits up to `grace` for the ones in progress, then kills any
    /// command still running.
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if tokio::time::timeout(grace, &mut self.join).await.is_err() {
            self.join.abort();
        }
        self.state.tasks.process_groups().kill_all();
    }

    /// Waits until the server stops by itself (it only does on an I/O error).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        match (&mut self.join).await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Binds `addr` and serves in a background task. On a loopback address, `Host` is checked
/// (loopback names and [`Config::allowed_hosts`]).
pub async fn spawn(mut config: Config, addr: &str) -> anyhow::Result<RunningServer> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    if config.hosts.is_none() && origin::is_loopback_listener(&addr) {
        config.hosts = Some(HostPolicy::for_listener(addr, &config.allowed_hosts));
    }
    let limits = config.connections;
    let (router, state) = build(config).await?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let join = tokio::spawn(conn::serve(listener, router, limits, rx));
    Ok(RunningServer {
        addr,
        state,
        shutdown: Some(tx),
        join,
    })
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut resp = (status, body.into()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

async fn authenticate(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(token) = state.config.token.as_deref() else {
        return next.run(req).await;
    };
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    // RFC 6750 2.3: the token may be sent as the `access_token` query parameter, which lets a
    // Flagger webhook URL carry it (Flagger's webhooks cannot set headers).
    let from_query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("access_token="))
            .map(str::to_string)
    });
    let ok = from_header.is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
        || from_query.is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()));
    if ok {
        return next.run(req).await;
    }
    state.metrics.rejected("unauthorized");
    let mut resp = text(
        StatusCode::UNAUTHORIZED,
        "Unauthorized: a valid bearer token is required (Authorization: Bearer <token>)",
    );
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// Refuses what a browser sends on a web page's behalf (another site's `Origin`,
/// `Sec-Fetch-Site: cross-site` or `same-site`) and, on a loopback address, a `Host` that is
/// not a loopback name (DNS rebinding). curl, Flagger and kubelet probes send no `Origin`.
async fn same_origin(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let checked = {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        origin::check(
            origin::RequestHeaders {
                host: header("host"),
                origin: header("origin"),
                sec_fetch_site: header("sec-fetch-site"),
            },
            state.config.hosts.as_ref(),
        )
    };
    match checked {
        Ok(()) => next.run(req).await,
        Err(refusal) => {
            state.metrics.rejected("cross_site");
            tracing::warn!("request refused: {refusal}");
            text(StatusCode::FORBIDDEN, format!("Forbidden: {refusal}"))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses the payload and applies the namespace allow-list.
#[allow(
    clippy::result_large_err,
    reason = "the error is the HTTP response itself, returned straight to axum"
)]
fn parse_payload(state: &AppState, body: &[u8]) -> Result<Payload, Response> {
    let limits = Limits::with_max_bytes(MAX_BODY_BYTES);
    let payload: Payload = input_guard::from_json_slice(body, &limits).map_err(|e| {
        tracing::error!("decoding the request body failed: {e}");
        state.metrics.rejected("bad_request");
        let status = match e {
            input_guard::Error::Limit(LimitError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        text(status, format!("decoding the request body failed: {e}"))
    })?;
    if let Some(re) = &state.config.namespace_regexp
        && !re.is_match(&payload.namespace)
    {
        state.metrics.rejected("forbidden");
        tracing::warn!(namespace = payload.namespace, "namespace not allowed");
        return Err(text(
            StatusCode::FORBIDDEN,
            format!(
                "Forbidden: namespace {:?} does not match the allowed namespaces regexp {:?}",
                payload.namespace,
                re.as_str()
            ),
        ));
    }
    Ok(payload)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut resp = state.metrics.encode().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

async fn check(state: &AppState, kind: GateKind, body: &[u8]) -> Response {
    let p = match parse_payload(state, body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let approved = state.gates.is_open(kind, &p.name, &p.namespace).await;
    tracing::info!(
        "{}.{} {kind:?} check: approved {approved}",
        p.name,
        p.namespace
    );
    if approved {
        text(StatusCode::OK, "Approved")
    } else {
        text(StatusCode::FORBIDDEN, "Forbidden")
    }
}

async fn set_gate(state: &AppState, kind: GateKind, open: bool, body: &[u8]) -> Response {
    let p = match parse_payload(state, body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let kind_name = match kind {
        GateKind::Gate => "gate",
        GateKind::Rollback => "rollback",
    };
    let action = if open { "open" } else { "close" };
    state.metrics.gate_changed(kind_name, action);
    tracing::info!("{}.{} {kind_name} {action}", p.name, p.namespace);
    match state.gates.set(kind, &p.name, &p.namespace, open).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => {
            tracing::error!("{e}");
            text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

async fn gate_check(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    check(&s, GateKind::Gate, &body).await
}
async fn gate_open(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    set_gate(&s, GateKind::Gate, true, &body).await
}
async fn gate_close(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    set_gate(&s, GateKind::Gate, false, &body).await
}
async fn rollback_check(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    check(&s, GateKind::Rollback, &body).await
}
async fn rollback_open(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    set_gate(&s, GateKind::Rollback, true, &body).await
}
async fn rollback_close(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    set_gate(&s, GateKind::Rollback, false, &body).await
}

async fn list_gates(State(s): State<Arc<AppState>>) -> Response {
    axum::Json(s.gates.list().await).into_response()
}

async fn new_task(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let payload = match parse_payload(&state, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let metadata = match payload.metadata {
        Some(m) if !m.is_empty() => m,
        _ => {
            state.metrics.rejected("bad_request");
            return text(StatusCode::BAD_REQUEST, "metadata not found in payload");
        }
    };
    let canary = format!("{}.{}", payload.name, payload.namespace);
    let task_type = metadata.get("type").map_or(DEFAULT_TYPE, String::as_str);
    let return_output = metadata
        .get("returnCmdOutput")
        .and_then(|v| parse_bool(v))
        .unwrap_or(false);
    let cmd = metadata.get("cmd");
    if let Some(c) = cmd.filter(|c| c.len() > MAX_CMD_BYTES) {
        state.metrics.rejected("bad_request");
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "cmd is {} bytes, over the limit of {MAX_CMD_BYTES}",
                c.len()
            ),
        );
    }

    if let Some(reply) = state
        .tasks
        .run_service_task(&canary, task_type, &metadata)
        .await
    {
        let status =
            StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return text(status, reply.body);
    }

    if task_type == DEFAULT_TYPE {
        let Some(cmd) = cmd else {
            state.metrics.rejected("bad_request");
            return text(StatusCode::BAD_REQUEST, "cmd not found in metadata");
        };
        let log_output = metadata
            .get("logCmdOutput")
            .and_then(|v| parse_bool(v))
            .unwrap_or(false);
        state.tasks.submit(&canary, cmd, log_output);
        return StatusCode::ACCEPTED.into_response();
    }

    let cmd = cmd.map_or("", String::as_str);
    let Some(spec) = state.tasks.spec_for(task_type, cmd) else {
        state.metrics.rejected("bad_request");
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown task type {task_type} (supported: {})",
                SUPPORTED_TYPES.join(", ")
            ),
        );
    };
    let shown = flagger_core::redact::text(cmd);
    tracing::info!(canary, "{task_type} command {shown}");
    let ex = state.tasks.run_blocking(&canary, task_type, spec).await;
    match ex.failure_reason() {
        // Asked for: the output as it is.
        None if return_output => text(StatusCode::OK, String::from_utf8_lossy(&ex.output)),
        None => StatusCode::OK.into_response(),
        // An error text ends up in the controller's logs and events: credentials redacted.
        Some(reason) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "command {shown} failed: {}: {reason}",
                tasks::shown_output(&ex.output)
            ),
        ),
    }
}
