//! Knative (reference §4.14): no routing object of its own. The router keeps the Knative
//! Service's `flagger.app/primary-revision` annotation (set to the latest created revision
//! when missing), writes the weights into its `spec.traffic` (the latest revision and the
//! primary revision) and reads them from its `status.traffic`; on deletion it removes the
//! annotation. The Service is the user's: these are merge patches of those fields only, as
//! Flagger's updates are.

use flagger_api::labels::PRIMARY_REVISION;
use flagger_core::effects::Routes;
use flagger_core::routing::{RoutingError, StickyCookies, knative};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use super::seam::CachedApi;
use super::seam::{Contested, Router, RouterError, Target, dynamic_api, get_json};
use crate::write::FIELD_MANAGER;

/// The router of `knative`.
pub struct Knative;

impl Router for Knative {
    /// Sets the primary-revision annotation to the latest created revision when it is missing.
    async fn reconcile(
        &self,
        t: &Target<'_>,
        _cookies: &StickyCookies,
        _contested: &mut Vec<Contested>,
    ) -> Result<(), RouterError> {
        let service = get(t).await?;
        if knative::primary_revision(&service).is_some() {
            return Ok(());
        }
        let latest = latest(t, &service)?;
        patch(
            t,
            json!({"metadata": {"annotations": {PRIMARY_REVISION: latest}}}),
        )
        .await
    }

    /// Reads the weights from the Service's `status.traffic`.
    async fn get_routes(&self, t: &Target<'_>) -> Result<Routes, RouterError> {
        let service = get(t).await?;
        knative::read_routes(t.c, &service).map_err(RouterError::routing)
    }

    /// Writes `spec.traffic`: the latest revision and the primary revision.
    async fn set_routes(
        &self,
        t: &Target<'_>,
        routes: Routes,
        _cookies: &StickyCookies,
    ) -> Result<(), RouterError> {
        let service = get(t).await?;
        let primary = knative::primary_revision(&service).ok_or_else(|| {
            RouterError::routing(RoutingError::NoRoutes(format!(
                "Knative Service {}.{} annotation not found",
                t.c.target.name, t.c.namespace
            )))
        })?;
        patch(
            t,
            json!({"spec": {"traffic": knative::traffic(primary, routes)}}),
        )
        .await
    }

    /// Removes the primary-revision annotation.
    async fn finalize(&self, t: &Target<'_>) -> Result<Option<String>, RouterError> {
        let Some(service) = get_json(&services(t), &t.c.target.name).await? else {
            return Ok(None);
        };
        if knative::primary_revision(&service).is_some() {
            patch(
                t,
                json!({"metadata": {"annotations": {PRIMARY_REVISION: null}}}),
            )
            .await?;
        }
        Ok(None)
    }
}

fn services(t: &Target<'_>) -> CachedApi {
    dynamic_api(
        t,
        &t.c.namespace,
        knative::API_VERSION,
        "Service",
        "services",
    )
}

/// The target Knative Service as JSON.
async fn get(t: &Target<'_>) -> Result<Value, RouterError> {
    get_json(&services(t), &t.c.target.name)
        .await?
        .ok_or_else(|| {
            RouterError::transient(format!(
                "Knative Service {}.{} not found",
                t.c.target.name, t.c.namespace
            ))
        })
}

/// The Service's latest created revision; none yet is transient (Knative is creating it).
fn latest<'v>(t: &Target<'_>, service: &'v Value) -> Result<&'v str, RouterError> {
    knative::latest_created_revision(service).ok_or_else(|| {
        RouterError::transient(format!(
            "Knative Service {}.{} has no revision yet",
            t.c.target.name, t.c.namespace
        ))
    })
}

async fn patch(t: &Target<'_>, patch: Value) -> Result<(), RouterError> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let api = services(t);
    let written = api
        .patch(&t.c.target.name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            RouterError::api(
                format!(
                    "Knative Service {}.{} update query error",
                    t.c.target.name, t.c.namespace
                ),
                &e,
            )
        })?;
    api.wrote(written);
    Ok(())
}
