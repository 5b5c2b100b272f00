//! SMI (reference §4.4): the TrafficSplit `<apex>` of the provider's version (`linkerd`:
//! v1alpha1, `osm`: v1alpha2, `smi:<version>`).

use flagger_core::effects::Routes;
use flagger_core::model::SmiVersion;
use flagger_core::routing::{StickyCookies, smi};

use super::seam::CachedApi;
use super::seam::{
    Contested, Router, RouterError, Target, dynamic_api, ensure, get_json, get_weights_object,
};

/// The router of `linkerd`, `osm` and `smi:*`.
pub struct Smi;

impl Router for Smi {
    /// Creates or corrects the TrafficSplit, keeping the weights.
    async fn reconcile(
        &self,
        t: &Target<'_>,
        _cookies: &StickyCookies,
        contested: &mut Vec<Contested>,
    ) -> Result<(), RouterError> {
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

    /// Reads the weights from the TrafficSplit.
    async fn get_routes(&self, t: &Target<'_>) -> Result<Routes, RouterError> {
        let split = get_weights_object(&splits(t, version(t)?), t, "TrafficSplit").await?;
        smi::read_routes(t.c, &split).map_err(RouterError::routing)
    }

    /// Rewrites the backends with these weights.
    async fn set_routes(
        &self,
        t: &Target<'_>,
        routes: Routes,
        _cookies: &StickyCookies,
    ) -> Result<(), RouterError> {
        let v = version(t)?;
        let api = splits(t, v);
        let existing = get_json(&api, &t.c.apex).await?;
        let desired = smi::traffic_split(t.c, v, routes);
        ensure(&api, t, desired, existing.as_ref(), &mut Vec::new()).await
    }
}

/// The TrafficSplit version of the canary's provider.
fn version(t: &Target<'_>) -> Result<SmiVersion, RouterError> {
    smi::version(t.c.provider).ok_or_else(|| {
        RouterError::invalid_spec(format!("the {} provider is not an SMI one", t.c.provider))
    })
}

fn splits(t: &Target<'_>, v: SmiVersion) -> CachedApi {
    dynamic_api(
        t,
        &t.c.namespace,
        smi::api_version(v),
        "TrafficSplit",
        "trafficsplits",
    )
}
