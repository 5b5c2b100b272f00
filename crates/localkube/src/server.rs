//! The HTTP server: kube-apiserver's REST surface over [`Api`].

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use input_guard::origin::{self, HostPolicy};
use input_guard::{LimitError, Limits};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::api::{
    Api, DeleteOptions, FieldValidation, ListOptions, PatchType, Propagation, WriteOptions,
};
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::registry::{Registry, ResourceInfo};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{EventType, StoreEvent};
use crate::table::{self, Include};
use crate::{discovery, openapi, util};

/// Shared server state.
#[derive(Debug)]
pub struct AppState {
    pub api: Api,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    pub metrics: Metrics,
    pub faults: RwLock<crate::faults::Faults>,
    pub addr: RwLock<String>,
    pub bookmark_interval: Duration,
    /// The `Host` values served (loopback names and addresses, the configured address).
    pub hosts: HostPolicy,
    /// The aggregated External Metrics API (crate::external_metrics).
    pub external_metrics: crate::external_metrics::ExternalMetrics,
    /// Authentication and authorization (RBAC when enabled).
    pub auth: Arc<crate::auth::Auth>,
}

/// kube-apiserver's `MaxRequestBodyBytes` (3 MiB), and a nesting limit that YAML and JSON
/// bodies are checked against in linear time before they are parsed.
pub const BODY_LIMITS: Limits = Limits {
    max_bytes: input_guard::API_SERVER_MAX_BYTES,
    max_depth: input_guard::DEFAULT_MAX_DEPTH,
};

/// kube-apiserver's answer to a body over the limit.
fn too_large() -> ApiError {
    ApiError::new(
        413,
        "RequestEntityTooLarge",
        format!(
            "Request entity too large: limit is {}",
            BODY_LIMITS.max_bytes
        ),
    )
}

/// Bodies over the limit are still read (and dropped) up to this size before the 413 is sent,
/// so that the client, still writing, reads the answer instead of a reset connection (Go's
/// server lingers the same way).
const DRAIN_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Reads the body up to [`BODY_LIMITS`]; a longer one is answered 413 (a `Content-Length` over
/// [`DRAIN_MAX_BYTES`] at once, without reading it).
async fn read_body(mut body: Body, headers: &HeaderMap) -> ApiResult<Bytes> {
    use http_body_util::BodyExt as _;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > DRAIN_MAX_BYTES) {
        return Err(too_large());
    }
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("error reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen > DRAIN_MAX_BYTES {
            return Err(too_large());
        }
        if seen <= BODY_LIMITS.max_bytes {
            kept.extend_from_slice(&data);
        }
    }
    if seen > BODY_LIMITS.max_bytes {
        return Err(too_large());
    }
    Ok(kept.freeze())
}

/// Refuses what a web page makes a browser send (another site's `Origin`,
/// `Sec-Fetch-Site: cross-site`) and a `Host` that is not this server's (DNS rebinding).
/// kubectl and client libraries send no `Origin`.
fn refuse_cross_site(st: &AppState, headers: &HeaderMap) -> Option<ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    origin::check(
        origin::RequestHeaders {
            host: header("host"),
            origin: header("origin"),
            sec_fetch_site: header("sec-fetch-site"),
        },
        Some(&st.hosts),
    )
    .err()
    .map(|refusal| ApiError::forbidden(format!("forbidden: {refusal}")))
}

type S = State<Arc<AppState>>;

/// Parsed query parameters.
#[derive(Debug, Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(uri: &Uri) -> Self {
        Self(
            url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.as_str())
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1"))
    }
}

fn json_response(code: u16, body: &impl serde::Serialize, content_type: &str) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn ok(body: &impl serde::Serialize) -> Response {
    json_response(200, body, "application/json")
}

fn err(e: &ApiError) -> Response {
    let mut r = json_response(e.code, &e.status(), "application/json");
    if let Some(secs) = e.retry_after() {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

fn text(code: u16, s: &str, ct: &str) -> Response {
    let mut r = Response::new(Body::from(s.to_string()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    if let Ok(v) = HeaderValue::from_str(ct) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// What the request addresses.
#[derive(Debug)]
struct Target {
    info: Arc<ResourceInfo>,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
    legacy_watch: bool,
}

fn parse_target(reg: &Registry, segs: &[&str]) -> ApiResult<Target> {
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::path_not_found()),
    };
    let (legacy_watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        r => (false, r),
    };
    let (namespace, rest): (Option<String>, &[&str]) = match rest {
        ["namespaces", ns, r, more @ ..]
            if !(group.is_empty() && more.is_empty() && (*r == "status" || *r == "finalize")) =>
        {
            (Some(ns.to_string()), &rest[2..])
        }
        r => (None, r),
    };
    let Some((res, more)) = rest.split_first() else {
        return Err(ApiError::path_not_found());
    };
    let info = reg
        .lookup(group, version, res)
        .ok_or_else(ApiError::path_not_found)?;
    if namespace.is_some() && !info.namespaced {
        return Err(ApiError::path_not_found());
    }
    let name = more.first().map(|s| s.to_string());
    let sub = more.get(1).map(|s| s.to_string());
    if more.len() > 2 {
        return Err(ApiError::path_not_found());
    }
    Ok(Target {
        info,
        namespace,
        name,
        sub,
        legacy_watch,
    })
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',')
                .next()
                .is_some_and(|first| first.contains("as=Table"))
        })
}

fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',').next().is_some_and(|first| {
                first.contains("as=APIGroupDiscoveryList")
                    && first.contains("v=v2")
                    && !first.contains("v=v2beta1")
            })
        })
}

const AGG_CT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

fn include_of(q: &Query) -> Include {
    match q.get("includeObject") {
        Some("None") => Include::None,
        Some("Object") => Include::Object,
        _ => Include::Metadata,
    }
}

fn verb_of(method: &Method, t: &Target, q: &Query) -> &'static str {
    match *method {
        Method::GET if t.name.is_none() && (q.flag("watch") || t.legacy_watch) => "watch",
        Method::GET if t.name.is_none() => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if t.name.is_none() => "deletecollection",
        Method::DELETE => "delete",
        _ => "unknown",
    }
}

/// The one handler: routes by path.
pub async fn handle(
    State(st): S,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let start = Instant::now();
    let path = uri.path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let q = Query::parse(&uri);
    let admitted = match refuse_cross_site(&st, &headers) {
        Some(e) => Err(e),
        None => match st
            .auth
            .admit(&st.api, method.as_str(), uri.path(), &q.0, &headers)
        {
            Ok(user) => read_body(body, &headers).await.map(|b| (user, b)),
            Err(e) => Err(e),
        },
    };
    let (resp, verb, resource) = match admitted {
        Ok((user, body)) => route(&st, &user, &method, &segs, &q, &headers, body).await,
        Err(e) => {
            tracing::warn!(target: "localkube::request", %method, path = %uri, "refused: {}", e.message);
            (err(&e), "unknown".to_string(), String::new())
        }
    };
    let code = resp.status().as_u16();
    let took = start.elapsed();
    st.metrics.observe(&verb, &resource, code, took);
    tracing::debug!(target: "localkube::request", %method, path = %uri, verb = %verb, resource = %resource, code, latency_ms = took.as_secs_f64() * 1000.0, "request");
    resp
}

async fn route(
    st: &Arc<AppState>,
    user: &crate::auth::UserInfo,
    method: &Method,
    segs: &[&str],
    q: &Query,
    headers: &HeaderMap,
    body: Bytes,
) -> (Response, String, String) {
    let reg = &st.api.registry;
    let meta = |r: Response| (r, "get".to_string(), String::new());
    if let Some(answer) = st.external_metrics.serve(segs, q.get("labelSelector")) {
        return meta(match answer {
            Ok(v) => ok(&v),
            Err(e) => err(&e),
        });
    }
    match segs {
        ["version"] => {
            return meta(ok(&json!({
                "major": "1", "minor": "32", "gitVersion": "v1.32.0", "gitCommit": "localkube",
                "gitTreeState": "clean", "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.3",
                "compiler": "gc", "platform": "linux/amd64", "emulationMajor": "1", "emulationMinor": "32",
            })));
        }
        ["healthz"] | ["readyz"] | ["livez"] => {
            return meta(text(200, "ok", "text/plain; charset=utf-8"));
        }
        ["metrics"] => {
            let objects: Vec<(String, usize)> = reg
                .all()
                .iter()
                .map(|r| {
                    (
                        format!(
                            "{}{}{}",
                            r.plural,
                            if r.group.is_empty() { "" } else { "." },
                            r.group
                        ),
                        st.api.store.count(&r.storage_key()),
                    )
                })
                .collect();
            return meta(text(
                200,
                &st.metrics.render(&objects, st.api.store.resource_version()),
                "text/plain; version=0.0.4",
            ));
        }
        ["api"] => {
            if wants_aggregated(headers) {
                return meta(json_response(
                    200,
                    &discovery::aggregated(reg, true),
                    AGG_CT,
                ));
            }
            let addr = st.addr.read().map(|a| a.clone()).unwrap_or_default();
            return meta(ok(&discovery::api_versions(&addr)));
        }
        ["apis"] => {
            if wants_aggregated(headers) {
                return meta(json_response(
                    200,
                    &discovery::aggregated(reg, false),
                    AGG_CT,
                ));
            }
            let mut groups = discovery::api_group_list(reg);
            if let (Some(entry), Some(list)) = (
                st.external_metrics.group_entry(),
                groups.get_mut("groups").and_then(Value::as_array_mut),
            ) {
                list.push(entry);
            }
            return meta(ok(&groups));
        }
        ["api", v] => {
            return meta(match discovery::api_resource_list(reg, "", v) {
                Some(d) => ok(&d),
                None => err(&ApiError::path_not_found()),
            });
        }
        ["apis", g] => {
            return meta(match discovery::api_group(reg, g) {
                Some(d) => ok(&d),
                None => err(&ApiError::path_not_found()),
            });
        }
        ["apis", g, v] => {
            return meta(match discovery::api_resource_list(reg, g, v) {
                Some(d) => ok(&d),
                None => err(&ApiError::path_not_found()),
            });
        }
        ["openapi", "v3"] => return meta(ok(&openapi::index(reg))),
        ["openapi", "v3", "api", v] => {
            return meta(match openapi::document(reg, "", v) {
                Some(d) => ok(&d),
                None => err(&ApiError::path_not_found()),
            });
        }
        ["openapi", "v3", "apis", g, v] => {
            return meta(match openapi::document(reg, g, v) {
                Some(d) => ok(&d),
                None => err(&ApiError::path_not_found()),
            });
        }
        _ => {}
    }
    let target = match parse_target(reg, segs) {
        Ok(t) => t,
        Err(e) => return (err(&e), "unknown".into(), String::new()),
    };
    let verb = verb_of(method, &target, q);
    let resource = match &target.sub {
        Some(s) => format!("{}/{s}", target.info.plural),
        None => target.info.plural.clone(),
    };
    let faults = st.faults.read().map(|f| f.clone()).unwrap_or_default();
    let mut watch_cut = None;
    if !faults.is_empty() {
        let v = faults.judge(&crate::faults::Request {
            verb,
            resource: &target.info.plural,
            subresource: target.sub.as_deref(),
            namespace: target.namespace.as_deref(),
            name: target.name.as_deref(),
        });
        watch_cut = v.watch_cut;
        if !v.latency.is_zero() {
            tokio::time::sleep(v.latency).await;
        }
        if let Some(code) = v.error {
            let e = if code == 409 {
                ApiError::stale(
                    &target.info.group,
                    &target.info.plural,
                    target.name.as_deref().unwrap_or_default(),
                )
            } else {
                ApiError::injected(code)
            };
            return (err(&e), verb.into(), resource);
        }
    }
    let answer = {
        let decode = || decode_body(&body, headers);
        let special = crate::auth::reviews::Request {
            method: method.as_str(),
            verb,
            info: &target.info,
            namespace: target.namespace.as_deref().unwrap_or_default(),
            name: target.name.as_deref().unwrap_or_default(),
            sub: target.sub.as_deref().unwrap_or_default(),
            content_type: headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
            body: &decode,
            write: write_options(q, headers),
        };
        crate::auth::reviews::intercept(&st.auth, &st.api, user, &special)
    };
    if let Some(answer) = answer {
        let resp = match answer {
            Ok((code, v)) => json_response(code, &v, "application/json"),
            Err(e) => err(&e),
        };
        return (resp, verb.into(), resource);
    }
    let resp = match serve(st, method, verb, &target, q, headers, body, watch_cut).await {
        Ok(r) => r,
        Err(e) => err(&e),
    };
    (resp, verb.into(), resource)
}

fn decode_body(body: &Bytes, headers: &HeaderMap) -> ApiResult<Value> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if body.is_empty() {
        return Ok(json!({}));
    }
    // The size was checked when the body was read; the depth is checked here, in linear time,
    // before a parser sees the text (a deeply nested YAML document costs a parser time
    // quadratic in its size).
    let limit = |what: &str, e: LimitError| match e {
        LimitError::TooLarge { .. } => too_large(),
        LimitError::TooDeep { .. } => ApiError::bad_request(format!("error decoding {what}: {e}")),
    };
    if ct.contains("yaml") {
        let text = std::str::from_utf8(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        input_guard::check_yaml(text, &BODY_LIMITS).map_err(|e| limit("YAML", e))?;
        serde_yaml::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    } else if ct.contains("protobuf") {
        // Decoded against fixed schemas: its depth is theirs.
        crate::protobuf::decode(body)
    } else {
        input_guard::check_json(body, &BODY_LIMITS).map_err(|e| limit("JSON", e))?;
        serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))
    }
}

fn write_options(q: &Query, headers: &HeaderMap) -> WriteOptions {
    WriteOptions {
        dry_run: q.get("dryRun").is_some_and(|d| d == "All"),
        field_manager: q.get("fieldManager").map(String::from),
        field_validation: FieldValidation::parse(q.get("fieldValidation")),
        force: q.flag("force"),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(String::from),
    }
}

fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let v = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(h) = HeaderValue::from_str(&v) {
            r.headers_mut().append(header::WARNING, h);
        }
    }
    r
}

fn list_options(q: &Query) -> ListOptions {
    ListOptions {
        label_selector: q.get("labelSelector").map(String::from),
        field_selector: q.get("fieldSelector").map(String::from),
        limit: q.get("limit").and_then(|l| l.parse().ok()),
        continue_token: q.get("continue").map(String::from),
        resource_version: q.get("resourceVersion").map(String::from),
        resource_version_match: q.get("resourceVersionMatch").map(String::from),
    }
}

fn scale_of(info: &ResourceInfo, o: &Value) -> Value {
    let sc = info.scale.clone().unwrap_or(crate::registry::ScaleInfo {
        spec_replicas_path: ".spec.replicas".into(),
        status_replicas_path: ".status.replicas".into(),
        label_selector_path: None,
    });
    let selector = if info.crd.is_some() {
        sc.label_selector_path
            .as_deref()
            .and_then(|p| util::jsonpath(o, p))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    } else {
        LabelSelector::from_object(&o["spec"]["selector"]).to_string_form()
    };
    let md = &o["metadata"];
    let mut s = json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": md["name"], "namespace": md["namespace"], "uid": md["uid"],
                     "resourceVersion": md["resourceVersion"], "creationTimestamp": md["creationTimestamp"]},
        "spec": {"replicas": util::jsonpath(o, &sc.spec_replicas_path).cloned().unwrap_or(json!(0))},
        "status": {"replicas": util::jsonpath(o, &sc.status_replicas_path).cloned().unwrap_or(json!(0))},
    });
    if !selector.is_empty() {
        s["status"]["selector"] = json!(selector);
    }
    if info.crd.is_none()
        && !info.namespaced
        && let Some(m) = s["metadata"].as_object_mut()
    {
        m.remove("namespace");
    }
    s
}

fn set_path(o: &mut Value, path: &str, v: Value) {
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    if let Some((last, parents)) = parts.split_last() {
        util::obj_at(o, parents).insert(last.to_string(), v);
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    st: &Arc<AppState>,
    method: &Method,
    verb: &str,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    body: Bytes,
    watch_cut: Option<Duration>,
) -> ApiResult<Response> {
    let api = &st.api;
    let info = &t.info;
    let ns = t.namespace.clone().unwrap_or_default();
    let sub = t.sub.as_deref().unwrap_or_default();
    let served_sub = sub.is_empty()
        || (sub == "status" && info.status)
        || (sub == "scale" && info.scale.is_some());
    if !served_sub {
        return Err(ApiError::path_not_found());
    }
    match verb {
        "watch" => {
            return Ok(watch(
                st.clone(),
                info.clone(),
                t.namespace.clone(),
                q,
                headers,
                watch_cut,
            ));
        }
        "list" => {
            let list = api.list_shared(info, t.namespace.as_deref(), &list_options(q))?;
            if wants_table(headers) {
                let items: Vec<Value> = list.items.iter().map(|i| Value::clone(i)).collect();
                return Ok(ok(&table::table(
                    info,
                    &items,
                    list.metadata.clone(),
                    include_of(q),
                )));
            }
            return Ok(ok(&list));
        }
        "get" => {
            let name = t.name.as_deref().unwrap_or_default();
            let o = api.get_shared(info, &ns, name)?;
            if sub == "scale" {
                return Ok(ok(&scale_of(info, &o)));
            }
            if wants_table(headers) {
                return Ok(ok(&table::table(
                    info,
                    &[Value::clone(&o)],
                    json!({"resourceVersion": api.store.resource_version().to_string()}),
                    include_of(q),
                )));
            }
            return Ok(ok(o.as_ref()));
        }
        _ => {}
    }
    let opts = write_options(q, headers);
    match (method.clone(), verb) {
        (Method::POST, "create") => {
            if t.name.is_some() {
                return Err(ApiError::method_not_allowed(format!(
                    "POST is not supported on {}/{}",
                    info.plural, sub
                )));
            }
            let body = decode_body(&body, headers)?;
            let out = api.create(info, &ns, body, &opts)?;
            after_write(api, info, &out.object, false);
            let code = if opts.dry_run { 200 } else { 201 };
            Ok(with_warnings(
                json_response(code, &out.object, "application/json"),
                &out.warnings,
            ))
        }
        (Method::PUT, _) => {
            let name = t.name.as_deref().unwrap_or_default();
            let body = decode_body(&body, headers)?;
            if sub == "scale" {
                let replicas = body.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
                return scale_write(
                    api,
                    info,
                    &ns,
                    name,
                    replicas,
                    body.pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str),
                    &opts,
                );
            }
            let out = api.update(info, &ns, name, body, sub, &opts)?;
            after_write(api, info, &out.object, false);
            Ok(with_warnings(ok(&out.object), &out.warnings))
        }
        (Method::PATCH, _) => {
            let name = t.name.as_deref().unwrap_or_default();
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let ptype = PatchType::from_content_type(ct).ok_or_else(|| {
                ApiError::unsupported_media(format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct:?})"))
            })?;
            let patch = decode_body(&body, headers)?;
            if sub == "scale" {
                let cur = api.get(info, &ns, name)?;
                let mut scale = scale_of(info, &cur);
                match ptype {
                    PatchType::Json => crate::patch::json_patch(&mut scale, &patch)?,
                    _ => crate::patch::merge_patch(&mut scale, &patch),
                }
                let replicas = scale.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
                return scale_write(api, info, &ns, name, replicas, None, &opts);
            }
            let out = api.patch(info, &ns, name, ptype, patch, sub, &opts)?;
            after_write(api, info, &out.object, false);
            let code = if out.created && !opts.dry_run {
                201
            } else {
                200
            };
            Ok(with_warnings(
                json_response(code, &out.object, "application/json"),
                &out.warnings,
            ))
        }
        (Method::DELETE, "delete") => {
            let name = t.name.as_deref().unwrap_or_default();
            let body = decode_body(&body, headers).unwrap_or_else(|_| json!({}));
            let mut dopts = DeleteOptions::from_body(&body);
            apply_delete_query(&mut dopts, q);
            let out = api.delete(info, &ns, name, &dopts)?;
            let gone = out.object.pointer("/metadata/deletionTimestamp").is_none()
                || api
                    .store
                    .get(
                        &info.storage_key(),
                        if info.namespaced { &ns } else { "" },
                        name,
                    )
                    .is_none();
            after_write(api, info, &out.object, gone && !dopts.dry_run);
            Ok(ok(&out.object))
        }
        (Method::DELETE, "deletecollection") => {
            let body = decode_body(&body, headers).unwrap_or_else(|_| json!({}));
            let mut dopts = DeleteOptions::from_body(&body);
            apply_delete_query(&mut dopts, q);
            let out =
                api.delete_collection(info, t.namespace.as_deref(), &list_options(q), &dopts)?;
            if let Some(items) = out["items"].as_array() {
                for o in items {
                    after_write(api, info, o, !dopts.dry_run);
                }
            }
            Ok(ok(&out))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}

fn apply_delete_query(d: &mut DeleteOptions, q: &Query) {
    match q.get("propagationPolicy") {
        Some("Foreground") => d.propagation = Some(Propagation::Foreground),
        Some("Orphan") => d.propagation = Some(Propagation::Orphan),
        Some("Background") => d.propagation = Some(Propagation::Background),
        _ => {}
    }
    if q.get("dryRun") == Some("All") {
        d.dry_run = true;
    }
}

fn scale_write(
    api: &Api,
    info: &ResourceInfo,
    ns: &str,
    name: &str,
    replicas: Value,
    rv: Option<&str>,
    opts: &WriteOptions,
) -> ApiResult<Response> {
    let mut cur = api.get(info, ns, name)?;
    if let Some(rv) = rv.filter(|r| !r.is_empty())
        && cur
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            != Some(rv)
    {
        return Err(ApiError::stale(&info.group, &info.plural, name));
    }
    let path = info
        .scale
        .as_ref()
        .map(|s| s.spec_replicas_path.clone())
        .unwrap_or_else(|| ".spec.replicas".into());
    set_path(&mut cur, &path, replicas);
    let out = api.update(info, ns, name, cur, "", opts)?;
    Ok(ok(&scale_of(info, &out.object)))
}

/// Side effects of writes on the API itself (CRDs register their resources).
fn after_write(api: &Api, info: &ResourceInfo, obj: &Value, deleted: bool) {
    if info.group == "apiextensions.k8s.io" && info.plural == "customresourcedefinitions" {
        crate::crd::sync(&api.registry, &api.store, obj, deleted);
    }
}

/// An object as a watch serves it: copied only when served otherwise than stored (a custom
/// resource's version, a table row).
fn presented<'a>(
    info: &ResourceInfo,
    as_table: bool,
    include: Include,
    o: &'a Value,
) -> Cow<'a, Value> {
    if info.crd.is_none() && !as_table {
        return Cow::Borrowed(o);
    }
    let mut o = o.clone();
    if info.crd.is_some() {
        o["apiVersion"] = json!(info.api_version());
    }
    Cow::Owned(if as_table {
        table::table(info, &[o], json!({}), include)
    } else {
        o
    })
}

/// One watch event, serialized from the object in place.
#[derive(serde::Serialize)]
struct WatchEvent<'a> {
    #[serde(rename = "type")]
    type_: &'a str,
    object: &'a Value,
}

fn event_line(type_: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&WatchEvent { type_, object }).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

struct WatchFilter {
    key: crate::store::ResourceKey,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl WatchFilter {
    fn matches(&self, o: &Value) -> bool {
        self.labels.matches_object(o) && self.fields.matches(o)
    }

    /// The event type to send for a store event, if any.
    fn translate(&self, ev: &StoreEvent) -> Option<&'static str> {
        if ev.key != self.key || self.namespace.as_deref().is_some_and(|n| n != ev.namespace) {
            return None;
        }
        match ev.type_ {
            EventType::Added => self.matches(&ev.object).then_some("ADDED"),
            EventType::Deleted => self.matches(&ev.object).then_some("DELETED"),
            EventType::Modified => {
                let was = ev.old.as_ref().is_some_and(|o| self.matches(o));
                let is = self.matches(&ev.object);
                match (was, is) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        }
    }
}

fn watch(
    st: Arc<AppState>,
    info: Arc<ResourceInfo>,
    namespace: Option<String>,
    q: &Query,
    headers: &HeaderMap,
    watch_cut: Option<Duration>,
) -> Response {
    let as_table = wants_table(headers);
    let include = include_of(q);
    let bookmarks = q.flag("allowWatchBookmarks");
    let send_initial = q.flag("sendInitialEvents");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let timeout = match watch_cut {
        Some(c) => timeout.min(c),
        None => timeout,
    };
    let filter = match (
        LabelSelector::parse(q.get("labelSelector").unwrap_or_default()),
        FieldSelector::parse(q.get("fieldSelector").unwrap_or_default()),
    ) {
        (Ok(l), Ok(f)) => WatchFilter {
            key: info.storage_key(),
            namespace: namespace
                .clone()
                .filter(|n| !n.is_empty() && info.namespaced),
            labels: l,
            fields: f,
        },
        (Err(e), _) | (_, Err(e)) => return err(&e),
    };
    let rv_param = q.get("resourceVersion").map(String::from);
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    let interval = st.bookmark_interval;
    tokio::spawn(async move {
        st.metrics.watch_started();
        let api = &st.api;
        let initial = match rv_param.as_deref() {
            None | Some("") | Some("0") => true,
            Some(_) => send_initial,
        };
        let (mut rx_events, mut last_rv) = if initial {
            let (items, rv, rx) = api
                .store
                .list_and_subscribe(&filter.key, filter.namespace.as_deref());
            for o in items.iter().filter(|o| filter.matches(o)) {
                if tx
                    .send(Ok(event_line(
                        "ADDED",
                        &presented(&info, as_table, include, o),
                    )))
                    .await
                    .is_err()
                {
                    st.metrics.watch_ended();
                    return;
                }
            }
            if send_initial && bookmarks {
                let bm = json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": {"resourceVersion": rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
                let _ = tx.send(Ok(event_line("BOOKMARK", &bm))).await;
            }
            (rx, rv)
        } else {
            let rv: u64 = rv_param
                .as_deref()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            match api.store.watch_from(rv) {
                Err(exp) => {
                    let e =
                        ApiError::gone(format!("too old resource version: {rv} ({})", exp.oldest));
                    let _ = tx.send(Ok(event_line("ERROR", &e.status()))).await;
                    st.metrics.watch_ended();
                    return;
                }
                Ok((past, rx)) => {
                    let mut last = rv;
                    for ev in past {
                        last = ev.resource_version;
                        if let Some(ty) = filter.translate(&ev)
                            && tx
                                .send(Ok(event_line(
                                    ty,
                                    &presented(&info, as_table, include, &ev.object),
                                )))
                                .await
                                .is_err()
                        {
                            st.metrics.watch_ended();
                            return;
                        }
                    }
                    (rx, last.max(rv))
                }
            }
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut shutdown = st.shutdown.clone();
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = tx.closed() => break,
                _ = shutdown.changed() => break,
                _ = tick.tick(), if bookmarks => {
                    let bm = json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": {"resourceVersion": last_rv.to_string()}});
                    if tx.send(Ok(event_line("BOOKMARK", &bm))).await.is_err() { break; }
                }
                ev = rx_events.recv() => match ev {
                    Ok(ev) => {
                        if ev.resource_version <= last_rv { continue; }
                        last_rv = ev.resource_version;
                        if let Some(ty) = filter.translate(&ev)
                            && tx.send(Ok(event_line(ty, &presented(&info, as_table, include, &ev.object)))).await.is_err() { break; }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        st.api.store.note_lagged();
                        let e = ApiError::gone("too old resource version: watcher fell behind");
                        let _ = tx.send(Ok(event_line("ERROR", &e.status()))).await;
                        break;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        }
        st.metrics.watch_ended();
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut r = Response::new(Body::from_stream(stream));
    let ct = if as_table {
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    } else {
        "application/json"
    };
    if let Ok(v) = HeaderValue::from_str(ct) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    r
}

/// Binds and serves until `shutdown` resolves.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    let app = axum::Router::new().fallback(handle).with_state(state);
    match tls {
        Some(acceptor) => {
            let tcp = crate::auth::tls::TlsListener {
                tcp: listener,
                acceptor,
            };
            axum::serve(tcp, app).with_graceful_shutdown(shutdown).await
        }
        None => crate::util::serve_nodelay(listener, app, shutdown).await,
    }
}

/// The bound address as text.
pub fn addr_string(a: SocketAddr) -> String {
    a.to_string()
}
