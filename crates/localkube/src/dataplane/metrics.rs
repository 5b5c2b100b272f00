//! The data plane's recorder: every request a simulated pod answers, as the pod's own podinfo
//! counts it and as the meshes' proxies and the ingress controller report it.
//!
//! **podinfo's series, per pod.** Each simulated pod keeps podinfo's own series of the
//! requests it answered, `http_request_duration_seconds` (histogram, Prometheus's default
//! buckets) labelled `method`, `path` (podinfo's route label: `root` for `/`, `status`,
//! `delay`, `token`, ...) and `status`, and `http_requests_total` labelled `status`, and
//! serves them at its own `/metrics` ([`RequestMetrics::render_pod`]). Prometheus scrapes each
//! pod through the data plane and adds the pod's labels by relabeling the targets of the data
//! plane's service discovery ([`super::discovery`]), as on a cluster.
//!
//! **The proxies' and controllers' series**, on the data plane's own `/metrics`
//! ([`RequestMetrics::render`]): each mesh module writes its own from the records
//! ([`super::telemetry`]): Istio (both reporters), Linkerd, Envoy, OSM, ingress-nginx.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use super::telemetry::{
    BUCKETS, GatewayHist, Hist, IngressHist, MeshHist, Recorded, escape, header, histogram,
};
pub use super::telemetry::{GatewayLabels, IngressLabels, MeshLabels, Reporter};

/// The pod a podinfo series belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// podinfo's own series of one pod.
#[derive(Debug, Default, Clone)]
struct PodSeries {
    namespace: String,
    name: String,
    /// `http_request_duration_seconds` by `(method, path, status)`.
    durations: BTreeMap<(String, String, u16), Hist>,
    /// `http_requests_total` by `status`.
    totals: BTreeMap<u16, u64>,
}

/// All recorded requests.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    /// podinfo's series, by pod uid.
    pods: Mutex<HashMap<String, PodSeries>>,
    recorded: Mutex<Recorded>,
}

impl RequestMetrics {
    fn pods(&self) -> std::sync::MutexGuard<'_, HashMap<String, PodSeries>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a request `pod` answered, as podinfo's middleware does: under its route's
    /// `path` label, the `method` and the `status`.
    pub fn observe_pod(&self, pod: &PodRef, method: &str, path: &str, status: u16, took: Duration) {
        let mut pods = self.pods();
        let series = pods.entry(pod.uid.clone()).or_insert_with(|| PodSeries {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            ..Default::default()
        });
        series
            .durations
            .entry((method.to_string(), path.to_string(), status))
            .or_default()
            .observe(took);
        *series.totals.entry(status).or_default() += 1;
    }

    /// What the pod with this uid serves at `/metrics` (podinfo's exposition; empty series
    /// before its first request).
    pub fn render_pod(&self, uid: &str) -> String {
        let series = self.pods().get(uid).cloned().unwrap_or_default();
        let mut out = String::new();
        header(
            &mut out,
            "http_request_duration_seconds",
            "histogram",
            "Seconds spent serving HTTP requests.",
        );
        for ((method, path, status), h) in &series.durations {
            let labels = format!(
                "method=\"{}\",path=\"{}\",status=\"{status}\"",
                escape(method),
                escape(path)
            );
            histogram(
                &mut out,
                "http_request_duration_seconds",
                &labels,
                &BUCKETS,
                &h.buckets,
                h.sum,
                h.count,
            );
        }
        header(
            &mut out,
            "http_requests_total",
            "counter",
            "The total number of HTTP requests.",
        );
        for (status, n) in &series.totals {
            let _ = writeln!(out, "http_requests_total{{status=\"{status}\"}} {n}");
        }
        out
    }

    /// Requests recorded by pods whose name starts with `pod_prefix` in `namespace`, by status.
    pub fn counts(&self, namespace: &str, pod_prefix: &str) -> BTreeMap<u16, u64> {
        let mut out = BTreeMap::new();
        for s in self.pods().values() {
            if s.namespace == namespace && s.name.starts_with(pod_prefix) {
                for (status, n) in &s.totals {
                    *out.entry(*status).or_default() += n;
                }
            }
        }
        out
    }

    /// Requests recorded by pods whose name starts with `pod_prefix` in `namespace`, by
    /// podinfo's `path` label.
    pub fn counts_by_path(&self, namespace: &str, pod_prefix: &str) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for s in self.pods().values() {
            if s.namespace == namespace && s.name.starts_with(pod_prefix) {
                for ((_, path, _), h) in &s.durations {
                    *out.entry(path.clone()).or_default() += h.count;
                }
            }
        }
        out
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

    /// Records a request a gateway served: `took` in all, `upstream` of it waiting for the
    /// backend (`None`: answered without one).
    pub fn observe_gateway(
        &self,
        labels: GatewayLabels,
        took: Duration,
        upstream: Option<Duration>,
    ) {
        let mut recorded = self.recorded();
        let h: &mut GatewayHist = recorded.gateway.entry(labels).or_default();
        h.request.observe(took);
        if let Some(u) = upstream {
            h.upstream.observe(u);
        }
    }

    /// Requests the gateway `gateway` filed under `name`, by status.
    pub fn gateway_counts(&self, gateway: &str, name: &str) -> BTreeMap<u16, u64> {
        let mut out = BTreeMap::new();
        for (l, h) in self.recorded().gateway.iter() {
            if l.telemetry.gateway == gateway && l.telemetry.name == name {
                *out.entry(l.status).or_default() += h.request.count;
            }
        }
        out
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
        self.pods().clear();
        *self.recorded() = Recorded::default();
    }

    /// Records a request in the mesh telemetry.
    pub fn observe_mesh(&self, labels: MeshLabels, took: Duration) {
        let mut recorded = self.recorded();
        let h: &mut MeshHist = recorded.mesh.entry(labels).or_default();
        h.observe(took);
    }

    /// Requests answered by `workload` in `namespace` as the destinations' proxies report
    /// them, by status.
    pub fn mesh_counts(&self, namespace: &str, workload: &str) -> BTreeMap<u16, u64> {
        let mut out = BTreeMap::new();
        for (l, h) in self.recorded().mesh.iter() {
            if l.reporter == Reporter::Destination
                && l.namespace == namespace
                && l.workload == workload
            {
                *out.entry(l.status).or_default() += h.count;
            }
        }
        out
    }

    /// The data plane's own exposition: the proxies' and controllers' series.
    pub fn render(&self) -> String {
        let recorded = self.recorded().clone();
        let mut out = String::new();
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
            reporter: Reporter::Destination,
            source_namespace: String::new(),
            source_workload: String::new(),
            response_flags: "-",
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
            // One histogram per cluster, every response code in it.
            format!("envoy_cluster_upstream_rq_time_count{{{envoy}}} 3"),
            // A pod addressed by IP: no Service, no Envoy cluster.
            "destination_service=\"unknown\",destination_service_name=\"unknown\"".to_string(),
        ] {
            assert!(text.contains(&line), "missing {line}\n{text}");
        }
        // Two Contour-style rows (200 and 503 of the Service-addressed requests) and the same
        // two in Kuma's form (`localhost_<port>` clusters); the pod addressed by IP has none.
        assert_eq!(
            text.matches(
                "envoy_cluster_upstream_rq{envoy_cluster_name=\"test_podinfo-canary_9898\""
            )
            .count(),
            2
        );
        assert_eq!(
            text.matches("envoy_cluster_upstream_rq{envoy_cluster_name=\"localhost_9898\"")
                .count(),
            2
        );
        assert_eq!(text.matches("envoy_cluster_upstream_rq{").count(), 4);
        // One histogram per cluster in each form.
        assert_eq!(
            text.matches("envoy_cluster_upstream_rq_time_count{")
                .count(),
            2
        );
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
