//! Gloo Edge (reference §4.8): the Upstreams of the primary and canary Services (from the
//! `upstreamRef` template, if any) and the RouteTable `<apex>` that splits between them, which
//! the user's VirtualService delegates to.

use flagger_core::effects::Routes;
use flagger_core::routing::{StickyCookies, gloo};
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::Value;

use super::seam::CachedApi;
use super::seam::{
    Contested, Router, RouterError, Target, Weighted, dynamic_api, ensure, get_json, to_json,
};
use crate::write::FIELD_MANAGER;

/// The router of `gloo`.
pub struct Gloo;

impl Router for Gloo {
    /// Creates the Upstreams (or keeps their load balancer in line with the template) and
    /// creates or corrects the RouteTable, keeping the weights.
    async fn reconcile(
        &self,
        t: &Target<'_>,
        _cookies: &StickyCookies,
        contested: &mut Vec<Contested>,
    ) -> Result<(), RouterError> {
        let template = template(t).await?;
        for (name, service) in [
            (gloo::primary_upstream(t.c), t.c.primary_service()),
            (gloo::canary_upstream(t.c), t.c.canary_service()),
        ] {
            upstream(t, &name, &service, template.as_ref(), contested).await?;
        }
        table(t).reconcile(t, contested).await
    }

    /// Reads the weights from the RouteTable.
    async fn get_routes(&self, t: &Target<'_>) -> Result<Routes, RouterError> {
        table(t).get_routes(t).await
    }

    /// Rewrites the RouteTable with these weights.
    async fn set_routes(
        &self,
        t: &Target<'_>,
        routes: Routes,
        _cookies: &StickyCookies,
    ) -> Result<(), RouterError> {
        table(t).set_routes(t, routes).await
    }
}

/// The RouteTable `<apex>`.
fn table<'a>(t: &'a Target<'a>) -> Weighted<'a> {
    Weighted::at_apex(
        t,
        (gloo::ROUTE_TABLE_API_VERSION, "RouteTable", "routetables"),
        gloo::read_routes,
        |r| gloo::route_table(t.c, r),
    )
}

fn upstreams(t: &Target<'_>, namespace: &str) -> CachedApi {
    dynamic_api(
        t,
        namespace,
        gloo::UPSTREAM_API_VERSION,
        "Upstream",
        "upstreams",
    )
}

/// The `upstreamRef` Upstream (in the Canary's namespace unless the reference names one).
async fn template(t: &Target<'_>) -> Result<Option<Value>, RouterError> {
    let Some(r) = &t.canary.spec.upstream_ref else {
        return Ok(None);
    };
    let ns = r
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(&t.c.namespace);
    let found = get_json(&upstreams(t, ns), &r.name).await?;
    found.map(Some).ok_or_else(|| {
        RouterError::invalid_spec(format!("config upstream {}.{ns} not found", r.name))
    })
}

/// Creates the Upstream `name` for `service`, or brings an existing one's load balancer in
/// line with the template.
async fn upstream(
    t: &Target<'_>,
    name: &str,
    service: &str,
    template: Option<&Value>,
    contested: &mut Vec<Contested>,
) -> Result<(), RouterError> {
    let ns = &t.c.namespace;
    let api = upstreams(t, ns);
    match get_json(&api, name).await? {
        None => {
            let svc = Api::<Service>::namespaced(t.client.clone(), ns)
                .get_opt(service)
                .await
                .map_err(|e| RouterError::api(format!("service {service}.{ns} query error"), &e))?
                .ok_or_else(|| {
                    RouterError::transient(format!("service {service}.{ns} not found"))
                })?;
            let selector = to_json(&svc.spec.and_then(|s| s.selector), service)?;
            let desired = gloo::upstream(t.c, name, service, &selector, template);
            ensure(&api, t, desired, None, contested).await
        }
        Some(existing) => match gloo::upstream_load_balancer_patch(&existing, template) {
            None => Ok(()),
            Some(patch) => api
                .patch(
                    name,
                    &PatchParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..Default::default()
                    },
                    &Patch::Merge(&patch),
                )
                .await
                .map(|o| api.wrote(o))
                .map_err(|e| RouterError::api(format!("upstream {name}.{ns} patch failed"), &e)),
        },
    }
}
