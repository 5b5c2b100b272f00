//! `flagger uninstall` against localkube with the real kubectl: a Canary taken over from a
//! pre-existing Service is handed back (target scaled up and ready, the Service's own selector
//! and ports restored) and removed, with no controller running.

use std::path::Path;
use std::process::Command;

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("stdin written");
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("kubectl ends");
    assert!(
        out.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The state a controller leaves after initializing Canary `app` over a Service `app` that
/// existed before it (selector `app: app`, port 8080), with the target scaled to zero.
const CLUSTER_STATE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: test}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: test}
spec:
  replicas: 0
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec: {containers: [{name: app, image: "ghcr.io/stefanprodan/podinfo:6.0.0", ports: [{name: http, containerPort: 9898}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app-primary, namespace: test}
spec:
  replicas: 3
  selector: {matchLabels: {app: app-primary}}
  template:
    metadata: {labels: {app: app-primary}}
    spec: {containers: [{name: app, image: "ghcr.io/stefanprodan/podinfo:6.0.0", ports: [{name: http, containerPort: 9898}]}]}
---
apiVersion: v1
kind: Service
metadata:
  name: app
  namespace: test
  annotations:
    flagger.app/original-service: '{"selector":{"app":"app"},"ports":[{"name":"web","port":8080,"protocol":"TCP","targetPort":9898}]}'
spec:
  selector: {app: app-primary}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: app, namespace: test, finalizers: [finalizer.flagger.app]}
spec:
  provider: kubernetes
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: app}
  service: {port: 80, targetPort: http}
  analysis: {interval: 10s, threshold: 2, iterations: 2}
"#;

#[test]
fn hands_back_a_taken_over_service_and_removes_the_canary() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let handle = rt
        .block_on(localkube::Server::start(localkube::Config::default()))
        .expect("localkube starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let kc = dir.path().join("kubeconfig");
    handle.write_kubeconfig(&kc).expect("kubeconfig");
    let crds = dir.path().join("crds.yaml");
    std::fs::write(&crds, flagger_api::crd::crds_yaml()).expect("crds written");
    kubectl(&kc, &["apply", "-f", &crds.to_string_lossy()], None);
    kubectl(&kc, &["apply", "-f", "-"], Some(CLUSTER_STATE));

    let out = Command::new(env!("CARGO_BIN_EXE_flagger"))
        .args([
            "uninstall",
            "-n",
            "test",
            "--timeout",
            "60s",
            "--kubeconfig",
        ])
        .arg(&kc)
        .output()
        .expect("flagger runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "uninstall failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "test/app: suspended",
        "test/app: Deployment app scaled up and ready (3/3)",
        "test/app: Service app given back its own selector and ports (selector app=app)",
        "test/app: Service app has 3 ready endpoints",
        "test/app: Canary deleted",
        "1 Canaries handed over",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
    let svc: serde_json::Value = serde_json::from_str(&kubectl(
        &kc,
        &["-n", "test", "get", "service", "app", "-o", "json"],
        None,
    ))
    .expect("service JSON");
    assert_eq!(svc["spec"]["selector"], serde_json::json!({"app": "app"}));
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["name"], "web");
    assert!(svc["metadata"]["annotations"]["flagger.app/original-service"].is_null());
    let canaries = kubectl(&kc, &["-n", "test", "get", "canaries", "-o", "name"], None);
    assert!(canaries.trim().is_empty(), "canaries left: {canaries}");
}

#[test]
fn an_unreachable_cluster_fails_before_changing_anything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kc = dir.path().join("kubeconfig");
    std::fs::write(&kc, localkube::kubeconfig_for("http://127.0.0.1:9")).expect("kubeconfig");
    let out = Command::new(env!("CARGO_BIN_EXE_flagger"))
        .args(["uninstall", "--kubeconfig"])
        .arg(&kc)
        .output()
        .expect("flagger runs");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("listing Canaries"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
