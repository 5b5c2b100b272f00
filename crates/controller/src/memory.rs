//! Where the controller's memory goes: `/debug/memory` answers with the allocator's figures
//! (the live heap against what it keeps resident) and the bytes each watch cache and each
//! per-canary table holds, so that a figure of RSS per canary can be split into its parts.
//!
//! ## How a cache is sized
//!
//! Under jemalloc (the `flagger` binary's allocator), a cache's objects are copied once on the
//! answering thread and the bytes that thread allocated for the copies are counted
//! (`thread.allocatedp`): the objects' inline size plus everything they own (strings, maps,
//! vectors, JSON values), as the allocator sees it. A copy allocates vectors and strings at
//! their length where the original may have grown past it while being deserialized, so the
//! figure is a lower bound; the store's own index (a hash map of keys to shared objects) is
//! added as the bytes of the keys plus two pointers per entry. Under another allocator (the
//! test binaries) the sizes are not known and only the counts are given.
//!
//! The copies take a moment and as much memory as the largest cache while they live: this is a
//! debugging aid for measuring, read by the scale bench, not something to scrape.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::Hash;
use std::sync::{Mutex, OnceLock};

use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::context::Context;

/// The allocator's figures, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allocator {
    /// Bytes the program holds (the live heap).
    pub allocated: u64,
    /// Bytes in pages holding live allocations.
    pub active: u64,
    /// Bytes of the allocator's resident pages (live heap, fragmentation, metadata, free
    /// pages not yet given back).
    pub resident: u64,
    /// Bytes of the allocator's own bookkeeping.
    pub metadata: u64,
    /// Bytes mapped and kept for reuse without being resident.
    pub retained: u64,
}

/// The figures of jemalloc, when it is the global allocator.
pub fn allocator() -> Option<Allocator> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    let a = Allocator {
        allocated: stats::allocated::read().ok()? as u64,
        active: stats::active::read().ok()? as u64,
        resident: stats::resident::read().ok()? as u64,
        metadata: stats::metadata::read().ok()? as u64,
        retained: stats::retained::read().ok()? as u64,
    };
    // jemalloc linked but not the global allocator: it holds (almost) nothing.
    (a.allocated > 1 << 20).then_some(a)
}

/// Whether jemalloc is the global allocator (decided once).
fn jemalloc_global() -> bool {
    static GLOBAL: OnceLock<bool> = OnceLock::new();
    *GLOBAL.get_or_init(|| allocator().is_some())
}

/// Starts jemalloc's background threads, which give freed pages back to the system after its
/// decay time (10 s) whether or not the program allocates again: without them jemalloc purges
/// only on its own allocation paths, so the pages freed after a burst (a fleet initializing, a
/// relist) stay resident while the controller idles. Returns whether they run (not under
/// another allocator).
pub fn return_free_pages() -> bool {
    jemalloc_global() && tikv_jemalloc_ctl::background_thread::write(true).is_ok()
}

/// Bytes this thread allocates while running `f` (`None` unless jemalloc is the global
/// allocator).
fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, Option<u64>) {
    if !jemalloc_global() {
        return (f(), None);
    }
    let Ok(counter) = tikv_jemalloc_ctl::thread::allocatedp::read() else {
        return (f(), None);
    };
    let before = counter.get();
    let out = f();
    let after = counter.get();
    (out, Some(after.saturating_sub(before)))
}

/// One line of the report: a cache or table, its entries, its bytes when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub entries: usize,
    pub bytes: Option<u64>,
}

/// The size of a reflector store: its objects (each behind an `Arc`: two counters more) and
/// its index (keys of kind `dt`).
pub fn store_part<K>(name: &str, store: &Store<K>, dt: &K::DynamicType) -> Part
where
    K: Resource + Clone + 'static,
    K::DynamicType: Clone + Eq + Hash,
{
    let objects = store.state();
    let entries = objects.len();
    let (copies, bytes) = allocated_by(|| {
        let keys: Vec<ObjectRef<K>> = objects
            .iter()
            .map(|o| ObjectRef::from_obj_with(&**o, dt.clone()))
            .collect();
        let copies: Vec<K> = objects.iter().map(|o| (**o).clone()).collect();
        (keys, copies)
    });
    drop(copies);
    let per_entry = (2 * size_of::<usize>() + 2 * size_of::<usize>()) as u64;
    Part {
        name: name.to_string(),
        entries,
        bytes: bytes.map(|b| b + per_entry * entries as u64),
    }
}

/// The size of a per-canary table.
pub fn table_part<Key, V>(name: &str, table: &Mutex<HashMap<Key, V>>) -> Part
where
    Key: Clone + Eq + Hash,
    V: Clone,
{
    let (entries, bytes) = {
        let t = table.lock().unwrap_or_else(|e| e.into_inner());
        let (copy, bytes) = allocated_by(|| t.clone());
        (copy.len(), bytes)
    };
    Part {
        name: name.to_string(),
        entries,
        bytes,
    }
}

/// Every part of the controller's memory this module can size.
pub fn parts(ctx: &Context) -> Vec<Part> {
    let c = &ctx.caches;
    let mut parts = Vec::new();
    if let Some(canaries) = ctx.canaries.get() {
        parts.push(store_part("cache canaries", canaries, &()));
    }
    parts.extend([
        store_part("cache deployments", &c.deployments, &()),
        store_part("cache daemonsets", &c.daemonsets, &()),
        store_part("cache configmaps", &c.configmaps, &()),
        store_part("cache secrets", &c.secrets, &()),
        store_part("cache services", &c.services, &()),
        store_part("cache horizontalpodautoscalers", &c.hpas, &()),
        store_part("cache metrictemplates", &c.metric_templates, &()),
        store_part("cache alertproviders", &c.alert_providers, &()),
    ]);
    for (kind, ar, store) in ctx.objects.stores() {
        parts.push(store_part(&format!("cache {kind}"), &store, &ar));
    }
    parts.extend([
        table_part("table schedule", &ctx.schedule),
        table_part("table written statuses", &ctx.written),
        table_part("table fights", &ctx.fights),
        table_part("table failures", &ctx.failures),
        table_part("table tracked configs", ctx.configs.table()),
    ]);
    parts
}

/// The report `/debug/memory` answers with: one `name entries bytes` line per part, then the
/// allocator's figures and the process's RSS.
pub fn report(ctx: &Context) -> String {
    let parts = parts(ctx);
    let mut out = String::new();
    let mut total = 0u64;
    for p in &parts {
        match p.bytes {
            Some(b) => {
                total += b;
                let _ = writeln!(out, "{} entries={} bytes={b}", p.name, p.entries);
            }
            None => {
                let _ = writeln!(out, "{} entries={} bytes=unknown", p.name, p.entries);
            }
        }
    }
    let _ = writeln!(out, "sized total bytes={total}");
    match allocator() {
        Some(a) => {
            let _ = writeln!(
                out,
                "allocator jemalloc allocated={} active={} resident={} metadata={} retained={}",
                a.allocated, a.active, a.resident, a.metadata, a.retained
            );
        }
        None => {
            let _ = writeln!(out, "allocator unknown (not jemalloc)");
        }
    }
    if let Some(rss) = crate::metrics::process::Sample::read().resident_bytes {
        let _ = writeln!(out, "process rss={rss}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[test]
    fn a_table_is_counted_without_the_allocators_counters() {
        let table: Mutex<HashMap<String, u32>> =
            Mutex::new([("a".to_string(), 1), ("b".to_string(), 2)].into());
        let p = table_part("t", &table);
        assert_eq!(p.entries, 2);
        assert_eq!(p.name, "t");
        // The test binary runs on the system allocator: sizes are not known there.
        assert_eq!(p.bytes, None);
    }

    #[test]
    fn a_store_is_counted() {
        let (store, mut writer) = kube::runtime::reflector::store::<ConfigMap>();
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some("cfg".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            data: Some([("k".to_string(), "v".repeat(100))].into()),
            ..Default::default()
        };
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(cm));
        let p = store_part("cache configmaps", &store, &());
        assert_eq!(p.entries, 1);
        assert_eq!(p.bytes, None);
    }
}
