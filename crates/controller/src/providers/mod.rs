//! The metric-provider seam: how a metric check's query reaches a monitoring system
//! (reference §5.4–5.5). The router seam is [`crate::router`].
//!
//! A [`MetricsProvider`] answers a rendered query with one value, "no values", or why it failed
//! (a plain sentence: the HTTP status and the provider's own error text), and says at
//! initialization whether the system answers at all. Building it and that check fail with a
//! [`ProviderError`]: the sentence and its [`Category`] (the step errors' categories: a server
//! error or no answer is transient, 401/403 and missing credentials `auth`, what the template
//! lacks an invalid spec, anything else the provider's). One module per provider builds it from
//! a MetricTemplate's `provider` block and the data of its `secretRef` ([`Setup`]):
//!
//! * [`prometheus`]: instant and range queries (the judge of comparison checks); also the Prometheus of builtin checks and inline queries
//!   (`-metrics-server`, `spec.metricsServer`), built from its address alone.
//! * [`datadog`], [`newrelic`], [`dynatrace`]: the vendors' HTTP query APIs, with Flagger's
//!   default addresses, Secret keys and window (ten metric intervals; "error parsing metric
//!   interval" without one).
//! * [`splunk`]: SignalFlow over its WebSocket API.
//! * [`influxdb`]: Flux through InfluxDB v2's query API, its annotated CSV read here.
//! * [`graphite`]: the render API.
//! * [`stackdriver`]: Google Cloud Monitoring's MQL query API, tokens from `gcp_auth`
//!   (service-account key, or Application Default Credentials incl. Workload Identity).
//! * [`cloudwatch`]: `GetMetricData` signed with `aws-sigv4`, credentials from the AWS
//!   standard chain ([`aws`], incl. IRSA web identity), resolved at query time.
//! * [`keptn`], [`externalmetrics`]: the cluster, through [`Setup::kube`] (KeptnMetric and
//!   Analysis objects; the `external.metrics.k8s.io` aggregated API).
//!
//! [`seam`] holds the trait and the types every provider module uses; [`http`] what the HTTP
//! providers share: the window, Secret keys, failure texts. This file is only the registry, so
//! the providers and the registry never reach into each other.
//!
//! [`PROVIDERS`] maps each MetricTemplate `type` to its constructor, one line per provider.
//! [`from_template`] treats a type Flagger does not know as Prometheus, with Flagger's warning;
//! [`unsupported`] names a type Flagger knows that flagger-rs would not query (none today: the
//! refusal stays for a type Flagger adds before flagger-rs does).
//!
//! A trait object, not an enum: the type is chosen at run time from a template, and a new
//! provider is one new module plus one line in [`PROVIDERS`]. Its futures are boxed
//! ([`futures::future::BoxFuture`]) so that the trait stays object-safe; one allocation per
//! query is nothing next to the request it makes. Construction is synchronous and cheap
//! everywhere: no provider asks anything (credentials included) before its first
//! `run_query`/`is_online`.
//!
//! Secrets stay inside the provider: a message never carries a request URL (which holds the
//! encoded query and may hold credentials), a header or a Secret's data.

pub mod aws;
pub mod cloudwatch;
pub mod datadog;
pub mod dynatrace;
pub mod externalmetrics;
pub mod graphite;
pub mod http;
pub mod influxdb;
pub mod keptn;
pub mod newrelic;
pub mod prometheus;
pub mod seam;
pub mod splunk;
pub mod stackdriver;

use flagger_api::metric::METRIC_PROVIDERS;

pub use seam::{
    Build, Category, MetricsProvider, ProviderError, QueryError, RangeWindow, Setup, outcome,
    refuses_comparison,
};

/// The providers flagger-rs queries, by MetricTemplate `type`: one line per provider.
pub const PROVIDERS: &[(&str, Build)] = &[
    ("prometheus", prometheus::Prometheus::build),
    ("datadog", datadog::Datadog::build),
    ("newrelic", newrelic::NewRelic::build),
    ("dynatrace", dynatrace::Dynatrace::build),
    ("splunk", splunk::Splunk::build),
    ("influxdb", influxdb::InfluxDb::build),
    ("graphite", graphite::Graphite::build),
    ("stackdriver", stackdriver::Stackdriver::build),
    ("cloudwatch", cloudwatch::CloudWatch::build),
    ("keptn", keptn::Keptn::build),
    ("externalmetrics", externalmetrics::ExternalMetrics::build),
];

/// The types of [`PROVIDERS`], for messages.
pub fn supported() -> Vec<&'static str> {
    PROVIDERS.iter().map(|(name, _)| *name).collect()
}

/// Why a template's provider type cannot run here, for `Valid=False` and events; `None` when
/// it can. Types Flagger does not know are not refused: Flagger treats them as Prometheus.
pub fn unsupported(provider_type: &str) -> Option<String> {
    let known_here = PROVIDERS.iter().any(|(name, _)| *name == provider_type);
    (METRIC_PROVIDERS.contains(&provider_type) && !known_here).then(|| {
        format!(
            "the {provider_type} metrics provider is not supported by flagger-rs yet; supported: {}",
            supported().join(", ")
        )
    })
}

/// The provider of a MetricTemplate.
pub fn from_template(setup: &Setup<'_>) -> Result<Box<dyn MetricsProvider>, ProviderError> {
    let provider_type = setup.spec.r#type.as_str();
    if let Some(reason) = unsupported(provider_type) {
        return Err(ProviderError::invalid(reason));
    }
    let build = match PROVIDERS.iter().find(|(name, _)| *name == provider_type) {
        Some((_, build)) => *build,
        None => {
            tracing::warn!("unknown metrics provider '{provider_type}', using prometheus");
            prometheus::Prometheus::build
        }
    };
    build(setup)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use flagger_api::metric::MetricProvider as ProviderSpec;
    use flagger_core::effects::MetricOutcome;
    use futures::future::BoxFuture;

    use super::*;
    use crate::webhook::Clients;

    fn spec(t: &str, address: Option<&str>) -> ProviderSpec {
        ProviderSpec {
            r#type: t.into(),
            address: address.map(Into::into),
            ..Default::default()
        }
    }

    /// A client for a server that is never called.
    fn kube_client() -> kube::Client {
        let config = kube::Config::new("http://127.0.0.1:1".parse().expect("uri"));
        kube::Client::try_from(config).expect("client")
    }

    #[tokio::test]
    async fn every_type_flagger_knows_is_registered_and_unknown_types_are_prometheus() {
        let http = Clients::new().expect("clients");
        let kube = kube_client();
        let build = |s: &ProviderSpec, secret: Option<&BTreeMap<String, Vec<u8>>>| {
            from_template(&Setup {
                spec: s,
                secret,
                interval: "1m",
                http: &http,
                kube: &kube,
            })
            .map(|p| p.name())
            .map_err(|e| e.to_string())
        };
        assert_eq!(
            build(&spec("prometheus", Some("http://prom:9090")), None),
            Ok("prometheus")
        );
        // Flagger treats a type it does not know as Prometheus.
        assert_eq!(
            build(&spec("victoriametrics", Some("http://vm:8428")), None),
            Ok("prometheus")
        );
        for t in METRIC_PROVIDERS {
            assert_eq!(unsupported(t), None, "{t}");
            assert!(supported().contains(t), "{t}");
        }
        // Each provider builds from what Flagger's needs (no request is made).
        let secret = BTreeMap::from(
            [
                ("datadog_api_key", "a"),
                ("datadog_application_key", "b"),
                ("newrelic_account_id", "1"),
                ("newrelic_query_key", "q"),
                ("dynatrace_token", "t"),
                ("sf_token_key", "s"),
                ("token", "t"),
                ("org", "o"),
                ("username", "u"),
                ("password", "p"),
                ("project", "p"),
            ]
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())),
        );
        for t in METRIC_PROVIDERS {
            let mut s = spec(t, Some("http://127.0.0.1:9"));
            s.region = Some("eu-west-1".into());
            s.secret_ref = Some(flagger_api::metric::SecretRef {
                name: "creds".into(),
            });
            assert_eq!(build(&s, Some(&secret)), Ok(*t), "{t}");
        }
        // What is missing is named, in Flagger's words.
        assert_eq!(
            build(&spec("datadog", None), Some(&BTreeMap::new()))
                .err()
                .as_deref(),
            Some("datadog credentials does not contain datadog_api_key")
        );
        assert_eq!(
            build(&spec("dynatrace", None), None).err().as_deref(),
            Some("dynatrace endpoint is not set")
        );
        assert_eq!(
            build(&spec("splunk", None), None).err().as_deref(),
            Some("splunk endpoint is not set")
        );
        assert_eq!(
            build(&spec("cloudwatch", None), None).err().as_deref(),
            Some("region not specified")
        );
        assert_eq!(
            build(&spec("graphite", Some("graphite:80")), None)
                .err()
                .as_deref(),
            Some("graphite address graphite:80 is not a valid URL")
        );
    }

    #[tokio::test]
    async fn failures_carry_their_category() {
        let http = Clients::new().expect("clients");
        let kube = kube_client();
        let category = |s: &ProviderSpec, secret: Option<&BTreeMap<String, Vec<u8>>>| {
            from_template(&Setup {
                spec: s,
                secret,
                interval: "1m",
                http: &http,
                kube: &kube,
            })
            .err()
            .map(|e| e.category)
        };
        // Missing credentials, then what the template lacks.
        assert_eq!(
            category(&spec("datadog", None), Some(&BTreeMap::new())),
            Some(Category::Auth)
        );
        assert_eq!(
            category(&spec("dynatrace", None), None),
            Some(Category::InvalidSpec)
        );
        assert_eq!(
            category(&spec("graphite", Some("graphite:80")), None),
            Some(Category::InvalidSpec)
        );
        // Answers by their status.
        for (status, want) in [
            (401, Category::Auth),
            (403, Category::Auth),
            (429, Category::Transient),
            (503, Category::Transient),
            (400, Category::Provider),
            (404, Category::Provider),
        ] {
            let status = reqwest::StatusCode::from_u16(status).expect("status");
            assert_eq!(Category::of_status(status), want, "{status}");
        }
        assert_eq!(Category::Auth.as_str(), "auth");
    }

    /// A provider with instant queries only, as every provider is by default.
    struct InstantOnly;

    impl MetricsProvider for InstantOnly {
        fn name(&self) -> &'static str {
            "graphite"
        }
        fn run_query<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<f64, QueryError>> {
            Box::pin(async { Ok(1.0) })
        }
        fn is_online(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn the_judge_needs_range_queries_and_a_relative_comparison_does_not() {
        let marked = |kind: &str| {
            let annotations =
                BTreeMap::from([(flagger_core::compare::COMPARE.to_string(), kind.to_string())]);
            flagger_core::compare::marking(&annotations)
                .expect("valid")
                .expect("marked")
        };
        let judge = marked("judge");
        assert_eq!(
            refuses_comparison(&InstantOnly, &judge).as_deref(),
            Some(
                "the graphite provider has no range queries in flagger-rs, which flagger.app/compare: judge needs; \
                 providers with range queries: prometheus (a ratio or difference comparison works with every provider)"
            )
        );
        assert_eq!(refuses_comparison(&InstantOnly, &marked("ratio")), None);
        let window = RangeWindow {
            start: 0.0,
            end: 60.0,
            step: 2.0,
        };
        assert_eq!(
            InstantOnly.run_range_query("up", window).await,
            Err(QueryError::Failed(
                "the graphite provider has no range queries in flagger-rs".into()
            ))
        );
        let http = Clients::new().expect("clients");
        let prom = prometheus::Prometheus::plain(&http, "http://127.0.0.1:9");
        assert_eq!(refuses_comparison(&prom, &judge), None);
    }

    #[test]
    fn outcomes_keep_the_reason() {
        assert_eq!(outcome(Ok(1.5)), MetricOutcome::Value(1.5));
        assert_eq!(
            outcome(Err(QueryError::NoValues("no values found".into()))),
            MetricOutcome::NoValues("no values found".into())
        );
        assert_eq!(
            outcome(Err(QueryError::Failed("error response: Status 503".into()))),
            MetricOutcome::Error("error response: Status 503".into())
        );
    }
}
