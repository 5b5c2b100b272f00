//! Envoy's cluster statistics, Contour-style: `envoy_cluster_upstream_rq` and
//! `envoy_cluster_upstream_rq_time` per cluster `<namespace>_<service>_<port>` (the Service a
//! request was sent to), with the pod discovery labels, for requests that came through a
//! Service. Flagger's Contour, App Mesh and Gateway API (Envoy-based) queries read these.
//! Kuma's proxies ([`super::kuma`]) and Kourier's gateway ([`super::knative`]) add their rows
//! to the same families.
//!
//! And the same statistics of the requests Gloo's gateway Envoy served ([`super::gloo`]),
//! per cluster as Gloo names them (`<upstream>_<upstream namespace>`), with the discovery
//! labels of Gloo's `gateway-proxy` pod: Flagger's Gloo queries read these.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::super::telemetry::{
    ISTIO_BUCKETS, MeshLabels, Recorded, Telemetry, escape, header, histogram,
};

/// The gateway name of the requests an Envoy gateway records (see
/// [`GatewayTelemetry`](super::super::router::GatewayTelemetry)); its `name` is the cluster.
pub const GATEWAY: &str = "envoy";

/// Envoy's upstream cluster statistics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Envoy;

fn labels(l: &MeshLabels) -> String {
    format!(
        "envoy_cluster_name=\"{}_{}_{}\",kubernetes_namespace=\"{}\",kubernetes_pod_name=\"{}\"",
        escape(&l.service_namespace),
        escape(&l.service),
        l.port,
        escape(&l.namespace),
        escape(&l.pod)
    )
}

/// One cluster's statistics: requests by response code (the counter's own labels), and their
/// times.
#[derive(Default)]
struct Cluster {
    codes: BTreeMap<String, u64>,
    buckets: Vec<u64>,
    sum_ms: f64,
    count: u64,
}

impl Cluster {
    fn add(&mut self, code: String, buckets: &[u64], sum_ms: f64, count: u64) {
        *self.codes.entry(code).or_default() += count;
        if self.buckets.len() < buckets.len() {
            self.buckets.resize(buckets.len(), 0);
        }
        for (b, n) in self.buckets.iter_mut().zip(buckets) {
            *b += n;
        }
        self.sum_ms += sum_ms;
        self.count += count;
    }
}

/// The counter's own label: the response code.
fn code(status: u16) -> String {
    format!(",envoy_response_code=\"{status}\"")
}

impl Telemetry for Envoy {
    /// One counter series per cluster (with its labels) and response code, one histogram per
    /// cluster: the response code is a label of the counter only, as Envoy writes them.
    fn render(&self, recorded: &Recorded, out: &mut String) {
        let mut clusters: BTreeMap<String, Cluster> = BTreeMap::new();
        for (l, h) in recorded
            .destination()
            .filter(|(l, _)| !l.service.is_empty())
        {
            clusters
                .entry(labels(l))
                .or_default()
                .add(code(l.status), &h.istio, h.sum_ms, h.count);
        }
        for r in super::kuma::envoy_rows(recorded)
            .into_iter()
            .chain(super::knative::envoy_rows(recorded))
        {
            clusters
                .entry(r.labels)
                .or_default()
                .add(r.counter_only, r.buckets, r.sum, r.count);
        }
        for (l, h) in recorded
            .gateway
            .iter()
            .filter(|(l, h)| l.telemetry.gateway == GATEWAY && h.upstream.count > 0)
        {
            let mut key = format!("envoy_cluster_name=\"{}\"", escape(&l.telemetry.name));
            for (k, v) in &l.telemetry.labels {
                let _ = write!(key, ",{k}=\"{}\"", escape(v));
            }
            let buckets = h.upstream.cumulative(&ISTIO_BUCKETS);
            clusters.entry(key).or_default().add(
                code(l.status),
                &buckets,
                h.upstream.sum_ms,
                h.upstream.count,
            );
        }
        header(
            out,
            "envoy_cluster_upstream_rq",
            "counter",
            "Upstream requests by response code.",
        );
        for (labels, c) in &clusters {
            for (code, n) in &c.codes {
                let _ = writeln!(out, "envoy_cluster_upstream_rq{{{labels}{code}}} {n}");
            }
        }
        header(
            out,
            "envoy_cluster_upstream_rq_time",
            "histogram",
            "Upstream request times.",
        );
        for (labels, c) in &clusters {
            histogram(
                out,
                "envoy_cluster_upstream_rq_time",
                labels,
                &ISTIO_BUCKETS,
                &c.buckets,
                c.sum_ms,
                c.count,
            );
        }
    }
}
