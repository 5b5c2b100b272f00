//! NGINX Ingress (reference §4.6): the Ingress `<ingressRef.name>-canary`, cloned from the
//! user's Ingress, with the weights in `<prefix>/canary-*` annotations (`-ingress-annotations-prefix`,
//! default `nginx.ingress.kubernetes.io`).

use flagger_core::effects::Routes;
use flagger_core::routing::{StickyCookies, nginx};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ApiResource, Patch, PatchParams};

use super::seam::{CachedApi, Contested, Router, RouterError, Target};
use crate::owner::{owned_by, owner_ref};
use crate::write::FIELD_MANAGER;

/// The router of `nginx`.
pub struct Nginx;

impl Router for Nginx {
    /// Creates or corrects the canary Ingress, keeping the weights.
    async fn reconcile(
        &self,
        t: &Target<'_>,
        _cookies: &StickyCookies,
        _contested: &mut Vec<Contested>,
    ) -> Result<(), RouterError> {
        let (api, source, existing) = current(t).await?;
        let routes = existing
            .as_ref()
            .and_then(|i| nginx::read_routes(t.c, i, t.ingress_prefix).ok())
            .unwrap_or(Routes::PRIMARY);
        write(t, &api, &source, existing.as_ref(), routes).await
    }

    /// Reads the weights from the canary Ingress.
    async fn get_routes(&self, t: &Target<'_>) -> Result<Routes, RouterError> {
        let (_, _, existing) = current(t).await?;
        let name = format!("{}-canary", ingress_name(t)?);
        let ingress = existing.ok_or_else(|| {
            RouterError::transient(format!("ingress {name}.{} not found", t.c.namespace))
        })?;
        nginx::read_routes(t.c, &ingress, t.ingress_prefix).map_err(RouterError::routing)
    }

    /// Writes the weight (or the A/B header and cookie annotations).
    async fn set_routes(
        &self,
        t: &Target<'_>,
        routes: Routes,
        _cookies: &StickyCookies,
    ) -> Result<(), RouterError> {
        let (api, source, existing) = current(t).await?;
        write(t, &api, &source, existing.as_ref(), routes).await
    }
}

pub(super) fn ingress_name(t: &Target<'_>) -> Result<String, RouterError> {
    t.canary
        .spec
        .ingress_ref
        .as_ref()
        .map(|r| r.name.clone())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| RouterError::invalid_spec("ingress selector is empty"))
}

async fn get(api: &CachedApi, name: &str, ns: &str) -> Result<Option<Ingress>, RouterError> {
    let found = api
        .get_cached(name)
        .await
        .map_err(|e| RouterError::api(format!("ingress {name}.{ns} query error"), &e))?;
    found
        .map(|o| {
            serde_json::to_value(&*o)
                .and_then(serde_json::from_value)
                .map_err(|e| RouterError::transient(format!("ingress {name}.{ns}: {e}")))
        })
        .transpose()
}

/// The user's Ingress and the canary Ingress as it is (`None` when missing).
pub(super) async fn current(
    t: &Target<'_>,
) -> Result<(CachedApi, Ingress, Option<Ingress>), RouterError> {
    let ns = &t.c.namespace;
    let api = t
        .objects
        .namespaced(t.client, ns, ApiResource::erase::<Ingress>(&()));
    let source_name = ingress_name(t)?;
    let source = get(&api, &source_name, ns).await?.ok_or_else(|| {
        RouterError::invalid_spec(format!("ingress {source_name}.{ns} not found"))
    })?;
    let canary = get(&api, &format!("{source_name}-canary"), ns).await?;
    Ok((api, source, canary))
}

async fn write(
    t: &Target<'_>,
    api: &CachedApi,
    source: &Ingress,
    existing: Option<&Ingress>,
    routes: Routes,
) -> Result<(), RouterError> {
    let mut desired = nginx::canary_ingress(t.c, source, routes, t.ingress_prefix)
        .map_err(RouterError::routing)?;
    let adopt = existing.is_none_or(|e| owned_by(e.metadata.owner_references.as_ref(), t.canary));
    if adopt {
        desired.metadata.owner_references = owner_ref(t.canary).map(|o| vec![o]);
    }
    if let Some(e) = existing {
        let annotations_kept = desired
            .metadata
            .annotations
            .iter()
            .flatten()
            .all(|(k, v)| e.metadata.annotations.as_ref().and_then(|a| a.get(k)) == Some(v));
        let stale_keys = e.metadata.annotations.iter().flatten().any(|(k, _)| {
            k.starts_with(&format!("{}/canary", t.ingress_prefix))
                && !desired
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(k))
        });
        if e.spec == desired.spec && annotations_kept && !stale_keys {
            return Ok(());
        }
    }
    apply(api, t, &desired).await
}

/// Server-side applies the canary Ingress `desired`.
pub(super) async fn apply(
    api: &CachedApi,
    t: &Target<'_>,
    desired: &Ingress,
) -> Result<(), RouterError> {
    let name = desired.metadata.name.clone().unwrap_or_default();
    let written = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(desired),
        )
        .await
        .map_err(|e| {
            RouterError::api(format!("ingress {name}.{} apply failed", t.c.namespace), &e)
        })?;
    api.wrote(written);
    Ok(())
}
