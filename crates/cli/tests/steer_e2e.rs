//! `kubectl flagger` end to end (issue 18): the real kubectl runs the `flagger` binary as its
//! `kubectl-flagger` plugin against localkube with the controller, while a GitOps applier
//! re-applies the Canary every second (server-side apply with force, as Flux does). Each
//! request (promote, abort, pause/resume, retry) takes effect and holds; the applier reverts
//! nothing, and the request annotation is gone once done.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flagger_api::Canary;
use kube::{Api, Client};

const NS: &str = "test";
const DEADLINE: Duration = Duration::from_secs(60);

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: podinfo, namespace: test}
spec:
  replicas: 1
  selector: {matchLabels: {app: podinfo}}
  template:
    metadata: {labels: {app: podinfo}}
    spec: {containers: [{name: podinfo, image: "ghcr.io/stefanprodan/podinfo:6.0.0", ports: [{name: http, containerPort: 9898}]}]}
"#;

/// The Canary as it is in Git: many iterations, so only a request ends a run early.
const CANARY: &str = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  provider: kubernetes
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  progressDeadlineSeconds: 60
  service: {port: 9898, targetPort: 9898}
  analysis: {interval: 1s, threshold: 2, iterations: 1000}
"#;

struct Cluster {
    kube: localkube::Handle,
    client: Client,
    kubeconfig: PathBuf,
    path: String,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.kube.shutdown();
    }
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().expect("the command runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Cluster {
    async fn start() -> Cluster {
        let kube = localkube::Server::start(localkube::Config::default())
            .await
            .expect("localkube starts");
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        kube.write_kubeconfig(&kubeconfig).unwrap();
        // The plugin as kubectl finds it: `kubectl-flagger` on the PATH.
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_flagger"), bin.join("kubectl-flagger"))
            .unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let kc = kube::config::Kubeconfig::from_yaml(&kube.kubeconfig()).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        let client = Client::try_from(cfg).unwrap();
        let mut cluster = Cluster {
            kube,
            client,
            kubeconfig,
            path,
            _dir: dir,
            stop: None,
        };
        let crds = cluster._dir.path().join("crds.yaml");
        std::fs::write(&crds, flagger_api::crd::crds_yaml()).unwrap();
        cluster.kubectl(&["apply", "-f", &crds.to_string_lossy()]);
        cluster.kubectl_in(
            &["apply", "-f", "-"],
            &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"),
        );
        let args = flagger_controller::Args::try_parse_from([
            "controller",
            "--mesh-provider=kubernetes",
            "--metrics-server=http://127.0.0.1:9",
            "--min-analysis-interval=1s",
            "--port=0",
        ])
        .unwrap();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let client = cluster.client.clone();
        tokio::spawn(async move {
            flagger_controller::run::serve(client, args, async move {
                let _ = rx.await;
            })
            .await
        });
        cluster.stop = Some(stop);
        cluster
    }

    fn kubectl_cmd(&self) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("PATH", &self.path);
        cmd
    }

    fn kubectl(&self, args: &[&str]) -> String {
        run(self.kubectl_cmd().args(args))
            .unwrap_or_else(|e| panic!("kubectl {}: {e}", args.join(" ")))
    }

    fn kubectl_in(&self, args: &[&str], stdin: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.yaml");
        std::fs::write(&file, stdin).unwrap();
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                if *a == "-" {
                    file.to_string_lossy().into_owned()
                } else {
                    a.to_string()
                }
            })
            .collect();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.kubectl(&refs)
    }

    /// `kubectl flagger -n test ARGS`.
    fn plugin(&self, args: &[&str]) -> String {
        let mut all = vec!["flagger", "-n", NS];
        all.extend_from_slice(args);
        self.kubectl(&all)
    }

    async fn canary(&self) -> Canary {
        Api::<Canary>::namespaced(self.client.clone(), NS)
            .get("podinfo")
            .await
            .unwrap()
    }

    /// Waits until `ok` holds for the canary; fails with its last state after [`DEADLINE`].
    async fn wait(&self, what: &str, ok: impl Fn(&Canary) -> bool) -> Canary {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let c = Api::<Canary>::namespaced(self.client.clone(), NS)
                .get_opt("podinfo")
                .await
                .unwrap();
            if let Some(c) = &c
                && ok(c)
            {
                return c.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {}",
                serde_json::to_string(&c).unwrap(),
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn set_image(&self, tag: &str) {
        self.kubectl(&[
            "-n",
            NS,
            "set",
            "image",
            "deployment/podinfo",
            &format!("podinfo=ghcr.io/stefanprodan/podinfo:{tag}"),
        ]);
    }

    fn primary_image(&self) -> String {
        self.kubectl(&[
            "-n",
            NS,
            "get",
            "deploy",
            "podinfo-primary",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
    }
}

/// Re-applies the Canary from "Git" every second with server-side apply and force, as Flux
/// does; counts its cycles.
struct Applier {
    stop: Arc<AtomicBool>,
    cycles: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Applier {
    fn start(kubeconfig: &Path) -> Applier {
        let stop = Arc::new(AtomicBool::new(false));
        let cycles = Arc::new(AtomicUsize::new(0));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("canary.yaml");
        std::fs::write(&file, CANARY).unwrap();
        let (s, c, kc) = (stop.clone(), cycles.clone(), kubeconfig.to_path_buf());
        let thread = std::thread::spawn(move || {
            let _dir = dir;
            while !s.load(Ordering::SeqCst) {
                let out = Command::new("kubectl")
                    .env("KUBECONFIG", &kc)
                    .args([
                        "apply",
                        "--server-side",
                        "--force-conflicts",
                        "--field-manager=kustomize-controller",
                        "-f",
                    ])
                    .arg(&file)
                    .output()
                    .expect("kubectl runs");
                assert!(
                    out.status.success(),
                    "the applier failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                c.fetch_add(1, Ordering::SeqCst);
                #[allow(
                    clippy::disallowed_methods,
                    reason = "the applier's period (Flux's interval), not a wait for a condition"
                )]
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        Applier {
            stop,
            cycles,
            thread: Some(thread),
        }
    }

    /// Waits until the applier has re-applied the Canary `n` more times.
    async fn cycles(&self, n: usize) {
        let target = self.cycles.load(Ordering::SeqCst) + n;
        let deadline = Instant::now() + DEADLINE;
        while self.cycles.load(Ordering::SeqCst) < target {
            assert!(Instant::now() < deadline, "the applier stalled");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Applier {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn phase(c: &Canary) -> &'static str {
    c.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("")
}

fn iterations(c: &Canary) -> i32 {
    c.status.as_ref().and_then(|s| s.iterations).unwrap_or(0)
}

fn requested(c: &Canary) -> Option<String> {
    c.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("flagger.app/action").cloned())
}

fn paused(c: &Canary) -> bool {
    c.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.r#type == "Paused"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn promote_abort_pause_resume_retry_hold_against_a_gitops_applier() {
    let cluster = Cluster::start().await;
    cluster.kubectl_in(&["apply", "-f", "-"], DEPLOYMENT);
    let applier = Applier::start(&cluster.kubeconfig);
    cluster
        .wait("initialized", |c| phase(c) == "Initialized")
        .await;

    // The plugin's help and the listing.
    let help = cluster.kubectl(&["flagger", "--help"]);
    assert!(
        help.contains("promote") && help.contains("Examples:"),
        "{help}"
    );
    let listed = cluster.plugin(&["get"]);
    assert!(
        listed.contains("NAME") && listed.contains("podinfo") && listed.contains("Initialized"),
        "{listed}"
    );

    // promote: a run of 1000 iterations finishes now.
    cluster.set_image("6.0.1");
    cluster
        .wait("running", |c| {
            phase(c) == "Progressing" && iterations(c) >= 2
        })
        .await;
    let out = cluster.plugin(&["promote", "podinfo", "--wait"]);
    assert!(out.contains("promote done"), "{out}");
    let c = cluster.wait("promoted", |c| phase(c) == "Succeeded").await;
    assert_eq!(requested(&c), None);
    assert_eq!(
        cluster.primary_image(),
        "ghcr.io/stefanprodan/podinfo:6.0.1"
    );
    applier.cycles(2).await;
    let c = cluster.canary().await;
    assert_eq!(phase(&c), "Succeeded", "the applier reverted nothing");
    assert_eq!(requested(&c), None, "the request is not re-applied");

    // abort: the run rolls back now; the primary keeps the promoted revision.
    cluster.set_image("6.0.2");
    cluster
        .wait("running", |c| {
            phase(c) == "Progressing" && iterations(c) >= 2
        })
        .await;
    cluster.plugin(&["abort", "podinfo", "--wait"]);
    let c = cluster.wait("rolled back", |c| phase(c) == "Failed").await;
    assert_eq!(requested(&c), None);
    let why = cluster.plugin(&["why", "podinfo"]);
    assert!(
        why.contains("Last decision: rolled back at iteration") && why.contains("abort requested"),
        "{why}"
    );
    applier.cycles(2).await;
    assert_eq!(phase(&cluster.canary().await), "Failed");
    assert_eq!(
        cluster.primary_image(),
        "ghcr.io/stefanprodan/podinfo:6.0.1"
    );

    // retry: the failed revision runs again.
    cluster.plugin(&["retry", "podinfo", "--wait"]);
    let c = cluster
        .wait("running again", |c| {
            phase(c) == "Progressing" && iterations(c) >= 1
        })
        .await;
    assert_eq!(requested(&c), None);

    // pause: no iteration while paused, whatever the applier does; resume goes on.
    let out = cluster.plugin(&["pause", "podinfo", "--wait"]);
    assert!(out.contains("pause done"), "{out}");
    let held = iterations(&cluster.canary().await);
    applier.cycles(3).await;
    let c = cluster.canary().await;
    assert!(paused(&c), "the Paused condition holds");
    assert_eq!(iterations(&c), held, "no iteration while paused");
    assert_eq!(
        requested(&c).as_deref(),
        Some("pause"),
        "the applier kept it"
    );
    let got = cluster.plugin(&["get", "podinfo"]);
    assert!(got.contains("Progressing (paused)"), "{got}");
    cluster.plugin(&["resume", "podinfo", "--wait"]);
    let c = cluster
        .wait("resumed", |c| iterations(c) > held && !paused(c))
        .await;
    assert_eq!(requested(&c), None);

    // Scripts read the same through -o json.
    let json: serde_json::Value =
        serde_json::from_str(&cluster.plugin(&["get", "podinfo", "-o", "json"])).unwrap();
    assert_eq!(json["phase"], "Progressing");
    assert!(
        json["lastDecision"]
            .as_str()
            .is_some_and(|d| d.starts_with("advanced to iteration")),
        "{json}"
    );

    // Finish, and the history tells the story.
    cluster.plugin(&["promote", "podinfo", "--wait"]);
    cluster
        .wait("promoted again", |c| phase(c) == "Succeeded")
        .await;
    assert_eq!(
        cluster.primary_image(),
        "ghcr.io/stefanprodan/podinfo:6.0.2"
    );
    let history = cluster.plugin(&["history", "podinfo"]);
    for outcome in [
        "promoted",
        "promotion requested",
        "rolling back",
        "retry requested",
        "paused",
        "resumed",
    ] {
        assert!(history.contains(outcome), "{outcome}: {history}");
    }
    // Completions for the plugin's name.
    let completion =
        run(Command::new(env!("CARGO_BIN_EXE_flagger")).args(["kubectl", "completion", "bash"]))
            .unwrap();
    assert!(completion.contains("kubectl-flagger"), "{completion}");
    drop(applier);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_says_clearly_what_is_wrong() {
    let cluster = Cluster::start().await;
    let err = run(cluster
        .kubectl_cmd()
        .args(["flagger", "-n", NS, "why", "nothing"]))
    .expect_err("no such canary");
    assert!(
        err.contains("canary nothing not found in namespace test"),
        "{err}"
    );
    assert!(!err.contains("Error {"), "no Debug dump: {err}");
    let empty = cluster.plugin(&["get"]);
    assert!(
        empty.contains("No canaries found in test namespace"),
        "{empty}"
    );
}

/// A real Prometheus (Debian's package) scraping one series every 500 ms: the app's success
/// rate, as an exporter beside the pods would publish it. Stopped (by its PID) when dropped.
struct Prometheus {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    async fn start(exporter: std::net::SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 500ms, evaluation_interval: 1s}}\n\
                 scrape_configs:\n- job_name: podinfo\n  static_configs:\n  - targets: ['{exporter}']\n"
            ),
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect(
                "prometheus is installed (scripts/test.sh installs Debian's package; \
                 or run `apt-get install prometheus`)",
            );
        let prom = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        // Ready, and the series scraped at least once.
        let deadline = Instant::now() + DEADLINE;
        while prom.query("podinfo_success_rate").await.is_none() {
            assert!(
                Instant::now() < deadline,
                "prometheus at {} never answered the series",
                prom.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        prom
    }

    async fn query(&self, q: &str) -> Option<f64> {
        let body: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
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

/// `why` on a canary halted by a failing metric check, still `Progressing`: the real plugin
/// prints the last decision, the metric, its value, its threshold and the query as rendered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn why_on_a_halted_canary_prints_the_metric_value_threshold_and_query() {
    // The app's exporter: a success rate of 94.67%, under the 99% the check asks for.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let exporter = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            "# TYPE podinfo_success_rate gauge\n\
             podinfo_success_rate{namespace=\"test\",app=\"podinfo\"} 94.67\n"
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let prometheus = Prometheus::start(exporter).await;

    let cluster = Cluster::start().await;
    cluster.kubectl_in(&["apply", "-f", "-"], DEPLOYMENT);
    cluster.kubectl_in(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {{name: success-rate, namespace: test}}
spec:
  provider: {{type: prometheus, address: "{}"}}
  query: 'podinfo_success_rate{{namespace="{{{{ namespace }}}}",app="{{{{ target }}}}"}}'
"#,
            prometheus.url
        ),
    );
    // A threshold no run reaches: the canary halts at every check and stays Progressing.
    cluster.kubectl_in(
        &["apply", "-f", "-"],
        r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  provider: kubernetes
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  progressDeadlineSeconds: 60
  service: {port: 9898, targetPort: 9898}
  analysis:
    interval: 1s
    threshold: 1000
    iterations: 10
    metrics:
    - name: app-success-rate
      interval: 1m
      templateRef: {name: success-rate}
      thresholdRange: {min: 99}
"#,
    );
    cluster
        .wait("Initialized", |c| phase(c) == "Initialized")
        .await;
    cluster.set_image("6.0.1");
    let halted = cluster
        .wait("halted twice by the check", |c| {
            let s = c.status.as_ref();
            phase(c) == "Progressing"
                && s.and_then(|s| s.failed_checks).unwrap_or(0) >= 2
                && iterations(c) <= 1
        })
        .await;
    assert_eq!(prometheus.query("podinfo_success_rate").await, Some(94.67));

    let why = cluster.plugin(&["why", "podinfo"]);
    eprintln!("kubectl flagger -n test why podinfo:\n{why}");
    assert!(
        why.starts_with("Canary podinfo.test: Progressing, weight "),
        "{why}"
    );
    assert!(
        why.contains("Last decision: halted at iteration 1/10: app-success-rate 94.67 < 99 ("),
        "{why}"
    );
    assert!(why.contains("\napp-success-rate:\n"), "{why}");
    assert!(why.contains("\n  value:     94.67\n"), "{why}");
    assert!(why.contains("\n  threshold: >= 99\n"), "{why}");
    assert!(
        why.contains("\n  query:     podinfo_success_rate{namespace=\"test\",app=\"podinfo\"}\n"),
        "{why}"
    );
    assert!(
        why.contains("Halt podinfo.test advancement app-success-rate 94.67 < 99"),
        "{why}"
    );
    // The plugin reads what the controller wrote: the same check in the status.
    let checks = serde_json::to_value(&halted.status).unwrap();
    assert_eq!(
        checks.pointer("/analysis/checks/0/name"),
        Some(&serde_json::json!("app-success-rate")),
        "{checks}"
    );
}
