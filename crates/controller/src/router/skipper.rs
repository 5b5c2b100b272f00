//! Skipper (reference §4.9): the Ingress `<ingressRef.name>-canary`, cloned from the user's
//! Ingress, with the weights in its `zalando.org/backend-weights` annotation. Finalize deletes
//! it, so that the user's Ingress serves alone again.

use flagger_core::effects::Routes;
use flagger_core::routing::{StickyCookies, skipper};
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::api::DeleteParams;

use super::nginx::{current, ingress_name};
use super::seam::no_valid_weights;
use super::seam::{Contested, Router, RouterError, Target};
use crate::owner::{owned_by, owner_ref};

/// The router of `skipper`.
pub struct Skipper;

impl Router for Skipper {
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
            .and_then(|i| skipper::read_routes(t.c, i).ok())
            .unwrap_or(Routes::PRIMARY);
        write(t, &api, &source, existing.as_ref(), routes).await
    }

    /// Reads the weights from the canary Ingress.
    async fn get_routes(&self, t: &Target<'_>) -> Result<Routes, RouterError> {
        let (_, _, existing) = current(t).await?;
        let ingress = existing.ok_or_else(|| {
            RouterError::transient(format!(
                "ingress {}-canary.{} not found",
                ingress_name(t).unwrap_or_default(),
                t.c.namespace
            ))
        })?;
        skipper::read_routes(t.c, &ingress).map_err(RouterError::routing)
    }

    /// Writes the weights (and the predicate that turns the canary routes on or off).
    async fn set_routes(
        &self,
        t: &Target<'_>,
        routes: Routes,
        _cookies: &StickyCookies,
    ) -> Result<(), RouterError> {
        no_valid_weights(t, "Ingress", routes)?;
        let (api, source, existing) = current(t).await?;
        write(t, &api, &source, existing.as_ref(), routes).await
    }

    /// Deletes the canary Ingress (grace period 2s, as Flagger).
    async fn finalize(&self, t: &Target<'_>) -> Result<Option<String>, RouterError> {
        let name = format!("{}-canary", ingress_name(t)?);
        let api: Api<Ingress> = Api::namespaced(t.client.clone(), &t.c.namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(2),
            ..Default::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(RouterError::api(
                format!(
                    "ingress {name}.{} unable to remove canary ingress",
                    t.c.namespace
                ),
                &e,
            )),
        }
    }
}

async fn write(
    t: &Target<'_>,
    api: &super::seam::CachedApi,
    source: &Ingress,
    existing: Option<&Ingress>,
    routes: Routes,
) -> Result<(), RouterError> {
    let mut desired = skipper::canary_ingress(t.c, source, routes).map_err(RouterError::routing)?;
    if existing.is_none_or(|e| owned_by(e.metadata.owner_references.as_ref(), t.canary)) {
        desired.metadata.owner_references = owner_ref(t.canary).map(|o| vec![o]);
    }
    if let Some(e) = existing {
        let have = e.metadata.annotations.clone().unwrap_or_default();
        let annotations_kept = desired
            .metadata
            .annotations
            .iter()
            .flatten()
            .all(|(k, v)| have.get(k) == Some(v));
        if e.spec == desired.spec && annotations_kept {
            return Ok(());
        }
    }
    super::nginx::apply(api, t, &desired).await
}
