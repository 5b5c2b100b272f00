//! Which canaries name an object: their target (Deployment, DaemonSet), their Services (the
//! apex, `-primary`, `-canary`) and their HPA, kept up to date from the Canary watch. The watch
//! mappers look an event's object up here, so an event costs the canaries it concerns, not a
//! scan of the fleet (at 10,000 canaries the scans were most of the controller's CPU while the
//! fleet initialized).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use flagger_api::Canary;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

/// What an object is to a canary, as one string `namespace/role/name` (none of the three holds
/// a `/`), the role being a target kind, `Service` or `HorizontalPodAutoscaler`. One string
/// per key, and canaries by name beside it: at 10,000 canaries the index is five keys per
/// canary, and its first form (three strings per key, a set of full object references per
/// key) took about 3 KiB per canary.
type Key = Box<str>;

fn key(namespace: &str, role: &str, name: &str) -> Key {
    format!("{namespace}/{role}/{name}").into_boxed_str()
}

/// A canary: `(namespace, name)`.
type CanaryKey = (Box<str>, Box<str>);

#[derive(Default)]
struct Inner {
    by_canary: HashMap<CanaryKey, Box<[Key]>>,
    /// The names of the canaries (in the key's namespace) found under a key; almost always
    /// one.
    by_key: HashMap<Key, Vec<Box<str>>>,
    /// The canaries listed since the watch (re)started, while it relists.
    relisted: Option<HashSet<CanaryKey>>,
}

/// The index (see the module's documentation).
#[derive(Default)]
pub struct CanaryIndex {
    inner: Mutex<Inner>,
}

fn canary_key(c: &Canary) -> CanaryKey {
    (
        c.namespace().unwrap_or_default().into_boxed_str(),
        c.name_any().into_boxed_str(),
    )
}

/// The keys a canary is found under.
fn keys(c: &Canary) -> Box<[Key]> {
    let ns = c.namespace().unwrap_or_default();
    let target = &c.spec.target_ref;
    let apex = c
        .spec
        .service
        .as_ref()
        .and_then(|s| s.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| target.name.clone());
    let mut keys = vec![key(&ns, &target.kind, &target.name)];
    for name in [
        apex.clone(),
        format!("{apex}-primary"),
        format!("{apex}-canary"),
    ] {
        keys.push(key(&ns, "Service", &name));
    }
    if let Some(a) = &c.spec.autoscaler_ref {
        keys.push(key(&ns, &a.kind, &a.name));
    }
    keys.into_boxed_slice()
}

impl Inner {
    fn remove(&mut self, c: &CanaryKey) {
        for k in self.by_canary.remove(c).unwrap_or_default() {
            if let Some(names) = self.by_key.get_mut(&k) {
                names.retain(|n| *n != c.1);
                if names.is_empty() {
                    self.by_key.remove(&k);
                }
            }
        }
    }

    fn set(&mut self, c: &Canary) {
        let ck = canary_key(c);
        self.remove(&ck);
        let keys = keys(c);
        for k in &keys {
            let names = self
                .by_key
                .entry(k.clone())
                .or_insert_with(|| Vec::with_capacity(1));
            if !names.contains(&ck.1) {
                names.push(ck.1.clone());
            }
        }
        self.by_canary.insert(ck, keys);
    }
}

impl CanaryIndex {
    /// Follows one event of the Canary watch.
    pub fn observe(&self, event: &Event<Canary>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        match event {
            Event::Apply(c) => inner.set(c),
            Event::Delete(c) => inner.remove(&canary_key(c)),
            Event::Init => inner.relisted = Some(HashSet::new()),
            Event::InitApply(c) => {
                inner.set(c);
                if let Some(seen) = inner.relisted.as_mut() {
                    seen.insert(canary_key(c));
                }
            }
            Event::InitDone => {
                // Canaries deleted while the watch was down are not in the new list.
                if let Some(seen) = inner.relisted.take() {
                    let gone: Vec<_> = inner
                        .by_canary
                        .keys()
                        .filter(|r| !seen.contains(*r))
                        .cloned()
                        .collect();
                    for r in gone {
                        inner.remove(&r);
                    }
                }
            }
        }
    }

    /// The canaries that name `name` in `namespace` as `role` (a target kind, `Service`,
    /// `HorizontalPodAutoscaler`).
    pub fn lookup(&self, namespace: &str, role: &str, name: &str) -> Vec<ObjectRef<Canary>> {
        let key = key(namespace, role, name);
        self.inner
            .lock()
            .ok()
            .and_then(|i| {
                i.by_key.get(&key).map(|names| {
                    names
                        .iter()
                        .map(|n| ObjectRef::new(n).within(namespace))
                        .collect()
                })
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(ns: &str, name: &str, target: &str, service: Option<&str>) -> Canary {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                "autoscalerRef": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": target},
                "service": {"port": 80, "name": service},
            },
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn held(idx: &CanaryIndex) -> usize {
        idx.inner.lock().map(|i| i.by_canary.len()).unwrap_or(0)
    }

    fn names(v: Vec<ObjectRef<Canary>>) -> Vec<String> {
        let mut n: Vec<String> = v.into_iter().map(|r| r.name).collect();
        n.sort();
        n
    }

    #[test]
    fn targets_services_and_hpas_find_their_canaries_and_follow_changes() {
        let idx = CanaryIndex::default();
        idx.observe(&Event::Apply(canary("test", "a", "podinfo", None)));
        idx.observe(&Event::Apply(canary("test", "b", "podinfo", Some("front"))));
        idx.observe(&Event::Apply(canary("prod", "c", "podinfo", None)));
        assert_eq!(
            names(idx.lookup("test", "Deployment", "podinfo")),
            ["a", "b"]
        );
        assert_eq!(
            names(idx.lookup("test", "Service", "podinfo-primary")),
            ["a"]
        );
        assert_eq!(names(idx.lookup("test", "Service", "front-canary")), ["b"]);
        assert_eq!(
            names(idx.lookup("test", "HorizontalPodAutoscaler", "podinfo")),
            ["a", "b"]
        );
        assert!(idx.lookup("test", "DaemonSet", "podinfo").is_empty());
        // A changed target moves the canary; a deletion removes it.
        idx.observe(&Event::Apply(canary("test", "a", "other", None)));
        assert_eq!(names(idx.lookup("test", "Deployment", "podinfo")), ["b"]);
        assert_eq!(names(idx.lookup("test", "Deployment", "other")), ["a"]);
        idx.observe(&Event::Delete(canary(
            "test",
            "b",
            "podinfo",
            Some("front"),
        )));
        assert!(idx.lookup("test", "Deployment", "podinfo").is_empty());
        assert_eq!(held(&idx), 2);
    }

    #[test]
    fn a_relist_drops_the_canaries_deleted_while_the_watch_was_down() {
        let idx = CanaryIndex::default();
        idx.observe(&Event::Apply(canary("test", "a", "podinfo", None)));
        idx.observe(&Event::Apply(canary("test", "b", "podinfo", None)));
        idx.observe(&Event::Init);
        idx.observe(&Event::InitApply(canary("test", "b", "podinfo", None)));
        idx.observe(&Event::InitDone);
        assert_eq!(names(idx.lookup("test", "Deployment", "podinfo")), ["b"]);
        assert_eq!(held(&idx), 1);
    }
}
