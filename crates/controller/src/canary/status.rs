//! Step 6: writing the status (through the status subresource, server-side apply under the
//! controller's field manager), and the `Valid` condition of a spec that cannot run.

use flagger_api::{Canary, CanaryCondition, CanaryStatus};
use flagger_core::effects::EventType;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::error::{Category, step_error};

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

/// Writes `status` (a fenced, conditional update of the status subresource: refused unless this
/// replica leads and the Canary is still at the resourceVersion its status was read at) and
/// remembers it until the watch cache has caught up with the write. A refused write (409)
/// marks the canary to be read again: its next reconcile starts from what the API server has,
/// so the status never goes back.
pub async fn write(
    ctx: &Context,
    canary: &Canary,
    status: &CanaryStatus,
) -> Result<(), StatusError> {
    let ns = canary.namespace().unwrap_or_default();
    let name = canary.name_any();
    let key = ObjectRef::from_obj(canary);
    ctx.fenced(canary)?;
    let api: Api<Canary> = Api::namespaced(ctx.client.clone(), &ns);
    let (_, read_at) = ctx.current_version(&key, canary);
    let mut object = canary.clone();
    object.metadata.resource_version = Some(read_at).filter(|rv| !rv.is_empty());
    object.metadata.managed_fields = None;
    object.status = Some(status.clone());
    let written = api
        .replace_status(&name, &crate::write::post_params(), &object)
        .await
        .map_err(|e| {
            if Category::of_kube(&e) == Category::Conflict {
                ctx.stale(&key);
            }
            StatusError::api(
                format!("writing the status of canary {name}.{ns} failed"),
                &e,
            )
        })?;
    ctx.wrote_status(
        key,
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
