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

/// Istio's and Envoy's default duration buckets, in milliseconds (OSM's Envoy too).
const ISTIO_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Linkerd's proxy latency buckets, in milliseconds.
const LINKERD_BUCKETS: [f64; 25] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0,
];

/// The labels of one mesh series: the workload that answered and the Service it was reached
/// through.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MeshLabels {
    /// The namespace of the pod that answered.
    pub namespace: String,
    /// The kind of its workload (`Deployment`, `DaemonSet`, ..., `Pod`; `Service` for a
    /// Service forwarded to a real process).
    pub workload_kind: String,
    /// Its workload: the Deployment owning its ReplicaSet (or its DaemonSet, StatefulSet...);
    /// for a Service forwarded to a real process, the Service's name.
    pub workload: String,
    pub pod: String,
    /// The Service the request was sent to (empty when a pod was addressed by IP).
    pub service_namespace: String,
    pub service: String,
    pub port: u16,
    pub status: u16,
}

#[derive(Debug, Default, Clone)]
struct MeshHist {
    istio: [u64; 19],
    linkerd: [u64; 25],
    sum_ms: f64,
    count: u64,
}

/// The labels of one ingress controller series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IngressLabels {
    /// The namespace of the Ingress owning the location.
    pub namespace: String,
    /// The main Ingress owning the location (canary traffic included).
    pub ingress: String,
    /// The main Ingress's Service for that location.
    pub service: String,
    /// The canary upstream (`<namespace>-<service>-<port>`) when a canary Ingress took the
    /// request, else empty.
    pub canary: String,
    /// The Ingress path of the location.
    pub path: String,
    pub host: String,
    pub method: String,
    pub status: u16,
}

#[derive(Debug, Default, Clone)]
struct IngressHist {
    /// The whole request as the controller saw it.
    request: Hist,
    /// The upstream's part (absent when no upstream answered).
    response: Hist,
}

impl Hist {
    fn observe(&mut self, took: Duration) {
        let s = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.buckets[i] += 1;
            }
        }
        self.sum += s;
        self.count += 1;
    }
}

/// ingress-nginx's constant labels, as a controller installed by its Helm chart in
/// `ingress-nginx` would have them.
const NGINX_CONTROLLER_LABELS: &str = "controller_class=\"k8s.io/ingress-nginx\",controller_namespace=\"ingress-nginx\",controller_pod=\"ingress-nginx-controller-localkube\"";

/// All recorded requests.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    series: Mutex<BTreeMap<RequestLabels, Hist>>,
    mesh: Mutex<BTreeMap<MeshLabels, MeshHist>>,
    ingress: Mutex<BTreeMap<IngressLabels, IngressHist>>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl RequestMetrics {
    pub fn observe(&self, labels: RequestLabels, took: Duration) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series.entry(labels).or_default().observe(took);
    }

    /// Records a request the ingress controller served: `took` in all, `upstream` of it
    /// waiting for the backend (`None`: answered without one).
    pub fn observe_ingress(
        &self,
        labels: IngressLabels,
        took: Duration,
        upstream: Option<Duration>,
    ) {
        let mut ingress = self.ingress.lock().unwrap_or_else(|e| e.into_inner());
        let h = ingress.entry(labels).or_default();
        h.request.observe(took);
        if let Some(u) = upstream {
            h.response.observe(u);
        }
    }

    /// Requests the ingress controller recorded under Ingress `namespace/ingress`, by
    /// `canary` label and status.
    pub fn ingress_counts(&self, namespace: &str, ingress: &str) -> BTreeMap<(String, u16), u64> {
        let mut out = BTreeMap::new();
        for (l, h) in self
            .ingress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
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
        self.mesh.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.ingress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Records a request in the mesh telemetry.
    pub fn observe_mesh(&self, labels: MeshLabels, took: Duration) {
        let mut mesh = self.mesh.lock().unwrap_or_else(|e| e.into_inner());
        let h = mesh.entry(labels).or_default();
        let ms = took.as_secs_f64() * 1000.0;
        for (i, b) in ISTIO_BUCKETS.iter().enumerate() {
            if ms <= *b {
                h.istio[i] += 1;
            }
        }
        for (i, b) in LINKERD_BUCKETS.iter().enumerate() {
            if ms <= *b {
                h.linkerd[i] += 1;
            }
        }
        h.sum_ms += ms;
        h.count += 1;
    }

    /// Requests answered by `workload` in `namespace` as the mesh telemetry has them, by status.
    pub fn mesh_counts(&self, namespace: &str, workload: &str) -> BTreeMap<u16, u64> {
        let mut out = BTreeMap::new();
        for (l, h) in self.mesh.lock().unwrap_or_else(|e| e.into_inner()).iter() {
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
        self.render_mesh(&mut out);
        self.render_ingress(&mut out);
        out
    }

    fn render_ingress(&self, out: &mut String) {
        let ingress = self
            .ingress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let labels = |l: &IngressLabels| {
            format!(
                "canary=\"{}\",{NGINX_CONTROLLER_LABELS},host=\"{}\",ingress=\"{}\",method=\"{}\",namespace=\"{}\",path=\"{}\",service=\"{}\",status=\"{}\"",
                escape(&l.canary),
                escape(&l.host),
                escape(&l.ingress),
                escape(&l.method),
                escape(&l.namespace),
                escape(&l.path),
                escape(&l.service),
                l.status
            )
        };
        out.push_str("# HELP nginx_ingress_controller_requests The total number of client requests\n# TYPE nginx_ingress_controller_requests counter\n");
        for (l, h) in &ingress {
            let _ = writeln!(
                out,
                "nginx_ingress_controller_requests{{{}}} {}",
                labels(l),
                h.request.count
            );
        }
        for (name, help, upstream) in [
            (
                "nginx_ingress_controller_request_duration_seconds",
                "The request processing time in seconds",
                false,
            ),
            (
                "nginx_ingress_controller_response_duration_seconds",
                "The time spent on receiving the response from the upstream server",
                true,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (l, h) in &ingress {
                let hist = if upstream { &h.response } else { &h.request };
                if hist.count == 0 {
                    continue;
                }
                histogram(
                    out,
                    name,
                    &labels(l),
                    &BUCKETS,
                    &hist.buckets,
                    hist.sum,
                    hist.count,
                );
            }
        }
    }

    fn render_mesh(&self, out: &mut String) {
        let mesh = self.mesh.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let unknown = |s: &str| {
            if s.is_empty() {
                "unknown".to_string()
            } else {
                escape(s)
            }
        };
        let istio = |l: &MeshLabels| {
            let fqdn = if l.service.is_empty() {
                "unknown".to_string()
            } else {
                format!(
                    "{}.{}.svc.cluster.local",
                    escape(&l.service),
                    escape(&l.service_namespace)
                )
            };
            format!(
                "reporter=\"destination\",source_workload=\"unknown\",source_workload_namespace=\"unknown\",destination_workload=\"{}\",destination_workload_namespace=\"{}\",destination_service=\"{fqdn}\",destination_service_name=\"{}\",destination_service_namespace=\"{}\",request_protocol=\"http\",response_code=\"{}\",response_flags=\"-\"",
                escape(&l.workload),
                escape(&l.namespace),
                unknown(&l.service),
                unknown(&l.service_namespace),
                l.status
            )
        };
        out.push_str("# HELP istio_requests_total Requests reported by the destination sidecar.\n# TYPE istio_requests_total counter\n");
        for (l, h) in &mesh {
            let _ = writeln!(out, "istio_requests_total{{{}}} {}", istio(l), h.count);
        }
        out.push_str("# HELP istio_request_duration_milliseconds Request durations reported by the destination sidecar.\n# TYPE istio_request_duration_milliseconds histogram\n");
        for (l, h) in &mesh {
            let base = istio(l);
            histogram(
                out,
                "istio_request_duration_milliseconds",
                &base,
                &ISTIO_BUCKETS,
                &h.istio,
                h.sum_ms,
                h.count,
            );
        }
        let linkerd = |l: &MeshLabels| {
            format!(
                "direction=\"inbound\",namespace=\"{}\",deployment=\"{}\",pod=\"{}\",tls=\"true\",status_code=\"{}\"",
                escape(&l.namespace),
                escape(&l.workload),
                escape(&l.pod),
                l.status
            )
        };
        out.push_str("# HELP response_total Responses reported by the inbound proxy.\n# TYPE response_total counter\n");
        for (l, h) in &mesh {
            let class = if l.status >= 500 {
                "failure"
            } else {
                "success"
            };
            let _ = writeln!(
                out,
                "response_total{{{},classification=\"{class}\"}} {}",
                linkerd(l),
                h.count
            );
        }
        out.push_str("# HELP response_latency_ms Response latencies reported by the inbound proxy.\n# TYPE response_latency_ms histogram\n");
        for (l, h) in &mesh {
            histogram(
                out,
                "response_latency_ms",
                &linkerd(l),
                &LINKERD_BUCKETS,
                &h.linkerd,
                h.sum_ms,
                h.count,
            );
        }
        let envoy = |l: &MeshLabels| {
            format!(
                "envoy_cluster_name=\"{}_{}_{}\",kubernetes_namespace=\"{}\",kubernetes_pod_name=\"{}\"",
                escape(&l.service_namespace),
                escape(&l.service),
                l.port,
                escape(&l.namespace),
                escape(&l.pod)
            )
        };
        out.push_str("# HELP envoy_cluster_upstream_rq Upstream requests by response code.\n# TYPE envoy_cluster_upstream_rq counter\n");
        for (l, h) in mesh.iter().filter(|(l, _)| !l.service.is_empty()) {
            let _ = writeln!(
                out,
                "envoy_cluster_upstream_rq{{{},envoy_response_code=\"{}\"}} {}",
                envoy(l),
                l.status,
                h.count
            );
        }
        out.push_str("# HELP envoy_cluster_upstream_rq_time Upstream request times.\n# TYPE envoy_cluster_upstream_rq_time histogram\n");
        for (l, h) in mesh.iter().filter(|(l, _)| !l.service.is_empty()) {
            histogram(
                out,
                "envoy_cluster_upstream_rq_time",
                &envoy(l),
                &ISTIO_BUCKETS,
                &h.istio,
                h.sum_ms,
                h.count,
            );
        }
        let osm = |l: &MeshLabels| {
            format!(
                "source_namespace=\"unknown\",source_kind=\"unknown\",source_name=\"unknown\",source_pod=\"unknown\",destination_namespace=\"{}\",destination_kind=\"{}\",destination_name=\"{}\",destination_pod=\"{}\",response_code=\"{}\"",
                escape(&l.namespace),
                escape(&l.workload_kind),
                escape(&l.workload),
                escape(&l.pod),
                l.status
            )
        };
        out.push_str("# HELP osm_request_total Requests reported by the destination's OSM proxy.\n# TYPE osm_request_total counter\n");
        for (l, h) in &mesh {
            let _ = writeln!(out, "osm_request_total{{{}}} {}", osm(l), h.count);
        }
        out.push_str("# HELP osm_request_duration_ms Request durations reported by the destination's OSM proxy.\n# TYPE osm_request_duration_ms histogram\n");
        for (l, h) in &mesh {
            histogram(
                out,
                "osm_request_duration_ms",
                &osm(l),
                &ISTIO_BUCKETS,
                &h.istio,
                h.sum_ms,
                h.count,
            );
        }
    }
}

/// Writes one histogram series (`_bucket` per bound and `+Inf`, `_sum`, `_count`).
fn histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    bounds: &[f64],
    buckets: &[u64],
    sum: f64,
    count: u64,
) {
    for (b, n) in bounds.iter().zip(buckets) {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
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
