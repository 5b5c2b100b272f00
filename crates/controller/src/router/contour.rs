//! Contour (reference §4.7): the HTTPProxy `<apex>`, included by the user's root HTTPProxy;
//! `-ingress-class` becomes its `spec.ingressClassName`.

use flagger_core::effects::Routes;
use flagger_core::routing::{StickyCookies, contour};

use super::CachedApi;
use super::{
    Contested, Router, RouterError, Target, dynamic_api, get_weights_object, write_weighted,
};

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
        write(t, None, contested).await
    }

    /// Reads the weights from the HTTPProxy.
    async fn get_routes(&self, t: &Target<'_>) -> Result<Routes, RouterError> {
        let proxy = get_weights_object(&proxies(t), t, "HTTPProxy").await?;
        contour::read_routes(t.c, &proxy).map_err(RouterError::routing)
    }

    /// Rewrites the HTTPProxy with these weights.
    async fn set_routes(
        &self,
        t: &Target<'_>,
        routes: Routes,
        _cookies: &StickyCookies,
    ) -> Result<(), RouterError> {
        no_valid_weights(t, "HTTPProxy", routes)?;
        write(t, Some(routes), &mut Vec::new()).await
    }
}

/// Writes the HTTPProxy with `routes`, or keeping its weights.
async fn write(
    t: &Target<'_>,
    routes: Option<Routes>,
    contested: &mut Vec<Contested>,
) -> Result<(), RouterError> {
    write_weighted(
        &proxies(t),
        t,
        &t.c.apex,
        routes,
        |p| contour::read_routes(t.c, p),
        |r| contour::http_proxy(t.c, r, t.ingress_class),
        contested,
    )
    .await
}

/// Flagger's ingress routers refuse to write 0/0.
pub(crate) fn no_valid_weights(
    t: &Target<'_>,
    kind: &str,
    routes: Routes,
) -> Result<(), RouterError> {
    if routes.primary == 0 && routes.canary == 0 {
        return Err(RouterError::invalid_spec(format!(
            "{kind} {}.{} update failed: no valid weights",
            t.c.apex, t.c.namespace
        )));
    }
    Ok(())
}

fn proxies(t: &Target<'_>) -> CachedApi {
    dynamic_api(
        t,
        &t.c.namespace,
        contour::API_VERSION,
        "HTTPProxy",
        "httpproxies",
    )
}
