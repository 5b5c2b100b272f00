//! Envoy's cluster statistics, Contour-style: `envoy_cluster_upstream_rq` and
//! `envoy_cluster_upstream_rq_time` per cluster `<namespace>_<service>_<port>` (the Service a
//! request was sent to), with the pod discovery labels, for requests that came through a
//! Service. Flagger's Contour, Gloo, App Mesh and Gateway API (Envoy-based) queries read these.
//! Kuma's proxies ([`super::kuma`]) and Kourier's gateway ([`super::knative`]) add their rows
//! to the same families.

use super::super::telemetry::{
    ISTIO_BUCKETS, MeshLabels, Recorded, Row, Telemetry, counter_and_histogram, escape,
};

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

impl Telemetry for Envoy {
    fn render(&self, recorded: &Recorded, out: &mut String) {
        let mut rows: Vec<Row<'_>> = recorded
            .destination()
            .filter(|(l, _)| !l.service.is_empty())
            .map(|(l, h)| Row {
                labels: labels(l),
                counter_only: format!(",envoy_response_code=\"{}\"", l.status),
                buckets: &h.istio,
                sum: h.sum_ms,
                count: h.count,
            })
            .collect();
        rows.extend(super::kuma::envoy_rows(recorded));
        rows.extend(super::knative::envoy_rows(recorded));
        counter_and_histogram(
            out,
            (
                "envoy_cluster_upstream_rq",
                "Upstream requests by response code.",
            ),
            ("envoy_cluster_upstream_rq_time", "Upstream request times."),
            &ISTIO_BUCKETS,
            &rows,
        );
    }
}
