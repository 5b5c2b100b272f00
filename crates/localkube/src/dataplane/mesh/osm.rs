//! Open Service Mesh: its Envoy's `osm_request_total` and `osm_request_duration_ms` for every
//! request a pod answers. OSM routes by SMI TrafficSplits ([`super::smi`]).

use super::super::telemetry::{
    ISTIO_BUCKETS, MeshLabels, Recorded, Row, Telemetry, counter_and_histogram, escape,
};

/// OSM's proxy metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Osm;

/// The source labels are `unknown`: the proxy does not know the sending workload.
fn labels(l: &MeshLabels) -> String {
    format!(
        "source_namespace=\"unknown\",source_kind=\"unknown\",source_name=\"unknown\",source_pod=\"unknown\",destination_namespace=\"{}\",destination_kind=\"{}\",destination_name=\"{}\",destination_pod=\"{}\",response_code=\"{}\"",
        escape(&l.namespace),
        escape(&l.workload_kind),
        escape(&l.workload),
        escape(&l.pod),
        l.status
    )
}

impl Telemetry for Osm {
    fn render(&self, recorded: &Recorded, out: &mut String) {
        let rows: Vec<Row<'_>> = recorded
            .destination()
            .map(|(l, h)| Row {
                labels: labels(l),
                counter_only: String::new(),
                buckets: &h.istio,
                sum: h.sum_ms,
                count: h.count,
            })
            .collect();
        counter_and_histogram(
            out,
            (
                "osm_request_total",
                "Requests reported by the destination's OSM proxy.",
            ),
            (
                "osm_request_duration_ms",
                "Request durations reported by the destination's OSM proxy.",
            ),
            &ISTIO_BUCKETS,
            &rows,
        );
    }
}
