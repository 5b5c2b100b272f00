//! Istio (reference §4.3): DestinationRules `<apex>-canary` / `<apex>-primary` and the
//! VirtualService `<apex>`.
//!
//! A VirtualService that exists before the canary (not the Canary's) is taken over: its spec
//! is replaced, and unless it carries kubectl's last-applied annotation its previous spec is
//! kept in `flagger.kubernetes.io/original-configuration`, from which `finalize` restores it.
//! Such a VirtualService gets no owner reference, so it is not garbage collected with the
//! Canary.

use flagger_api::labels::{LAST_APPLIED, ORIGINAL_CONFIGURATION};
use flagger_core::effects::Routes;
use flagger_core::routing::istio::{self, API_VERSION, VirtualService};
use flagger_core::routing::{RoutingError, StickyCookies};
use serde_json::Value;

use super::seam::CachedApi;
use super::seam::{
    Contested, Router, RouterError, Target, dynamic_api, ensure, get_json, get_weights_object,
    to_json,
};
use crate::owner::owned_by;

/// The router of `istio`.
pub struct Istio;

impl Router for Istio {
    fn sticky(&self) -> bool {
        true
    }

    /// Creates or corrects the DestinationRules and the VirtualService, keeping the weights.
    async fn reconcile(
        &self,
        t: &Target<'_>,
        cookies: &StickyCookies,
        contested: &mut Vec<Contested>,
    ) -> Result<(), RouterError> {
        let rules = destination_rules(t);
        for dr in istio::destination_rules(t.c) {
            let name = dr.metadata.name.clone().unwrap_or_default();
            let desired = to_json(&dr, &name)?;
            let existing = get_json(&rules, &name).await?;
            ensure(&rules, t, desired, existing.as_ref(), contested).await?;
        }
        let api = virtual_services(t);
        let existing = get_json(&api, &t.c.apex).await?;
        let routes = existing
            .as_ref()
            .and_then(|vs| read(t, vs).ok())
            .unwrap_or(Routes::PRIMARY);
        write(t, &api, routes, cookies, existing.as_ref(), contested).await
    }

    /// Reads the weights from the VirtualService.
    async fn get_routes(&self, t: &Target<'_>) -> Result<Routes, RouterError> {
        let vs = get_weights_object(&virtual_services(t), t, "VirtualService").await?;
        read(t, &vs)
    }

    /// Rewrites the VirtualService with these weights.
    async fn set_routes(
        &self,
        t: &Target<'_>,
        routes: Routes,
        cookies: &StickyCookies,
    ) -> Result<(), RouterError> {
        let api = virtual_services(t);
        let existing = get_json(&api, &t.c.apex).await?;
        write(t, &api, routes, cookies, existing.as_ref(), &mut Vec::new()).await
    }

    /// Restores a taken-over VirtualService's spec from kubectl's last-applied annotation, else
    /// from `flagger.kubernetes.io/original-configuration`. Returns a warning when neither exists.
    async fn finalize(&self, t: &Target<'_>) -> Result<Option<String>, RouterError> {
        let api = virtual_services(t);
        let Some(obj) = api.get_opt(&t.c.apex).await.map_err(|e| {
            RouterError::api(
                format!("VirtualService {}.{} query error", t.c.apex, t.c.namespace),
                &e,
            )
        })?
        else {
            return Ok(None);
        };
        // One the Canary made goes with it (garbage collection).
        if owned_by(obj.metadata.owner_references.as_ref(), t.canary) {
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
        api.replace(&t.c.apex, &crate::write::post_params(), &restored)
            .await
            .map_err(|e| {
                RouterError::api(
                    format!(
                        "VirtualService {}.{} restore failed",
                        t.c.apex, t.c.namespace
                    ),
                    &e,
                )
            })?;
        Ok(None)
    }
}

fn virtual_services(t: &Target<'_>) -> CachedApi {
    dynamic_api(
        t,
        &t.c.namespace,
        API_VERSION,
        "VirtualService",
        "virtualservices",
    )
}

fn destination_rules(t: &Target<'_>) -> CachedApi {
    dynamic_api(
        t,
        &t.c.namespace,
        API_VERSION,
        "DestinationRule",
        "destinationrules",
    )
}

fn read(t: &Target<'_>, vs: &Value) -> Result<Routes, RouterError> {
    let vs: VirtualService = serde_json::from_value(vs.clone()).map_err(|e| {
        RouterError::routing(RoutingError::Decode(format!(
            "VirtualService {}.{} decode error: {e}",
            t.c.apex, t.c.namespace
        )))
    })?;
    istio::read_routes(t.c, &vs).map_err(RouterError::routing)
}

async fn write(
    t: &Target<'_>,
    api: &CachedApi,
    routes: Routes,
    cookies: &StickyCookies,
    existing: Option<&Value>,
    contested: &mut Vec<Contested>,
) -> Result<(), RouterError> {
    let vs = istio::virtual_service(t.c, routes, cookies).map_err(RouterError::routing)?;
    let mut desired = to_json(&vs, &t.c.apex)?;
    if let Some(existing) = existing {
        let annotations = &existing["metadata"]["annotations"];
        let original = annotations[ORIGINAL_CONFIGURATION]
            .as_str()
            .map(String::from);
        let foreign = !super::seam::is_owned(existing, t.canary);
        let kept = match original {
            Some(o) => Some(o),
            // Taking over a VirtualService someone else made: remember its spec.
            None if foreign && annotations[LAST_APPLIED].is_null() => {
                Some(serde_json::to_string(&existing["spec"]).map_err(|e| {
                    RouterError::transient(format!("VirtualService {}: {e}", t.c.apex))
                })?)
            }
            None => None,
        };
        if let Some(o) = kept {
            desired["metadata"]["annotations"][ORIGINAL_CONFIGURATION] = Value::String(o);
        }
    }
    ensure(api, t, desired, existing, contested).await
}
