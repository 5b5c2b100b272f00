//! SMI (reference §4.4): the TrafficSplit `<apex>` of the provider's version (`linkerd`:
//! v1alpha1, `osm`: v1alpha2, `smi:<version>`).

use flagger_core::effects::Routes;
use flagger_core::model::SmiVersion;
use flagger_core::routing::{StickyCookies, smi};
use futures::future::BoxFuture;
use kube::Api;
use kube::api::DynamicObject;

use super::{Contested, Router, RouterError, Target, dynamic_api, ensure, get_json, reconciled};

/// The router of `linkerd`, `osm` and `smi:*`.
pub struct Smi;

impl Router for Smi {
    fn reconcile<'a>(
        &'a self,
        t: &'a Target<'a>,
        _cookies: &'a StickyCookies,
    ) -> BoxFuture<'a, Result<Vec<Contested>, RouterError>> {
        Box::pin(async move {
            let mut contested = Vec::new();
            let result = reconcile(t, &mut contested).await;
            reconciled(result, contested)
        })
    }

    fn get_routes<'a>(&'a self, t: &'a Target<'a>) -> BoxFuture<'a, Result<Routes, RouterError>> {
        Box::pin(get_routes(t))
    }

    fn set_routes<'a>(
        &'a self,
        t: &'a Target<'a>,
        routes: Routes,
        _cookies: &'a StickyCookies,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(set_routes(t, routes))
    }
}

/// The TrafficSplit version of the canary's provider.
fn version(t: &Target<'_>) -> Result<SmiVersion, RouterError> {
    smi::version(t.c.provider).ok_or_else(|| {
        RouterError::invalid_spec(format!("the {} provider is not an SMI one", t.c.provider))
    })
}

fn splits(t: &Target<'_>, v: SmiVersion) -> Api<DynamicObject> {
    dynamic_api(
        t.client,
        &t.c.namespace,
        smi::api_version(v),
        "TrafficSplit",
        "trafficsplits",
    )
}

/// Creates or corrects the TrafficSplit, keeping the weights.
async fn reconcile(t: &Target<'_>, contested: &mut Vec<Contested>) -> Result<(), RouterError> {
    let v = version(t)?;
    let api = splits(t, v);
    let existing = get_json(&api, &t.c.apex).await?;
    let routes = existing
        .as_ref()
        .and_then(|s| smi::read_routes(t.c, s).ok())
        .unwrap_or(Routes::PRIMARY);
    let desired = smi::traffic_split(t.c, v, routes);
    ensure(&api, t, desired, existing.as_ref(), contested).await
}

/// Rewrites the backends with these weights.
async fn set_routes(t: &Target<'_>, routes: Routes) -> Result<(), RouterError> {
    let v = version(t)?;
    let api = splits(t, v);
    let existing = get_json(&api, &t.c.apex).await?;
    let desired = smi::traffic_split(t.c, v, routes);
    ensure(&api, t, desired, existing.as_ref(), &mut Vec::new()).await
}

/// Reads the weights from the TrafficSplit.
async fn get_routes(t: &Target<'_>) -> Result<Routes, RouterError> {
    match get_json(&splits(t, version(t)?), &t.c.apex).await? {
        Some(split) => smi::read_routes(t.c, &split).map_err(RouterError::routing),
        None => Err(RouterError::transient(format!(
            "TrafficSplit {}.{} not found",
            t.c.apex, t.c.namespace
        ))),
    }
}
