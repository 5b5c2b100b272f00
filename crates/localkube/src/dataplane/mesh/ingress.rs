//! What the ingress controllers played here (ingress-nginx, Skipper) read of an Ingress
//! (`networking.k8s.io/v1`): its rules, paths and backends, and whether the controller of a
//! class serves it (the `kubernetes.io/ingress.class` annotation, else
//! `spec.ingressClassName`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::common::{objects, spec};
use crate::Api;

/// The legacy class annotation (checked before `spec.ingressClassName`).
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct IngressSpec {
    pub ingress_class_name: Option<String>,
    pub default_backend: Option<IngressBackend>,
    pub rules: Vec<IngressRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IngressRule {
    pub host: Option<String>,
    pub http: Option<HttpRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HttpRule {
    pub paths: Vec<HttpPath>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpPath {
    pub path: Option<String>,
    pub path_type: Option<String>,
    pub backend: IngressBackend,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IngressBackend {
    pub service: Option<ServiceBackend>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ServiceBackend {
    pub name: String,
    pub port: PortRef,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PortRef {
    pub number: Option<u32>,
    pub name: Option<String>,
}

impl PortRef {
    /// The port as ingress-nginx writes it in upstream names: the number, else the name.
    pub fn label(&self) -> String {
        match (&self.number, &self.name) {
            (Some(n), _) => n.to_string(),
            (None, Some(name)) => name.clone(),
            (None, None) => "0".into(),
        }
    }
}

/// Whether the controller of `class` serves an Ingress with these annotations and
/// `ingressClassName`; one with neither goes to the cluster's default class (`default`).
pub fn served(
    annotations: &BTreeMap<String, String>,
    class_name: Option<&str>,
    class: &str,
    default: bool,
) -> bool {
    match (annotations.get(CLASS_ANNOTATION), class_name) {
        (Some(a), _) => a == class,
        (None, Some(c)) => c == class,
        (None, None) => default,
    }
}

/// An Ingress a controller serves.
pub struct Served {
    pub object: Arc<Value>,
    pub annotations: BTreeMap<String, String>,
    pub spec: IngressSpec,
}

/// The Ingresses the controller of `class` serves ([`served`]), oldest first.
pub fn served_ingresses(api: &Api, class: &str, default: bool) -> Vec<Served> {
    objects(api, "networking.k8s.io", &["v1"], "Ingress")
        .into_iter()
        .filter_map(|object| {
            let spec = spec::<IngressSpec>(&object)?;
            let annotations = annotations(&object);
            served(
                &annotations,
                spec.ingress_class_name.as_deref(),
                class,
                default,
            )
            .then_some(Served {
                object,
                annotations,
                spec,
            })
        })
        .collect()
}

fn annotations(o: &Value) -> BTreeMap<String, String> {
    o.pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}
