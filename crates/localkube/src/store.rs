//! The in-memory object store: objects as JSON, one global monotonically increasing
//! resourceVersion, a retained window of change events for watches, and a broadcast channel so
//! that in-process subscribers (simulated controllers, a future data plane) observe every change.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

/// Retained events to replay, then a receiver for the live ones.
pub type WatchStart = (Vec<Arc<StoreEvent>>, broadcast::Receiver<Arc<StoreEvent>>);

/// Identifies a stored resource type: group, (storage) version and plural.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub group: String,
    pub version: String,
    pub resource: String,
}

impl ResourceKey {
    pub fn new(group: &str, version: &str, resource: &str) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
        }
    }
}

/// The kind of change an event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to the store.
#[derive(Clone, Debug)]
pub struct StoreEvent {
    pub type_: EventType,
    pub key: ResourceKey,
    pub namespace: String,
    pub name: String,
    /// The object after the change (for DELETED: the last state, with the deletion's
    /// resourceVersion).
    pub object: Value,
    /// The object before the change, if any.
    pub old: Option<Value>,
    pub resource_version: u64,
}

/// What a write closure decides.
#[derive(Debug)]
pub enum Write {
    /// Store this object (creating or replacing).
    Put(Value),
    /// Remove the object.
    Delete,
    /// Change nothing.
    Keep,
}

/// The outcome of a write.
#[derive(Debug, Clone)]
pub enum Written {
    Put(Value),
    Deleted(Value),
    Unchanged(Option<Value>),
}

type Objects = BTreeMap<(String, String), Value>;

/// Where an object lives: its resource, namespace and name.
pub type ObjectRef = (ResourceKey, String, String);

#[derive(Default)]
struct Inner {
    rv: u64,
    data: HashMap<ResourceKey, Objects>,
    history: VecDeque<Arc<StoreEvent>>,
    /// The highest resourceVersion whose event was dropped from the history.
    compacted: u64,
    /// Every stored object by `metadata.uid`.
    uids: HashMap<String, ObjectRef>,
    /// Owner uid → the objects naming it in an ownerReference.
    dependents: HashMap<String, BTreeSet<ObjectRef>>,
    /// The resourceVersion of the last change to each resource (caches of derived state).
    changed: HashMap<ResourceKey, u64>,
}

fn obj_uid(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
}

fn owner_uids(obj: &Value) -> impl Iterator<Item = &str> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
}

impl Inner {
    /// Removes `old` (stored at `at`) from the indexes.
    fn unindex(&mut self, at: &ObjectRef, old: &Value) {
        if let Some(u) = obj_uid(old)
            && self.uids.get(u) == Some(at)
        {
            self.uids.remove(u);
        }
        for o in owner_uids(old) {
            if let Some(set) = self.dependents.get_mut(o) {
                set.remove(at);
                if set.is_empty() {
                    self.dependents.remove(o);
                }
            }
        }
    }

    /// Adds `new` (stored at `at`) to the indexes.
    fn index(&mut self, at: &ObjectRef, new: &Value) {
        if let Some(u) = obj_uid(new) {
            self.uids.insert(u.to_string(), at.clone());
        }
        for o in owner_uids(new) {
            self.dependents
                .entry(o.to_string())
                .or_default()
                .insert(at.clone());
        }
    }

    /// Re-indexes an object replaced from `old` to `new`, touching only what changed.
    fn reindex(&mut self, at: &ObjectRef, old: Option<&Value>, new: &Value) {
        if let Some(old) = old {
            let same = obj_uid(old) == obj_uid(new)
                && old.pointer("/metadata/ownerReferences")
                    == new.pointer("/metadata/ownerReferences");
            if same {
                return;
            }
            self.unindex(at, old);
        }
        self.index(at, new);
    }
}

/// The watch window was compacted past the requested resourceVersion.
#[derive(Debug, Clone, Copy)]
pub struct Expired {
    pub oldest: u64,
}

/// The store.
pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<StoreEvent>>,
    window: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("window", &self.window)
            .finish()
    }
}

fn ns_name(obj: &Value) -> (String, String) {
    let md = &obj["metadata"];
    (
        md["namespace"].as_str().unwrap_or_default().to_string(),
        md["name"].as_str().unwrap_or_default().to_string(),
    )
}

impl Store {
    /// A store retaining `window` events for watch resumption.
    pub fn new(window: usize) -> Self {
        let (tx, _) = broadcast::channel(window.clamp(1024, 1 << 16));
        Self {
            inner: Mutex::new(Inner {
                rv: 1,
                ..Default::default()
            }),
            tx,
            window: window.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The resourceVersion of the last change to any of `keys` (0: never changed), so a cache
    /// derived from them knows when to rebuild.
    pub fn changed_at(&self, keys: &[ResourceKey]) -> u64 {
        let inner = self.lock();
        keys.iter()
            .filter_map(|k| inner.changed.get(k))
            .copied()
            .max()
            .unwrap_or(0)
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    pub fn get(&self, key: &ResourceKey, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .data
            .get(key)
            .and_then(|m| m.get(&(namespace.to_string(), name.to_string())))
            .cloned()
    }

    /// All objects of a resource (in one namespace when given), sorted by namespace and name,
    /// with the resourceVersion of the snapshot.
    pub fn list(&self, key: &ResourceKey, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = match inner.data.get(key) {
            None => Vec::new(),
            Some(m) => match namespace {
                Some(ns) => m
                    .range((ns.to_string(), String::new())..)
                    .take_while(|((n, _), _)| n == ns)
                    .map(|(_, v)| v.clone())
                    .collect(),
                None => m.values().cloned().collect(),
            },
        };
        (items, inner.rv)
    }

    /// One page of a list: the objects (in one namespace when given) after `after`
    /// (`(namespace, name)`, exclusive) that satisfy `keep`, at most `limit` of them, in
    /// namespace/name order. Returns the page, how many more matching objects follow it, and
    /// the resourceVersion of the snapshot. Filtering happens under the lock, so only the
    /// objects returned are cloned.
    pub fn page(
        &self,
        key: &ResourceKey,
        namespace: Option<&str>,
        after: Option<(&str, &str)>,
        keep: impl Fn(&Value) -> bool,
        limit: Option<usize>,
    ) -> (Vec<Value>, usize, u64) {
        let inner = self.lock();
        let Some(m) = inner.data.get(key) else {
            return (Vec::new(), 0, inner.rv);
        };
        let start = match (namespace, after) {
            (_, Some((ans, aname))) => {
                std::ops::Bound::Excluded((ans.to_string(), aname.to_string()))
            }
            (Some(ns), None) => std::ops::Bound::Included((ns.to_string(), String::new())),
            (None, None) => std::ops::Bound::Unbounded,
        };
        let limit = limit.unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut remaining = 0;
        for ((ns, _), v) in m.range((start, std::ops::Bound::Unbounded)) {
            if namespace.is_some_and(|want| want != ns) {
                break;
            }
            if !keep(v) {
                continue;
            }
            if items.len() < limit {
                items.push(v.clone());
            } else {
                remaining += 1;
            }
        }
        (items, remaining, inner.rv)
    }

    /// Where the object with this uid is stored, if it is.
    pub fn by_uid(&self, uid: &str) -> Option<ObjectRef> {
        self.lock().uids.get(uid).cloned()
    }

    /// Whether an object with this uid is stored.
    pub fn uid_exists(&self, uid: &str) -> bool {
        self.lock().uids.contains_key(uid)
    }

    /// The objects naming `owner_uid` in an ownerReference, with where they are stored, in
    /// resource, namespace and name order.
    pub fn dependents(&self, owner_uid: &str) -> Vec<(ObjectRef, Value)> {
        let inner = self.lock();
        let Some(set) = inner.dependents.get(owner_uid) else {
            return Vec::new();
        };
        set.iter()
            .filter_map(|at| {
                let v = inner.data.get(&at.0)?.get(&(at.1.clone(), at.2.clone()))?;
                Some((at.clone(), v.clone()))
            })
            .collect()
    }

    /// The objects of one resource naming `owner_uid` in an ownerReference, in namespace and
    /// name order.
    pub fn owned(&self, key: &ResourceKey, owner_uid: &str) -> Vec<Value> {
        let inner = self.lock();
        let (Some(set), Some(m)) = (inner.dependents.get(owner_uid), inner.data.get(key)) else {
            return Vec::new();
        };
        set.iter()
            .filter(|at| &at.0 == key)
            .filter_map(|at| m.get(&(at.1.clone(), at.2.clone())).cloned())
            .collect()
    }

    /// The (namespace, name) of every object of a resource, without cloning the objects.
    pub fn keys(&self, key: &ResourceKey) -> Vec<(String, String)> {
        self.lock()
            .data
            .get(key)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Counts objects of a resource.
    pub fn count(&self, key: &ResourceKey) -> usize {
        self.lock().data.get(key).map_or(0, |m| m.len())
    }

    /// Atomically reads the current object and writes what `f` decides. On `Put`, the store
    /// assigns `metadata.resourceVersion` (and `uid`/`creationTimestamp` for new objects). With
    /// `dry_run`, nothing is stored nor announced but the result is computed the same way.
    pub fn write<E>(
        &self,
        key: &ResourceKey,
        namespace: &str,
        name: &str,
        dry_run: bool,
        f: impl FnOnce(Option<&Value>) -> Result<Write, E>,
    ) -> Result<Written, E> {
        let mut inner = self.lock();
        let id = (namespace.to_string(), name.to_string());
        let current = inner.data.get(key).and_then(|m| m.get(&id)).cloned();
        let decision = f(current.as_ref())?;
        let rv = inner.rv + 1;
        match decision {
            Write::Keep => Ok(Written::Unchanged(current)),
            Write::Put(mut obj) => {
                if let Some(md) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    if current.is_none() {
                        if md
                            .get("uid")
                            .and_then(Value::as_str)
                            .is_none_or(str::is_empty)
                        {
                            md.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
                        }
                        if md.get("creationTimestamp").is_none_or(Value::is_null) {
                            md.insert("creationTimestamp".into(), crate::util::now().into());
                        }
                    }
                    if !dry_run {
                        md.insert("resourceVersion".into(), rv.to_string().into());
                    }
                }
                if dry_run {
                    return Ok(Written::Put(obj));
                }
                inner.rv = rv;
                let type_ = if current.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                let at = (key.clone(), id.0.clone(), id.1.clone());
                inner.reindex(&at, current.as_ref(), &obj);
                inner
                    .data
                    .entry(key.clone())
                    .or_default()
                    .insert(id, obj.clone());
                self.record(
                    &mut inner,
                    type_,
                    key,
                    namespace,
                    name,
                    obj.clone(),
                    current,
                );
                Ok(Written::Put(obj))
            }
            Write::Delete => {
                let Some(mut old) = current else {
                    return Ok(Written::Unchanged(None));
                };
                if dry_run {
                    return Ok(Written::Deleted(old));
                }
                inner.rv = rv;
                if let Some(m) = inner.data.get_mut(key) {
                    m.remove(&id);
                }
                let at = (key.clone(), id.0.clone(), id.1.clone());
                inner.unindex(&at, &old);
                let before = old.clone();
                if let Some(md) = old.get_mut("metadata").and_then(Value::as_object_mut) {
                    md.insert("resourceVersion".into(), rv.to_string().into());
                }
                self.record(
                    &mut inner,
                    EventType::Deleted,
                    key,
                    namespace,
                    name,
                    old.clone(),
                    Some(before),
                );
                Ok(Written::Deleted(old))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        inner: &mut Inner,
        type_: EventType,
        key: &ResourceKey,
        namespace: &str,
        name: &str,
        object: Value,
        old: Option<Value>,
    ) {
        let ev = Arc::new(StoreEvent {
            type_,
            key: key.clone(),
            namespace: namespace.into(),
            name: name.into(),
            object,
            old,
            resource_version: inner.rv,
        });
        inner.changed.insert(key.clone(), inner.rv);
        inner.history.push_back(ev.clone());
        while inner.history.len() > self.window {
            if let Some(dropped) = inner.history.pop_front() {
                inner.compacted = dropped.resource_version;
            }
        }
        // No receivers is fine.
        let _ = self.tx.send(ev);
    }

    /// Removes every object of a resource (used when a CRD goes away), announcing each deletion.
    pub fn remove_all(&self, key: &ResourceKey) -> usize {
        let mut inner = self.lock();
        let Some(objects) = inner.data.remove(key) else {
            return 0;
        };
        let n = objects.len();
        for ((ns, name), mut obj) in objects {
            let at = (key.clone(), ns.clone(), name.clone());
            inner.unindex(&at, &obj);
            inner.rv += 1;
            let before = obj.clone();
            if let Some(md) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                md.insert("resourceVersion".into(), inner.rv.to_string().into());
            }
            self.record(
                &mut inner,
                EventType::Deleted,
                key,
                &ns,
                &name,
                obj,
                Some(before),
            );
        }
        n
    }

    /// Subscribes to all future changes.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoreEvent>> {
        self.tx.subscribe()
    }

    /// Retained events after `rv` plus a receiver for the ones to come, taken atomically; or
    /// `Expired` when events after `rv` were already dropped from the window.
    pub fn watch_from(&self, rv: u64) -> Result<WatchStart, Expired> {
        let inner = self.lock();
        if rv < inner.compacted {
            return Err(Expired {
                oldest: inner.compacted + 1,
            });
        }
        let start = inner.history.partition_point(|e| e.resource_version <= rv);
        let past = inner.history.iter().skip(start).cloned().collect();
        Ok((past, self.tx.subscribe()))
    }

    /// A consistent snapshot of a resource plus a receiver for later changes.
    pub fn list_and_subscribe(
        &self,
        key: &ResourceKey,
        namespace: Option<&str>,
    ) -> (Vec<Value>, u64, broadcast::Receiver<Arc<StoreEvent>>) {
        let inner = self.lock();
        let rx = self.tx.subscribe();
        let items = match inner.data.get(key) {
            None => Vec::new(),
            Some(m) => m
                .iter()
                .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
                .map(|(_, v)| v.clone())
                .collect(),
        };
        (items, inner.rv, rx)
    }

    /// The identity (namespace, name) of an object.
    pub fn identity(obj: &Value) -> (String, String) {
        ns_name(obj)
    }
}
