//! Cached objects kept as compressed JSON text.
//!
//! A typed copy of a Kubernetes object takes several times the bytes of its JSON: every
//! optional field of a pod template is inline in the struct whether it is set or not (measured
//! with `/debug/memory` at 1,000 canaries: about 10 KiB per cached Deployment against 1.6 KiB of
//! JSON, 3.9 KiB per Service against 1.4 KiB), and a `serde_json::Value` tree of a routing object
//! takes five to six times its text. The watch caches therefore keep each object as the JSON
//! the controller received (after trimming), LZ4-compressed against a dictionary of typical
//! objects, with only the metadata the watch mappers read (name, namespace, a Canary owner
//! reference) as fields, and read it back into its type when a decision asks for it.
//!
//! ## Why a dictionary
//!
//! One object alone compresses poorly (a Deployment of 1.5 KiB to about 1 KiB with LZ4): its
//! text is mostly the key names every object of its kind repeats. Compressed against a
//! dictionary holding one object of each kind the controller caches
//! (`packed-dictionary.json`: a ConfigMap, an HPA, Istio's VirtualService and DestinationRule,
//! an HTTPRoute, Services, Deployments and a primary Deployment, as an API server returns them),
//! a Deployment of another name and image takes under 300 bytes and a Service under 200.
//! The dictionary is part of the program; any object packs against it, a kind it lacks only
//! compresses less. LZ4 (`lz4_flex`, pure Rust) because a read must be cheap: decompressing a
//! Deployment takes well under a microsecond, against tens for reading its JSON.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use futures::{Stream, TryStreamExt};
use kube::Resource;
use kube::api::ObjectMeta;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// The dictionary the texts are compressed against (see the module docs).
static DICTIONARY: &[u8] = include_bytes!("packed-dictionary.json");

/// Why a packed object did not read back.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("its compressed text is damaged: {0}")]
    Decompress(#[from] lz4_flex::block::DecompressError),
    #[error("its text does not read as the kind: {0}")]
    Read(#[from] serde_json::Error),
}

/// An object of kind `K` kept as compressed JSON text, with the metadata that identifies it.
pub struct Packed<K> {
    meta: ObjectMeta,
    text: Box<[u8]>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Packed<K>
where
    K: Resource + Serialize,
{
    /// Packs `object`: its compressed JSON text, and as metadata its name, namespace and the
    /// owner references the watch mappers follow (a Canary's, as controller; without their
    /// uid, which nothing reads from the metadata).
    pub fn pack(object: &K) -> Self {
        let m = object.meta();
        let owners: Vec<_> = m
            .owner_references
            .iter()
            .flatten()
            .filter(|o| crate::owner::is_canary_controller(o))
            .map(
                |o| k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                    api_version: o.api_version.clone(),
                    kind: o.kind.clone(),
                    name: o.name.clone(),
                    controller: o.controller,
                    ..Default::default()
                },
            )
            .collect();
        let meta = ObjectMeta {
            name: m.name.clone(),
            namespace: m.namespace.clone(),
            owner_references: (!owners.is_empty()).then_some(owners),
            ..ObjectMeta::default()
        };
        // Serializing a Kubernetes object to JSON cannot fail (string keys only); were it to,
        // the empty text fails to unpack and the read goes to the API server.
        let json = serde_json::to_vec(object).unwrap_or_default();
        let text = if json.is_empty() {
            Vec::new()
        } else {
            lz4_flex::block::compress_prepend_size_with_dict(&json, DICTIONARY)
        };
        Self {
            meta,
            text: text.into_boxed_slice(),
            kind: PhantomData,
        }
    }
}

impl<K: DeserializeOwned> Packed<K> {
    /// The object read back for a cache read (`kind` names it in the log): `None` when its
    /// text does not read back, logged, so that the caller asks the API server instead.
    pub fn read(&self, kind: &str) -> Option<K> {
        match self.unpack() {
            Ok(o) => Some(o),
            Err(e) => {
                tracing::warn!(
                    kind,
                    object = %format!(
                        "{}.{}",
                        self.meta.name.as_deref().unwrap_or_default(),
                        self.meta.namespace.as_deref().unwrap_or_default()
                    ),
                    "cached copy does not read back ({e}); reading from the API server"
                );
                None
            }
        }
    }

    /// The object, read back from its text.
    pub fn unpack(&self) -> Result<K, UnpackError> {
        let json = lz4_flex::block::decompress_size_prepended_with_dict(&self.text, DICTIONARY)?;
        Ok(serde_json::from_slice(&json)?)
    }
}

impl<K> Packed<K> {
    /// Bytes of the compressed text.
    pub fn packed_len(&self) -> usize {
        self.text.len()
    }
}

impl<K> Clone for Packed<K> {
    fn clone(&self) -> Self {
        Self {
            meta: self.meta.clone(),
            text: self.text.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> fmt::Debug for Packed<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packed")
            .field("namespace", &self.meta.namespace)
            .field("name", &self.meta.name)
            .field("bytes", &self.text.len())
            .finish()
    }
}

impl<K: Resource> Resource for Packed<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn api_version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::api_version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

/// Read as `K`, then packed (kube-runtime's trigger streams ask their objects to be
/// deserializable; the controller's feeds hand it objects already packed).
impl<'de, K> Deserialize<'de> for Packed<K>
where
    K: Resource + Serialize + DeserializeOwned,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        K::deserialize(d).map(|k| Self::pack(&k))
    }
}

/// A watch stream's events with their objects packed.
pub fn events<K, S>(
    stream: S,
) -> impl Stream<Item = Result<watcher::Event<Packed<K>>, watcher::Error>> + Send
where
    K: Resource + Serialize + Send,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    stream.map_ok(|event| match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(Packed::pack(&o)),
        watcher::Event::Delete(o) => watcher::Event::Delete(Packed::pack(&o)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(o) => watcher::Event::InitApply(Packed::pack(&o)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::DynamicObject;

    fn deployment() -> Deployment {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "podinfo", "namespace": "test", "resourceVersion": "42",
                "labels": {"app": "podinfo"},
                "ownerReferences": [{"apiVersion": "flagger.app/v1beta1", "kind": "Canary",
                    "name": "podinfo", "uid": "u1", "controller": true}]},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "podinfo"}},
                "template": {"metadata": {"labels": {"app": "podinfo"}},
                    "spec": {"containers": [{"name": "podinfo", "image": "podinfo:6.0.0",
                        "resources": {"requests": {"cpu": "100m"}},
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 9898},
                            "periodSeconds": 10}}]}}},
            "status": {"replicas": 2, "readyReplicas": 2, "observedGeneration": 3,
                "conditions": [{"type": "Available", "status": "True",
                    "lastUpdateTime": "2026-12-04T15:00:00Z", "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability."}]}
        }))
        .unwrap()
    }

    #[test]
    fn an_object_reads_back_as_it_was_packed() {
        let d = deployment();
        let p = Packed::pack(&d);
        assert_eq!(p.unpack().unwrap(), d);
        // The metadata the watch mappers read, and nothing more.
        assert_eq!(p.meta().name.as_deref(), Some("podinfo"));
        assert_eq!(p.meta().namespace.as_deref(), Some("test"));
        assert!(p.meta().resource_version.is_none());
        let owners = p.meta().owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1);
        assert_eq!(
            (owners[0].kind.as_str(), owners[0].name.as_str()),
            ("Canary", "podinfo")
        );
        assert_eq!(owners[0].controller, Some(true));
        assert!(owners[0].uid.is_empty());
        assert!(p.meta().labels.is_none());
        // Other owners are not followed: not kept.
        let mut d = d;
        d.metadata.owner_references.as_mut().unwrap()[0].kind = "ReplicaSet".into();
        assert!(Packed::pack(&d).meta().owner_references.is_none());
        assert_eq!(Packed::<Deployment>::kind(&()), "Deployment");
        assert_eq!(Packed::<Deployment>::plural(&()), "deployments");
    }

    #[test]
    fn a_dynamic_object_keeps_its_kind() {
        let o: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "podinfo", "namespace": "test", "resourceVersion": "7"},
            "spec": {"hosts": ["podinfo"], "http": [{"route": [
                {"destination": {"host": "podinfo-primary"}, "weight": 90},
                {"destination": {"host": "podinfo-canary"}, "weight": 10}]}]}
        }))
        .unwrap();
        let p = Packed::pack(&o);
        let back = p.unpack().unwrap();
        assert_eq!(back, o);
        assert_eq!(back.types.unwrap().kind, "VirtualService");
    }

    #[test]
    fn a_deployment_packs_to_a_fraction_of_its_json() {
        // Another name, image and probe than the dictionary's Deployments.
        let d = deployment();
        let json = serde_json::to_vec(&d).unwrap().len();
        let p = Packed::pack(&d);
        assert!(
            p.packed_len() * 3 < json,
            "{} bytes packed of {json} bytes of JSON",
            p.packed_len()
        );
    }

    #[test]
    fn an_object_of_a_kind_the_dictionary_lacks_reads_back() {
        let o: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "test"},
            "spec": {"size": 3, "colour": "blue", "parts": ["a", "b", "c"]}
        }))
        .unwrap();
        assert_eq!(Packed::pack(&o).unpack().unwrap(), o);
    }

    #[test]
    fn text_that_does_not_read_back_is_an_error() {
        let mut p = Packed::pack(&deployment());
        p.text = Box::default();
        assert!(matches!(p.unpack(), Err(UnpackError::Decompress(_))));
        // Text that decompresses but is not a Deployment.
        let other = Packed::<DynamicObject>::pack(
            &serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c"}, "data": {"replicas": "many"}
            }))
            .unwrap(),
        );
        p.text = other.text.clone();
        assert!(matches!(p.unpack(), Err(UnpackError::Read(_))));
    }
}
