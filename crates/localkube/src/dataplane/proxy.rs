//! The HTTP listener of the data plane.
//!
//! Requests in absolute form (`GET http://podinfo.test:9898/ HTTP/1.1`, what a client with
//! `HTTP_PROXY` sends) are proxied: resolved ([`super::resolve`]), routed
//! ([`super::Router`]), sent to an endpoint ([`super::endpoints`]) and recorded
//! ([`super::metrics`]). A request in origin form whose `Host` names a cluster Service is
//! treated the same way, for clients that cannot use a proxy, and so is one whose host the
//! router takes as a gateway host ([`super::Router::route_host`]). Other origin-form requests
//! are for the data plane itself: `/metrics` (the proxies' and controllers' series, for
//! Prometheus), `/sd/kubernetes/pods` (Prometheus's HTTP service discovery,
//! [`super::discovery`]) and `/healthz`.
//!
//! **Who is asking.** A process outside localkube says which workload it is through its proxy
//! URL's user part, `http://NAME.NAMESPACE@HOST:PORT` (or `http://NAMESPACE@...`), which
//! clients send as `Proxy-Authorization: Basic`; single-label names then resolve in that
//! namespace, as from a pod there, and the meshes' series name it as the client. Without it,
//! names resolve in [`super::DataPlaneConfig::default_namespace`] and the client is unknown.
//!
//! **Host.** A request keeps the client's `Host` header on its way to a pod or a real process
//! (a route's authority rewrite aside), as kube-proxy, which does not look at HTTP, keeps it;
//! routing uses the address the client asked for. A Service whose upstream is the data plane
//! itself is an ingress controller in front of the simulated gateways: its requests are routed
//! by their `Host`, as a gateway host would be.
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
use super::endpoints::{Endpoint, NoEndpoint, Picker, UPSTREAM};
use serde_json::Value;

use super::config::DataPlaneConfig;
use super::metrics::{GatewayLabels, IngressLabels, MeshLabels, PodRef, Reporter, RequestMetrics};
use super::resolve::{Resolved, resolve};
use super::router::{RequestInfo, RouteDecision, ServicePort, Workload};
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
    /// `host[:port]` as the client addressed it (the `Host` header sent upstream when the
    /// client sent none).
    authority: String,
    body: Bytes,
    /// Who sent it, as the meshes' series name the client: the process's workload, or the
    /// gateway the request came through.
    source: Workload,
}

impl Req {
    /// The `Host` a backend gets: the client's, else the address it asked for.
    fn host(&self) -> String {
        self.headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map_or_else(|| self.authority.clone(), str::to_string)
    }

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

/// The client a proxy request names in `Proxy-Authorization: Basic` (its proxy URL's user
/// part): `NAME.NAMESPACE` or `NAMESPACE`. Anything else: an unknown client in
/// `default_namespace`.
fn caller(headers: &HeaderMap, default_namespace: &str) -> Workload {
    use base64::Engine as _;
    let user = headers
        .get(header::PROXY_AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .map(|cred| {
            cred.split(':')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        })
        .filter(|u| !u.is_empty());
    match user
        .as_deref()
        .map(|u| u.rsplit_once('.').unwrap_or(("", u)))
    {
        Some((name, ns)) => Workload {
            namespace: ns.to_string(),
            name: name.to_string(),
        },
        None => Workload {
            namespace: default_namespace.to_string(),
            name: String::new(),
        },
    }
}

/// Whether `ip` is in the simulated cluster's pod (10.244.0.0/16) or Service (10.96.0.0/16)
/// ranges: such an address that names no pod or Service is never forwarded outside.
fn cluster_address(host: &str) -> bool {
    match host.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => matches!(ip.octets(), [10, 244, ..] | [10, 96, ..]),
        Err(_) => false,
    }
}

/// Where a request goes, decided before its body is read.
enum Target {
    /// The data plane's own endpoints.
    Local,
    Forward(String, u16),
    NoSuchService(String, String),
    /// An address in the cluster's ranges that no pod or Service has (any more).
    Gone(String),
    Pod(String, String, u16),
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
            port,
        } => Target::Pod(namespace, name, port),
        Resolved::Outside { host, .. } if cluster_address(&host) => Target::Gone(host),
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
    let source = caller(&parts.headers, &st.config.default_namespace);
    let (authority, target) = {
        let info = RequestInfo {
            method: &parts.method,
            path_and_query: &path_and_query,
            headers: &parts.headers,
        };
        match uri.authority().map(|a| a.as_str().to_string()) {
            Some(a) => {
                let (host, port) = split_authority(&a);
                let resolved = resolve(&st.api, &host, port.unwrap_or(80), &source.namespace);
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
                    return local(&st, &uri);
                }
                let resolved = resolve(&st.api, &h, p.unwrap_or(80), &source.namespace);
                let t = target(&st, resolved, &info, true);
                (host, t)
            }
        }
    };
    if matches!(target, Target::Local) {
        return local(&st, &uri);
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
        source,
    };
    match target {
        Target::Local => local(&st, &uri),
        Target::Forward(host, port) => forward(&host, port, &req).await,
        Target::NoSuchService(namespace, service) => text(
            StatusCode::BAD_GATEWAY,
            format!("localkube data plane: service \"{namespace}/{service}\" not found\n"),
        ),
        Target::Gone(ip) => text(
            StatusCode::BAD_GATEWAY,
            format!("localkube data plane: no pod or Service has the address {ip}\n"),
        ),
        Target::Pod(namespace, name, port) => {
            serve_pod(&st, &namespace, &name, port, None, &req).await.0
        }
        Target::Routed(decision) => routed(&st, *decision, req).await,
    }
}

/// What answered a request: the pod (or a Service's upstream) and its workload, as the mesh
/// series name the destination.
#[derive(Debug, Clone, Default)]
struct Dest {
    namespace: String,
    workload_kind: String,
    workload: String,
    pod: String,
}

/// How a routed request went: what answered, how long the backend took (`None`: answered
/// without one), and Envoy's response flags.
#[derive(Debug, Default)]
struct Served {
    dest: Option<Dest>,
    upstream: Option<std::time::Duration>,
    flags: &'static str,
}

/// Carries out a routing decision and records it as the client's side reports it: in the
/// ingress controller's or the gateway's series when one served the request, and in the
/// meshes' source-reported series (the client's sidecar, or the gateway it came through).
async fn routed(st: &Arc<ProxyState>, mut decision: RouteDecision, mut req: Req) -> Response {
    let ingress = decision.actions.ingress.take();
    let gateway_series = decision.actions.gateway_series.take();
    if let Some(gateway) = decision.actions.gateway.take() {
        req.source = gateway;
    }
    let start = Instant::now();
    let method = req.method.to_string();
    let source = req.source.clone();
    let backend = decision.backend.clone();
    let (resp, served) = carry_out(st, decision, req).await;
    let took = start.elapsed();
    let status = resp.status().as_u16();
    if let Some(telemetry) = gateway_series {
        st.metrics.observe_gateway(
            GatewayLabels {
                telemetry,
                method: method.clone(),
                status,
            },
            took,
            served.upstream,
        );
    }
    if let Some(ingress) = ingress {
        st.metrics.observe_ingress(
            IngressLabels {
                namespace: ingress.namespace,
                ingress: ingress.ingress,
                service: ingress.service,
                canary: ingress.canary,
                path: ingress.path,
                host: ingress.host,
                method,
                status,
            },
            took,
            served.upstream,
        );
    }
    let dest = served.dest.unwrap_or_default();
    let via_service = !backend.service.is_empty();
    st.metrics.observe_mesh(
        MeshLabels {
            reporter: Reporter::Source,
            source_namespace: if source.name.is_empty() {
                String::new()
            } else {
                source.namespace
            },
            source_workload: source.name,
            response_flags: served.flags,
            namespace: dest.namespace,
            workload_kind: dest.workload_kind,
            workload: dest.workload,
            pod: dest.pod,
            service_namespace: if via_service {
                backend.namespace
            } else {
                String::new()
            },
            service: backend.service,
            port: backend.port,
            status,
        },
        took,
    );
    resp
}

/// Carries out a routing decision: edits the request, sends the mirrors their copies, waits
/// for the backend (within the route's timeout) and edits its answer.
async fn carry_out(
    st: &Arc<ProxyState>,
    decision: RouteDecision,
    mut req: Req,
) -> (Response, Served) {
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
        let flags = match status {
            404 => "NR",
            s if s >= 500 => "FI",
            _ => "-",
        };
        return (
            r,
            Served {
                flags,
                ..Default::default()
            },
        );
    }
    actions.request_headers.apply(&mut req.headers);
    if let Some(pq) = actions.path_and_query {
        req.path_and_query = pq;
    }
    if let Some(a) = actions.authority {
        if let Ok(v) = HeaderValue::from_str(&a) {
            req.headers.insert(header::HOST, v);
        }
        req.authority = a;
    }
    for m in mirrors {
        let (st, req) = (st.clone(), req.clone());
        tokio::spawn(async move {
            let _ = dispatch(&st, &m, &req).await;
        });
    }
    let upstream_start = Instant::now();
    let (mut resp, mut served) = match actions.timeout {
        Some(t) => tokio::time::timeout(t, dispatch(st, &backend, &req))
            .await
            .unwrap_or_else(|_| {
                let r = text(
                    StatusCode::GATEWAY_TIMEOUT,
                    "localkube data plane: upstream request timeout\n",
                );
                (
                    r,
                    Served {
                        flags: "UT",
                        ..Default::default()
                    },
                )
            }),
        None => dispatch(st, &backend, &req).await,
    };
    served.upstream = Some(upstream_start.elapsed());
    actions.response_headers.apply(resp.headers_mut());
    (resp, served)
}

/// Whether `host:port` is the data plane's own listener.
fn is_self(st: &ProxyState, host: &str, port: u16) -> bool {
    port == st.addr.port()
        && (host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip == st.addr.ip() || ip.is_loopback() || ip.is_unspecified()))
}

/// Sends a request to an endpoint of `sp`.
async fn dispatch(st: &Arc<ProxyState>, sp: &ServicePort, req: &Req) -> (Response, Served) {
    let answered = |dest| Served {
        dest: Some(dest),
        upstream: None,
        flags: "-",
    };
    match st.picker.pick(&st.api, sp) {
        Ok(Endpoint::Pod {
            namespace,
            name,
            port,
        }) => {
            let (resp, dest) = serve_pod(st, &namespace, &name, port, Some(sp), req).await;
            let served = match dest {
                Some(d) => answered(d),
                None => Served {
                    flags: "UH",
                    ..Default::default()
                },
            };
            (resp, served)
        }
        Ok(Endpoint::Upstream { host, port }) if is_self(st, &host, port) => {
            // An ingress controller Service in front of the simulated gateways.
            (gateway(st, req.clone()).await, Served::default())
        }
        Ok(Endpoint::Upstream { host, port }) => {
            let start = Instant::now();
            let resp = forward(&host, port, req).await;
            let dest = Dest {
                namespace: sp.namespace.clone(),
                workload_kind: "Service".into(),
                workload: sp.service.clone(),
                pod: sp.service.clone(),
            };
            st.metrics.observe_mesh(
                destination_labels(req, &dest, Some(sp), resp.status().as_u16()),
                start.elapsed(),
            );
            (resp, answered(dest))
        }
        Err(e @ NoEndpoint::NoReadyEndpoints(..)) => (
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("localkube data plane: {e}\n"),
            ),
            Served {
                flags: "UH",
                ..Default::default()
            },
        ),
        Err(e) => (
            text(
                StatusCode::BAD_GATEWAY,
                format!("localkube data plane: {e}\n"),
            ),
            Served {
                flags: "UH",
                ..Default::default()
            },
        ),
    }
}

/// A request that reached an ingress controller Service fronted by the data plane: routed by
/// its `Host` as a gateway host; a host no gateway serves gets the controller's default
/// backend (404).
/// (Boxed: it routes again, which may come back here.)
fn gateway(
    st: &Arc<ProxyState>,
    req: Req,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send + '_>> {
    Box::pin(async move {
        let host = req.host();
        let (h, port) = split_authority(&host);
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        let decision = {
            let info = RequestInfo {
                method: &req.method,
                path_and_query: &req.path_and_query,
                headers: &req.headers,
            };
            st.config
                .router
                .route_host(&st.api, &h, port.unwrap_or(80), &info)
        };
        match decision {
            Some(d) => routed(st, d, req).await,
            None => text(StatusCode::NOT_FOUND, "default backend - 404\n"),
        }
    })
}

/// The labels of a request `dest` answered, as its proxy reports it (`via`: the Service port
/// the request was sent to).
fn destination_labels(
    req: &Req,
    dest: &Dest,
    via: Option<&ServicePort>,
    status: u16,
) -> MeshLabels {
    MeshLabels {
        reporter: Reporter::Destination,
        source_namespace: if req.source.name.is_empty() {
            String::new()
        } else {
            req.source.namespace.clone()
        },
        source_workload: req.source.name.clone(),
        response_flags: "-",
        namespace: dest.namespace.clone(),
        workload_kind: dest.workload_kind.clone(),
        workload: dest.workload.clone(),
        pod: dest.pod.clone(),
        service_namespace: via.map(|v| v.namespace.clone()).unwrap_or_default(),
        service: via.map(|v| v.service.clone()).unwrap_or_default(),
        port: via.map_or(0, |v| v.port),
        status,
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

/// The port podinfo serves its metrics on, where its requests are not instrumented:
/// `--port-metrics` of the first container, else the pod's `prometheus.io/port` annotation.
fn metrics_port(pod: &Value) -> Option<u16> {
    let container = pod.pointer("/spec/containers/0");
    let words: Vec<&str> = ["command", "args"]
        .iter()
        .filter_map(|k| container?.get(*k)?.as_array())
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let flag = words.iter().enumerate().find_map(|(i, w)| {
        let w = w.trim_start_matches('-');
        match w.strip_prefix("port-metrics") {
            Some(v) if v.starts_with('=') => v[1..].parse().ok(),
            Some("") => words.get(i + 1)?.parse().ok(),
            _ => None,
        }
    });
    flag.or_else(|| {
        pod.pointer("/metadata/annotations/prometheus.io~1port")?
            .as_str()?
            .parse()
            .ok()
    })
}

/// A simulated pod answers on `port` (`via`: the Service port the request was sent to); also
/// says what answered (`None`: the pod is gone).
async fn serve_pod(
    st: &ProxyState,
    namespace: &str,
    name: &str,
    port: u16,
    via: Option<&ServicePort>,
    req: &Req,
) -> (Response, Option<Dest>) {
    let pod = st
        .api
        .resource("v1", "Pod")
        .ok()
        .and_then(|info| st.api.store.get(&info.storage_key(), namespace, name));
    let Some(pod) = pod else {
        let r = text(
            StatusCode::BAD_GATEWAY,
            format!("localkube data plane: pod \"{namespace}/{name}\" not found\n"),
        );
        return (r, None);
    };
    let (workload_kind, workload) = workload_of(&st.api, &pod);
    let scrape_port = metrics_port(&pod) == Some(port);
    let app = PodApp::from_pod(&pod);
    let start = Instant::now();
    let answer = app::serve(&app, &st.faults, &req.method, req.path(), &req.headers).await;
    let took = start.elapsed();
    let pod_ref = PodRef {
        namespace: app.namespace.clone(),
        name: app.name.clone(),
        uid: app.uid.clone(),
    };
    let metrics = answer.route == Some("metrics") && answer.status == StatusCode::OK;
    let dest = Dest {
        namespace: app.namespace.clone(),
        workload_kind,
        workload,
        pod: app.name.clone(),
    };
    // A scrape on the metrics port is not instrumented (podinfo's metrics server), nor seen
    // by a sidecar (Prometheus scrapes around it).
    if !(metrics && scrape_port) {
        if let Some(path) = answer.route {
            st.metrics.observe_pod(
                &pod_ref,
                req.method.as_str(),
                path,
                answer.status.as_u16(),
                took,
            );
        }
        st.metrics.observe_mesh(
            destination_labels(req, &dest, via, answer.status.as_u16()),
            took,
        );
    }
    if metrics {
        let mut r = text(StatusCode::OK, st.metrics.render_pod(&app.uid));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return (r, Some(dest));
    }
    let bytes = serde_json::to_vec_pretty(&answer.body).unwrap_or_default();
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = answer.status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    (r, Some(dest))
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
        if let Ok(v) = HeaderValue::from_str(&req.host()) {
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
fn local(st: &ProxyState, uri: &axum::http::Uri) -> Response {
    match uri.path() {
        "/metrics" => {
            let mut r = text(StatusCode::OK, st.metrics.render());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        super::discovery::PODS_PATH => {
            let namespaces: Vec<String> =
                url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
                    .filter(|(k, _)| k == "namespace")
                    .map(|(_, v)| v.into_owned())
                    .collect();
            let body = serde_json::to_vec(&super::discovery::pod_targets(&st.api, &namespaces))
                .unwrap_or_default();
            let mut r = Response::new(Body::from(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        "/healthz" | "/readyz" | "/livez" => text(StatusCode::OK, "ok"),
        _ => text(
            StatusCode::NOT_FOUND,
            format!(
                "localkube data plane: set HTTP_PROXY=http://{} to reach Services by name (http://SERVICE.NAMESPACE:PORT/); the proxies' series are at /metrics, the pods to scrape at {}; a Service annotated {UPSTREAM}=HOST:PORT forwards to a local process\n",
                st.addr,
                super::discovery::PODS_PATH
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
