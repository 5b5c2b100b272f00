//! Namespace termination as kube-controller-manager's namespace controller runs it.
//!
//! A deleted Namespace is kept (`deletionTimestamp`, phase `Terminating`) while its
//! `spec.finalizers` holds `kubernetes`. The controller ([`reconcile_terminating`], called by
//! the simulated garbage collector) deletes everything in it, reports what is left in the five
//! `NamespaceDeletion*`/`Namespace*Remaining` conditions (objects held by finalizers keep it
//! `Terminating`, and the `NamespaceFinalizersRemaining` condition names them), and once the
//! namespace is empty removes its `kubernetes` finalizer, which lets the namespace go.
//! Creating anything in a terminating namespace is refused (see `Api::create`).

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};

use crate::api::{Api, DeleteOptions, ListOptions, WriteOptions, namespace_finalizers_pending};
use crate::error::ApiError;
use crate::store::Write;
use crate::util;

/// The condition types the namespace controller keeps, with their reason and message when
/// nothing is wrong (status `False`).
const CONDITIONS: &[(&str, &str, &str)] = &[
    (
        "NamespaceDeletionDiscoveryFailure",
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    (
        "NamespaceContentRemaining",
        "ContentRemoved",
        "All content successfully removed",
    ),
    (
        "NamespaceFinalizersRemaining",
        "ContentHasNoFinalizers",
        "All content-preserving finalizers finished",
    ),
];

/// What remains in a terminating namespace: objects per `resource.group`, and objects per
/// finalizer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Remaining {
    pub by_resource: BTreeMap<String, usize>,
    pub by_finalizer: BTreeMap<String, usize>,
}

impl Remaining {
    pub fn is_empty(&self) -> bool {
        self.by_resource.is_empty()
    }

    /// The conditions the namespace controller reports for this state (`now` for new
    /// transitions).
    pub fn conditions(&self, now: &str) -> Vec<Value> {
        CONDITIONS
            .iter()
            .map(|(ty, ok_reason, ok_msg)| {
                let remaining = match *ty {
                    "NamespaceContentRemaining" if !self.by_resource.is_empty() => {
                        let parts: Vec<String> = self
                            .by_resource
                            .iter()
                            .map(|(r, n)| format!("{r} has {n} resource instances"))
                            .collect();
                        Some((
                            "SomeResourcesRemain",
                            format!("Some resources are remaining: {}", parts.join(", ")),
                        ))
                    }
                    "NamespaceFinalizersRemaining" if !self.by_finalizer.is_empty() => {
                        let parts: Vec<String> = self
                            .by_finalizer
                            .iter()
                            .map(|(f, n)| format!("{f} in {n} resource instances"))
                            .collect();
                        Some((
                            "SomeFinalizersRemain",
                            format!(
                                "Some content in the namespace has finalizers remaining: {}",
                                parts.join(", ")
                            ),
                        ))
                    }
                    _ => None,
                };
                match remaining {
                    Some((reason, message)) => json!({"type": ty, "status": "True",
                        "lastTransitionTime": now, "reason": reason, "message": message}),
                    None => json!({"type": ty, "status": "False",
                        "lastTransitionTime": now, "reason": ok_reason, "message": ok_msg}),
                }
            })
            .collect()
    }
}

/// The namespaced objects of `ns`, by resource (each storage key once).
fn content(api: &Api, ns: &str) -> Vec<(std::sync::Arc<crate::registry::ResourceInfo>, Value)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for info in api.registry.all() {
        if !info.namespaced || !seen.insert(info.storage_key()) {
            continue;
        }
        if let Ok(list) = api.list(&info, Some(ns), &ListOptions::default()) {
            for it in list["items"].as_array().cloned().unwrap_or_default() {
                out.push((info.clone(), it));
            }
        }
    }
    out
}

/// What is left in `ns`.
pub fn remaining(api: &Api, ns: &str) -> Remaining {
    let mut r = Remaining::default();
    for (info, o) in content(api, ns) {
        // `pods.` for the core group, as the controller prints `resource.group`.
        *r.by_resource
            .entry(format!("{}.{}", info.plural, info.group))
            .or_default() += 1;
        for f in o
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            *r.by_finalizer.entry(f.to_string()).or_default() += 1;
        }
    }
    r
}

/// One pass of the namespace controller over terminating namespace `ns_obj`: deletes its
/// content, records the conditions, and finalizes it once empty. Returns whether it must be
/// looked at again (content remains).
pub fn reconcile_terminating(api: &Api, ns_obj: &Value) -> bool {
    let ns = util::name(ns_obj).to_string();
    for (info, o) in content(api, &ns) {
        if o.pointer("/metadata/deletionTimestamp").is_none()
            && let Err(e) = api.delete(&info, &ns, util::name(&o), &DeleteOptions::default())
            && e.code != 404
        {
            tracing::warn!(namespace = %ns, error = %e, "namespace content deletion failed");
        }
    }
    let left = remaining(api, &ns);
    write_conditions(api, &ns, &left);
    if !left.is_empty() {
        return true;
    }
    finalize(api, &ns);
    false
}

/// Writes the conditions when they changed (a transition keeps its time otherwise).
fn write_conditions(api: &Api, ns: &str, left: &Remaining) {
    let Ok(info) = api.resource("v1", "Namespace") else {
        return;
    };
    let Ok(cur) = api.get(&info, "", ns) else {
        return;
    };
    let now = util::now();
    let old: Vec<Value> = cur
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let strip = |c: &Value| {
        let mut c = c.clone();
        if let Some(m) = c.as_object_mut() {
            m.remove("lastTransitionTime");
        }
        c
    };
    let new: Vec<Value> = left
        .conditions(&now)
        .into_iter()
        .map(|c| match old.iter().find(|o| o["type"] == c["type"]) {
            Some(o) if o["status"] == c["status"] => {
                let mut c = c;
                c["lastTransitionTime"] = o["lastTransitionTime"].clone();
                c
            }
            _ => c,
        })
        .collect();
    if new.iter().map(strip).eq(old.iter().map(strip)) {
        return;
    }
    let mut obj = cur;
    obj["status"]["conditions"] = json!(new);
    obj["status"]["phase"] = json!("Terminating");
    let opts = WriteOptions {
        field_manager: Some("kube-controller-manager".into()),
        ..Default::default()
    };
    if let Err(e) = api.update(&info, "", ns, obj, "status", &opts) {
        tracing::debug!(namespace = %ns, error = %e, "namespace conditions not written");
    }
}

/// Removes the `kubernetes` finalizer (the `finalize` subresource's job); the namespace is
/// gone when no finalizer of either list remains.
fn finalize(api: &Api, ns: &str) {
    let key = crate::api::ResourceKeyCache::namespaces();
    let res = api.store.write(&key, "", ns, false, |cur| {
        let Some(cur) = cur else {
            return Ok::<_, ApiError>(Write::Keep);
        };
        let mut n = cur.clone();
        if let Some(fs) = n
            .pointer_mut("/spec/finalizers")
            .and_then(Value::as_array_mut)
        {
            fs.retain(|f| f != "kubernetes");
        }
        let meta_empty = n
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if !namespace_finalizers_pending(&n) && meta_empty {
            return Ok(Write::Delete);
        }
        Ok(if &n == cur {
            Write::Keep
        } else {
            Write::Put(n)
        })
    });
    if let Err(e) = res {
        tracing::warn!(namespace = %ns, error = %e, "namespace finalization failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_name_what_remains() {
        let mut r = Remaining::default();
        r.by_resource.insert("pods.".into(), 2);
        r.by_resource.insert("canaries.flagger.app".into(), 1);
        r.by_finalizer.insert("finalizer.flagger.app".into(), 1);
        let c = r.conditions("t");
        assert_eq!(c.len(), 5);
        assert_eq!(c[3]["type"], "NamespaceContentRemaining");
        assert_eq!(c[3]["status"], "True");
        assert_eq!(c[3]["reason"], "SomeResourcesRemain");
        assert_eq!(
            c[3]["message"],
            "Some resources are remaining: canaries.flagger.app has 1 resource instances, pods. has 2 resource instances"
        );
        assert_eq!(c[4]["reason"], "SomeFinalizersRemain");
        assert_eq!(
            c[4]["message"],
            "Some content in the namespace has finalizers remaining: finalizer.flagger.app in 1 resource instances"
        );
        assert_eq!(c[0]["status"], "False");
        assert_eq!(c[0]["reason"], "ResourcesDiscovered");
        let ok = Remaining::default().conditions("t");
        assert!(ok.iter().all(|c| c["status"] == "False"));
        assert_eq!(
            ok[4]["message"],
            "All content-preserving finalizers finished"
        );
    }
}
