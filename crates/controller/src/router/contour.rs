//! Contour (reference §4.7): the HTTPProxy `<apex>`, included by the user's root HTTPProxy;
//! `-ingress-class` becomes its `spec.ingressClassName`.

use flagger_core::effects::Routes;
use flagger_core::routing::{RoutingError, StickyCookies, contour};
use serde_json::Value;

use super::{Contested, Router, RouterError, Target, Weighted, dynamic_api};

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
fn proxy<'a>(
    t: &'a Target<'a>,
) -> Weighted<
    impl Fn(&Value) -> Result<Routes, RoutingError> + 'a,
    impl Fn(Routes) -> Result<Value, RoutingError> + 'a,
> {
    Weighted {
        api: dynamic_api(
            t.client,
            &t.c.namespace,
            contour::API_VERSION,
            "HTTPProxy",
            "httpproxies",
        ),
        kind: "HTTPProxy",
        name: t.c.apex.clone(),
        read: |p: &Value| contour::read_routes(t.c, p),
        build: |r| contour::http_proxy(t.c, r, t.ingress_class),
    }
}
