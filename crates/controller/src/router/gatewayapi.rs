//! Gateway API (reference §4.13): the HTTPRoute `<apex>` (`gateway.networking.k8s.io` v1 or
//! v1beta1, from the provider). Annotations other controllers add are kept (server-side apply
//! owns only ours).

use flagger_core::effects::Routes;
use flagger_core::routing::gatewayapi::{self, HttpRoute, Version};
use flagger_core::routing::{RoutingError, StickyCookies};
use serde_json::Value;

use super::seam::CachedApi;
use super::seam::{
    Contested, Router, RouterError, Target, dynamic_api, ensure, get_json, get_weights_object,
    to_json,
};

/// The router of `gatewayapi:v1` and `gatewayapi:v1beta1`.
pub struct GatewayApi;

impl Router for GatewayApi {
    fn sticky(&self) -> bool {
        true
    }

    /// Creates or corrects the HTTPRoute, keeping the weights.
    async fn reconcile(
        &self,
        t: &Target<'_>,
        cookies: &StickyCookies,
        contested: &mut Vec<Contested>,
    ) -> Result<(), RouterError> {
        let v = version(t)?;
        let api = routes_api(t, v);
        let existing = get_json(&api, &t.c.apex).await?;
        // Weights only: a parent not ready yet must not reset them.
        let routes = existing
            .as_ref()
            .and_then(|r| {
                let mut r = r.clone();
                r.as_object_mut().map(|o| o.remove("status"));
                read(t, v, &r).ok()
            })
            .unwrap_or(Routes::PRIMARY);
        write(t, v, &api, routes, cookies, existing.as_ref(), contested).await
    }

    /// Reads the weights from the HTTPRoute (v1: after checking its parents accepted it).
    async fn get_routes(&self, t: &Target<'_>) -> Result<Routes, RouterError> {
        let v = version(t)?;
        let route = get_weights_object(&routes_api(t, v), t, "HTTPRoute").await?;
        read(t, v, &route)
    }

    /// Rewrites the HTTPRoute with these weights.
    async fn set_routes(
        &self,
        t: &Target<'_>,
        routes: Routes,
        cookies: &StickyCookies,
    ) -> Result<(), RouterError> {
        let v = version(t)?;
        let api = routes_api(t, v);
        let existing = get_json(&api, &t.c.apex).await?;
        write(
            t,
            v,
            &api,
            routes,
            cookies,
            existing.as_ref(),
            &mut Vec::new(),
        )
        .await
    }
}

/// The HTTPRoute version of the canary's provider.
fn version(t: &Target<'_>) -> Result<Version, RouterError> {
    Version::of(t.c.provider).ok_or_else(|| {
        RouterError::invalid_spec(format!(
            "the {} provider is not a Gateway API one",
            t.c.provider
        ))
    })
}

fn routes_api(t: &Target<'_>, v: Version) -> CachedApi {
    dynamic_api(
        t,
        &t.c.namespace,
        v.api_version(),
        "HTTPRoute",
        "httproutes",
    )
}

fn read(t: &Target<'_>, v: Version, route: &Value) -> Result<Routes, RouterError> {
    let route: HttpRoute = serde_json::from_value(route.clone()).map_err(|e| {
        RouterError::routing(RoutingError::Decode(format!(
            "HTTPRoute {}.{} decode error: {e}",
            t.c.apex, t.c.namespace
        )))
    })?;
    gatewayapi::read_routes(t.c, v, &route).map_err(RouterError::routing)
}

async fn write(
    t: &Target<'_>,
    v: Version,
    api: &CachedApi,
    routes: Routes,
    cookies: &StickyCookies,
    existing: Option<&Value>,
    contested: &mut Vec<Contested>,
) -> Result<(), RouterError> {
    let route = gatewayapi::http_route(t.c, v, routes, cookies).map_err(RouterError::routing)?;
    let desired = to_json(&route, &t.c.apex)?;
    ensure(api, t, desired, existing, contested).await
}
