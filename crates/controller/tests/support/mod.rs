//! End-to-end environment: localkube in-process, the real kubectl, a real Prometheus scraping a
//! test exporter of podinfo-style request metrics for the simulated pods, a scriptable webhook
//! server, and the controller itself, all on ephemeral ports.

#![allow(dead_code)]

pub mod chaos;
pub mod exporter;
pub mod fakes;
pub mod graphite;
pub mod hooks;
pub mod keptn;
pub mod load;
pub mod routing;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagger_api::{Canary, CanaryPhase};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::process::Command;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Namespace every scenario uses.
pub const NS: &str = "test";

/// What to start next to localkube and the controller.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Start the test exporter and a real Prometheus (metric analysis); with `dataplane`, it
    /// scrapes the data plane's metrics too.
    pub prometheus: bool,
    /// Number of simulated nodes (DaemonSet scenarios).
    pub nodes: usize,
    /// Start localkube's data plane (requests through its proxy reach the simulated pods).
    pub dataplane: bool,
    /// Extra controller flags.
    pub controller_args: &'static [&'static str],
    /// The annotation prefix the data plane's NGINX ingress reads (ingress-nginx's
    /// `--annotations-prefix`); `nginx.ingress.kubernetes.io` when `None`.
    pub nginx_annotations_prefix: Option<&'static str>,
    /// Run the controller with the global Slack notifier (`-slack-url` at the hook `global`,
    /// `-slack-channel=general`) and `-cluster-name=e2e`.
    pub global_notifier: bool,
    /// Serve the controller's HTTP port on a fixed free port (`Env::controller_url`) and, with
    /// `prometheus`, have Prometheus scrape its `/metrics` (job `flagger`), as the pod's
    /// prometheus.io annotations do in a cluster. The controller must then not be restarted
    /// within the test.
    pub scrape_controller: bool,
    /// With `prometheus` and `dataplane`: no test exporter, Prometheus sees only the requests
    /// the pods really answered (probes included).
    pub no_exporter: bool,
    /// Changes to localkube's simulator settings (the HPA's sync period, the KEDA scaler, ...).
    pub sim: Option<fn(&mut localkube::controllers::SimConfig)>,
    /// Run the controller as cluster admin on a server without RBAC, instead of under its
    /// own RBAC (`deploy/flagger`: ServiceAccount `flagger-system/flagger` and its
    /// ClusterRole) on a server that enforces it, the default.
    pub admin_controller: bool,
}

/// Where the controller's ServiceAccount lives, as `deploy/flagger` installs it.
pub const CONTROLLER_NS: &str = "flagger-system";
/// The user the controller's token authenticates as.
pub const CONTROLLER_USER: &str = "system:serviceaccount:flagger-system:flagger";

/// The controller's ServiceAccount, ClusterRole and ClusterRoleBinding from `deploy/flagger`,
/// as kustomize renders them into `flagger-system`.
pub fn controller_rbac_yaml() -> String {
    let account = include_str!("../../../../deploy/flagger/account.yaml");
    let rbac = include_str!("../../../../deploy/flagger/rbac.yaml").replace(
        "  - kind: ServiceAccount\n    name: flagger\n",
        &format!("  - kind: ServiceAccount\n    name: flagger\n    namespace: {CONTROLLER_NS}\n"),
    );
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {CONTROLLER_NS}}}\n---\n{}\n---\n{rbac}",
        account.replace(
            "metadata:\n  name: flagger\n",
            &format!("metadata:\n  name: flagger\n  namespace: {CONTROLLER_NS}\n")
        )
    )
}

/// Where each e2e environment leaves the controller's authorization decisions (one JSON file
/// per test), for `rbac_coverage`.
pub fn audit_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rbac-audit")
}

/// A running environment; everything stops when it is dropped.
pub struct Env {
    pub kube: localkube::Handle,
    pub client: Client,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub hooks: hooks::Hooks,
    pub prometheus: Option<Prometheus>,
    pub phases: PhaseLog,
    /// The client the controller runs with: its ServiceAccount's token (or `client` with
    /// `admin_controller`).
    pub controller_client: Client,
    controller: Option<Controller>,
    metrics_server: String,
    controller_args: Vec<String>,
    global_notifier: bool,
    /// `-port` of the controller (0: any).
    controller_port: u16,
}

struct Controller {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Env {
    pub async fn start(opts: Options) -> Env {
        init_tracing();
        let mut config = localkube::Config::default();
        config.auth.rbac = !opts.admin_controller;
        // As OpenShift and hardened clusters run it: owner references with
        // blockOwnerDeletion need `update` on the owner's finalizers.
        config.auth.owner_references_permission_enforcement = true;
        config.sim.nodes = opts.nodes.max(1);
        if let Some(change) = opts.sim {
            change(&mut config.sim);
        }
        if opts.dataplane {
            let mut router = localkube::dataplane::MeshRouter::default();
            if let Some(prefix) = opts.nginx_annotations_prefix {
                router = router.with_nginx_annotations_prefix(prefix);
            }
            config.dataplane = Some(localkube::dataplane::DataPlaneConfig {
                default_namespace: NS.into(),
                router: std::sync::Arc::new(router),
                ..Default::default()
            });
        }
        let kube = localkube::Server::start(config)
            .await
            .expect("localkube starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        kube.write_kubeconfig(&kubeconfig)
            .expect("kubeconfig written");
        let kc = kube::config::Kubeconfig::from_yaml(&kube.kubeconfig()).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("client config");
        let client = Client::try_from(cfg).expect("client");

        // CRDs, as a user installs them.
        let crds = dir.path().join("crds.yaml");
        std::fs::write(&crds, flagger_api::crd::crds_yaml()).expect("crds written");
        kubectl_at(&kubeconfig, &["apply", "-f", &crds.to_string_lossy()], None).await;
        kubectl_at(
            &kubeconfig,
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"
            )),
        )
        .await;

        // The controller's identity and RBAC, as `kubectl apply -k deploy/flagger` installs
        // them, and a kubeconfig with its ServiceAccount's token.
        let controller_client = if opts.admin_controller {
            client.clone()
        } else {
            kubectl_at(
                &kubeconfig,
                &["apply", "-f", "-"],
                Some(&controller_rbac_yaml()),
            )
            .await;
            let token = kube
                .service_account_token(CONTROLLER_NS, "flagger", 24 * 3600)
                .expect("controller token");
            let kc = kube::config::Kubeconfig::from_yaml(&kube.kubeconfig_with_token(&token))
                .expect("controller kubeconfig");
            let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .expect("controller client config");
            Client::try_from(cfg).expect("controller client")
        };

        let hooks = hooks::Hooks::start().await;
        let controller_port = if opts.scrape_controller {
            free_port()
        } else {
            0
        };
        let (prometheus, metrics_server) = if opts.prometheus {
            let exporter = if opts.no_exporter {
                None
            } else {
                Some(exporter::start(client.clone()).await)
            };
            // With the data plane on, Prometheus scrapes it as it scrapes a cluster: the pods
            // annotated `prometheus.io/scrape` through it (Flagger's pod job, discovery by the
            // data plane), and the proxies' series on its own endpoint.
            let dataplane = kube
                .dataplane
                .as_ref()
                .map(|d| d.prometheus_scrape_configs("1s"));
            let controller = (controller_port != 0).then(|| format!("127.0.0.1:{controller_port}"));
            let prom = Prometheus::start(
                dir.path(),
                exporter,
                dataplane.as_deref(),
                controller.as_deref(),
            )
            .await;
            let url = prom.url();
            (Some(prom), url)
        } else {
            // Nothing listens there: analyses without metrics never ask.
            (None, "http://127.0.0.1:9".to_string())
        };
        let phases = PhaseLog::start(client.clone());
        let mut env = Env {
            kube,
            client,
            dir,
            kubeconfig,
            hooks,
            prometheus,
            phases,
            controller_client,
            controller: None,
            metrics_server,
            controller_args: opts.controller_args.iter().map(|s| s.to_string()).collect(),
            global_notifier: opts.global_notifier,
            controller_port,
        };
        env.start_controller().await;
        env
    }

    /// The controller's HTTP server (`/metrics`); a fixed port only with `scrape_controller`.
    pub fn controller_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.controller_port)
    }

    /// Starts the controller (in-process, as `flagger controller` runs it).
    pub async fn start_controller(&mut self) {
        let extra = self.controller_args.clone();
        self.start_controller_with(&extra).await;
    }

    /// Starts the controller with extra flags.
    pub async fn start_controller_with(&mut self, extra: &[String]) {
        let port = format!("--port={}", self.controller_port);
        let mut argv: Vec<String> = [
            "controller",
            "--mesh-provider=kubernetes",
            "--metrics-server",
            &self.metrics_server,
            "--min-analysis-interval=1s",
            &port,
            "--log-level=info",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        argv.extend(extra.iter().cloned());
        if self.global_notifier {
            argv.push(format!("-slack-url={}", self.hooks.url("global")));
            argv.push("-slack-channel=general".into());
            argv.push("-cluster-name=e2e".into());
        }
        let args = flagger_controller::Args::try_parse_from(argv).expect("controller flags parse");
        let (stop, rx) = oneshot::channel::<()>();
        let client = self.controller_client.clone();
        let task = tokio::spawn(async move {
            flagger_controller::run::serve(client, args, async move {
                let _ = rx.await;
            })
            .await
        });
        self.controller = Some(Controller { stop, task });
    }

    /// Stops the controller and waits until it has shut down.
    pub async fn stop_controller(&mut self) {
        if let Some(c) = self.controller.take() {
            let _ = c.stop.send(());
            let result = tokio::time::timeout(DEADLINE, c.task)
                .await
                .expect("controller stops in time");
            result.expect("controller task").expect("controller ran");
        }
    }

    /// Runs the real kubectl against localkube; panics with its stderr when it fails.
    pub async fn kubectl(&self, args: &[&str]) -> String {
        kubectl_at(&self.kubeconfig, args, None).await
    }

    /// Runs kubectl with `stdin` (e.g. `apply -f -`).
    pub async fn kubectl_in(&self, args: &[&str], stdin: &str) -> String {
        kubectl_at(&self.kubeconfig, args, Some(stdin)).await
    }

    /// `kubectl apply -f -` of a YAML document.
    pub async fn apply(&self, yaml: &str) -> String {
        self.kubectl_in(&["apply", "-f", "-"], yaml).await
    }

    pub async fn canary(&self, name: &str) -> Canary {
        Api::<Canary>::namespaced(self.client.clone(), NS)
            .get(name)
            .await
            .expect("canary exists")
    }

    /// Waits until the canary reaches `phase`; returns it.
    pub async fn wait_phase(&self, name: &str, phase: CanaryPhase) -> Canary {
        let api = Api::<Canary>::namespaced(self.client.clone(), NS);
        let what = format!("canary {name} in phase {phase:?}");
        let last = Arc::new(Mutex::new(String::new()));
        let seen = last.clone();
        wait_for(&what, &last, || {
            let api = api.clone();
            let seen = seen.clone();
            async move {
                let c = api.get_opt(name).await.ok().flatten()?;
                let got = c.status.as_ref().map(|s| s.phase).unwrap_or_default();
                if let Ok(mut s) = seen.lock() {
                    *s = format!("{got:?}: {:?}", c.status);
                }
                (got == phase).then_some(c)
            }
        })
        .await
    }

    /// Waits until an event on the canary contains `text`; returns its message.
    pub async fn wait_event(&self, name: &str, text: &str) -> String {
        let what = format!("an event on canary {name} containing {text:?}");
        let last = Arc::new(Mutex::new(String::new()));
        let seen = last.clone();
        wait_for(&what, &last, || {
            let seen = seen.clone();
            async move {
                let messages = self.events(name).await;
                let hit = messages.iter().find(|m| m.contains(text)).cloned();
                if let Ok(mut s) = seen.lock() {
                    *s = messages.join("\n");
                }
                hit
            }
        })
        .await
    }

    /// Messages of the core/v1 events about the canary, oldest first.
    pub async fn events(&self, name: &str) -> Vec<String> {
        let events = Api::<Event>::namespaced(self.client.clone(), NS)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let mut mine: Vec<&Event> = events
            .iter()
            .filter(|e| {
                e.involved_object.kind.as_deref() == Some("Canary")
                    && e.involved_object.name.as_deref() == Some(name)
            })
            .collect();
        mine.sort_by_key(|e| e.first_timestamp.clone().map(|t| t.0));
        mine.iter().filter_map(|e| e.message.clone()).collect()
    }

    /// How many times an event containing `text` was recorded (aggregated counts included).
    pub async fn event_count(&self, name: &str, text: &str) -> i32 {
        Api::<Event>::namespaced(self.client.clone(), NS)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .iter()
            .filter(|e| {
                e.involved_object.name.as_deref() == Some(name)
                    && e.message.as_deref().is_some_and(|m| m.contains(text))
            })
            .map(|e| e.count.unwrap_or(1))
            .sum()
    }

    /// A field of an object through `kubectl get -o jsonpath`.
    pub async fn jsonpath(&self, resource: &str, path: &str) -> String {
        self.kubectl(&[
            "-n",
            NS,
            "get",
            resource,
            "-o",
            &format!("jsonpath={{{path}}}"),
        ])
        .await
    }

    /// Waits until an object no longer exists (e.g. garbage collected).
    pub async fn wait_gone(&self, resource: &str) {
        let what = format!("{resource} gone");
        let last = Arc::new(Mutex::new(String::new()));
        let seen = last.clone();
        wait_for(&what, &last, || {
            let seen = seen.clone();
            async move {
                match kubectl_try(&self.kubeconfig, &["-n", NS, "get", resource, "-o", "name"])
                    .await
                {
                    Err(e) if e.contains("NotFound") => Some(()),
                    other => {
                        if let Ok(mut s) = seen.lock() {
                            *s = format!("{other:?}");
                        }
                        None
                    }
                }
            }
        })
        .await
    }

    /// Waits until a jsonpath of an object equals `want`.
    pub async fn wait_jsonpath(&self, resource: &str, path: &str, want: &str) {
        let what = format!("{resource} {path} == {want:?}");
        let last = Arc::new(Mutex::new(String::new()));
        let seen = last.clone();
        wait_for(&what, &last, || {
            let seen = seen.clone();
            async move {
                let out = kubectl_try(
                    &self.kubeconfig,
                    &[
                        "-n",
                        NS,
                        "get",
                        resource,
                        "-o",
                        &format!("jsonpath={{{path}}}"),
                    ],
                )
                .await
                .unwrap_or_else(|e| e);
                let hit = (out == want).then_some(());
                if let Ok(mut s) = seen.lock() {
                    *s = out;
                }
                hit
            }
        })
        .await
    }
}

impl Env {
    /// The controller's authorization decisions so far.
    pub fn controller_audit(&self) -> Vec<localkube::auth::AuditRecord> {
        self.kube
            .auth()
            .audit
            .records()
            .into_iter()
            .filter(|r| r.user == CONTROLLER_USER)
            .collect()
    }

    /// Leaves the controller's decisions in [`audit_dir`] and fails the test when the
    /// controller was refused anything: its RBAC must cover all it asks.
    fn finish_audit(&self) {
        if !self.kube.auth().enabled() {
            return;
        }
        let rows = self.controller_audit();
        let binary = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .map(|s| s.split('-').next().unwrap_or_default().to_string())
            .unwrap_or_default();
        let test = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .replace("::", "__");
        let dir = audit_dir();
        if std::fs::create_dir_all(&dir).is_ok() {
            let body = serde_json::json!({"suite": binary, "test": test, "decisions": rows});
            let _ = std::fs::write(
                dir.join(format!("{binary}--{test}.json")),
                serde_json::to_vec_pretty(&body).unwrap_or_default(),
            );
        }
        let denied: Vec<String> = rows
            .iter()
            .filter(|r| !r.allowed)
            .map(|r| {
                format!(
                    "{} {}/{} in {:?} ({} times)",
                    r.verb, r.api_group, r.resource, r.namespace, r.count
                )
            })
            .collect();
        if !denied.is_empty() && !std::thread::panicking() {
            panic!(
                "the controller was refused by its RBAC (deploy/flagger/rbac.yaml):\n{}",
                denied.join("\n")
            );
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(c) = self.controller.take() {
            let _ = c.stop.send(());
            c.task.abort();
        }
        self.finish_audit();
        self.kube.shutdown();
    }
}

/// Polls `f` every 50 ms until it yields a value; fails the test after [`DEADLINE`] with what
/// was last seen.
pub async fn wait_for<T, F, Fut>(what: &str, last: &Mutex<String>, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            let seen = last.lock().map(|s| s.clone()).unwrap_or_default();
            panic!("timed out after {DEADLINE:?} waiting for {what}; last seen:\n{seen}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn kubectl_at(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = Command::new("kubectl");
    cmd.env("KUBECONFIG", kubeconfig)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .expect("kubectl is installed (/usr/bin/kubectl)");
    if let Some(input) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut pipe = child.stdin.take().expect("stdin piped");
        pipe.write_all(input.as_bytes())
            .await
            .expect("stdin written");
        drop(pipe);
    }
    let out = child.wait_with_output().await.expect("kubectl ran");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl {} failed: {}{}",
        args.join(" "),
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn kubectl_try(kubeconfig: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("flagger_controller=info")),
        )
        .with_test_writer()
        .try_init();
}

/// Every phase each canary went through, in order, from a watch.
#[derive(Clone)]
pub struct PhaseLog {
    seen: Arc<Mutex<Vec<(String, CanaryPhase)>>>,
}

impl PhaseLog {
    fn start(client: Client) -> Self {
        let seen: Arc<Mutex<Vec<(String, CanaryPhase)>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            let api = Api::<Canary>::all(client);
            let stream = watcher(api, watcher::Config::default()).applied_objects();
            futures::pin_mut!(stream);
            while let Some(Ok(c)) = stream.next().await {
                let phase = c.status.as_ref().map(|s| s.phase).unwrap_or_default();
                if let Ok(mut s) = log.lock() {
                    let name = c.name_any();
                    let last = s.iter().rev().find(|(n, _)| *n == name).map(|(_, p)| *p);
                    if last != Some(phase) {
                        s.push((name, phase));
                    }
                }
            }
        });
        PhaseLog { seen }
    }

    /// The phases of one canary, consecutive duplicates removed.
    pub fn of(&self, name: &str) -> Vec<CanaryPhase> {
        self.seen
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, p)| *p)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A real Prometheus (Debian's package) scraping the test exporter every 500 ms and, when the
/// data plane runs, the pods through it (job `kubernetes-pods`: podinfo's own series with the
/// pod's labels) and its proxies' series (`istio_requests_total`, `response_total`, ...); with
/// `scrape_controller`, the controller's `/metrics` (job `flagger`).
pub struct Prometheus {
    child: tokio::process::Child,
    pub addr: SocketAddr,
}

impl Prometheus {
    async fn start(
        dir: &Path,
        exporter: Option<SocketAddr>,
        dataplane: Option<&str>,
        controller: Option<&str>,
    ) -> Prometheus {
        // `dataplane`: the data plane's scrape_configs entries.
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let config = dir.join("prometheus.yml");
        let mut yaml =
            "global:\n  scrape_interval: 500ms\n  evaluation_interval: 1s\nscrape_configs:\n"
                .to_string();
        if let Some(exporter) = exporter {
            yaml.push_str(&format!(
                "- job_name: pods\n  honor_labels: true\n  static_configs:\n  - targets: ['{exporter}']\n"
            ));
        }
        if let Some(jobs) = dataplane {
            yaml.push_str(jobs);
        }
        if let Some(target) = controller {
            yaml.push_str(&format!(
                "- job_name: flagger\n  metrics_path: /metrics\n  static_configs:\n  - targets: ['{target}']\n"
            ));
        }
        std::fs::write(&config, yaml).expect("prometheus config written");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect(
                "prometheus is installed (scripts/test.sh installs Debian's package; \
                 or run `apt-get install prometheus`)",
            );
        let prom = Prometheus { child, addr };
        let http = reqwest::Client::new();
        let ready = format!("{}/-/ready", prom.url());
        let last = Mutex::new(String::new());
        wait_for("prometheus ready", &last, || {
            let http = http.clone();
            let ready = ready.clone();
            async move {
                let r = http.get(&ready).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        // Static targets reach the scrape loop a few seconds after start: wait for a scrape.
        let job = if exporter.is_some() {
            r#"up{job="pods"}"#
        } else {
            r#"up{job="localkube-dataplane"}"#
        };
        let last = Mutex::new(String::new());
        wait_for("prometheus scraping its first target", &last, || async {
            (prom.query(job).await == Some(1.0)).then_some(())
        })
        .await;
        prom
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Runs an instant query; the first sample's value, if any.
    pub async fn query(&self, q: &str) -> Option<f64> {
        let body: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url()))
            .query(&[("query", q)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        body.pointer("/data/result/0/value/1")?
            .as_str()?
            .parse()
            .ok()
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
