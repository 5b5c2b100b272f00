//! The controller's field manager and the write parameters under it: a leaf every module that
//! writes uses (the crate root re-exports them).

/// Field manager of every write the controller makes.
pub use flagger_api::labels::FIELD_MANAGER;

/// Create and replace parameters under the controller's field manager (a write without one is
/// recorded as `unknown`, which the fight detector would take for another writer).
pub fn post_params() -> kube::api::PostParams {
    kube::api::PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// Merge-patch parameters under the controller's field manager.
pub fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}
