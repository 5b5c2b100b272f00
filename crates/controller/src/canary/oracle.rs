//! Step 4: runs the decision core, answering what it asks (readiness, routes, hook calls,
//! metric queries) by asking the cluster, the hooks and Prometheus.

use flagger_api::{Canary, CanaryStatus};
use flagger_core::effects::{Decision, MetricOutcome, Need, Observations, Readiness, Step};
use flagger_core::hash;
use flagger_core::model::{BuiltinMetric, MetricSource, ValidatedCanary};
use flagger_core::readiness::{self, Role};

use super::observe::{Observed, Target};
use crate::cache;
use crate::context::Context;
use crate::error::{api_text, step_error};
use crate::metrics::MetricLabels;
use crate::providers::{self, ProviderError, prometheus::Prometheus};
use crate::router::AnyRouter;
use crate::templates;
use crate::webhook::{self, Payload};
use flagger_core::gotemplate::{self, Model};
use flagger_core::metric::MetricCheck;
use flagger_core::routing::observer;

step_error!(
    /// Step 4 failed: the decision could not be reached.
    DecideError
);

/// Step 4: calls [`flagger_core::decide`] until it decides, answering each need it states.
pub async fn decide(
    oracle: &Oracle<'_>,
    mut obs: Observations,
    now: k8s_openapi::jiff::Timestamp,
) -> Result<Decision, DecideError> {
    let mut answered: Vec<Need> = Vec::new();
    loop {
        match flagger_core::decide(oracle.c, oracle.status, &obs, now) {
            Step::Done(d) => return Ok(d),
            // Each answer is recorded in the observations, so a need stated twice means the
            // answer did not reach the core: stop rather than loop.
            Step::Need(need) if answered.contains(&need) => {
                return Err(DecideError::transient(format!(
                    "the decision for {}.{} asked twice for {}",
                    oracle.c.name,
                    oracle.c.namespace,
                    describe(&need)
                )));
            }
            Step::Need(need) => {
                oracle.answer(&need, &mut obs).await;
                answered.push(need);
            }
        }
    }
}

/// A need in words.
fn describe(need: &Need) -> String {
    match need {
        Need::PrimaryReadiness => "the primary's readiness".into(),
        Need::CanaryReadiness => "the canary's readiness".into(),
        Need::Routes => "the routes".into(),
        Need::MetricProviders => "the metric providers' availability".into(),
        Need::Hook {
            hook_type, index, ..
        } => format!("{} hook {index}", hook_type.as_str()),
        Need::Metric { index } => format!("metric {index}"),
        Need::Fleet => "the fleet's rollouts".into(),
    }
}

/// What the oracle works with for one tick.
pub struct Oracle<'a> {
    pub ctx: &'a Context,
    pub canary: &'a Canary,
    pub c: &'a ValidatedCanary,
    pub observed: &'a Observed,
    pub router: &'static dyn AnyRouter,
    pub status: &'a CanaryStatus,
}

impl Oracle<'_> {
    /// Answers one need, recording the answer in `obs`.
    pub async fn answer(&self, need: &Need, obs: &mut Observations) {
        match need {
            Need::PrimaryReadiness => obs.primary_ready = Some(self.readiness(Role::Primary).await),
            Need::CanaryReadiness => obs.canary_ready = Some(self.readiness(Role::Canary).await),
            Need::Routes => {
                let routes = self.router.get_routes(&self.route_target()).await;
                // Flagger records the weights it reads at each tick that gets this far.
                if let Ok(r) = &routes {
                    let (target, ns) = (&self.c.target.name, &self.c.namespace);
                    self.ctx
                        .metrics
                        .set_weights(target, ns, r.primary, r.canary);
                }
                obs.routes = Some(routes.map_err(|e| e.message));
            }
            Need::MetricProviders => {
                let online = self.providers_online().await;
                if let Err(e) = &online {
                    // The core words the event; the log keeps the category.
                    tracing::warn!(
                        canary = %format!("{}.{}", self.c.name, self.c.namespace),
                        category = e.category.as_str(),
                        "metric provider not available: {e}"
                    );
                }
                obs.metric_providers = Some(online.map_err(|e| e.message));
            }
            Need::Hook {
                hook_type,
                index,
                phase,
            } => {
                let outcome = match self.c.analysis.hooks(*hook_type).nth(*index) {
                    Some(hook) => {
                        let payload = self.payload(*phase, &hook.metadata);
                        webhook::call(&self.ctx.http, hook, &payload).await
                    }
                    None => Err(format!("no {} hook at index {index}", hook_type.as_str())),
                };
                obs.hooks.insert((*hook_type, *index), outcome);
            }
            Need::Metric { index } => {
                let outcome = self.metric(*index).await;
                obs.metrics.insert(*index, outcome);
            }
            Need::Fleet => {
                obs.fleet = Some(
                    self.ctx
                        .fleet(&kube::runtime::reflector::ObjectRef::from_obj(self.canary)),
                )
            }
        }
    }

    /// What the router works with.
    pub fn route_target(&self) -> crate::router::Target<'_> {
        crate::router::Target {
            client: &self.ctx.client,
            objects: &self.ctx.objects,
            caches: &self.ctx.caches,
            canary: self.canary,
            c: self.c,
            ingress_prefix: &self.ctx.settings.ingress_prefix,
            ingress_class: &self.ctx.settings.ingress_class,
        }
    }

    /// The webhook payload for this canary.
    pub fn payload(
        &self,
        phase: flagger_api::CanaryPhase,
        metadata: &std::collections::BTreeMap<String, String>,
    ) -> Payload {
        Payload {
            name: self.c.name.clone(),
            namespace: self.c.namespace.clone(),
            phase,
            checksum: checksum(self.status),
            metadata: metadata.clone(),
        }
    }

    async fn readiness(&self, role: Role) -> Readiness {
        readiness_of(self.ctx, self.c, self.observed, self.status, role).await
    }

    /// The Prometheus of builtin checks and inline queries: `spec.metricsServer` or
    /// `-metrics-server`.
    fn prometheus(&self) -> Prometheus {
        Prometheus::plain(
            &self.ctx.http,
            self.c
                .metrics_server
                .as_deref()
                .unwrap_or(&self.ctx.settings.metrics_server),
        )
    }

    /// The availability check at initialization: the Prometheus of builtin checks and inline
    /// queries, then every MetricTemplate (template, secret, provider, its own check).
    async fn providers_online(&self) -> Result<(), ProviderError> {
        let metrics = &self.c.analysis.metrics;
        let uses_prometheus = metrics
            .iter()
            .any(|m| matches!(m.source, MetricSource::Builtin(_) | MetricSource::Query(_)));
        if uses_prometheus {
            self.prometheus().check_online().await?;
        }
        for (index, m) in metrics.iter().enumerate() {
            if let MetricSource::Template {
                name, namespace, ..
            } = &m.source
            {
                let interval = self.template_model(index).interval;
                templates::is_online(
                    &self.ctx.lookups,
                    &self.ctx.http,
                    namespace,
                    name,
                    &interval,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// What a query template sees (reference §5.2). `interval` is the metric's as written:
    /// empty for a template metric without one, `1m` by default for inline queries.
    fn template_model(&self, index: usize) -> Model {
        let spec = &self.canary.spec;
        let wire = spec
            .analysis
            .as_ref()
            .and_then(|a| a.metrics.as_ref())
            .and_then(|m| m.get(index));
        let metric = self.c.analysis.metrics.get(index);
        let interval = match (wire.and_then(|w| w.interval.clone()), metric) {
            (Some(i), _) => i,
            (None, Some(m)) if matches!(m.source, MetricSource::Template { .. }) => String::new(),
            (None, _) => "1m".into(),
        };
        let variables = match metric.map(|m| &m.source) {
            Some(MetricSource::Template { variables, .. }) => variables.clone(),
            _ => Default::default(),
        };
        let target = self.c.target.name.clone();
        Model {
            name: self.c.name.clone(),
            namespace: self.c.namespace.clone(),
            service: self.c.apex.clone(),
            ingress: spec
                .ingress_ref
                .as_ref()
                .map(|r| r.name.clone())
                .unwrap_or_else(|| target.clone()),
            // Knative's route is the revision under analysis (reference §3.11).
            route: match &self.observed.target {
                Target::KnativeService(s) => {
                    flagger_core::routing::knative::latest_created_revision(s)
                        .unwrap_or_default()
                        .to_string()
                }
                _ => spec
                    .route_ref
                    .as_ref()
                    .map(|r| r.name.clone())
                    .unwrap_or_else(|| target.clone()),
            },
            target,
            interval,
            variables,
        }
    }

    async fn metric(&self, index: usize) -> MetricCheck {
        let Some(metric) = self.c.analysis.metrics.get(index) else {
            return MetricCheck::outcome(MetricOutcome::Error(format!(
                "no metric at index {index}"
            )));
        };
        let check = match &metric.source {
            // `{{ interval }}` of a builtin query is the metric's interval as written (`1m`
            // when it has none), as Flagger renders it.
            MetricSource::Builtin(kind) => match observer::for_provider(self.c.provider) {
                Some(observer) => {
                    let model = self.template_model(index);
                    let query = observer.query(*kind, &model);
                    let answer = self.prometheus().query(&query).await;
                    let answer = match kind {
                        BuiltinMetric::RequestDuration => answer.map(|v| observer.duration_ms(v)),
                        BuiltinMetric::RequestSuccessRate => answer,
                    };
                    MetricCheck::ran("prometheus", query, providers::outcome(answer))
                }
                None => MetricCheck::not_run(
                    "prometheus",
                    MetricOutcome::Error(format!(
                        "no builtin {} query for the {} provider",
                        kind.name(),
                        self.c.provider
                    )),
                ),
            },
            MetricSource::Query(query) => {
                match gotemplate::render(query, &self.template_model(index)) {
                    Ok(q) => {
                        let answer = self.prometheus().query(&q).await;
                        MetricCheck::ran("prometheus", q, providers::outcome(answer))
                    }
                    Err(e) => MetricCheck::not_run(
                        "prometheus",
                        MetricOutcome::Error(format!("query render error: {e}")),
                    ),
                }
            }
            MetricSource::Template {
                name, namespace, ..
            } => {
                let now = self.ctx.now().as_millisecond() as f64 / 1000.0;
                let comparing = templates::Comparing {
                    metric,
                    canary: self.c,
                    now,
                };
                templates::run(
                    &self.ctx.lookups,
                    &self.ctx.http,
                    namespace,
                    name,
                    &self.template_model(index),
                    &comparing,
                )
                .await
            }
        };
        tracing::debug!(
            canary = %format!("{}.{}", self.c.name, self.c.namespace),
            metric = %metric.name,
            provider = %check.provider,
            query = check.query.as_deref().unwrap_or_default(),
            value = check.value().map(|v| v.to_string()).unwrap_or_default(),
            failure = check.failure().unwrap_or_default(),
            "metric check"
        );
        if let Some(v) = check.value() {
            let value = match &metric.source {
                // Flagger records request-duration in seconds.
                MetricSource::Builtin(BuiltinMetric::RequestDuration) => v / 1000.0,
                _ => v,
            };
            self.ctx
                .metrics
                .metric_analysis
                .get_or_create(&MetricLabels {
                    name: self.c.target.name.clone(),
                    namespace: self.c.namespace.clone(),
                    metric: metric.name.clone(),
                })
                .set(value);
        }
        check
    }
}

/// Readiness of the primary or canary workload, from the watch cache.
pub async fn readiness_of(
    ctx: &Context,
    c: &ValidatedCanary,
    observed: &Observed,
    status: &CanaryStatus,
    role: Role,
) -> Readiness {
    let ns = &c.namespace;
    let name = match role {
        Role::Primary => c.primary_workload(),
        Role::Canary => c.target.name.clone(),
    };
    let threshold = match role {
        Role::Primary => c.analysis.primary_ready_threshold,
        Role::Canary => c.analysis.canary_ready_threshold,
    };
    let deadline = c.progress_deadline.as_secs() as i64;
    let now = ctx.now();
    match &observed.target {
        Target::Deployment(_) => {
            match cache::require(&ctx.caches.deployments, &ctx.client, ns, &name).await {
                Ok(d) => readiness::deployment(&d, role, ns, &c.name, threshold, deadline, now),
                Err(e) => Readiness::Waiting(format!(
                    "deployment {name}.{ns} get query error: {}",
                    api_text(&e)
                )),
            }
        }
        Target::KnativeService(service) => {
            super::knative::readiness(&ctx.objects, c, service, role).await
        }
        Target::DaemonSet(_) => {
            match cache::require(&ctx.caches.daemonsets, &ctx.client, ns, &name).await {
                Ok(d) => {
                    let since = status.last_transition_time.as_ref().map(|t| t.0);
                    readiness::daemonset(&d, role, ns, threshold, deadline, since, now)
                }
                Err(e) => Readiness::Waiting(format!(
                    "daemonset {name}.{ns} get query error: {}",
                    api_text(&e)
                )),
            }
        }
    }
}

/// The `checksum` of webhook payloads: identifies the revision and configs under analysis.
pub fn checksum(status: &CanaryStatus) -> String {
    hash::spec_hash(&serde_json::json!({
        "lastAppliedSpec": status.last_applied_spec,
        "trackedConfigs": status.tracked_configs,
    }))
}
