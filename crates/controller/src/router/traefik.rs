//! Traefik (reference §4.10): the TraefikService `<apex>` the user's IngressRoute names, in
//! `traefik.io/v1alpha1`, or in the older `traefik.containo.us/v1alpha1` on a cluster that
//! serves only that one (Traefik before v2.10, Flagger before 1.32).

use flagger_core::effects::Routes;
use flagger_core::routing::{StickyCookies, traefik};

use super::seam::{Contested, Router, RouterError, Target, Weighted};

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
        service(t).await.reconcile(t, contested).await
    }

    /// Reads the weights from the TraefikService.
    async fn get_routes(&self, t: &Target<'_>) -> Result<Routes, RouterError> {
        service(t).await.get_routes(t).await
    }

    /// Rewrites the weighted services.
    async fn set_routes(
        &self,
        t: &Target<'_>,
        routes: Routes,
        _cookies: &StickyCookies,
    ) -> Result<(), RouterError> {
        service(t).await.set_routes(t, routes).await
    }
}

/// The TraefikService `<apex>`, in the API version the cluster serves.
async fn service<'a>(t: &'a Target<'a>) -> Weighted<'a> {
    let version = api_version(t).await;
    Weighted::at_apex(
        t,
        (version, "TraefikService", "traefikservices"),
        traefik::read_routes,
        move |r| Ok(traefik::traefik_service(t.c, r, version)),
    )
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
