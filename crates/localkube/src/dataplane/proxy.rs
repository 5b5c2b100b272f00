//! The HTTP listener of the data plane.
//!
//! Requests in absolute form (`GET http://podinfo.test:9898/ HTTP/1.1`, what a client with
//! `HTTP_PROXY` sends) are proxied: resolved ([`super::resolve`]), routed
//! ([`super::Router`]), sent to an endpoint ([`super::endpoints`]) and recorded
//! ([`super::metrics`]). A request in origin form whose `Host` names a cluster Service is
//! treated the same way, for clients that cannot use a proxy, and so is one whose host the
//! router takes as a gateway host ([`super::Router::route_host`]). Other origin-form requests
//! are for the data plane itself: `/metrics` (for Prometheus) and `/healthz`.
//!
//! A routed request gets the router's edits ([`super::RouteActions`]): request headers, path,
//! authority before it is sent (mirrors get the edited copy), a timeout while it is served,
//! response headers on its answer; or a direct answer instead.
//!
//! `CONNECT` (HTTPS through the proxy) is refused: cluster traffic here is plain HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use tokio::time::Instant;

use super::app::{self, PodApp};
use super::endpoints::{Endpoint, NoEndpoint, Picker};
use serde_json::Value;

use super::metrics::{GatewayLabels, IngressLabels, MeshLabels, RequestLabels, RequestMetrics};
use super::resolve::{Resolved, resolve};
use super::router::{RequestInfo, RouteDecision, ServicePort};
use super::{DataPlaneConfig, UPSTREAM};
use crate::Api;
use crate::util;

/// The largest request body the proxy buffers (bodies are buffered so mirrors get a copy).
const MAX_BODY: usize = 64 << 20;

/// Headers that concern one connection, not the request (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Shared state of the listener.
#[derive(Debug)]
pub struct ProxyState {
    api: Api,
    config: DataPlaneConfig,
    metrics: Arc<RequestMetrics>,
    picker: Picker,
    faults: app::Faults,
    addr: SocketAddr,
}

impl ProxyState {
    pub fn new(
        api: Api,
        config: DataPlaneConfig,
        metrics: Arc<RequestMetrics>,
        addr: SocketAddr,
    ) -> Self {
        Self {
            api,
            config,
            metrics,
            picker: Picker::default(),
            faults: app::Faults::default(),
            addr,
        }
    }
}

/// A buffered request, cheap to copy for mirrors.
#[derive(Debug, Clone)]
struct Req {
    method: Method,
    headers: HeaderMap,
    path_and_query: String,
    /// `host[:port]` as the client addressed it (the `Host` header sent upstream).
    authority: String,
    body: Bytes,
}

impl Req {
    fn path(&self) -> &str {
        self.path_and_query
            .split('?')
            .next()
            .filter(|p| !p.is_empty())
            .unwrap_or("/")
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut r = Response::new(Body::from(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn split_authority(a: &str) -> (String, Option<u16>) {
    if let Some(rest) = a.strip_prefix('[') {
        // [v6]:port
        let (h, p) = rest.split_once(']').unwrap_or((rest, ""));
        return (
            h.to_string(),
            p.strip_prefix(':').and_then(|p| p.parse().ok()),
        );
    }
    match a.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() => {
            (h.to_string(), p.parse().ok())
        }
        _ => (a.to_string(), None),
    }
}

/// Where a request goes, decided before its body is read.
enum Target {
    /// The data plane's own endpoints.
    Local,
    Forward(String, u16),
    NoSuchService(String, String),
    Pod(String, String),
    /// Addressed to a Service or a gateway host, routed by the router.
    Routed(Box<RouteDecision>),
}

fn target(
    st: &ProxyState,
    resolved: Resolved,
    info: &RequestInfo<'_>,
    origin_form: bool,
) -> Target {
    let router = &st.config.router;
    match resolved {
        Resolved::Service(sp) => Target::Routed(Box::new(router.route(&st.api, &sp, info))),
        Resolved::NoSuchService { namespace, service } => Target::NoSuchService(namespace, service),
        Resolved::Pod {
            namespace,
            name,
            port: _,
        } => Target::Pod(namespace, name),
        Resolved::Outside { host, port } => match router.route_host(&st.api, &host, port, info) {
            Some(d) => Target::Routed(Box::new(d)),
            None if origin_form => Target::Local,
            None => Target::Forward(host, port),
        },
        Resolved::External { .. } if origin_form => Target::Local,
        Resolved::External { host, port } => Target::Forward(host, port),
    }
}

/// The one handler.
pub async fn handle(State(st): State<Arc<ProxyState>>, req: Request) -> Response {
    if req.method() == Method::CONNECT {
        return text(
            StatusCode::NOT_IMPLEMENTED,
            "localkube data plane: CONNECT (HTTPS through the proxy) is not supported; use http:// URLs\n",
        );
    }
    let uri = req.uri().clone();
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let (parts, body) = req.into_parts();
    let (authority, target) = {
        let info = RequestInfo {
            method: &parts.method,
            path_and_query: &path_and_query,
            headers: &parts.headers,
        };
        match uri.authority().map(|a| a.as_str().to_string()) {
            Some(a) => {
                let (host, port) = split_authority(&a);
                let resolved = resolve(
                    &st.api,
                    &host,
                    port.unwrap_or(80),
                    &st.config.default_namespace,
                );
                let t = target(&st, resolved, &info, false);
                (a, t)
            }
            None => {
                let host = parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let (h, p) = split_authority(&host);
                if host.is_empty() || p.is_some_and(|p| p == st.addr.port()) {
                    return local(&st, uri.path());
                }
                let resolved = resolve(&st.api, &h, p.unwrap_or(80), &st.config.default_namespace);
                let t = target(&st, resolved, &info, true);
                (host, t)
            }
        }
    };
    if matches!(target, Target::Local) {
        return local(&st, uri.path());
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("reading the request body: {e}\n"),
            );
        }
    };
    let req = Req {
        method: parts.method,
        headers: parts.headers,
        path_and_query,
        authority,
        body,
    };
    match target {
        Target::Local => local(&st, uri.path()),
        Target::Forward(host, port) => forward(&host, port, &req).await,
        Target::NoSuchService(namespace, service) => text(
            StatusCode::BAD_GATEWAY,
            format!("localkube data plane: service \"{namespace}/{service}\" not found\n"),
        ),
        Target::Pod(namespace, name) => serve_pod(&st, &namespace, &name, None, &req).await,
        Target::Routed(decision) => routed(&st, *decision, req).await,
    }
}

/// Carries out a routing decision and, when an ingress controller or a gateway served the
/// request, records it in its series.
async fn routed(st: &Arc<ProxyState>, mut decision: RouteDecision, req: Req) -> Response {
    let gateway = decision.actions.gateway.take();
    let ingress = decision.actions.ingress.take();
    if ingress.is_none() && gateway.is_none() {
        return carry_out(st, decision, req).await.0;
    }
    let start = Instant::now();
    let method = req.method.to_string();
    let (resp, upstream) = carry_out(st, decision, req).await;
    if let Some(telemetry) = gateway {
        st.metrics.observe_gateway(
            GatewayLabels {
                telemetry,
                method: method.clone(),
                status: resp.status().as_u16(),
            },
            start.elapsed(),
            upstream,
        );
    }
    let Some(ingress) = ingress else {
        return resp;
    };
    st.metrics.observe_ingress(
        IngressLabels {
            namespace: ingress.namespace,
            ingress: ingress.ingress,
            service: ingress.service,
            canary: ingress.canary,
            path: ingress.path,
            host: ingress.host,
            method,
            status: resp.status().as_u16(),
        },
        start.elapsed(),
        upstream,
    );
    resp
}

/// Carries out a routing decision: edits the request, sends the mirrors their copies, waits
/// for the backend (within the route's timeout) and edits its answer. Also says how long the
/// backend took (`None`: answered without one).
async fn carry_out(
    st: &Arc<ProxyState>,
    decision: RouteDecision,
    mut req: Req,
) -> (Response, Option<std::time::Duration>) {
    let RouteDecision {
        backend,
        mirrors,
        actions,
    } = decision;
    if let Some(d) = actions.delay {
        tokio::time::sleep(d).await;
    }
    if let Some((status, body)) = actions.direct {
        let mut r = text(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        );
        actions.response_headers.apply(r.headers_mut());
        return (r, None);
    }
    actions.request_headers.apply(&mut req.headers);
    if let Some(pq) = actions.path_and_query {
        req.path_and_query = pq;
    }
    if let Some(a) = actions.authority {
        req.authority = a;
    }
    for m in mirrors {
        let (st, req) = (st.clone(), req.clone());
        tokio::spawn(async move {
            let _ = dispatch(&st, &m, &req).await;
        });
    }
    let upstream_start = Instant::now();
    let mut resp = match actions.timeout {
        Some(t) => tokio::time::timeout(t, dispatch(st, &backend, &req))
            .await
            .unwrap_or_else(|_| {
                text(
                    StatusCode::GATEWAY_TIMEOUT,
                    "localkube data plane: upstream request timeout\n",
                )
            }),
        None => dispatch(st, &backend, &req).await,
    };
    let upstream = upstream_start.elapsed();
    actions.response_headers.apply(resp.headers_mut());
    (resp, Some(upstream))
}

/// Sends a request to an endpoint of `sp`.
async fn dispatch(st: &Arc<ProxyState>, sp: &ServicePort, req: &Req) -> Response {
    match st.picker.pick(&st.api, sp) {
        Ok(Endpoint::Pod {
            namespace,
            name,
            port: _,
        }) => serve_pod(st, &namespace, &name, Some(sp), req).await,
        Ok(Endpoint::Upstream { host, port }) => {
            let start = Instant::now();
            let resp = forward(&host, port, req).await;
            let took = start.elapsed();
            st.metrics.observe(
                RequestLabels {
                    namespace: sp.namespace.clone(),
                    pod: sp.service.clone(),
                    method: req.method.to_string(),
                    path: req.path().to_string(),
                    status: resp.status().as_u16(),
                },
                took,
            );
            st.metrics.observe_mesh(
                MeshLabels {
                    namespace: sp.namespace.clone(),
                    workload_kind: "Service".into(),
                    workload: sp.service.clone(),
                    pod: sp.service.clone(),
                    service_namespace: sp.namespace.clone(),
                    service: sp.service.clone(),
                    port: sp.port,
                    status: resp.status().as_u16(),
                },
                took,
            );
            resp
        }
        Err(e @ NoEndpoint::NoReadyEndpoints(..)) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("localkube data plane: {e}\n"),
        ),
        Err(e) => text(
            StatusCode::BAD_GATEWAY,
            format!("localkube data plane: {e}\n"),
        ),
    }
}

/// The workload a pod belongs to, as Istio, Linkerd and OSM name it, kind and name: the
/// Deployment owning its ReplicaSet, else its controller (DaemonSet, StatefulSet, ...), else
/// the pod itself.
fn workload_of(api: &Api, pod: &Value) -> (String, String) {
    let controller = |o: &Value| -> Option<(String, String)> {
        o.pointer("/metadata/ownerReferences")?
            .as_array()?
            .iter()
            .find(|r| r["controller"] == true)
            .or_else(|| o.pointer("/metadata/ownerReferences/0"))
            .map(|r| {
                (
                    r["kind"].as_str().unwrap_or_default().to_string(),
                    r["name"].as_str().unwrap_or_default().to_string(),
                )
            })
    };
    match controller(pod) {
        Some((kind, rs)) if kind == "ReplicaSet" => api
            .resource("apps/v1", "ReplicaSet")
            .ok()
            .and_then(|info| {
                api.store
                    .get(&info.storage_key(), util::namespace(pod), &rs)
            })
            .and_then(|o| controller(&o))
            .filter(|(kind, _)| kind == "Deployment")
            .unwrap_or((kind, rs)),
        Some((kind, name)) if !name.is_empty() => (kind, name),
        _ => ("Pod".to_string(), util::name(pod).to_string()),
    }
}

/// A simulated pod answers (`via`: the Service port the request was sent to).
async fn serve_pod(
    st: &ProxyState,
    namespace: &str,
    name: &str,
    via: Option<&ServicePort>,
    req: &Req,
) -> Response {
    let pod = st
        .api
        .resource("v1", "Pod")
        .ok()
        .and_then(|info| st.api.store.get(&info.storage_key(), namespace, name));
    let Some(pod) = pod else {
        return text(
            StatusCode::BAD_GATEWAY,
            format!("localkube data plane: pod \"{namespace}/{name}\" not found\n"),
        );
    };
    let (workload_kind, workload) = workload_of(&st.api, &pod);
    let pod = PodApp::from_pod(&pod);
    let start = Instant::now();
    let answer = app::serve(&pod, &st.faults, &req.method, req.path(), &req.headers).await;
    let took = start.elapsed();
    st.metrics.observe(
        RequestLabels {
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            method: req.method.to_string(),
            path: answer.route.to_string(),
            status: answer.status.as_u16(),
        },
        took,
    );
    st.metrics.observe_mesh(
        MeshLabels {
            namespace: pod.namespace.clone(),
            workload_kind,
            workload,
            pod: pod.name.clone(),
            service_namespace: via.map(|v| v.namespace.clone()).unwrap_or_default(),
            service: via.map(|v| v.service.clone()).unwrap_or_default(),
            port: via.map_or(0, |v| v.port),
            status: answer.status.as_u16(),
        },
        took,
    );
    let bytes = serde_json::to_vec_pretty(&answer.body).unwrap_or_default();
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = answer.status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// Forwards to a real process at `host:port` over a fresh HTTP/1.1 connection.
async fn forward(host: &str, port: u16, req: &Req) -> Response {
    match try_forward(host, port, req).await {
        Ok(r) => r,
        Err(e) => text(
            StatusCode::BAD_GATEWAY,
            format!("localkube data plane: forwarding to {host}:{port}: {e}\n"),
        ),
    }
}

async fn try_forward(host: &str, port: u16, req: &Req) -> anyhow::Result<Response> {
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("data plane upstream connection: {e}");
        }
    });
    let mut out = axum::http::Request::builder()
        .method(req.method.clone())
        .uri(req.path_and_query.as_str());
    if let Some(h) = out.headers_mut() {
        for (k, v) in &req.headers {
            if !HOP_BY_HOP.contains(&k.as_str()) {
                h.append(k.clone(), v.clone());
            }
        }
        if let Ok(v) = HeaderValue::from_str(&req.authority) {
            h.insert(header::HOST, v);
        }
    }
    let resp = sender
        .send_request(out.body(Body::from(req.body.clone()))?)
        .await?;
    let (mut parts, incoming) = resp.into_parts();
    for h in HOP_BY_HOP {
        parts.headers.remove(h);
    }
    Ok(Response::from_parts(parts, Body::new(incoming)))
}

/// The data plane's own endpoints.
fn local(st: &ProxyState, path: &str) -> Response {
    match path {
        "/metrics" => {
            let mut r = text(StatusCode::OK, st.metrics.render());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        "/healthz" | "/readyz" | "/livez" => text(StatusCode::OK, "ok"),
        _ => text(
            StatusCode::NOT_FOUND,
            format!(
                "localkube data plane: set HTTP_PROXY=http://{} to reach Services by name (http://SERVICE.NAMESPACE:PORT/); request metrics are at /metrics; a Service annotated {UPSTREAM}=HOST:PORT forwards to a local process\n",
                st.addr
            ),
        ),
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Arc<ProxyState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().fallback(handle).with_state(state);
    crate::util::serve_nodelay(listener, app, shutdown).await
}
