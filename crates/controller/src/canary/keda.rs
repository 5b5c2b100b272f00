//! KEDA ScaledObjects (`autoscalerRef.kind: ScaledObject`): the `-primary` copy (built by
//! `flagger_core::keda`) and the pause annotation on the target's ScaledObject. Read and
//! written as dynamic objects, so the controller needs no KEDA types.

use flagger_api::Canary;
use flagger_core::keda::{self, MetadataRule};
use flagger_core::model::ValidatedCanary;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::Value;

use super::objects::{WriteError, merge_params, owner_ref};
use crate::context::Settings;
use crate::watched::{CachedApi, Objects};
use crate::write::FIELD_MANAGER;

fn resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("keda.sh", "v1alpha1", keda::KIND);
    ApiResource::from_gvk_with_plural(&gvk, keda::PLURAL)
}

fn api(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &resource())
}

/// ScaledObjects read through the watch caches (see [`crate::watched`]).
fn cached(objects: &Objects, namespace: &str) -> CachedApi {
    objects.namespaced(objects.client(), namespace, resource())
}

/// Reads a ScaledObject as JSON from the watch cache (`None` when missing).
async fn get_cached(
    objects: &Objects,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, WriteError> {
    cached(objects, namespace)
        .get_cached(name)
        .await
        .map_err(|e| {
            WriteError::api(
                format!("ScaledObject {name}.{namespace} get query error"),
                &e,
            )
        })?
        .map(|o| {
            serde_json::to_value(&*o)
                .map_err(|e| WriteError::invalid(format!("ScaledObject {name}.{namespace}: {e}")))
        })
        .transpose()
}

/// Reads a ScaledObject as JSON from the API server (`None` when missing).
pub async fn get(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, WriteError> {
    api(client, namespace)
        .get_opt(name)
        .await
        .map_err(|e| {
            WriteError::api(
                format!("ScaledObject {name}.{namespace} get query error"),
                &e,
            )
        })?
        .map(|o| {
            serde_json::to_value(o)
                .map_err(|e| WriteError::invalid(format!("ScaledObject {name}.{namespace}: {e}")))
        })
        .transpose()
}

/// Whether the primary ScaledObject exists.
pub async fn primary_exists(objects: &Objects, c: &ValidatedCanary) -> Result<bool, WriteError> {
    let Some(a) = &c.autoscaler else {
        return Ok(true);
    };
    Ok(get_cached(objects, &c.namespace, &keda::primary_name(a))
        .await?
        .is_some())
}

/// Creates (`MetadataRule::Create`) or updates the primary ScaledObject from the target's.
pub async fn write_primary(
    objects: &Objects,
    settings: &Settings,
    canary: &Canary,
    c: &ValidatedCanary,
    rule: MetadataRule,
) -> Result<(), WriteError> {
    let Some(a) = &c.autoscaler else {
        return Ok(());
    };
    let ns = &c.namespace;
    let target = get_cached(objects, ns, &a.name).await?.ok_or_else(|| {
        WriteError::transient(format!(
            "ScaledObject {}.{ns} get query error: not found",
            a.name
        ))
    })?;
    let mut primary = keda::primary_scaled_object(
        &target,
        a,
        &c.target.name,
        &c.primary_workload(),
        ns,
        &settings.labels,
        rule,
    );
    if let (Some(meta), Some(owner)) = (primary.get_mut("metadata"), owner_ref(canary)) {
        meta["ownerReferences"] = serde_json::json!([owner]);
    }
    let name = keda::primary_name(a);
    let api = cached(objects, ns);
    let written = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&primary),
        )
        .await
        .map_err(|e| WriteError::api(format!("writing ScaledObject {name}.{ns} failed"), &e))?;
    api.wrote(written);
    Ok(())
}

/// Pauses (`true`) or resumes the target's ScaledObject (`autoscaling.keda.sh/paused-replicas`),
/// under the field manager `manager`.
pub async fn set_paused(
    client: &Client,
    c: &ValidatedCanary,
    paused: bool,
    manager: &str,
) -> Result<(), WriteError> {
    let Some(a) = &c.autoscaler else {
        return Ok(());
    };
    let ns = &c.namespace;
    api(client, ns)
        .patch(
            &a.name,
            &merge_params(manager),
            &Patch::Merge(keda::pause_patch(paused)),
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            WriteError::api(
                format!(
                    "{} ScaledObject {}.{ns} failed",
                    if paused { "pausing" } else { "resuming" },
                    a.name
                ),
                &e,
            )
        })
}
