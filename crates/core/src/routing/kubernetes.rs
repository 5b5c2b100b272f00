//! The `kubernetes` provider: no routing object (blue/green through the apex Service, built in
//! [`crate::services`]), and the HTTP observer its builtin checks use, which `gatewayapi:*`
//! shares (reference §5.1): the app's own `http_request_duration_seconds` histogram, selected
//! by the canary's pod names.

use super::descriptor::Descriptor;
use super::observer::Standard;
use crate::model::Provider;

/// The HTTP observer (`kubernetes`, `gatewayapi:*`): a histogram in seconds.
pub static HTTP: Standard = Standard {
    requests: "http_request_duration_seconds_count",
    success: r#"status!~"5.*""#,
    latency: "http_request_duration_seconds_bucket",
    selector: |m| {
        format!(
            r#"kubernetes_namespace="{}",kubernetes_pod_name=~"{}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)""#,
            m.namespace, m.target
        )
    },
    seconds: true,
};

/// `kubernetes`: no routing object (blue/green through the apex Service), the HTTP observer.
pub static PROVIDER: Descriptor = Descriptor::new(
    Provider::Kubernetes,
    "kubernetes",
    &HTTP,
    crate::generated::no_routes,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BuiltinMetric;
    use crate::routing::observer::Observer;
    use crate::routing::observer::tests::model;

    #[test]
    fn http_observer_reads_the_apps_own_histogram_in_seconds() {
        assert_eq!(
            HTTP.query(BuiltinMetric::RequestSuccessRate, &model("30s")),
            r#"sum(rate(http_request_duration_seconds_count{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",status!~"5.*"}[30s])) / sum(rate(http_request_duration_seconds_count{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[30s])) * 100"#
        );
        assert_eq!(
            HTTP.query(BuiltinMetric::RequestDuration, &model("30s")),
            r#"histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[30s])) by (le))"#
        );
        assert_eq!(HTTP.duration_ms(0.2567), 256.0);
        assert_eq!(HTTP.duration_ms(0.5), 500.0);
    }
}
