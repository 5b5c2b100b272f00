//! Contour (reference §4.7): the HTTPProxy `<apex>`, included by the user's root HTTPProxy;
//! `-ingress-class` becomes its `spec.ingressClassName`.

use flagger_core::effects::Routes;
use flagger_core::routing::{StickyCookies, contour};

use super::seam::{Contested, Router, RouterError, Target, Weighted};

/// The router of `contour`.
pub struct Contour;

impl Router for Contour {
    /// Creates or corrects the HTTPProxy, keeping the weights.
    async fn reconcile(
        &self,
        t: &Target<'_>,
        _cookies: &StickyCookies,
        contested: &mut Vec<Contested>,
    ) -> Result<(), RouterError> {
        proxy(t).reconcile(t, contested).await
    }

    /// Reads the weights from the HTTPProxy.
    async fn get_routes(&self, t: &Target<'_>) -> Result<Routes, RouterError> {
        proxy(t).get_routes(t).await
    }

    /// Rewrites the HTTPProxy with these weights.
    async fn set_routes(
        &self,
        t: &Target<'_>,
        routes: Routes,
        _cookies: &StickyCookies,
    ) -> Result<(), RouterError> {
        proxy(t).set_routes(t, routes).await
    }
}

/// The HTTPProxy `<apex>`.
fn proxy<'a>(t: &'a Target<'a>) -> Weighted<'a> {
    Weighted::at_apex(
        t,
        (contour::API_VERSION, "HTTPProxy", "httpproxies"),
        contour::read_routes,
        |r| contour::http_proxy(t.c, r, t.ingress_class),
    )
}
