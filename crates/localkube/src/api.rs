//! The verbs, independent of HTTP: used by the HTTP layer and by in-process callers (simulated
//! controllers, garbage collector, a future data plane).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::registry::{Registry, ResourceInfo};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::ssa;
use crate::store::{Store, Write, Written};
use crate::util;

pub use crate::validation::FieldValidation;

/// Options of a write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub field_validation: FieldValidation,
    pub force: bool,
    /// The client's User-Agent, used for the default field manager.
    pub user_agent: Option<String>,
}

impl WriteOptions {
    fn manager(&self) -> String {
        self.field_manager.clone().unwrap_or_else(|| {
            self.user_agent
                .as_deref()
                .and_then(|ua| ua.split('/').next())
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown")
                .to_string()
        })
    }
}

/// The patch content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let ct = ct.split(';').next().unwrap_or_default().trim();
        Some(match ct {
            "application/json-patch+json" => Self::Json,
            "application/merge-patch+json" => Self::Merge,
            "application/strategic-merge-patch+json" => Self::Strategic,
            "application/apply-patch+yaml" | "application/apply-patch+json" => Self::Apply,
            _ => return None,
        })
    }
}

/// Delete propagation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

impl DeleteOptions {
    /// Reads a `DeleteOptions` body merged with query parameters.
    pub fn from_body(body: &Value) -> Self {
        let prop = match body["propagationPolicy"].as_str() {
            Some("Foreground") => Some(Propagation::Foreground),
            Some("Orphan") => Some(Propagation::Orphan),
            Some("Background") => Some(Propagation::Background),
            _ => match body["orphanDependents"].as_bool() {
                Some(true) => Some(Propagation::Orphan),
                Some(false) => Some(Propagation::Background),
                None => None,
            },
        };
        Self {
            dry_run: body["dryRun"].as_array().is_some_and(|a| !a.is_empty()),
            propagation: prop,
            precondition_uid: body["preconditions"]["uid"].as_str().map(String::from),
            precondition_rv: body["preconditions"]["resourceVersion"]
                .as_str()
                .map(String::from),
        }
    }
}

/// List options.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

/// The result of a write.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub object: Value,
    pub created: bool,
    pub warnings: Vec<String>,
}

/// The API: registry plus store.
#[derive(Debug, Clone)]
pub struct Api {
    pub registry: Arc<Registry>,
    pub store: Arc<Store>,
}

fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    let raw = format!("{rv}\n{ns}\n{name}");
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(tok: &str) -> Option<(u64, String, String)> {
    let bytes: Option<Vec<u8>> = (0..tok.len())
        .step_by(2)
        .map(|i| {
            tok.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    let s = String::from_utf8(bytes?).ok()?;
    let mut it = s.splitn(3, '\n');
    Some((
        it.next()?.parse().ok()?,
        it.next()?.into(),
        it.next()?.into(),
    ))
}

fn list_keys_for(info: &ResourceInfo) -> ssa::ListKeys {
    if info.crd.is_some() {
        ssa::atomic_lists
    } else {
        ssa::builtin_list_keys
    }
}

fn strip_for_compare(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(md) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        md.remove("resourceVersion");
        md.remove("managedFields");
    }
    v
}

/// What counts for `metadata.generation`.
fn generation_content(v: &Value, info: &ResourceInfo) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if info.status {
            m.remove("status");
        }
    }
    v
}

/// A list (`<Kind>List`) whose items are shared with the store: it serializes as the list
/// object without copying them.
#[derive(Debug, Clone)]
pub struct SharedList {
    pub kind: String,
    pub api_version: String,
    pub metadata: Value,
    pub items: Vec<Arc<Value>>,
}

impl serde::Serialize for SharedList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let items: Vec<&Value> = self.items.iter().map(Arc::as_ref).collect();
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("apiVersion", &self.api_version)?;
        m.serialize_entry("items", &items)?;
        m.serialize_entry("kind", &self.kind)?;
        m.serialize_entry("metadata", &self.metadata)?;
        m.end()
    }
}

impl Api {
    pub fn new(registry: Arc<Registry>, store: Arc<Store>) -> Self {
        // Pods are label-indexed: the simulated controllers select them by label (an
        // informer's index answers a real controller the same way).
        if let Some(pods) = registry.by_kind("v1", "Pod") {
            store.index_labels(&pods.storage_key());
        }
        Self { registry, store }
    }

    /// Looks up a resource by apiVersion and kind.
    pub fn resource(&self, api_version: &str, kind: &str) -> ApiResult<Arc<ResourceInfo>> {
        self.registry
            .by_kind(api_version, kind)
            .ok_or_else(|| ApiError::not_found("", "resource", &format!("{api_version}/{kind}")))
    }

    /// The NamespaceLifecycle admission of a create: the namespace must exist and not be
    /// terminating.
    fn check_namespace(&self, info: &ResourceInfo, ns: &str, name: &str) -> ApiResult<()> {
        if !info.namespaced {
            return Ok(());
        }
        if ns.is_empty() {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let nsinfo = ResourceKeyCache::namespaces();
        match self.store.get_shared(&nsinfo, "", ns) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => Err(
                ApiError::namespace_terminating(&info.group, &info.plural, name, ns),
            ),
            Some(_) => Ok(()),
        }
    }

    pub fn get(&self, info: &ResourceInfo, ns: &str, name: &str) -> ApiResult<Value> {
        self.get_shared(info, ns, name).map(Arc::unwrap_or_clone)
    }

    /// As [`Api::get`], the object shared with the store when it is served as stored (a
    /// custom resource served in another version than its storage one is copied).
    pub fn get_shared(&self, info: &ResourceInfo, ns: &str, name: &str) -> ApiResult<Arc<Value>> {
        let ns = if info.namespaced { ns } else { "" };
        let v = self
            .store
            .get_shared(&info.storage_key(), ns, name)
            .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))?;
        Ok(self.present_shared(info, v))
    }

    /// Fixes apiVersion for the served version (CRDs keep objects under their storage version).
    fn present(&self, info: &ResourceInfo, v: &mut Value) {
        if info.crd.is_some() {
            v["apiVersion"] = json!(info.api_version());
        }
    }

    /// As [`Api::present`] on a shared object: copied only when its apiVersion changes.
    fn present_shared(&self, info: &ResourceInfo, v: Arc<Value>) -> Arc<Value> {
        if info.crd.is_none() || v["apiVersion"].as_str() == Some(&info.api_version()) {
            return v;
        }
        let mut v = Arc::unwrap_or_clone(v);
        self.present(info, &mut v);
        Arc::new(v)
    }

    /// Lists objects; returns the list object (`<Kind>List`).
    pub fn list(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<Value> {
        let l = self.list_shared(info, ns, opts)?;
        Ok(json!({
            "kind": l.kind,
            "apiVersion": l.api_version,
            "metadata": l.metadata,
            "items": l.items.iter().map(|i| Value::clone(i)).collect::<Vec<_>>(),
        }))
    }

    /// As [`Api::list`], the items shared with the store; it serializes as the list object.
    pub fn list_shared(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<SharedList> {
        let ls = LabelSelector::parse(opts.label_selector.as_deref().unwrap_or_default())?;
        let fs = FieldSelector::parse(opts.field_selector.as_deref().unwrap_or_default())?;
        let ns = if info.namespaced {
            ns.filter(|n| !n.is_empty())
        } else {
            None
        };
        let after = match &opts.continue_token {
            Some(t) if !t.is_empty() => Some(
                decode_continue(t)
                    .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?,
            ),
            _ => None,
        };
        let limit = opts.limit.filter(|l| *l > 0);
        let (matching, remaining, rv) = self.store.page_shared(
            &info.storage_key(),
            ns,
            after
                .as_ref()
                .map(|(_, ans, aname)| (ans.as_str(), aname.as_str())),
            |o| ls.matches_object(o) && fs.matches(o),
            limit,
        );
        if opts.resource_version_match.as_deref() == Some("Exact")
            && let Some(want) = opts
                .resource_version
                .as_deref()
                .and_then(|r| r.parse::<u64>().ok())
            && want != rv
        {
            return Err(ApiError::gone(format!(
                "too old resource version: {want} ({rv})"
            )));
        }
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if remaining > 0
            && let Some(last) = matching.last()
        {
            meta["continue"] = json!(encode_continue(rv, util::namespace(last), util::name(last)));
            meta["remainingItemCount"] = json!(remaining);
        }
        Ok(SharedList {
            kind: info.list_kind(),
            api_version: info.api_version(),
            metadata: meta,
            items: matching
                .into_iter()
                .map(|m| self.present_shared(info, m))
                .collect(),
        })
    }

    /// Creates an object.
    pub fn create(
        &self,
        info: &ResourceInfo,
        ns: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Outcome> {
        let mut obj = body;
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not a JSON object",
            ));
        }
        self.check_type(info, &obj)?;
        obj["apiVersion"] = json!(info.api_version());
        obj["kind"] = json!(info.kind);
        let md = util::obj_at(&mut obj, &["metadata"]);
        let ns = if info.namespaced {
            let body_ns = md
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let ns = if ns.is_empty() {
                body_ns.clone()
            } else {
                ns.to_string()
            };
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            let ns = if ns.is_empty() {
                "default".to_string()
            } else {
                ns
            };
            md.insert("namespace".into(), json!(ns));
            ns
        } else {
            md.remove("namespace");
            String::new()
        };
        let mut name = md
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty()
            && let Some(prefix) = md.get("generateName").and_then(Value::as_str)
        {
            name = format!("{prefix}{}", random_suffix(5));
            md.insert("name".into(), json!(name));
        }
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
            "selfLink",
        ] {
            md.remove(k);
        }
        self.check_namespace(info, &ns, &name)?;
        if info.has_generation() {
            md.insert("generation".into(), json!(1));
        }
        let warnings =
            crate::defaults::prepare_create(&self.store, info, &mut obj, opts.field_validation)?;
        let manager = opts.manager();
        let api_version = info.api_version();
        let lk = list_keys_for(info);
        ssa::record_update(None, &mut obj, &manager, &api_version, "", lk);
        let written = self
            .store
            .write(&info.storage_key(), &ns, &name, opts.dry_run, |cur| {
                if cur.is_some() {
                    Err(ApiError::already_exists(&info.group, &info.plural, &name))
                } else {
                    Ok(Write::Put(obj))
                }
            })?;
        let mut object = match written {
            Written::Put(o) => o,
            _ => return Err(ApiError::internal("create did not store")),
        };
        self.present(info, &mut object);
        Ok(Outcome {
            object,
            created: true,
            warnings,
        })
    }

    fn check_type(&self, info: &ResourceInfo, obj: &Value) -> ApiResult<()> {
        if let Some(k) = obj.get("kind").and_then(Value::as_str)
            && !k.is_empty()
            && k != info.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind of the object ({k}) does not match the kind of the resource ({})",
                info.kind
            )));
        }
        if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
            let (g, _) = crate::registry::split_api_version(av);
            if !av.is_empty() && g != info.group {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({})",
                    info.api_version()
                )));
            }
        }
        Ok(())
    }

    /// Turns a proposed new state into the write to perform: subresource rules, immutable
    /// metadata, generation, validation, managed fields, no-op detection, finalization.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        info: &ResourceInfo,
        cur: &Value,
        mut new: Value,
        sub: &str,
        opts: &WriteOptions,
        track: bool,
        warnings: &mut Vec<String>,
    ) -> ApiResult<Write> {
        if !new.is_object() {
            return Err(ApiError::bad_request("the object is not a JSON object"));
        }
        new["apiVersion"] = cur["apiVersion"].clone();
        new["kind"] = cur["kind"].clone();
        if sub == "status" {
            let status = new.get("status").cloned();
            let mut n = cur.clone();
            match status {
                Some(s) => n["status"] = s,
                None => {
                    if let Some(m) = n.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            // Status writes may carry managedFields changes only through tracking below.
            new = n;
        } else if info.status {
            match cur.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        {
            let cmd = cur["metadata"].clone();
            let md = util::obj_at(&mut new, &["metadata"]);
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "namespace",
                "name",
                "generation",
            ] {
                match cmd.get(k) {
                    Some(v) => md.insert(k.into(), v.clone()),
                    None => md.remove(k),
                };
            }
            md.remove("resourceVersion");
            if !track {
                match cmd.get("managedFields") {
                    Some(v) => md.insert("managedFields".into(), v.clone()),
                    None => md.remove("managedFields"),
                };
            }
        }
        warnings.extend(crate::defaults::prepare_update(
            info,
            cur,
            &mut new,
            sub,
            opts.field_validation,
        )?);
        if info.has_generation() && generation_content(cur, info) != generation_content(&new, info)
        {
            let g = cur
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            new["metadata"]["generation"] = json!(g + 1);
        }
        if track {
            ssa::record_update(
                Some(cur),
                &mut new,
                &opts.manager(),
                &info.api_version(),
                sub,
                list_keys_for(info),
            );
        }
        if strip_for_compare(cur) == strip_for_compare(&new) {
            return Ok(Write::Keep);
        }
        if new.pointer("/metadata/deletionTimestamp").is_some()
            && finalizers_empty(&new)
            && !(info.crd.is_none()
                && info.plural == "namespaces"
                && namespace_finalizers_pending(&new))
        {
            return Ok(Write::Delete);
        }
        Ok(Write::Put(new))
    }

    fn result(&self, info: &ResourceInfo, w: Written, warnings: Vec<String>) -> ApiResult<Outcome> {
        let mut object = match w {
            Written::Put(o) | Written::Deleted(o) => o,
            Written::Unchanged(Some(o)) => o,
            Written::Unchanged(None) => return Err(ApiError::internal("object vanished")),
        };
        self.present(info, &mut object);
        Ok(Outcome {
            object,
            created: false,
            warnings,
        })
    }

    /// Replaces an object (PUT), optionally of a subresource (`status`).
    pub fn update(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        body: Value,
        sub: &str,
        opts: &WriteOptions,
    ) -> ApiResult<Outcome> {
        let ns = if info.namespaced { ns } else { "" };
        self.check_type(info, &body)?;
        if let Some(bn) = body.pointer("/metadata/name").and_then(Value::as_str)
            && bn != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({bn}) does not match the name on the URL ({name})"
            )));
        }
        let mut warnings = Vec::new();
        let w = self
            .store
            .write(&info.storage_key(), ns, name, opts.dry_run, |cur| {
                let Some(cur) = cur else {
                    return Err(ApiError::not_found(&info.group, &info.plural, name));
                };
                if let Some(rv) = body
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    && !rv.is_empty()
                    && Some(rv)
                        != cur
                            .pointer("/metadata/resourceVersion")
                            .and_then(Value::as_str)
                {
                    return Err(ApiError::stale(&info.group, &info.plural, name));
                }
                self.finish(info, cur, body, sub, opts, true, &mut warnings)
            })?;
        self.result(info, w, warnings)
    }

    /// Patches an object (any patch type; apply creates when missing).
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        ptype: PatchType,
        patch: Value,
        sub: &str,
        opts: &WriteOptions,
    ) -> ApiResult<Outcome> {
        let ns = if info.namespaced { ns } else { "" };
        if ptype == PatchType::Strategic && info.crd.is_some() {
            return Err(ApiError::unsupported_media(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        if ptype == PatchType::Apply {
            if opts.field_manager.as_deref().is_none_or(str::is_empty) {
                return Err(ApiError::bad_request(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            self.check_type(info, &patch)?;
            if patch.get("kind").is_none() || patch.get("apiVersion").is_none() {
                return Err(ApiError::bad_request(
                    "invalid object type: apiVersion and kind are required for apply",
                ));
            }
            let exists = self
                .store
                .get_shared(&info.storage_key(), ns, name)
                .is_some();
            if !exists && sub.is_empty() {
                return self.apply_create(info, ns, name, patch, opts);
            }
        }
        let mut warnings = Vec::new();
        let w = self
            .store
            .write(&info.storage_key(), ns, name, opts.dry_run, |cur| {
                let Some(cur) = cur else {
                    return Err(ApiError::not_found(&info.group, &info.plural, name));
                };
                let mut presented = cur.clone();
                self.present(info, &mut presented);
                let (new, track) = match ptype {
                    PatchType::Merge => {
                        let mut n = presented;
                        crate::patch::merge_patch(&mut n, &patch);
                        (n, true)
                    }
                    PatchType::Json => {
                        let mut n = presented;
                        crate::patch::json_patch(&mut n, &patch)?;
                        (n, true)
                    }
                    PatchType::Strategic => {
                        let mut n = presented;
                        crate::patch::strategic_merge_patch(&mut n, &patch)?;
                        (n, true)
                    }
                    PatchType::Apply => {
                        let n = ssa::apply(
                            Some(&presented),
                            &patch,
                            &opts.manager(),
                            opts.force,
                            &info.api_version(),
                            sub,
                            list_keys_for(info),
                            (&info.group, &info.plural, name),
                        )?;
                        (n, false)
                    }
                };
                if let Some(rv) = patch
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    && ptype != PatchType::Apply
                    && Some(rv)
                        != cur
                            .pointer("/metadata/resourceVersion")
                            .and_then(Value::as_str)
                {
                    return Err(ApiError::stale(&info.group, &info.plural, name));
                }
                let mut new = new;
                if !track {
                    // Apply computed managedFields itself; keep them through `finish`.
                    let mf = new.pointer("/metadata/managedFields").cloned();
                    let mut c = cur.clone();
                    match mf {
                        Some(m) => c["metadata"]["managedFields"] = m.clone(),
                        None => {
                            if let Some(md) = c.get_mut("metadata").and_then(Value::as_object_mut) {
                                md.remove("managedFields");
                            }
                        }
                    }
                    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove("resourceVersion");
                    }
                    return self
                        .finish(info, &c, new, sub, opts, false, &mut warnings)
                        .map(|w| match w {
                            // A no-op apply still records ownership changes.
                            Write::Keep if ownership(&c) != ownership(cur) => Write::Put(c),
                            w => w,
                        });
                }
                self.finish(info, cur, new, sub, opts, true, &mut warnings)
            })?;
        self.result(info, w, warnings)
    }

    fn apply_create(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        patch: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Outcome> {
        let mut obj = ssa::apply(
            None,
            &patch,
            &opts.manager(),
            opts.force,
            &info.api_version(),
            "",
            list_keys_for(info),
            (&info.group, &info.plural, name),
        )?;
        let md = util::obj_at(&mut obj, &["metadata"]);
        md.insert("name".into(), json!(name));
        if info.namespaced {
            md.insert("namespace".into(), json!(ns));
        }
        let mf = md.get("managedFields").cloned();
        let mut o = self.create_raw(info, ns, obj, opts)?;
        if let Some(mf) = mf {
            // Ownership is the apply's, not an Update's.
            let key = info.storage_key();
            let w = self.store.write(&key, ns, name, opts.dry_run, |cur| {
                let Some(cur) = cur else {
                    return Ok::<_, ApiError>(Write::Keep);
                };
                let mut c = cur.clone();
                c["metadata"]["managedFields"] = mf;
                Ok(Write::Put(c))
            })?;
            if let Written::Put(mut obj) = w {
                self.present(info, &mut obj);
                o.object = obj;
            }
        }
        Ok(o)
    }

    fn create_raw(
        &self,
        info: &ResourceInfo,
        ns: &str,
        obj: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Outcome> {
        self.create(info, ns, obj, opts)
    }

    /// Deletes an object, honouring preconditions, finalizers and propagation.
    pub fn delete(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Outcome> {
        let ns = if info.namespaced { ns } else { "" };
        let default_prop = Propagation::Background;
        let w = self.store.write(&info.storage_key(), ns, name, opts.dry_run, |cur| {
            let Some(cur) = cur else {
                return Err(ApiError::not_found(&info.group, &info.plural, name));
            };
            let md = &cur["metadata"];
            if let Some(uid) = &opts.precondition_uid
                && md["uid"].as_str() != Some(uid) {
                    return Err(ApiError::conflict(&info.group, &info.plural, name, &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        md["uid"].as_str().unwrap_or_default()
                    )));
                }
            if let Some(rv) = &opts.precondition_rv
                && md["resourceVersion"].as_str() != Some(rv) {
                    return Err(ApiError::conflict(&info.group, &info.plural, name, &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        md["resourceVersion"].as_str().unwrap_or_default()
                    )));
                }
            let mut new = cur.clone();
            let mut add_finalizer = |f: &str| {
                let m = util::obj_at(&mut new, &["metadata"]);
                let list = m.entry("finalizers").or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut()
                    && !a.iter().any(|x| x == f) {
                        a.push(json!(f));
                    }
            };
            match opts.propagation.unwrap_or(default_prop) {
                Propagation::Foreground => add_finalizer("foregroundDeletion"),
                Propagation::Orphan => add_finalizer("orphan"),
                Propagation::Background => {}
            }
            let is_ns = info.group.is_empty() && info.plural == "namespaces";
            if is_ns {
                // The namespace controller empties it first.
                if new.pointer("/metadata/deletionTimestamp").is_none() {
                    new["metadata"]["deletionTimestamp"] = json!(util::now());
                    new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                    new["status"]["phase"] = json!("Terminating");
                    return Ok(Write::Put(new));
                }
                if namespace_finalizers_pending(cur) {
                    return Err(ApiError::conflict(
                        "",
                        "namespaces",
                        name,
                        "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system.",
                    ));
                }
                return Ok(Write::Keep);
            }
            if finalizers_empty(&new) {
                return Ok(Write::Delete);
            }
            if new.pointer("/metadata/deletionTimestamp").is_none() {
                new["metadata"]["deletionTimestamp"] = json!(util::now());
                new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                if info.has_generation() {
                    let g = new.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
                    new["metadata"]["generation"] = json!(g + 1);
                }
            }
            if strip_for_compare(&new) == strip_for_compare(cur) {
                return Ok(Write::Keep);
            }
            Ok(Write::Put(new))
        })?;
        self.result(info, w, Vec::new())
    }

    /// Deletes every object matching the list options.
    pub fn delete_collection(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> ApiResult<Value> {
        let mut l = list.clone();
        l.limit = None;
        l.continue_token = None;
        let items = self.list(info, ns, &l)?;
        let mut deleted = Vec::new();
        for it in items["items"].as_array().cloned().unwrap_or_default() {
            match self.delete(info, util::namespace(&it), util::name(&it), opts) {
                Ok(o) => deleted.push(o.object),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(json!({
            "kind": info.list_kind(),
            "apiVersion": info.api_version(),
            "metadata": {"resourceVersion": self.store.resource_version().to_string()},
            "items": deleted,
        }))
    }
}

/// managedFields without timestamps, to tell whether ownership changed.
fn ownership(v: &Value) -> Value {
    let mut mf = v
        .pointer("/metadata/managedFields")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(a) = mf.as_array_mut() {
        for e in a {
            if let Some(m) = e.as_object_mut() {
                m.remove("time");
            }
        }
    }
    mf
}

/// Whether a Namespace still waits on a `spec.finalizers` entry (its content's removal, see
/// [`crate::namespace`]).
pub fn namespace_finalizers_pending(ns: &Value) -> bool {
    ns.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

fn finalizers_empty(v: &Value) -> bool {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty())
}

/// A random lowercase alphanumeric suffix like the apiserver's for generateName.
pub fn random_suffix(n: usize) -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let u = uuid::Uuid::new_v4();
    u.as_bytes()
        .iter()
        .take(n)
        .map(|b| ALPHA[*b as usize % ALPHA.len()] as char)
        .collect()
}

/// Well-known keys.
pub struct ResourceKeyCache;

impl ResourceKeyCache {
    pub fn namespaces() -> crate::store::ResourceKey {
        crate::store::ResourceKey::new("", "v1", "namespaces")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_with_configmaps() -> (Api, Arc<ResourceInfo>) {
        let api = Api::new(Arc::new(Registry::new()), Arc::new(Store::new(64)));
        let nsinfo = api.resource("v1", "Namespace").expect("namespaces");
        api.create(
            &nsinfo,
            "",
            json!({"metadata": {"name": "a"}}),
            &WriteOptions::default(),
        )
        .expect("namespace");
        let info = api.resource("v1", "ConfigMap").expect("configmaps");
        for (name, tier) in [("one", "web"), ("two", "db"), ("three", "web")] {
            api.create(
                &info,
                "a",
                json!({"metadata": {"name": name, "labels": {"tier": tier}}, "data": {"k": name}}),
                &WriteOptions::default(),
            )
            .expect("configmap");
        }
        (api, info)
    }

    #[test]
    fn a_shared_list_serializes_as_the_list_object() {
        let (api, info) = api_with_configmaps();
        for opts in [
            ListOptions::default(),
            ListOptions {
                label_selector: Some("tier=web".into()),
                ..Default::default()
            },
            ListOptions {
                limit: Some(1),
                ..Default::default()
            },
        ] {
            let shared = api.list_shared(&info, Some("a"), &opts).expect("list");
            let copied = api.list(&info, Some("a"), &opts).expect("list");
            assert_eq!(serde_json::to_value(&shared).expect("serializes"), copied);
        }
        let web = api
            .list_shared(
                &info,
                None,
                &ListOptions {
                    label_selector: Some("tier=web".into()),
                    ..Default::default()
                },
            )
            .expect("list");
        let names: Vec<&str> = web.items.iter().map(|i| util::name(i)).collect();
        assert_eq!(names, ["one", "three"]);
        assert_eq!(web.kind, "ConfigMapList");
    }

    #[test]
    fn a_get_shares_the_stored_object_and_copies_on_request() {
        let (api, info) = api_with_configmaps();
        let shared = api.get_shared(&info, "a", "two").expect("get");
        let stored = api
            .store
            .get_shared(&info.storage_key(), "a", "two")
            .expect("stored");
        assert!(
            Arc::ptr_eq(&shared, &stored),
            "served as stored: not copied"
        );
        assert_eq!(api.get(&info, "a", "two").expect("get"), *stored);
        let missing = api.get_shared(&info, "a", "nine").expect_err("not found");
        assert_eq!(missing.code, 404);
    }
}
