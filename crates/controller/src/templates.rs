//! MetricTemplates: where a template and its Secret come from ([`Lookups`], the one place that
//! reads them), how a template becomes a provider ([`prepare`], through the registry of
//! [`crate::providers`]), and the template check itself ([`run`]) with Flagger's messages for
//! each way it can fail (reference §5.3).

use std::collections::BTreeMap;

use flagger_api::MetricTemplate;
use flagger_core::effects::MetricOutcome;
use flagger_core::gotemplate::{self, Model};
use flagger_core::metric::MetricCheck;

use crate::cache::{self, Caches};
use crate::providers::{self, MetricsProvider, Setup};
use crate::webhook::Clients;

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
    crate::error::api_text(&e)
}

/// A template made ready to query: the template (its query) and its provider.
pub struct Prepared {
    pub template: MetricTemplate,
    pub provider: Box<dyn MetricsProvider>,
}

/// Reads the template and its Secret and builds the provider through the registry of
/// [`crate::providers`]. `interval` is the metric's as written (the window of the providers
/// that query one). The error is the whole event message Flagger gives for the step that
/// failed.
pub async fn prepare(
    lookups: &Lookups,
    clients: &Clients,
    namespace: &str,
    name: &str,
    interval: &str,
) -> Result<Prepared, String> {
    let template = lookups
        .metric_template(namespace, name)
        .await
        .map_err(|e| format!("Metric template {name}.{namespace} error: {e}"))?;
    let spec = &template.spec.provider;
    let secret = match &spec.secret_ref {
        Some(s) => Some(lookups.secret_data(namespace, &s.name).await.map_err(|e| {
            format!(
                "Metric template {name}.{namespace} secret {} error: {e}",
                s.name
            )
        })?),
        None => None,
    };
    let provider = providers::from_template(&Setup {
        spec,
        secret: secret.as_ref(),
        interval,
        http: clients,
        kube: &lookups.client,
    })
    .map_err(|e| {
        format!(
            "Metric template {name}.{namespace} provider {} error: {e}",
            spec.r#type
        )
    })?;
    Ok(Prepared { template, provider })
}

/// Runs one template check: prepare, render, query. The check names the provider and the
/// rendered query with the outcome.
pub async fn run(
    lookups: &Lookups,
    clients: &Clients,
    namespace: &str,
    name: &str,
    model: &Model,
) -> MetricCheck {
    let prepared = match prepare(lookups, clients, namespace, name, &model.interval).await {
        Ok(p) => p,
        Err(message) => {
            let provider = lookups
                .metric_template(namespace, name)
                .await
                .map(|t| t.spec.provider.r#type)
                .unwrap_or_default();
            return MetricCheck::not_run(&provider, MetricOutcome::Unusable(message));
        }
    };
    let provider = prepared.provider.name();
    let query = match gotemplate::render(&prepared.template.spec.query, model) {
        Ok(q) => q,
        Err(e) => {
            return MetricCheck::not_run(
                provider,
                MetricOutcome::Unusable(format!(
                    "Metric template {name}.{namespace} query render error: {e}"
                )),
            );
        }
    };
    let answer = prepared.provider.run_query(&query).await;
    MetricCheck::ran(provider, query, providers::outcome(answer))
}

/// The availability check at initialization (reference §5.5) for one template, built for a
/// metric of this `interval`.
pub async fn is_online(
    lookups: &Lookups,
    clients: &Clients,
    namespace: &str,
    name: &str,
    interval: &str,
) -> Result<(), String> {
    let prepared = prepare(lookups, clients, namespace, name, interval).await?;
    prepared.provider.is_online().await.map_err(|e| {
        format!(
            "{} in metric template {name}.{namespace} not available: {e}",
            prepared.template.spec.provider.r#type
        )
    })
}
