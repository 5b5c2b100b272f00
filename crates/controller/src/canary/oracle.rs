//! Step 4's helper: answers what the decision core asks (readiness, routes, hook calls, metric
//! queries) by asking the cluster, the hooks and Prometheus.

use flagger_api::{Canary, CanaryStatus};
use flagger_core::effects::{MetricOutcome, Need, Observations, Readiness};
use flagger_core::hash;
use flagger_core::model::{BuiltinMetric, MetricSource, ValidatedCanary};
use flagger_core::readiness::{self, Role};

use super::observe::{Observed, Target};
use crate::cache;
use crate::context::Context;
use crate::metrics::MetricLabels;
use crate::prometheus;
use crate::router::Router;
use crate::webhook::{self, Payload};

/// What the oracle works with for one tick.
pub struct Oracle<'a> {
    pub ctx: &'a Context,
    pub canary: &'a Canary,
    pub c: &'a ValidatedCanary,
    pub observed: &'a Observed,
    pub router: Router,
    pub status: &'a CanaryStatus,
}

impl Oracle<'_> {
    /// Answers one need, recording the answer in `obs`.
    pub async fn answer(&self, need: &Need, obs: &mut Observations) {
        match need {
            Need::PrimaryReadiness => obs.primary_ready = Some(self.readiness(Role::Primary).await),
            Need::CanaryReadiness => obs.canary_ready = Some(self.readiness(Role::Canary).await),
            Need::Routes => obs.routes = Some(self.router.get_routes(self.c).await),
            Need::MetricProviders => obs.metric_providers = Some(self.providers_online().await),
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
        let c = self.c;
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
        let now = self.ctx.now();
        match &self.observed.target {
            Target::Deployment(_) => {
                match cache::require(&self.ctx.caches.deployments, &self.ctx.client, ns, &name)
                    .await
                {
                    Ok(d) => readiness::deployment(&d, role, ns, &c.name, threshold, deadline, now),
                    Err(e) => {
                        Readiness::Waiting(format!("deployment {name}.{ns} get query error: {e}"))
                    }
                }
            }
            Target::DaemonSet(_) => {
                match cache::require(&self.ctx.caches.daemonsets, &self.ctx.client, ns, &name).await
                {
                    Ok(d) => {
                        let since = self.status.last_transition_time.as_ref().map(|t| t.0);
                        readiness::daemonset(&d, role, ns, threshold, deadline, since, now)
                    }
                    Err(e) => {
                        Readiness::Waiting(format!("daemonset {name}.{ns} get query error: {e}"))
                    }
                }
            }
        }
    }

    fn prometheus_address(&self) -> &str {
        self.c
            .metrics_server
            .as_deref()
            .unwrap_or(&self.ctx.settings.metrics_server)
    }

    async fn providers_online(&self) -> Result<(), String> {
        let uses_prometheus = self
            .c
            .analysis
            .metrics
            .iter()
            .any(|m| matches!(m.source, MetricSource::Builtin(_) | MetricSource::Query(_)));
        if uses_prometheus {
            prometheus::is_online(&self.ctx.http.verified, self.prometheus_address()).await?;
        }
        Ok(())
    }

    async fn metric(&self, index: usize) -> MetricOutcome {
        let Some(metric) = self.c.analysis.metrics.get(index) else {
            return MetricOutcome::Error(format!("no metric at index {index}"));
        };
        let interval = metric
            .interval
            .map(flagger_core::duration::format_go)
            .unwrap_or_else(|| "1m".into());
        let outcome = match &metric.source {
            MetricSource::Builtin(kind) => {
                match prometheus::builtin_query(self.c, *kind, &interval) {
                    Some(q) => {
                        let out = prometheus::query(
                            &self.ctx.http.verified,
                            self.prometheus_address(),
                            &q,
                        )
                        .await;
                        match (kind, out) {
                            (BuiltinMetric::RequestDuration, MetricOutcome::Value(v)) => {
                                MetricOutcome::Value(prometheus::duration_to_ms(self.c, v))
                            }
                            (_, other) => other,
                        }
                    }
                    None => MetricOutcome::Error(format!(
                        "no builtin {} query for the {} provider",
                        kind.name(),
                        self.c.provider
                    )),
                }
            }
            MetricSource::Query(_) | MetricSource::Template { .. } => MetricOutcome::Error(
                "inline queries and MetricTemplates are not supported yet".into(),
            ),
        };
        if let MetricOutcome::Value(v) = &outcome {
            let value = match &metric.source {
                // Flagger records request-duration in seconds.
                MetricSource::Builtin(BuiltinMetric::RequestDuration) => v / 1000.0,
                _ => *v,
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
        outcome
    }
}

/// The `checksum` of webhook payloads: identifies the revision and configs under analysis.
pub fn checksum(status: &CanaryStatus) -> String {
    hash::spec_hash(&serde_json::json!({
        "lastAppliedSpec": status.last_applied_spec,
        "trackedConfigs": status.tracked_configs,
    }))
}
