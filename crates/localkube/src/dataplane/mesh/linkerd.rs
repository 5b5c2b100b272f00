//! Linkerd: its inbound proxy's `response_total` and `response_latency_ms` for every request a
//! pod answers. Linkerd routes by SMI TrafficSplits ([`super::smi`]).

use super::super::telemetry::{
    LINKERD_BUCKETS, MeshLabels, Recorded, Row, Telemetry, counter_and_histogram, escape,
};

/// Linkerd's proxy metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Linkerd;

fn labels(l: &MeshLabels) -> String {
    format!(
        "direction=\"inbound\",namespace=\"{}\",deployment=\"{}\",pod=\"{}\",tls=\"true\",status_code=\"{}\"",
        escape(&l.namespace),
        escape(&l.workload),
        escape(&l.pod),
        l.status
    )
}

impl Telemetry for Linkerd {
    fn render(&self, recorded: &Recorded, out: &mut String) {
        let rows: Vec<Row<'_>> = recorded
            .destination()
            .map(|(l, h)| Row {
                labels: labels(l),
                counter_only: format!(
                    ",classification=\"{}\"",
                    if l.status >= 500 {
                        "failure"
                    } else {
                        "success"
                    }
                ),
                buckets: &h.linkerd,
                sum: h.sum_ms,
                count: h.count,
            })
            .collect();
        counter_and_histogram(
            out,
            ("response_total", "Responses reported by the inbound proxy."),
            (
                "response_latency_ms",
                "Response latencies reported by the inbound proxy.",
            ),
            &LINKERD_BUCKETS,
            &rows,
        );
    }
}
