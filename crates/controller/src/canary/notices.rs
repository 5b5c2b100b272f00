//! After the status is written: the decision's notices, in order. Events go to the Canary and
//! to the event webhooks, alerts to the alert routes (or the global notifier), run counters to
//! the metrics, post-rollout hooks are called. Nothing here fails the reconcile: a notice that
//! cannot be delivered is logged.

use std::collections::BTreeMap;

use flagger_api::CanaryPhase;
use flagger_core::effects::{Event, EventType, Notice, RunOutcome};
use flagger_core::model::{HookType, Severity, Webhook};
use kube::ResourceExt;

use super::oracle::Oracle;
use crate::metrics::RunLabels;
use crate::webhook;

/// Emits the notices in order.
pub async fn emit(o: &Oracle<'_>, notices: &[Notice]) {
    for notice in notices {
        match notice {
            Notice::Event(event) => record(o, event).await,
            Notice::Alert(alert) => {
                let (c, ns) = (o.c, &o.c.namespace);
                let level = alert.severity.as_str();
                match alert.severity {
                    Severity::Error | Severity::Warn => {
                        tracing::warn!(canary = %format!("{}.{ns}", c.name), severity = level, "alert: {}", alert.message)
                    }
                    Severity::Info => {
                        tracing::info!(canary = %format!("{}.{ns}", c.name), severity = level, "alert: {}", alert.message)
                    }
                }
                crate::alerts::send(&o.ctx.alerting(), c, alert).await;
            }
            Notice::CountRun(outcome) => count(o, *outcome),
            Notice::RunPostRolloutHooks { phase } => post_rollout(o, *phase).await,
            Notice::ClearAction { raw } => super::requests::clear(o.ctx, o.canary, raw).await,
            Notice::Check(check) => {
                o.ctx
                    .metrics
                    .record_check(&o.c.target.name, &o.c.namespace, check)
            }
        }
    }
}

fn count(o: &Oracle<'_>, outcome: RunOutcome) {
    let c = o.c;
    let metrics = &o.ctx.metrics;
    let (family, status) = match outcome {
        RunOutcome::Succeeded { skipped } => (
            &metrics.successes,
            if skipped { "skipped" } else { "completed" },
        ),
        RunOutcome::Failed => (&metrics.failures, "completed"),
    };
    family
        .get_or_create(&RunLabels {
            name: c.target.name.clone(),
            namespace: c.namespace.clone(),
            deployment_strategy: flagger_core::decide::effective_strategy(c).label().into(),
            analysis_status: status.into(),
        })
        .inc();
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
