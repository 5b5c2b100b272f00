//! Istio (reference §4.3): DestinationRules `<apex>-canary` / `<apex>-primary` and the
//! VirtualService `<apex>`.
//!
//! A VirtualService that exists before the canary (not the Canary's) is taken over: its spec
//! is replaced, and unless it carries kubectl's last-applied annotation its previous spec is
//! kept in `flagger.kubernetes.io/original-configuration`, from which [`finalize`] restores it.
//! Such a VirtualService gets no owner reference, so it is not garbage collected with the
//! Canary.

use flagger_api::labels::{LAST_APPLIED, ORIGINAL_CONFIGURATION};
use flagger_core::effects::Routes;
use flagger_core::routing::istio::{self, API_VERSION, VirtualService};
use kube::Api;
use kube::api::{DynamicObject, PostParams};
use serde_json::Value;

use super::{Contested, Target, dynamic_api, ensure, get_json};

fn virtual_services(t: &Target<'_>) -> Api<DynamicObject> {
    dynamic_api(
        t.client,
        &t.c.namespace,
        API_VERSION,
        "VirtualService",
        "virtualservices",
    )
}

fn destination_rules(t: &Target<'_>) -> Api<DynamicObject> {
    dynamic_api(
        t.client,
        &t.c.namespace,
        API_VERSION,
        "DestinationRule",
        "destinationrules",
    )
}

fn read(t: &Target<'_>, vs: &Value) -> Result<Routes, String> {
    let vs: VirtualService = serde_json::from_value(vs.clone()).map_err(|e| {
        format!(
            "VirtualService {}.{} decode error: {e}",
            t.c.apex, t.c.namespace
        )
    })?;
    istio::read_routes(t.c, &vs).map_err(|e| e.to_string())
}

/// Creates or corrects the DestinationRules and the VirtualService, keeping the weights.
pub async fn reconcile(t: &Target<'_>) -> Result<Vec<Contested>, String> {
    let rules = destination_rules(t);
    let mut contested = Vec::new();
    for dr in istio::destination_rules(t.c) {
        let name = dr.metadata.name.clone().unwrap_or_default();
        let desired = serde_json::to_value(&dr).map_err(|e| e.to_string())?;
        let existing = get_json(&rules, &name).await?;
        contested.extend(ensure(&rules, t, desired, existing.as_ref()).await?);
    }
    let api = virtual_services(t);
    let existing = get_json(&api, &t.c.apex).await?;
    let routes = existing
        .as_ref()
        .and_then(|vs| read(t, vs).ok())
        .unwrap_or(Routes::PRIMARY);
    contested.extend(write(t, &api, routes, existing.as_ref()).await?);
    Ok(contested)
}

/// Rewrites the VirtualService with these weights.
pub async fn set_routes(t: &Target<'_>, routes: Routes) -> Result<(), String> {
    let api = virtual_services(t);
    let existing = get_json(&api, &t.c.apex).await?;
    write(t, &api, routes, existing.as_ref()).await.map(|_| ())
}

/// Reads the weights from the VirtualService.
pub async fn get_routes(t: &Target<'_>) -> Result<Routes, String> {
    let api = virtual_services(t);
    match get_json(&api, &t.c.apex).await? {
        Some(vs) => read(t, &vs),
        None => Err(format!(
            "VirtualService {}.{} not found",
            t.c.apex, t.c.namespace
        )),
    }
}

async fn write(
    t: &Target<'_>,
    api: &Api<DynamicObject>,
    routes: Routes,
    existing: Option<&Value>,
) -> Result<Vec<Contested>, String> {
    let vs = istio::virtual_service(t.c, routes, &t.cookies).map_err(|e| e.to_string())?;
    let mut desired = serde_json::to_value(&vs).map_err(|e| e.to_string())?;
    if let Some(existing) = existing {
        let annotations = &existing["metadata"]["annotations"];
        let original = annotations[ORIGINAL_CONFIGURATION]
            .as_str()
            .map(String::from);
        let foreign = !super::is_owned(existing, t.canary);
        let kept = match original {
            Some(o) => Some(o),
            // Taking over a VirtualService someone else made: remember its spec.
            None if foreign && annotations[LAST_APPLIED].is_null() => {
                Some(serde_json::to_string(&existing["spec"]).map_err(|e| e.to_string())?)
            }
            None => None,
        };
        if let Some(o) = kept {
            desired["metadata"]["annotations"][ORIGINAL_CONFIGURATION] = Value::String(o);
        }
    }
    ensure(api, t, desired, existing).await
}

/// Restores a taken-over VirtualService's spec from kubectl's last-applied annotation, else
/// from `flagger.kubernetes.io/original-configuration`. Returns a warning when neither exists.
pub async fn finalize(t: &Target<'_>) -> Result<Option<String>, String> {
    let api = virtual_services(t);
    let Some(obj) = api.get_opt(&t.c.apex).await.map_err(|e| {
        format!(
            "VirtualService {}.{} query error: {e}",
            t.c.apex, t.c.namespace
        )
    })?
    else {
        return Ok(None);
    };
    // One the Canary made goes with it (garbage collection).
    if crate::canary::objects::owned_by(obj.metadata.owner_references.as_ref(), t.canary) {
        return Ok(None);
    }
    let annotations = obj.metadata.annotations.clone().unwrap_or_default();
    let original: Option<Value> = if let Some(last) = annotations.get(LAST_APPLIED) {
        serde_json::from_str::<Value>(last)
            .ok()
            .map(|v| v["spec"].clone())
    } else {
        annotations
            .get(ORIGINAL_CONFIGURATION)
            .and_then(|o| serde_json::from_str(o).ok())
    };
    let Some(spec) = original.filter(|s| !s.is_null()) else {
        return Ok(Some(format!(
            "VirtualService {}.{} original configuration not found, unable to revert",
            t.c.apex, t.c.namespace
        )));
    };
    let mut restored = obj.clone();
    restored.data["spec"] = spec;
    restored.metadata.managed_fields = None;
    if let Some(a) = restored.metadata.annotations.as_mut() {
        a.remove(ORIGINAL_CONFIGURATION);
    }
    let params = PostParams {
        field_manager: Some(crate::FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.replace(&t.c.apex, &params, &restored)
        .await
        .map_err(|e| {
            format!(
                "VirtualService {}.{} restore failed: {e}",
                t.c.apex, t.c.namespace
            )
        })?;
    Ok(None)
}
