//! The demo's real processes: Prometheus, `flagger loadtester` and `flagger controller`.
//! Each is killed when the demo ends (or when this value is dropped).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

/// Finds `prometheus` on `PATH`, or explains how to get it.
pub fn find_prometheus() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("prometheus");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "prometheus is not on PATH. The demo analyses real request metrics with Prometheus; \
         install it with `sudo apt-get install prometheus` (Debian/Ubuntu), or put the binary from \
         https://prometheus.io/download/ on PATH, then run `flagger demo` again"
    )
}

pub struct Processes {
    dir: PathBuf,
    kubeconfig: PathBuf,
    dataplane: localkube::dataplane::DataPlane,
    children: Vec<(&'static str, Child)>,
}

impl Processes {
    pub fn new(
        dir: PathBuf,
        kubeconfig: PathBuf,
        dataplane: localkube::dataplane::DataPlane,
    ) -> Self {
        Processes {
            dir,
            kubeconfig,
            dataplane,
            children: Vec::new(),
        }
    }

    /// Environment that makes cluster names resolve through the data plane (`proxy`: the data
    /// plane's proxy URL, naming the process when it stands for a workload).
    fn proxied(cmd: &mut Command, proxy: &str) {
        cmd.env("HTTP_PROXY", proxy)
            .env("http_proxy", proxy)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost");
    }

    fn log(&self, name: &str) -> anyhow::Result<Stdio> {
        let f = std::fs::File::create(self.dir.join(format!("{name}.log")))
            .with_context(|| format!("creating {name}.log"))?;
        Ok(Stdio::from(f))
    }

    fn spawn(&mut self, name: &'static str, mut cmd: Command) -> anyhow::Result<()> {
        cmd.stdin(Stdio::null())
            .stdout(self.log(name)?)
            .stderr(self.log(&format!("{name}.err"))?)
            .kill_on_drop(true);
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        self.children.push((name, child));
        Ok(())
    }

    /// Prometheus scraping every second as on a cluster: the pods through the data plane (with
    /// the pod job of Flagger's Prometheus) and the data plane's proxy series; returns its URL
    /// once it has scraped.
    pub async fn prometheus(&mut self, binary: &Path) -> anyhow::Result<String> {
        let config = self.dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{}",
                self.dataplane.prometheus_scrape_configs("1s")
            ),
        )?;
        let addr = free_addr()?;
        let mut cmd = Command::new(binary);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn");
        self.spawn("prometheus", cmd)?;
        let url = format!("http://{addr}");
        let http = reqwest::Client::new();
        wait_until(
            "Prometheus to scrape the data plane",
            Duration::from_secs(60),
            || {
                let http = http.clone();
                let url = url.clone();
                async move {
                    let body: serde_json::Value = http
                        .get(format!("{url}/api/v1/query"))
                        .query(&[("query", r#"up{job="localkube-dataplane"}"#)])
                        .send()
                        .await
                        .ok()?
                        .json()
                        .await
                        .ok()?;
                    (body.pointer("/data/result/0/value/1")?.as_str()? == "1").then_some(())
                }
            },
        )
        .await?;
        Ok(url)
    }

    /// `flagger loadtester` with the built-in hey, as the workload `flagger-loadtester` of
    /// namespace `ns` (single-label names resolve there); returns its address.
    pub async fn loadtester(&mut self, ns: &str) -> anyhow::Result<SocketAddr> {
        let addr = free_addr()?;
        let mut cmd = Command::new(std::env::current_exe()?);
        // On loopback the load tester checks `Host`: the data plane forwards the Service's
        // names to it.
        let names = format!(
            "-allowed-hosts=flagger-loadtester,flagger-loadtester.{ns},flagger-loadtester.{ns}.svc,flagger-loadtester.{ns}.svc.cluster.local"
        );
        cmd.args([
            "loadtester",
            &format!("-port={}", addr.port()),
            "-listen-address=127.0.0.1",
            &names,
            "-prefer-builtin-hey",
            "-log-level=info",
        ]);
        Self::proxied(
            &mut cmd,
            &self.dataplane.proxy_url_for("flagger-loadtester", ns),
        );
        self.spawn("loadtester", cmd)?;
        let http = reqwest::Client::builder().no_proxy().build()?;
        wait_until("the load tester to answer", Duration::from_secs(30), || {
            let http = http.clone();
            async move {
                let r = http
                    .get(format!("http://{addr}/healthz"))
                    .send()
                    .await
                    .ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await?;
        Ok(addr)
    }

    /// `flagger controller`; returns the URL of its `/metrics`.
    pub async fn controller(&mut self, prometheus: &str) -> anyhow::Result<String> {
        let port = free_addr()?.port();
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args([
            "controller",
            &format!("-kubeconfig={}", self.kubeconfig.display()),
            "-mesh-provider=kubernetes",
            &format!("-metrics-server={prometheus}"),
            "-min-analysis-interval=1s",
            &format!("-port={port}"),
            "-log-level=info",
        ]);
        Self::proxied(&mut cmd, &self.dataplane.proxy_url());
        self.spawn("controller", cmd)?;
        let http = reqwest::Client::builder().no_proxy().build()?;
        let base = format!("http://127.0.0.1:{port}");
        let ready = format!("{base}/readyz");
        let waited = wait_until(
            "the controller to be ready",
            Duration::from_secs(60),
            || {
                let http = http.clone();
                let ready = ready.clone();
                async move {
                    let r = http.get(&ready).send().await.ok()?;
                    r.status().is_success().then_some(())
                }
            },
        )
        .await;
        if let Err(e) = waited {
            bail!("{e}; controller log:\n{}", self.log_tail("controller.err"));
        }
        Ok(format!("{base}/metrics"))
    }

    /// Stops every process.
    pub async fn stop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill().await;
        }
        self.children.clear();
    }

    /// The last lines of a process's log.
    fn log_tail(&self, name: &str) -> String {
        let log = std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// A process that exited early, with the end of its error log.
    pub fn exited(&mut self) -> Option<String> {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(self.dir.join(format!("{name}.err.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Some(format!("{name} exited ({status}):\n{}", tail.join("\n")));
            }
        }
        None
    }
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Polls `f` every 100 ms until it yields, or fails after `timeout` naming `what`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
