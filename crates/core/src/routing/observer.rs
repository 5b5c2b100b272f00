//! The builtin checks of each provider (reference §5.1): the PromQL Flagger's observer for that
//! provider runs for `request-success-rate` and `request-duration`, and how the duration it
//! reads becomes whole milliseconds.
//!
//! Each observer lives in its provider's pure module, next to the builder of its routing
//! objects ([`super::istio`], [`super::smi`] for `linkerd` and `osm`, [`super::nginx`],
//! [`super::kubernetes`] for the HTTP observer of `kubernetes` and `gatewayapi:*`), named by
//! the provider's descriptor, so a new router brings its builtin queries in its own file.
//!
//! The queries are built from the same [`Model`] MetricTemplates are rendered with (`namespace`,
//! `target`, `service`, `ingress`, `route`, `interval`), which is what Flagger's observers
//! render their query templates with: Contour's queries use `service`, Knative's and APISIX's
//! `route` (the latest created revision for Knative), Skipper's `ingress` and `service`.

use crate::gotemplate::Model;
use crate::model::{BuiltinMetric, Provider};

/// The builtin checks of one provider.
pub trait Observer: Sync {
    /// The query of a builtin check for the canary the model describes.
    fn query(&self, metric: BuiltinMetric, model: &Model) -> String;

    /// A `request-duration` value read with [`Observer::query`], in whole milliseconds. Most
    /// observers' histograms (and the nginx and Skipper means) are in milliseconds already.
    fn duration_ms(&self, value: f64) -> f64 {
        value.trunc()
    }
}

/// The observer of a provider's builtin checks, from its descriptor. Every provider has one
/// (`Option` for the steps that refuse a check a provider would not answer).
pub fn for_provider(provider: Provider) -> Option<&'static dyn Observer> {
    Some(provider.descriptor().observer)
}

/// The shape most observers have: the success rate from a request counter and a filter of the
/// successful requests, the duration as the 99th percentile of a latency histogram, both over
/// the canary's requests.
pub struct Standard {
    /// The request counter.
    pub requests: &'static str,
    /// The filter of the successful requests.
    pub success: &'static str,
    /// The latency histogram's buckets.
    pub latency: &'static str,
    /// The selector of the canary's requests.
    pub selector: fn(&Model) -> String,
    /// Whether the histogram is in seconds (milliseconds otherwise).
    pub seconds: bool,
}

impl Observer for Standard {
    fn query(&self, metric: BuiltinMetric, model: &Model) -> String {
        let selector = (self.selector)(model);
        let i = &model.interval;
        match metric {
            BuiltinMetric::RequestSuccessRate => {
                success_rate(self.requests, &selector, self.success, i)
            }
            BuiltinMetric::RequestDuration => format!(
                r#"histogram_quantile(0.99, sum(rate({}{{{selector}}}[{i}])) by (le))"#,
                self.latency
            ),
        }
    }

    fn duration_ms(&self, value: f64) -> f64 {
        if self.seconds {
            (value * 1000.0).trunc()
        } else {
            value.trunc()
        }
    }
}

/// `100 × rate(successful requests) / rate(all requests)` of a request counter. `selector`
/// selects the canary's requests, `success` the ones that did not fail.
pub fn success_rate(series: &str, selector: &str, success: &str, interval: &str) -> String {
    format!(
        r#"sum(rate({series}{{{selector},{success}}}[{interval}])) / sum(rate({series}{{{selector}}}[{interval}])) * 100"#
    )
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// The model of the canary `podinfo.test` with the Ingress `web`.
    pub(crate) fn model(interval: &str) -> Model {
        Model {
            name: "podinfo".into(),
            namespace: "test".into(),
            target: "podinfo".into(),
            service: "podinfo".into(),
            ingress: "web".into(),
            route: "podinfo".into(),
            interval: interval.into(),
            variables: Default::default(),
        }
    }

    #[test]
    fn providers_with_an_observer() {
        let sr = BuiltinMetric::RequestSuccessRate;
        let q = |p: &str| {
            let provider = Provider::parse(p).expect(p);
            for_provider(provider).map(|o| o.query(sr, &model("1m")))
        };
        // smi:* uses the Istio observer, gatewayapi:* the HTTP one of kubernetes.
        assert_eq!(q("smi:v1alpha3"), q("istio"));
        assert_eq!(q("smi:v1alpha1"), q("istio"));
        assert_eq!(q("gatewayapi:v1"), q("kubernetes"));
        assert_eq!(q("gatewayapi:v1beta1"), q("kubernetes"));
        for p in [
            "istio",
            "linkerd",
            "osm",
            "nginx",
            "kubernetes",
            "contour",
            "gloo",
            "traefik",
            "skipper",
            "apisix",
            "kuma",
            "knative",
            "appmesh",
            "appmesh:v1beta2",
        ] {
            assert!(q(p).is_some(), "{p}");
        }
    }
}
