//! Request metrics as podinfo exposes them, with the labels Prometheus's Kubernetes pod
//! discovery would add: `http_request_duration_seconds` (histogram) and `http_requests_total`,
//! labelled `kubernetes_namespace`, `kubernetes_pod_name`, `method`, `path` and `status`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Prometheus's default buckets, which podinfo uses.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The labels of one series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestLabels {
    pub namespace: String,
    /// The pod that answered (for a Service forwarded to a real process: the Service's name).
    pub pod: String,
    pub method: String,
    /// The route template (`/`, `/status/{code}`, ...); for forwarded requests, the path.
    pub path: String,
    pub status: u16,
}

#[derive(Debug, Default, Clone)]
struct Hist {
    buckets: [u64; 11],
    sum: f64,
    count: u64,
}

/// All recorded requests.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    series: Mutex<BTreeMap<RequestLabels, Hist>>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl RequestMetrics {
    pub fn observe(&self, labels: RequestLabels, took: Duration) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let h = series.entry(labels).or_default();
        let s = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                h.buckets[i] += 1;
            }
        }
        h.sum += s;
        h.count += 1;
    }

    /// Requests recorded for pods whose name starts with `pod_prefix` in `namespace`, by status.
    pub fn counts(&self, namespace: &str, pod_prefix: &str) -> BTreeMap<u16, u64> {
        let mut out = BTreeMap::new();
        for (l, h) in self.series.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if l.namespace == namespace && l.pod.starts_with(pod_prefix) {
                *out.entry(l.status).or_default() += h.count;
            }
        }
        out
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let series = self
            .series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = String::new();
        out.push_str("# HELP http_request_duration_seconds Seconds spent serving HTTP requests.\n# TYPE http_request_duration_seconds histogram\n");
        for (l, h) in &series {
            let base = format!(
                "kubernetes_namespace=\"{}\",kubernetes_pod_name=\"{}\",method=\"{}\",path=\"{}\",status=\"{}\"",
                escape(&l.namespace),
                escape(&l.pod),
                escape(&l.method),
                escape(&l.path),
                l.status
            );
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{{base},le=\"{b}\"}} {}",
                    h.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{{base},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "http_request_duration_seconds_sum{{{base}}} {}", h.sum);
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{{base}}} {}",
                h.count
            );
        }
        out.push_str("# HELP http_requests_total The total number of HTTP requests.\n# TYPE http_requests_total counter\n");
        for (l, h) in &series {
            let _ = writeln!(
                out,
                "http_requests_total{{kubernetes_namespace=\"{}\",kubernetes_pod_name=\"{}\",method=\"{}\",path=\"{}\",status=\"{}\"}} {}",
                escape(&l.namespace),
                escape(&l.pod),
                escape(&l.method),
                escape(&l.path),
                l.status,
                h.count
            );
        }
        out
    }
}
