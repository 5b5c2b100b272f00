//! The `kubernetes` provider: no routing object (blue/green through the apex Service, built in
//! [`crate::services`]), and the HTTP observer its builtin checks use, which `gatewayapi:*`
//! shares (reference §5.1): the app's own `http_request_duration_seconds` histogram, selected
//! by the canary's pod names.

use super::observer::{Observer, p99, success_rate};
use crate::gotemplate::Model;
use crate::model::BuiltinMetric;

/// The HTTP observer (`kubernetes`, `gatewayapi:*`).
pub struct Http;

impl Observer for Http {
    fn query(&self, metric: BuiltinMetric, m: &Model) -> String {
        let selector = format!(
            r#"kubernetes_namespace="{}",kubernetes_pod_name=~"{}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)""#,
            m.namespace, m.target
        );
        match metric {
            BuiltinMetric::RequestSuccessRate => success_rate(
                "http_request_duration_seconds_count",
                &selector,
                r#"status!~"5.*""#,
                &m.interval,
            ),
            BuiltinMetric::RequestDuration => p99(
                "http_request_duration_seconds_bucket",
                &selector,
                &m.interval,
            ),
        }
    }

    /// The histogram is in seconds.
    fn duration_ms(&self, value: f64) -> f64 {
        (value * 1000.0).trunc()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::observer::tests::model;

    #[test]
    fn http_observer_reads_the_apps_own_histogram_in_seconds() {
        assert_eq!(
            Http.query(BuiltinMetric::RequestSuccessRate, &model("30s")),
            r#"sum(rate(http_request_duration_seconds_count{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",status!~"5.*"}[30s])) / sum(rate(http_request_duration_seconds_count{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[30s])) * 100"#
        );
        assert_eq!(
            Http.query(BuiltinMetric::RequestDuration, &model("30s")),
            r#"histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[30s])) by (le))"#
        );
        assert_eq!(Http.duration_ms(0.2567), 256.0);
        assert_eq!(Http.duration_ms(0.5), 500.0);
    }
}
