//! Field ownership (managedFields) and server-side apply, as structured-merge over JSON.
//!
//! A field set is a set of paths; path elements are written as in `fieldsV1`: `f:<field>`,
//! `k:<json of key fields>` (associative list element), `v:<json>` (set element), `i:<index>`.
//! A path ending with an associative element stands for the element itself (`.` in fieldsV1).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::error::ApiError;

pub type Path = Vec<String>;
pub type FieldSet = BTreeSet<Path>;

/// How lists are treated: returns the key fields of an associative list, `Some(vec![])` for a
/// set of scalars, or `None` for an atomic list.
pub type ListKeys = fn(field: &str, items: &[Value]) -> Option<Vec<String>>;

/// List semantics of the built-in types.
pub fn builtin_list_keys(field: &str, items: &[Value]) -> Option<Vec<String>> {
    if field == "finalizers" {
        return Some(vec![]);
    }
    let key = crate::patch::merge_key(field, items)?;
    if !items.iter().all(|i| i.get(key).is_some()) {
        return None;
    }
    Some(vec![key.to_string()])
}

/// Custom resources: lists are atomic unless the schema says otherwise (not modelled).
pub fn atomic_lists(field: &str, _items: &[Value]) -> Option<Vec<String>> {
    if field == "finalizers" {
        return Some(vec![]);
    }
    None
}

const UNTRACKED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

fn key_elem(item: &Value, keys: &[String]) -> String {
    let mut m = Map::new();
    for k in keys {
        m.insert(k.clone(), item.get(k).cloned().unwrap_or(Value::Null));
    }
    format!("k:{}", Value::Object(m))
}

/// The leaf paths of an object (apiVersion, kind and server-set metadata excluded).
pub fn field_set(obj: &Value, list_keys: ListKeys, include_status: bool) -> FieldSet {
    let mut out = FieldSet::new();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            if k == "apiVersion" || k == "kind" || (k == "status" && !include_status) {
                continue;
            }
            let mut p = vec![format!("f:{k}")];
            if k == "metadata" {
                if let Some(md) = v.as_object() {
                    for (mk, mv) in md {
                        if UNTRACKED_META.contains(&mk.as_str()) {
                            continue;
                        }
                        p.push(format!("f:{mk}"));
                        walk(mv, mk, &mut p, &mut out, list_keys);
                        p.pop();
                    }
                }
                continue;
            }
            walk(v, k, &mut p, &mut out, list_keys);
            p.pop();
        }
    }
    out
}

fn walk(v: &Value, field: &str, p: &mut Path, out: &mut FieldSet, list_keys: ListKeys) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                p.push(format!("f:{k}"));
                walk(c, k, p, out, list_keys);
                p.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match list_keys(field, items) {
            Some(keys) if keys.is_empty() => {
                for i in items {
                    p.push(format!("v:{i}"));
                    out.insert(p.clone());
                    p.pop();
                }
            }
            Some(keys) if items.iter().all(Value::is_object) => {
                for i in items {
                    p.push(key_elem(i, &keys));
                    out.insert(p.clone());
                    if let Some(m) = i.as_object() {
                        for (k, c) in m {
                            p.push(format!("f:{k}"));
                            walk(c, k, p, out, list_keys);
                            p.pop();
                        }
                    }
                    p.pop();
                }
            }
            _ => {
                out.insert(p.clone());
            }
        },
        _ => {
            out.insert(p.clone());
        }
    }
}

/// The value at a path, if present.
pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for e in path {
        cur = step(cur, e)?;
    }
    Some(cur)
}

fn step<'a>(cur: &'a Value, e: &str) -> Option<&'a Value> {
    if let Some(f) = e.strip_prefix("f:") {
        cur.get(f)
    } else if let Some(k) = e.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).ok()?;
        cur.as_array()?.iter().find(|i| {
            key.iter()
                .all(|(kk, kv)| i.get(kk).unwrap_or(&Value::Null) == kv)
        })
    } else if let Some(v) = e.strip_prefix("v:") {
        let v: Value = serde_json::from_str(v).ok()?;
        cur.as_array()?.iter().find(|i| **i == v)
    } else if let Some(i) = e.strip_prefix("i:") {
        cur.get(i.parse::<usize>().ok()?)
    } else {
        None
    }
}

/// Removes the value at a path.
pub fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for e in parent {
        let next = if let Some(f) = e.strip_prefix("f:") {
            cur.get_mut(f)
        } else {
            let idx = value_at(cur, std::slice::from_ref(e))
                .and_then(|t| cur.as_array()?.iter().position(|i| std::ptr::eq(i, t)));
            match idx {
                Some(i) => cur.get_mut(i),
                None => None,
            }
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(t) = value_at(cur, std::slice::from_ref(last)) {
        let t = t as *const Value;
        if let Some(a) = cur.as_array_mut() {
            a.retain(|i| !std::ptr::eq(i, t));
        }
    }
}

/// Whether `p` names a key field of an associative-list element (`k:{"port":80,...}` then
/// `f:port`): an element that stays keeps its keys.
fn is_key_field(p: &[String]) -> bool {
    let [.., elem, last] = p else {
        return false;
    };
    let (Some(k), Some(f)) = (elem.strip_prefix("k:"), last.strip_prefix("f:")) else {
        return false;
    };
    serde_json::from_str::<Map<String, Value>>(k).is_ok_and(|m| m.contains_key(f))
}

/// Renders a field set as `fieldsV1`.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for p in set {
        let mut cur = &mut root;
        for e in p {
            let entry = cur.entry(e.clone()).or_insert_with(|| json!({}));
            cur = match entry {
                Value::Object(m) => m,
                _ => unreachable!("fieldsV1 nodes are objects"),
            };
        }
        if p.last().is_some_and(|l| l.starts_with("k:")) {
            cur.insert(".".into(), json!({}));
        }
    }
    Value::Object(root)
}

/// Parses `fieldsV1` back into a field set.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn go(v: &Value, p: &mut Path, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        if m.is_empty() {
            if !p.is_empty() {
                out.insert(p.clone());
            }
            return;
        }
        for (k, c) in m {
            if k == "." {
                out.insert(p.clone());
                continue;
            }
            p.push(k.clone());
            go(c, p, out);
            p.pop();
        }
    }
    let mut out = FieldSet::new();
    go(v, &mut Vec::new(), &mut out);
    out
}

/// A path as the apiserver prints it in conflicts: `.spec.containers[name="a"].image`.
pub fn display_path(p: &[String]) -> String {
    let mut s = String::new();
    for e in p {
        if let Some(f) = e.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = e.strip_prefix("k:") {
            let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", inner.join(",")));
        } else if let Some(v) = e.strip_prefix("v:") {
            s.push_str(&format!("[{v}]"));
        } else if let Some(i) = e.strip_prefix("i:") {
            s.push_str(&format!("[{i}]"));
        }
    }
    s
}

/// One managedFields entry, parsed.
#[derive(Debug, Clone)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: FieldSet,
}

pub fn read_entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or_default().into(),
                    operation: e["operation"].as_str().unwrap_or("Update").into(),
                    api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
                    time: e["time"].as_str().unwrap_or_default().into(),
                    subresource: e["subresource"].as_str().unwrap_or_default().into(),
                    fields: from_fields_v1(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if let Some(md) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            md.remove("managedFields");
        } else {
            md.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Records a non-apply write by `manager`: fields it changed become its own (and no one
/// else's); fields that disappeared are dropped from every manager.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: &str,
    list_keys: ListKeys,
) {
    let mut entries = old.map(read_entries).unwrap_or_default();
    let include_status = subresource == "status" || !subresource.is_empty();
    let new_set = field_set(new, list_keys, true);
    let old_set = old
        .map(|o| field_set(o, list_keys, true))
        .unwrap_or_default();
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| old.is_none_or(|o| value_at(o, p) != value_at(new, p)))
        .filter(|p| include_status || p.first().is_none_or(|f| f != "f:status") || old.is_none())
        .cloned()
        .collect();
    let removed: FieldSet = old_set.difference(&new_set).cloned().collect();
    for e in entries.iter_mut() {
        e.fields.retain(|p| !removed.contains(p));
        if !(e.manager == manager && e.operation == "Update" && e.subresource == subresource) {
            e.fields.retain(|p| !changed.contains(p));
        }
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| {
            e.manager == manager && e.operation == "Update" && e.subresource == subresource
        }) {
            Some(e) => {
                e.fields.extend(changed);
                e.time = crate::util::now();
                e.api_version = api_version.into();
            }
            None => entries.push(Entry {
                manager: manager.into(),
                operation: "Update".into(),
                api_version: api_version.into(),
                time: crate::util::now(),
                subresource: subresource.into(),
                fields: changed,
            }),
        }
    }
    write_entries(new, &entries);
}

/// Merges an applied configuration into an object (associative lists by key, sets as unions,
/// atomic lists replaced).
fn merge_applied(target: &mut Value, applied: &Value, field: &str, list_keys: ListKeys) {
    match (target, applied) {
        (Value::Object(t), Value::Object(a)) => {
            for (k, av) in a {
                if field.is_empty() && (k == "status") {
                    continue;
                }
                match t.get_mut(k) {
                    Some(tv) if !av.is_null() => merge_applied(tv, av, k, list_keys),
                    _ => {
                        t.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(a)) => match list_keys(field, a) {
            Some(keys) if keys.is_empty() => {
                for i in a {
                    if !t.contains(i) {
                        t.push(i.clone());
                    }
                }
            }
            Some(keys) if a.iter().all(Value::is_object) => {
                for i in a {
                    let pos = t
                        .iter()
                        .position(|x| keys.iter().all(|k| x.get(k) == i.get(k)));
                    match pos {
                        Some(p) => merge_applied(&mut t[p], i, field, list_keys),
                        None => t.push(i.clone()),
                    }
                }
            }
            _ => *t = a.clone(),
        },
        (t, a) => *t = a.clone(),
    }
}

/// Server-side apply of `applied` by `manager` onto `current` (None when creating). Returns the
/// new object with its managedFields, or a 409 naming the conflicting managers and fields.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    subresource: &str,
    list_keys: ListKeys,
    gr: (&str, &str, &str),
) -> Result<Value, ApiError> {
    let status_only = subresource == "status";
    let mut applied_set = field_set(applied, list_keys, status_only);
    if status_only {
        applied_set.retain(|p| p.first().is_some_and(|f| f == "f:status"));
    }
    let mut entries = current.map(read_entries).unwrap_or_default();
    let base = current.cloned().unwrap_or_else(|| json!({}));
    let mut conflicts: Vec<(String, String, String)> = Vec::new();
    for e in entries.iter_mut() {
        if e.manager == manager {
            continue;
        }
        let clashing: Vec<Path> = e
            .fields
            .iter()
            .filter(|p| {
                applied_set.contains(*p)
                    && !p
                        .last()
                        .is_some_and(|l| l.starts_with("k:") || l.starts_with("v:"))
                    && value_at(&base, p).is_some()
                    && value_at(&base, p) != value_at(applied, p)
            })
            .cloned()
            .collect();
        if clashing.is_empty() {
            continue;
        }
        if force {
            e.fields.retain(|p| !clashing.contains(p));
        } else {
            for p in clashing {
                conflicts.push((e.manager.clone(), e.api_version.clone(), display_path(&p)));
            }
        }
    }
    if !conflicts.is_empty() {
        let n = conflicts.len();
        let msg = if n == 1 {
            format!(
                "Apply failed with 1 conflict: conflict with \"{}\" using {}: {}",
                conflicts[0].0, conflicts[0].1, conflicts[0].2
            )
        } else {
            let mut by_manager: Vec<(String, String, Vec<String>)> = Vec::new();
            for (m, v, f) in &conflicts {
                match by_manager.iter_mut().find(|(bm, _, _)| bm == m) {
                    Some((_, _, fs)) => fs.push(f.clone()),
                    None => by_manager.push((m.clone(), v.clone(), vec![f.clone()])),
                }
            }
            let parts: Vec<String> = by_manager
                .iter()
                .map(|(m, v, fs)| {
                    let lines: Vec<String> = fs.iter().map(|f| format!("- {f}")).collect();
                    format!("conflicts with \"{m}\" using {v}:\n{}", lines.join("\n"))
                })
                .collect();
            format!("Apply failed with {n} conflicts: {}", parts.join("\n"))
        };
        let (group, resource, name) = gr;
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(m, v, f)| {
                json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\" using {v}"), "field": f})
            })
            .collect();
        let mut err = ApiError::new(409, "Conflict", msg);
        err.details =
            Some(json!({"name": name, "group": group, "kind": resource, "causes": causes}));
        return Err(err);
    }
    let mut new = base.clone();
    let mut to_merge = applied.clone();
    if let Some(m) = to_merge.as_object_mut() {
        if status_only {
            m.retain(|k, _| k == "status" || k == "apiVersion" || k == "kind");
        }
        if let Some(md) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in [
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "managedFields",
                "generation",
            ] {
                md.remove(k);
            }
        }
    }
    merge_applied(&mut new, &to_merge, "", list_keys);
    if status_only && let Some(s) = applied.get("status") {
        let mut st = base.get("status").cloned().unwrap_or_else(|| json!({}));
        merge_applied(&mut st, s, "status", list_keys);
        new["status"] = st;
    }
    // Fields this manager applied before but not now, and that nobody else owns, go away.
    if let Some(mine) = entries
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply" && e.subresource == subresource)
    {
        let others: Vec<&Path> = entries
            .iter()
            .filter(|e| {
                !(e.manager == manager && e.operation == "Apply" && e.subresource == subresource)
            })
            .flat_map(|e| e.fields.iter())
            .collect();
        let mut gone: Vec<&Path> = mine
            .fields
            .iter()
            .filter(|p| !applied_set.iter().any(|a| a == *p || a.starts_with(p)))
            .filter(|p| !others.iter().any(|o| o.starts_with(p)))
            .filter(|p| !is_key_field(p))
            .collect();
        // Whole subtrees first: an element removed with its fields keeps nothing behind (its
        // unowned, defaulted fields included), and an element's identity is never broken by
        // removing a key field before the element itself.
        gone.sort_by_key(|p| p.len());
        for p in gone {
            remove_at(&mut new, p);
        }
    }
    match entries
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Apply" && e.subresource == subresource)
    {
        Some(e) => {
            e.fields = applied_set;
            e.time = crate::util::now();
            e.api_version = api_version.into();
        }
        None => entries.push(Entry {
            manager: manager.into(),
            operation: "Apply".into(),
            api_version: api_version.into(),
            time: crate::util::now(),
            subresource: subresource.into(),
            fields: applied_set,
        }),
    }
    write_entries(&mut new, &entries);
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_v1_round_trip() {
        let o = json!({"metadata": {"name": "x", "labels": {"a": "b"}}, "spec": {"replicas": 1,
            "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let s = field_set(&o, builtin_list_keys, false);
        let v = to_fields_v1(&s);
        assert_eq!(
            v["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["."],
            json!({})
        );
        assert_eq!(from_fields_v1(&v), s);
    }

    #[test]
    fn apply_conflict_and_force() {
        let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "1"}});
        let o = apply(
            None,
            &a,
            "alice",
            false,
            "v1",
            "",
            builtin_list_keys,
            ("", "configmaps", "x"),
        )
        .unwrap();
        let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "2"}});
        let err = apply(
            Some(&o),
            &b,
            "bob",
            false,
            "v1",
            "",
            builtin_list_keys,
            ("", "configmaps", "x"),
        )
        .unwrap_err();
        assert_eq!(err.code, 409);
        assert!(
            err.message.contains("conflict with \"alice\""),
            "{}",
            err.message
        );
        let o2 = apply(
            Some(&o),
            &b,
            "bob",
            true,
            "v1",
            "",
            builtin_list_keys,
            ("", "configmaps", "x"),
        )
        .unwrap();
        assert_eq!(o2["data"]["k"], "2");
        // alice re-applies without the field: nothing removed since bob owns it now.
        let a2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"other": "1"}});
        let o3 = apply(
            Some(&o2),
            &a2,
            "alice",
            false,
            "v1",
            "",
            builtin_list_keys,
            ("", "configmaps", "x"),
        )
        .unwrap();
        assert_eq!(o3["data"]["k"], "2");
        // bob drops the field: removed.
        let b2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
        let o4 = apply(
            Some(&o3),
            &b2,
            "bob",
            false,
            "v1",
            "",
            builtin_list_keys,
            ("", "configmaps", "x"),
        )
        .unwrap();
        assert!(o4["data"].get("k").is_none());
        assert_eq!(o4["data"]["other"], "1");
    }

    #[test]
    fn a_list_element_dropped_by_its_applier_goes_whole() {
        let svc = |ports: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": ports}});
        let key = ("", "services", "s");
        let two = svc(json!([{"name": "http", "port": 80}, {"name": "grpc", "port": 9999}]));
        let mut o = apply(
            None,
            &two,
            "flagger",
            false,
            "v1",
            "",
            builtin_list_keys,
            key,
        )
        .expect("applies");
        // Defaults nobody owns, as the server adds them.
        for p in o["spec"]["ports"].as_array_mut().expect("ports") {
            p["protocol"] = json!("TCP");
            p["targetPort"] = p["port"].clone();
        }
        let one = svc(json!([{"name": "http", "port": 80}]));
        let o2 = apply(
            Some(&o),
            &one,
            "flagger",
            false,
            "v1",
            "",
            builtin_list_keys,
            key,
        )
        .expect("applies");
        assert_eq!(
            o2["spec"]["ports"],
            json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}])
        );
        // Another manager owning a field of the element keeps it, keys included.
        let mut entries = read_entries(&o);
        entries.push(Entry {
            manager: "kubectl".into(),
            operation: "Update".into(),
            api_version: "v1".into(),
            time: String::new(),
            subresource: String::new(),
            fields: [vec![
                "f:spec".to_string(),
                "f:ports".into(),
                r#"k:{"port":9999}"#.into(),
                "f:targetPort".into(),
            ]]
            .into_iter()
            .collect(),
        });
        write_entries(&mut o, &entries);
        let o3 = apply(
            Some(&o),
            &one,
            "flagger",
            false,
            "v1",
            "",
            builtin_list_keys,
            key,
        )
        .expect("applies");
        assert_eq!(
            o3["spec"]["ports"][1],
            json!({"port": 9999, "protocol": "TCP", "targetPort": 9999})
        );
    }
}
