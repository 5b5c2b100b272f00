//! A test exporter of podinfo-style request metrics for the simulated pods.
//!
//! Every ready pod serves 20 requests per second from its start; the annotations
//! `e2e.flagger.app/error-ratio` (0..1, default 0) and `e2e.flagger.app/latency-ms` (default 20)
//! of its template decide how many answer 500 and how long they take. The series carry the
//! labels Flagger's kubernetes-provider queries select on: `kubernetes_namespace`,
//! `kubernetes_pod_name`, `status`. The counters are a function of time, so they only grow.

use std::fmt::Write as _;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

pub const ERROR_RATIO: &str = "e2e.flagger.app/error-ratio";
pub const LATENCY_MS: &str = "e2e.flagger.app/latency-ms";

const RPS: f64 = 20.0;

/// `app` label values whose pods receive no traffic (no series at all) until removed: a
/// service nobody calls yet.
pub static NO_TRAFFIC: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Whether pods labelled `app=<app>` receive traffic.
pub fn set_traffic(app: &str, on: bool) {
    if let Ok(mut quiet) = NO_TRAFFIC.lock() {
        if on {
            quiet.remove(app);
        } else {
            quiet.insert(app.to_string());
        }
    }
}

fn quiet(pod: &Pod) -> bool {
    let app = pod.labels().get("app").cloned().unwrap_or_default();
    NO_TRAFFIC.lock().is_ok_and(|q| q.contains(&app))
}
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Starts the exporter on an ephemeral port.
pub async fn start(client: Client) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("exporter binds");
    let addr = listener.local_addr().expect("exporter address");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(client);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

async fn metrics(State(client): State<Client>) -> String {
    let pods = Api::<Pod>::all(client)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let now = k8s_openapi::jiff::Timestamp::now();
    let mut out = String::from(
        "# HELP http_request_duration_seconds Request duration.\n# TYPE http_request_duration_seconds histogram\n",
    );
    for pod in &pods {
        if pod.metadata.deletion_timestamp.is_some() || !ready(pod) || quiet(pod) {
            continue;
        }
        let Some(created) = pod.metadata.creation_timestamp.as_ref() else {
            continue;
        };
        let age = (now.as_millisecond() - created.0.as_millisecond()) as f64 / 1000.0;
        let total = (age.max(0.0) * RPS).floor();
        let annotations = pod.annotations();
        let ratio: f64 = annotations
            .get(ERROR_RATIO)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let latency: f64 = annotations
            .get(LATENCY_MS)
            .and_then(|v| v.parse().ok())
            .unwrap_or(20.0)
            / 1000.0;
        let errors = (total * ratio).floor();
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        for (status, count) in [("200", total - errors), ("500", errors)] {
            if count <= 0.0 && status == "500" {
                continue;
            }
            let labels = format!(
                r#"kubernetes_namespace="{ns}",kubernetes_pod_name="{name}",status="{status}""#
            );
            for le in BUCKETS {
                let n = if latency <= le { count } else { 0.0 };
                let _ = writeln!(
                    out,
                    r#"http_request_duration_seconds_bucket{{{labels},le="{le}"}} {n}"#
                );
            }
            let _ = writeln!(
                out,
                r#"http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {count}"#
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_sum{{{labels}}} {}",
                count * latency
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
    }
    out
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
