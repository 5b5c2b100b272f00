//! Knative Service targets (`serving.knative.dev/v1`, provider `knative`, reference §3.11):
//! the steps' part for a target that is its own primary.
//!
//! There is no `-primary` workload, no generated Service and nothing to scale: Knative keeps
//! every revision and routes between them. The revision under analysis is the Service's
//! latest created revision (its name is what the status's `lastAppliedSpec` hashes); the
//! primary is the revision the `flagger.app/primary-revision` annotation names. Bootstrap
//! (phase empty or `Initializing`) sets that annotation to the latest created revision and
//! sends it all the traffic; promotion moves the annotation to the latest created revision;
//! readiness is the `Ready` condition of the revision each role names. The weights are the
//! router's ([`crate::router::knative`]).

use flagger_api::labels::PRIMARY_REVISION;
use flagger_api::{Canary, CanaryPhase};
use flagger_core::effects::{Readiness, Routes, TargetRevision};
use flagger_core::hash;
use flagger_core::model::ValidatedCanary;
use flagger_core::readiness::Role;
use flagger_core::routing::knative;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use super::objects::WriteError;
use crate::error::{step_error, step_error_from};
use crate::watched::{CachedApi, Objects};
use crate::write::FIELD_MANAGER;

step_error!(
    /// A read or write of the Knative Service failed (observe, bootstrap and promotion share
    /// it), or the Service has no revision yet.
    KnativeError
);
step_error_from!(KnativeError => WriteError);

fn services(objects: &Objects, c: &ValidatedCanary) -> CachedApi {
    objects.namespaced(
        objects.client(),
        &c.namespace,
        CachedApi::resource(knative::API_VERSION, "Service", "services"),
    )
}

fn name(c: &ValidatedCanary) -> String {
    format!("{}.{}", c.target.name, c.namespace)
}

/// Reads the Knative Service.
pub async fn get(objects: &Objects, c: &ValidatedCanary) -> Result<Value, KnativeError> {
    let service = services(objects, c)
        .get_cached(&c.target.name)
        .await
        .map_err(|e| KnativeError::api(format!("Knative Service {} get query error", name(c)), &e))?
        .ok_or_else(|| {
            KnativeError::transient(format!(
                "Knative Service {} get query error: not found",
                name(c)
            ))
        })?;
    serde_json::to_value(&*service)
        .map_err(|e| KnativeError::transient(format!("Knative Service {}: {e}", name(c))))
}

fn no_revision(c: &ValidatedCanary) -> KnativeError {
    KnativeError::transient(format!("Knative Service {} has no revision yet", name(c)))
}

/// The revision under analysis: the hash of the latest created revision's name. A Service
/// without a revision yet cannot be analysed.
pub fn revision(c: &ValidatedCanary, service: &Value) -> Result<TargetRevision, KnativeError> {
    let latest = knative::latest_created_revision(service).ok_or_else(|| no_revision(c))?;
    Ok(TargetRevision {
        hash: hash::spec_hash(&json!(latest)),
        tracked_configs: Default::default(),
    })
}

async fn patch(objects: &Objects, c: &ValidatedCanary, patch: Value) -> Result<(), KnativeError> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let api = services(objects, c);
    let written = api
        .patch(&c.target.name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            KnativeError::api(
                format!("Knative Service {} update query error", name(c)),
                &e,
            )
        })?;
    api.wrote(written);
    Ok(())
}

/// While the canary initializes: the latest created revision becomes the primary and gets all
/// the traffic (the latest revision entry at 0%).
pub async fn initialize(
    objects: &Objects,
    canary: &Canary,
    c: &ValidatedCanary,
    service: &Value,
) -> Result<(), KnativeError> {
    let phase = canary.status.as_ref().map(|s| s.phase).unwrap_or_default();
    if !matches!(phase, CanaryPhase::Unknown | CanaryPhase::Initializing) {
        return Ok(());
    }
    let latest = knative::latest_created_revision(service).ok_or_else(|| no_revision(c))?;
    let desired = knative::service_patch(c, latest, Some(Routes::PRIMARY));
    let current_annotation = knative::primary_revision(service);
    if current_annotation == Some(latest)
        && service["spec"]["traffic"] == desired["spec"]["traffic"]
    {
        return Ok(());
    }
    patch(
        objects,
        c,
        json!({
            "metadata": {"annotations": {PRIMARY_REVISION: latest}},
            "spec": {"traffic": desired["spec"]["traffic"]},
        }),
    )
    .await
}

/// Promotion: the latest created revision becomes the primary.
pub async fn promote(objects: &Objects, c: &ValidatedCanary) -> Result<(), KnativeError> {
    let service = get(objects, c).await?;
    let latest = knative::latest_created_revision(&service).ok_or_else(|| no_revision(c))?;
    patch(
        objects,
        c,
        json!({"metadata": {"annotations": {PRIMARY_REVISION: latest}}}),
    )
    .await
}

/// Readiness of the primary revision (the annotation's) or the canary revision (the latest
/// created): its `Ready` condition. Anything else is a wait, as Flagger's checks are
/// retriable.
pub async fn readiness(
    objects: &Objects,
    c: &ValidatedCanary,
    service: &Value,
    role: Role,
) -> Readiness {
    let revision = match role {
        // Without the annotation (before bootstrap writes it, or when someone removed it)
        // the primary is the revision that bootstrap and the router's reconcile name: the
        // latest created one.
        Role::Primary => knative::primary_revision(service)
            .or_else(|| knative::latest_created_revision(service))
            .ok_or_else(|| format!("Knative Service {} has no revision yet", name(c))),
        Role::Canary => knative::latest_created_revision(service)
            .ok_or_else(|| format!("Knative Service {} has no revision yet", name(c))),
    };
    let revision = match revision {
        Ok(r) => r.to_string(),
        Err(e) => return Readiness::Waiting(e),
    };
    let api = objects.namespaced(
        objects.client(),
        &c.namespace,
        CachedApi::resource(knative::API_VERSION, "Revision", "revisions"),
    );
    match api.get_cached(&revision).await {
        Ok(None) => Readiness::Waiting(format!(
            "Knative Revision {revision}.{} get query error: not found",
            c.namespace
        )),
        Ok(Some(r)) => match serde_json::to_value(&*r) {
            Ok(r) if knative::revision_ready(&r) => Readiness::Ready,
            _ => Readiness::Waiting(format!(
                "Knative Revision {revision}.{} is not ready",
                c.namespace
            )),
        },
        Err(e) => Readiness::Waiting(format!(
            "Knative Revision {revision}.{} get query error: {e}",
            c.namespace
        )),
    }
}
