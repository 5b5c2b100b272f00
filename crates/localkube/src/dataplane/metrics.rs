//! Request metrics as podinfo exposes them, with the labels Prometheus's Kubernetes pod
//! discovery would add: `http_request_duration_seconds` (histogram) and `http_requests_total`,
//! labelled `kubernetes_namespace`, `kubernetes_pod_name`, `method`, `path` and `status`.
//!
//! And the mesh's telemetry of the same requests, as the sidecar of the pod that answered
//! reports it (what Flagger's builtin checks query):
//!
//! - Istio: `istio_requests_total` and `istio_request_duration_milliseconds` (histogram),
//!   `reporter="destination"`, `destination_workload_namespace`, `destination_workload`,
//!   `destination_service*`, `response_code`, ...;
//! - Linkerd: `response_total` (`direction="inbound"`, `namespace`, `deployment`, `pod`,
//!   `status_code`, `classification="success|failure"`) and `response_latency_ms` (histogram);
//! - Envoy (Contour-style clusters `<ns>_<service>_<port>`, with the pod discovery labels):
//!   `envoy_cluster_upstream_rq` (`envoy_response_code`) and `envoy_cluster_upstream_rq_time`
//!   (histogram), for requests that came through a Service;
//! - OSM (its Envoy's stats): `osm_request_total` (`destination_namespace`,
//!   `destination_kind`, `destination_name`, `destination_pod`, `response_code`, the
//!   `source_*` labels `unknown`) and `osm_request_duration_ms` (histogram).
//!
//! And, for requests the simulated NGINX ingress controller served, its series as
//! ingress-nginx's socket collector writes them: `nginx_ingress_controller_requests`,
//! `nginx_ingress_controller_request_duration_seconds` and
//! `nginx_ingress_controller_response_duration_seconds` (histograms), labelled `namespace`,
//! `ingress`, `service`, `canary`, `path`, `method`, `status`, `host` and the controller's
//! constant labels.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use super::telemetry::{BUCKETS, Hist, IngressHist, MeshHist, Recorded, escape};
pub use super::telemetry::{IngressLabels, MeshLabels};

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

/// All recorded requests.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    series: Mutex<BTreeMap<RequestLabels, Hist>>,
    recorded: Mutex<Recorded>,
}

impl RequestMetrics {
    pub fn observe(&self, labels: RequestLabels, took: Duration) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series.entry(labels).or_default().observe(took);
    }

    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a request the ingress controller served: `took` in all, `upstream` of it
    /// waiting for the backend (`None`: answered without one).
    pub fn observe_ingress(
        &self,
        labels: IngressLabels,
        took: Duration,
        upstream: Option<Duration>,
    ) {
        let mut recorded = self.recorded();
        let h: &mut IngressHist = recorded.ingress.entry(labels).or_default();
        h.request.observe(took);
        if let Some(u) = upstream {
            h.response.observe(u);
        }
    }

    /// Requests the ingress controller recorded under Ingress `namespace/ingress`, by
    /// `canary` label and status.
    pub fn ingress_counts(&self, namespace: &str, ingress: &str) -> BTreeMap<(String, u16), u64> {
        let mut out = BTreeMap::new();
        for (l, h) in self.recorded().ingress.iter() {
            if l.namespace == namespace && l.ingress == ingress {
                *out.entry((l.canary.clone(), l.status)).or_default() += h.request.count;
            }
        }
        out
    }

    /// Forgets every recorded request.
    pub fn reset(&self) {
        self.series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        *self.recorded() = Recorded::default();
    }

    /// Records a request in the mesh telemetry.
    pub fn observe_mesh(&self, labels: MeshLabels, took: Duration) {
        let mut recorded = self.recorded();
        let h: &mut MeshHist = recorded.mesh.entry(labels).or_default();
        h.observe(took);
    }

    /// Requests answered by `workload` in `namespace` as the mesh telemetry has them, by status.
    pub fn mesh_counts(&self, namespace: &str, workload: &str) -> BTreeMap<u16, u64> {
        let mut out = BTreeMap::new();
        for (l, h) in self.recorded().mesh.iter() {
            if l.namespace == namespace && l.workload == workload {
                *out.entry(l.status).or_default() += h.count;
            }
        }
        out
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
        let recorded = self.recorded().clone();
        for t in super::mesh::telemetry() {
            t.render(&recorded, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(status: u16) -> MeshLabels {
        MeshLabels {
            namespace: "test".into(),
            workload_kind: "Deployment".into(),
            workload: "podinfo".into(),
            pod: "podinfo-abc12-xyz34".into(),
            service_namespace: "test".into(),
            service: "podinfo-canary".into(),
            port: 9898,
            status,
        }
    }

    #[test]
    fn mesh_series() {
        let m = RequestMetrics::default();
        m.observe_mesh(labels(200), Duration::from_millis(3));
        m.observe_mesh(labels(200), Duration::from_millis(30));
        m.observe_mesh(labels(503), Duration::from_millis(700));
        let direct = MeshLabels {
            service: String::new(),
            service_namespace: String::new(),
            port: 0,
            ..labels(200)
        };
        m.observe_mesh(direct, Duration::from_millis(1));
        assert_eq!(
            m.mesh_counts("test", "podinfo"),
            BTreeMap::from([(200, 3), (503, 1)])
        );
        let text = m.render();
        let istio = "reporter=\"destination\",source_workload=\"unknown\",source_workload_namespace=\"unknown\",destination_workload=\"podinfo\",destination_workload_namespace=\"test\",destination_service=\"podinfo-canary.test.svc.cluster.local\",destination_service_name=\"podinfo-canary\",destination_service_namespace=\"test\",request_protocol=\"http\"";
        let linkerd = "direction=\"inbound\",namespace=\"test\",deployment=\"podinfo\",pod=\"podinfo-abc12-xyz34\",tls=\"true\"";
        let envoy = "envoy_cluster_name=\"test_podinfo-canary_9898\",kubernetes_namespace=\"test\",kubernetes_pod_name=\"podinfo-abc12-xyz34\"";
        for line in [
            format!("istio_requests_total{{{istio},response_code=\"200\",response_flags=\"-\"}} 2"),
            format!("istio_requests_total{{{istio},response_code=\"503\",response_flags=\"-\"}} 1"),
            format!(
                "istio_request_duration_milliseconds_bucket{{{istio},response_code=\"200\",response_flags=\"-\",le=\"1\"}} 0"
            ),
            format!(
                "istio_request_duration_milliseconds_bucket{{{istio},response_code=\"200\",response_flags=\"-\",le=\"5\"}} 1"
            ),
            format!(
                "istio_request_duration_milliseconds_bucket{{{istio},response_code=\"200\",response_flags=\"-\",le=\"50\"}} 2"
            ),
            format!(
                "istio_request_duration_milliseconds_bucket{{{istio},response_code=\"200\",response_flags=\"-\",le=\"+Inf\"}} 2"
            ),
            format!(
                "istio_request_duration_milliseconds_count{{{istio},response_code=\"503\",response_flags=\"-\"}} 1"
            ),
            format!("response_total{{{linkerd},status_code=\"200\",classification=\"success\"}} 2"),
            format!("response_total{{{linkerd},status_code=\"503\",classification=\"failure\"}} 1"),
            format!("response_latency_ms_bucket{{{linkerd},status_code=\"200\",le=\"3\"}} 1"),
            format!("response_latency_ms_bucket{{{linkerd},status_code=\"503\",le=\"500\"}} 0"),
            format!("response_latency_ms_bucket{{{linkerd},status_code=\"503\",le=\"1000\"}} 1"),
            format!("envoy_cluster_upstream_rq{{{envoy},envoy_response_code=\"503\"}} 1"),
            format!("envoy_cluster_upstream_rq_time_count{{{envoy}}} 2"),
            // A pod addressed by IP: no Service, no Envoy cluster.
            "destination_service=\"unknown\",destination_service_name=\"unknown\"".to_string(),
        ] {
            assert!(text.contains(&line), "missing {line}\n{text}");
        }
        assert_eq!(text.matches("envoy_cluster_upstream_rq{").count(), 2);
        m.reset();
        assert!(m.mesh_counts("test", "podinfo").is_empty());
    }

    #[test]
    fn osm_series() {
        let m = RequestMetrics::default();
        m.observe_mesh(labels(200), Duration::from_millis(3));
        m.observe_mesh(labels(200), Duration::from_millis(30));
        m.observe_mesh(labels(500), Duration::from_millis(700));
        let daemon = MeshLabels {
            workload_kind: "DaemonSet".into(),
            workload: "agent".into(),
            pod: "agent-x1y2z".into(),
            ..labels(200)
        };
        m.observe_mesh(daemon, Duration::from_millis(1));
        let text = m.render();
        let dest = "source_namespace=\"unknown\",source_kind=\"unknown\",source_name=\"unknown\",source_pod=\"unknown\",destination_namespace=\"test\",destination_kind=\"Deployment\",destination_name=\"podinfo\",destination_pod=\"podinfo-abc12-xyz34\"";
        for line in [
            "# TYPE osm_request_total counter".to_string(),
            "# TYPE osm_request_duration_ms histogram".to_string(),
            format!("osm_request_total{{{dest},response_code=\"200\"}} 2"),
            format!("osm_request_total{{{dest},response_code=\"500\"}} 1"),
            format!("osm_request_duration_ms_bucket{{{dest},response_code=\"200\",le=\"5\"}} 1"),
            format!("osm_request_duration_ms_bucket{{{dest},response_code=\"200\",le=\"50\"}} 2"),
            format!("osm_request_duration_ms_bucket{{{dest},response_code=\"500\",le=\"500\"}} 0"),
            format!("osm_request_duration_ms_bucket{{{dest},response_code=\"500\",le=\"1000\"}} 1"),
            format!("osm_request_duration_ms_bucket{{{dest},response_code=\"500\",le=\"+Inf\"}} 1"),
            format!("osm_request_duration_ms_count{{{dest},response_code=\"200\"}} 2"),
            "destination_kind=\"DaemonSet\",destination_name=\"agent\",destination_pod=\"agent-x1y2z\",response_code=\"200\"} 1".to_string(),
        ] {
            assert!(text.contains(&line), "missing {line}\n{text}");
        }
        // Flagger's builtin OSM selector picks the Deployment's series only.
        let selected = text
            .lines()
            .filter(|l| {
                l.starts_with("osm_request_total{")
                    && l.contains("destination_namespace=\"test\",destination_kind=\"Deployment\",destination_name=\"podinfo\"")
            })
            .count();
        assert_eq!(selected, 2);
    }
}
