//! Deleting a canary with `revertOnDeletion`: bring the target back, wait until it serves, give
//! a pre-existing apex Service back its selector, then release the finalizer.

use std::time::Duration;

use flagger_api::labels::{FINALIZER, LAST_APPLIED, ORIGINAL_SERVICE};
use flagger_api::{Canary, CanaryPhase};
use flagger_core::effects::{EventType, Readiness};
use flagger_core::finalize::Next;
use flagger_core::model::TargetKind;
use flagger_core::readiness::{self, Role};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::dereference::dereference;
use super::objects::{WriteError, merge_params, owned_by};
use super::status::{self, StatusError};
use super::workloads::bring_back_target;
use crate::context::Context;
use crate::error::{step_error, step_error_from};
use crate::write::FIELD_MANAGER;

step_error!(
    /// Finalization failed: traffic could not be handed back yet.
    FinalizeError
);
step_error_from!(WriteError => FinalizeError);
step_error_from!(StatusError => FinalizeError);

impl From<super::dereference::DereferenceError> for FinalizeError {
    fn from(e: super::dereference::DereferenceError) -> Self {
        FinalizeError::new(e.category, e.message)
    }
}

/// Adds the finalizer when deletion must hand traffic back (`revertOnDeletion`, or
/// `-safe-deletion`), removes it otherwise. `Some`: it was changed; go on with the object the
/// patch produced (its watch event triggers the canary again), a status computed from this
/// older copy would be taken for stale.
pub async fn ensure_finalizer(
    ctx: &Context,
    canary: &Canary,
) -> Result<Option<Action>, FinalizeError> {
    let wanted = canary.spec.revert_on_deletion.unwrap_or(false) || ctx.settings.safe_deletion;
    let has = canary.finalizers().iter().any(|f| f == FINALIZER);
    if wanted == has {
        return Ok(None);
    }
    ctx.fenced(canary)?;
    let ns = canary.namespace().unwrap_or_default();
    let name = canary.name_any();
    let mut finalizers: Vec<String> = canary.finalizers().to_vec();
    finalizers.retain(|f| f != FINALIZER);
    if wanted {
        finalizers.push(FINALIZER.into());
    } else {
        tracing::info!(canary = %format!("{name}.{ns}"), "opting out, deleting finalizers");
    }
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": canary.resource_version()}});
    Api::<Canary>::namespaced(ctx.client.clone(), &ns)
        .patch(&name, &merge_params(FIELD_MANAGER), &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            FinalizeError::api(format!("setting the finalizer of {name}.{ns} failed"), &e)
        })?;
    Ok(Some(Action::requeue(Duration::from_millis(200))))
}

/// Runs one step of finalization, as [`flagger_core::finalize::next`] decides: hand the traffic
/// back once the target serves, wait for it (a `Finalized=False` condition says why), or
/// release the finalizer at once when there is nothing to hand back or the wait is over.
pub async fn finalize(ctx: &Context, canary: &Canary) -> Result<Action, FinalizeError> {
    let ns = canary.namespace().unwrap_or_default();
    let name = canary.name_any();
    ctx.fenced(canary)?;
    let mut status = canary.status.clone().unwrap_or_default();
    if status.phase != CanaryPhase::Terminating {
        status.phase = CanaryPhase::Terminating;
        status::write(ctx, canary, &status).await?;
        ctx.recorder
            .record(
                canary,
                EventType::Normal,
                &format!("Terminating canary {name}.{ns}"),
                ctx.now(),
            )
            .await;
    }
    let deref = dereference(canary, &ctx.settings);
    let namespace_terminating = namespace_terminating(ctx, &ns).await;
    let waited = canary
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| waited_since(t.0, ctx.now()))
        .unwrap_or_default();
    let mut seen = flagger_core::finalize::Seen {
        namespace: ns.clone(),
        namespace_terminating,
        invalid: deref.as_ref().err().map(|e| e.message.clone()),
        target: canary.spec.target_ref.name.clone(),
        target_ready: Some(Readiness::Ready),
        waited,
        bound: Duration::from_secs(600),
    };
    let handed = match (&deref, namespace_terminating) {
        (Ok(deref), false) => {
            let c = &deref.canary;
            seen.target = format!(
                "{} {}.{ns}",
                c.target.kind.kind().to_lowercase(),
                c.target.name
            );
            seen.bound = c.progress_deadline;
            match target_readiness(ctx, c).await {
                Ok(ready) => {
                    seen.target_ready = ready;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        _ => Ok(()),
    };
    let next = match handed {
        Ok(()) => flagger_core::finalize::next(&seen),
        // A hand-back that keeps failing is given up after the bound too.
        Err(e) if waited < seen.bound => return Err(e),
        Err(e) => flagger_core::finalize::next(&flagger_core::finalize::Seen {
            target_ready: Some(Readiness::Failed(e.message)),
            ..seen
        }),
    };
    match next {
        Next::HandBack => {
            if let Ok(deref) = &deref {
                hand_back_traffic(ctx, canary, deref).await?;
            }
            release(
                ctx,
                canary,
                EventType::Normal,
                format!("Terminated canary {name}.{ns}"),
            )
            .await
        }
        Next::Release { reason, warning } => {
            let kind = if warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            release(
                ctx,
                canary,
                kind,
                format!("Terminated canary {name}.{ns}: {reason}"),
            )
            .await
        }
        Next::Wait(reason) => {
            tracing::info!(canary = %format!("{name}.{ns}"), "{reason}");
            let mut status = status::current(ctx, canary);
            status.phase = CanaryPhase::Terminating;
            if let Some(updated) =
                flagger_core::finalize::with_waiting_condition(&status, &reason, ctx.now())
            {
                status::write(ctx, canary, &updated).await?;
            }
            let interval = deref
                .as_ref()
                .map(|d| d.canary.analysis.interval)
                .unwrap_or(Duration::from_secs(3));
            Ok(Action::requeue(Duration::from_secs(3).min(interval)))
        }
    }
}

/// Whether the namespace is being deleted (a Namespace that cannot be read counts as not).
async fn namespace_terminating(ctx: &Context, ns: &str) -> bool {
    match Api::<Namespace>::all(ctx.client.clone()).get_opt(ns).await {
        Ok(Some(n)) => n.metadata.deletion_timestamp.is_some(),
        Ok(None) => true,
        Err(e) => {
            tracing::debug!(
                namespace = ns,
                "reading the namespace failed: {}",
                crate::error::api_text(&e)
            );
            false
        }
    }
}

/// Brings the target back and reads its readiness; `None`: the target does not exist.
async fn target_readiness(
    ctx: &Context,
    c: &flagger_core::model::ValidatedCanary,
) -> Result<Option<Readiness>, FinalizeError> {
    let ns = &c.namespace;
    let client = ctx.client.clone();
    if !bring_back_target(&client, c, FIELD_MANAGER).await? {
        return Ok(None);
    }
    let read_failed = |e: kube::Error| {
        FinalizeError::api(
            format!(
                "{} {}.{ns} get query error",
                c.target.kind.kind().to_lowercase(),
                c.target.name
            ),
            &e,
        )
    };
    Ok(match c.target.kind {
        TargetKind::Deployment => {
            let Some(target) = Api::<Deployment>::namespaced(client, ns)
                .get_opt(&c.target.name)
                .await
                .map_err(read_failed)?
            else {
                return Ok(None);
            };
            Some(readiness::deployment(
                &target,
                Role::Canary,
                ns,
                &c.name,
                c.analysis.canary_ready_threshold,
                c.progress_deadline.as_secs() as i64,
                ctx.now(),
            ))
        }
        TargetKind::DaemonSet => {
            let Some(target) = Api::<DaemonSet>::namespaced(client, ns)
                .get_opt(&c.target.name)
                .await
                .map_err(read_failed)?
            else {
                return Ok(None);
            };
            Some(readiness::daemonset(
                &target,
                Role::Canary,
                ns,
                c.analysis.canary_ready_threshold,
                c.progress_deadline.as_secs() as i64,
                None,
                ctx.now(),
            ))
        }
        _ => Some(Readiness::Ready),
    })
}

/// Hands the apex Service and the routes back.
async fn hand_back_traffic(
    ctx: &Context,
    canary: &Canary,
    deref: &super::dereference::Dereferenced,
) -> Result<(), FinalizeError> {
    let c = &deref.canary;
    let ns = &c.namespace;
    let client = ctx.client.clone();
    // The apex Service keeps serving: a pre-existing one gets its own selector back; one we
    // generated is re-pointed at the target and released from the Canary, so garbage
    // collection does not delete a Service that clients use (Flagger leaves it to GC).
    // A Knative target has no apex Service of ours (Knative's own route Service bears its
    // name).
    let services = Api::<Service>::namespaced(client.clone(), ns);
    let apex = match c.target.kind {
        TargetKind::KnativeService => None,
        _ => services.get_opt(&c.apex).await.map_err(|e| {
            FinalizeError::api(format!("service {}.{ns} get query error", c.apex), &e)
        })?,
    };
    if let Some(apex) = apex {
        let generated = owned_by(apex.metadata.owner_references.as_ref(), canary);
        let target = target_selector(&ctx.client, &ctx.settings.labels, c, ns)
            .await
            .map_err(|e| {
                FinalizeError::api(
                    format!(
                        "{} {}.{ns} get query error",
                        c.target.kind.kind().to_lowercase(),
                        c.target.name
                    ),
                    &e,
                )
            })?;
        let restored = hand_back(&apex, generated, target);
        services
            .replace(&c.apex, &crate::write::post_params(), &restored)
            .await
            .map_err(|e| {
                FinalizeError::api(format!("handing Service {}.{ns} back failed", c.apex), &e)
            })?;
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
        objects: &ctx.objects,
        caches: &ctx.caches,
        canary,
        c,
        ingress_prefix: &ctx.settings.ingress_prefix,
        ingress_class: &ctx.settings.ingress_class,
    };
    match deref.router.finalize(&target).await {
        Ok(None) => Ok(()),
        Ok(Some(warning)) => {
            ctx.recorder
                .record(canary, EventType::Warning, &warning, ctx.now())
                .await;
            Ok(())
        }
        Err(e) => Err(FinalizeError::new(e.step_category(), e.message)),
    }
}

/// Releases the finalizer, with an event saying how the deletion ended.
async fn release(
    ctx: &Context,
    canary: &Canary,
    event_type: EventType,
    message: String,
) -> Result<Action, FinalizeError> {
    let ns = canary.namespace().unwrap_or_default();
    let name = canary.name_any();
    let finalizers: Vec<String> = canary
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    // At the version this finalization last wrote (its status), else the one it read.
    let (_, rv) = ctx.current_version(
        &kube::runtime::reflector::ObjectRef::from_obj(canary),
        canary,
    );
    Api::<Canary>::namespaced(ctx.client.clone(), &ns)
        .patch(
            &name,
            &merge_params(FIELD_MANAGER),
            &Patch::Merge(json!({"metadata": {"finalizers": finalizers, "resourceVersion": rv}})),
        )
        .await
        .map_err(|e| {
            FinalizeError::api(format!("releasing the finalizer of {name}.{ns} failed"), &e)
        })?;
    ctx.recorder
        .record(canary, event_type, &message, ctx.now())
        .await;
    Ok(Action::await_change())
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
) -> Result<serde_json::Value, kube::Error> {
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

/// Time since the deletion was asked for, never more than has really passed: the API server
/// keeps `deletionTimestamp` to the second (the fraction is cut off), so the deletion may have
/// been asked for up to a second after the stamp; counting from the end of that second keeps
/// the wait at least as long as its bound.
fn waited_since(
    deletion: k8s_openapi::jiff::Timestamp,
    now: k8s_openapi::jiff::Timestamp,
) -> Duration {
    let since = now.as_millisecond() - deletion.as_millisecond();
    let since = Duration::from_millis(since.try_into().unwrap_or(0));
    since.saturating_sub(Duration::from_secs(1))
}

#[cfg(test)]
mod waited_tests {
    use super::*;

    fn at(s: &str) -> k8s_openapi::jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_stamp_cut_to_the_second_never_counts_more_than_has_passed() {
        // Asked for at 52.9 s, stamped 52 s: 7.1 s later (at 00.0) only 7.1 s have passed.
        let asked = at("2026-12-04T15:21:52.9Z");
        let stamp = at("2026-12-04T15:21:52Z");
        let now = at("2026-12-04T15:22:00Z");
        let waited = waited_since(stamp, now);
        assert!(
            waited <= now.duration_since(asked).unsigned_abs(),
            "{waited:?}"
        );
        assert_eq!(waited, Duration::from_secs(7));
        // A clock behind the stamp counts nothing.
        assert_eq!(
            waited_since(stamp, at("2026-12-04T15:21:51Z")),
            Duration::ZERO
        );
    }
}
