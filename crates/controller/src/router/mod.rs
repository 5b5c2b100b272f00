//! The router seam: how a provider reads and writes traffic weights (reference §4.1).
//!
//! One module per provider writes the objects the pure builders of
//! [`flagger_core::routing`] return, by server-side apply under the controller's field manager
//! with a controller owner reference to the Canary:
//!
//! * `kubernetes`: no routing object (blue/green through the apex Service, which the bootstrap
//!   step manages);
//! * [`istio`]: DestinationRules `<apex>-primary` / `<apex>-canary` and the VirtualService
//!   `<apex>`;
//! * [`smi`] (`linkerd`, `osm`, `smi:v1alpha1|2|3`): the TrafficSplit `<apex>`;
//! * [`nginx`]: the Ingress `<ingressRef.name>-canary`;
//! * [`gatewayapi`] (`gatewayapi:v1`, `gatewayapi:v1beta1`): the HTTPRoute `<apex>`.
//!
//! `reconcile` keeps the weights in effect: it reads the routes of an existing object first and
//! re-applies the builder's object with them (Flagger resets to 100/0 on drift; keeping them
//! means a spec edit mid-analysis does not send all traffic back to the primary until the next
//! step). An object already as desired is not written.
//!
//! Other providers are refused at dereference with a clear condition, not silently ignored.

pub mod gatewayapi;
pub mod istio;
pub mod nginx;
pub mod smi;

use flagger_api::{Canary, CanaryStatus};
use flagger_core::effects::Routes;
use flagger_core::model::{Provider, SmiVersion, ValidatedCanary};
use flagger_core::routing::StickyCookies;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::Value;

use crate::FIELD_MANAGER;
use crate::canary::objects::{owned_by, owner_ref};

/// A traffic router for one canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Router {
    /// The kubernetes provider: no routing object; traffic is switched by promoting the primary.
    Kubernetes,
    /// Istio VirtualService and DestinationRules.
    Istio,
    /// An SMI TrafficSplit of this version (`linkerd`, `osm`, `smi:*`).
    Smi(SmiVersion),
    /// The NGINX canary Ingress.
    Nginx,
    /// A Gateway API HTTPRoute of this version.
    GatewayApi(flagger_core::routing::gatewayapi::Version),
}

/// What a router call works with: the API client, the Canary as stored (owner references,
/// `ingressRef`), its validated form, and the session-affinity cookies the core decided for the
/// routes being written.
#[derive(Clone)]
pub struct Target<'a> {
    pub client: &'a Client,
    pub canary: &'a Canary,
    pub c: &'a ValidatedCanary,
    pub cookies: StickyCookies,
    /// `-ingress-annotations-prefix` (nginx).
    pub ingress_prefix: &'a str,
}

/// A routing object whose fields another field manager changed, found when putting it back
/// (returned by `reconcile`; the caller turns them into events and the `FieldConflict`
/// condition).
#[derive(Clone, Debug)]
pub struct Contested {
    pub kind: String,
    pub name: String,
    pub contender: flagger_core::conflict::Contender,
}

/// The session-affinity cookies kept in a Canary status.
pub fn cookies_of(status: Option<&CanaryStatus>) -> StickyCookies {
    let nonempty = |c: &Option<String>| c.clone().filter(|c| !c.is_empty());
    StickyCookies {
        canary: status.and_then(|s| nonempty(&s.session_affinity_cookie)),
        primary: status.and_then(|s| nonempty(&s.primary_session_affinity_cookie)),
        previous: status.and_then(|s| nonempty(&s.previous_session_affinity_cookie)),
    }
}

/// Writes cookies into a status (an absent cookie clears its field).
pub fn set_cookies(status: &mut CanaryStatus, cookies: &StickyCookies) {
    status.session_affinity_cookie = cookies.canary.clone();
    status.primary_session_affinity_cookie = cookies.primary.clone();
    status.previous_session_affinity_cookie = cookies.previous.clone();
}

/// A fresh cookie value: 10 random ASCII letters, as Flagger's.
pub fn random_letters() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    uuid::Uuid::new_v4().as_bytes()[..10]
        .iter()
        .map(|b| char::from(LETTERS[usize::from(*b) % LETTERS.len()]))
        .collect()
}

/// The providers with a router, for messages.
pub const SUPPORTED: &str = "kubernetes, istio, linkerd, osm, smi:v1alpha1, smi:v1alpha2, smi:v1alpha3, nginx, gatewayapi:v1, gatewayapi:v1beta1";

impl Router {
    /// The router for a provider, or why there is none yet.
    pub fn for_provider(provider: Provider) -> Result<Router, String> {
        if let Some(v) = flagger_core::routing::smi::version(provider) {
            return Ok(Router::Smi(v));
        }
        if let Some(v) = flagger_core::routing::gatewayapi::Version::of(provider) {
            return Ok(Router::GatewayApi(v));
        }
        match provider {
            Provider::Kubernetes => Ok(Router::Kubernetes),
            Provider::Istio => Ok(Router::Istio),
            Provider::Nginx => Ok(Router::Nginx),
            other => Err(format!(
                "the {other} provider is not supported by flagger-rs yet; supported: {SUPPORTED}"
            )),
        }
    }

    /// Creates or corrects the routing objects, keeping the weights in effect; returns the
    /// objects another field manager had changed.
    pub async fn reconcile(&self, t: &Target<'_>) -> Result<Vec<Contested>, String> {
        match self {
            Router::Kubernetes => Ok(Vec::new()),
            Router::Istio => istio::reconcile(t).await,
            Router::Smi(v) => smi::reconcile(t, *v).await,
            Router::Nginx => nginx::reconcile(t).await,
            Router::GatewayApi(v) => gatewayapi::reconcile(t, *v).await,
        }
    }

    /// Writes weights.
    pub async fn set_routes(&self, t: &Target<'_>, routes: Routes) -> Result<(), String> {
        match self {
            // The apex Service always selects the primary; nothing to write.
            Router::Kubernetes => Ok(()),
            Router::Istio => istio::set_routes(t, routes).await,
            Router::Smi(v) => smi::set_routes(t, *v, routes).await,
            Router::Nginx => nginx::set_routes(t, routes).await,
            Router::GatewayApi(v) => gatewayapi::set_routes(t, *v, routes).await,
        }
    }

    /// Reads weights.
    pub async fn get_routes(&self, t: &Target<'_>) -> Result<Routes, String> {
        match self {
            // The decision core derives the kubernetes provider's virtual weights itself.
            Router::Kubernetes => Ok(Routes::PRIMARY),
            Router::Istio => istio::get_routes(t).await,
            Router::Smi(v) => smi::get_routes(t, *v).await,
            Router::Nginx => nginx::get_routes(t).await,
            Router::GatewayApi(v) => gatewayapi::get_routes(t, *v).await,
        }
    }

    /// Whether this router writes session-affinity routes (`analysis.sessionAffinity`).
    pub fn sticky(&self) -> bool {
        matches!(self, Router::Istio | Router::GatewayApi(_))
    }

    /// Reverts what the router changed, on deletion with `revertOnDeletion` (reference §4.1):
    /// Istio gives a pre-existing VirtualService its own spec back; the others have nothing to
    /// revert (their objects are garbage collected with the Canary).
    pub async fn finalize(&self, t: &Target<'_>) -> Result<Option<String>, String> {
        match self {
            Router::Istio => istio::finalize(t).await,
            _ => Ok(None),
        }
    }
}

// === helpers shared by the providers ===

/// A namespaced API for a custom kind.
pub(crate) fn dynamic_api(
    client: &Client,
    namespace: &str,
    api_version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    Api::namespaced_with(client.clone(), namespace, &ar)
}

/// Reads an object as JSON, `None` when it does not exist.
pub(crate) async fn get_json(
    api: &Api<DynamicObject>,
    name: &str,
) -> Result<Option<Value>, String> {
    let obj = api
        .get_opt(name)
        .await
        .map_err(|e| format!("{} {name} query error: {e}", kind_of(api)))?;
    obj.map(|o| serde_json::to_value(o).map_err(|e| format!("{name}: {e}")))
        .transpose()
}

fn kind_of(api: &Api<DynamicObject>) -> String {
    api.resource_url()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Other field managers owning fields of `existing` that differ from `desired`, once the
/// controller has written the object before (a first takeover is not a fight).
fn contenders(existing: &Value, desired: &Value) -> Vec<flagger_core::conflict::Contender> {
    let managed: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry> =
        serde_json::from_value(existing["metadata"]["managedFields"].clone()).unwrap_or_default();
    if !managed
        .iter()
        .any(|m| m.manager.as_deref() == Some(FIELD_MANAGER))
    {
        return Vec::new();
    }
    let diff = flagger_core::conflict::differences(
        existing,
        &serde_json::json!({"spec": desired["spec"]}),
    );
    flagger_core::conflict::contenders_since_ours(&managed, FIELD_MANAGER, &diff)
}

/// Whether an object read as JSON is controlled by this Canary.
pub(crate) fn is_owned(existing: &Value, canary: &Canary) -> bool {
    let refs: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>> =
        serde_json::from_value(existing["metadata"]["ownerReferences"].clone()).ok();
    owned_by(refs.as_ref(), canary)
}

/// Whether `want` (labels or annotations) is contained in `have`.
fn subset(want: &Value, have: &Value) -> bool {
    match want.as_object() {
        None => true,
        Some(w) => w.iter().all(|(k, v)| have.get(k) == Some(v)),
    }
}

/// Whether the existing object already has the desired spec, labels and annotations (and
/// the owner reference when the desired object carries one).
pub(crate) fn up_to_date(desired: &Value, existing: &Value) -> bool {
    desired["spec"] == existing["spec"]
        && subset(
            &desired["metadata"]["labels"],
            &existing["metadata"]["labels"],
        )
        && subset(
            &desired["metadata"]["annotations"],
            &existing["metadata"]["annotations"],
        )
        && (desired["metadata"]["ownerReferences"].is_null()
            || desired["metadata"]["ownerReferences"] == existing["metadata"]["ownerReferences"])
}

/// Server-side applies `desired` (a whole object as JSON) unless `existing` already matches,
/// with the Canary as controller owner when the object is new or already the Canary's.
/// Returns what another field manager had changed in it (put back by this write).
pub(crate) async fn ensure(
    api: &Api<DynamicObject>,
    t: &Target<'_>,
    mut desired: Value,
    existing: Option<&Value>,
) -> Result<Vec<Contested>, String> {
    let name = desired["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Drop empty metadata maps and any status: neither is ours to apply.
    if let Some(meta) = desired["metadata"].as_object_mut() {
        meta.retain(|_, v| !v.is_null() && v.as_object().is_none_or(|m| !m.is_empty()));
    }
    if let Some(obj) = desired.as_object_mut() {
        obj.remove("status");
    }
    let adopt = existing.is_none_or(|e| is_owned(e, t.canary));
    if adopt && let Some(owner) = owner_ref(t.canary) {
        desired["metadata"]["ownerReferences"] =
            serde_json::to_value(vec![owner]).map_err(|e| e.to_string())?;
    }
    if existing.is_some_and(|e| up_to_date(&desired, e)) {
        return Ok(Vec::new());
    }
    let contested = existing
        .map(|existing| {
            contenders(existing, &desired)
                .into_iter()
                .map(|contender| Contested {
                    kind: desired["kind"].as_str().unwrap_or_default().to_string(),
                    name: name.clone(),
                    contender,
                })
                .collect()
        })
        .unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&desired),
    )
    .await
    .map_err(|e| {
        format!(
            "{} {name}.{} apply failed: {e}",
            kind_of(api),
            t.c.namespace
        )
    })?;
    Ok(contested)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagger_core::routing::gatewayapi::Version;

    #[test]
    fn providers_with_a_router() {
        assert_eq!(Router::for_provider(Provider::Istio), Ok(Router::Istio));
        assert_eq!(
            Router::for_provider(Provider::Linkerd),
            Ok(Router::Smi(SmiVersion::V1Alpha1))
        );
        assert_eq!(
            Router::for_provider(Provider::Osm),
            Ok(Router::Smi(SmiVersion::V1Alpha2))
        );
        assert_eq!(
            Router::for_provider(Provider::Smi(SmiVersion::V1Alpha3)),
            Ok(Router::Smi(SmiVersion::V1Alpha3))
        );
        assert_eq!(Router::for_provider(Provider::Nginx), Ok(Router::Nginx));
        assert_eq!(
            Router::for_provider(Provider::GatewayApiV1Beta1),
            Ok(Router::GatewayApi(Version::V1Beta1))
        );
        let refused = Router::for_provider(Provider::Contour).unwrap_err();
        assert!(refused.contains("contour"), "{refused}");
    }

    #[test]
    fn cookies_are_ten_letters_and_round_trip_through_the_status() {
        let v = random_letters();
        assert_eq!(v.len(), 10);
        assert!(v.chars().all(|c| c.is_ascii_alphabetic()), "{v}");
        let cookies = StickyCookies {
            canary: Some(format!("flagger-cookie={v}")),
            primary: None,
            previous: Some("flagger-cookie=old".into()),
        };
        let mut status = CanaryStatus::default();
        set_cookies(&mut status, &cookies);
        assert_eq!(cookies_of(Some(&status)), cookies);
    }

    #[test]
    fn up_to_date_ignores_foreign_metadata_but_not_the_spec() {
        let desired = serde_json::json!({
            "metadata": {"name": "a", "labels": {"x": "1"}},
            "spec": {"w": 1},
        });
        let existing = serde_json::json!({
            "metadata": {"name": "a", "labels": {"x": "1", "other": "2"}, "annotations": {"k": "v"}},
            "spec": {"w": 1},
        });
        assert!(up_to_date(&desired, &existing));
        let moved = serde_json::json!({"metadata": existing["metadata"], "spec": {"w": 2}});
        assert!(!up_to_date(&desired, &moved));
    }
}
