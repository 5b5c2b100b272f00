//! Step 5: carry out the decision's effects, in order.

use std::collections::BTreeMap;
use std::sync::Arc;

use flagger_api::CanaryPhase;
use flagger_api::labels::SCALE_TO_ZERO_NODE_SELECTOR;
use flagger_core::effects::{Decision, Effect, Event, EventType, RunOutcome};
use flagger_core::keda::MetadataRule;
use flagger_core::model::{AutoscalerKind, HookType, Severity, ValidatedCanary, Webhook};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::cache;
use serde_json::json;

use super::bootstrap;
use super::keda;
use super::observe::{Observed, Target};
use super::oracle::Oracle;
use crate::FIELD_MANAGER;
use crate::context::Context;
use crate::metrics::RunLabels;
use crate::webhook;

/// Carries out every effect of a decision. Failures become Warning events; the next tick
/// retries whatever is still needed.
pub async fn apply(oracle: &Oracle<'_>, decision: &Decision) {
    for effect in &decision.effects {
        if let Err(message) = apply_one(oracle, effect).await {
            record(
                oracle,
                &Event {
                    event_type: EventType::Warning,
                    message,
                    phase: oracle.status.phase,
                },
            )
            .await;
        }
    }
}

async fn apply_one(o: &Oracle<'_>, effect: &Effect) -> Result<(), String> {
    let c = o.c;
    let ctx = o.ctx;
    let ns = &c.namespace;
    match effect {
        Effect::SetRoutes(routes) => {
            let target = o.route_target();
            let mut cookies = crate::router::cookies_of(Some(o.status));
            let sticky = c
                .analysis
                .session_affinity
                .as_ref()
                .filter(|_| o.router.sticky());
            if let Some(affinity) = sticky {
                cookies = flagger_core::routing::next_sticky_cookies(
                    affinity,
                    &cookies,
                    routes.canary,
                    crate::router::random_letters,
                );
            }
            o.router
                .set_routes(&target, *routes, &cookies)
                .await
                .map_err(|e| e.message)?;
            if sticky.is_some()
                && let Ok(mut written) = o.cookies.lock()
            {
                *written = Some(cookies);
            }
            ctx.metrics
                .set_weights(&c.target.name, ns, routes.primary, routes.canary);
            Ok(())
        }
        // The apex Service was left to another writer and routes to the target: keep it up.
        Effect::ScaleTargetToZero if super::conflicts::apex_yielded(ctx, o.canary, c) => {
            keep_target_serving(ctx, c, o.observed).await.map_err(|e| {
                format!(
                    "scaling up {} {}.{ns} failed: {e}",
                    c.target.kind.kind().to_lowercase(),
                    c.target.name
                )
            })
        }
        Effect::ScaleTargetToZero => scale_to_zero(o).await.map_err(|e| {
            format!(
                "scaling down canary {} {}.{ns} failed: {e}",
                c.target.kind.kind(),
                c.target.name
            )
        }),
        Effect::ScaleTargetUp => scale_up(o).await.map_err(|e| {
            format!(
                "scaling up {} {}.{ns} failed: {e}",
                c.target.kind.kind().to_lowercase(),
                c.target.name
            )
        }),
        // HPAs need no pausing: a Deployment at zero replicas is not scaled by its HPA. A
        // ScaledObject would scale it back up, so KEDA's pause annotation holds it at zero.
        Effect::PauseTargetScaler | Effect::ResumeTargetScaler => {
            if is_keda(c) {
                keda::set_paused(&ctx.client, c, *effect == Effect::PauseTargetScaler).await
            } else {
                Ok(())
            }
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
                .await
            } else {
                bootstrap::write_primary_hpa(&ctx.client, o.canary, c).await
            }
        }
        Effect::Promote => promote(o).await,
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
            crate::alerts::send(ctx, c, alert).await;
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

fn merge() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

async fn scale_to_zero(o: &Oracle<'_>) -> Result<(), kube::Error> {
    let c = o.c;
    let client = o.ctx.client.clone();
    match &o.observed.target {
        Target::Deployment(_) => {
            Api::<Deployment>::namespaced(client, &c.namespace)
                .patch(
                    &c.target.name,
                    &merge(),
                    &Patch::Merge(json!({"spec": {"replicas": 0}})),
                )
                .await?;
        }
        Target::DaemonSet(_) => {
            let patch = json!({"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_NODE_SELECTOR: "true"}}}}});
            Api::<DaemonSet>::namespaced(client, &c.namespace)
                .patch(&c.target.name, &merge(), &Patch::Merge(patch))
                .await?;
        }
        // Knative scales its revisions itself.
        Target::KnativeService(_) => {}
    }
    Ok(())
}

async fn scale_up(o: &Oracle<'_>) -> Result<(), kube::Error> {
    keep_target_serving(o.ctx, o.c, o.observed).await
}

/// Scales the target up from zero (Deployment: Flagger's replica count; DaemonSet: the
/// scale-to-zero node selector removed).
pub async fn keep_target_serving(
    ctx: &Context,
    c: &ValidatedCanary,
    observed: &Observed,
) -> Result<(), kube::Error> {
    let client = ctx.client.clone();
    match &observed.target {
        Target::Deployment(target) => {
            let replicas = replicas_from_zero(ctx, c, target).await?;
            Api::<Deployment>::namespaced(client, &c.namespace)
                .patch(
                    &c.target.name,
                    &merge(),
                    &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                )
                .await?;
        }
        Target::DaemonSet(_) => {
            let patch = json!({"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_NODE_SELECTOR: null}}}}});
            Api::<DaemonSet>::namespaced(client, &c.namespace)
                .patch(&c.target.name, &merge(), &Patch::Merge(patch))
                .await?;
        }
        Target::KnativeService(_) => {}
    }
    Ok(())
}

/// Flagger's scale-from-zero replica count (§3.5).
async fn replicas_from_zero(
    ctx: &Context,
    c: &ValidatedCanary,
    target: &Deployment,
) -> Result<i32, kube::Error> {
    if let Some(r) = target
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .filter(|r| *r > 0)
    {
        return Ok(r);
    }
    let client = ctx.client.clone();
    if let Some(a) = &c.autoscaler
        && a.kind == AutoscalerKind::ScaledObject
    {
        let so = keda::get(&client, &c.namespace, &a.name)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(canary = %format!("{}.{}", c.name, c.namespace), "{e}");
                None
            });
        return Ok(flagger_core::keda::replicas_from_zero(so.as_ref()));
    }
    if let Some(a) = &c.autoscaler {
        let hpa = cache::get(&ctx.caches.hpas, &client, &c.namespace, &a.name).await?;
        let min = hpa
            .and_then(|h| h.spec.clone())
            .and_then(|s| s.min_replicas)
            .unwrap_or(1);
        return Ok(min.max(1));
    }
    let primary = cache::get(
        &ctx.caches.deployments,
        &client,
        &c.namespace,
        &c.primary_workload(),
    )
    .await?;
    Ok(primary
        .and_then(|p| p.spec.clone())
        .and_then(|s| s.replicas)
        .filter(|r| *r > 0)
        .unwrap_or(1))
}

async fn promote(o: &Oracle<'_>) -> Result<(), String> {
    let c = o.c;
    let ns = &c.namespace;
    let client = &o.ctx.client;
    let current = match &o.observed.target {
        Target::KnativeService(_) => return super::knative::promote(client, c).await,
        Target::Deployment(_) => Api::<Deployment>::namespaced(client.clone(), ns)
            .get(&c.primary_workload())
            .await
            .map(|d| Target::Deployment(Arc::new(d))),
        Target::DaemonSet(_) => Api::<DaemonSet>::namespaced(client.clone(), ns)
            .get(&c.primary_workload())
            .await
            .map(|d| Target::DaemonSet(Arc::new(d))),
    }
    .map_err(|e| format!("{}.{ns} get query error: {e}", c.primary_workload()))?;
    bootstrap::write_primary_configs(client, &o.ctx.settings, o.canary, o.observed).await?;
    bootstrap::write_primary(
        client,
        &o.ctx.settings,
        o.canary,
        o.observed,
        Some(&current),
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
