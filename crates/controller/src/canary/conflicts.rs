//! Telling people about fights over generated objects (see [`flagger_core::conflict`]): a
//! Warning event per foreign change, the `FieldConflict` condition while a fight is active, the
//! `flagger_field_conflicts_total` counter, and keeping traffic flowing when the controller
//! stops reverting an apex Service that routes to the target's pods.

use flagger_api::{Canary, CanaryCondition, CanaryStatus};
use flagger_core::conflict::{self, Verdict};
use flagger_core::effects::EventType;
use flagger_core::model::ValidatedCanary;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::ObjectRef;

use super::bootstrap::ConflictReport;
use super::observe::Observed;
use crate::context::Context;
use crate::metrics::ConflictLabels;

/// Condition type present while another writer fights over a generated object.
pub const CONDITION_FIELD_CONFLICT: &str = "FieldConflict";

/// Records one foreign change: event, log line, counter, condition note; on a yield of the apex
/// Service that now selects the target's pods, scales the target up so the Service has ready
/// endpoints.
pub async fn report(
    ctx: &Context,
    canary: &Canary,
    c: &ValidatedCanary,
    observed: &Observed,
    r: &ConflictReport,
) {
    let key = ObjectRef::from_obj(canary);
    let manager = &r.contender.manager;
    let fields = r.contender.fields.join(", ");
    let window = flagger_core::duration::format_go(ctx.settings.fights.window);
    let limit = ctx.settings.fights.max_reversions;
    let remedy = conflict::remedy(manager, &r.kind, &r.name);
    let (action, message) = match r.verdict {
        Verdict::Noted => (
            "noted",
            format!(
                "{} {}: field manager {manager} changed {fields}, which the controller manages; \
                 it is written again at the next promotion, undoing the change. Fix: {remedy}",
                r.kind, r.name
            ),
        ),
        Verdict::Revert { count } => {
            // Only Services are ever left to another writer; routing objects are always put back.
            let stop = if limit == 0 || r.kind != "Service" {
                String::new()
            } else {
                format!("; stops after {limit}")
            };
            (
                "reverted",
                format!(
                    "{} {}: field manager {manager} changed {fields}, which the controller manages; \
                     put back ({count} times in {window}{stop}). Fix: {remedy}",
                    r.kind, r.name
                ),
            )
        }
        Verdict::Yield { count } => {
            let safety = if r.apex && r.selects_target {
                format!(
                    "; it routes to the pods of {} {}, which is scaled up and kept up so \
                     traffic keeps flowing (the Service is put back until those pods are \
                     ready), and canary analysis no longer protects this Service",
                    c.target.kind.kind(),
                    c.target.name
                )
            } else {
                String::new()
            };
            (
                "yielded",
                format!(
                    "{} {}: field manager {manager} changed {fields} again after {count} \
                     reversions in {window}; stopped reverting, the object is left to \
                     {manager}{safety}. Fix: {remedy}",
                    r.kind, r.name
                ),
            )
        }
    };
    ctx.metrics
        .conflicts
        .get_or_create(&ConflictLabels {
            name: c.target.name.clone(),
            namespace: c.namespace.clone(),
            object: r.object.clone(),
            manager: manager.clone(),
            action: action.into(),
        })
        .inc();
    ctx.with_fights(&key, |log| {
        if matches!(r.verdict, Verdict::Noted) {
            log.noted(&r.object, ctx.now(), message.clone());
        } else {
            log.note(&r.object, message.clone());
        }
    });
    ctx.recorder
        .record(canary, EventType::Warning, &message, ctx.now())
        .await;
    if matches!(r.verdict, Verdict::Yield { .. })
        && r.apex
        && r.selects_target
        && let Err(e) = super::workloads::scale_up(&ctx.client, &ctx.caches, c, observed).await
    {
        ctx.recorder
            .record(canary, EventType::Warning, &e.to_string(), ctx.now())
            .await;
    }
}

/// A fight over a routing object, counted in the canary's log. Routing objects are always put
/// back (without them the canary cannot route), so the verdict is always `Revert`.
pub fn routing_object(
    ctx: &Context,
    canary: &Canary,
    found: crate::router::Contested,
) -> ConflictReport {
    let key = ObjectRef::from_obj(canary);
    let object = format!("{}/{}", found.kind, found.name);
    let policy = conflict::FightPolicy {
        max_reversions: 0,
        window: ctx.settings.fights.window,
    };
    let verdict = ctx.with_fights(&key, |log| {
        log.observe(&object, &found.contender.manager, ctx.now(), policy)
    });
    ConflictReport {
        object,
        kind: found.kind,
        name: found.name,
        apex: false,
        contender: found.contender,
        verdict,
        selects_target: false,
    }
}

/// Whether the apex Service of this canary was left to another writer: the target must then
/// keep serving instead of being scaled to zero.
pub fn apex_yielded(ctx: &Context, canary: &Canary, c: &ValidatedCanary) -> bool {
    let key = ObjectRef::from_obj(canary);
    ctx.with_fights(&key, |log| {
        log.yielded_to(&format!("Service/{}", c.apex)).is_some()
    })
}

/// `status` with the `FieldConflict` condition made current (added, updated or removed), or
/// `None` when it already is.
pub fn with_condition(
    ctx: &Context,
    key: &ObjectRef<Canary>,
    status: &CanaryStatus,
) -> Option<CanaryStatus> {
    let now = ctx.now();
    let notes = ctx.with_fights(key, |log| log.active_notes(now, ctx.settings.fights));
    let current = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.r#type == CONDITION_FIELD_CONFLICT);
    let wanted = (!notes.is_empty()).then(|| {
        let yielded = notes.iter().any(|(_, n)| n.contains("stopped reverting"));
        (
            if yielded {
                "StoppedReverting"
            } else {
                "Reverting"
            },
            notes
                .iter()
                .map(|(_, n)| n.as_str())
                .collect::<Vec<_>>()
                .join(" | "),
        )
    });
    let unchanged = match (current, &wanted) {
        (None, None) => true,
        (Some(c), Some((reason, message))) => {
            c.reason == *reason && c.message.as_deref() == Some(message.as_str())
        }
        _ => false,
    };
    if unchanged {
        return None;
    }
    let mut updated = status.clone();
    let mut conditions: Vec<CanaryCondition> = updated
        .conditions
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.r#type != CONDITION_FIELD_CONFLICT)
        .collect();
    if let Some((reason, message)) = wanted {
        conditions.push(CanaryCondition {
            r#type: CONDITION_FIELD_CONFLICT.into(),
            status: "True".into(),
            last_update_time: Some(Time(now)),
            last_transition_time: Some(Time(
                current
                    .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
                    .unwrap_or(now),
            )),
            reason: reason.into(),
            message: Some(message),
        });
    }
    updated.conditions = (!conditions.is_empty()).then_some(conditions);
    Some(updated)
}
