//! `flagger dashboard` over HTTP against localkube with RBAC on (issue 19): 401 without a
//! token, 403 for a ServiceAccount without RBAC, namespaces filtered by the user's RBAC, an
//! action by an allowed user, refusals (read-only user, `--read-only`, no CSRF token,
//! cross-site origin), the login cookie, front-proxy headers only from a trusted proxy, and a
//! weight change delivered by server-sent events. The dashboard runs as its own process under
//! the ClusterRole of deploy/flagger/dashboard-rbac.yaml.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

mod dashboard_support;

use std::time::Duration;

use dashboard_support::{DEADLINE, Env, eventually};
use flagger_api::labels::ACTION;
use kube::ResourceExt;
use reqwest::StatusCode;
use serde_json::Value;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(DEADLINE)
        .build()
        .expect("client")
}

async fn get(url: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = http().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("request");
    (r.status(), r.text().await.expect("body"))
}

async fn json(url: &str, token: &str) -> (StatusCode, Value) {
    let (code, body) = get(url, Some(token)).await;
    (
        code,
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("JSON from {url}: {body}")),
    )
}

async fn csrf(base: &str, token: &str) -> String {
    let (code, me) = json(&format!("{base}/api/whoami"), token).await;
    assert_eq!(code, StatusCode::OK, "{me}");
    me["csrf"].as_str().expect("csrf").to_string()
}

async fn post_action(
    base: &str,
    token: &str,
    path: &str,
    csrf: Option<&str>,
    origin: Option<&str>,
) -> (StatusCode, String) {
    let mut req = http().post(format!("{base}{path}")).bearer_auth(token);
    if let Some(c) = csrf {
        req = req.header("X-CSRF-Token", c);
    }
    if let Some(o) = origin {
        req = req.header("Origin", o);
    }
    let r = req.send().await.expect("request");
    (r.status(), r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_401_and_the_login_page() {
    let env = Env::start().await;
    let dash = env.dashboard(&[]);
    let (code, body) = get(&format!("{}/api/canaries", dash.url), None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("no credentials"), "{body}");
    let (code, body) = get(&format!("{}/", dash.url), None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(
        body.contains("<form method=\"post\" action=\"/login\">"),
        "{body}"
    );
    let (code, body) = get(&format!("{}/api/canaries", dash.url), Some("made-up")).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("not accepted"), "{body}");
    // The static assets carry no data and need no login.
    let (code, _) = get(&format!("{}/static/app.js", dash.url), None).await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_without_rbac_is_403() {
    let env = Env::start().await;
    let dash = env.dashboard(&[]);
    let token = env.sa_token("default", "nobody");
    let (code, body) = json(&format!("{}/api/canaries", dash.url), &token).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("user system:serviceaccount:default:nobody may not get canaries"),
        "{body}"
    );
    let (code, body) = json(&format!("{}/api/canaries/alpha/podinfo", dash.url), &token).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    // Authenticated, so the page itself loads; its script shows the 403.
    let (code, _) = get(&format!("{}/", dash.url), Some(&token)).await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_filtered_by_rbac() {
    let env = Env::start().await;
    let dash = env.dashboard(&[]);
    let names = |v: &Value| -> Vec<String> {
        v["canaries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{}/{}",
                    c["namespace"].as_str().unwrap(),
                    c["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    let admin_token = env.kube.auth().admin_token.clone();
    let (code, all) = json(&format!("{}/api/canaries", dash.url), &admin_token).await;
    assert_eq!(code, StatusCode::OK, "{all}");
    assert_eq!(names(&all), vec!["alpha/podinfo", "beta/podinfo"]);
    let (code, alice) = json(&format!("{}/api/canaries", dash.url), "alice-token").await;
    assert_eq!(code, StatusCode::OK, "{alice}");
    assert_eq!(names(&alice), vec!["alpha/podinfo"]);
    let (code, carol) = json(&format!("{}/api/canaries", dash.url), "carol-token").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(names(&carol), vec!["beta/podinfo"]);
    let (code, body) = json(
        &format!("{}/api/canaries/beta/podinfo", dash.url),
        "alice-token",
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        body["error"],
        "user alice may not get canaries in namespace beta"
    );
    let (code, detail) = json(
        &format!("{}/api/canaries/alpha/podinfo", dash.url),
        "alice-token",
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{detail}");
    assert_eq!(detail["mayAct"], true);
    let kinds: Vec<&str> = detail["generated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["Deployment", "Service", "Service", "Service"]);
    let (_, bob) = json(
        &format!("{}/api/canaries/alpha/podinfo", dash.url),
        "bob-token",
    )
    .await;
    assert_eq!(bob["mayAct"], false, "bob may only get");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_user_acts_and_others_are_refused() {
    let env = Env::start().await;
    let dash = env.dashboard(&[]);
    let base = &dash.url;
    let path = "/api/canaries/alpha/podinfo/pause";
    let alice = csrf(base, "alice-token").await;
    // Without the session's CSRF token, with another session's, or from another site: refused.
    let (code, body) = post_action(base, "alice-token", path, None, None).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    let bob = csrf(base, "bob-token").await;
    let (code, _) = post_action(base, "alice-token", path, Some(&bob), None).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, body) = post_action(
        base,
        "alice-token",
        path,
        Some(&alice),
        Some("http://evil.example"),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("not this site"), "{body}");
    // Bob may see but not patch.
    let (code, body) = post_action(base, "bob-token", path, Some(&bob), None).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains("user bob may not patch canaries in namespace alpha"),
        "{body}"
    );
    // Alice may: the request annotation is on the Canary.
    let origin = base.clone();
    let (code, body) = post_action(base, "alice-token", path, Some(&alice), Some(&origin)).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let c = env.canaries("alpha").get("podinfo").await.expect("canary");
    assert_eq!(
        c.annotations().get(ACTION).map(String::as_str),
        Some("pause")
    );
    let (code, _) = post_action(
        base,
        "alice-token",
        "/api/canaries/alpha/podinfo/explode",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    // A read-only dashboard refuses everyone, admins included.
    let ro = env.dashboard(&["--read-only"]);
    let admin = env.kube.auth().admin_token.clone();
    let token = csrf(&ro.url, &admin).await;
    let (code, body) = post_action(
        &ro.url,
        &admin,
        "/api/canaries/alpha/podinfo/resume",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("read-only"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_form_sets_a_strict_httponly_cookie() {
    let env = Env::start().await;
    let dash = env.dashboard(&[]);
    let r = http()
        .post(format!("{}/login", dash.url))
        .form(&[("token", "not-a-token")])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http()
        .post(format!("{}/login", dash.url))
        .form(&[("token", "alice-token")])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r
        .headers()
        .get("set-cookie")
        .expect("a cookie")
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = http()
        .get(format!("{}/api/canaries", dash.url))
        .header("Cookie", &pair)
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["namespaces"], serde_json::json!(["alpha"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_headers_count_only_from_a_trusted_proxy() {
    let env = Env::start().await;
    // 127.0.0.1 is trusted: the headers name the user.
    let trusted = env.dashboard(&["--auth-proxy-headers", "--trusted-proxy", "127.0.0.1/32"]);
    let r = http()
        .get(format!("{}/api/canaries", trusted.url))
        .header("X-Forwarded-User", "carol")
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["namespaces"], serde_json::json!(["beta"]));
    let r = http()
        .get(format!("{}/api/canaries", trusted.url))
        .header("X-Forwarded-User", "dave")
        .header("X-Forwarded-Groups", "viewers")
        .send()
        .await
        .expect("list");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["namespaces"], serde_json::json!(["alpha"]), "by group");
    // Another proxy address: the same headers are refused.
    let untrusted = env.dashboard(&["--auth-proxy-headers", "--trusted-proxy", "10.0.0.0/8"]);
    let r = http()
        .get(format!("{}/api/canaries", untrusted.url))
        .header("X-Forwarded-User", "carol")
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("not a trusted proxy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_access_needs_the_flag_and_loopback() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flagger"))
        .args(["dashboard", "--anonymous", "--listen", "0.0.0.0:0"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    let env = Env::start().await;
    let dash = env.dashboard(&["--anonymous"]);
    let (code, body) = get(&format!("{}/api/canaries", dash.url), None).await;
    assert_eq!(code, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_deliver_a_weight_change() {
    let env = Env::start().await;
    let dash = env.dashboard(&[]);
    // Carol's stream: alpha's changes are not hers to see.
    let open = |token: &'static str| {
        let url = format!("{}/api/stream", dash.url);
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("stream");
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(
                r.headers().get("content-type").unwrap(),
                "text/event-stream"
            );
            r
        }
    };
    let mut alice = open("alice-token").await;
    let mut carol = open("carol-token").await;
    env.set_weight("alpha", 30).await;
    env.set_weight("beta", 20).await;
    let mut seen = String::new();
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(chunk) = alice.chunk().await.expect("chunk") {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("\"weight\":30") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "alice's stream: {seen}");
    assert!(seen.contains("event: canary"), "{seen}");
    assert!(!seen.contains("\"namespace\":\"beta\""), "{seen}");
    let mut theirs = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = carol.chunk().await.expect("chunk") {
            theirs.push_str(&String::from_utf8_lossy(&chunk));
            if theirs.contains("\"weight\":20") {
                break;
            }
        }
    })
    .await;
    assert!(theirs.contains("\"weight\":20"), "carol's stream: {theirs}");
    assert!(!theirs.contains("\"namespace\":\"alpha\""), "{theirs}");
    // The history kept from the watch has the point.
    let detail = eventually("the point in the history", || async {
        let (_, d) = json(
            &format!("{}/api/canaries/alpha/podinfo", dash.url),
            "alice-token",
        )
        .await;
        d["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["weight"] == 30)
            .then_some(d)
    })
    .await;
    assert_eq!(detail["summary"]["weight"], 30);
}
