//! `flagger local` as a user runs it: the listen-address rule (`--allow-remote`), API faults
//! from a file (`--faults`) seen through the real kubectl, what a web page can no longer make
//! a browser do to it (cross-site `text/plain` POSTs, DNS rebinding), and kube-apiserver's
//! answers to oversized and deeply nested bodies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `flagger local`; killed on drop.
struct Local {
    child: Child,
    url: String,
    kubeconfig: PathBuf,
    stderr: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `flagger local` with `args` and waits for its "serving on" line.
#[allow(
    clippy::zombie_processes,
    reason = "the child is killed and waited for when Local is dropped"
)]
fn start(args: &[&str], files: &[(&str, &str)]) -> Local {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flagger"))
        .current_dir(dir.path())
        .arg("local")
        .args(args)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let url = line
                    .strip_prefix("localkube serving on ")
                    .and_then(|r| r.split_whitespace().next())
                    .map(str::to_string);
                lines.push(line);
                if let Some(url) = url {
                    return Local {
                        child,
                        url,
                        kubeconfig,
                        stderr: lines,
                        _dir: dir,
                    };
                }
            }
            Err(e) => {
                let _ = child.kill();
                panic!("flagger local did not start ({e}):\n{}", lines.join("\n"));
            }
        }
    }
}

/// Runs `flagger local` expecting it to refuse to start; its exit status and stderr.
fn refused(args: &[&str], files: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_flagger"))
        .current_dir(dir.path())
        .arg("local")
        .args(args)
        .arg("--kubeconfig")
        .arg(dir.path().join("kubeconfig"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its stderr ends when it exits.
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        let _ = tx.send(text);
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(text) => (child.wait().unwrap().code(), text),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("flagger local {args:?} kept running instead of refusing");
        }
    }
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs")
}

fn kubectl_ok(kubeconfig: &Path, args: &[&str]) -> String {
    let out = kubectl(kubeconfig, args);
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn listening_beyond_loopback_needs_allow_remote_and_warns() {
    let (code, err) = refused(&["--addr", "0.0.0.0:0"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--addr 0.0.0.0:0 is reachable from other machines"),
        "{err}"
    );
    assert!(err.contains("no authentication"), "{err}");
    assert!(err.contains("--allow-remote"), "{err}");
    let (code, err) = refused(&["--dataplane", "--proxy-addr", "0.0.0.0:0"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--proxy-addr 0.0.0.0:0"), "{err}");

    let local = start(&["--addr", "0.0.0.0:0", "--allow-remote"], &[]);
    let all = local.stderr.join("\n");
    assert!(
        all.contains("WARNING: localkube has NO authentication"),
        "{all}"
    );
    // Reached through loopback, it answers kubectl as usual.
    kubectl_ok(&local.kubeconfig, &["get", "namespaces"]);
}

#[test]
fn a_faults_file_with_mistakes_is_refused_with_the_rule_named() {
    let (code, err) = refused(
        &["--faults", "faults.yaml"],
        &[(
            "faults.yaml",
            "- verb: patch\n  resource: deployments\n  count: 1\n- verb: patch\n  rate: 1.5\n",
        )],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--faults faults.yaml: rule 2 (verb patch): rate 1.5 is not in (0, 1]"),
        "{err}"
    );
    let (code, err) = refused(&["--faults", "missing.yaml"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--faults missing.yaml: cannot read"), "{err}");
}

#[test]
fn exactly_one_500_on_patch_deployments_podinfo_then_success() {
    let local = start(
        &["--addr", "127.0.0.1:0", "--faults", "faults.yaml"],
        &[(
            "faults.yaml",
            "# one failed scale of podinfo, nothing else\n\
             - verb: patch\n  resource: deployments\n  namespace: default\n  name: podinfo\n  \
             code: 500\n  count: 1\n",
        )],
    );
    let all = local.stderr.join("\n");
    assert!(
        all.contains("fault injection: 1 rule(s) from faults.yaml"),
        "{all}"
    );
    let kc = &local.kubeconfig;
    for name in ["podinfo", "podinfo-primary"] {
        kubectl_ok(
            kc,
            &[
                "create",
                "deployment",
                name,
                "--image=ghcr.io/stefanprodan/podinfo:6.0.0",
            ],
        );
    }
    // Another Deployment is not matched by the name.
    kubectl_ok(
        kc,
        &["scale", "deployment", "podinfo-primary", "--replicas=2"],
    );
    let patch = [
        "patch",
        "deployment",
        "podinfo",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":3}}"#,
    ];
    let first = kubectl(kc, &patch);
    assert!(!first.status.success(), "the first patch fails");
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(err.contains("injected fault (500 InternalError)"), "{err}");
    kubectl_ok(kc, &patch);
    assert_eq!(
        kubectl_ok(
            kc,
            &[
                "get",
                "deployment",
                "podinfo",
                "-o",
                "jsonpath={.spec.replicas}"
            ]
        ),
        "3"
    );
    // The count is used up: later patches pass too.
    kubectl_ok(kc, &["label", "deployment", "podinfo", "tier=web"]);
}

#[test]
fn browsers_cannot_use_the_api_and_kubectl_still_can() {
    let local = start(&["--addr", "127.0.0.1:0"], &[]);
    let kc = &local.kubeconfig;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = local.url.clone();
    let (cross_site, rebinding) = rt.block_on(async {
        // A page on another site posting a ConfigMap as text/plain (no preflight needed).
        let cross_site = http
            .post(format!("{url}/api/v1/namespaces/default/configmaps"))
            .header("content-type", "text/plain")
            .header("origin", "https://evil.example")
            .body(r#"{"metadata":{"name":"planted"},"data":{"x":"y"}}"#)
            .send()
            .await
            .unwrap();
        // A page whose name now resolves to 127.0.0.1 reading Secrets.
        let port = url.rsplit(':').next().unwrap().to_string();
        let rebinding = http
            .get(format!("{url}/api/v1/secrets"))
            .header("host", format!("rebind.evil.example:{port}"))
            .send()
            .await
            .unwrap();
        let a = (
            cross_site.status().as_u16(),
            cross_site.text().await.unwrap(),
        );
        let b = (rebinding.status().as_u16(), rebinding.text().await.unwrap());
        (a, b)
    });
    assert_eq!(cross_site.0, 403, "{}", cross_site.1);
    let status: serde_json::Value = serde_json::from_str(&cross_site.1).unwrap();
    assert_eq!(status["reason"], "Forbidden");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("cross-site request refused"),
        "{status}"
    );
    assert_eq!(rebinding.0, 403, "{}", rebinding.1);
    assert!(rebinding.1.contains("DNS rebinding"), "{}", rebinding.1);
    // Nothing was created, and kubectl works as before.
    let cms = kubectl_ok(kc, &["get", "configmaps", "-o", "name"]);
    assert!(!cms.contains("planted"), "{cms}");
    kubectl_ok(kc, &["create", "configmap", "mine", "--from-literal=a=b"]);
    kubectl_ok(kc, &["get", "secrets", "-A"]);
}

#[test]
fn oversized_and_deeply_nested_bodies_get_kube_apiservers_answers() {
    let local = start(&["--addr", "127.0.0.1:0"], &[]);
    let kc = &local.kubeconfig;
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.txt");
    std::fs::write(&big, "x".repeat(3 * 1024 * 1024 + 1)).unwrap();
    let out = kubectl(
        kc,
        &[
            "create",
            "configmap",
            "big",
            &format!("--from-file={}", big.display()),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    // kubectl words it "failed to create configmap: Request entity too large: ...".
    assert!(
        err.contains("Request entity too large: limit is 3145728"),
        "{err}"
    );
    // 400 KB of nested flow mappings: refused at once instead of parsed in quadratic time.
    let deep = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: deep}}\ndata:\n  x: {}1{}\n",
        "{a: ".repeat(100_000),
        "}".repeat(100_000)
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (code, body) = rt.block_on(async {
        let r = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(format!(
                "{}/api/v1/namespaces/default/configmaps",
                local.url
            ))
            .header("content-type", "application/yaml")
            .body(deep)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("error decoding YAML: the input nests more than 100 levels deep (line 5"),
        "{body}"
    );
}

#[tokio::test]
async fn sigterm_stops_it_cleanly() {
    let mut local = start(&["--addr", "127.0.0.1:0"], &[]);
    kubectl_ok(&local.kubeconfig, &["get", "namespaces"]);
    let ok = Command::new("kill")
        .args(["-TERM", &local.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM");
    let asked = Instant::now();
    let status = loop {
        if let Some(status) = local.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "flagger local still running 5s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!(
        "flagger local: ended {:.0?} after SIGTERM, {status}",
        asked.elapsed()
    );
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
