//! Ownership of generated objects: the controller owner reference Flagger puts on what it
//! generates, and whether an object carries this Canary's. Shared by the canary steps and the
//! routers, neither of which depends on the other for it.

use flagger_api::Canary;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

/// The owner reference Flagger puts on generated objects.
pub fn owner_ref(canary: &Canary) -> Option<OwnerReference> {
    canary.controller_owner_ref(&())
}

/// Whether an object is owned (as controller) by this canary.
pub fn owned_by(refs: Option<&Vec<OwnerReference>>, canary: &Canary) -> bool {
    let uid = canary.meta().uid.as_deref();
    refs.into_iter()
        .flatten()
        .any(|r| r.controller == Some(true) && Some(r.uid.as_str()) == uid)
}

/// Whether `r` is a Canary's controller reference (any Canary's: the watch mappers and the
/// caches ask which canary an object belongs to, not whether it is a given one's).
pub fn is_canary_controller(r: &OwnerReference) -> bool {
    r.kind == "Canary" && r.api_version.starts_with("flagger.app/") && r.controller == Some(true)
}
