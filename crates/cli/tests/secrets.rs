//! The secret-marker run: a full rollout with every kind of credential Flagger users configure,
//! each holding a unique marker string, then every output grepped for the markers.
//!
//! Processes (this package's `flagger` binary): `flagger local`, `flagger loadtester` (bearer
//! token required), `flagger controller` (debug logs, `-slack-url` with a marker path and
//! `-slack-token`, `-event-webhook` with a marker token). Credentials:
//! - webhooks to the load tester with `?access_token=<marker>`, one whose command's output
//!   prints an `Authorization: Bearer <marker>` header, one unreachable hook with
//!   `?token=<marker>` (its errors name the URL);
//! - an AlertProvider (Slack) whose address (marker path) and token come from a Secret, served
//!   by a fake Slack here; an AlertProvider (MS Teams) whose Secret address (marker path) is
//!   unreachable, so that delivery errors are logged;
//! - a MetricTemplate whose Prometheus token comes from a Secret (Prometheus unreachable);
//! - a second Canary without alert routes, whose alerts go to the global `-slack-url`.
//!
//! Grepped: the controller's, the load tester's and localkube's stdout and stderr, every
//! Event (`kubectl get events -A -o yaml`), the Canaries' status and conditions, and
//! `kubectl describe canary` (all of it but the spec the user wrote, which holds the webhook
//! URLs as written). Expected: no marker anywhere. The fake Slack, on the other hand, must have
//! received its token: the credentials still reach where they are meant to go.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NS: &str = "test";
const BIN: &str = env!("CARGO_BIN_EXE_flagger");

/// The markers, one per credential.
const LT_TOKEN: &str = "mkLoadTesterTok1";
const CMD_BEARER: &str = "mkCommandBearer2";
const DEAD_HOOK: &str = "mkDeadHookTok3";
const SLACK_PATH: &str = "mkSlackPath4";
const SLACK_TOKEN: &str = "mkSlackTok5";
const TEAMS_PATH: &str = "mkTeamsPath6";
const PROM_TOKEN: &str = "mkPromTok7";
const GLOBAL_PATH: &str = "mkGlobalPath8";
const GLOBAL_TOKEN: &str = "mkGlobalTok9";
const EVENT_TOKEN: &str = "mkEventTok10";
const MARKERS: &[&str] = &[
    LT_TOKEN,
    CMD_BEARER,
    DEAD_HOOK,
    SLACK_PATH,
    SLACK_TOKEN,
    TEAMS_PATH,
    PROM_TOKEN,
    GLOBAL_PATH,
    GLOBAL_TOKEN,
    EVENT_TOKEN,
];

/// Processes killed on drop.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(dir: &Path, name: &str, args: &[String]) -> Child {
    let out = std::fs::File::create(dir.join(format!("{name}.out"))).unwrap();
    let err = std::fs::File::create(dir.join(format!("{name}.err"))).unwrap();
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_PROXY", "*")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap()
}

fn kubectl(kc: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", kc)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` every 100 ms for up to 90 s; panics with `what` and the last value seen.
fn wait_for(rt: &tokio::runtime::Runtime, what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match f() {
            Ok(()) => return,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out waiting for {what}; last seen:\n{last}")
            }
            Err(_) => rt.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await }),
        }
    }
}

type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A fake Slack: records the path and `Authorization` of every POST, answers `ok`.
fn fake_slack(rt: &tokio::runtime::Runtime) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback({
        let seen = seen.clone();
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap| async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            seen.lock().unwrap().push((uri.path().to_string(), auth));
            "ok"
        }
    });
    rt.spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

fn b64(s: &str) -> String {
    // Secrets' data by hand (kubectl sends it as written).
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                out.push(T[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn deployment(name: &str, tag: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {NS}, labels: {{app: {name}}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: app
        image: ghcr.io/stefanprodan/podinfo:{tag}
        ports: [{{name: http, containerPort: 9898}}]
"
    )
}

/// Every line of `text` holding a marker, with where it came from.
fn hits(source: &str, text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| MARKERS.iter().any(|m| l.contains(m)))
        .map(|l| format!("{source}: {}", l.chars().take(400).collect::<String>()))
        .collect()
}

/// `kubectl describe` without the Spec the user wrote.
fn without_spec(describe: &str) -> String {
    let mut out = Vec::new();
    let mut in_spec = false;
    for line in describe.lines() {
        if line.starts_with("Spec:") {
            in_spec = true;
            continue;
        }
        if in_spec && !line.starts_with(' ') && !line.is_empty() {
            in_spec = false;
        }
        if !in_spec {
            out.push(line);
        }
    }
    out.join("\n")
}

#[test]
fn no_secret_reaches_a_log_an_event_or_the_status() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (slack, slack_seen) = fake_slack(&rt);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let kc: PathBuf = d.join("kubeconfig");
    let mut procs = Procs(Vec::new());

    // localkube.
    procs.0.push(spawn(
        d,
        "local",
        &[
            "local".into(),
            "--addr=127.0.0.1:0".into(),
            format!("--kubeconfig={}", kc.display()),
        ],
    ));
    wait_for(&rt, "flagger local", || {
        let err = std::fs::read_to_string(d.join("local.err")).unwrap_or_default();
        if err.contains("localkube serving on") {
            Ok(())
        } else {
            Err(err)
        }
    });
    let crds = d.join("crds.yaml");
    let out = Command::new(BIN).arg("crd").output().unwrap();
    std::fs::write(&crds, &out.stdout).unwrap();
    kubectl(&kc, &["apply", "-f", &crds.to_string_lossy()], None);
    kubectl(&kc, &["create", "namespace", NS], None);

    // The load tester, with a token.
    let lt_port = free_port();
    procs.0.push(spawn(
        d,
        "loadtester",
        &[
            "loadtester".into(),
            format!("-port={lt_port}"),
            "-listen-address=127.0.0.1".into(),
            format!("-token={LT_TOKEN}"),
            "-log-level=debug".into(),
        ],
    ));
    let lt = format!("http://127.0.0.1:{lt_port}");
    wait_for(&rt, "the load tester", || {
        std::net::TcpStream::connect(("127.0.0.1", lt_port))
            .map(|_| ())
            .map_err(|e| e.to_string())
    });

    // The controller, with the global notifier and an event webhook.
    let dead = free_port();
    procs.0.push(spawn(
        d,
        "controller",
        &[
            "controller".into(),
            format!("-kubeconfig={}", kc.display()),
            "-mesh-provider=kubernetes".into(),
            format!("-metrics-server=http://127.0.0.1:{dead}"),
            "-min-analysis-interval=1s".into(),
            "-port=0".into(),
            "-log-level=debug".into(),
            format!("-slack-url={slack}/services/T0/B0/{GLOBAL_PATH}"),
            "-slack-channel=general".into(),
            format!("-slack-token={GLOBAL_TOKEN}"),
            format!("-event-webhook=http://127.0.0.1:{dead}/events?token={EVENT_TOKEN}"),
            "-cluster-name=e2e".into(),
        ],
    ));

    let manifests = format!(
        "apiVersion: v1
kind: Secret
metadata: {{name: slack-url, namespace: {NS}}}
data: {{address: {slack_addr}, token: {slack_token}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: teams-url, namespace: {NS}}}
data: {{address: {teams_addr}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: prom-auth, namespace: {NS}}}
data: {{token: {prom_token}}}
---
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {{name: slack, namespace: {NS}}}
spec: {{type: slack, channel: deploys, secretRef: {{name: slack-url}}}}
---
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {{name: teams, namespace: {NS}}}
spec: {{type: msteams, secretRef: {{name: teams-url}}}}
---
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {{name: errors, namespace: {NS}}}
spec:
  provider: {{type: prometheus, address: 'http://127.0.0.1:{dead}', secretRef: {{name: prom-auth}}}}
  query: sum(rate(http_requests_total{{namespace=\"{{{{ namespace }}}}\"}}[1m]))
---
{podinfo}---
{backend}---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: podinfo, namespace: {NS}}}
spec:
  provider: kubernetes
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  progressDeadlineSeconds: 60
  service: {{port: 80, targetPort: http}}
  analysis:
    interval: 1s
    threshold: 2
    iterations: 3
    metrics:
    - name: errors
      templateRef: {{name: errors}}
      thresholdRange: {{max: 1}}
      interval: 1m
    webhooks:
    - name: prepare
      type: pre-rollout
      url: '{lt}/?access_token={LT_TOKEN}'
      metadata: {{type: bash, cmd: 'echo ready'}}
    - name: load
      type: rollout
      url: '{lt}/?access_token={LT_TOKEN}'
      metadata: {{cmd: \"echo 'Authorization: Bearer {CMD_BEARER}'\", logCmdOutput: 'true'}}
    - name: unreachable
      type: rollout
      url: 'http://127.0.0.1:{dead}/hook?token={DEAD_HOOK}'
    alerts:
    - name: slack
      severity: info
      providerRef: {{name: slack}}
    - name: teams
      severity: info
      providerRef: {{name: teams}}
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: backend, namespace: {NS}}}
spec:
  provider: kubernetes
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: backend}}
  service: {{port: 80, targetPort: http}}
  analysis: {{interval: 1s, threshold: 1, iterations: 1}}
",
        slack_addr = b64(&format!("{slack}/services/T0/B0/{SLACK_PATH}")),
        slack_token = b64(SLACK_TOKEN),
        teams_addr = b64(&format!(
            "http://127.0.0.1:{dead}/webhookb2/tenant/IncomingWebhook/{TEAMS_PATH}"
        )),
        prom_token = b64(PROM_TOKEN),
        podinfo = deployment("podinfo", "6.0.0"),
        backend = deployment("backend", "6.0.0"),
    );
    kubectl(&kc, &["apply", "-f", "-"], Some(&manifests));

    let phase = |name: &str| {
        kubectl(
            &kc,
            &[
                "-n",
                NS,
                "get",
                "canary",
                name,
                "-o",
                "jsonpath={.status.phase}",
            ],
            None,
        )
    };
    for name in ["podinfo", "backend"] {
        wait_for(&rt, &format!("{name} Initialized"), || match phase(name) {
            p if p == "Initialized" => Ok(()),
            p => Err(p),
        });
    }
    kubectl(
        &kc,
        &[
            "-n",
            NS,
            "set",
            "image",
            "deployment/podinfo",
            "app=ghcr.io/stefanprodan/podinfo:6.0.1",
        ],
        None,
    );
    // The unreachable hook and the unreachable Prometheus fail the analysis.
    wait_for(&rt, "podinfo Failed", || match phase("podinfo") {
        p if p == "Failed" => Ok(()),
        p => Err(p),
    });
    // Alerts were delivered (podinfo's to its Slack, backend's to the global one), the Teams
    // delivery failed, the load tester ran the command and logged its output.
    wait_for(&rt, "alerts, delivery errors and the load test", || {
        let seen = slack_seen.lock().unwrap().clone();
        let ctl = std::fs::read_to_string(d.join("controller.err")).unwrap_or_default();
        let lt_err = std::fs::read_to_string(d.join("loadtester.err")).unwrap_or_default();
        let ok = seen.iter().any(|(p, _)| p.ends_with(SLACK_PATH))
            && seen.iter().any(|(p, _)| p.ends_with(GLOBAL_PATH))
            && seen
                .iter()
                .any(|(p, _)| p.ends_with(SLACK_PATH) && p.contains("/services/"))
            && ctl.contains("error sending alert to")
            && ctl.contains("error sending event to webhook")
            && lt_err.contains("command finished");
        if ok {
            Ok(())
        } else {
            Err(format!("slack saw {seen:?}"))
        }
    });
    // The credentials reached their destinations.
    let seen = slack_seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|(p, auth)| p.ends_with(SLACK_PATH)
            && auth.as_deref() == Some(&format!("Bearer {SLACK_TOKEN}"))),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|(p, auth)| p.ends_with(GLOBAL_PATH)
            && auth.as_deref() == Some(&format!("Bearer {GLOBAL_TOKEN}"))),
        "{seen:?}"
    );

    // Everything a person or a log pipeline sees.
    let mut outputs: Vec<(String, String)> = Vec::new();
    for name in ["controller", "loadtester", "local"] {
        for stream in ["out", "err"] {
            let file = format!("{name}.{stream}");
            outputs.push((
                file.clone(),
                std::fs::read_to_string(d.join(&file)).unwrap_or_default(),
            ));
        }
    }
    outputs.push((
        "events".into(),
        kubectl(&kc, &["get", "events", "-A", "-o", "yaml"], None),
    ));
    outputs.push((
        "canary status".into(),
        kubectl(
            &kc,
            &[
                "-n",
                NS,
                "get",
                "canaries",
                "-o",
                "jsonpath={.items[*].status}",
            ],
            None,
        ),
    ));
    for name in ["podinfo", "backend"] {
        outputs.push((
            format!("describe canary {name}"),
            without_spec(&kubectl(&kc, &["-n", NS, "describe", "canary", name], None)),
        ));
    }
    // The run did what it should: the outputs are not empty of what was grepped for.
    let all: String = outputs.iter().map(|(_, t)| t.as_str()).collect();
    for expected in [
        // The unreachable hook's error, with its token hidden.
        "hook?token=REDACTED giving up after",
        // The command's output, logged by the load tester.
        "Authorization: REDACTED",
        // The Teams delivery error names where it went, not the address.
        "error sending alert to http://127.0.0.1",
    ] {
        assert!(all.contains(expected), "no {expected:?} in the outputs");
    }
    let leaks: Vec<String> = outputs.iter().flat_map(|(s, t)| hits(s, t)).collect();
    let total: usize = outputs.iter().map(|(s, t)| hits(s, t).len()).sum();
    eprintln!(
        "secret-marker run: {} markers, {} outputs ({} bytes) grepped, {total} hits",
        MARKERS.len(),
        outputs.len(),
        all.len()
    );
    assert!(leaks.is_empty(), "markers leaked:\n{}", leaks.join("\n"));
    drop(procs);
    drop(rt);
}

#[test]
fn base64_by_hand_is_right() {
    assert_eq!(b64("hello"), "aGVsbG8=");
    assert_eq!(b64("hi"), "aGk=");
    assert_eq!(b64("abc"), "YWJj");
}
