//! A real Graphite (Debian's `graphite-carbon` and `graphite-web`) for a test: carbon-cache
//! and graphite-web's own server on ephemeral ports with a temporary storage directory
//! (one-second retention), stopped by PID when dropped.
//!
//! [`Graphite::relay`] feeds it with the requests localkube's data plane served, as a metrics
//! relay beside each app would: every second it finds the namespace's pods through the data
//! plane's service discovery (the targets Prometheus's `pod` role gives), reads each pod's own
//! podinfo counters (`http_requests_total` by status, at `/metrics` on the pod's metrics port,
//! the container port named `http-metrics` that podinfo's `--port-metrics` serves, fetched
//! through the data plane like any request to a pod IP), and writes them to carbon's plaintext
//! port as cumulative counters `flagger.<namespace>.<app label>.<pod>.<class>`, one per HTTP
//! status class (`1xx` to `5xx`). Every class is written from the pod's first second, zero until the
//! pod answers one, as Dropwizard's instrumented HTTP handlers report their `Nxx-responses`
//! meters to Graphite: a healthy pod has a `5xx` series of zeros, so an error percentage over
//! it reads 0 rather than "no values". Nothing is synthesized: the counts are what the pods
//! answered to the requests sent through the data plane; the relay's own reads are not among
//! them (podinfo does not count requests to its metrics port), so a pod without traffic has
//! flat counters and an error percentage without values.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

pub struct Graphite {
    carbon: Child,
    web: Child,
    pub url: String,
    pub carbon_addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Graphite {
    fn drop(&mut self) {
        // Started here; stopped by their own PIDs.
        let _ = self.carbon.start_kill();
        let _ = self.web.start_kill();
    }
}

fn config(dir: &Path, line: u16, pickle: u16, query: u16) -> std::io::Result<()> {
    let d = dir.display();
    std::fs::create_dir_all(dir.join("whisper"))?;
    std::fs::create_dir_all(dir.join("log"))?;
    std::fs::write(
        dir.join("carbon.conf"),
        format!(
            "[cache]\nSTORAGE_DIR = {d}\nLOCAL_DATA_DIR = {d}/whisper\nWHITELISTS_DIR = {d}\nCONF_DIR = {d}\nLOG_DIR = {d}/log\nPID_DIR = {d}\nENABLE_LOGROTATION = False\nUSER =\nMAX_CACHE_SIZE = inf\nMAX_UPDATES_PER_SECOND = 5000\nMAX_CREATES_PER_MINUTE = inf\nLINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = {line}\nENABLE_UDP_LISTENER = False\nPICKLE_RECEIVER_INTERFACE = 127.0.0.1\nPICKLE_RECEIVER_PORT = {pickle}\nCACHE_QUERY_INTERFACE = 127.0.0.1\nCACHE_QUERY_PORT = {query}\n"
        ),
    )?;
    std::fs::write(
        dir.join("storage-schemas.conf"),
        "[default]\npattern = .*\nretentions = 1s:1h\n",
    )?;
    std::fs::write(
        dir.join("storage-aggregation.conf"),
        "[default]\npattern = .*\nxFilesFactor = 0\naggregationMethod = average\n",
    )?;
    std::fs::write(
        dir.join("flaggertest_settings.py"),
        format!(
            "SECRET_KEY = 'flagger-rs-tests'\nSTORAGE_DIR = '{d}'\nWHISPER_DIR = '{d}/whisper'\nCONF_DIR = '{d}'\nLOG_DIR = '{d}/log'\nINDEX_FILE = '{d}/index'\nSTANDARD_DIRS = ['{d}/whisper']\nCARBONLINK_HOSTS = ['127.0.0.1:{query}:a']\nDATABASES = {{'default': {{'NAME': '{d}/graphite.db', 'ENGINE': 'django.db.backends.sqlite3'}}}}\n"
        ),
    )
}

impl Graphite {
    pub async fn start() -> Graphite {
        let dir = tempfile::tempdir().expect("temp dir");
        let [line, pickle, query, web] = [(); 4].map(|_| super::free_port());
        config(dir.path(), line, pickle, query).expect("graphite config written");
        let d = dir.path();
        let carbon = Command::new("carbon-cache")
            .arg(format!("--config={}", d.join("carbon.conf").display()))
            .arg(format!("--pidfile={}", d.join("carbon.pid").display()))
            .args(["--nodaemon", "start"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect(
                "carbon-cache is installed (scripts/test.sh installs Debian's graphite-carbon)",
            );
        let manage = |args: &[&str]| {
            let mut c = Command::new("graphite-manage");
            c.env("PYTHONPATH", d)
                .env("GRAPHITE_SETTINGS_MODULE", "flaggertest_settings")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            c
        };
        let migrated = manage(&["migrate", "--noinput"])
            .status()
            .await
            .expect("graphite-manage is installed (Debian's graphite-web)");
        assert!(migrated.success(), "graphite-web's database is created");
        let web_process = manage(&["runserver", &format!("127.0.0.1:{web}"), "--noreload"])
            .spawn()
            .expect("graphite-web starts");
        let g = Graphite {
            carbon,
            web: web_process,
            url: format!("http://127.0.0.1:{web}"),
            carbon_addr: SocketAddr::from(([127, 0, 0, 1], line)),
            _dir: dir,
        };
        let http = reqwest::Client::new();
        let ready = format!("{}/render?target=x&format=json", g.url);
        let last = Mutex::new(String::new());
        super::wait_for("graphite-web answering", &last, || {
            let http = http.clone();
            let ready = ready.clone();
            async move {
                let r = http.get(&ready).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        let carbon = g.carbon_addr;
        super::wait_for("carbon listening", &last, || async move {
            tokio::net::TcpStream::connect(carbon)
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        g
    }

    /// Relays the request counters of the pods of `namespace` that localkube's data plane
    /// serves into carbon every second, for the test's life (see the module docs).
    pub fn relay(&self, dataplane: &localkube::dataplane::DataPlane, namespace: &str) {
        let carbon = self.carbon_addr;
        let discovery = format!("{}?namespace={namespace}", dataplane.pod_discovery_url());
        let direct = reqwest::Client::new();
        let through_dataplane = reqwest::Client::builder()
            .proxy(reqwest::Proxy::http(dataplane.proxy_url()).expect("data plane proxy"))
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Ok(r) = direct.get(&discovery).send().await else {
                    continue;
                };
                let Ok(groups) = r.json::<Vec<TargetGroup>>().await else {
                    continue;
                };
                let mut lines = String::new();
                for pod in pods(&groups) {
                    let url = format!("http://{}/metrics", pod.target);
                    let Ok(r) = through_dataplane.get(&url).send().await else {
                        continue;
                    };
                    if let Ok(text) = r.text().await {
                        lines.push_str(&carbon_lines(&pod, &text, super::now_secs()));
                    }
                }
                if lines.is_empty() {
                    continue;
                }
                if let Ok(mut s) = tokio::net::TcpStream::connect(carbon).await {
                    let _ = s.write_all(lines.as_bytes()).await;
                    let _ = s.shutdown().await;
                }
            }
        });
    }
}

/// One group of Prometheus's HTTP service discovery format.
#[derive(serde::Deserialize)]
struct TargetGroup {
    targets: Vec<String>,
    labels: std::collections::BTreeMap<String, String>,
}

/// A running pod the relay reads: where, and the names of its series.
struct Pod {
    target: String,
    namespace: String,
    workload: String,
    name: String,
}

/// The pods with an `app` label and an IP, at their metrics port (the container port named
/// `http-metrics`, podinfo's `--port-metrics`).
fn pods(groups: &[TargetGroup]) -> Vec<Pod> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for g in groups {
        let label = |name: &str| {
            g.labels
                .get(&format!("__meta_kubernetes_{name}"))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let (Some(target), Some(namespace), Some(name), Some(workload)) = (
            g.targets.first().cloned(),
            label("namespace"),
            label("pod_name"),
            label("pod_label_app"),
        ) else {
            continue;
        };
        if label("pod_container_port_name").as_deref() != Some("http-metrics")
            || !seen.insert((namespace.clone(), name.clone()))
        {
            continue;
        }
        out.push(Pod {
            target,
            namespace,
            workload,
            name,
        });
    }
    out
}

/// A name as one node of a Graphite path (dots separate nodes).
fn node(name: &str) -> String {
    name.replace(['.', ' '], "_")
}

/// The pod's `http_requests_total` (podinfo's exposition) as carbon plaintext lines, one
/// cumulative counter per status class, each class written (zero when the pod has answered
/// none).
fn carbon_lines(pod: &Pod, exposition: &str, now: u64) -> String {
    let mut classes = [0u64; 5];
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("http_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let status = labels
            .split(',')
            .find_map(|kv| kv.strip_prefix("status=\""))
            .map(|v| v.trim_end_matches('"'));
        let class = status
            .and_then(|s| s.chars().next())
            .and_then(|c| c.to_digit(10))
            .filter(|c| (1..=5).contains(c));
        let (Some(class), Ok(n)) = (class, value.trim().parse::<f64>()) else {
            continue;
        };
        classes[class as usize - 1] += n as u64;
    }
    let prefix = format!(
        "flagger.{}.{}.{}",
        node(&pod.namespace),
        node(&pod.workload),
        node(&pod.name)
    );
    let mut out = String::new();
    for (i, n) in classes.iter().enumerate() {
        let _ = writeln!(out, "{prefix}.{}xx {n} {now}", i + 1);
    }
    out
}
