//! Kuma (reference §4.12): the cluster-scoped TrafficRoute `<apex>` (`kuma.io/v1alpha1`) in
//! the mesh of the Canary's `kuma.io/mesh` annotation. A namespaced Canary cannot own a
//! cluster-scoped object, so it carries no owner reference and stays when the Canary goes, as
//! in Flagger.

use flagger_core::effects::Routes;
use flagger_core::routing::{StickyCookies, kuma};

use super::seam::CachedApi;
use super::seam::{
    Contested, Router, RouterError, Target, ensure_with, get_json, get_weights_object,
};

/// The router of `kuma`.
pub struct Kuma;

impl Router for Kuma {
    /// Creates or corrects the TrafficRoute, keeping the weights.
    async fn reconcile(
        &self,
        t: &Target<'_>,
        _cookies: &StickyCookies,
        contested: &mut Vec<Contested>,
    ) -> Result<(), RouterError> {
        let api = routes(t);
        let existing = get_json(&api, &t.c.apex).await?;
        let routes = existing
            .as_ref()
            .and_then(|r| kuma::read_routes(t.c, r).ok())
            .unwrap_or(Routes::PRIMARY);
        write(t, &api, routes, existing.as_ref(), contested).await
    }

    /// Reads the weights from the TrafficRoute.
    async fn get_routes(&self, t: &Target<'_>) -> Result<Routes, RouterError> {
        let route = get_weights_object(&routes(t), t, "TrafficRoute").await?;
        kuma::read_routes(t.c, &route).map_err(RouterError::routing)
    }

    /// Rewrites the split with these weights.
    async fn set_routes(
        &self,
        t: &Target<'_>,
        routes_: Routes,
        _cookies: &StickyCookies,
    ) -> Result<(), RouterError> {
        let api = routes(t);
        let existing = get_json(&api, &t.c.apex).await?;
        write(t, &api, routes_, existing.as_ref(), &mut Vec::new()).await
    }
}

/// TrafficRoutes, cluster-scoped.
fn routes(t: &Target<'_>) -> CachedApi {
    t.objects.cluster(
        t.client,
        CachedApi::resource("kuma.io/v1alpha1", "TrafficRoute", "trafficroutes"),
    )
}

async fn write(
    t: &Target<'_>,
    api: &CachedApi,
    routes: Routes,
    existing: Option<&serde_json::Value>,
    contested: &mut Vec<Contested>,
) -> Result<(), RouterError> {
    let mesh = kuma::mesh_of(t.canary.metadata.annotations.as_ref());
    let desired = kuma::traffic_route(t.c, &mesh, routes);
    ensure_with(api, t, desired, existing, contested, false).await
}
