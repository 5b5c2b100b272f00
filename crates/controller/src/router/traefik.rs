//! Traefik (reference §4.10): the TraefikService `<apex>` the user's IngressRoute names, in
//! `traefik.io/v1alpha1`, or in the older `traefik.containo.us/v1alpha1` on a cluster that
//! serves only that one (Traefik before v2.10, Flagger before 1.32).

use flagger_core::effects::Routes;
use flagger_core::routing::{StickyCookies, traefik};

use super::CachedApi;
use super::contour::no_valid_weights;
use super::{
    Contested, Router, RouterError, Target, dynamic_api, get_weights_object, write_weighted,
};

/// The router of `traefik`.
pub struct Traefik;

impl Router for Traefik {
    /// Creates or corrects the TraefikService, keeping the weights.
    async fn reconcile(
        &self,
        t: &Target<'_>,
        _cookies: &StickyCookies,
        contested: &mut Vec<Contested>,
    ) -> Result<(), RouterError> {
        write(t, None, contested).await
    }

    /// Reads the weights from the TraefikService.
    async fn get_routes(&self, t: &Target<'_>) -> Result<Routes, RouterError> {
        let api = services(t, api_version(t).await);
        let ts = get_weights_object(&api, t, "TraefikService").await?;
        traefik::read_routes(t.c, &ts).map_err(RouterError::routing)
    }

    /// Rewrites the weighted services.
    async fn set_routes(
        &self,
        t: &Target<'_>,
        routes: Routes,
        _cookies: &StickyCookies,
    ) -> Result<(), RouterError> {
        no_valid_weights(t, "TraefikService", routes)?;
        write(t, Some(routes), &mut Vec::new()).await
    }
}

/// Writes the TraefikService with `routes`, or keeping its weights.
async fn write(
    t: &Target<'_>,
    routes: Option<Routes>,
    contested: &mut Vec<Contested>,
) -> Result<(), RouterError> {
    let version = api_version(t).await;
    write_weighted(
        &services(t, version),
        t,
        &t.c.apex,
        routes,
        |s| traefik::read_routes(t.c, s),
        |r| Ok(traefik::traefik_service(t.c, r, version)),
        contested,
    )
    .await
}

/// `traefik.io/v1alpha1`, unless the cluster serves TraefikServices only in the legacy group.
async fn api_version(t: &Target<'_>) -> &'static str {
    let serves = |version: &'static str| async move {
        t.client
            .list_api_group_resources(version)
            .await
            .is_ok_and(|l| l.resources.iter().any(|r| r.name == "traefikservices"))
    };
    if !serves(traefik::API_VERSION).await && serves(traefik::LEGACY_API_VERSION).await {
        traefik::LEGACY_API_VERSION
    } else {
        traefik::API_VERSION
    }
}

fn services(t: &Target<'_>, version: &str) -> CachedApi {
    dynamic_api(
        t,
        &t.c.namespace,
        version,
        "TraefikService",
        "traefikservices",
    )
}
