//! The in-memory object store: objects as JSON, one global monotonically increasing
//! resourceVersion, a retained window of change events for watches, and a broadcast channel so
//! that in-process subscribers (simulated controllers, a future data plane) observe every change.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

use crate::selectors::LabelSelector;

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
    /// resourceVersion), shared with the store.
    pub object: Arc<Value>,
    /// The object before the change, if any.
    pub old: Option<Arc<Value>>,
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

/// The objects of one resource by (namespace, name). Each is shared (`Arc`): readers and change
/// events take a reference under the lock and copy, if they must, after releasing it.
type Objects = BTreeMap<(String, String), Arc<Value>>;

/// Deep copies of shared objects (made outside the store's lock).
fn owned(items: Vec<Arc<Value>>) -> Vec<Value> {
    items.into_iter().map(Arc::unwrap_or_clone).collect()
}

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
    /// Object uid → the objects naming it as `involvedObject` (Events), so that an event
    /// recorder finds the events about an object without scanning its namespace.
    involved: HashMap<String, BTreeSet<ObjectRef>>,
    /// The resourceVersion of the last change to each resource (caches of derived state).
    changed: HashMap<ResourceKey, u64>,
    /// Label-indexed resources (those registered with [`Store::index_labels`]): (namespace,
    /// label key, label value) → the names of the objects carrying that label, so that a
    /// selector with an equality finds its objects without scanning the namespace, as an
    /// informer's index answers a controller.
    labels: HashMap<ResourceKey, LabelIndex>,
}

/// (namespace, label key, label value) → names.
type LabelIndex = HashMap<(String, String, String), BTreeSet<String>>;

fn labels_of(obj: &Value) -> Option<&serde_json::Map<String, Value>> {
    obj.get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
}

/// The (key, value) string labels of an object.
fn label_pairs(obj: &Value) -> impl Iterator<Item = (&str, &str)> {
    labels_of(obj)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
}

fn obj_uid(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
}

fn involved_uid(obj: &Value) -> Option<&str> {
    obj.pointer("/involvedObject/uid")
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
        if let Some(u) = involved_uid(old)
            && let Some(set) = self.involved.get_mut(u)
        {
            set.remove(at);
            if set.is_empty() {
                self.involved.remove(u);
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
        if let Some(u) = involved_uid(new) {
            self.involved
                .entry(u.to_string())
                .or_default()
                .insert(at.clone());
        }
    }

    /// Re-indexes the labels of an object replaced from `old` to `new` (deleted: `new` is
    /// `None`), when its resource is label-indexed and its labels changed.
    fn reindex_labels(&mut self, at: &ObjectRef, old: Option<&Value>, new: Option<&Value>) {
        let Some(idx) = self.labels.get_mut(&at.0) else {
            return;
        };
        if old.and_then(labels_of) == new.and_then(labels_of) {
            return;
        }
        for (k, v) in old.into_iter().flat_map(label_pairs) {
            let ik = (at.1.clone(), k.to_string(), v.to_string());
            if let Some(set) = idx.get_mut(&ik) {
                set.remove(&at.2);
                if set.is_empty() {
                    idx.remove(&ik);
                }
            }
        }
        for (k, v) in new.into_iter().flat_map(label_pairs) {
            idx.entry((at.1.clone(), k.to_string(), v.to_string()))
                .or_default()
                .insert(at.2.clone());
        }
    }

    /// Re-indexes an object replaced from `old` to `new`, touching only what changed.
    fn reindex(&mut self, at: &ObjectRef, old: Option<&Value>, new: &Value) {
        self.reindex_labels(at, old, Some(new));
        if let Some(old) = old {
            let same = obj_uid(old) == obj_uid(new)
                && involved_uid(old) == involved_uid(new)
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

/// What one resource's objects take in the store ([`Store::footprint`]).
#[derive(Debug, Clone)]
pub struct ResourceFootprint {
    pub key: ResourceKey,
    pub objects: usize,
    /// Their size as JSON.
    pub json_bytes: usize,
    /// An estimate of their heap size as stored ([`heap_size`]).
    pub heap_bytes: usize,
    /// The part of `heap_bytes` in `metadata.managedFields`.
    pub managed_fields_heap_bytes: usize,
}

/// What the store holds ([`Store::footprint`]).
#[derive(Debug, Clone, Default)]
pub struct Footprint {
    /// By resource, the largest first.
    pub resources: Vec<ResourceFootprint>,
    /// Change events in the watch window.
    pub events: usize,
    /// Object states the window's events keep alive that the store no longer holds (earlier
    /// states, deleted objects), and their estimated heap size.
    pub history_only_states: usize,
    pub history_only_heap_bytes: usize,
}

fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(0, |b| b.len())
}

/// An estimate of the heap a JSON value takes: strings' capacity, arrays' slots, and for an
/// object the B-tree nodes of `serde_json::Map` (a node holds up to 11 entries, allocated
/// whole: about 640 bytes for keys and values, even for one entry).
pub fn heap_size(v: &Value) -> usize {
    const SLOT: usize = std::mem::size_of::<Value>();
    const NODE: usize = 11 * (std::mem::size_of::<String>() + SLOT) + 16;
    match v {
        Value::String(s) => s.capacity(),
        Value::Array(a) => a.capacity() * SLOT + a.iter().map(heap_size).sum::<usize>(),
        Value::Object(m) => {
            let nodes = match m.len() {
                0 => 0,
                n if n <= 11 => 1,
                // Split nodes are half to fully used; internal nodes add their edges.
                n => n.div_ceil(8) + n.div_ceil(64),
            };
            nodes * NODE
                + m.iter()
                    .map(|(k, v)| k.capacity() + heap_size(v))
                    .sum::<usize>()
        }
        _ => 0,
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
    /// How many times a subscriber (a simulated controller, which then resyncs, or an API
    /// watch, which then ends with 410 Gone) fell behind the change channel.
    lagged: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("window", &self.window)
            .finish()
    }
}

/// A copy of `obj` carrying resourceVersion `rv` (a deletion's last state).
fn with_resource_version(obj: &Value, rv: u64) -> Value {
    let mut o = obj.clone();
    if let Some(md) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        md.insert("resourceVersion".into(), rv.to_string().into());
    }
    o
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
            lagged: Default::default(),
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

    /// A copy of one object (made after the lock is released).
    pub fn get(&self, key: &ResourceKey, namespace: &str, name: &str) -> Option<Value> {
        self.get_shared(key, namespace, name)
            .map(Arc::unwrap_or_clone)
    }

    /// One object, shared with the store (nothing is copied).
    pub fn get_shared(&self, key: &ResourceKey, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.lock()
            .data
            .get(key)
            .and_then(|m| m.get(&(namespace.to_string(), name.to_string())))
            .cloned()
    }

    /// All objects of a resource (in one namespace when given), sorted by namespace and name,
    /// with the resourceVersion of the snapshot: copies, made after the lock is released.
    pub fn list(&self, key: &ResourceKey, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let (items, rv) = self.list_shared(key, namespace);
        (owned(items), rv)
    }

    /// As [`Store::list`], the objects shared with the store (only references are taken
    /// under the lock).
    pub fn list_shared(
        &self,
        key: &ResourceKey,
        namespace: Option<&str>,
    ) -> (Vec<Arc<Value>>, u64) {
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
    /// the resourceVersion of the snapshot. Filtering happens under the lock; the objects
    /// returned are copied after it is released.
    pub fn page(
        &self,
        key: &ResourceKey,
        namespace: Option<&str>,
        after: Option<(&str, &str)>,
        keep: impl Fn(&Value) -> bool,
        limit: Option<usize>,
    ) -> (Vec<Value>, usize, u64) {
        let (items, remaining, rv) = self.page_shared(key, namespace, after, keep, limit);
        (owned(items), remaining, rv)
    }

    /// As [`Store::page`], the objects shared with the store.
    pub fn page_shared(
        &self,
        key: &ResourceKey,
        namespace: Option<&str>,
        after: Option<(&str, &str)>,
        keep: impl Fn(&Value) -> bool,
        limit: Option<usize>,
    ) -> (Vec<Arc<Value>>, usize, u64) {
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

    /// The objects naming `owner_uid` in an ownerReference (shared with the store), with where
    /// they are stored, in resource, namespace and name order.
    pub fn dependents(&self, owner_uid: &str) -> Vec<(ObjectRef, Arc<Value>)> {
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

    /// The objects of one resource naming `owner_uid` in an ownerReference (shared with the
    /// store), in namespace and name order.
    pub fn owned(&self, key: &ResourceKey, owner_uid: &str) -> Vec<Arc<Value>> {
        let inner = self.lock();
        let (Some(set), Some(m)) = (inner.dependents.get(owner_uid), inner.data.get(key)) else {
            return Vec::new();
        };
        set.iter()
            .filter(|at| &at.0 == key)
            .filter_map(|at| m.get(&(at.1.clone(), at.2.clone())).cloned())
            .collect()
    }

    /// The objects of one resource (in one namespace) naming `uid` as their `involvedObject`
    /// (shared with the store), in name order: the Events about an object.
    pub fn involving(&self, key: &ResourceKey, namespace: &str, uid: &str) -> Vec<Arc<Value>> {
        let inner = self.lock();
        let (Some(set), Some(m)) = (inner.involved.get(uid), inner.data.get(key)) else {
            return Vec::new();
        };
        set.iter()
            .filter(|at| &at.0 == key && at.1 == namespace)
            .filter_map(|at| m.get(&(at.1.clone(), at.2.clone())).cloned())
            .collect()
    }

    /// Indexes the labels of a resource's objects (those stored and those to come), so that
    /// [`Store::select_shared`] answers a selector with an equality from the index.
    pub fn index_labels(&self, key: &ResourceKey) {
        let mut inner = self.lock();
        if inner.labels.contains_key(key) {
            return;
        }
        let mut idx = LabelIndex::new();
        for ((ns, name), obj) in inner.data.get(key).into_iter().flatten() {
            for (k, v) in label_pairs(obj) {
                idx.entry((ns.clone(), k.to_string(), v.to_string()))
                    .or_default()
                    .insert(name.clone());
            }
        }
        inner.labels.insert(key.clone(), idx);
    }

    /// The objects of one resource in one namespace that `selector` matches (shared with the
    /// store), in name order: what a namespace list filtered by the selector gives. When the
    /// resource is label-indexed and the selector requires a label value, only the objects
    /// carrying it (the fewest of the required ones) are matched, not the whole namespace.
    pub fn select_shared(
        &self,
        key: &ResourceKey,
        namespace: &str,
        selector: &LabelSelector,
    ) -> Vec<Arc<Value>> {
        let inner = self.lock();
        let Some(m) = inner.data.get(key) else {
            return Vec::new();
        };
        if let Some(idx) = inner.labels.get(key) {
            let mut fewest: Option<&BTreeSet<String>> = None;
            let mut indexed = false;
            for (k, v) in selector.required_labels() {
                indexed = true;
                let ik = (namespace.to_string(), k.to_string(), v.to_string());
                let Some(set) = idx.get(&ik) else {
                    // No object carries a label the selector requires.
                    return Vec::new();
                };
                if fewest.is_none_or(|f| set.len() < f.len()) {
                    fewest = Some(set);
                }
            }
            if indexed {
                return fewest
                    .into_iter()
                    .flatten()
                    .filter_map(|name| m.get(&(namespace.to_string(), name.clone())))
                    .filter(|o| selector.matches_object(o))
                    .cloned()
                    .collect();
            }
        }
        m.range((namespace.to_string(), String::new())..)
            .take_while(|((n, _), _)| n == namespace)
            .map(|(_, v)| v)
            .filter(|o| selector.matches_object(o))
            .cloned()
            .collect()
    }

    /// What the store holds, by resource (objects, their JSON size and an estimate of their
    /// heap size), plus the watch window's events and the earlier states only they keep alive:
    /// to see what localkube's memory goes to. Walks every object under the lock (a second at
    /// 10,000 canaries): for benches, not for a request path.
    pub fn footprint(&self) -> Footprint {
        let inner = self.lock();
        let mut resources: Vec<ResourceFootprint> = inner
            .data
            .iter()
            .map(|(key, m)| {
                let mut r = ResourceFootprint {
                    key: key.clone(),
                    objects: m.len(),
                    json_bytes: 0,
                    heap_bytes: 0,
                    managed_fields_heap_bytes: 0,
                };
                for o in m.values() {
                    r.json_bytes += json_len(o);
                    r.heap_bytes += heap_size(o);
                    r.managed_fields_heap_bytes +=
                        o.pointer("/metadata/managedFields").map_or(0, heap_size);
                }
                r
            })
            .collect();
        resources.sort_by_key(|r| std::cmp::Reverse(r.heap_bytes));
        let current = |key: &ResourceKey, o: &Arc<Value>| {
            let (ns, name) = ns_name(o);
            inner
                .data
                .get(key)
                .and_then(|m| m.get(&(ns, name)))
                .is_some_and(|c| Arc::ptr_eq(c, o))
        };
        let mut seen = std::collections::HashSet::new();
        let mut history_only = (0, 0);
        for ev in &inner.history {
            for o in std::iter::once(&ev.object).chain(ev.old.as_ref()) {
                if !current(&ev.key, o) && seen.insert(Arc::as_ptr(o)) {
                    history_only.0 += 1;
                    history_only.1 += heap_size(o);
                }
            }
        }
        Footprint {
            resources,
            events: inner.history.len(),
            history_only_states: history_only.0,
            history_only_heap_bytes: history_only.1,
        }
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
    /// `dry_run`, nothing is stored nor announced but the result is computed the same way. The
    /// stored object is shared with the change event; the copy returned is made after the lock
    /// is released.
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
        let decision = f(current.as_deref())?;
        let rv = inner.rv + 1;
        match decision {
            Write::Keep => {
                drop(inner);
                Ok(Written::Unchanged(current.map(Arc::unwrap_or_clone)))
            }
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
                inner.reindex(&at, current.as_deref(), &obj);
                let obj = Arc::new(obj);
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
                drop(inner);
                Ok(Written::Put(Arc::unwrap_or_clone(obj)))
            }
            Write::Delete => {
                let Some(old) = current else {
                    return Ok(Written::Unchanged(None));
                };
                if dry_run {
                    drop(inner);
                    return Ok(Written::Deleted(Arc::unwrap_or_clone(old)));
                }
                inner.rv = rv;
                if let Some(m) = inner.data.get_mut(key) {
                    m.remove(&id);
                }
                let at = (key.clone(), id.0.clone(), id.1.clone());
                inner.unindex(&at, &old);
                inner.reindex_labels(&at, Some(&old), None);
                let gone = Arc::new(with_resource_version(&old, rv));
                self.record(
                    &mut inner,
                    EventType::Deleted,
                    key,
                    namespace,
                    name,
                    gone.clone(),
                    Some(old),
                );
                drop(inner);
                Ok(Written::Deleted(Arc::unwrap_or_clone(gone)))
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
        object: Arc<Value>,
        old: Option<Arc<Value>>,
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
        if let Some(idx) = inner.labels.get_mut(key) {
            idx.clear();
        }
        for ((ns, name), before) in objects {
            let at = (key.clone(), ns.clone(), name.clone());
            inner.unindex(&at, &before);
            inner.rv += 1;
            let gone = Arc::new(with_resource_version(&before, inner.rv));
            self.record(
                &mut inner,
                EventType::Deleted,
                key,
                &ns,
                &name,
                gone,
                Some(before),
            );
        }
        n
    }

    /// Notes that a subscriber fell behind (missed events).
    pub fn note_lagged(&self) {
        self.lagged
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many times subscribers fell behind ([`Store::note_lagged`]).
    pub fn lagged(&self) -> u64 {
        self.lagged.load(std::sync::atomic::Ordering::Relaxed)
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

    /// A consistent snapshot of a resource (shared with the store) plus a receiver for later
    /// changes.
    pub fn list_and_subscribe(
        &self,
        key: &ResourceKey,
        namespace: Option<&str>,
    ) -> (Vec<Arc<Value>>, u64, broadcast::Receiver<Arc<StoreEvent>>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> ResourceKey {
        ResourceKey::new("", "v1", "configmaps")
    }

    fn put(store: &Store, ns: &str, name: &str, data: Value) -> Value {
        let obj = json!({"metadata": {"namespace": ns, "name": name}, "data": data});
        match store.write(&key(), ns, name, false, |_| Ok::<_, ()>(Write::Put(obj))) {
            Ok(Written::Put(o)) => o,
            other => panic!("put did not store: {other:?}"),
        }
    }

    #[test]
    fn the_stored_object_is_shared_with_its_change_event_and_readers() {
        let store = Store::new(16);
        let mut rx = store.subscribe();
        let written = put(&store, "a", "one", json!({"k": "v"}));
        let ev = rx.try_recv().expect("an event for the write");
        let shared = store.get_shared(&key(), "a", "one").expect("stored");
        assert!(
            Arc::ptr_eq(&ev.object, &shared),
            "the event and the store share one object"
        );
        assert_eq!(*shared, written);
        let (listed, _) = store.list_shared(&key(), Some("a"));
        assert!(Arc::ptr_eq(&listed[0], &shared));
        let (page, remaining, _) = store.page_shared(&key(), None, None, |_| true, Some(1));
        assert!(Arc::ptr_eq(&page[0], &shared));
        assert_eq!(remaining, 0);
        // The copying accessors give equal, independent values.
        assert_eq!(store.get(&key(), "a", "one"), Some(written.clone()));
        assert_eq!(store.list(&key(), None).0, vec![written.clone()]);
        assert_eq!(
            store.page(&key(), Some("a"), None, |_| true, None).0,
            vec![written]
        );
    }

    #[test]
    fn a_shared_object_handed_out_is_a_snapshot_that_later_writes_do_not_change() {
        let store = Store::new(16);
        put(&store, "a", "one", json!({"k": "v1"}));
        let before = store.get_shared(&key(), "a", "one").expect("stored");
        let mut rx = store.subscribe();
        put(&store, "a", "one", json!({"k": "v2"}));
        assert_eq!(before["data"]["k"], "v1");
        let now = store.get_shared(&key(), "a", "one").expect("stored");
        assert_eq!(now["data"]["k"], "v2");
        let ev = rx.try_recv().expect("an event for the update");
        assert_eq!(ev.type_, EventType::Modified);
        assert!(Arc::ptr_eq(
            ev.old.as_ref().expect("the old state"),
            &before
        ));
        assert!(Arc::ptr_eq(&ev.object, &now));
    }

    #[test]
    fn a_deletion_event_carries_the_deletions_resource_version_and_the_last_state() {
        let store = Store::new(16);
        let stored = put(&store, "a", "one", json!({}));
        let last = store.get_shared(&key(), "a", "one").expect("stored");
        let mut rx = store.subscribe();
        let gone = store
            .write(&key(), "a", "one", false, |_| Ok::<_, ()>(Write::Delete))
            .expect("deleted");
        let rv = store.resource_version();
        let Written::Deleted(gone) = gone else {
            panic!("not deleted: {gone:?}");
        };
        assert_eq!(gone["metadata"]["resourceVersion"], rv.to_string());
        let ev = rx.try_recv().expect("a deletion event");
        assert_eq!(ev.type_, EventType::Deleted);
        assert_eq!(*ev.object, gone);
        assert!(Arc::ptr_eq(ev.old.as_ref().expect("the last state"), &last));
        assert_eq!(*last, stored, "the stored state itself was not changed");
        assert!(store.get_shared(&key(), "a", "one").is_none());
        assert_eq!(store.remove_all(&key()), 0);
    }

    #[test]
    fn removing_a_resource_announces_each_object_with_a_new_resource_version() {
        let store = Store::new(16);
        put(&store, "a", "one", json!({}));
        put(&store, "b", "two", json!({}));
        let mut rx = store.subscribe();
        assert_eq!(store.remove_all(&key()), 2);
        for name in ["one", "two"] {
            let ev = rx.try_recv().expect("a deletion event");
            assert_eq!((ev.type_, ev.name.as_str()), (EventType::Deleted, name));
            assert_eq!(
                ev.object["metadata"]["resourceVersion"],
                ev.resource_version.to_string()
            );
            assert_ne!(
                ev.old.as_ref().expect("last state")["metadata"]["resourceVersion"],
                ev.object["metadata"]["resourceVersion"]
            );
        }
        assert_eq!(store.count(&key()), 0);
    }

    #[test]
    fn owned_and_dependents_share_the_stored_objects() {
        let store = Store::new(16);
        let owner = put(&store, "a", "owner", json!({}));
        let owner_uid = owner["metadata"]["uid"]
            .as_str()
            .expect("a uid")
            .to_string();
        let child = json!({"metadata": {"namespace": "a", "name": "child",
            "ownerReferences": [{"uid": owner_uid, "controller": true}]}});
        store
            .write(&key(), "a", "child", false, |_| {
                Ok::<_, ()>(Write::Put(child))
            })
            .expect("stored");
        let shared = store.get_shared(&key(), "a", "child").expect("stored");
        let owned = store.owned(&key(), &owner_uid);
        assert_eq!(owned.len(), 1);
        assert!(Arc::ptr_eq(&owned[0], &shared));
        let deps = store.dependents(&owner_uid);
        assert_eq!(deps.len(), 1);
        assert_eq!(deps[0].0, (key(), "a".to_string(), "child".to_string()));
        assert!(Arc::ptr_eq(&deps[0].1, &shared));
    }

    #[test]
    fn objects_are_found_by_the_uid_they_involve_until_they_stop_naming_it() {
        let store = Store::new(16);
        let event = |name: &str, about: &str| json!({"metadata": {"namespace": "a", "name": name}, "involvedObject": {"uid": about}});
        for (name, about) in [("e1", "u1"), ("e2", "u2"), ("e3", "u1")] {
            let ev = event(name, about);
            store
                .write(&key(), "a", name, false, |_| Ok::<_, ()>(Write::Put(ev)))
                .expect("stored");
        }
        let names = |uid: &str| -> Vec<String> {
            store
                .involving(&key(), "a", uid)
                .iter()
                .map(|e| {
                    e["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()
        };
        assert_eq!(names("u1"), ["e1", "e3"]);
        assert_eq!(names("u2"), ["e2"]);
        assert!(
            store.involving(&key(), "b", "u1").is_empty(),
            "another namespace"
        );
        // Re-pointed, then deleted: the index follows.
        let moved = event("e3", "u2");
        store
            .write(&key(), "a", "e3", false, |_| Ok::<_, ()>(Write::Put(moved)))
            .expect("stored");
        assert_eq!(names("u1"), ["e1"]);
        assert_eq!(names("u2"), ["e2", "e3"]);
        store
            .write(&key(), "a", "e1", false, |_| Ok::<_, ()>(Write::Delete))
            .expect("deleted");
        assert!(names("u1").is_empty());
        assert_eq!(store.remove_all(&key()), 2);
        assert!(names("u2").is_empty());
    }

    #[test]
    fn a_selection_from_the_label_index_is_what_a_filtered_namespace_scan_gives() {
        let store = Store::new(16);
        let pod = |ns: &str, name: &str, labels: Value| json!({"metadata": {"namespace": ns, "name": name, "labels": labels}});
        let write = |o: Value| {
            let (ns, name) = Store::identity(&o);
            store
                .write(&key(), &ns, &name, false, |_| Ok::<_, ()>(Write::Put(o)))
                .expect("stored");
        };
        // Stored before the index exists, then after.
        write(pod("a", "p1", json!({"app": "x", "tier": "web"})));
        store.index_labels(&key());
        write(pod("a", "p2", json!({"app": "x"})));
        write(pod("a", "p3", json!({"app": "y", "tier": "web"})));
        write(pod("b", "p4", json!({"app": "x", "tier": "web"})));
        write(pod("a", "p5", json!({"app": 1})));
        let scan = |ns: &str, sel: &LabelSelector| -> Vec<String> {
            store
                .list_shared(&key(), Some(ns))
                .0
                .iter()
                .filter(|o| sel.matches_object(o))
                .map(|o| Store::identity(o).1)
                .collect()
        };
        let names = |ns: &str, sel: &str| -> Vec<String> {
            let sel = LabelSelector::parse(sel).expect("a selector");
            let got: Vec<String> = store
                .select_shared(&key(), ns, &sel)
                .iter()
                .map(|o| Store::identity(o).1)
                .collect();
            assert_eq!(
                got,
                scan(ns, &sel),
                "the index and the scan agree on {sel:?}"
            );
            got
        };
        assert_eq!(names("a", "app=x"), ["p1", "p2"]);
        assert_eq!(names("a", "app=x,tier=web"), ["p1"]);
        assert_eq!(names("a", "app in (x),tier!=web"), ["p2"]);
        assert_eq!(names("a", "tier"), ["p1", "p3"], "no equality: a scan");
        assert_eq!(names("a", ""), ["p1", "p2", "p3", "p5"]);
        assert!(names("a", "app=z").is_empty());
        assert!(
            names("a", "app=1").is_empty(),
            "a non-string label matches nothing"
        );
        assert_eq!(names("b", "app=x"), ["p4"]);
        // Relabelled, deleted, removed: the index follows.
        write(pod("a", "p1", json!({"app": "y"})));
        assert_eq!(names("a", "app=x"), ["p2"]);
        assert_eq!(names("a", "app=y"), ["p1", "p3"]);
        store
            .write(&key(), "a", "p3", false, |_| Ok::<_, ()>(Write::Delete))
            .expect("deleted");
        assert_eq!(names("a", "app=y"), ["p1"]);
        assert_eq!(store.remove_all(&key()), 4);
        assert!(names("a", "app=y").is_empty());
        write(pod("a", "p6", json!({"app": "y"})));
        assert_eq!(names("a", "app=y"), ["p6"], "still indexed after a removal");
    }

    #[test]
    fn a_dry_run_stores_and_announces_nothing() {
        let store = Store::new(16);
        put(&store, "a", "one", json!({"k": "v1"}));
        let mut rx = store.subscribe();
        let w = store
            .write(&key(), "a", "one", true, |cur| {
                let mut n = cur.cloned().expect("current");
                n["data"]["k"] = json!("v2");
                Ok::<_, ()>(Write::Put(n))
            })
            .expect("dry run");
        assert!(matches!(w, Written::Put(ref o) if o["data"]["k"] == "v2"));
        let w = store
            .write(&key(), "a", "one", true, |_| Ok::<_, ()>(Write::Delete))
            .expect("dry run");
        assert!(matches!(w, Written::Deleted(ref o) if o["data"]["k"] == "v1"));
        assert!(rx.try_recv().is_err(), "nothing announced");
        let kept = store.get(&key(), "a", "one").expect("still stored");
        assert_eq!(kept["data"]["k"], "v1");
    }
}
