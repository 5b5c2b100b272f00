//! OpenAPI v3 documents, enough for kubectl: an index of group-versions, and per group-version
//! the PATCH operations with their GVK and the `fieldValidation` parameter (so kubectl leaves
//! validation to the server), plus a schema per kind (a CRD's own schema for custom resources).
//!
//! The PATCH operations deliberately do not list strategic merge patch: kubectl then computes
//! strategic merge patches for built-in kinds from its compiled-in types, and JSON merge
//! patches for custom resources, exactly as against a real server without OpenAPI schemas.

use serde_json::{Map, Value, json};

use crate::registry::Registry;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn hash(reg: &Registry, group: &str, version: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for r in reg.resources_of(group, version) {
        for b in format!("{r:?}").bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016X}")
}

pub fn index(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for (g, vs) in reg.groups() {
        for v in vs {
            let p = gv_path(&g, &v);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(reg, &g, &v))}),
            );
        }
    }
    json!({"paths": paths})
}

pub fn document(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let rs = reg.resources_of(group, version);
    if rs.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for r in rs {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let schema_name = if r.group.is_empty() {
            format!("io.k8s.api.core.{}.{}", r.version, r.kind)
        } else {
            let rev: Vec<&str> = r.group.split('.').rev().collect();
            format!("{}.{}.{}", rev.join("."), r.version, r.kind)
        };
        let mut schema = r
            .crd
            .as_ref()
            .and_then(|c| c.schema.clone())
            .unwrap_or_else(
                || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
        schema["x-kubernetes-group-version-kind"] = json!([gvk]);
        schemas.insert(schema_name.clone(), schema);
        let item = format!(
            "/{}{}/{{name}}",
            gv_path(group, version),
            if r.namespaced {
                format!("/namespaces/{{namespace}}/{}", r.plural)
            } else {
                format!("/{}", r.plural)
            }
        );
        let body_schema =
            json!({"schema": {"$ref": format!("#/components/schemas/{schema_name}")}});
        let params = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
            {"name": "force", "in": "query", "schema": {"type": "boolean"}},
        ]);
        paths.insert(item, json!({
            "get": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "get", "responses": {"200": {"description": "OK", "content": {"application/json": body_schema}}}},
            "put": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "put", "parameters": params,
                    "requestBody": {"content": {"application/json": body_schema}}, "responses": {"200": {"description": "OK"}}},
            "patch": {
                "x-kubernetes-group-version-kind": gvk,
                "x-kubernetes-action": "patch",
                "parameters": params,
                "requestBody": {"content": {
                    "application/json-patch+json": {"schema": {"type": "object"}},
                    "application/merge-patch+json": {"schema": {"type": "object"}},
                    "application/apply-patch+yaml": {"schema": {"type": "object"}},
                }},
                "responses": {"200": {"description": "OK", "content": {"application/json": body_schema}}},
            },
        }));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
