//! Generation of the three CustomResourceDefinitions from the types.
//!
//! `kube`'s derive produces structural schemas; this module adds what Flagger's CRDs also carry
//! (`helm.sh/resource-policy: keep`, the status subresource on every kind) and drops `nullable`
//! markers so the schemas accept exactly what Flagger's accept.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceSubresources,
};
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde_json::Value;

use crate::{AlertProvider, Canary, MetricTemplate};

/// Annotation that keeps the CRDs (and so every Canary) when a Helm release is uninstalled.
pub const HELM_KEEP: (&str, &str) = ("helm.sh/resource-policy", "keep");

/// The three CRDs, in the order Flagger ships them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        finish(Canary::crd(), schema_of::<Canary>()),
        finish(MetricTemplate::crd(), schema_of::<MetricTemplate>()),
        finish(AlertProvider::crd(), schema_of::<AlertProvider>()),
    ]
}

/// The CRDs as one multi-document YAML stream (what `flagger crd` prints).
pub fn crds_yaml() -> String {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        // A CRD built from our own types always serializes.
        out.push_str(&serde_yaml::to_string(&crd).unwrap_or_default());
    }
    out
}

/// The structural schema of a resource, generated as kube's derive does it but without
/// `nullable`, and with the [`ONE_OF_MARKER`] constraints turned into `oneOf`.
fn schema_of<K: JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(kube::core::schema::StructuralSchemaRewriter)
        .with_transform(kube::core::schema::OptionalEnum)
        .with_transform(kube::core::schema::OptionalIntOrString)
        .into_generator();
    let mut value = serde_json::to_value(generator.into_root_schema_for::<K>()).unwrap_or_default();
    finish_schema(&mut value);
    value
}

fn finish(mut crd: CustomResourceDefinition, schema: Value) -> CustomResourceDefinition {
    crd.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(HELM_KEEP.0.to_string(), HELM_KEEP.1.to_string());
    for version in &mut crd.spec.versions {
        version
            .subresources
            .get_or_insert_with(CustomResourceSubresources::default)
            .status
            // `{}`: a null here reads back as "no status subresource".
            .get_or_insert_with(|| {
                k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceSubresourceStatus(
                    serde_json::json!({}),
                )
            });
        if let Some(slot) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            && let Ok(clean) = serde_json::from_value(schema.clone())
        {
            *slot = clean;
        }
    }
    crd
}

/// Marker the types use for `oneOf` constraints: kube's structural rewriter would try to hoist
/// a real `oneOf` into `properties`, while these only carry `required` (and nested `not`) rules.
pub const ONE_OF_MARKER: &str = "x-flagger-one-of";

fn finish_schema(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("nullable");
            if let Some(one_of) = map.remove(ONE_OF_MARKER) {
                map.insert("oneOf".to_string(), one_of);
            }
            map.values_mut().for_each(finish_schema);
        }
        Value::Array(items) => items.iter_mut().for_each(finish_schema),
        _ => {}
    }
}
