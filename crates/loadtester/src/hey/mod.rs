//! A built-in replacement for [hey](https://github.com/rakyll/hey): same flags, same report.
//!
//! Each of the `-c` workers owns one connection and sends its requests one after the other. With
//! `-q`, a worker sends at most one request per tick of `1/q` seconds; ticks missed while a slow
//! request was in flight are skipped, never caught up in a burst (open-loop pacing, like hey's
//! `time.Tick`). With `-z` the run stops at the deadline (requests in flight complete); otherwise
//! `-n` requests are spread over the workers.

pub mod client;
pub mod report;

use std::cell::RefCell;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Uri};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::goflags;
pub use client::{Proxy, Target};
pub use report::{Report, Sample, Stats};

/// hey's user agent, appended to any `-U`/`User-Agent` given.
pub const USER_AGENT: &str = "hey/0.0.1";

/// hey's command line.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "hey",
    about = "HTTP load generator (built into flagger-rs, compatible with rakyll/hey)",
    override_usage = "hey [options...] <url>",
    disable_version_flag = true
)]
pub struct HeyArgs {
    /// Number of requests to run.
    #[arg(short = 'n', long = "n", default_value_t = 200)]
    pub requests: u64,
    /// Number of workers to run concurrently. Total number of requests cannot be smaller than
    /// the concurrency level.
    #[arg(short = 'c', long = "c", default_value_t = 50)]
    pub concurrency: u64,
    /// Rate limit, in queries per second (QPS) per worker. Default is no rate limit.
    #[arg(short = 'q', long = "q", default_value_t = 0.0)]
    pub qps: f64,
    /// Duration of application to send requests (e.g. -z 10s, -z 3m); -n is then ignored.
    #[arg(short = 'z', long = "z", value_parser = goflags::parse_duration)]
    pub duration: Option<Duration>,
    /// Output type: "csv" prints the metrics of every request instead of the summary.
    #[arg(short = 'o', long = "o")]
    pub output: Option<String>,
    /// HTTP method: GET, POST, PUT, DELETE, HEAD, OPTIONS.
    #[arg(short = 'm', long = "m", default_value = "GET")]
    pub method: String,
    /// Custom HTTP header; repeatable (-H "Accept: text/html" -H "X-Id: 1").
    #[arg(short = 'H', long = "H")]
    pub headers: Vec<String>,
    /// Timeout for each request in seconds; 0 for no timeout.
    #[arg(short = 't', long = "t", default_value_t = 20)]
    pub timeout: u64,
    /// HTTP Accept header.
    #[arg(short = 'A', long = "A")]
    pub accept: Option<String>,
    /// HTTP request body.
    #[arg(short = 'd', long = "d")]
    pub body: Option<String>,
    /// HTTP request body from file (e.g. /home/user/file.txt or ./file.txt).
    #[arg(short = 'D', long = "D")]
    pub body_file: Option<PathBuf>,
    /// Content-type.
    #[arg(short = 'T', long = "T", default_value = "text/html")]
    pub content_type: String,
    /// User-Agent (hey's own is appended).
    #[arg(short = 'U', long = "U")]
    pub user_agent: Option<String>,
    /// Basic authentication, username:password.
    #[arg(short = 'a', long = "a")]
    pub basic_auth: Option<String>,
    /// HTTP proxy address as host:port (or http://[user:pass@]host:port).
    #[arg(short = 'x', long = "x")]
    pub proxy: Option<String>,
    /// Enable HTTP/2 (not supported: requests use HTTP/1.1).
    #[arg(long = "h2")]
    pub h2: bool,
    /// HTTP Host header.
    #[arg(long = "host")]
    pub host: Option<String>,
    /// Disable compression (no effect: compression is never requested).
    #[arg(long = "disable-compression")]
    pub disable_compression: bool,
    /// Disable keep-alive, prevents re-use of TCP connections between requests.
    #[arg(long = "disable-keepalive")]
    pub disable_keepalive: bool,
    /// Disable following of HTTP redirects.
    #[arg(long = "disable-redirects")]
    pub disable_redirects: bool,
    /// Number of load threads (default: one per 64 workers, at most the number of CPUs).
    #[arg(long = "cpus")]
    pub cpus: Option<usize>,
    /// Target URL.
    pub url: String,
}

fn is_bool_flag(name: &str) -> bool {
    matches!(
        name,
        "h2" | "disable-compression" | "disable-keepalive" | "disable-redirects"
    )
}

/// A validated run.
#[derive(Debug)]
pub struct LoadConfig {
    pub target: Target,
    /// Total requests (ignored with `duration`).
    pub requests: u64,
    pub concurrency: u64,
    pub qps: f64,
    pub duration: Option<Duration>,
    pub timeout: Option<Duration>,
    pub keep_samples: bool,
}

fn usage_error(msg: impl Into<String>) -> String {
    msg.into()
}

impl HeyArgs {
    /// Parses Go-style arguments (without the program name).
    pub fn parse_go(args: impl IntoIterator<Item = OsString>) -> Result<Self, clap::Error> {
        let args = goflags::normalize(args, is_bool_flag);
        Self::try_parse_from(std::iter::once(OsString::from("hey")).chain(args))
    }

    /// Validates the flags and builds the run, reading the proxy from the environment as Go does.
    pub fn into_config(self) -> Result<LoadConfig, String> {
        self.into_config_with_env(|k| std::env::var(k).ok())
    }

    pub fn into_config_with_env(
        self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<LoadConfig, String> {
        if self.duration.is_some() {
            if self.concurrency == 0 {
                return Err(usage_error("-c cannot be smaller than 1."));
            }
        } else {
            if self.requests == 0 || self.concurrency == 0 {
                return Err(usage_error("-n and -c cannot be smaller than 1."));
            }
            if self.requests < self.concurrency {
                return Err(usage_error("-n cannot be less than -c."));
            }
        }
        if self.qps < 0.0 || !self.qps.is_finite() {
            return Err(usage_error("-q must be a positive number."));
        }
        if let Some(o) = &self.output
            && o != "csv"
        {
            return Err(usage_error(format!("Invalid output type: {o}.")));
        }
        let method = Method::from_bytes(self.method.to_uppercase().as_bytes())
            .map_err(|_| format!("invalid method {:?}", self.method))?;
        let Endpoint { https, host, .. } = endpoint(&self.url)?;

        let mut headers = HeaderMap::new();
        let mut user_agent = None;
        for h in &self.headers {
            let (name, value) = h
                .split_once(':')
                .filter(|(n, v)| {
                    !n.is_empty()
                        && n.chars()
                            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
                        && !v.trim().is_empty()
                })
                .ok_or_else(|| format!("could not parse the provided input; input = {h}"))?;
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            let value = HeaderValue::from_str(value.trim()).map_err(|e| e.to_string())?;
            if name == header::USER_AGENT {
                user_agent = Some(value.to_str().unwrap_or_default().to_string());
            } else {
                headers.append(name, value);
            }
        }
        let hv = |v: &str| {
            HeaderValue::from_str(v).map_err(|e| format!("invalid header value {v:?}: {e}"))
        };
        headers.insert(header::CONTENT_TYPE, hv(&self.content_type)?);
        if let Some(a) = &self.accept {
            headers.insert(header::ACCEPT, hv(a)?);
        }
        let ua = match self.user_agent.or(user_agent) {
            Some(u) if !u.is_empty() => format!("{u} {USER_AGENT}"),
            _ => USER_AGENT.to_string(),
        };
        headers.insert(header::USER_AGENT, hv(&ua)?);
        if let Some(auth) = &self.basic_auth {
            let (u, p) = auth
                .split_once(':')
                .ok_or_else(|| format!("could not parse the provided input; input = {auth}"))?;
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            headers.insert(header::AUTHORIZATION, hv(&format!("Basic {token}"))?);
        }
        if self.disable_keepalive {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }

        let body = match (&self.body_file, &self.body) {
            (Some(path), _) => Bytes::from(
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            ),
            (None, Some(b)) => Bytes::from(b.clone()),
            (None, None) => Bytes::new(),
        };

        let proxy = match &self.proxy {
            Some(p) => Some(parse_proxy(p)?),
            None => proxy_from_env(&env, https, &host)?,
        };
        let tls = if https {
            Some(client::insecure_tls()?)
        } else {
            None
        };
        let target = Target::build(TargetSpec {
            url: self.url.clone(),
            method,
            headers,
            host_override: self.host.clone(),
            body,
            proxy,
            keepalive: !self.disable_keepalive,
            follow_redirects: !self.disable_redirects,
            tls,
        })?;
        Ok(LoadConfig {
            target,
            requests: self.requests,
            concurrency: self.concurrency,
            qps: self.qps,
            duration: self.duration,
            timeout: (self.timeout > 0).then(|| Duration::from_secs(self.timeout)),
            keep_samples: self.output.is_some(),
        })
    }
}

/// What a [`Target`] is made of.
pub struct TargetSpec {
    pub url: String,
    pub method: Method,
    /// Headers without Host and Proxy-Authorization, which [`Target::build`] adds.
    pub headers: HeaderMap,
    /// The Host header instead of the URL's authority (`-host`).
    pub host_override: Option<String>,
    pub body: Bytes,
    pub proxy: Option<Proxy>,
    pub keepalive: bool,
    pub follow_redirects: bool,
    /// The TLS configuration for https (made when absent).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// The parts of an http(s) URL that a request needs.
struct Endpoint {
    https: bool,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

fn endpoint(url: &str) -> Result<Endpoint, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(format!(
                "unsupported URL {url:?}: the scheme must be http or https"
            ));
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("invalid URL {url:?}: no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    Ok(Endpoint {
        https,
        host,
        port,
        authority,
        path,
    })
}

impl Target {
    /// Builds a target and serialises its request once.
    pub fn build(spec: TargetSpec) -> Result<Target, String> {
        let TargetSpec {
            url,
            method,
            mut headers,
            host_override,
            body,
            proxy,
            keepalive,
            follow_redirects,
            tls,
        } = spec;
        let Endpoint {
            https,
            host,
            port,
            authority,
            path,
        } = endpoint(&url)?;
        let hv = |v: &str| {
            HeaderValue::from_str(v).map_err(|e| format!("invalid header value {v:?}: {e}"))
        };
        let base_headers = headers.clone();
        headers.insert(
            header::HOST,
            hv(host_override.as_deref().unwrap_or(&authority))?,
        );
        if let Some(p) = &proxy
            && let Some(auth) = &p.auth
            && !https
        {
            headers.insert(header::PROXY_AUTHORIZATION, hv(auth)?);
        }
        let request_target = if proxy.is_some() && !https {
            format!("http://{authority}{path}")
        } else {
            path
        };
        let tls = match (https, tls) {
            (false, _) => None,
            (true, Some(t)) => Some(t),
            (true, None) => Some(client::insecure_tls()?),
        };
        let request = serialize_request(&method, &request_target, &headers, &body);
        Ok(Target {
            url,
            https,
            host,
            port,
            authority,
            method: method.as_str().to_string(),
            replayable: matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS" | "TRACE"),
            request,
            keepalive,
            proxy,
            tls,
            headers: base_headers,
            host_override,
            body,
            follow_redirects,
        })
    }

    /// The request Go's `http.Client` sends after a `status` response with `Location:
    /// location` to this target's request, or `None` when Go returns that response as it is.
    /// `first` is the original target: the headers are always its headers, and Authorization,
    /// WWW-Authenticate and Cookie stop being sent (for good: `strip_sensitive`) once a
    /// redirect leaves its host and the host's subdomains.
    pub(crate) fn redirect(
        &self,
        first: &Target,
        status: u16,
        location: &str,
        strip_sensitive: &mut bool,
    ) -> Result<Option<Target>, String> {
        let method = Method::from_bytes(self.method.as_bytes()).map_err(|e| e.to_string())?;
        let (method, body) = match status {
            // Anything but GET and HEAD becomes a GET without a body.
            301..=303 if method == Method::GET || method == Method::HEAD => (method, Bytes::new()),
            301..=303 => (Method::GET, Bytes::new()),
            // Same method and body; Go cannot send hey's body again, so it stops there.
            307 | 308 if !self.body.is_empty() => return Ok(None),
            307 | 308 => (method, self.body.clone()),
            _ => return Ok(None),
        };
        let base = url::Url::parse(&self.url).map_err(|e| e.to_string())?;
        let next = base
            .join(location)
            .map_err(|e| format!("failed to parse Location header {location:?}: {e}"))?;
        if !matches!(next.scheme(), "http" | "https") {
            return Err(format!("unsupported protocol scheme {:?}", next.scheme()));
        }
        let next_host = next
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let first_host = first.host.to_ascii_lowercase();
        if next_host != first_host && !next_host.ends_with(&format!(".{first_host}")) {
            *strip_sensitive = true;
        }
        let mut headers = first.headers.clone();
        if *strip_sensitive {
            headers.remove(header::AUTHORIZATION);
            headers.remove(header::WWW_AUTHENTICATE);
            headers.remove(header::COOKIE);
            headers.remove("cookie2");
        }
        // Referer: the previous URL without credentials, unless going from https to http.
        if !(self.https && next.scheme() == "http") {
            let mut referer = base.clone();
            let _ = referer.set_username("");
            let _ = referer.set_password(None);
            referer.set_fragment(None);
            if let Ok(v) = HeaderValue::from_str(referer.as_str()) {
                headers.insert(header::REFERER, v);
            }
        }
        // A custom Host header survives relative redirects only.
        let relative = url::Url::parse(location).is_err();
        let host_override = first.host_override.clone().filter(|_| relative);
        Target::build(TargetSpec {
            url: next.to_string(),
            method,
            headers,
            host_override,
            body,
            proxy: self.proxy.clone(),
            keepalive: self.keepalive,
            follow_redirects: true,
            tls: self.tls.clone().or_else(|| first.tls.clone()),
        })
        .map(Some)
    }
}

/// The request as sent on the wire: request line, Host first, the other headers, and the body
/// with its Content-Length.
fn serialize_request(method: &Method, target: &str, headers: &HeaderMap, body: &Bytes) -> Bytes {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(format!("{method} {target} HTTP/1.1\r\n").as_bytes());
    let mut put = |name: &str, value: &[u8]| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    if let Some(host) = headers.get(header::HOST) {
        put("Host", host.as_bytes());
    }
    for (name, value) in headers {
        if name != header::HOST {
            put(name.as_str(), value.as_bytes());
        }
    }
    if !body.is_empty() || matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
        put("Content-Length", body.len().to_string().as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// Parses `host:port`, `http://host:port` or `http://user:pass@host:port`.
pub fn parse_proxy(s: &str) -> Result<Proxy, String> {
    let with_scheme = if s.contains("://") {
        s.to_string()
    } else {
        format!("http://{s}")
    };
    let (scheme, rest) = with_scheme.split_once("://").unwrap_or(("http", s));
    if scheme != "http" {
        return Err(format!(
            "unsupported proxy scheme {scheme:?} (only http proxies are supported)"
        ));
    }
    let rest = rest.split('/').next().unwrap_or_default();
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("invalid proxy address {s:?}"))?,
        ),
        _ => (hostport, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("invalid proxy address {s:?}"));
    }
    let auth = userinfo.map(|u| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(u)
        )
    });
    Ok(Proxy {
        host: host.to_string(),
        port,
        auth,
    })
}

/// Go's `http.ProxyFromEnvironment`: `HTTP_PROXY`/`HTTPS_PROXY` (either case, upper case
/// first), except for hosts in `NO_PROXY` and for localhost and loopback addresses.
fn proxy_from_env(
    env: &impl Fn(&str) -> Option<String>,
    https: bool,
    host: &str,
) -> Result<Option<Proxy>, String> {
    let get = |upper: &str| {
        env(upper)
            .filter(|v| !v.is_empty())
            .or_else(|| env(&upper.to_lowercase()).filter(|v| !v.is_empty()))
    };
    let value = if https {
        get("HTTPS_PROXY")
    } else {
        get("HTTP_PROXY")
    };
    let Some(value) = value else { return Ok(None) };
    let loopback = host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return Ok(None);
    }
    if let Some(no_proxy) = get("NO_PROXY") {
        for entry in no_proxy.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let entry_host = entry.split(':').next().unwrap_or(entry);
            if entry == "*" {
                return Ok(None);
            }
            let suffix = entry_host.trim_start_matches('*').trim_start_matches('.');
            if host == suffix || host.ends_with(&format!(".{suffix}")) {
                return Ok(None);
            }
        }
    }
    parse_proxy(&value).map(Some)
}

/// Runs the load on the current runtime; stops early when `stop` becomes true (e.g. Ctrl-C).
pub async fn run(cfg: Arc<LoadConfig>, stop: watch::Receiver<bool>) -> Report {
    let run_start = Instant::now();
    let ids: Vec<u64> = (0..cfg.concurrency).collect();
    let stats = run_workers(cfg, ids, run_start, stop).await;
    Report {
        stats,
        elapsed: run_start.elapsed(),
    }
}

/// Runs the load on `threads` threads, each with its own single-threaded runtime driving its
/// share of the workers (no work stealing, no cross-thread wake-ups on the hot path).
pub fn run_threaded(
    cfg: Arc<LoadConfig>,
    threads: usize,
    stop: watch::Receiver<bool>,
) -> std::io::Result<Report> {
    let threads = threads.clamp(
        1,
        usize::try_from(cfg.concurrency)
            .unwrap_or(usize::MAX)
            .max(1),
    );
    let run_start = Instant::now();
    let results: Vec<std::io::Result<Stats>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let ids: Vec<u64> = (t as u64..cfg.concurrency).step_by(threads).collect();
                let (cfg, stop) = (cfg.clone(), stop.clone());
                scope.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    Ok(rt.block_on(run_workers(cfg, ids, run_start, stop)))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a load thread panicked")))
            })
            .collect()
    });
    let mut stats = Stats::new(cfg.keep_samples);
    for r in results {
        stats.merge(r?);
    }
    Ok(Report {
        stats,
        elapsed: run_start.elapsed(),
    })
}

/// Runs `ids`' workers as local tasks of the current thread, all recording into one `Stats`:
/// one histogram per thread stays in cache, where one per worker did not (it showed in
/// profiles), and local tasks need no cross-thread synchronisation.
async fn run_workers(
    cfg: Arc<LoadConfig>,
    ids: Vec<u64>,
    run_start: Instant,
    stop: watch::Receiver<bool>,
) -> Stats {
    let deadline = cfg
        .duration
        .map(|d| tokio::time::Instant::from_std(run_start + d));
    let stats = Rc::new(RefCell::new(Stats::new(cfg.keep_samples)));
    let local = tokio::task::LocalSet::new();
    for i in ids {
        let budget = if cfg.duration.is_some() {
            u64::MAX
        } else {
            cfg.requests / cfg.concurrency + u64::from(i < cfg.requests % cfg.concurrency)
        };
        local.spawn_local(worker(
            cfg.clone(),
            budget,
            run_start,
            deadline,
            stop.clone(),
            stats.clone(),
        ));
    }
    local.await;
    // Every worker has ended, so this is the only reference left.
    match Rc::try_unwrap(stats) {
        Ok(cell) => cell.into_inner(),
        Err(shared) => shared.replace(Stats::new(cfg.keep_samples)),
    }
}

fn stopped(stop: &watch::Receiver<bool>, deadline: Option<tokio::time::Instant>) -> bool {
    *stop.borrow() || deadline.is_some_and(|d| tokio::time::Instant::now() >= d)
}

async fn worker(
    cfg: Arc<LoadConfig>,
    budget: u64,
    run_start: Instant,
    deadline: Option<tokio::time::Instant>,
    mut stop: watch::Receiver<bool>,
    stats: Rc<RefCell<Stats>>,
) {
    let mut ticker = (cfg.qps > 0.0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / cfg.qps));
        t.set_missed_tick_behavior(MissedTickBehavior::Skip);
        t
    });
    let far = tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
    let mut timer = cfg.timeout.map(|t| Box::pin(tokio::time::sleep(t)));
    let mut conn = None;
    let mut done = 0u64;
    while done < budget && !stopped(&stop, deadline) {
        if let Some(t) = ticker.as_mut() {
            tokio::select! {
                _ = t.tick() => {}
                _ = stop.changed() => {}
                _ = tokio::time::sleep_until(deadline.unwrap_or(far)) => {}
            }
            if stopped(&stop, deadline) {
                break;
            }
        }
        let result = match (cfg.timeout, timer.as_mut()) {
            (Some(limit), Some(timer)) => {
                // One timer per worker, re-armed only when it fires early (for a request that
                // started later) or has expired: no timer registration per request.
                let now = tokio::time::Instant::now();
                let request_deadline = now + limit;
                if timer.deadline() <= now {
                    timer.as_mut().reset(request_deadline);
                }
                let outcome = {
                    let send = cfg.target.send(&mut conn, run_start);
                    tokio::pin!(send);
                    loop {
                        tokio::select! {
                            biased;
                            r = &mut send => break Some(r),
                            () = timer.as_mut() => {
                                if tokio::time::Instant::now() >= request_deadline {
                                    break None;
                                }
                                timer.as_mut().reset(request_deadline);
                            }
                        }
                    }
                };
                outcome.unwrap_or_else(|| {
                    conn = None;
                    Err(format!(
                        "{}: context deadline exceeded (Client.Timeout exceeded while awaiting \
                         headers)",
                        cfg.target.op()
                    ))
                })
            }
            _ => cfg.target.send(&mut conn, run_start).await,
        };
        match result {
            Ok(sample) => stats.borrow_mut().record(sample),
            Err(e) => stats.borrow_mut().record_error(e),
        }
        done += 1;
    }
}

/// Load threads when `-cpus` is not given: one per 64 connections, at most one per CPU. One
/// thread drives on the order of 100k small requests per second; more threads only compete
/// with the server for CPUs when it runs on the same machine.
pub fn default_threads(concurrency: u64) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = usize::try_from(concurrency.div_ceil(64)).unwrap_or(usize::MAX);
    wanted.clamp(1, cpus)
}

/// `hey` entry point: `args` excludes the program name.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let parsed = match HeyArgs::parse_go(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if parsed.h2 {
        eprintln!("hey: -h2 is not supported by the built-in hey; using HTTP/1.1");
    }
    let cpus = parsed
        .cpus
        .unwrap_or_else(|| default_threads(parsed.concurrency))
        .max(1);
    let csv = parsed.output.is_some();
    let cfg = match parsed.into_config() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("{e}\n\nUsage: hey [options...] <url>  (hey -h for the options)");
            return ExitCode::from(1);
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    // Ctrl-C stops the run and still prints the report, as hey does.
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    let _ = stop_tx.send(true);
                }
            });
        }
    });
    let report = match run_threaded(cfg, cpus, stop_rx) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hey: {e}");
            return ExitCode::from(1);
        }
    };
    if csv {
        print!("{}", report.csv());
    } else {
        print!("{}", report.summary());
    }
    ExitCode::SUCCESS
}
