//! Helpers of the scenarios that run the `flagger` binary as real processes against an
//! in-process localkube: kubectl, controller replicas (started, signalled, killed, restarted by
//! PID) and a scriptable webhook. What the chaos scenarios share with the controller's
//! in-process one (the podinfo fixture, the seeded choices, the fault mix, the rollout rounds,
//! every stored state of the apex Services' endpoints) is the controller tests' `chaos` module,
//! compiled here too.

#![allow(dead_code)]

#[path = "../../../controller/tests/support/chaos.rs"]
mod chaos;

pub use chaos::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::{Api, Client};

pub const BIN: &str = env!("CARGO_BIN_EXE_flagger");

/// Namespace of every scenario.
pub const NS: &str = "test";

pub fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).expect("stdin written");
    }
    drop(pipe);
    let out = child.wait_with_output().expect("kubectl ends");
    assert!(
        out.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// localkube in-process with the CRDs and the namespace [`NS`], a kubeconfig file for the
/// processes, and a client for the test.
pub struct Cluster {
    pub kube: localkube::Handle,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub client: Client,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let kube = localkube::Server::start(localkube::Config::default())
            .await
            .expect("localkube starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        kube.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        let crds = dir.path().join("crds.yaml");
        std::fs::write(&crds, flagger_api::crd::crds_yaml()).expect("crds written");
        kubectl(&kubeconfig, &["apply", "-f", &crds.to_string_lossy()], None);
        kubectl(
            &kubeconfig,
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"
            )),
        );
        let kc = kube::config::Kubeconfig::from_yaml(&kube.kubeconfig()).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("client config");
        let client = Client::try_from(config).expect("client");
        Cluster {
            kube,
            dir,
            kubeconfig,
            client,
        }
    }

    pub fn apply(&self, yaml: &str) -> String {
        kubectl(&self.kubeconfig, &["apply", "-f", "-"], Some(yaml))
    }

    /// Who holds the leader election Lease in [`NS`] ("" when nobody).
    pub async fn lease_holder(&self) -> String {
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(self.client.clone(), NS)
            .get_opt(flagger_controller::leader::LEASE_NAME)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .unwrap_or_default()
    }
}

/// A `flagger controller` process named `name` (with leader election, its Lease identity
/// starts with it), logging to `<dir>/<name>.log` across restarts.
pub struct Replica {
    pub name: String,
    pub child: Child,
    /// `-port`: its /metrics and /healthz (the same across restarts).
    pub port: u16,
    kubeconfig: PathBuf,
    log: PathBuf,
    flags: Vec<String>,
    /// Starts so far (1 + restarts).
    pub starts: u32,
}

impl Replica {
    pub fn start(kubeconfig: &Path, dir: &Path, name: &str, flags: &[&str]) -> Replica {
        let log = dir.join(format!("{name}.log"));
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let port = free_port();
        let child = spawn(kubeconfig, &log, name, &flags, port);
        Replica {
            name: name.into(),
            child,
            port,
            kubeconfig: kubeconfig.into(),
            log,
            flags,
            starts: 1,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (STOP, CONT, TERM, KILL) to this process only.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{signal} {} failed", self.child.id());
    }

    /// Whether the process has ended (reaped).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, reaped.
    pub fn kill9(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    /// Starts the process again with the same flags (as the kubelet restarts a container).
    pub fn restart(&mut self) {
        let _ = self.child.try_wait();
        self.child = spawn(
            &self.kubeconfig,
            &self.log,
            &self.name,
            &self.flags,
            self.port,
        );
        self.starts += 1;
    }

    /// Waits up to `bound` for the process to end; its status and how long it took.
    pub async fn wait_exit(&mut self, bound: Duration) -> Option<(ExitStatus, Duration)> {
        let start = Instant::now();
        while start.elapsed() < bound {
            if let Some(status) = self.exited() {
                return Some((status, start.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn spawn(kubeconfig: &Path, log: &Path, name: &str, flags: &[String], port: u16) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(BIN)
        .args([
            "controller",
            "--mesh-provider=kubernetes",
            "--min-analysis-interval=1s",
            "--metrics-server=http://127.0.0.1:9",
            "--log-level=info",
            &format!("--port={port}"),
        ])
        .args(flags)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("POD_NAME", name)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("flagger controller starts")
}

impl Drop for Replica {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.signal("CONT");
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Webhooks at `/<name>` answering the status set for `<name>` (200 by default).
#[derive(Clone)]
pub struct Hooks {
    pub addr: std::net::SocketAddr,
    status: Arc<Mutex<BTreeMap<String, u16>>>,
}

impl Hooks {
    pub async fn start() -> Hooks {
        let status: Arc<Mutex<BTreeMap<String, u16>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("hook listener");
        let addr = listener.local_addr().expect("hook address");
        let table = status.clone();
        let app = axum::Router::new().route(
            "/{name}",
            axum::routing::post(
                move |axum::extract::Path(name): axum::extract::Path<String>| {
                    let code = table
                        .lock()
                        .ok()
                        .and_then(|t| t.get(&name).copied())
                        .unwrap_or(200);
                    async move {
                        axum::http::StatusCode::from_u16(code)
                            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
                    }
                },
            ),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Hooks { addr, status }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    pub fn set(&self, name: &str, code: u16) {
        if let Ok(mut t) = self.status.lock() {
            t.insert(name.into(), code);
        }
    }
}
