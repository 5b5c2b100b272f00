//! MetricTemplates: where a template and its Secret come from ([`Lookups`], the one place that
//! reads them), how a template becomes a provider ([`prepare`], through the registry of
//! [`crate::providers`]), and the template check itself ([`run`]) with Flagger's messages for
//! each way it can fail (reference §5.3). Its failures are [`ProviderError`]s: Flagger's whole
//! message and a category (a missing template or Secret is an invalid spec, an unreachable API
//! server transient, the provider's own failures as the provider categorizes them).

use std::collections::BTreeMap;

use flagger_api::MetricTemplate;
use flagger_core::compare::{self, Compared, Marking, Mode, Variant};
use flagger_core::effects::MetricOutcome;
use flagger_core::gotemplate::{self, Model};
use flagger_core::metric::MetricCheck;
use flagger_core::model::{Metric, ValidatedCanary};

use crate::cache::{self, Caches};
use crate::providers::{self, MetricsProvider, ProviderError, QueryError, RangeWindow, Setup};
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
    ) -> Result<MetricTemplate, ProviderError> {
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
    ) -> Result<BTreeMap<String, Vec<u8>>, ProviderError> {
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

/// A failed read in the API server's words: a missing object is the spec's to fix, anything
/// else transient.
fn api_message(e: kube::Error) -> ProviderError {
    let message = crate::error::api_text(&e);
    match &e {
        kube::Error::Api(s) if s.code == 404 => ProviderError::invalid(message),
        _ => ProviderError::transient(message),
    }
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
) -> Result<Prepared, ProviderError> {
    let template = lookups
        .metric_template(namespace, name)
        .await
        .map_err(|e| e.context(format!("Metric template {name}.{namespace} error: ")))?;
    let spec = &template.spec.provider;
    let secret = match &spec.secret_ref {
        Some(s) => Some(lookups.secret_data(namespace, &s.name).await.map_err(|e| {
            e.context(format!(
                "Metric template {name}.{namespace} secret {} error: ",
                s.name
            ))
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
        e.context(format!(
            "Metric template {name}.{namespace} provider {} error: ",
            spec.r#type
        ))
    })?;
    Ok(Prepared { template, provider })
}

/// What a comparison check needs besides the template: the metric, the analysis interval
/// (the window of a metric without one), the time, and the canary's names.
pub struct Comparing<'a> {
    pub metric: &'a Metric,
    pub canary: &'a ValidatedCanary,
    /// Now, in Unix seconds.
    pub now: f64,
}

/// Runs one template check: prepare, render, query. The check names the provider and the
/// rendered query with the outcome. A template marked for comparison
/// ([`flagger_core::compare`]) is run for the canary and for the primary instead
/// ([`compare`]).
pub async fn run(
    lookups: &Lookups,
    clients: &Clients,
    namespace: &str,
    name: &str,
    model: &Model,
    comparing: &Comparing<'_>,
) -> MetricCheck {
    let prepared = match prepare(lookups, clients, namespace, name, &model.interval).await {
        Ok(p) => p,
        Err(e) => {
            let provider = lookups
                .metric_template(namespace, name)
                .await
                .map(|t| t.spec.provider.r#type)
                .unwrap_or_default();
            return MetricCheck::not_run(&provider, MetricOutcome::Unusable(e.message));
        }
    };
    let provider = prepared.provider.name();
    let annotations = prepared
        .template
        .metadata
        .annotations
        .clone()
        .unwrap_or_default();
    match compare::marking(&annotations) {
        Ok(None) => {}
        Ok(Some(marking)) => {
            return self::compare(&prepared, namespace, name, model, &marking, comparing).await;
        }
        Err(e) => {
            return MetricCheck::not_run(
                provider,
                MetricOutcome::Unusable(format!("Metric template {name}.{namespace} error: {e}")),
            );
        }
    }
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

/// The model of one side of a comparison: `target` is the side's workload (the target, or
/// its primary), `service` the side's Service (`<service>-canary`, `<service>-primary`), and
/// `variables.variant` says `canary` or `primary`.
pub fn variant_model(model: &Model, c: &ValidatedCanary, variant: Variant) -> Model {
    let (target, service) = match variant {
        Variant::Canary => (c.target.name.clone(), c.canary_service()),
        Variant::Primary => (c.primary_workload(), c.primary_service()),
    };
    let mut variables = model.variables.clone();
    variables.insert("variant".into(), variant.as_str().into());
    Model {
        target,
        service,
        variables,
        ..model.clone()
    }
}

/// Runs a comparison check: the template rendered for each side, queried (range queries for
/// the judge, ordinary queries for a ratio or difference), and the answers handed to the core,
/// which computes the figures. A side whose query fails fails the check, naming the side.
async fn compare(
    prepared: &Prepared,
    namespace: &str,
    name: &str,
    model: &Model,
    marking: &Marking,
    comparing: &Comparing<'_>,
) -> MetricCheck {
    let provider = prepared.provider.name();
    if let Some(why) = providers::refuses_comparison(prepared.provider.as_ref(), marking) {
        return MetricCheck::not_run(
            provider,
            MetricOutcome::Unusable(format!("Metric template {name}.{namespace} error: {why}")),
        );
    }
    let mut queries = Vec::with_capacity(2);
    for variant in [Variant::Canary, Variant::Primary] {
        let side = variant_model(model, comparing.canary, variant);
        match gotemplate::render(&prepared.template.spec.query, &side) {
            Ok(q) => queries.push(q),
            Err(e) => {
                return MetricCheck::not_run(
                    provider,
                    MetricOutcome::Unusable(format!(
                        "Metric template {name}.{namespace} query render error for the {}: {e}",
                        variant.as_str()
                    )),
                );
            }
        }
    }
    let (canary_query, primary_query) = (queries[0].clone(), queries[1].clone());
    let metric = comparing.metric;
    let failed = |variant: Variant, why: String| {
        MetricCheck::ran(
            provider,
            canary_query.clone(),
            MetricOutcome::Error(format!("the {} query: {why}", variant.as_str())),
        )
    };
    let compared = match &marking.mode {
        Mode::Judge(options) => {
            let window = marking.window(metric.interval, comparing.canary.analysis.interval);
            let range = RangeWindow::ending(comparing.now, window);
            let (canary, primary) = futures::join!(
                prepared.provider.run_range_query(&canary_query, range),
                prepared.provider.run_range_query(&primary_query, range),
            );
            // No series is no points: the judge's no-data rules decide.
            let points = |answer: Result<Vec<f64>, QueryError>| match answer {
                Ok(v) => Ok(v),
                Err(QueryError::NoValues(_)) => Ok(Vec::new()),
                Err(QueryError::Failed(why)) => Err(why),
            };
            let canary = match points(canary) {
                Ok(v) => v,
                Err(why) => return failed(Variant::Canary, why),
            };
            let primary = match points(primary) {
                Ok(v) => v,
                Err(why) => return failed(Variant::Primary, why),
            };
            match Compared::judged(
                &metric.name,
                options,
                window,
                (canary_query.clone(), canary),
                (primary_query.clone(), primary),
            ) {
                Ok(c) => c,
                Err(e) => {
                    return MetricCheck::not_run(
                        provider,
                        MetricOutcome::Unusable(format!(
                            "Metric template {name}.{namespace} error: {e}"
                        )),
                    );
                }
            }
        }
        Mode::Relative(mode) => {
            let (canary, primary) = futures::join!(
                prepared.provider.run_query(&canary_query),
                prepared.provider.run_query(&primary_query),
            );
            let value = |answer: Result<f64, QueryError>| match answer {
                Ok(v) => Ok(Some(v)),
                Err(QueryError::NoValues(_)) => Ok(None),
                Err(QueryError::Failed(why)) => Err(why),
            };
            let canary = match value(canary) {
                Ok(v) => v,
                Err(why) => return failed(Variant::Canary, why),
            };
            let primary = match value(primary) {
                Ok(v) => v,
                Err(why) => return failed(Variant::Primary, why),
            };
            Compared::relative(
                *mode,
                metric.range,
                (canary_query.clone(), canary),
                (primary_query.clone(), primary),
            )
        }
    };
    MetricCheck::ran(
        provider,
        canary_query,
        MetricOutcome::Compared(Box::new(compared)),
    )
}

/// The availability check at initialization (reference §5.5) for one template, built for a
/// metric of this `interval`.
pub async fn is_online(
    lookups: &Lookups,
    clients: &Clients,
    namespace: &str,
    name: &str,
    interval: &str,
) -> Result<(), ProviderError> {
    let prepared = prepare(lookups, clients, namespace, name, interval).await?;
    prepared.provider.is_online().await.map_err(|e| {
        e.context(format!(
            "{} in metric template {name}.{namespace} not available: ",
            prepared.template.spec.provider.r#type
        ))
    })
}
