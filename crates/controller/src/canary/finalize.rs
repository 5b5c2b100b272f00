//! Deleting a canary with `revertOnDeletion`: bring the target back, wait until it serves, give
//! a pre-existing apex Service back its selector, then release the finalizer.

use std::time::Duration;

use flagger_api::labels::{FINALIZER, LAST_APPLIED, SCALE_TO_ZERO_NODE_SELECTOR};
use flagger_api::{Canary, CanaryPhase};
use flagger_core::effects::{EventType, Readiness};
use flagger_core::model::{AutoscalerKind, TargetKind};
use flagger_core::readiness::{self, Role};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::dereference::dereference;
use super::objects::owned_by;
use super::write_status;
use crate::FIELD_MANAGER;
use crate::context::Context;
use crate::error::{Error, Result};

/// Runs one step of finalization; requeues until the target is ready again.
pub async fn finalize(ctx: &Context, canary: &Canary) -> Result<Action> {
    let ns = canary.namespace().unwrap_or_default();
    let name = canary.name_any();
    let api: Api<Canary> = Api::namespaced(ctx.client.clone(), &ns);
    let mut status = canary.status.clone().unwrap_or_default();
    if status.phase != CanaryPhase::Terminating {
        status.phase = CanaryPhase::Terminating;
        write_status(&api, canary, &status).await?;
        ctx.recorder
            .record(
                canary,
                EventType::Normal,
                &format!("Terminating canary {name}.{ns}"),
                ctx.now(),
            )
            .await;
    }
    let deref = dereference(canary, &ctx.settings).map_err(|p| Error::Object(p.join("; ")))?;
    let c = &deref.canary;
    let client = ctx.client.clone();
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };

    // Bring the target back, its ScaledObject resumed first (a no-op without one).
    if c.autoscaler
        .as_ref()
        .is_some_and(|a| a.kind == AutoscalerKind::ScaledObject)
    {
        super::keda::set_paused(&client, c, false)
            .await
            .map_err(Error::Object)?;
    }
    let ready = match c.target.kind {
        TargetKind::Deployment => {
            let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
            let primary = deployments.get_opt(&c.primary_workload()).await?;
            let replicas = primary
                .and_then(|p| p.spec)
                .and_then(|s| s.replicas)
                .filter(|r| *r > 0)
                .unwrap_or(1);
            deployments
                .patch(
                    &c.target.name,
                    &params,
                    &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                )
                .await?;
            let target = deployments.get(&c.target.name).await?;
            readiness::deployment(
                &target,
                Role::Canary,
                &ns,
                &name,
                c.analysis.canary_ready_threshold,
                c.progress_deadline.as_secs() as i64,
                ctx.now(),
            )
        }
        TargetKind::DaemonSet => {
            let daemonsets = Api::<DaemonSet>::namespaced(client.clone(), &ns);
            let patch = json!({"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_NODE_SELECTOR: null}}}}});
            daemonsets
                .patch(&c.target.name, &params, &Patch::Merge(patch))
                .await?;
            let target = daemonsets.get(&c.target.name).await?;
            readiness::daemonset(
                &target,
                Role::Canary,
                &ns,
                c.analysis.canary_ready_threshold,
                c.progress_deadline.as_secs() as i64,
                None,
                ctx.now(),
            )
        }
        _ => Readiness::Ready,
    };
    if let Readiness::Waiting(msg) | Readiness::Failed(msg) = &ready {
        tracing::info!(canary = %format!("{name}.{ns}"), "canary not ready during finalizing: {msg}");
        return Ok(Action::requeue(
            Duration::from_secs(3).min(c.analysis.interval),
        ));
    }

    // The apex Service keeps serving: a pre-existing one gets its own selector back; one we
    // generated is re-pointed at the target and released from the Canary, so garbage
    // collection does not delete a Service that clients use (Flagger leaves it to GC).
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    if let Some(apex) = services.get_opt(&c.apex).await? {
        let generated = owned_by(apex.metadata.owner_references.as_ref(), canary);
        let last_applied = apex
            .annotations()
            .get(LAST_APPLIED)
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            .and_then(|v| v.pointer("/spec/selector").cloned());
        let selector = match last_applied {
            Some(s) if !generated => s,
            _ => target_selector(ctx, c, &ns).await?,
        };
        if let Ok(selector) = serde_json::from_value(selector) {
            let mut restored = apex.clone();
            if let Some(spec) = restored.spec.as_mut() {
                spec.selector = Some(selector);
            }
            if generated {
                restored.metadata.owner_references = None;
                restored.metadata.managed_fields = None;
            }
            services
                .replace(&c.apex, &PostParams::default(), &restored)
                .await?;
            if generated {
                ctx.recorder
                    .record(
                        canary,
                        EventType::Normal,
                        &format!(
                            "Service {}.{ns} kept and pointed at {}.{ns}",
                            c.apex, c.target.name
                        ),
                        ctx.now(),
                    )
                    .await;
            }
        }
    }

    // The router gives back what it took over (Istio: a pre-existing VirtualService's spec).
    let target = crate::router::Target {
        client: &client,
        canary,
        c,
        cookies: crate::router::cookies_of(canary.status.as_ref()),
        ingress_prefix: &ctx.settings.ingress_prefix,
    };
    match deref.router.finalize(&target).await {
        Ok(None) => {}
        Ok(Some(warning)) => {
            ctx.recorder
                .record(canary, EventType::Warning, &warning, ctx.now())
                .await;
        }
        Err(e) => return Err(Error::Object(e)),
    }

    // Release the finalizer.
    let finalizers: Vec<String> = canary
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": finalizers, "resourceVersion": canary.resource_version()}})),
    )
    .await?;
    ctx.recorder
        .record(
            canary,
            EventType::Normal,
            &format!("Terminated canary {name}.{ns}"),
            ctx.now(),
        )
        .await;
    Ok(Action::await_change())
}

/// `{label: value}` selecting the target's pods by the first selector label it carries.
async fn target_selector(
    ctx: &Context,
    c: &flagger_core::model::ValidatedCanary,
    ns: &str,
) -> Result<serde_json::Value> {
    let client = ctx.client.clone();
    let match_labels = match c.target.kind {
        TargetKind::Deployment => Api::<Deployment>::namespaced(client, ns)
            .get(&c.target.name)
            .await?
            .spec
            .and_then(|s| s.selector.match_labels),
        TargetKind::DaemonSet => Api::<DaemonSet>::namespaced(client, ns)
            .get(&c.target.name)
            .await?
            .spec
            .and_then(|s| s.selector.match_labels),
        _ => None,
    };
    let label = match_labels.and_then(|m| {
        ctx.settings
            .labels
            .selector_labels
            .iter()
            .find_map(|k| m.get(k).map(|v| (k.clone(), v.clone())))
    });
    Ok(match label {
        Some((k, v)) => json!({ k: v }),
        None => serde_json::Value::Null,
    })
}
