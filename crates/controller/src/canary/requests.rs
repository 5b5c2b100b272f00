//! Requests made through the Canary's `flagger.app/action` annotation (see
//! [`flagger_core::steer`]): read into the observations, and removed once the decision core says
//! they are done, by a JSON patch that first tests the annotation still holds the request acted
//! on (a newer request written since is left alone). A GitOps applier does not own these
//! annotations, so re-applying the Canary neither removes nor restores them.

use flagger_api::Canary;
use flagger_api::labels::{ACTION, ACTION_ID};
use flagger_core::steer::{self, Request};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::context::Context;
use crate::write::FIELD_MANAGER;

/// The request on the Canary, if any.
pub fn observe(canary: &Canary) -> Option<Request> {
    steer::request(canary.annotations())
}

/// Whether the Canary carries a request the controller has not acted on yet (a reconcile acts
/// on it at once instead of waiting for the next tick). A pause being held is not one.
pub fn pending(canary: &Canary, status: &flagger_api::CanaryStatus) -> bool {
    let paused = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.r#type == flagger_api::labels::CONDITION_PAUSED);
    match observe(canary) {
        None => false,
        Some(r) => !(paused && r.verb == Ok(steer::Verb::Pause)),
    }
}

/// JSON pointer escaping of a map key.
fn pointer(key: &str) -> String {
    format!(
        "/metadata/annotations/{}",
        key.replace('~', "~0").replace('/', "~1")
    )
}

/// Removes the request `raw` (and its id), if the annotation still reads `raw`. A failure is
/// logged: the request is then seen again and, being done, acted on as a no-op.
pub async fn clear(ctx: &Context, canary: &Canary, raw: &str) {
    let ns = canary.namespace().unwrap_or_default();
    let name = canary.name_any();
    // Only the leader writes; another replica acts on the request when it leads.
    if let Err(why) = ctx.fenced(canary) {
        tracing::info!(canary = %format!("{name}.{ns}"), action = raw, "request left in place: {why}");
        return;
    }
    let mut ops = vec![
        json!({"op": "test", "path": pointer(ACTION), "value": raw}),
        json!({"op": "remove", "path": pointer(ACTION)}),
    ];
    if canary.annotations().contains_key(ACTION_ID) {
        ops.push(json!({"op": "remove", "path": pointer(ACTION_ID)}));
    }
    let patch: json_patch::Patch = match serde_json::from_value(serde_json::Value::Array(ops)) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(canary = %format!("{name}.{ns}"), "building the request removal failed: {e}");
            return;
        }
    };
    let api: Api<Canary> = Api::namespaced(ctx.client.clone(), &ns);
    match api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Json::<()>(patch),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(canary = %format!("{name}.{ns}"), action = raw, "request done, annotation removed")
        }
        Err(e) => {
            tracing::warn!(canary = %format!("{name}.{ns}"), action = raw, "removing the request annotation failed: {e}")
        }
    }
}
