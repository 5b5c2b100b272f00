//! Helpers shared by the integration suites: an in-process server with a `kube` client, and a
//! condition poll with a deadline.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use serde_json::Value;

use kube::Client;

/// Starts localkube with `config` and a client for it.
pub async fn start_with(config: localkube::Config) -> (localkube::Handle, Client) {
    let h = localkube::Server::start(config)
        .await
        .expect("server starts");
    let kc = kube::config::Kubeconfig::from_yaml(&h.kubeconfig()).expect("kubeconfig parses");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("config from kubeconfig");
    let client = Client::try_from(cfg).expect("client");
    (h, client)
}

/// Starts localkube with the default configuration.
pub async fn start() -> (localkube::Handle, Client) {
    start_with(localkube::Config::default()).await
}

/// Polls `f` until it returns Some, or panics after `secs` naming `what`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GETs `url` over a fresh HTTP/1.1 connection; the body.
pub async fn http_get(url: &str) -> String {
    let uri: axum::http::Uri = url.parse().unwrap();
    let addr = format!("{}:{}", uri.host().unwrap(), uri.port_u16().unwrap_or(80));
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = axum::http::Request::get(uri.path_and_query().unwrap().as_str())
        .header("host", uri.authority().unwrap().as_str())
        .body(Body::empty())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let bytes = axum::body::to_bytes(Body::new(resp.into_body()), usize::MAX)
        .await
        .unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A real Prometheus (Debian's package) with these `scrape_configs` entries, every 200 ms;
/// killed on drop.
pub struct Prometheus {
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
    url: String,
}

impl Prometheus {
    pub async fn start(scrape_configs: &str) -> Option<Self> {
        const BIN: &str = "/usr/bin/prometheus";
        // scripts/test.sh installs Debian's package: without it the test fails, it does not
        // pass without its Prometheus half.
        assert!(
            Path::new(BIN).exists(),
            "{BIN} is installed (scripts/test.sh installs it; or `apt-get install prometheus`)"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 200ms\n  evaluation_interval: 1s\nscrape_configs:\n{scrape_configs}"
            ),
        )
        .unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = tokio::process::Command::new(BIN)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Some(Self {
            _child: child,
            _dir: dir,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// The value of an instant query returning one sample, if it does.
    pub async fn scalar(&self, query: &str) -> Option<f64> {
        let q: String = url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
        let stream = tokio::net::TcpStream::connect(self.url.trim_start_matches("http://")).await;
        stream.ok()?;
        let body = http_get(&format!("{}/api/v1/query?query={q}", self.url)).await;
        let v: Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

/// Creates namespace `name`.
pub async fn namespace(client: &Client, name: &str) {
    let ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
            .expect("a namespace");
    kube::Api::all(client.clone())
        .create(&kube::api::PostParams::default(), &ns)
        .await
        .expect("namespace created");
}

/// Runs the real kubectl against `h`; its standard output.
pub async fn kubectl(h: &localkube::Handle, args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    h.write_kubeconfig(&kubeconfig).expect("kubeconfig written");
    let out = tokio::process::Command::new("kubectl")
        .env("KUBECONFIG", &kubeconfig)
        .args(args)
        .output()
        .await
        .expect("kubectl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
