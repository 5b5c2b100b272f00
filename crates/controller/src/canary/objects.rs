//! Writing generated objects: server-side apply under the controller's field manager, with a
//! controller owner reference to the Canary; the error of a failed write.

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::step_error;
use crate::write::FIELD_MANAGER;

step_error!(
    /// A write of a generated object or of the target's scale failed.
    WriteError
);

/// Merge patches under a field manager.
pub fn merge_params(manager: &str) -> PatchParams {
    PatchParams {
        field_manager: Some(manager.into()),
        ..Default::default()
    }
}

pub use crate::owner::{owned_by, owner_ref};

/// Server-side applies an object (creating it when missing), taking ownership of its fields.
pub async fn apply<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    object: &K,
) -> Result<K, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    apply_json(client, namespace, name, object).await
}

/// Server-side applies any serializable document as a `K`: a whole object, or a partial JSON
/// one (for partial ownership of an object someone else made).
pub async fn apply_json<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    object: &(impl Serialize + std::fmt::Debug),
) -> Result<K, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
}
