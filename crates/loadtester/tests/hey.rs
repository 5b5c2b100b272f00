//! The built-in hey against local test servers that count what they see.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::{any, get};
use flagger_loadtester::hey::{self, HeyArgs, Report};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the test server saw.
#[derive(Default)]
struct Seen {
    count: AtomicU64,
    arrivals: Mutex<Vec<Instant>>,
    statuses: Mutex<BTreeMap<u16, u64>>,
    last: Mutex<Option<(String, String, HeaderMap, String)>>,
}

async fn serve_counting() -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    async fn hit(State(seen): State<Arc<Seen>>) -> &'static str {
        seen.count.fetch_add(1, Ordering::SeqCst);
        seen.arrivals.lock().unwrap().push(Instant::now());
        *seen.statuses.lock().unwrap().entry(200).or_default() += 1;
        "hello"
    }
    async fn mixed(State(seen): State<Arc<Seen>>) -> StatusCode {
        // Every third request fails with 503, every fifth (otherwise) is a 404.
        let n = seen.count.fetch_add(1, Ordering::SeqCst) + 1;
        let code = if n % 3 == 0 {
            503
        } else if n % 5 == 0 {
            404
        } else {
            200
        };
        *seen.statuses.lock().unwrap().entry(code).or_default() += 1;
        StatusCode::from_u16(code).unwrap()
    }
    async fn slow_first(State(seen): State<Arc<Seen>>) -> &'static str {
        let n = seen.count.fetch_add(1, Ordering::SeqCst);
        seen.arrivals.lock().unwrap().push(Instant::now());
        if n == 0 {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        "ok"
    }
    async fn status(Path(code): Path<u16>) -> StatusCode {
        StatusCode::from_u16(code).unwrap()
    }
    async fn echo(
        State(seen): State<Arc<Seen>>,
        method: axum::http::Method,
        uri: Uri,
        headers: HeaderMap,
        body: String,
    ) -> &'static str {
        seen.count.fetch_add(1, Ordering::SeqCst);
        *seen.last.lock().unwrap() = Some((method.to_string(), uri.to_string(), headers, body));
        "echo"
    }
    let app = axum::Router::new()
        .route("/", get(hit))
        .route("/mixed", get(mixed))
        .route("/slow-first", get(slow_first))
        .route("/status/{code}", get(status))
        .route("/echo", any(echo))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

fn args(list: &[&str]) -> HeyArgs {
    HeyArgs::parse_go(list.iter().map(OsString::from)).unwrap()
}

async fn run(list: &[&str]) -> Report {
    let cfg = Arc::new(args(list).into_config_with_env(|_| None).unwrap());
    let (_tx, rx) = tokio::sync::watch::channel(false);
    hey::run(cfg, rx).await
}

#[tokio::test]
async fn request_count_matches_the_server() {
    let (addr, seen) = serve_counting().await;
    let url = format!("http://{addr}/");
    let report = run(&["-n", "200", "-c", "10", &url]).await;
    assert_eq!(seen.count.load(Ordering::SeqCst), 200);
    assert_eq!(report.stats.answered, 200);
    assert_eq!(report.stats.status.get(&200), Some(&200));
    assert_eq!(report.stats.error_count(), 0);
    assert_eq!(report.stats.bytes, 200 * 5);
    assert_eq!(report.stats.latency_us.len(), 200);

    // -n not a multiple of -c: exactly -n requests.
    seen.count.store(0, Ordering::SeqCst);
    let report = run(&["-n=10", "-c=3", &url]).await;
    assert_eq!(seen.count.load(Ordering::SeqCst), 10);
    assert_eq!(report.stats.answered, 10);

    // Without keep-alive every request opens a connection.
    seen.count.store(0, Ordering::SeqCst);
    let report = run(&["-n", "20", "-c", "2", "-disable-keepalive", &url]).await;
    assert_eq!(seen.count.load(Ordering::SeqCst), 20);
    assert_eq!(report.stats.answered, 20);
    assert!(report.stats.conn.min_ns > 0, "every request dialled");
}

#[tokio::test]
async fn qps_limits_the_rate_per_worker() {
    let (addr, seen) = serve_counting().await;
    let url = format!("http://{addr}/");
    let started = Instant::now();
    let report = run(&["-z", "2s", "-q", "10", "-c", "2", &url]).await;
    let elapsed = started.elapsed();
    let n = seen.count.load(Ordering::SeqCst);
    // 2 workers x 10/s x 2 s = 40 (one tick of slack each way per worker).
    assert!((36..=44).contains(&n), "{n} requests in {elapsed:?}");
    assert_eq!(report.stats.answered, n);
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn paced_requests_are_not_bunched_after_a_slow_one() {
    let (addr, seen) = serve_counting().await;
    let url = format!("http://{addr}/slow-first");
    // One worker at 20/s for 1.5 s; the first request takes 400 ms.
    run(&["-z", "1500ms", "-q", "20", "-c", "1", &url]).await;
    let arrivals = seen.arrivals.lock().unwrap().clone();
    let n = arrivals.len();
    // 30 ticks, of which the ~7 missed during the slow request are skipped, not caught up.
    assert!((19..=26).contains(&n), "{n} requests");
    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    // Right after the slow request one missed tick fires at once; every other gap is about one
    // period (50 ms): no burst.
    let short = gaps
        .iter()
        .filter(|g| **g < Duration::from_millis(30))
        .count();
    assert!(short <= 1, "gaps: {gaps:?}");
}

#[tokio::test]
async fn duration_bounds_the_run() {
    let (addr, seen) = serve_counting().await;
    let url = format!("http://{addr}/");
    let started = Instant::now();
    let report = run(&["-z", "1s", "-c", "4", &url]).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_millis(1500),
        "{elapsed:?}"
    );
    assert_eq!(report.stats.answered, seen.count.load(Ordering::SeqCst));
    assert!(report.stats.answered > 100);
    assert!(report.requests_per_sec() > 100.0);
}

#[tokio::test]
async fn status_codes_match_what_the_server_sent() {
    let (addr, seen) = serve_counting().await;
    let report = run(&["-n", "150", "-c", "5", &format!("http://{addr}/mixed")]).await;
    let server = seen.statuses.lock().unwrap().clone();
    assert_eq!(report.stats.status, server);
    assert_eq!(server.get(&503), Some(&50));
    assert!(report.summary().contains("  [503]\t50 responses"));
    let report = run(&["-n", "7", "-c", "7", &format!("http://{addr}/status/418")]).await;
    assert_eq!(report.stats.status.get(&418), Some(&7));
}

/// How the raw test server treats requests.
#[derive(Clone, Copy)]
enum Flaky {
    /// Connections are numbered in accept order: odd ones get `200` with `Connection: close`,
    /// even ones are dropped without an answer.
    DropEvenConnections,
    /// The first request on each connection gets a kept-alive `200`; the second is dropped.
    DropSecondRequestOnConnection,
}

/// What the raw server saw: requests and connections.
#[derive(Default)]
struct RawSeen {
    requests: AtomicU64,
    connections: AtomicU64,
}

/// A raw HTTP/1.1 server that misbehaves as `mode` says.
async fn serve_flaky(mode: Flaky) -> (SocketAddr, Arc<RawSeen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(RawSeen::default());
    let counter = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let conn_no = counter.connections.fetch_add(1, Ordering::SeqCst) + 1;
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut on_this_conn = 0u64;
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        counter.requests.fetch_add(1, Ordering::SeqCst);
                        on_this_conn += 1;
                        let resp: &[u8] = match mode {
                            Flaky::DropEvenConnections if conn_no.is_multiple_of(2) => return,
                            Flaky::DropEvenConnections => {
                                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                            }
                            Flaky::DropSecondRequestOnConnection if on_this_conn >= 2 => return,
                            Flaky::DropSecondRequestOnConnection => {
                                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                            }
                        };
                        if sock.write_all(resp).await.is_err() {
                            return;
                        }
                        if matches!(mode, Flaky::DropEvenConnections) {
                            return;
                        }
                    }
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// A request whose connection is dropped before any answer is an error (`Get "...": EOF`), as
/// in hey; each one shows up once in the error distribution and once at the server.
#[tokio::test]
async fn errors_are_counted() {
    let (addr, seen) = serve_flaky(Flaky::DropEvenConnections).await;
    let url = format!("http://{addr}/");
    let report = run(&["-n", "40", "-c", "4", &url]).await;
    // Every request had a connection of its own (the server closes after each answer), so
    // there is nothing to retry: the server saw each request exactly once.
    assert_eq!(seen.requests.load(Ordering::SeqCst), 40);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 40);
    assert_eq!(report.stats.answered, 20);
    assert_eq!(report.stats.status.get(&200), Some(&20));
    assert_eq!(report.stats.error_count(), 20);
    assert_eq!(
        report.stats.errors.get(&format!("Get \"{url}\": EOF")),
        Some(&20),
        "{:?}",
        report.stats.errors
    );
    let summary = report.summary();
    assert!(
        summary.contains(&format!("Error distribution:\n  [20]\tGet \"{url}\": EOF")),
        "{summary}"
    );

    // Nothing listening: every request is a connection error.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{closed}/");
    let report = run(&["-n", "5", "-c", "1", &url]).await;
    assert_eq!(report.stats.answered, 0);
    assert_eq!(report.stats.error_count(), 5);
    let (msg, count) = report.stats.errors.iter().next().unwrap();
    assert_eq!(*count, 5);
    assert!(
        msg.starts_with(&format!(
            "Get \"{url}\": dial tcp {closed}: connect: connection refused"
        )),
        "{msg}"
    );
}

/// Like Go's transport (and so hey), a GET that fails before any answer on a reused keep-alive
/// connection is sent once more on a new connection and is not an error; the server sees both.
#[tokio::test]
async fn a_request_dropped_on_a_reused_connection_is_retried_once() {
    let (addr, seen) = serve_flaky(Flaky::DropSecondRequestOnConnection).await;
    let url = format!("http://{addr}/");
    let report = run(&["-n", "20", "-c", "1", &url]).await;
    assert_eq!(report.stats.answered, 20);
    assert_eq!(report.stats.error_count(), 0, "{:?}", report.stats.errors);
    // The first request on its own connection, then each of the 19 others twice: dropped on the
    // reused connection and answered on a new one (Debian's hey: the same 39).
    assert_eq!(seen.requests.load(Ordering::SeqCst), 39);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 20);

    // A POST is not replayable: the dropped ones are errors, nothing is sent twice.
    let (addr, seen) = serve_flaky(Flaky::DropSecondRequestOnConnection).await;
    let url = format!("http://{addr}/");
    let report = run(&["-n", "20", "-c", "1", "-m", "POST", "-d", "x", &url]).await;
    assert_eq!(seen.requests.load(Ordering::SeqCst), 20);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 10);
    assert_eq!(report.stats.answered, 10);
    assert_eq!(
        report.stats.errors.get(&format!("Post \"{url}\": EOF")),
        Some(&10),
        "{:?}",
        report.stats.errors
    );
}

#[tokio::test]
async fn method_headers_body_and_auth_are_sent() {
    let (addr, seen) = serve_counting().await;
    let url = format!("http://{addr}/echo?x=1");
    let report = run(&[
        "-n",
        "3",
        "-c",
        "1",
        "-m",
        "POST",
        "-d",
        "{\"a\":1}",
        "-T",
        "application/json",
        "-H",
        "X-Custom: one",
        "-H",
        "X-Other: two",
        "-a",
        "user:pass",
        "-A",
        "text/plain",
        &url,
    ])
    .await;
    assert_eq!(report.stats.answered, 3);
    let (method, uri, headers, body) = seen.last.lock().unwrap().clone().unwrap();
    assert_eq!(method, "POST");
    assert_eq!(uri, "/echo?x=1");
    assert_eq!(body, "{\"a\":1}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-custom"], "one");
    assert_eq!(headers["x-other"], "two");
    assert_eq!(headers["accept"], "text/plain");
    assert_eq!(headers["authorization"], "Basic dXNlcjpwYXNz");
    assert_eq!(headers["user-agent"], "hey/0.0.1");
    assert_eq!(headers["host"], addr.to_string());
}

#[tokio::test]
async fn proxies_from_the_flag_and_the_environment() {
    let (proxy, seen) = serve_counting().await;
    // The target host is never resolved: the request goes to the proxy in absolute form.
    let report = run(&[
        "-n",
        "4",
        "-c",
        "2",
        "-x",
        &proxy.to_string(),
        "http://upstream.invalid/echo?p=1",
    ])
    .await;
    assert_eq!(report.stats.answered, 4, "{:?}", report.stats.errors);
    assert_eq!(seen.count.load(Ordering::SeqCst), 4);
    let (_, uri, headers, _) = seen.last.lock().unwrap().clone().unwrap();
    assert_eq!(uri, "http://upstream.invalid/echo?p=1");
    assert_eq!(headers["host"], "upstream.invalid");

    let env_proxy = format!("http://{proxy}");
    let env = |k: &str| (k == "HTTP_PROXY").then(|| env_proxy.clone());
    let cfg = args(&["-n", "2", "-c", "1", "http://upstream.invalid/echo"])
        .into_config_with_env(env)
        .unwrap();
    assert!(cfg.target.proxy.is_some());
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let report = hey::run(Arc::new(cfg), rx).await;
    assert_eq!(report.stats.answered, 2);
    assert_eq!(seen.count.load(Ordering::SeqCst), 6);

    // As in Go, loopback targets and NO_PROXY hosts are not proxied.
    let env = |k: &str| (k == "HTTP_PROXY").then(|| env_proxy.clone());
    let cfg = args(&["http://127.0.0.1:1/"])
        .into_config_with_env(env)
        .unwrap();
    assert!(cfg.target.proxy.is_none());
    let env = |k: &str| match k {
        "http_proxy" => Some(env_proxy.clone()),
        "no_proxy" => Some("example.com,.internal".into()),
        _ => None,
    };
    let cfg = args(&["http://svc.internal/"])
        .into_config_with_env(env)
        .unwrap();
    assert!(cfg.target.proxy.is_none());
    let cfg = args(&["http://other.example.org/"])
        .into_config_with_env(env)
        .unwrap();
    assert!(cfg.target.proxy.is_some());
}

#[test]
fn flag_validation_matches_hey() {
    let err = |list: &[&str]| args(list).into_config_with_env(|_| None).unwrap_err();
    assert_eq!(
        err(&["-n", "1", "-c", "2", "http://127.0.0.1/"]),
        "-n cannot be less than -c."
    );
    assert_eq!(
        err(&["-n", "0", "http://127.0.0.1/"]),
        "-n and -c cannot be smaller than 1."
    );
    assert!(err(&["-o", "json", "http://127.0.0.1/"]).contains("Invalid output type"));
    assert!(
        err(&["-H", "nocolon", "http://127.0.0.1/"]).contains("could not parse the provided input")
    );
    // -z ignores -n.
    assert!(
        args(&["-z", "1s", "-n", "1", "-c", "5", "http://127.0.0.1/"])
            .into_config_with_env(|_| None)
            .is_ok()
    );
    assert!(HeyArgs::parse_go(["-z", "5"].iter().map(OsString::from)).is_err());
    assert!(HeyArgs::parse_go(std::iter::empty()).is_err());
}

/// The test binary acts as hey when started through a `hey` symlink, and as `... hey`.
#[tokio::test]
async fn the_binary_runs_as_hey() {
    let (addr, seen) = serve_counting().await;
    let dir = common::temp_dir("hey-bin");
    let link = dir.join("hey");
    std::os::unix::fs::symlink(common::BIN, &link).unwrap();
    let url = format!("http://{addr}/");
    let out = tokio::process::Command::new(&link)
        .args(["-n", "30", "-c", "3", "-q", "1000", &url])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "Summary:",
        "Requests/sec:",
        "Response time histogram:",
        "Latency distribution:",
        "Details (average, fastest, slowest):",
        "  [200]\t30 responses",
    ] {
        assert!(text.contains(needle), "missing {needle:?}:\n{text}");
    }
    let out = tokio::process::Command::new(common::BIN)
        .args(["hey", "-n", "5", "-c", "1", "-o", "csv", &url])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let csv = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset"
    );
    assert_eq!(lines.len(), 6);
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.split(',').nth(6) == Some("200"))
    );
    assert_eq!(seen.count.load(Ordering::SeqCst), 35);
    let bad = tokio::process::Command::new(&link)
        .args(["-n", "1", "-c", "2", &url])
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    std::fs::remove_dir_all(dir).unwrap();
}

/// One request as a redirecting server saw it.
#[derive(Clone, Debug)]
struct Hit {
    method: String,
    path: String,
    authorization: Option<String>,
    referer: Option<String>,
    content_type: Option<String>,
    host: Option<String>,
    body_len: usize,
}

/// A server that redirects: `/r/{code}` → `/final`, `/loop` → `/loop`, `/abs` → the absolute
/// URL `http://localhost:PORT/final`, `/noloc` is a 302 without a Location.
async fn serve_redirects() -> (SocketAddr, Arc<Mutex<Vec<Hit>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(Mutex::new(Vec::new()));
    let log = hits.clone();
    let app = axum::Router::new().fallback(any(
        move |method: axum::http::Method, uri: Uri, headers: HeaderMap, body: String| {
            let log = log.clone();
            async move {
                let h = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
                let path = uri.path().to_string();
                log.lock().unwrap().push(Hit {
                    method: method.to_string(),
                    path: path.clone(),
                    authorization: h("authorization"),
                    referer: h("referer"),
                    content_type: h("content-type"),
                    host: h("host"),
                    body_len: body.len(),
                });
                let redirect = |code: u16, to: String| {
                    axum::response::Response::builder()
                        .status(code)
                        .header("location", to)
                        .body(axum::body::Body::from("moved"))
                        .unwrap()
                };
                match path.as_str() {
                    "/final" => axum::response::Response::new(axum::body::Body::from("ok")),
                    "/loop" => redirect(302, "/loop".into()),
                    "/abs" => redirect(302, format!("http://localhost:{}/final", addr.port())),
                    "/noloc" => axum::response::Response::builder()
                        .status(302)
                        .body(axum::body::Body::empty())
                        .unwrap(),
                    p => redirect(p[3..].parse().unwrap(), "/final".into()),
                }
            }
        },
    ));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

fn take(hits: &Mutex<Vec<Hit>>) -> Vec<Hit> {
    std::mem::take(&mut *hits.lock().unwrap())
}

/// Redirects are followed with the rules of Go's `http.Client`, which hey uses; every expected
/// value here is what Debian's hey did against the same kind of server.
#[tokio::test]
async fn redirects_are_followed_like_go() {
    let (addr, hits) = serve_redirects().await;
    let base = format!("http://{addr}");

    for code in ["301", "302", "303", "307", "308"] {
        let report = run(&["-n", "4", "-c", "2", &format!("{base}/r/{code}")]).await;
        assert_eq!(report.stats.status.get(&200), Some(&4), "{code}");
        assert_eq!(report.stats.error_count(), 0, "{code}");
        let seen = take(&hits);
        assert_eq!(seen.len(), 8, "{code}");
        assert_eq!(seen.iter().filter(|h| h.path == "/final").count(), 4);
        let last = seen.iter().find(|h| h.path == "/final").unwrap();
        assert_eq!(last.referer.as_deref(), Some(&*format!("{base}/r/{code}")));
    }

    // A POST is re-sent as a GET without its body after 301, 302 and 303 (headers kept) ...
    let url = format!("{base}/r/302");
    let report = run(&[
        "-n",
        "1",
        "-c",
        "1",
        "-m",
        "POST",
        "-d",
        "x",
        "-T",
        "application/json",
        &url,
    ])
    .await;
    assert_eq!(report.stats.status.get(&200), Some(&1));
    let seen = take(&hits);
    assert_eq!((seen[0].method.as_str(), seen[0].body_len), ("POST", 1));
    assert_eq!(
        (
            seen[1].method.as_str(),
            seen[1].path.as_str(),
            seen[1].body_len
        ),
        ("GET", "/final", 0)
    );
    assert_eq!(seen[1].content_type.as_deref(), Some("application/json"));
    // ... while after 307 and 308 it keeps its method, and with a body Go stops there.
    let url = format!("{base}/r/307");
    let report = run(&["-n", "1", "-c", "1", "-m", "POST", "-d", "x", &url]).await;
    assert_eq!(report.stats.status.get(&307), Some(&1));
    assert_eq!(take(&hits).len(), 1);
    let report = run(&["-n", "1", "-c", "1", "-m", "POST", &url]).await;
    assert_eq!(report.stats.status.get(&200), Some(&1));
    let seen = take(&hits);
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("POST", "/final")
    );

    // To another host: the Authorization header is dropped, Host follows the URL.
    let url = format!("{base}/abs");
    let report = run(&["-n", "1", "-c", "1", "-H", "Authorization: Bearer x", &url]).await;
    assert_eq!(
        report.stats.status.get(&200),
        Some(&1),
        "{:?}",
        report.stats.errors
    );
    let seen = take(&hits);
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer x"));
    assert_eq!(seen[1].authorization, None);
    assert_eq!(
        seen[1].host.as_deref(),
        Some(&*format!("localhost:{}", addr.port()))
    );
    // On the same host it is kept.
    let url = format!("{base}/r/302");
    run(&["-n", "1", "-c", "1", "-H", "Authorization: Bearer x", &url]).await;
    let seen = take(&hits);
    assert_eq!(seen[1].authorization.as_deref(), Some("Bearer x"));

    // A custom Host header survives a relative redirect, not an absolute one.
    run(&[
        "-n",
        "1",
        "-c",
        "1",
        "-host",
        "foo.example",
        &format!("{base}/r/301"),
    ])
    .await;
    let seen = take(&hits);
    assert_eq!(seen[1].host.as_deref(), Some("foo.example"));
    run(&[
        "-n",
        "1",
        "-c",
        "1",
        "-host",
        "foo.example",
        &format!("{base}/abs"),
    ])
    .await;
    let seen = take(&hits);
    assert_eq!(seen[0].host.as_deref(), Some("foo.example"));
    assert_eq!(
        seen[1].host.as_deref(),
        Some(&*format!("localhost:{}", addr.port()))
    );

    // Ten requests at most, then Go's error naming the Location as received.
    let report = run(&["-n", "2", "-c", "1", &format!("{base}/loop")]).await;
    assert_eq!(report.stats.answered, 0);
    assert_eq!(
        report
            .stats
            .errors
            .get("Get \"/loop\": stopped after 10 redirects"),
        Some(&2),
        "{:?}",
        report.stats.errors
    );
    assert_eq!(take(&hits).len(), 20);

    // A redirect without a Location is a response like any other.
    let report = run(&["-n", "1", "-c", "1", &format!("{base}/noloc")]).await;
    assert_eq!(report.stats.status.get(&302), Some(&1));
    take(&hits);

    // -disable-redirects: the 3xx is the answer.
    let report = run(&[
        "-n",
        "3",
        "-c",
        "1",
        "-disable-redirects",
        &format!("{base}/r/302"),
    ])
    .await;
    assert_eq!(report.stats.status.get(&302), Some(&3));
    assert!(take(&hits).iter().all(|h| h.path == "/r/302"));
}
