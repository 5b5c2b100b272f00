//! The dashboard in a real browser (issue 19): Debian's headless Chromium, driven over the
//! DevTools protocol (a small client on a WebSocket, below). A ServiceAccount without RBAC logs
//! in and the page says it is forbidden; after logging out the API answers 401; alice logs in
//! and sees only her namespace; the canary page renders its charts, analysis table, events and
//! generated objects; the weight changes live without a reload; alice's pause reaches the
//! Canary. Screenshots are written under target/tmp/dashboard-screens (paths printed).
//!
//! Without Chromium the test fails and says how to install it (scripts/test.sh does).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

mod dashboard_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use dashboard_support::{DEADLINE, Env};
use flagger_api::labels::ACTION;
use futures::{SinkExt, StreamExt};
use kube::ResourceExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const CHROMIUM: &str = "chromium";

/// A headless Chromium and one page's DevTools session.
struct Browser {
    child: Child,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    async fn start() -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let spawned = Command::new(CHROMIUM)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1280,1000",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot run `{CHROMIUM}` ({e}): the dashboard's browser tests need Debian's \
                 chromium package (`apt-get install chromium`; scripts/test.sh installs it)"
            ),
        };
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("ws://") {
                    let _ = tx.send(line[i..].trim().to_string());
                }
            }
        });
        let browser_ws = rx
            .recv_timeout(DEADLINE)
            .expect("chromium prints its DevTools address");
        let port = browser_ws
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .expect("a port")
            .to_string();
        // The page opened with the browser: its own DevTools socket.
        let list: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .expect("DevTools list")
            .json()
            .await
            .expect("JSON");
        let page = list
            .as_array()
            .expect("targets")
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target");
        let url = page["webSocketDebuggerUrl"].as_str().expect("ws url");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("DevTools socket");
        Browser {
            child,
            ws,
            next_id: 0,
            _profile: profile,
        }
    }

    /// Sends a command and waits for its answer (events in between are skipped).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::Text(msg.into())).await.expect("sent");
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(left, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} within {DEADLINE:?}"))
                .expect("socket open")
                .expect("message");
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(&text).expect("JSON");
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates `expr` in the page and returns its value.
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is true in the page.
    async fn until(&mut self, what: &str, expr: &str) {
        let start = Instant::now();
        loop {
            if self.eval(&format!("Boolean({expr})")).await == json!(true) {
                return;
            }
            if start.elapsed() > DEADLINE {
                let text = self
                    .eval("document.body ? document.body.innerText : ''")
                    .await;
                panic!("timed out waiting for {what} ({expr}); the page says: {text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.until("the page to load", "document.readyState === 'complete'")
            .await;
    }

    async fn screenshot(&mut self, name: &str) -> PathBuf {
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("data"))
            .expect("base64");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screens");
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("written");
        println!("screenshot: {}", path.display());
        path
    }

    async fn login(&mut self, base: &str, token: &str) {
        self.goto(&format!("{base}/login")).await;
        self.until("the login form", "document.getElementById('token')")
            .await;
        let t = serde_json::to_string(token).expect("json");
        self.eval(&format!(
            "document.getElementById('token').value = {t}; \
             document.querySelector('form[action=\"/login\"]').submit(); true"
        ))
        .await;
        self.until(
            "the dashboard after login",
            "location.pathname === '/' && document.readyState === 'complete' && document.getElementById('main')",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium() {
    let env = Env::start().await;
    env.step("alpha", 10, 99.8).await;
    env.step("alpha", 20, 99.5).await;
    env.step("beta", 10, 100.0).await;
    let dash = env.dashboard(&[]);
    let base = dash.url.clone();
    let mut b = Browser::start().await;

    // A ServiceAccount without RBAC: logged in, and told plainly it may not see.
    let nobody = env.sa_token("default", "nobody");
    b.login(&base, &nobody).await;
    b.until(
        "the forbidden notice",
        "document.getElementById('forbidden')",
    )
    .await;
    let banner = b.eval("document.getElementById('banner').innerText").await;
    assert!(
        banner
            .as_str()
            .unwrap()
            .contains("system:serviceaccount:default:nobody may not get canaries"),
        "{banner}"
    );
    let forbidden = b.screenshot("forbidden").await;

    // Logged out: the API answers 401 and pages show the login form.
    b.eval("document.querySelector('form[action=\"/logout\"]').submit(); true")
        .await;
    b.until(
        "the login page",
        "location.pathname === '/login' && document.getElementById('token')",
    )
    .await;
    let status = b.eval("fetch('/api/canaries').then(r => r.status)").await;
    assert_eq!(status, json!(401));
    b.goto(&format!("{base}/")).await;
    b.until("the login form at /", "document.getElementById('token')")
        .await;

    // Alice: her namespace only.
    b.login(&base, "alice-token").await;
    b.until(
        "the list",
        "document.getElementById('main').dataset.ready === 'list'",
    )
    .await;
    let rows = b
        .eval("[...document.querySelectorAll('#canaries tr')].map(r => r.id)")
        .await;
    assert_eq!(rows, json!(["row-alpha-podinfo"]));
    let list = b.screenshot("list").await;

    // The canary page, then a weight change arrives without a reload.
    b.goto(&format!("{base}/canary/alpha/podinfo")).await;
    b.until(
        "the canary page",
        "document.getElementById('main').dataset.ready === 'canary'",
    )
    .await;
    b.until(
        "the live stream",
        "document.getElementById('live').textContent === 'live'",
    )
    .await;
    assert_eq!(
        b.eval("document.getElementById('weight').dataset.weight")
            .await,
        json!("20")
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#charts .chart').length")
            .await,
        json!(2),
        "the weight's chart and the success rate's"
    );
    b.eval("window.__sameDocument = true").await;
    env.step("alpha", 30, 99.1).await;
    b.until(
        "the weight to change live",
        "document.getElementById('weight').dataset.weight === '30'",
    )
    .await;
    assert_eq!(
        b.eval("window.__sameDocument === true").await,
        json!(true),
        "no reload"
    );
    b.until(
        "the new event in the timeline",
        "document.getElementById('events').innerText.includes('canary weight 30')",
    )
    .await;
    let generated = b
        .eval("document.querySelectorAll('#generated tbody tr').length")
        .await;
    assert_eq!(generated, json!(4));
    let canary = b.screenshot("canary").await;

    // Alice pauses it: the request is on the Canary.
    b.eval("document.getElementById('action-pause').click(); true")
        .await;
    b.until(
        "the action's answer",
        "document.getElementById('action-result').textContent.includes('pause requested')",
    )
    .await;
    let c = env.canaries("alpha").get("podinfo").await.expect("canary");
    assert_eq!(
        c.annotations().get(ACTION).map(String::as_str),
        Some("pause")
    );

    // Bob may look but not act: the buttons are off and the page says why.
    b.eval("document.querySelector('form[action=\"/logout\"]').submit(); true")
        .await;
    b.until("the login page", "location.pathname === '/login'")
        .await;
    b.login(&base, "bob-token").await;
    b.goto(&format!("{base}/canary/alpha/podinfo")).await;
    b.until(
        "the canary page",
        "document.getElementById('main').dataset.ready === 'canary'",
    )
    .await;
    assert_eq!(
        b.eval("document.getElementById('action-pause').disabled")
            .await,
        json!(true)
    );
    let why = b
        .eval("document.getElementById('action-result').textContent")
        .await;
    assert!(why.as_str().unwrap().contains("may not patch"), "{why}");
    let read_only = b.screenshot("canary-read-only").await;
    for p in [forbidden, list, canary, read_only] {
        assert!(std::fs::metadata(&p).expect("written").len() > 1000);
    }
}

/// `flagger demo --keep --dashboard`: the dashboard watches the demo's cluster from its start;
/// once the demo is done, the list shows both canaries and their pages chart the runs (the
/// istio canary's weight steps, each check's values). Screenshots: demo-list.png,
/// demo-podinfo.png, demo-frontend.png.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_in_chromium() {
    let dir = tempfile::tempdir().expect("dir");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_flagger"))
        .args([
            "demo",
            "--keep",
            "--plain",
            "--dashboard",
            "127.0.0.1:0",
            "--kubeconfig",
        ])
        .arg(dir.path().join("kubeconfig"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("flagger demo starts");
    struct Stop(Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            // Ctrl-C: the demo stops what it started.
            let _ = Command::new("kill")
                .args(["-INT", &self.0.id().to_string()])
                .status();
            let _ = self.0.wait();
        }
    }
    let stdout = demo.stdout.take().expect("stdout");
    let _stop = Stop(demo);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("demo| {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(400);
    let mut url = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the demo finishes within its deadline");
        if let Some(rest) = line.strip_prefix("dashboard: ") {
            url = rest
                .split_whitespace()
                .next()
                .map(|u| u.trim_end_matches('/').to_string());
        }
        if line.trim_start().starts_with("export KUBECONFIG=") {
            break;
        }
    }
    let base = url.expect("the demo printed the dashboard's address");
    let mut b = Browser::start().await;
    b.goto(&format!("{base}/")).await;
    b.until(
        "the list",
        "document.getElementById('main').dataset.ready === 'list'",
    )
    .await;
    let rows = b
        .eval("[...document.querySelectorAll('#canaries tr')].map(r => r.id)")
        .await;
    assert_eq!(rows, json!(["row-test-frontend", "row-test-podinfo"]));
    b.screenshot("demo-list").await;
    b.goto(&format!("{base}/canary/test/podinfo")).await;
    b.until(
        "podinfo's page",
        "document.getElementById('main').dataset.ready === 'canary'",
    )
    .await;
    let charts = b
        .eval("document.querySelectorAll('#charts .chart').length")
        .await;
    assert!(
        charts.as_u64().unwrap_or(0) >= 2,
        "weight and at least one check: {charts}"
    );
    b.screenshot("demo-podinfo").await;
    b.goto(&format!("{base}/canary/test/frontend")).await;
    b.until(
        "frontend's page",
        "document.getElementById('main').dataset.ready === 'canary'",
    )
    .await;
    // The weight chart went through the steps: its line has more than two distinct heights.
    let heights = b
        .eval(
            "new Set(document.querySelector('#charts .chart polyline').getAttribute('points')\
             .split(' ').map(p => p.split(',')[1])).size",
        )
        .await;
    assert!(
        heights.as_u64().unwrap_or(0) > 2,
        "weight steps charted: {heights}"
    );
    b.screenshot("demo-frontend").await;
}
