//! Step 6: writing the status (through the status subresource, server-side apply under the
//! controller's field manager), and the `Valid` condition of a spec that cannot run.

use flagger_api::{Canary, CanaryCondition, CanaryStatus};
use flagger_core::effects::EventType;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::FIELD_MANAGER;
use crate::context::Context;
use crate::error::step_error;

step_error!(
    /// Step 6 failed: the status could not be written.
    StatusError
);

/// Condition type written when the spec cannot run (next to Flagger's `Promoted`).
pub const CONDITION_VALID: &str = "Valid";

/// The status to act on (see [`Context::current_status`]).
pub fn current(ctx: &Context, canary: &Canary) -> CanaryStatus {
    ctx.current_status(&ObjectRef::from_obj(canary), canary)
}

/// Writes `status` and remembers it until the watch cache has caught up with the write.
pub async fn write(
    ctx: &Context,
    canary: &Canary,
    status: &CanaryStatus,
) -> Result<(), StatusError> {
    let ns = canary.namespace().unwrap_or_default();
    let name = canary.name_any();
    let api: Api<Canary> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "status": status,
    });
    let written = api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|e| {
            StatusError::api(
                format!("writing the status of canary {name}.{ns} failed"),
                &e,
            )
        })?;
    ctx.wrote_status(
        ObjectRef::from_obj(canary),
        written.resource_version().unwrap_or_default(),
        status.clone(),
    );
    Ok(())
}

/// An invalid spec: a `Valid=False` condition (after `Promoted`) and a Warning event, once per
/// distinct message.
pub async fn report_invalid(
    ctx: &Context,
    canary: &Canary,
    message: &str,
) -> Result<(), StatusError> {
    let mut status = current(ctx, canary);
    let already = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.r#type == CONDITION_VALID && c.message.as_deref() == Some(message));
    if already {
        return Ok(());
    }
    ctx.recorder
        .record(canary, EventType::Warning, message, ctx.now())
        .await;
    let now = Some(Time(ctx.now()));
    let mut conditions = without_valid(&mut status);
    conditions.push(CanaryCondition {
        r#type: CONDITION_VALID.into(),
        status: "False".into(),
        last_update_time: now.clone(),
        last_transition_time: now,
        reason: "InvalidSpec".into(),
        message: Some(message.to_string()),
    });
    status.conditions = Some(conditions);
    write(ctx, canary, &status).await
}

/// The status without the `Valid` condition, written when it had one (the spec runs again).
pub async fn clear_invalid(
    ctx: &Context,
    canary: &Canary,
    status: CanaryStatus,
) -> Result<CanaryStatus, StatusError> {
    if !status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.r#type == CONDITION_VALID)
    {
        return Ok(status);
    }
    let mut status = status;
    let kept = without_valid(&mut status);
    status.conditions = if kept.is_empty() { None } else { Some(kept) };
    write(ctx, canary, &status).await?;
    Ok(status)
}

/// Takes the status's conditions, all but `Valid`.
fn without_valid(status: &mut CanaryStatus) -> Vec<CanaryCondition> {
    status
        .conditions
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.r#type != CONDITION_VALID)
        .collect()
}

/// Writes the status a decision reached (session-affinity cookies included), with the
/// `FieldConflict` condition made current; nothing when it is unchanged.
pub async fn record(
    ctx: &Context,
    canary: &Canary,
    current: &CanaryStatus,
    decision: &flagger_core::effects::Decision,
) -> Result<(), StatusError> {
    let key = ObjectRef::from_obj(canary);
    let to_write = match &decision.status {
        Some(new) => {
            Some(super::conflicts::with_condition(ctx, &key, new).unwrap_or_else(|| new.clone()))
        }
        None => super::conflicts::with_condition(ctx, &key, current),
    };
    match to_write {
        Some(status) => write(ctx, canary, &status).await,
        None => Ok(()),
    }
}

/// Writes the `FieldConflict` condition when it changed (between ticks).
pub async fn write_conditions(
    ctx: &Context,
    canary: &Canary,
    current: &CanaryStatus,
) -> Result<(), StatusError> {
    match super::conflicts::with_condition(ctx, &ObjectRef::from_obj(canary), current) {
        Some(status) => write(ctx, canary, &status).await,
        None => Ok(()),
    }
}
