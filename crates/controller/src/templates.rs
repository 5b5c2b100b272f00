//! MetricTemplates: where a template and its Secret come from ([`Lookups`], the one place that
//! reads them), how a template becomes a query client ([`prometheus_server`]), and the template
//! check itself ([`run`]) with Flagger's messages for each way it can fail (reference §5.3).

use std::collections::BTreeMap;

use flagger_api::MetricTemplate;
use flagger_api::metric::{METRIC_PROVIDERS, MetricProvider};
use flagger_core::effects::MetricOutcome;

use crate::cache::{self, Caches};
use crate::prometheus::{self, Auth, Server};
use crate::webhook::Clients;
use flagger_core::gotemplate::{self, Model};

/// Reads MetricTemplates and their Secrets from the watch caches (the API server when a cache
/// lacks the object, which also yields the API server's not-found message).
#[derive(Clone)]
pub struct Lookups {
    client: kube::Client,
    caches: Caches,
}

impl Lookups {
    pub fn new(client: kube::Client, caches: Caches) -> Self {
        Self { client, caches }
    }

    /// The MetricTemplate `namespace/name`; the error is the API server's message
    /// (`metrictemplates.flagger.app "x" not found`).
    pub async fn metric_template(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<MetricTemplate, String> {
        cache::require(&self.caches.metric_templates, &self.client, namespace, name)
            .await
            .map(|t| (*t).clone())
            .map_err(api_message)
    }

    /// The data of the Secret `namespace/name`.
    pub async fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let secret = cache::require(&self.caches.secrets, &self.client, namespace, name)
            .await
            .map_err(api_message)?;
        let mut data: BTreeMap<String, Vec<u8>> = secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        // stringData is write-only on a real API server; honour it where a store still has it.
        for (k, v) in secret.string_data.iter().flatten() {
            data.entry(k.clone())
                .or_insert_with(|| v.clone().into_bytes());
        }
        Ok(data)
    }
}

fn api_message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message,
        other => other.to_string(),
    }
}

/// The providers this build can query.
pub const SUPPORTED_PROVIDERS: &[&str] = &["prometheus"];

/// Why a template's provider cannot run here, for `Valid=False` and events; `None` when it can.
/// Unknown types are not refused: Flagger treats them as Prometheus.
pub fn unsupported_provider(provider: &MetricProvider) -> Option<String> {
    let t = provider.r#type.as_str();
    (METRIC_PROVIDERS.contains(&t) && !SUPPORTED_PROVIDERS.contains(&t)).then(|| {
        format!(
            "the {t} metrics provider is not supported by flagger-rs yet; supported: {}",
            SUPPORTED_PROVIDERS.join(", ")
        )
    })
}

/// The query client of a template's provider, as Flagger builds its Prometheus provider:
/// `address` must be a URL; credentials from the Secret's data when `secretRef` is set.
pub fn prometheus_server(
    provider: &MetricProvider,
    secret: Option<&BTreeMap<String, Vec<u8>>>,
) -> Result<Server, String> {
    if let Some(reason) = unsupported_provider(provider) {
        return Err(reason);
    }
    if !METRIC_PROVIDERS.contains(&provider.r#type.as_str()) {
        tracing::warn!(
            "unknown metrics provider '{}', using prometheus",
            provider.r#type
        );
    }
    let address = provider.address.clone().unwrap_or_default();
    let valid = reqwest::Url::parse(&address)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
    if !valid {
        return Err(format!("prometheus address {address} is not a valid URL"));
    }
    let auth: Option<Auth> = secret.map(Auth::from_secret).transpose()?;
    Ok(Server {
        address,
        auth,
        headers: provider.headers.clone().unwrap_or_default(),
        insecure_skip_verify: provider.insecure_skip_verify.unwrap_or(false),
    })
}

/// A template made ready to query: its rendered-query source and its client.
pub struct Prepared {
    pub template: MetricTemplate,
    pub server: Server,
}

/// Reads the template and its Secret and builds the provider. The error is the whole event
/// message Flagger gives for the step that failed.
pub async fn prepare(lookups: &Lookups, namespace: &str, name: &str) -> Result<Prepared, String> {
    let template = lookups
        .metric_template(namespace, name)
        .await
        .map_err(|e| format!("Metric template {name}.{namespace} error: {e}"))?;
    let provider = &template.spec.provider;
    let secret = match &provider.secret_ref {
        Some(s) => Some(lookups.secret_data(namespace, &s.name).await.map_err(|e| {
            format!(
                "Metric template {name}.{namespace} secret {} error: {e}",
                s.name
            )
        })?),
        None => None,
    };
    let server = prometheus_server(provider, secret.as_ref()).map_err(|e| {
        format!(
            "Metric template {name}.{namespace} provider {} error: {e}",
            provider.r#type
        )
    })?;
    Ok(Prepared { template, server })
}

/// Runs one template check: prepare, render, query.
pub async fn run(
    lookups: &Lookups,
    clients: &Clients,
    namespace: &str,
    name: &str,
    model: &Model,
) -> MetricOutcome {
    let prepared = match prepare(lookups, namespace, name).await {
        Ok(p) => p,
        Err(message) => return MetricOutcome::Unusable(message),
    };
    let query = match gotemplate::render(&prepared.template.spec.query, model) {
        Ok(q) => q,
        Err(e) => {
            return MetricOutcome::Unusable(format!(
                "Metric template {name}.{namespace} query render error: {e}"
            ));
        }
    };
    prometheus::query(clients, &prepared.server, &query).await
}

/// The availability check at initialization (reference §5.5) for one template.
pub async fn is_online(
    lookups: &Lookups,
    clients: &Clients,
    namespace: &str,
    name: &str,
) -> Result<(), String> {
    let prepared = prepare(lookups, namespace, name).await?;
    prometheus::is_online(clients, &prepared.server)
        .await
        .map_err(|e| {
            format!(
                "{} in metric template {name}.{namespace} not available: {e}",
                prepared.template.spec.provider.r#type
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(t: &str, address: Option<&str>) -> MetricProvider {
        MetricProvider {
            r#type: t.into(),
            address: address.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn prometheus_needs_a_url() {
        for bad in [None, Some(""), Some("prometheus:9090"), Some("not a url")] {
            let e = prometheus_server(&provider("prometheus", bad), None).unwrap_err();
            assert!(e.starts_with("prometheus address"), "{e}");
            assert!(e.ends_with("is not a valid URL"), "{e}");
        }
        let s = prometheus_server(&provider("prometheus", Some("http://prom:9090")), None)
            .expect("server");
        assert_eq!(s, Server::plain("http://prom:9090"));
    }

    #[test]
    fn other_known_providers_are_refused_by_name() {
        for t in ["datadog", "newrelic", "cloudwatch", "influxdb", "graphite"] {
            let e = prometheus_server(&provider(t, Some("http://x")), None).unwrap_err();
            assert_eq!(
                e,
                format!(
                    "the {t} metrics provider is not supported by flagger-rs yet; supported: prometheus"
                )
            );
        }
    }

    #[test]
    fn unknown_providers_fall_back_to_prometheus() {
        assert!(unsupported_provider(&provider("victoriametrics", None)).is_none());
        assert!(
            prometheus_server(&provider("victoriametrics", Some("http://vm:8428")), None).is_ok()
        );
    }

    #[test]
    fn secret_headers_and_tls_flags_reach_the_client() {
        let mut p = provider("prometheus", Some("https://prom.example:9090/prefix"));
        p.insecure_skip_verify = Some(true);
        p.headers = Some(BTreeMap::from([(
            "X-Scope-OrgID".to_string(),
            vec!["tenant-a".to_string()],
        )]));
        let secret = BTreeMap::from([("token".to_string(), b"t0k".to_vec())]);
        let s = prometheus_server(&p, Some(&secret)).expect("server");
        assert!(s.insecure_skip_verify);
        assert_eq!(s.auth, Some(Auth::Bearer("t0k".into())));
        assert_eq!(s.headers["X-Scope-OrgID"], vec!["tenant-a".to_string()]);
        let empty = BTreeMap::new();
        assert_eq!(
            prometheus_server(&p, Some(&empty)).unwrap_err(),
            "prometheus credentials does not contain a username"
        );
    }
}
