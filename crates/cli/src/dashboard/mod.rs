//! `flagger dashboard`: a web dashboard of every canary, with live updates and actions
//! (docs/dashboard.md).
//!
//! The server watches with its own identity (in-cluster or kubeconfig): one reflector of the
//! Canaries and one watch of events per server, fanned out to the browsers by a bounded
//! broadcast over server-sent events ([`state`]). Every request is authenticated and authorized
//! for the user's own identity ([`auth`]): a user sees the namespaces where they may `get`
//! canaries and acts where they may `patch` them. Actions write the same request annotations as
//! `kubectl flagger` ([`crate::kubectl::request`]). The pages are plain HTML, CSS and JS built
//! into the binary (`assets/`): no build step, no runtime dependency.

pub mod auth;
pub mod state;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use axum::extract::{ConnectInfo, Form, Path, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flagger_api::Canary;
use futures::Stream;
use kube::api::DynamicObject;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::ApiResource;
use kube::{Api, Client, Config, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use auth::{Auth, AuthOptions, Cidr, Identity};
use state::State;

use crate::kubectl::{ACTIONS, summary};

/// Field manager of the request annotations the dashboard writes.
const FIELD_MANAGER: &str = "flagger-dashboard";

const INDEX_HTML: &str = include_str!("assets/index.html");
const LOGIN_HTML: &str = include_str!("assets/login.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Serve the web dashboard: every canary, live charts, events, actions (docs/dashboard.md).
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub listen: SocketAddr,
    /// Kubeconfig of the dashboard's own identity, which watches (default: $KUBECONFIG,
    /// ~/.kube/config, then the pod's ServiceAccount).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,
    /// Nobody acts (promote, abort, pause, resume, retry are refused); seeing is unchanged.
    #[arg(long)]
    pub read_only: bool,
    /// No login: every visitor acts with the dashboard's own permissions. Only on a loopback
    /// --listen address.
    #[arg(long)]
    pub anonymous: bool,
    /// Take the user from an authenticating front proxy's headers (OIDC proxies such as
    /// oauth2-proxy), from --trusted-proxy addresses only.
    #[arg(long, requires = "trusted_proxies")]
    pub auth_proxy_headers: bool,
    /// Addresses or networks of the front proxy (repeatable, or comma-separated).
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_delimiter = ',')]
    pub trusted_proxies: Vec<Cidr>,
    /// The proxy's header naming the user.
    #[arg(long, default_value = "X-Forwarded-User")]
    pub auth_proxy_user_header: String,
    /// The proxy's header listing the user's groups (comma-separated, or repeated).
    #[arg(long, default_value = "X-Forwarded-Groups")]
    pub auth_proxy_groups_header: String,
    /// Mark the session cookie Secure (when the dashboard is reached over HTTPS).
    #[arg(long)]
    pub secure_cookie: bool,
    /// Points of history kept per canary (weight, phase, each check's value).
    #[arg(long, default_value_t = 1000)]
    pub history: usize,
    /// Most live streams open at once (more are answered 503).
    #[arg(long, default_value_t = 1000)]
    pub max_streams: usize,
}

/// The server's shared state.
pub struct App {
    state: Arc<State>,
    auth: Auth,
    read_only: bool,
    secure_cookie: bool,
    streams: AtomicUsize,
    max_streams: usize,
}

/// Refuses what the flags may not combine to.
pub fn check(args: &Args) -> Result<(), String> {
    if args.anonymous && !args.listen.ip().is_loopback() {
        return Err(format!(
            "--anonymous lets anyone who reaches {} see and steer canaries with the dashboard's \
             own permissions; it is allowed on a loopback address only (127.0.0.1, ::1)",
            args.listen
        ));
    }
    if args.anonymous && args.auth_proxy_headers {
        return Err("--anonymous and --auth-proxy-headers exclude each other".into());
    }
    Ok(())
}

async fn client(args: &Args) -> Result<Client> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &options).await?
        }
        None if args.context.is_some() => Config::from_kubeconfig(&options).await?,
        None => Config::infer().await.context("finding the cluster")?,
    };
    Client::try_from(config).context("connecting to the cluster")
}

/// `flagger dashboard`.
pub async fn run(args: Args) -> Result<()> {
    check(&args).map_err(|e| anyhow::anyhow!(e))?;
    let client = client(&args).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let app = app(client, &args)?;
    let ready = app.state.canaries.clone();
    if tokio::time::timeout(Duration::from_secs(30), ready.wait_until_ready())
        .await
        .is_err()
    {
        eprintln!(
            "dashboard: the canaries are not listed yet (see the watch errors above); serving anyway"
        );
    }
    let mode = if args.anonymous {
        "anonymous (loopback only)"
    } else if args.auth_proxy_headers {
        "front proxy headers, else Kubernetes tokens"
    } else {
        "Kubernetes tokens"
    };
    eprintln!(
        "dashboard serving on http://{addr}/ - authentication: {mode}{}",
        if args.read_only { ", read-only" } else { "" }
    );
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

/// Serves an anonymous dashboard in this process on a loopback `addr` (what `flagger demo
/// --dashboard` runs beside its cluster); returns the address it listens on.
pub async fn serve_anonymous(client: Client, addr: SocketAddr) -> Result<SocketAddr> {
    let args = Args {
        listen: addr,
        kubeconfig: None,
        context: None,
        read_only: false,
        anonymous: true,
        auth_proxy_headers: false,
        trusted_proxies: Vec::new(),
        auth_proxy_user_header: "X-Forwarded-User".into(),
        auth_proxy_groups_header: "X-Forwarded-Groups".into(),
        secure_cookie: false,
        history: 1000,
        max_streams: 1000,
    };
    check(&args).map_err(|e| anyhow::anyhow!(e))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let bound = listener.local_addr()?;
    let app = app(client, &args)?;
    tokio::spawn(async move {
        let served = axum::serve(
            listener,
            router(app).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
        if let Err(e) = served {
            eprintln!("dashboard: {e}");
        }
    });
    Ok(bound)
}

/// The server's state, its watches started.
pub fn app(client: Client, args: &Args) -> Result<Arc<App>> {
    let auth = Auth::new(
        client.clone(),
        AuthOptions {
            anonymous: args.anonymous,
            proxy_headers: args.auth_proxy_headers,
            user_header: args.auth_proxy_user_header.clone(),
            groups_header: args.auth_proxy_groups_header.clone(),
            trusted_proxies: args.trusted_proxies.clone(),
        },
    )?;
    Ok(Arc::new(App {
        state: State::start(client, args.history),
        auth,
        read_only: args.read_only,
        secure_cookie: args.secure_cookie,
        streams: AtomicUsize::new(0),
        max_streams: args.max_streams,
    }))
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/canary/{ns}/{name}", get(page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route(
            "/static/app.js",
            get(|| async { asset(APP_JS, "text/javascript") }),
        )
        .route(
            "/static/style.css",
            get(|| async { asset(STYLE_CSS, "text/css") }),
        )
        .route("/api/whoami", get(whoami))
        .route("/api/canaries", get(list))
        .route("/api/canaries/{ns}/{name}", get(detail))
        .route("/api/canaries/{ns}/{name}/{action}", post(action))
        .route("/api/stream", get(stream))
        .with_state(app)
}

// ----- responses ---------------------------------------------------------------------------------

/// Headers every answer carries: a strict content policy, no sniffing, no framing, no caching.
fn hardened(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    hardened(([(header::CONTENT_TYPE, kind)], body).into_response())
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    hardened(
        (
            code,
            Json(json!({"error": message.into(), "code": code.as_u16()})),
        )
            .into_response(),
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn login_html(code: StatusCode, message: &str) -> Response {
    let body = LOGIN_HTML.replace(
        "<!--MESSAGE-->",
        &if message.is_empty() {
            String::new()
        } else {
            format!("<p class=\"error\" id=\"message\">{}</p>", escape(message))
        },
    );
    hardened(
        (
            code,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
    )
}

/// The request's identity, or the 401 answer (the login page for pages, JSON for the API).
async fn identify(
    app: &App,
    headers: &HeaderMap,
    peer: IpAddr,
    page: bool,
) -> Result<Identity, Response> {
    app.auth.authenticate(headers, peer).await.map_err(|e| {
        let code = match e {
            auth::AuthError::Review(_) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::UNAUTHORIZED,
        };
        if page {
            login_html(code, &e.to_string())
        } else {
            error(code, e.to_string())
        }
    })
}

/// The authenticated user of an API request; a 401 (JSON) otherwise.
struct ApiUser(Identity);

impl axum::extract::FromRequestParts<Arc<App>> for ApiUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &Arc<App>,
    ) -> Result<Self, Response> {
        // Served with connection info; without it, an address no proxy setting trusts.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        identify(app, &parts.headers, peer, false)
            .await
            .map(ApiUser)
    }
}

fn review_failed(e: anyhow::Error) -> Response {
    error(
        StatusCode::BAD_GATEWAY,
        flagger_controller::error::text(e.as_ref()),
    )
}

// ----- pages -------------------------------------------------------------------------------------

async fn page(
    AxState(app): AxState<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    match identify(&app, &headers, peer.ip(), true).await {
        Ok(_) => hardened(
            (
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                INDEX_HTML,
            )
                .into_response(),
        ),
        Err(r) => r,
    }
}

async fn login_page() -> Response {
    login_html(StatusCode::OK, "")
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

fn session_cookie(app: &App, value: &str, max_age: u32) -> HeaderValue {
    let text = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        auth::COOKIE,
        if app.secure_cookie { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

async fn login(
    AxState(app): AxState<Arc<App>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if let Err(why) = same_origin(&headers) {
        return error(StatusCode::FORBIDDEN, why);
    }
    let token = form.token.trim();
    if token.is_empty() || token.chars().any(|c| !c.is_ascii_graphic()) {
        return login_html(
            StatusCode::UNAUTHORIZED,
            "paste a token (kubectl create token NAME -n NAMESPACE)",
        );
    }
    match app.auth.review_token(token).await {
        Ok(_) => {
            let mut r =
                hardened((StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response());
            r.headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&app, token, 8 * 3600));
            r
        }
        Err(e) => login_html(StatusCode::UNAUTHORIZED, &e.to_string()),
    }
}

async fn logout(AxState(app): AxState<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(why) = same_origin(&headers) {
        return error(StatusCode::FORBIDDEN, why);
    }
    let mut r = hardened((StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response());
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&app, "", 0));
    r
}

// ----- API ---------------------------------------------------------------------------------------

async fn whoami(AxState(app): AxState<Arc<App>>, ApiUser(id): ApiUser) -> Response {
    hardened(
        Json(json!({
            "user": id.user,
            "groups": id.groups,
            "via": id.via.as_str(),
            "csrf": app.auth.csrf(&id),
            "readOnly": app.read_only,
        }))
        .into_response(),
    )
}

/// The namespaces with canaries the identity may `get` canaries in; `None` when there are
/// canaries but it may see none of them.
async fn visible_namespaces(
    app: &App,
    id: &Identity,
) -> Result<Option<BTreeSet<String>>, Response> {
    let namespaces: BTreeSet<String> = app
        .state
        .canaries
        .state()
        .iter()
        .filter_map(|c| c.namespace())
        .collect();
    // No canary anywhere: there is nothing to hide, and nothing to say about permissions.
    if namespaces.is_empty()
        || app
            .auth
            .allowed(id, "", "get")
            .await
            .map_err(review_failed)?
    {
        return Ok(Some(namespaces));
    }
    let mut allowed = BTreeSet::new();
    for ns in namespaces {
        if app
            .auth
            .allowed(id, &ns, "get")
            .await
            .map_err(review_failed)?
        {
            allowed.insert(ns);
        }
    }
    Ok((!allowed.is_empty()).then_some(allowed))
}

async fn list(AxState(app): AxState<Arc<App>>, ApiUser(id): ApiUser) -> Response {
    let Some(namespaces) = (match visible_namespaces(&app, &id).await {
        Ok(n) => n,
        Err(r) => return r,
    }) else {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "user {} may not get canaries in any namespace (ask for a Role granting get on \
                 canaries.flagger.app)",
                id.user
            ),
        );
    };
    let mut canaries: Vec<_> = app
        .state
        .canaries
        .state()
        .iter()
        .filter(|c| c.namespace().is_some_and(|ns| namespaces.contains(&ns)))
        .map(|c| summary(c))
        .collect();
    canaries.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    hardened(
        Json(json!({
            "namespaces": namespaces,
            "canaries": canaries,
        }))
        .into_response(),
    )
}

async fn authorize(app: &App, id: &Identity, ns: &str, verb: &str) -> Result<(), Response> {
    if app
        .auth
        .allowed(id, ns, verb)
        .await
        .map_err(review_failed)?
    {
        Ok(())
    } else {
        Err(error(
            StatusCode::FORBIDDEN,
            format!("user {} may not {verb} canaries in namespace {ns}", id.user),
        ))
    }
}

fn find(app: &App, ns: &str, name: &str) -> Option<Arc<Canary>> {
    app.state
        .canaries
        .state()
        .into_iter()
        .find(|c| c.namespace().as_deref() == Some(ns) && c.name_any() == name)
}

async fn detail(
    AxState(app): AxState<Arc<App>>,
    ApiUser(id): ApiUser,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    if let Err(r) = authorize(&app, &id, &ns, "get").await {
        return r;
    }
    let Some(canary) = find(&app, &ns, &name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("canary {name} not found in namespace {ns}"),
        );
    };
    let may_patch = !app.read_only && app.auth.allowed(&id, &ns, "patch").await.unwrap_or(false);
    let status = canary.status.clone().unwrap_or_default();
    let analysis = canary.spec.analysis.clone().unwrap_or_default();
    hardened(
        Json(json!({
            "summary": summary(&canary),
            "checks": status.analysis.as_ref().map(|a| a.checks.clone()).unwrap_or_default(),
            "conditions": status.conditions.clone().unwrap_or_default(),
            "history": app.state.history(&ns, &name),
            "events": app.state.events(&ns, &name),
            "generated": generated(&app.state.client, &canary).await,
            "target": canary.spec.target_ref,
            "provider": canary.spec.provider,
            "analysis": {
                "interval": analysis.interval,
                "threshold": analysis.threshold,
                "maxWeight": analysis.max_weight,
                "stepWeight": analysis.step_weight,
                "iterations": analysis.iterations,
            },
            "mayAct": may_patch,
        }))
        .into_response(),
    )
}

/// Refuses a browser request from another site: a cross-site `Sec-Fetch-Site`, or an `Origin`
/// whose host is not the `Host` asked for.
fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let refuse = |why: String| Err(why);
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && matches!(site, "cross-site" | "same-site")
    {
        return refuse(format!("refused: a {site} request"));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .unwrap_or("");
        if origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
            return refuse(format!(
                "refused: the request comes from {origin}, not this site"
            ));
        }
    }
    Ok(())
}

async fn action(
    AxState(app): AxState<Arc<App>>,
    ApiUser(id): ApiUser,
    headers: HeaderMap,
    Path((ns, name, verb)): Path<(String, String, String)>,
) -> Response {
    if let Err(why) = same_origin(&headers) {
        return error(StatusCode::FORBIDDEN, why);
    }
    let csrf = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !app.auth.csrf_ok(&id, csrf) {
        return error(
            StatusCode::FORBIDDEN,
            "refused: the request lacks this session's CSRF token (X-CSRF-Token, from /api/whoami)",
        );
    }
    if !ACTIONS.contains(&verb.as_str()) {
        return error(
            StatusCode::NOT_FOUND,
            format!("no action {verb:?} (one of {})", ACTIONS.join(", ")),
        );
    }
    if app.read_only {
        return error(
            StatusCode::FORBIDDEN,
            "this dashboard is read-only (--read-only): use kubectl flagger to act",
        );
    }
    if let Err(r) = authorize(&app, &id, &ns, "patch").await {
        return r;
    }
    if find(&app, &ns, &name).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("canary {name} not found in namespace {ns}"),
        );
    }
    let api: Api<Canary> = Api::namespaced(app.state.client.clone(), &ns);
    match crate::kubectl::request(&api, &name, &verb, FIELD_MANAGER).await {
        Ok(request) => {
            eprintln!(
                "dashboard: {} requested {verb} of canary {name}.{ns}",
                id.user
            );
            hardened(Json(json!({"action": verb, "id": request})).into_response())
        }
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            format!(
                "writing the request on canary {name}.{ns}: {}",
                flagger_controller::error::api_text(&e)
            ),
        ),
    }
}

/// Counts an open stream; the count drops with it.
struct StreamSlot(Arc<App>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn stream(AxState(app): AxState<Arc<App>>, ApiUser(id): ApiUser) -> Response {
    if app.streams.fetch_add(1, Ordering::Relaxed) >= app.max_streams {
        app.streams.fetch_sub(1, Ordering::Relaxed);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many live streams open (--max-streams {})",
                app.max_streams
            ),
        );
    }
    let slot = StreamSlot(app.clone());
    let rx = app.state.tx.subscribe();
    hardened(
        Sse::new(events(app, id, rx, slot))
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response(),
    )
}

/// One browser's stream: the broadcast's changes in the namespaces it may see. When it lags
/// behind the broadcast's capacity it is ended (the page reconnects and reloads its data).
fn events(
    app: Arc<App>,
    id: Identity,
    rx: tokio::sync::broadcast::Receiver<Arc<state::Update>>,
    slot: StreamSlot,
) -> impl Stream<Item = Result<SseEvent, std::convert::Infallible>> {
    let hello = SseEvent::default().event("hello").data("{}");
    futures::stream::once(async move { Ok(hello) }).chain(futures::stream::unfold(
        (app, id, rx, slot),
        |(app, id, mut rx, slot)| async move {
            loop {
                match rx.recv().await {
                    Ok(update) => {
                        if app
                            .auth
                            .allowed(&id, &update.namespace, "get")
                            .await
                            .unwrap_or(false)
                        {
                            let ev = SseEvent::default().event(update.kind).data(&update.data);
                            return Some((Ok(ev), (app, id, rx, slot)));
                        }
                    }
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return None,
                }
            }
        },
    ))
}

use futures::StreamExt as _;

// ----- generated objects -------------------------------------------------------------------------

fn resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// What the controller writes for a canary, by Flagger's naming rules: the primary workload,
/// the apex, primary and canary Services, the primary HPA, and the router's objects for Istio
/// and the Gateway API; each with whether it exists now (read with the dashboard's identity).
async fn generated(client: &Client, c: &Canary) -> Vec<Value> {
    let ns = c.namespace().unwrap_or_default();
    let target = &c.spec.target_ref;
    let apex = c
        .spec
        .service
        .as_ref()
        .and_then(|s| s.name.clone())
        .unwrap_or_else(|| target.name.clone());
    let workload = match target.kind.as_str() {
        "DaemonSet" => resource("apps/v1", "DaemonSet", "daemonsets"),
        _ => resource("apps/v1", "Deployment", "deployments"),
    };
    let service = resource("v1", "Service", "services");
    let mut wanted = vec![
        (workload, format!("{}-primary", target.name)),
        (service.clone(), apex.clone()),
        (service.clone(), format!("{apex}-primary")),
        (service, format!("{apex}-canary")),
    ];
    if let Some(hpa) = &c.spec.autoscaler_ref
        && hpa.kind == "HorizontalPodAutoscaler"
    {
        wanted.push((
            resource(
                "autoscaling/v2",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
            ),
            format!("{}-primary", hpa.name),
        ));
    }
    let provider = c.spec.provider.clone().unwrap_or_default();
    if provider == "istio" {
        let vs = resource(
            "networking.istio.io/v1beta1",
            "VirtualService",
            "virtualservices",
        );
        let dr = resource(
            "networking.istio.io/v1beta1",
            "DestinationRule",
            "destinationrules",
        );
        wanted.push((vs, apex.clone()));
        wanted.push((dr.clone(), format!("{apex}-primary")));
        wanted.push((dr, format!("{apex}-canary")));
    } else if let Some(rest) = provider.strip_prefix("gatewayapi") {
        let version = rest.strip_prefix(':').unwrap_or("v1");
        wanted.push((
            resource(
                &format!("gateway.networking.k8s.io/{version}"),
                "HTTPRoute",
                "httproutes",
            ),
            apex.clone(),
        ));
    }
    let mut out = Vec::new();
    for (ar, name) in wanted {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
        let state = match api.get_opt(&name).await {
            Ok(Some(_)) => "present",
            Ok(None) => "absent",
            Err(_) => "unreadable",
        };
        out.push(
            json!({"kind": ar.kind, "apiVersion": ar.api_version, "name": name, "state": state}),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cross_site_requests_are_refused() {
        assert!(same_origin(&headers(&[("host", "dash:9090")])).is_ok());
        assert!(
            same_origin(&headers(&[
                ("host", "dash:9090"),
                ("origin", "http://dash:9090"),
                ("sec-fetch-site", "same-origin")
            ]))
            .is_ok()
        );
        assert!(
            same_origin(&headers(&[
                ("host", "dash:9090"),
                ("origin", "http://evil")
            ]))
            .is_err()
        );
        assert!(same_origin(&headers(&[("host", "dash"), ("origin", "null")])).is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "cross-site")])).is_err());
    }

    #[test]
    fn anonymous_only_on_loopback() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            a: Args,
        }
        let parse = |argv: &[&str]| T::try_parse_from(argv).expect("parses").a;
        assert!(check(&parse(&["t", "--anonymous"])).is_ok());
        assert!(check(&parse(&["t", "--anonymous", "--listen", "0.0.0.0:9090"])).is_err());
        assert!(check(&parse(&["t", "--listen", "0.0.0.0:9090"])).is_ok());
        assert!(T::try_parse_from(["t", "--auth-proxy-headers"]).is_err());
        assert!(escape("<a href='x'>&") == "&lt;a href=&#39;x&#39;&gt;&amp;");
    }
}
