//! Helpers shared by the integration suites: an in-process server with a `kube` client, and a
//! condition poll with a deadline.

#![allow(dead_code)]

use std::time::Duration;

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
