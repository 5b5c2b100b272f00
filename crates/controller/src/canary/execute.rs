//! Step 5: carry out the decision's effects, in order.

use std::collections::BTreeMap;

use flagger_api::CanaryPhase;
use flagger_core::effects::{Decision, Effect, Event, EventType, RunOutcome};
use flagger_core::keda::MetadataRule;
use flagger_core::model::{AutoscalerKind, HookType, Severity, ValidatedCanary, Webhook};
use kube::ResourceExt;

use super::keda;
use super::objects::WriteError;
use super::oracle::Oracle;
use super::workloads;
use crate::FIELD_MANAGER;
use crate::error::{step_error, step_error_from};
use crate::metrics::RunLabels;
use crate::webhook;

step_error!(
    /// Step 5 failed: an effect of the decision could not be carried out.
    ExecuteError
);
step_error_from!(WriteError => ExecuteError);

/// Carries out every effect of a decision. Failures become Warning events; the next tick
/// retries whatever is still needed.
pub async fn run(oracle: &Oracle<'_>, decision: &Decision) {
    for effect in &decision.effects {
        if let Err(e) = apply_one(oracle, effect).await {
            record(
                oracle,
                &Event {
                    event_type: EventType::Warning,
                    message: e.to_string(),
                    phase: oracle.status.phase,
                },
            )
            .await;
        }
    }
}

async fn apply_one(o: &Oracle<'_>, effect: &Effect) -> Result<(), ExecuteError> {
    let c = o.c;
    let ctx = o.ctx;
    let ns = &c.namespace;
    match effect {
        Effect::SetRoutes(routes) => {
            let mut target = o.route_target();
            let sticky = c
                .analysis
                .session_affinity
                .as_ref()
                .filter(|_| o.router.sticky());
            if let Some(affinity) = sticky {
                target.cookies = flagger_core::routing::next_sticky_cookies(
                    affinity,
                    &target.cookies,
                    routes.canary,
                    crate::router::random_letters,
                );
            }
            o.router
                .set_routes(&target, *routes)
                .await
                .map_err(ExecuteError::provider)?;
            if sticky.is_some()
                && let Ok(mut written) = o.cookies.lock()
            {
                *written = Some(target.cookies);
            }
            ctx.metrics
                .set_weights(&c.target.name, ns, routes.primary, routes.canary);
            Ok(())
        }
        // The apex Service was left to another writer and routes to the target: keep it up.
        Effect::ScaleTargetToZero if super::conflicts::apex_yielded(ctx, o.canary, c) => {
            Ok(workloads::scale_up(&ctx.client, &ctx.caches, c, o.observed).await?)
        }
        Effect::ScaleTargetToZero => Ok(workloads::scale_to_zero(&ctx.client, c).await?),
        Effect::ScaleTargetUp => {
            Ok(workloads::scale_up(&ctx.client, &ctx.caches, c, o.observed).await?)
        }
        // HPAs need no pausing: a Deployment at zero replicas is not scaled by its HPA. A
        // ScaledObject would scale it back up, so KEDA's pause annotation holds it at zero.
        Effect::PauseTargetScaler | Effect::ResumeTargetScaler => {
            if is_keda(c) {
                keda::set_paused(
                    &ctx.client,
                    c,
                    *effect == Effect::PauseTargetScaler,
                    FIELD_MANAGER,
                )
                .await?;
            }
            Ok(())
        }
        Effect::ReconcilePrimaryScaler => {
            if is_keda(c) {
                keda::write_primary(
                    &ctx.client,
                    &ctx.settings,
                    o.canary,
                    c,
                    MetadataRule::Update,
                )
                .await?;
            } else {
                workloads::write_primary_hpa(&ctx.client, o.canary, c).await?;
            }
            Ok(())
        }
        Effect::Promote => Ok(promote(o).await?),
        Effect::RunPostRolloutHooks { phase } => {
            post_rollout(o, *phase).await;
            Ok(())
        }
        Effect::Event(event) => {
            record(o, event).await;
            Ok(())
        }
        Effect::Alert(alert) => {
            let level = alert.severity.as_str();
            match alert.severity {
                Severity::Error | Severity::Warn => {
                    tracing::warn!(canary = %format!("{}.{ns}", c.name), severity = level, "alert: {}", alert.message)
                }
                Severity::Info => {
                    tracing::info!(canary = %format!("{}.{ns}", c.name), severity = level, "alert: {}", alert.message)
                }
            }
            crate::alerts::send(&ctx.alerting(), c, alert).await;
            Ok(())
        }
        Effect::CountRun(outcome) => {
            let (family, status) = match outcome {
                RunOutcome::Succeeded { skipped } => (
                    &ctx.metrics.successes,
                    if *skipped { "skipped" } else { "completed" },
                ),
                RunOutcome::Failed => (&ctx.metrics.failures, "completed"),
            };
            family
                .get_or_create(&RunLabels {
                    name: c.target.name.clone(),
                    namespace: ns.clone(),
                    deployment_strategy: flagger_core::decide::effective_strategy(c).label().into(),
                    analysis_status: status.into(),
                })
                .inc();
            Ok(())
        }
    }
}

fn is_keda(c: &ValidatedCanary) -> bool {
    c.autoscaler
        .as_ref()
        .is_some_and(|a| a.kind == AutoscalerKind::ScaledObject)
}

/// Copies the target's template and tracked configs to the primary.
async fn promote(o: &Oracle<'_>) -> Result<(), WriteError> {
    let client = &o.ctx.client;
    let current = workloads::read_primary(client, o.c, o.observed).await?;
    workloads::write_primary_configs(client, &o.ctx.settings, o.canary, o.observed).await?;
    let flagger_id = uuid::Uuid::new_v4().to_string();
    workloads::write_primary(
        client,
        &o.ctx.settings,
        o.canary,
        o.observed,
        Some(&current),
        &flagger_id,
    )
    .await
}

async fn post_rollout(o: &Oracle<'_>, phase: CanaryPhase) {
    let hooks: Vec<Webhook> = o.c.analysis.hooks(HookType::PostRollout).cloned().collect();
    for hook in hooks {
        let payload = o.payload(phase, &hook.metadata);
        let (event_type, message) = match webhook::call(&o.ctx.http, &hook, &payload).await {
            Ok(()) => (
                EventType::Normal,
                format!("Post-rollout check {} passed", hook.name),
            ),
            Err(e) => (
                EventType::Warning,
                format!("Post-rollout hook {} failed {e}", hook.name),
            ),
        };
        let failed = event_type == EventType::Warning;
        record(
            o,
            &Event {
                event_type,
                message,
                phase,
            },
        )
        .await;
        if failed {
            break;
        }
    }
}

/// Records an event on the Canary and sends it to the event webhooks.
pub async fn record(o: &Oracle<'_>, event: &Event) {
    let now = o.ctx.now();
    o.ctx
        .recorder
        .record(o.canary, event.event_type, &event.message, now)
        .await;
    let hooks: Vec<Webhook> = o.c.analysis.hooks(HookType::Event).cloned().collect();
    let targets: Vec<Webhook> = if hooks.is_empty() {
        o.ctx
            .settings
            .event_webhook
            .iter()
            .map(|url| Webhook {
                name: "event-webhook".into(),
                hook_type: HookType::Event,
                url: url.clone(),
                timeout: std::time::Duration::from_secs(10),
                retries: 0,
                mute_alert: false,
                disable_tls: false,
                metadata: BTreeMap::new(),
            })
            .collect()
    } else {
        hooks
    };
    for hook in targets {
        let mut metadata = BTreeMap::from([
            ("eventMessage".to_string(), event.message.clone()),
            (
                "eventType".to_string(),
                match event.event_type {
                    EventType::Normal => "Normal".to_string(),
                    EventType::Warning => "Warning".to_string(),
                },
            ),
            ("timestamp".to_string(), (now.as_millisecond()).to_string()),
        ]);
        for (k, v) in &hook.metadata {
            metadata.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let payload = o.payload(event.phase, &metadata);
        let http = o.ctx.http.clone();
        let canary = format!("{}.{}", o.canary.name_any(), o.c.namespace);
        tokio::spawn(async move {
            if let Err(e) = webhook::call(&http, &hook, &payload).await {
                tracing::warn!(canary = %canary, "error sending event to webhook: {e}");
            }
        });
    }
}
