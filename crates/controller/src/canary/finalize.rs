//! Deleting a canary with `revertOnDeletion`: bring the target back, wait until it serves, give
//! a pre-existing apex Service back its selector, then release the finalizer.

use std::time::Duration;

use flagger_api::labels::{FINALIZER, LAST_APPLIED, ORIGINAL_SERVICE, SCALE_TO_ZERO_NODE_SELECTOR};
use flagger_api::{Canary, CanaryPhase};
use flagger_core::effects::{EventType, Readiness};
use flagger_core::model::{AutoscalerKind, TargetKind, ValidatedCanary};
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
    bring_back_target(&client, c).await.map_err(Error::Object)?;
    let ready = match c.target.kind {
        TargetKind::Deployment => {
            let target = Api::<Deployment>::namespaced(client.clone(), &ns)
                .get(&c.target.name)
                .await?;
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
            let target = Api::<DaemonSet>::namespaced(client.clone(), &ns)
                .get(&c.target.name)
                .await?;
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
    // A Knative target has no apex Service of ours (Knative's own route Service bears its
    // name).
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    let apex = match c.target.kind {
        TargetKind::KnativeService => None,
        _ => services.get_opt(&c.apex).await?,
    };
    if let Some(apex) = apex {
        let generated = owned_by(apex.metadata.owner_references.as_ref(), canary);
        let target = target_selector(&ctx.client, &ctx.settings.labels, c, &ns).await?;
        let restored = hand_back(&apex, generated, target);
        services
            .replace(&c.apex, &PostParams::default(), &restored)
            .await?;
        let message = if generated {
            format!(
                "Service {}.{ns} kept and pointed at {}.{ns}",
                c.apex, c.target.name
            )
        } else {
            format!(
                "Service {}.{ns} given back its own selector and ports",
                c.apex
            )
        };
        ctx.recorder
            .record(canary, EventType::Normal, &message, ctx.now())
            .await;
    }

    // The router gives back what it took over (Istio: a pre-existing VirtualService's spec).
    let target = crate::router::Target {
        client: &client,
        canary,
        c,
        ingress_prefix: &ctx.settings.ingress_prefix,
    };
    match deref.router.finalize(&target).await {
        Ok(None) => {}
        Ok(Some(warning)) => {
            ctx.recorder
                .record(canary, EventType::Warning, &warning, ctx.now())
                .await;
        }
        Err(e) => return Err(Error::Router(e)),
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

/// Brings the target back from zero, for good (deletion, uninstall): its KEDA ScaledObject
/// resumed; a Deployment scaled to the primary's replicas (at least its own, at least 1); a
/// DaemonSet's scale-to-zero node selector removed.
pub async fn bring_back_target(
    client: &kube::Client,
    c: &ValidatedCanary,
) -> std::result::Result<(), String> {
    let ns = &c.namespace;
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    if c.autoscaler
        .as_ref()
        .is_some_and(|a| a.kind == AutoscalerKind::ScaledObject)
    {
        super::keda::set_paused(client, c, false).await?;
    }
    let failed = |e: kube::Error| {
        format!(
            "scaling up {} {}.{ns} failed: {e}",
            c.target.kind.kind().to_lowercase(),
            c.target.name
        )
    };
    match c.target.kind {
        TargetKind::Deployment => {
            let api = Api::<Deployment>::namespaced(client.clone(), ns);
            let replicas_of =
                |d: Option<Deployment>| d.and_then(|d| d.spec).and_then(|s| s.replicas);
            let primary = replicas_of(api.get_opt(&c.primary_workload()).await.map_err(failed)?);
            let current = replicas_of(api.get_opt(&c.target.name).await.map_err(failed)?);
            let replicas = primary.unwrap_or(1).max(current.unwrap_or(0)).max(1);
            api.patch(
                &c.target.name,
                &params,
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await
            .map_err(failed)?;
        }
        TargetKind::DaemonSet => {
            let patch = json!({"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_NODE_SELECTOR: null}}}}});
            Api::<DaemonSet>::namespaced(client.clone(), ns)
                .patch(&c.target.name, &params, &Patch::Merge(patch))
                .await
                .map_err(failed)?;
        }
        // Knative scales its revisions itself.
        TargetKind::KnativeService => {}
        other => return Err(format!("{} targets have nothing to scale", other.kind())),
    }
    Ok(())
}

/// The apex Service as it is handed back: a Service someone else made gets the selector and
/// ports it had before the controller took it over (recorded in `flagger.app/original-service`;
/// without the record, the selector of its kubectl last-applied configuration, else the
/// target's); one the controller generated is pointed at the target and released from the
/// Canary, so garbage collection does not delete a Service clients use.
pub fn hand_back(apex: &Service, generated: bool, target_selector: serde_json::Value) -> Service {
    let mut restored = apex.clone();
    let annotations = restored
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    let original = annotations
        .remove(ORIGINAL_SERVICE)
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
    let last_applied = annotations
        .get(LAST_APPLIED)
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .and_then(|v| v.pointer("/spec/selector").cloned());
    let (selector, ports) = match (generated, original, last_applied) {
        (false, Some(o), _) => (
            o.get("selector").cloned().unwrap_or(target_selector),
            o.get("ports").cloned(),
        ),
        (false, None, Some(s)) => (s, None),
        _ => (target_selector, None),
    };
    if let Some(spec) = restored.spec.as_mut() {
        if let Ok(selector) = serde_json::from_value(selector) {
            spec.selector = Some(selector);
        }
        if let Some(ports) = ports.and_then(|p| serde_json::from_value(p).ok()) {
            spec.ports = Some(ports);
        }
    }
    if generated {
        restored.metadata.owner_references = None;
    }
    restored.metadata.managed_fields = None;
    restored
}

/// `{label: value}` selecting the target's pods by the first selector label it carries.
pub async fn target_selector(
    client: &kube::Client,
    labels: &flagger_core::workload::LabelPolicy,
    c: &flagger_core::model::ValidatedCanary,
    ns: &str,
) -> Result<serde_json::Value> {
    let client = client.clone();
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
        labels
            .selector_labels
            .iter()
            .find_map(|k| m.get(k).map(|v| (k.clone(), v.clone())))
    });
    Ok(match label {
        Some((k, v)) => json!({ k: v }),
        None => serde_json::Value::Null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(annotations: serde_json::Value, owned: bool) -> Service {
        let owners = if owned {
            json!([{"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "app", "uid": "u1", "controller": true}])
        } else {
            json!(null)
        };
        serde_json::from_value(json!({
            "metadata": {"name": "app", "annotations": annotations, "ownerReferences": owners},
            "spec": {"selector": {"app": "app-primary"}, "ports": [{"name": "http", "port": 80}]}
        }))
        .expect("service")
    }

    #[test]
    fn a_generated_apex_is_pointed_at_the_target_and_released() {
        let out = hand_back(&service(json!({}), true), true, json!({"app": "app"}));
        let spec = out.spec.expect("spec");
        assert_eq!(spec.selector.expect("selector")["app"], "app");
        assert_eq!(spec.ports.expect("ports")[0].port, 80);
        assert!(out.metadata.owner_references.is_none());
    }

    #[test]
    fn a_taken_over_service_gets_its_selector_and_ports_back() {
        let original =
            json!({"selector": {"app": "legacy"}, "ports": [{"name": "web", "port": 8080}]});
        let svc = service(
            json!({ORIGINAL_SERVICE: original.to_string(), LAST_APPLIED: "{\"spec\":{\"selector\":{\"app\":\"other\"}}}"}),
            false,
        );
        let out = hand_back(&svc, false, json!({"app": "app"}));
        let spec = out.spec.clone().expect("spec");
        assert_eq!(spec.selector.expect("selector")["app"], "legacy");
        let ports = spec.ports.expect("ports");
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].port),
            (Some("web"), 8080)
        );
        assert!(!out.annotations().contains_key(ORIGINAL_SERVICE));
    }

    #[test]
    fn without_a_record_the_last_applied_selector_then_the_target_is_used() {
        let svc = service(
            json!({LAST_APPLIED: "{\"spec\":{\"selector\":{\"app\":\"kubectl\"}}}"}),
            false,
        );
        let out = hand_back(&svc, false, json!({"app": "app"}));
        assert_eq!(
            out.spec.expect("spec").selector.expect("selector")["app"],
            "kubectl"
        );
        let bare = hand_back(&service(json!({}), false), false, json!({"app": "app"}));
        assert_eq!(
            bare.spec.expect("spec").selector.expect("selector")["app"],
            "app"
        );
    }
}
