//! AWS App Mesh (reference §4.5): the virtual nodes, virtual routers and virtual services of
//! `appmesh` (`appmesh.k8s.aws/v1beta1`) and `appmesh:v1beta2`, built by
//! [`flagger_core::routing::appmesh`]. App Mesh reached its end of support upstream; this
//! router follows Flagger's for the users who still run it.
//!
//! The v1beta2 virtual nodes select the pods by the target's selector label, read from the
//! target's selector (the first of Flagger's default selector labels it has).

use flagger_api::labels::DEFAULT_SELECTOR_LABELS;
use flagger_core::effects::Routes;
use flagger_core::model::TargetKind;
use flagger_core::routing::StickyCookies;
use flagger_core::routing::appmesh::{self, ACCESS_LOG_ANNOTATION, Options, Version};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use super::seam::CachedApi;
use super::seam::{
    Contested, Router, RouterError, Target, dynamic_api, ensure, get_json, get_weights_object,
};

/// The router of `appmesh` and `appmesh:v1beta2`.
pub struct AppMesh;

impl Router for AppMesh {
    /// Creates or corrects every object, keeping the weights of the apex routes.
    async fn reconcile(
        &self,
        t: &Target<'_>,
        _cookies: &StickyCookies,
        contested: &mut Vec<Contested>,
    ) -> Result<(), RouterError> {
        let v = version(t)?;
        let (kind, name) = appmesh::weights_object(t.c, v);
        let routes = get_json(&api(t, v, kind), &name)
            .await?
            .and_then(|o| appmesh::read_routes(t.c, v, &o).ok())
            .unwrap_or(Routes::PRIMARY);
        let selector_label = match v {
            Version::V1Beta1 => String::new(),
            Version::V1Beta2 => selector_label(t).await?,
        };
        let opts = Options {
            access_log: access_log(t),
            selector_label: &selector_label,
        };
        let objects = appmesh::objects(t.c, v, opts, routes).map_err(RouterError::routing)?;
        for desired in objects {
            write(t, v, desired, contested).await?;
        }
        Ok(())
    }

    /// Reads the weights from the apex routes.
    async fn get_routes(&self, t: &Target<'_>) -> Result<Routes, RouterError> {
        let v = version(t)?;
        let (kind, name) = appmesh::weights_object(t.c, v);
        let api = api(t, v, kind);
        let object = match v {
            Version::V1Beta2 => get_weights_object(&api, t, kind).await?,
            Version::V1Beta1 => get_json(&api, &name)
                .await?
                .ok_or_else(|| RouterError::transient(format!("{kind} {name} not found")))?,
        };
        appmesh::read_routes(t.c, v, &object).map_err(RouterError::routing)
    }

    /// Rewrites the apex routes with these weights.
    async fn set_routes(
        &self,
        t: &Target<'_>,
        routes: Routes,
        _cookies: &StickyCookies,
    ) -> Result<(), RouterError> {
        let v = version(t)?;
        let (kind, name) = appmesh::weights_object(t.c, v);
        // Only the weights object is written: the nodes' selector is not needed.
        let opts = Options {
            access_log: access_log(t),
            selector_label: "",
        };
        let desired = appmesh::objects(t.c, v, opts, routes)
            .map_err(RouterError::routing)?
            .into_iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name.as_str())
            .ok_or_else(|| RouterError::transient(format!("{kind} {name} not built")))?;
        write(t, v, desired, &mut Vec::new()).await
    }
}

/// The App Mesh version of the canary's provider.
fn version(t: &Target<'_>) -> Result<Version, RouterError> {
    Version::of(t.c.provider).ok_or_else(|| {
        RouterError::invalid_spec(format!(
            "the {} provider is not an App Mesh one",
            t.c.provider
        ))
    })
}

fn api(t: &Target<'_>, v: Version, kind: &str) -> CachedApi {
    let plural = match kind {
        "VirtualNode" => "virtualnodes",
        "VirtualRouter" => "virtualrouters",
        _ => "virtualservices",
    };
    dynamic_api(t, &t.c.namespace, v.api_version(), kind, plural)
}

/// Whether the Canary asks for the virtual nodes' access log.
fn access_log(t: &Target<'_>) -> bool {
    t.canary
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ACCESS_LOG_ANNOTATION))
        .is_some_and(|v| v == "enabled")
}

/// Applies one object, compared with what is stored under its name.
async fn write(
    t: &Target<'_>,
    v: Version,
    desired: Value,
    contested: &mut Vec<Contested>,
) -> Result<(), RouterError> {
    let kind = desired["kind"].as_str().unwrap_or_default().to_string();
    let name = desired["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let api = api(t, v, &kind);
    let existing = get_json(&api, &name).await?;
    ensure(&api, t, desired, existing.as_ref(), contested).await
}

/// The selector label of the target's pods: the first of Flagger's default selector labels
/// in the target's selector, else its first label.
async fn selector_label(t: &Target<'_>) -> Result<String, RouterError> {
    let (ns, name) = (&t.c.namespace, &t.c.target.name);
    let selector: Option<LabelSelector> = match t.c.target.kind {
        TargetKind::DaemonSet => crate::cache::get(&t.caches.daemonsets, t.client, ns, name)
            .await
            .map(|d| d.and_then(|d| d.spec.clone()).map(|s| s.selector)),
        _ => crate::cache::get(&t.caches.deployments, t.client, ns, name)
            .await
            .map(|d| d.and_then(|d| d.spec.clone()).map(|s| s.selector)),
    }
    .map_err(|e| RouterError::api(format!("{name}.{ns} get query error"), &e))?;
    let labels = selector.and_then(|s| s.match_labels).unwrap_or_default();
    Ok(DEFAULT_SELECTOR_LABELS
        .iter()
        .find(|l| labels.contains_key(**l))
        .map(|l| l.to_string())
        .or_else(|| labels.keys().next().cloned())
        .unwrap_or_else(|| "app".into()))
}
