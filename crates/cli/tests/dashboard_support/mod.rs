//! The world of the dashboard's tests and bench: localkube with RBAC on, Flagger's CRDs, two
//! namespaces with a canary each, users with known permissions, and `flagger dashboard`
//! running as a child process under the ServiceAccount and ClusterRole of
//! deploy/flagger/dashboard-rbac.yaml.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flagger_api::Canary;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

pub const DEADLINE: Duration = Duration::from_secs(30);

/// Static users (kube-apiserver's token file): `alice` may get and patch canaries in `alpha`;
/// `bob` may only get them in `alpha`; `carol` may get canaries in `beta`.
pub const TOKENS: &str =
    "alice-token,alice,uid-alice\nbob-token,bob,uid-bob,\"viewers\"\ncarol-token,carol,uid-carol\n";

const USERS_RBAC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: canary-operator, namespace: alpha}
rules:
  - {apiGroups: ["flagger.app"], resources: ["canaries"], verbs: ["get", "list", "watch", "patch"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-operates, namespace: alpha}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: canary-operator}
subjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: canary-viewer, namespace: alpha}
rules:
  - {apiGroups: ["flagger.app"], resources: ["canaries"], verbs: ["get", "list", "watch"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: viewers-view, namespace: alpha}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: canary-viewer}
subjects: [{kind: Group, name: viewers, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: canary-viewer, namespace: beta}
rules:
  - {apiGroups: ["flagger.app"], resources: ["canaries"], verbs: ["get", "list", "watch"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: carol-views, namespace: beta}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: canary-viewer}
subjects: [{kind: User, name: carol, apiGroup: rbac.authorization.k8s.io}]
"#;

fn canary(ns: &str) -> String {
    format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: podinfo, namespace: {ns}}}
spec:
  provider: kubernetes
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  service: {{port: 9898}}
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
    metrics:
      - {{name: request-success-rate, thresholdRange: {{min: 99}}, interval: 1m}}
"#
    )
}

pub struct Env {
    pub kube: localkube::Handle,
    pub dir: tempfile::TempDir,
    pub admin: PathBuf,
    pub client: Client,
}

pub fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("writes");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("kubectl ends");
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Env {
    pub async fn start() -> Env {
        let mut config = localkube::Config::default();
        config.auth.rbac = true;
        config.auth.static_tokens =
            localkube::auth::tokens::parse_token_file(TOKENS).expect("token file parses");
        let kube = localkube::Server::start(config)
            .await
            .expect("localkube starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let admin = dir.path().join("admin.kubeconfig");
        kube.write_kubeconfig(&admin).expect("kubeconfig");
        let kc = kube::config::Kubeconfig::from_yaml(&kube.kubeconfig()).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        let client = Client::try_from(cfg).expect("client");
        let env = Env {
            kube,
            dir,
            admin,
            client,
        };
        let admin = env.admin.clone();
        let docs = format!(
            "{}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: alpha}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: beta}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: flagger-system}}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: flagger, namespace: flagger-system}}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: nobody, namespace: default}}\n---\n{USERS_RBAC}\n---\n{}",
            flagger_api::crd::crds_yaml(),
            include_str!("../../../../deploy/flagger/dashboard-rbac.yaml"),
        );
        tokio::task::spawn_blocking(move || {
            kubectl(&admin, &["apply", "-f", "-"], Some(&docs));
        })
        .await
        .expect("apply");
        let admin = env.admin.clone();
        let canaries = format!("{}\n---\n{}", canary("alpha"), canary("beta"));
        tokio::task::spawn_blocking(move || {
            kubectl(&admin, &["apply", "-f", "-"], Some(&canaries));
        })
        .await
        .expect("apply");
        env
    }

    /// A ServiceAccount's token (TokenRequest).
    pub fn sa_token(&self, ns: &str, name: &str) -> String {
        self.kube
            .service_account_token(ns, name, 3600)
            .expect("token minted")
    }

    /// Starts `flagger dashboard` as the `flagger` ServiceAccount bound by
    /// deploy/flagger/dashboard-rbac.yaml.
    pub fn dashboard(&self, extra: &[&str]) -> Dashboard {
        let token = self.sa_token("flagger-system", "flagger");
        let kubeconfig = self.dir.path().join(format!(
            "dashboard-{}.kubeconfig",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("time")
                .as_nanos()
        ));
        std::fs::write(&kubeconfig, self.kube.kubeconfig_with_token(&token)).expect("write");
        Dashboard::start(&kubeconfig, extra)
    }

    pub fn canaries(&self, ns: &str) -> Api<Canary> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Writes the canary's weight and phase in its status, as the controller would.
    pub async fn set_weight(&self, ns: &str, weight: i32) {
        let patch = serde_json::json!({"status": {"phase": "Progressing", "canaryWeight": weight, "iterations": 0, "failedChecks": 0}});
        self.canaries(ns)
            .patch_status("podinfo", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("status patched");
    }
}

impl Env {
    /// One step of an analysis as the controller would record it: weight, the success rate's
    /// check, the last decision, and an event on the canary.
    pub async fn step(&self, ns: &str, weight: i32, success_rate: f64) {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let verdict = if success_rate >= 99.0 { "Pass" } else { "Fail" };
        let decision = format!("Advance podinfo.{ns} canary weight {weight}");
        let patch = serde_json::json!({"status": {
            "phase": "Progressing", "canaryWeight": weight, "iterations": 0, "failedChecks": 0,
            "lastTransitionTime": now,
            "analysis": {"lastDecision": decision, "checks": [{
                "name": "request-success-rate", "provider": "prometheus",
                "query": "sum(rate(http_requests_total{status!~\"5.*\"}[1m])) / sum(rate(http_requests_total[1m])) * 100",
                "value": success_rate, "min": 99.0, "verdict": verdict,
                "reason": format!("{success_rate} >= 99"), "time": now, "failures": 0}]}}});
        self.canaries(ns)
            .patch_status("podinfo", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("status patched");
        let events: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(self.client.clone(), ns);
        let event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("podinfo.{}", k8s_openapi::jiff::Timestamp::now().as_nanosecond()), "namespace": ns},
            "involvedObject": {"kind": "Canary", "name": "podinfo", "namespace": ns, "apiVersion": "flagger.app/v1beta1"},
            "reason": "Synced", "type": "Normal", "message": decision, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
            "source": {"component": "flagger"}
        }))
        .expect("an event");
        events
            .create(&Default::default(), &event)
            .await
            .expect("event created");
    }
}

pub struct Dashboard {
    pub child: Child,
    pub url: String,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Dashboard {
    pub fn start(kubeconfig: &Path, extra: &[&str]) -> Dashboard {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flagger"))
            .args(["dashboard", "--listen", "127.0.0.1:0", "--kubeconfig"])
            .arg(kubeconfig)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("flagger dashboard runs");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("dashboard serving on ") {
                    let url = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .trim_end_matches('/');
                    let _ = tx.send(url.to_string());
                }
                keep.lock().expect("lock").push_str(&(line + "\n"));
            }
        });
        let url = match rx.recv_timeout(DEADLINE) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the dashboard did not start within {DEADLINE:?}: {}",
                    log.lock().expect("lock")
                );
            }
        };
        Dashboard {
            child,
            url,
            stderr: log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `f` gives a value, or fails with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
