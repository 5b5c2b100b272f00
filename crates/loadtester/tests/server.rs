//! The load tester's HTTP API, served in-process on 127.0.0.1:0.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use regex::Regex;
use serde_json::json;

#[tokio::test]
async fn fixed_endpoints() {
    let s = start(config()).await;
    let r = request(s.addr, "GET", "/healthz", "", None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));
    let r = post(s.addr, "/gate/approve", "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));
    let r = post(s.addr, "/gate/halt", "").await;
    assert_eq!((r.status, r.body.as_str()), (403, "Forbidden"));
    let r = request(s.addr, "GET", "/metrics", "", None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("flagger_loadtester_tasks_running"),
        "{}",
        r.body
    );
    s.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn gate_transitions() {
    let s = start(config()).await;
    let p = payload("podinfo", "test", json!({}));
    for (check, open, close) in [
        ("/gate/check", "/gate/open", "/gate/close"),
        ("/rollback/check", "/rollback/open", "/rollback/close"),
    ] {
        let r = post(s.addr, check, &p).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (403, "Forbidden"),
            "{check} unknown gate"
        );
        let r = post(s.addr, open, &p).await;
        assert_eq!((r.status, r.body.as_str()), (202, ""));
        let r = post(s.addr, check, &p).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "Approved"),
            "{check} after open"
        );
        // Another canary, or the same name in another namespace, is not affected.
        let other = payload("podinfo", "prod", json!({}));
        assert_eq!(post(s.addr, check, &other).await.status, 403);
        let r = post(s.addr, close, &p).await;
        assert_eq!(r.status, 202);
        let r = post(s.addr, check, &p).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (403, "Forbidden"),
            "{check} after close"
        );
    }
    // The gate and the rollback gate are independent.
    post(s.addr, "/rollback/open", &p).await;
    assert_eq!(post(s.addr, "/gate/check", &p).await.status, 403);
    assert_eq!(post(s.addr, "/rollback/check", &p).await.status, 200);

    let r = request(s.addr, "GET", "/gates", "", None).await;
    assert_eq!(r.status, 200);
    let gates: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let gates = gates.as_array().unwrap();
    assert_eq!(gates.len(), 2);
    assert_eq!(gates[0]["kind"], "gate");
    assert_eq!(gates[0]["open"], false);
    assert_eq!(gates[1]["kind"], "rollback");
    assert_eq!(gates[1]["name"], "podinfo");
    assert_eq!(gates[1]["namespace"], "test");
    assert_eq!(gates[1]["open"], true);

    let r = request(s.addr, "GET", "/metrics", "", None).await;
    assert_eq!(
        metric(
            &r.body,
            "flagger_loadtester_gate_changes_total{kind=\"gate\",action=\"open\"}"
        ),
        1.0
    );
    s.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn gates_survive_a_restart_with_a_state_file() {
    let dir = temp_dir("gates");
    let file = dir.join("gates.json");
    let mut cfg = config();
    cfg.gates_file = Some(file.clone());
    let s = start(cfg.clone()).await;
    let p = payload("podinfo", "test", json!({}));
    assert_eq!(post(s.addr, "/gate/open", &p).await.status, 202);
    assert_eq!(post(s.addr, "/rollback/open", &p).await.status, 202);
    assert_eq!(post(s.addr, "/rollback/close", &p).await.status, 202);
    s.shutdown(Duration::from_secs(5)).await;
    assert!(file.exists());

    let s = start(cfg).await;
    let r = post(s.addr, "/gate/check", &p).await;
    assert_eq!((r.status, r.body.as_str()), (200, "Approved"));
    assert_eq!(post(s.addr, "/rollback/check", &p).await.status, 403);
    s.shutdown(Duration::from_secs(5)).await;

    // Without the file (Flagger's behaviour), state is lost.
    let s = start(config()).await;
    assert_eq!(post(s.addr, "/gate/check", &p).await.status, 403);
    s.shutdown(Duration::from_secs(5)).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn bad_requests_get_400_with_a_reason() {
    let s = start(config()).await;
    for path in ["/", "/gate/check", "/gate/open", "/rollback/close"] {
        let r = post(s.addr, path, "{not json").await;
        assert_eq!(r.status, 400, "{path}");
        assert!(
            r.body.contains("decoding the request body failed"),
            "{path}: {}",
            r.body
        );
        let r = post(s.addr, path, "").await;
        assert_eq!(r.status, 400, "{path} empty body");
    }
    let r = post(
        s.addr,
        "/",
        &json!({"name": "a", "namespace": "b"}).to_string(),
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "metadata not found in payload")
    );
    let r = post(s.addr, "/", &payload("a", "b", json!({}))).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "metadata not found in payload")
    );
    let r = post(s.addr, "/", &payload("a", "b", json!({"type": "cmd"}))).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "cmd not found in metadata")
    );
    let r = post(
        s.addr,
        "/",
        &payload("a", "b", json!({"type": "jmeter", "cmd": "x"})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body.starts_with("unknown task type jmeter"), "{}", r.body);
    // Metadata values must be strings, as in Flagger's map[string]string.
    let r = post(s.addr, "/", &payload("a", "b", json!({"cmd": 1}))).await;
    assert_eq!(r.status, 400);
    s.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn blocking_tasks_answer_200_or_500() {
    let s = start(config()).await;
    let meta =
        json!({"type": "bash", "cmd": "echo hello; echo oops >&2", "returnCmdOutput": "true"});
    let r = post(s.addr, "/", &payload("a", "b", meta)).await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello\noops\n"));
    let r = post(
        s.addr,
        "/",
        &payload("a", "b", json!({"type": "bash", "cmd": "echo hello"})),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    let r = post(
        s.addr,
        "/",
        &payload("a", "b", json!({"type": "bash", "cmd": "echo bad; exit 3"})),
    )
    .await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.body,
        "command echo bad; exit 3 failed: bad\n: exit status 3"
    );
    // bash, not sh: bash-only syntax works.
    let meta = json!({"type": "bash", "cmd": "[[ 1 == 1 ]] && echo ok", "returnCmdOutput": "1"});
    assert_eq!(
        post(s.addr, "/", &payload("a", "b", meta)).await.body,
        "ok\n"
    );

    // helm/kubectl run without a shell: shell syntax is passed as plain arguments.
    let kubectl_present = flagger_loadtester::tasks::on_path("kubectl");
    let meta =
        json!({"type": "kubectl", "cmd": "version --client=true", "returnCmdOutput": "true"});
    let r = post(s.addr, "/", &payload("a", "b", meta)).await;
    if kubectl_present {
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains("Client Version"), "{}", r.body);
    } else {
        assert_eq!(r.status, 500);
        assert!(r.body.contains("kubectl"), "{}", r.body);
    }
    if kubectl_present {
        // No shell: `;` and what follows are arguments for kubectl (which ignores them here),
        // not a second command.
        let dir = temp_dir("no-shell");
        let marker = dir.join("marker");
        let cmd = format!("version --client=true ; touch {}", marker.display());
        let meta = json!({"type": "kubectl", "cmd": cmd});
        let r = post(s.addr, "/", &payload("a", "b", meta)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(!marker.exists(), "a shell ran the command");
        std::fs::remove_dir_all(dir).unwrap();
    }
    // helm and helmv3 (which falls back to helm) run the same way; without helm the task fails
    // with a 500 that names it.
    if !flagger_loadtester::tasks::on_path("helm") && !flagger_loadtester::tasks::on_path("helmv3")
    {
        for t in ["helm", "helmv3"] {
            let meta = json!({"type": t, "cmd": "version"});
            let r = post(s.addr, "/", &payload("a", "b", meta)).await;
            assert_eq!(r.status, 500, "{t}");
            assert!(
                r.body.starts_with("command version failed: : ") && r.body.contains("helm"),
                "{t}: {}",
                r.body
            );
        }
    }
    let r = request(s.addr, "GET", "/metrics", "", None).await;
    assert_eq!(
        metric(
            &r.body,
            "flagger_loadtester_tasks_total{type=\"bash\",result=\"success\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(
            &r.body,
            "flagger_loadtester_tasks_total{type=\"bash\",result=\"failure\"}"
        ),
        1.0
    );
    assert!(
        r.body
            .contains("flagger_loadtester_task_duration_seconds_count{type=\"bash\"} 4"),
        "{}",
        r.body
    );
    s.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_blocking_command_past_its_timeout_is_killed_with_its_children() {
    let dir = temp_dir("timeout");
    let pidfile = dir.join("pids");
    let mut cfg = config();
    cfg.timeout = Duration::from_millis(700);
    let s = start(cfg).await;
    // The shell starts a background child and a foreground one; both must die.
    let cmd = format!(
        "echo $$ > {0}; sleep 60 & echo $! >> {0}; sleep 60",
        pidfile.display()
    );
    let started = Instant::now();
    let r = post(
        s.addr,
        "/",
        &payload("a", "b", json!({"type": "bash", "cmd": cmd})),
    )
    .await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(
        r.body.contains("signal: killed (timeout 700ms exceeded)"),
        "{}",
        r.body
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let pids: Vec<i32> = std::fs::read_to_string(&pidfile)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    wait_until(
        Duration::from_secs(5),
        "the killed processes to disappear",
        || async { pids.iter().all(|p| !alive(*p)) && group_members(pids[0]).is_empty() },
    )
    .await;
    let r = request(s.addr, "GET", "/metrics", "", None).await;
    assert_eq!(
        metric(
            &r.body,
            "flagger_loadtester_tasks_total{type=\"bash\",result=\"timeout\"}"
        ),
        1.0
    );
    assert!(s.state.tasks.process_groups().is_empty());
    s.shutdown(Duration::from_secs(5)).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn async_commands_are_deduplicated_per_canary_and_command() {
    let dir = temp_dir("dedupe");
    let mut cfg = config();
    // The long command ends at the timeout, which ends the deduplication window.
    cfg.timeout = Duration::from_secs(3);
    let s = start(cfg).await;
    let runs = dir.join("runs");
    let cmd = format!("echo run >> {}; sleep 60", runs.display());
    let lines = |p: &std::path::Path| std::fs::read_to_string(p).map_or(0, |t| t.lines().count());

    for _ in 0..5 {
        let r = post(
            s.addr,
            "/",
            &payload("podinfo", "test", json!({"cmd": cmd})),
        )
        .await;
        assert_eq!((r.status, r.body.as_str()), (202, ""));
    }
    wait_until(Duration::from_secs(5), "the first run to start", || async {
        lines(&runs) == 1
    })
    .await;
    // The same command for another canary is another task.
    let r = post(
        s.addr,
        "/",
        &payload("podinfo", "prod", json!({"cmd": cmd})),
    )
    .await;
    assert_eq!(r.status, 202);
    wait_until(Duration::from_secs(5), "the other canary's run", || async {
        lines(&runs) == 2
    })
    .await;
    // A different command of the first canary runs too; by the time it has, a duplicate would
    // have run as well.
    let marker = dir.join("marker");
    let other = format!("echo done > {}", marker.display());
    post(
        s.addr,
        "/",
        &payload("podinfo", "test", json!({"cmd": other})),
    )
    .await;
    wait_until(Duration::from_secs(5), "the other command", || async {
        marker.exists()
    })
    .await;
    assert_eq!(lines(&runs), 2);
    let m = request(s.addr, "GET", "/metrics", "", None).await.body;
    assert_eq!(
        metric(
            &m,
            "flagger_loadtester_tasks_total{type=\"cmd\",result=\"skipped\"}"
        ),
        4.0
    );

    // Once the running one has ended (killed at the timeout), the command runs again.
    wait_until(Duration::from_secs(10), "the long runs to end", || async {
        s.state.tasks.async_running() == 0
    })
    .await;
    post(
        s.addr,
        "/",
        &payload("podinfo", "test", json!({"cmd": cmd})),
    )
    .await;
    wait_until(Duration::from_secs(5), "the second run", || async {
        lines(&runs) == 3
    })
    .await;
    s.shutdown(Duration::from_secs(5)).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn async_cmd_runs_the_builtin_hey() {
    let hits = Arc::new(AtomicU64::new(0));
    let target = {
        let hits = hits.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let hits = hits.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    "ok"
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        addr
    };
    let dir = temp_dir("hey-cmd");
    let out = dir.join("out");
    let s = start(config()).await;
    let cmd = format!("hey -n 20 -c 2 -q 100 http://{target}/ > {}", out.display());
    let r = post(
        s.addr,
        "/",
        &payload(
            "podinfo",
            "test",
            json!({"cmd": cmd, "logCmdOutput": "true"}),
        ),
    )
    .await;
    assert_eq!(r.status, 202);
    wait_until(Duration::from_secs(20), "hey to finish", || async {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("Status code distribution"))
    })
    .await;
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("  [200]\t20 responses"), "{text}");
    assert_eq!(hits.load(Ordering::SeqCst), 20);
    s.shutdown(Duration::from_secs(5)).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn namespace_allow_list_answers_403() {
    let mut cfg = config();
    cfg.namespace_regexp = Some(Regex::new("^(test|staging)$").unwrap());
    let s = start(cfg).await;
    let ok = payload("podinfo", "test", json!({"type": "bash", "cmd": "true"}));
    assert_eq!(post(s.addr, "/", &ok).await.status, 200);
    let denied = payload("podinfo", "prod", json!({"type": "bash", "cmd": "true"}));
    for path in [
        "/",
        "/gate/check",
        "/gate/open",
        "/gate/close",
        "/rollback/check",
        "/rollback/open",
        "/rollback/close",
    ] {
        let r = post(s.addr, path, &denied).await;
        assert_eq!(r.status, 403, "{path}");
        assert!(
            r.body.starts_with("Forbidden: namespace \"prod\""),
            "{path}: {}",
            r.body
        );
    }
    // Fixed gates do not look at the payload, as in Flagger.
    assert_eq!(post(s.addr, "/gate/approve", &denied).await.status, 200);
    // Nothing was opened for the denied namespace.
    let allowed_check = payload("podinfo", "test", json!({}));
    assert_eq!(
        post(s.addr, "/gate/check", &allowed_check).await.status,
        403
    );
    s.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn bearer_token_is_required_except_on_healthz() {
    let mut cfg = config();
    cfg.token = Some("s3cret".into());
    let s = start(cfg).await;
    let p = payload("podinfo", "test", json!({"type": "bash", "cmd": "true"}));
    for (method, path) in [
        ("POST", "/"),
        ("POST", "/gate/check"),
        ("POST", "/gate/approve"),
        ("GET", "/gates"),
        ("GET", "/metrics"),
        ("POST", "/rollback/open"),
    ] {
        let r = request(s.addr, method, path, &p, None).await;
        assert_eq!(r.status, 401, "{path} without token");
        assert_eq!(r.headers.get("www-authenticate").unwrap(), "Bearer");
        let r = request(s.addr, method, path, &p, Some("wrong")).await;
        assert_eq!(r.status, 401, "{path} with a wrong token");
        let r = request(s.addr, method, path, &p, Some("s3cret")).await;
        assert!(r.status != 401, "{path} with the token");
    }
    assert_eq!(
        request(s.addr, "GET", "/healthz", "", None).await.status,
        200
    );
    // The token may also be given in the URL, which a Flagger webhook can carry.
    assert_eq!(post(s.addr, "/?access_token=s3cret", &p).await.status, 200);
    assert_eq!(post(s.addr, "/?access_token=nope", &p).await.status, 401);
    s.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn fifty_blocking_tasks_run_in_parallel() {
    let s = start(config()).await;
    let started = Instant::now();
    let mut handles = Vec::new();
    for i in 0..50 {
        let addr = s.addr;
        handles.push(tokio::spawn(async move {
            let meta = json!({"type": "bash", "cmd": format!("sleep 1; echo task-{i}"), "returnCmdOutput": "true"});
            let r = post(addr, "/", &payload(&format!("c{i}"), "test", meta)).await;
            (i, r)
        }));
    }
    for h in handles {
        let (i, r) = h.await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, format!("task-{i}\n"));
    }
    // Serially this would take 50 s.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(s.state.tasks.process_groups().is_empty());
    s.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn unknown_paths_run_tasks_like_flaggers_mux() {
    let s = start(config()).await;
    let meta = json!({"type": "bash", "cmd": "echo hi", "returnCmdOutput": "true"});
    let r = post(s.addr, "/some/path", &payload("a", "b", meta)).await;
    assert_eq!((r.status, r.body.as_str()), (200, "hi\n"));
    s.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn shutdown_kills_running_commands() {
    let dir = temp_dir("shutdown");
    let pidfile = dir.join("pid");
    let s = start(config()).await;
    let cmd = format!("echo $$ > {}; sleep 60", pidfile.display());
    post(s.addr, "/", &payload("a", "b", json!({"cmd": cmd}))).await;
    wait_until(Duration::from_secs(5), "the command to start", || async {
        std::fs::read_to_string(&pidfile).is_ok_and(|t| t.ends_with('\n'))
    })
    .await;
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    s.shutdown(Duration::from_secs(2)).await;
    wait_until(
        Duration::from_secs(5),
        "the command to be killed",
        || async { !alive(pid) && group_members(pid).is_empty() },
    )
    .await;
    std::fs::remove_dir_all(dir).unwrap();
}
