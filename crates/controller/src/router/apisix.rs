//! Apache APISIX (reference §4.11): the ApisixRoute `<routeRef>-<apex>-canary`, derived from
//! the user's route `routeRef` names, with the weights on its two backends.

use flagger_core::effects::Routes;
use flagger_core::routing::{StickyCookies, apisix};

use super::seam::CachedApi;
use super::seam::{Contested, Router, RouterError, Target, Weighted, dynamic_api, get_json};

/// The router of `apisix`.
pub struct Apisix;

impl Router for Apisix {
    /// Creates or corrects the canary route, keeping the weights.
    async fn reconcile(
        &self,
        t: &Target<'_>,
        _cookies: &StickyCookies,
        contested: &mut Vec<Contested>,
    ) -> Result<(), RouterError> {
        canary_route(t).await?.reconcile(t, contested).await
    }

    /// Reads the weights from the canary route.
    async fn get_routes(&self, t: &Target<'_>) -> Result<Routes, RouterError> {
        let name = apisix::canary_route_name(t.c, route_ref(t)?);
        let route = get_json(&routes_api(t), &name).await?.ok_or_else(|| {
            RouterError::transient(format!("apisix route {name}.{} not found", t.c.namespace))
        })?;
        apisix::read_routes(t.c, &route).map_err(RouterError::routing)
    }

    /// Rewrites the canary route with these weights.
    async fn set_routes(
        &self,
        t: &Target<'_>,
        routes: Routes,
        _cookies: &StickyCookies,
    ) -> Result<(), RouterError> {
        canary_route(t).await?.set_routes(t, routes).await
    }
}

/// The canary route `<routeRef>-<apex>-canary`, derived from the user's route.
async fn canary_route<'a>(t: &'a Target<'a>) -> Result<Weighted<'a>, RouterError> {
    let api = routes_api(t);
    let name = route_ref(t)?;
    let source = get_json(&api, name).await?.ok_or_else(|| {
        RouterError::invalid_spec(format!("APISIX route {name}.{} not found", t.c.namespace))
    })?;
    Ok(Weighted {
        api,
        kind: "ApisixRoute",
        name: apisix::canary_route_name(t.c, name),
        read: apisix::read_routes,
        build: Box::new(move |r| apisix::canary_route(t.c, &source, r)),
    })
}

fn route_ref<'a>(t: &Target<'a>) -> Result<&'a str, RouterError> {
    t.canary
        .spec
        .route_ref
        .as_ref()
        .map(|r| r.name.as_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| RouterError::invalid_spec("apisix route selector is empty"))
}

fn routes_api(t: &Target<'_>) -> CachedApi {
    dynamic_api(
        t,
        &t.c.namespace,
        apisix::API_VERSION,
        "ApisixRoute",
        "apisixroutes",
    )
}
