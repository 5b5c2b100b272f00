//! Namespace deletion: a terminating namespace has its contents deleted, and goes once it is
//! empty (objects with finalizers keep it until their finalizers are released).

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::objects::{deleting, list, log_err};
use crate::api::{Api, DeleteOptions};
use crate::error::ApiError;
use crate::registry::ResourceInfo;
use crate::util;

/// Reconciles a namespace (`info` is the namespaces resource); true while it waits for its
/// contents to go.
pub(super) fn reconcile_namespace(api: &Api, info: &ResourceInfo, o: &Value) -> bool {
    if !deleting(o) {
        return false;
    }
    let ns = util::name(o);
    let content = contents(api, ns);
    if content.is_empty() {
        let _ = api.store.write(&info.storage_key(), "", ns, false, |_| {
            Ok::<_, ApiError>(crate::store::Write::Delete)
        });
        return false;
    }
    for (i, x) in content {
        if !deleting(&x) {
            log_err(
                "namespace content",
                api.delete(&i, ns, util::name(&x), &DeleteOptions::default()),
            );
        }
    }
    true
}

/// Every object in namespace `ns`, with its resource (each storage once).
fn contents(api: &Api, ns: &str) -> Vec<(Arc<ResourceInfo>, Value)> {
    let mut seen = HashSet::new();
    let mut content = Vec::new();
    for i in api.registry.all() {
        if i.namespaced && seen.insert(i.storage_key()) {
            for x in list(api, &i, Some(ns)) {
                content.push((i.clone(), x));
            }
        }
    }
    content
}
