//! Objects of kinds the controller only knows at run time (the routers' custom resources,
//! Ingresses, Knative Services, KEDA ScaledObjects) read from watch caches, so that an idle tick
//! asks the API server nothing whatever the provider.
//!
//! ## When a kind is watched
//!
//! A kind gets its watch the first time a read of it finds an object, or a write of it succeeds:
//! the kind is then served
//! (its CRD is installed) and in use by a canary. A cluster without Istio never gets an Istio
//! watch, so a missing CRD neither fails the controller nor fills its log with watch errors;
//! a kind whose CRD goes away later keeps its last state and its watch retries with a backoff.
//! The watch has the controller's scope (`-namespace`), except for cluster-scoped kinds (Kuma's
//! TrafficRoute).
//!
//! ## Reads
//!
//! Until its first list has arrived, and for objects its store does not hold (not created yet,
//! or outside the watched namespace), a read asks the API server, as [`crate::cache::get`]
//! does for the typed kinds.
//!
//! The store can lag behind a write the controller itself just made: reading the old weights
//! back right after `set_routes` would repeat a step. Every write's answer is therefore kept
//! ([`Objects::wrote`]) and read instead of the store's copy until the store holds that
//! version or a later one (resourceVersions compared as numbers, which every API server in use
//! issues; an unreadable one retires the kept copy when the store shows exactly it), or for at
//! most [`WRITTEN_TTL`].
//!
//! ## What is kept
//!
//! Each cached object is kept as its JSON text ([`Packed`]: a `serde_json::Value` tree takes
//! five to six times the bytes) and read back on each read. Cached copies drop what no decision reads: the value of
//! `kubectl.kubernetes.io/last-applied-configuration` (its presence is read when taking over a
//! VirtualService; its value only when giving it back on deletion, from the API server), and the
//! status writers' and our own entries' field sets in `managedFields` (the fight detector needs
//! only who else wrote which fields, and that we wrote at all); see [`trim`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::packed::Packed;

/// How long a write's answer may stand in for the store's copy.
pub const WRITTEN_TTL: Duration = Duration::from_secs(30);

/// A kind: its apiVersion and plural.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct KindKey {
    api_version: String,
    plural: String,
}

impl KindKey {
    fn of(ar: &ApiResource) -> Self {
        Self {
            api_version: ar.api_version.clone(),
            plural: ar.plural.clone(),
        }
    }
}

/// An object of a kind: `namespace` is `None` for a cluster-scoped one.
type ObjectKey = (KindKey, Option<String>, String);

struct Watched {
    ar: ApiResource,
    store: Store<Packed<DynamicObject>>,
    task: tokio::task::JoinHandle<()>,
}

struct Written {
    object: Arc<DynamicObject>,
    at: Instant,
}

struct Inner {
    client: Client,
    /// `-namespace`: the scope of namespaced kinds' watches.
    namespace: Option<String>,
    kinds: Mutex<HashMap<KindKey, Watched>>,
    written: Mutex<HashMap<ObjectKey, Written>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let kinds = self.kinds.get_mut().unwrap_or_else(|e| e.into_inner());
        for w in kinds.values() {
            w.task.abort();
        }
    }
}

/// The stores of the kinds watched so far; clones share them. The watches end when the last
/// clone goes (or at [`Objects::stop`]).
#[derive(Clone)]
pub struct Objects(Arc<Inner>);

impl Objects {
    /// No kind watched yet; watches run through `client`, limited to `namespace` if set.
    pub fn new(client: Client, namespace: Option<&str>) -> Self {
        Self(Arc::new(Inner {
            client,
            namespace: namespace.map(String::from),
            kinds: Mutex::default(),
            written: Mutex::default(),
        }))
    }

    /// The client the watches run through.
    pub fn client(&self) -> &Client {
        &self.0.client
    }

    /// Ends every watch (controller shutdown).
    pub fn stop(&self) {
        let kinds = self.0.kinds.lock().unwrap_or_else(|e| e.into_inner());
        for w in kinds.values() {
            w.task.abort();
        }
    }

    /// The kinds watched so far, as `plural.apiVersion` (for logs and tests).
    pub fn watched(&self) -> Vec<String> {
        let kinds = self.0.kinds.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<String> = kinds
            .keys()
            .map(|k| format!("{}.{}", k.plural, k.api_version))
            .collect();
        v.sort();
        v
    }

    /// The stores of the kinds watched so far, by `plural.apiVersion` (for
    /// [`crate::memory`]).
    pub fn stores(&self) -> Vec<(String, ApiResource, Store<Packed<DynamicObject>>)> {
        let kinds = self.0.kinds.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = kinds
            .iter()
            .map(|(k, w)| {
                (
                    format!("{}.{}", k.plural, k.api_version),
                    w.ar.clone(),
                    w.store.clone(),
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// An API handle for a kind in `namespace` that reads through these caches.
    pub fn namespaced(&self, client: &Client, namespace: &str, ar: ApiResource) -> CachedApi {
        CachedApi {
            api: Api::namespaced_with(client.clone(), namespace, &ar),
            namespace: Some(namespace.to_string()),
            ar,
            objects: self.clone(),
        }
    }

    /// An API handle for a cluster-scoped kind that reads through these caches.
    pub fn cluster(&self, client: &Client, ar: ApiResource) -> CachedApi {
        CachedApi {
            api: Api::all_with(client.clone(), &ar),
            namespace: None,
            ar,
            objects: self.clone(),
        }
    }

    /// A kind's store, once its first list arrived.
    fn ready_store(&self, kind: &KindKey) -> Option<Store<Packed<DynamicObject>>> {
        let kinds = self.0.kinds.lock().unwrap_or_else(|e| e.into_inner());
        let store = kinds.get(kind)?.store.clone();
        drop(kinds);
        // Resolves at once when the store has listed.
        matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))).then_some(store)
    }

    /// Starts the watch of a kind unless it runs already.
    fn watch(&self, ar: &ApiResource, cluster_scoped: bool) {
        let key = KindKey::of(ar);
        let mut kinds = self.0.kinds.lock().unwrap_or_else(|e| e.into_inner());
        if kinds.contains_key(&key) {
            return;
        }
        let client = self.0.client.clone();
        let api: Api<DynamicObject> = match (&self.0.namespace, cluster_scoped) {
            (Some(ns), false) => Api::namespaced_with(client, ns, ar),
            _ => Api::all_with(client, ar),
        };
        let writer = reflector::store::Writer::new(ar.clone());
        let store = writer.as_reader();
        let kind = format!("{}.{}", ar.plural, ar.api_version);
        tracing::debug!(kind = %kind, "watching a routing kind");
        let events = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(trim);
        let stream = crate::packed::events(events)
            .reflect(writer)
            .touched_objects();
        let task = tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(item) = stream.next().await {
                if let Err(e) = item {
                    tracing::debug!(kind = %kind, "watch error (retrying): {e}");
                }
            }
        });
        kinds.insert(
            key,
            Watched {
                ar: ar.clone(),
                store,
                task,
            },
        );
    }

    /// Keeps the answer of a write to `object` (see the module docs).
    pub fn wrote(&self, ar: &ApiResource, object: DynamicObject) {
        let Some(name) = object.metadata.name.clone() else {
            return;
        };
        let key = (KindKey::of(ar), object.metadata.namespace.clone(), name);
        let mut object = object;
        trim(&mut object);
        let mut written = self.0.written.lock().unwrap_or_else(|e| e.into_inner());
        written.retain(|_, w| w.at.elapsed() < WRITTEN_TTL);
        written.insert(
            key,
            Written {
                object: Arc::new(object),
                at: Instant::now(),
            },
        );
    }

    /// Forgets a kept write (the object was deleted or replaced outside [`Objects::wrote`]).
    fn forget(&self, key: &ObjectKey) {
        let mut written = self.0.written.lock().unwrap_or_else(|e| e.into_inner());
        written.remove(key);
    }

    /// What the caches say about an object: `Some(found)` when they can answer, `None` when
    /// the API server must be asked.
    fn cached(
        &self,
        ar: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Arc<DynamicObject>> {
        let kind = KindKey::of(ar);
        let key: ObjectKey = (kind.clone(), namespace.map(String::from), name.to_string());
        let stored = self.ready_store(&kind).and_then(|store| {
            let r = ObjectRef::new_with(name, ar.clone());
            let r = match namespace {
                Some(ns) => r.within(ns),
                None => r,
            };
            store.get(&r)?.read(&ar.kind).map(Arc::new)
        });
        let mut written = self.0.written.lock().unwrap_or_else(|e| e.into_inner());
        let Some(w) = written.get(&key) else {
            return stored;
        };
        if w.at.elapsed() >= WRITTEN_TTL {
            written.remove(&key);
            return None;
        }
        match stored {
            Some(s) if caught_up(&s, &w.object) => {
                written.remove(&key);
                Some(s)
            }
            _ => Some(w.object.clone()),
        }
    }
}

/// Whether `stored` is the version `written` produced or a later one.
fn caught_up(stored: &DynamicObject, written: &DynamicObject) -> bool {
    let (s, w) = (
        stored
            .metadata
            .resource_version
            .as_deref()
            .unwrap_or_default(),
        written
            .metadata
            .resource_version
            .as_deref()
            .unwrap_or_default(),
    );
    match (s.parse::<u64>(), w.parse::<u64>()) {
        (Ok(s), Ok(w)) => s >= w,
        _ => s == w,
    }
}

/// Drops from a cached copy what no decision reads (see the module docs).
pub fn trim(o: &mut DynamicObject) {
    let meta = &mut o.metadata;
    // Its presence decides whether a taken-over VirtualService's spec is remembered; its
    // value is read only on deletion, from the API server.
    if let Some(v) = meta
        .annotations
        .as_mut()
        .and_then(|a| a.get_mut(flagger_api::labels::LAST_APPLIED))
    {
        v.clear();
    }
    if let Some(entries) = meta.managed_fields.as_mut() {
        entries.retain(|e| e.subresource.as_deref() != Some("status"));
        for e in entries.iter_mut() {
            if e.manager.as_deref() == Some(crate::write::FIELD_MANAGER) {
                e.fields_v1 = None;
            }
        }
    }
}

/// An API handle of one kind (namespaced or cluster-scoped) whose reads go through
/// [`Objects`]; writes go to the API server through the [`Api`] it dereferences to, and their
/// answers are kept with [`CachedApi::wrote`].
#[derive(Clone)]
pub struct CachedApi {
    api: Api<DynamicObject>,
    ar: ApiResource,
    namespace: Option<String>,
    objects: Objects,
}

impl std::ops::Deref for CachedApi {
    type Target = Api<DynamicObject>;
    fn deref(&self) -> &Api<DynamicObject> {
        &self.api
    }
}

impl CachedApi {
    /// A kind named by apiVersion, kind and plural.
    pub fn resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    }

    /// The kind.
    pub fn api_resource(&self) -> &ApiResource {
        &self.ar
    }

    /// Reads `name` from the cache, or from the API server when the cache cannot answer; the
    /// kind is watched from its first object found. `Ok(None)`: it does not exist.
    pub async fn get_cached(&self, name: &str) -> Result<Option<Arc<DynamicObject>>, kube::Error> {
        if let Some(o) = self
            .objects
            .cached(&self.ar, self.namespace.as_deref(), name)
        {
            return Ok(Some(o));
        }
        let found = self.api.get_opt(name).await?;
        if found.is_some() {
            self.objects.watch(&self.ar, self.namespace.is_none());
        }
        Ok(found.map(Arc::new))
    }

    /// Keeps the answer of a write to this kind, and watches the kind (the write shows it is
    /// served).
    pub fn wrote(&self, object: DynamicObject) {
        self.objects.wrote(&self.ar, object);
        self.objects.watch(&self.ar, self.namespace.is_none());
    }

    /// Forgets a kept write of `name` (after a delete).
    pub fn forget(&self, name: &str) {
        self.objects.forget(&(
            KindKey::of(&self.ar),
            self.namespace.clone(),
            name.to_string(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(rv: &str) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {
                "name": "podinfo", "namespace": "test", "resourceVersion": rv,
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "keep": "me"
                },
                "managedFields": [
                    {"manager": "flagger", "operation": "Apply", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:spec": {}}},
                    {"manager": "kubectl-edit", "operation": "Update", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:spec": {"f:http": {}}}},
                    {"manager": "istiod", "operation": "Update", "subresource": "status",
                     "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}
                ]
            },
            "spec": {"hosts": ["podinfo"]}
        }))
        .expect("object")
    }

    #[test]
    fn a_later_or_equal_version_catches_up_with_a_write() {
        assert!(caught_up(&object("12"), &object("12")));
        assert!(caught_up(&object("13"), &object("12")));
        assert!(!caught_up(&object("11"), &object("12")));
        // Not numbers: only the same version.
        assert!(caught_up(&object("a"), &object("a")));
        assert!(!caught_up(&object("b"), &object("a")));
    }

    #[test]
    fn trimming_keeps_what_the_fight_detector_reads() {
        let mut o = object("1");
        trim(&mut o);
        let annotations = o.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations
                .get(flagger_api::labels::LAST_APPLIED)
                .map(String::as_str),
            Some(""),
            "present, without its copy of the object"
        );
        assert_eq!(annotations.get("keep").map(String::as_str), Some("me"));
        let managed = o.metadata.managed_fields.clone().unwrap_or_default();
        let managers: Vec<_> = managed.iter().filter_map(|m| m.manager.clone()).collect();
        assert_eq!(managers, ["flagger", "kubectl-edit"]);
        assert!(managed[0].fields_v1.is_none(), "our own entry is a marker");
        assert!(
            managed[1].fields_v1.is_some(),
            "another writer's fields are kept"
        );
        assert_eq!(o.data["spec"]["hosts"][0], "podinfo");
    }
}
