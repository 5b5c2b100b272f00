//! Telling people about fights over generated objects (decided in [`flagger_core::conflict`]
//! and [`flagger_core::services::plan`]): a Warning event per foreign change, the
//! `flagger_field_conflicts_total` counter, and the note the `FieldConflict` condition is made
//! from.

use flagger_api::{Canary, CanaryStatus};
use flagger_core::conflict::{self, ConflictReport};
use flagger_core::effects::EventType;
use flagger_core::model::ValidatedCanary;
use kube::runtime::reflector::ObjectRef;

use crate::context::Context;
use crate::metrics::ConflictLabels;

/// Records one foreign change: event, log line, counter, condition note.
pub async fn report(ctx: &Context, canary: &Canary, c: &ValidatedCanary, r: &ConflictReport) {
    let key = ObjectRef::from_obj(canary);
    let message = r.message(ctx.settings.fights, (c.target.kind.kind(), &c.target.name));
    ctx.metrics
        .conflicts
        .get_or_create(&ConflictLabels {
            name: c.target.name.clone(),
            namespace: c.namespace.clone(),
            object: r.object.clone(),
            manager: r.contender.manager.clone(),
            action: r.action().into(),
        })
        .inc();
    ctx.with_fights(&key, |log| log.record(r, ctx.now(), message.clone()));
    ctx.recorder
        .record(canary, EventType::Warning, &message, ctx.now())
        .await;
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
    conflict::with_condition(status, &notes, now)
}
