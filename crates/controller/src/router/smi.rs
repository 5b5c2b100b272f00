//! SMI (reference §4.4): the TrafficSplit `<apex>` of the provider's version (`linkerd`:
//! v1alpha1, `osm`: v1alpha2, `smi:<version>`).

use flagger_core::effects::Routes;
use flagger_core::model::SmiVersion;
use flagger_core::routing::smi;
use kube::Api;
use kube::api::DynamicObject;

use super::{Contested, Target, dynamic_api, ensure, get_json};

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
pub async fn reconcile(t: &Target<'_>, v: SmiVersion) -> Result<Vec<Contested>, String> {
    let api = splits(t, v);
    let existing = get_json(&api, &t.c.apex).await?;
    let routes = existing
        .as_ref()
        .and_then(|s| smi::read_routes(t.c, s).ok())
        .unwrap_or(Routes::PRIMARY);
    let desired = smi::traffic_split(t.c, v, routes);
    ensure(&api, t, desired, existing.as_ref()).await
}

/// Rewrites the backends with these weights.
pub async fn set_routes(t: &Target<'_>, v: SmiVersion, routes: Routes) -> Result<(), String> {
    let api = splits(t, v);
    let existing = get_json(&api, &t.c.apex).await?;
    let desired = smi::traffic_split(t.c, v, routes);
    ensure(&api, t, desired, existing.as_ref())
        .await
        .map(|_| ())
}

/// Reads the weights from the TrafficSplit.
pub async fn get_routes(t: &Target<'_>, v: SmiVersion) -> Result<Routes, String> {
    match get_json(&splits(t, v), &t.c.apex).await? {
        Some(split) => smi::read_routes(t.c, &split).map_err(|e| e.to_string()),
        None => Err(format!(
            "TrafficSplit {}.{} not found",
            t.c.apex, t.c.namespace
        )),
    }
}
