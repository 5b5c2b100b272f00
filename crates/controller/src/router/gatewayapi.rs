//! Gateway API (reference §4.13): the HTTPRoute `<apex>` (`gateway.networking.k8s.io` v1 or
//! v1beta1). Annotations other controllers add are kept (server-side apply owns only ours).

use flagger_core::effects::Routes;
use flagger_core::routing::gatewayapi::{self, HttpRoute, Version};
use kube::Api;
use kube::api::DynamicObject;
use serde_json::Value;

use super::{Contested, Target, dynamic_api, ensure, get_json};

fn routes_api(t: &Target<'_>, v: Version) -> Api<DynamicObject> {
    dynamic_api(
        t.client,
        &t.c.namespace,
        v.api_version(),
        "HTTPRoute",
        "httproutes",
    )
}

fn read(t: &Target<'_>, v: Version, route: &Value) -> Result<Routes, String> {
    let route: HttpRoute = serde_json::from_value(route.clone())
        .map_err(|e| format!("HTTPRoute {}.{} decode error: {e}", t.c.apex, t.c.namespace))?;
    gatewayapi::read_routes(t.c, v, &route).map_err(|e| e.to_string())
}

async fn write(
    t: &Target<'_>,
    v: Version,
    api: &Api<DynamicObject>,
    routes: Routes,
    existing: Option<&Value>,
) -> Result<Vec<Contested>, String> {
    let route = gatewayapi::http_route(t.c, v, routes, &t.cookies).map_err(|e| e.to_string())?;
    let desired = serde_json::to_value(&route).map_err(|e| e.to_string())?;
    ensure(api, t, desired, existing).await
}

/// Creates or corrects the HTTPRoute, keeping the weights.
pub async fn reconcile(t: &Target<'_>, v: Version) -> Result<Vec<Contested>, String> {
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
    write(t, v, &api, routes, existing.as_ref()).await
}

/// Rewrites the HTTPRoute with these weights.
pub async fn set_routes(t: &Target<'_>, v: Version, routes: Routes) -> Result<(), String> {
    let api = routes_api(t, v);
    let existing = get_json(&api, &t.c.apex).await?;
    write(t, v, &api, routes, existing.as_ref())
        .await
        .map(|_| ())
}

/// Reads the weights from the HTTPRoute (v1: after checking its parents accepted it).
pub async fn get_routes(t: &Target<'_>, v: Version) -> Result<Routes, String> {
    match get_json(&routes_api(t, v), &t.c.apex).await? {
        Some(route) => read(t, v, &route),
        None => Err(format!(
            "HTTPRoute {}.{} not found",
            t.c.apex, t.c.namespace
        )),
    }
}
