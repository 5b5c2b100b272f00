//! A real Graphite (Debian's `graphite-carbon` and `graphite-web`) for a test: carbon-cache
//! and graphite-web's own server on ephemeral ports with a temporary storage directory
//! (one-second retention), stopped by PID when dropped; and a feeder that pushes the simulated
//! pods' request counters (the test exporter's, see [`super::exporter`]) into carbon's
//! plaintext port every second, as `flagger.<namespace>.<workload>.<pod>.<status>`.

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

    /// Feeds the exporter's request counters into carbon every second, for the test's life.
    pub fn feed(&self, exporter: SocketAddr) {
        let carbon = self.carbon_addr;
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                if let Ok(r) = http.get(format!("http://{exporter}/metrics")).send().await
                    && let Ok(text) = r.text().await
                {
                    let lines = carbon_lines(&text, super::now_secs());
                    if let Ok(mut s) = tokio::net::TcpStream::connect(carbon).await {
                        let _ = s.write_all(lines.as_bytes()).await;
                        let _ = s.shutdown().await;
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

/// `http_request_duration_seconds_count` of each pod as carbon plaintext lines, with a 0 for
/// a status a pod has not answered yet (so that a healthy pod has a `500` series too).
pub fn carbon_lines(exposition: &str, now: u64) -> String {
    let mut counts: std::collections::BTreeMap<(String, String), [f64; 2]> = Default::default();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("http_request_duration_seconds_count{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        let (Some(ns), Some(pod), Some(status)) = (
            label("kubernetes_namespace"),
            label("kubernetes_pod_name"),
            label("status"),
        ) else {
            continue;
        };
        let v: f64 = value.trim().parse().unwrap_or_default();
        let entry = counts.entry((ns, pod)).or_default();
        if status.starts_with('5') {
            entry[1] += v;
        } else {
            entry[0] += v;
        }
    }
    let mut out = String::new();
    for ((ns, pod), [ok, errors]) in counts {
        // The workload: the pod name without its ReplicaSet hash and suffix.
        let parts: Vec<&str> = pod.rsplitn(3, '-').collect();
        let workload = parts.last().copied().unwrap_or(pod.as_str());
        let _ = writeln!(out, "flagger.{ns}.{workload}.{pod}.200 {ok} {now}");
        let _ = writeln!(out, "flagger.{ns}.{workload}.{pod}.500 {errors} {now}");
    }
    out
}
