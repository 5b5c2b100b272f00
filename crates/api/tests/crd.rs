//! The generated CRDs against Flagger's: the committed YAML is current, every field path of
//! Flagger's CRDs exists (and no other), the CRD metadata matches, and a kitchen-sink object
//! of each kind survives a trip through the Rust types unchanged.

use std::collections::BTreeSet;
use std::path::PathBuf;

use flagger_api::{AlertProvider, Canary, MetricTemplate};
use serde_json::Value;

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    let path = repo_file(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

// ----- (a) drift ----------------------------------------------------------------------------

#[test]
fn deploy_crds_yaml_is_up_to_date() {
    let committed = read("../../deploy/crds/crds.yaml");
    let generated = flagger_api::crd::crds_yaml();
    if committed != generated {
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "one file is a prefix of the other".to_string(),
                |i| format!("first difference at line {}", i + 1),
            );
        panic!(
            "deploy/crds/crds.yaml is out of date with the Rust types ({first}); regenerate it \
             with `cargo run -p flagger-cli -- crd > deploy/crds/crds.yaml`"
        );
    }
}

// ----- (b) field coverage -------------------------------------------------------------------

fn schema_of(kind: &str) -> Value {
    let crd = flagger_api::crd::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("openAPIV3Schema");
    serde_json::to_value(schema).expect("schema serializes")
}

/// Field paths of a schema in the crd-fields notation: `a.b`, `a.list[].c`; map values
/// (`additionalProperties`) are not descended into.
fn schema_paths(schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (key, sub) in props {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            out.insert(path.clone());
            schema_paths(sub, &path, out);
        }
    }
    if let Some(items) = schema.get("items") {
        schema_paths(items, &format!("{prefix}[]"), out);
    }
}

fn listed(file: &str) -> BTreeSet<String> {
    read(&format!("tests/fixtures/crd-fields/{file}"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

fn ours(kind: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    schema_paths(&schema_of(kind), "", &mut out);
    // The crd-fields lists start below `spec` and `status`.
    out.retain(|p| p.contains('.'));
    out
}

fn assert_same_fields(kind: &str, file: &str) {
    let flagger = listed(file);
    let mut ours = ours(kind);
    // Our own status block (docs/kubectl-flagger.md): a cluster with Flagger's CRDs prunes it,
    // and accepts the object; nothing else may differ.
    ours.retain(|p| !p.starts_with("status.analysis"));
    let missing: Vec<&String> = flagger.difference(&ours).collect();
    let extra: Vec<&String> = ours.difference(&flagger).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{kind}: fields of Flagger's CRD missing from ours: {missing:#?}\nfields we have that \
         Flagger does not: {extra:#?}"
    );
}

#[test]
fn canary_schema_has_exactly_flaggers_fields() {
    assert_same_fields("Canary", "canaries.flagger.app.txt");
}

#[test]
fn metric_template_schema_has_exactly_flaggers_fields() {
    assert_same_fields("MetricTemplate", "metrictemplates.flagger.app.txt");
}

#[test]
fn alert_provider_schema_has_exactly_flaggers_fields() {
    assert_same_fields("AlertProvider", "alertproviders.flagger.app.txt");
}

// ----- (c) round trip -----------------------------------------------------------------------

/// Numbers compared as f64 (`99` and `99.0` are the same value on the wire).
fn normalize(v: Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Number(n), Value::Number),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, normalize(v))).collect()),
        other => other,
    }
}

/// Field paths set in a value, in the crd-fields notation, driven by the schema.
fn value_paths(value: &Value, schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            for (key, sub) in map {
                let Some(sub_schema) = props.get(key) else {
                    continue;
                };
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                out.insert(path.clone());
                value_paths(sub, sub_schema, &path, out);
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    value_paths(item, item_schema, &format!("{prefix}[]"), out);
                }
            }
        }
        _ => {}
    }
}

fn round_trip<K>(kind: &str, fixture: &str, fields: &str)
where
    K: serde::de::DeserializeOwned + serde::Serialize,
{
    let text = read(&format!("tests/fixtures/kitchen-sink/{fixture}"));
    let original: Value = serde_yaml::from_str(&text).expect("fixture is YAML");

    // The fixture really sets every field Flagger's CRD has.
    let mut set = BTreeSet::new();
    value_paths(&original, &schema_of(kind), "", &mut set);
    let unset: Vec<String> = listed(fields).difference(&set).cloned().collect();
    assert!(unset.is_empty(), "{fixture} does not set {unset:#?}");

    let typed: K = serde_yaml::from_str(&text).expect("fixture deserializes");
    let back = serde_json::to_value(&typed).expect("serializes");
    pretty_assertions::assert_eq!(
        normalize(back),
        normalize(original),
        "{kind}: a field was lost, renamed or changed on the way through the Rust types"
    );
}

#[test]
fn kitchen_sink_canary_round_trips() {
    round_trip::<Canary>("Canary", "canary.yaml", "canaries.flagger.app.txt");
}

#[test]
fn kitchen_sink_metric_template_round_trips() {
    round_trip::<MetricTemplate>(
        "MetricTemplate",
        "metrictemplate.yaml",
        "metrictemplates.flagger.app.txt",
    );
}

#[test]
fn kitchen_sink_alert_provider_round_trips() {
    round_trip::<AlertProvider>(
        "AlertProvider",
        "alertprovider.yaml",
        "alertproviders.flagger.app.txt",
    );
}

// ----- CRD metadata -------------------------------------------------------------------------

#[test]
fn crds_have_flaggers_names_categories_subresources_and_keep_policy() {
    let crds = flagger_api::crd::crds();
    let names: Vec<&str> = crds
        .iter()
        .map(|c| c.metadata.name.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "canaries.flagger.app",
            "metrictemplates.flagger.app",
            "alertproviders.flagger.app"
        ]
    );
    for crd in &crds {
        let name = crd.metadata.name.as_deref().unwrap_or("");
        assert_eq!(crd.spec.group, "flagger.app");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["all".to_string()][..]),
            "{name}: categories"
        );
        assert_eq!(crd.spec.names.short_names, None, "{name}: no short names");
        assert_eq!(
            crd.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("helm.sh/resource-policy"))
                .map(String::as_str),
            Some("keep"),
            "{name}: helm.sh/resource-policy"
        );
        assert_eq!(crd.spec.versions.len(), 1, "{name}: one version");
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1beta1");
        assert!(v.served && v.storage, "{name}: served and stored");
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{name}: status subresource"
        );
        let schema = schema_of(&crd.spec.names.kind);
        assert!(
            !serde_json::to_string(&schema)
                .unwrap_or_default()
                .contains("x-kubernetes-preserve-unknown-fields"),
            "{name}: fully structural, nothing preserved"
        );
    }
}

#[test]
fn canary_printer_columns_match_flaggers() {
    let crd = flagger_api::crd::crds().remove(0);
    let cols: Vec<(String, String, String, i32)> = crd.spec.versions[0]
        .additional_printer_columns
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.type_.clone(),
                c.json_path.clone(),
                c.priority.unwrap_or(0),
            )
        })
        .collect();
    let want = [
        ("Status", "string", ".status.phase", 0),
        ("Weight", "string", ".status.canaryWeight", 0),
        ("Suspended", "boolean", ".spec.suspend", 1),
        ("FailedChecks", "string", ".status.failedChecks", 1),
        ("Interval", "string", ".spec.analysis.interval", 1),
        ("Mirror", "boolean", ".spec.analysis.mirror", 1),
        ("StepWeight", "string", ".spec.analysis.stepWeight", 1),
        ("StepWeights", "string", ".spec.analysis.stepWeights", 1),
        ("MaxWeight", "string", ".spec.analysis.maxWeight", 1),
        (
            "LastTransitionTime",
            "string",
            ".status.lastTransitionTime",
            0,
        ),
    ]
    .map(|(n, t, p, prio)| (n.to_string(), t.to_string(), p.to_string(), prio));
    assert_eq!(cols, want);
}

#[test]
fn other_printer_columns_match_flaggers() {
    let crds = flagger_api::crd::crds();
    let col = |i: usize| {
        let c = &crds[i].spec.versions[0]
            .additional_printer_columns
            .as_deref()
            .unwrap_or_default()[0];
        (c.name.clone(), c.json_path.clone())
    };
    assert_eq!(
        col(1),
        ("Provider".to_string(), ".spec.provider.type".to_string())
    );
    assert_eq!(col(2), ("Type".to_string(), ".spec.type".to_string()));
}
