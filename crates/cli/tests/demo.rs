//! `flagger demo` end to end: the binary runs the whole demo (localkube with its data plane,
//! Prometheus, the load tester, the controller); with `--keep` it stays up, and the test then
//! checks the outcomes from the cluster with the real kubectl.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `flagger demo --keep --plain` run with `args`, up to the line that says how to reach the
/// cluster it keeps up; stop it with [`Kept::stop`].
struct Kept {
    child: std::process::Child,
    dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
    /// The demo's output so far.
    out: String,
}

impl Kept {
    fn run(args: &[&str]) -> Kept {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let mut child = Command::new(env!("CARGO_BIN_EXE_flagger"))
            .args(["demo", "--keep", "--plain", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("flagger demo starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("demo| {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let done = line.trim_start().starts_with("export KUBECONFIG=");
                    seen.push(line);
                    if done {
                        break;
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("demo did not finish ({e}); output:\n{}", seen.join("\n"));
                }
            }
        }
        Kept {
            child,
            dir,
            kubeconfig,
            out: seen.join("\n"),
        }
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

#[test]
fn demo_promotes_v2_and_rolls_back_v3() {
    let demo = Kept::run(&[]);
    let kubeconfig = demo.kubeconfig.clone();
    let out = demo.out.clone();
    // Under the demo's no-data policy (hold) the healthy runs count no failed check.
    assert!(
        out.contains("podinfo 6.0.1: promoted with 0 failed checks"),
        "{out}"
    );
    assert!(out.contains("podinfo 6.0.2: rolled back"), "{out}");
    assert!(
        out.contains("frontend 6.0.1: promoted after canary weights 0% -> 20% -> 40% -> 60%"),
        "{out}"
    );
    assert!(out.contains("frontend 6.0.2: rolled back"), "{out}");
    assert!(
        out.lines().any(
            |l| l.starts_with("frontend 6.0.1: promoted") && l.contains("with 0 failed checks")
        ),
        "{out}"
    );

    // The weighted canary's VirtualService sends everything to the primary again.
    let weights = kubectl(
        &kubeconfig,
        &[
            "-n",
            "test",
            "get",
            "virtualservice",
            "frontend",
            "-o",
            "jsonpath={.spec.http[0].route[*].weight}",
        ],
    );
    assert_eq!(weights, "100 0");

    // The cluster state says the same.
    let phase = kubectl(
        &kubeconfig,
        &[
            "-n",
            "test",
            "get",
            "canary",
            "podinfo",
            "-o",
            "jsonpath={.status.phase}",
        ],
    );
    assert_eq!(phase, "Failed");
    let image = kubectl(
        &kubeconfig,
        &[
            "-n",
            "test",
            "get",
            "deploy",
            "podinfo-primary",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    );
    assert_eq!(image, "ghcr.io/stefanprodan/podinfo:6.0.1");
    let replicas = kubectl(
        &kubeconfig,
        &[
            "-n",
            "test",
            "get",
            "deploy",
            "podinfo",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
    );
    assert_eq!(replicas, "0", "the faulty canary is scaled down");
    let events = kubectl(
        &kubeconfig,
        &[
            "-n",
            "test",
            "get",
            "events",
            "-o",
            "jsonpath={.items[*].message}",
        ],
    );
    assert!(
        events.contains("Promotion completed! Scaling down podinfo.test"),
        "{events}"
    );
    assert!(
        events.contains("Rolling back podinfo.test failed checks threshold reached"),
        "{events}"
    );
    assert!(
        events.contains("Pre-rollout check acceptance-test passed"),
        "{events}"
    );
    // The timeline and every Event read as plain text: an API failure as the API server's
    // message, never the client's debug rendering.
    for debug in [
        "Some(",
        "None,",
        "Status {",
        "ApiError",
        "ErrorResponse",
        "{ ",
    ] {
        assert!(!out.contains(debug), "{debug:?} in the timeline:\n{out}");
        assert!(
            !events.contains(debug),
            "{debug:?} in the events:\n{events}"
        );
    }

    // `kubectl flagger` as a kubectl plugin: the rolled-back canary explained.
    let bin = demo.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_flagger"), bin.join("kubectl-flagger")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let plugin = |args: &[&str]| {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", &kubeconfig)
            .env("PATH", &path)
            .arg("flagger")
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl flagger {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let why = plugin(&["-n", "test", "why", "podinfo"]);
    println!("{why}");
    assert!(
        why.contains("Last decision: rolled back at iteration"),
        "{why}"
    );
    assert!(why.contains("request-success-rate"), "{why}");
    assert!(why.contains("threshold: >= 99"), "{why}");
    assert!(why.contains("query:     "), "{why}");
    assert!(why.contains("Rolling back podinfo.test"), "{why}");
    let get = plugin(&["get", "-A"]);
    assert!(
        get.contains("frontend") && get.contains("after 2 of 2 failed checks"),
        "{get}"
    );
    let history = plugin(&["-n", "test", "history", "podinfo"]);
    assert!(
        history.contains("promoted") && history.contains("failed"),
        "{history}"
    );

    demo.stop();
}

/// `flagger demo --provider contour`: only the weighted demo, on Contour: the data plane plays
/// Contour's Envoy from the user's root HTTPProxy and the one the controller writes, and the
/// builtin checks read Envoy's cluster statistics.
#[test]
fn demo_on_contour_promotes_and_rolls_back() {
    let demo = Kept::run(&["--provider", "contour"]);
    let out = &demo.out;
    assert!(
        out.contains("frontend 6.0.1: promoted after canary weights 0% -> 20% -> 40% -> 60%"),
        "{out}"
    );
    assert!(out.contains("frontend 6.0.2: rolled back"), "{out}");
    assert!(!out.contains("podinfo 6.0.1"), "no blue/green demo: {out}");
    let weights = kubectl(
        &demo.kubeconfig,
        &[
            "-n",
            "test",
            "get",
            "httpproxy",
            "frontend",
            "-o",
            "jsonpath={.spec.routes[0].services[*].weight}",
        ],
    );
    assert_eq!(weights, "100 0");
    let events = kubectl(
        &demo.kubeconfig,
        &[
            "-n",
            "test",
            "get",
            "events",
            "-o",
            "jsonpath={.items[*].message}",
        ],
    );
    assert!(
        events.contains("Halt frontend.test advancement success rate"),
        "{events}"
    );
    demo.stop();
}
