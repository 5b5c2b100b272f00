//! The load tester under hostile clients: requests a web page makes a browser send
//! (cross-site `text/plain` POSTs, DNS rebinding), oversized bodies, and connections held open
//! (slow headers, idle keep-alives, more connections than file descriptors).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::time::Duration;

use common::*;
use flagger_loadtester::conn::ConnLimits;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn cross_site_posts_are_refused_and_curl_still_opens_gates() {
    let s = start(config()).await;
    let host = s.addr.to_string();
    let p = payload(
        "podinfo",
        "test",
        json!({"type": "bash", "cmd": "touch /tmp/never"}),
    );
    // What a page on another site makes the browser send: a "simple" request, no preflight.
    let r = request_with(
        s.addr,
        "POST",
        "/",
        &p,
        &[
            ("host", &host),
            ("content-type", "text/plain"),
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("cross-site request refused"), "{}", r.body);
    // Only one of the two headers is enough (older browsers send no Sec-Fetch-Site).
    let r = request_with(
        s.addr,
        "POST",
        "/gate/open",
        &p,
        &[("host", &host), ("origin", "null")],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = request_with(
        s.addr,
        "POST",
        "/gate/open",
        &p,
        &[("host", &host), ("sec-fetch-site", "same-site")],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // DNS rebinding: the page's own name in Host (and its own origin).
    let r = request_with(
        s.addr,
        "GET",
        "/gates",
        "",
        &[("host", "rebind.evil.example:9090")],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("DNS rebinding"), "{}", r.body);
    assert_eq!(
        request(s.addr, "GET", "/gates", "", None).await.body,
        "[]",
        "no gate was opened by a refused request"
    );

    // Flagger's documented `curl -d '{...}' http://localhost:PORT/gate/open`: curl's default
    // content type, Host localhost, no Origin.
    let curl_host = format!("localhost:{}", s.addr.port());
    let r = request_with(
        s.addr,
        "POST",
        "/gate/open",
        &payload("podinfo", "test", json!({})),
        &[
            ("host", &curl_host),
            ("content-type", "application/x-www-form-urlencoded"),
            ("user-agent", "curl/8.5.0"),
            ("accept", "*/*"),
        ],
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    // A same-origin request (the browser's own tab on the load tester) passes.
    let r = request_with(
        s.addr,
        "GET",
        "/healthz",
        "",
        &[("host", &host), ("origin", &format!("http://{host}"))],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let metrics = request(s.addr, "GET", "/metrics", "", None).await.body;
    assert!(
        metrics.contains("reason=\"cross_site\"} 4"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("rejected"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    s.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn service_names_are_accepted_when_allowed_and_on_other_addresses() {
    let mut cfg = config();
    cfg.allowed_hosts = vec!["flagger-loadtester.test".into()];
    let s = start(cfg).await;
    let r = request_with(
        s.addr,
        "GET",
        "/healthz",
        "",
        &[("host", "flagger-loadtester.test")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        request_with(s.addr, "GET", "/healthz", "", &[("host", "other.test")])
            .await
            .status,
        403
    );
    s.shutdown(Duration::from_secs(5)).await;
    // Listening on all addresses (in a cluster, reached by any Service name): no Host check,
    // the Origin check stays.
    let s = flagger_loadtester::server::spawn(config(), "0.0.0.0:0")
        .await
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], s.addr.port()));
    let r = request_with(
        addr,
        "GET",
        "/healthz",
        "",
        &[("host", "flagger-loadtester.test.svc.cluster.local")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = request_with(
        addr,
        "POST",
        "/gate/open",
        &payload("a", "b", json!({})),
        &[("host", "lt.test"), ("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    s.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn oversized_and_too_deep_bodies_and_commands_get_a_clear_error() {
    let s = start(config()).await;
    let deep = format!(
        "{{\"name\":\"a\",\"namespace\":\"b\",\"metadata\":{{\"cmd\":\"x\"}},\"x\":{}{}}}",
        "[".repeat(500),
        "]".repeat(500)
    );
    let r = post(s.addr, "/", &deep).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("nests more than 100 levels"), "{}", r.body);
    let long_cmd = payload("a", "b", json!({"cmd": "x".repeat(70 * 1024)}));
    let r = post(s.addr, "/", &long_cmd).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("over the limit of 65536"), "{}", r.body);
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let r = post(s.addr, "/gate/open", &huge).await;
    assert_eq!(r.status, 413, "{}", r.body);
    s.shutdown(Duration::from_secs(5)).await;
}

/// Whether the server has closed `stream` (a read sees the end).
async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match stream.try_read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

#[tokio::test]
async fn slow_headers_and_idle_keep_alives_are_closed() {
    let mut cfg = config();
    cfg.connections = ConnLimits {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(800),
        max_connections: 100,
    };
    let s = start(cfg).await;
    // Half a request head, never finished.
    let mut slow = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    // Nothing at all.
    let mut silent = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    // One request, then kept alive without another.
    let mut kept = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 1024];
    let n = kept.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    for (name, stream) in [
        ("slow", &mut slow),
        ("silent", &mut silent),
        ("kept", &mut kept),
    ] {
        // Fails the test when the server keeps it open.
        wait_until(Duration::from_secs(10), name, || {
            let done = futures_now(closed_by_server(&mut *stream));
            async move { done }
        })
        .await;
    }
    s.shutdown(Duration::from_secs(5)).await;
}

/// Runs a future that never waits (a non-blocking read) to completion.
fn futures_now<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("a non-blocking read does not wait"),
    }
}

/// Raises this process's open-files limit so that the client side of the test fits.
fn raise_nofile(want: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let target = want.min(hard).max(soft);
    if target > soft {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard).unwrap();
    }
    target
}

#[tokio::test]
async fn eleven_hundred_idle_connections_do_not_starve_the_health_check() {
    // The load tester as a process with 1,024 open files, as in a container with default
    // limits: before connections were capped, the 1,025th connection made accept() fail
    // and the health check timed out.
    const HELD: usize = 1_100;
    assert!(
        raise_nofile(HELD as u64 + 200) >= HELD as u64 + 100,
        "this test needs {} open files for its client side",
        HELD + 100
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 1024 && exec {BIN} -port={port} -listen-address=127.0.0.1 \
             -header-read-timeout=1m -log-level=error"
        ))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    wait_until(
        Duration::from_secs(30),
        "the load tester to listen",
        || async { tokio::net::TcpStream::connect(addr).await.is_ok() },
    )
    .await;
    let mut held = Vec::with_capacity(HELD);
    for _ in 0..HELD {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Far less than the header timeout (1m): room is made by closing idle connections.
    let health = tokio::time::timeout(
        Duration::from_secs(5),
        request(addr, "GET", "/healthz", "", None),
    )
    .await
    .expect("the health check is answered while 1,100 connections are held");
    assert_eq!((health.status, health.body.as_str()), (200, "OK"));
    // It made room by closing the connections idle the longest: at most 1,024 - 64 stay open.
    let mut closed = 0;
    wait_until(Duration::from_secs(10), "idle connections closed", || {
        closed = held
            .iter_mut()
            .map(|s| futures_now(closed_by_server(s)))
            .filter(|c| *c)
            .count();
        async move { closed >= HELD - 960 }
    })
    .await;
    assert!(closed >= HELD - 960, "{closed} closed");
    child.kill().await.unwrap();
}
