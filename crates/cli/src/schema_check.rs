//! Offline check of a document against a structural CRD schema, the way the API server treats
//! it: first **pruning** (fields the schema does not have are dropped), then **validation**
//! (type, enum, pattern, required, oneOf, minimum/maximum, length and item limits,
//! `x-kubernetes-int-or-string`, `int32`).
//!
//! Why not a general JSON-schema crate: the API server does not run plain JSON Schema. It
//! prunes unknown fields instead of rejecting them, drops `null` values of non-nullable fields,
//! and understands `x-kubernetes-int-or-string`; and we want each finding at a Kubernetes field
//! path with a fix. The subset of OpenAPI v3 that structural schemas may use is small, so the
//! walk below implements it directly. CEL rules (`x-kubernetes-validations`) are not evaluated.
//!
//! No I/O here: the caller hands in the parsed document and the schema.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::{Map, Value};

use flagger_core::validate::suggest::did_you_mean;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
}

/// What kind of finding it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A field the API server would drop because the schema does not have it.
    Pruned,
    /// A value the API server would reject.
    Invalid,
    /// A `null` the API server would drop.
    Null,
}

/// One finding, at a field path such as `spec.analysis.metrics[0].interval`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub kind: Kind,
    pub path: String,
    pub message: String,
}

/// Top-level keys every object has and the CRD schema does not list.
const IMPLICIT_ROOT_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

/// Prunes `doc` in place as the API server would and validates what is left against `schema`
/// (an `openAPIV3Schema`). `kind` names the resource in messages.
pub fn check(doc: &mut Value, schema: &Value, kind: &str) -> Vec<Finding> {
    let mut walker = Walker {
        kind,
        findings: Vec::new(),
        regexes: BTreeMap::new(),
    };
    walker.walk(doc, schema, "", true);
    walker.findings
}

struct Walker<'a> {
    kind: &'a str,
    findings: Vec<Finding>,
    regexes: BTreeMap<String, Option<Regex>>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

fn required_of(schema: &Value) -> Vec<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether an object satisfies a oneOf/anyOf branch made of `required`, `not`, `anyOf`,
/// `allOf` and `oneOf` (the only keywords the CRDs use inside such branches).
fn branch_matches(value: &Map<String, Value>, branch: &Value) -> bool {
    if !required_of(branch).iter().all(|k| value.contains_key(*k)) {
        return false;
    }
    if let Some(not) = branch.get("not")
        && branch_matches(value, not)
    {
        return false;
    }
    let list = |key: &str| -> Vec<&Value> {
        branch
            .get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    };
    let any = list("anyOf");
    if !any.is_empty() && !any.iter().any(|b| branch_matches(value, b)) {
        return false;
    }
    if !list("allOf").iter().all(|b| branch_matches(value, b)) {
        return false;
    }
    let one = list("oneOf");
    if !one.is_empty() && one.iter().filter(|b| branch_matches(value, b)).count() != 1 {
        return false;
    }
    true
}

impl Walker<'_> {
    fn push(&mut self, level: Level, kind: Kind, path: &str, message: String) {
        self.findings.push(Finding {
            level,
            kind,
            path: if path.is_empty() {
                "(document)".to_string()
            } else {
                path.to_string()
            },
            message,
        });
    }

    fn invalid(&mut self, path: &str, message: String) {
        self.push(Level::Error, Kind::Invalid, path, message);
    }

    fn regex(&mut self, pattern: &str) -> Option<Regex> {
        self.regexes
            .entry(pattern.to_string())
            .or_insert_with(|| Regex::new(pattern).ok())
            .clone()
    }

    fn walk(&mut self, value: &mut Value, schema: &Value, path: &str, root: bool) {
        if schema
            .get("x-kubernetes-int-or-string")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            if !matches!(type_name(value), "integer" | "string") {
                self.invalid(
                    path,
                    format!(
                        "must be an integer or a string, got {} {}",
                        type_name(value),
                        short(value)
                    ),
                );
            }
            return;
        }
        if let Some(want) = schema.get("type").and_then(Value::as_str) {
            let got = type_name(value);
            let fits = match want {
                "number" => matches!(got, "integer" | "number"),
                other => got == other,
            };
            if !fits {
                let hint = match (want, &*value) {
                    ("integer" | "number", Value::String(s)) if s.trim().parse::<f64>().is_ok() => {
                        "; remove the quotes"
                    }
                    ("string", Value::Number(_) | Value::Bool(_)) => "; quote the value",
                    ("integer", Value::Number(_)) => "; use a whole number",
                    ("array", Value::Object(_) | Value::String(_)) => {
                        "; write a list (each item on a line starting with `- `)"
                    }
                    _ => "",
                };
                self.invalid(
                    path,
                    format!("must be {want}, got {got} {}{hint}", short(value)),
                );
                return;
            }
        }
        self.scalar_rules(value, schema, path);
        match value {
            Value::Object(map) => self.object(map, schema, path, root),
            Value::Array(items) => {
                if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                    && items.len() as u64 > max
                {
                    self.invalid(
                        path,
                        format!(
                            "has {} items; Flagger's {} CRD allows at most {max}",
                            items.len(),
                            self.kind
                        ),
                    );
                }
                if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                    && (items.len() as u64) < min
                {
                    self.invalid(path, format!("needs at least {min} items"));
                }
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter_mut().enumerate() {
                        self.walk(item, item_schema, &format!("{path}[{i}]"), false);
                    }
                }
            }
            _ => {}
        }
    }

    fn scalar_rules(&mut self, value: &Value, schema: &Value, path: &str) {
        if let Some(options) = schema.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            let names: Vec<&str> = options.iter().filter_map(Value::as_str).collect();
            let shown: Vec<String> = options
                .iter()
                .map(|o| match o.as_str() {
                    Some("") => "\"\"".to_string(),
                    Some(s) => s.to_string(),
                    None => o.to_string(),
                })
                .collect();
            let hint = value
                .as_str()
                .map(|s| did_you_mean(s, &names))
                .unwrap_or_default();
            self.invalid(
                path,
                format!(
                    "{} is not one of the values Flagger's {} CRD accepts ({}).{hint}",
                    short(value),
                    self.kind,
                    shown.join(", ")
                ),
            );
        }
        if let Value::String(s) = value {
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
                && let Some(re) = self.regex(pattern)
                && !re.is_match(s)
            {
                let hint = if pattern == flagger_api::DURATION_PATTERN {
                    let same = flagger_core::duration::crd_form(s)
                        .map(|f| format!(" ({s} is {f})"))
                        .unwrap_or_default();
                    format!("; write whole seconds or minutes such as 30s, 1m or 90m{same}")
                } else {
                    String::new()
                };
                self.invalid(
                    path,
                    format!(
                        "{} does not match the pattern {pattern}{hint}",
                        short(value)
                    ),
                );
            }
            let len = s.chars().count() as u64;
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                self.invalid(path, format!("is {len} characters long; at most {max}"));
            }
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                self.invalid(path, format!("must be at least {min} characters long"));
            }
        }
        if let Some(n) = value.as_f64() {
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && n < min
            {
                self.invalid(path, format!("{} is below the minimum {min}", short(value)));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && n > max
            {
                self.invalid(path, format!("{} is above the maximum {max}", short(value)));
            }
            let format = schema.get("format").and_then(Value::as_str);
            if format == Some("int32") && (n < f64::from(i32::MIN) || n > f64::from(i32::MAX)) {
                self.invalid(path, format!("{} does not fit in 32 bits", short(value)));
            }
        }
    }

    fn object(&mut self, map: &mut Map<String, Value>, schema: &Value, path: &str, root: bool) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties").filter(|a| a.is_object());
        let preserve = schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            .unwrap_or(false);

        // 1. Pruning, and nulls (dropped for non-nullable fields).
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            if root && IMPLICIT_ROOT_FIELDS.contains(&key.as_str()) {
                continue;
            }
            let known = properties.is_some_and(|p| p.contains_key(&key)) || additional.is_some();
            let child_path = if properties.is_some_and(|p| p.contains_key(&key)) {
                join(path, &key)
            } else if additional.is_some() {
                format!("{path}[{key}]")
            } else {
                join(path, &key)
            };
            if !known && !preserve {
                let names: Vec<&str> = properties
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                let hint = if key == "canaryAnalysis" {
                    " It is the old name of `analysis`; move its content under `analysis`."
                        .to_string()
                } else {
                    did_you_mean(&key, &names)
                };
                self.push(
                    Level::Error,
                    Kind::Pruned,
                    &child_path,
                    format!(
                        "not a field of Flagger's {} CRD; the API server would drop it.{hint}",
                        self.kind
                    ),
                );
                map.remove(&key);
                continue;
            }
            if map.get(&key).is_some_and(Value::is_null) {
                self.push(
                    Level::Warning,
                    Kind::Null,
                    &child_path,
                    "is null; the API server drops it (write a value or remove the key)"
                        .to_string(),
                );
                map.remove(&key);
            }
        }

        // 2. required and oneOf on what is left.
        for key in required_of(schema) {
            if !map.contains_key(key) {
                self.invalid(
                    &join(path, key),
                    format!("required by Flagger's {} CRD, but missing", self.kind),
                );
            }
        }
        if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
            self.one_of(map, branches, path);
        }

        // 3. Children.
        for (key, child) in map.iter_mut() {
            if root && IMPLICIT_ROOT_FIELDS.contains(&key.as_str()) {
                continue;
            }
            if let Some(s) = properties.and_then(|p| p.get(key)) {
                self.walk(child, s, &join(path, key), false);
            } else if let Some(s) = additional {
                self.walk(child, s, &format!("{path}[{key}]"), false);
            }
        }
    }

    fn one_of(&mut self, map: &Map<String, Value>, branches: &[Value], path: &str) {
        let matched = branches.iter().filter(|b| branch_matches(map, b)).count();
        if matched == 1 {
            return;
        }
        // The fields every branch requires, and the ones that tell the branches apart.
        let sets: Vec<Vec<&str>> = branches.iter().map(required_of).collect();
        let common: Vec<&str> = sets
            .first()
            .map(|first| {
                first
                    .iter()
                    .copied()
                    .filter(|k| sets.iter().all(|s| s.contains(k)))
                    .collect()
            })
            .unwrap_or_default();
        let mut distinct: Vec<&str> = Vec::new();
        for k in sets.iter().flatten() {
            if !common.contains(k) && !distinct.contains(k) {
                distinct.push(k);
            }
        }
        let quoted = |ks: &[&str]| -> String {
            ks.iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if matched == 0 {
            let mut said = false;
            for k in &common {
                if !map.contains_key(*k) {
                    self.invalid(
                        &join(path, k),
                        format!(
                            "required by Flagger's {} CRD together with {}",
                            self.kind,
                            quoted(&distinct)
                                .rsplit_once(", ")
                                .map(|(a, b)| format!("one of {a} or {b}"))
                                .unwrap_or_else(|| quoted(&distinct))
                        ),
                    );
                    said = true;
                }
            }
            let any_distinct = distinct.iter().any(|k| map.contains_key(*k));
            if !any_distinct && !distinct.is_empty() {
                self.invalid(
                    path,
                    format!(
                        "must set exactly one of {} (Flagger's {} CRD oneOf)",
                        quoted(&distinct),
                        self.kind
                    ),
                );
                said = true;
            }
            if !said {
                self.invalid(
                    path,
                    format!(
                        "does not match any of the alternatives of Flagger's {} CRD (oneOf)",
                        self.kind
                    ),
                );
            }
        } else {
            let present: Vec<&str> = distinct
                .iter()
                .copied()
                .filter(|k| map.contains_key(*k))
                .collect();
            self.invalid(
                path,
                format!(
                    "sets {} together, but Flagger's {} CRD accepts exactly one of {} (oneOf)",
                    quoted(&present),
                    self.kind,
                    quoted(&distinct)
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canary_schema() -> Value {
        crate::validate::schemas()
            .remove("Canary")
            .expect("Canary schema")
    }

    fn run(doc: Value) -> (Value, Vec<Finding>) {
        let mut doc = doc;
        let findings = check(&mut doc, &canary_schema(), "Canary");
        (doc, findings)
    }

    fn base() -> Value {
        json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "labels": {"a": "b"}},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898, "targetPort": "http"},
                "analysis": {"interval": "1m", "threshold": 5, "stepWeight": 10, "maxWeight": 50}
            }
        })
    }

    fn paths(findings: &[Finding]) -> Vec<(Kind, &str)> {
        findings.iter().map(|f| (f.kind, f.path.as_str())).collect()
    }

    #[test]
    fn a_valid_canary_has_no_findings() {
        let (_, f) = run(base());
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn unknown_fields_are_pruned_with_a_suggestion() {
        let mut doc = base();
        doc["spec"]["analysis"]["stepweight"] = json!(5);
        doc["spec"]["analysis"]["delay"] = json!("30s");
        doc["spec"]["canaryAnalysis"] = json!({"interval": "1m"});
        let (pruned, f) = run(doc);
        assert_eq!(
            paths(&f),
            vec![
                (Kind::Pruned, "spec.canaryAnalysis"),
                (Kind::Pruned, "spec.analysis.delay"),
                (Kind::Pruned, "spec.analysis.stepweight"),
            ]
        );
        assert!(
            f[2].message.contains("Did you mean `stepWeight`?"),
            "{}",
            f[2].message
        );
        assert!(f[0].message.contains("old name of `analysis`"));
        assert!(pruned["spec"]["analysis"].get("delay").is_none());
    }

    #[test]
    fn types_enums_patterns_and_ranges() {
        let mut doc = base();
        doc["spec"]["analysis"]["threshold"] = json!("5");
        doc["spec"]["analysis"]["interval"] = json!("1h");
        doc["spec"]["provider"] = json!("gatewayapi");
        doc["spec"]["service"]["targetPort"] = json!(true);
        doc["spec"]["service"]["gatewayRefs"] = json!([{"name": "gw", "port": 70000}]);
        let (_, f) = run(doc);
        let p = paths(&f);
        for want in [
            "spec.provider",
            "spec.service.targetPort",
            "spec.service.gatewayRefs[0].port",
            "spec.analysis.interval",
            "spec.analysis.threshold",
        ] {
            assert!(p.contains(&(Kind::Invalid, want)), "{want} not in {p:?}");
        }
        let threshold = f
            .iter()
            .find(|x| x.path == "spec.analysis.threshold")
            .expect("threshold");
        assert!(threshold.message.contains("remove the quotes"));
        let provider = f
            .iter()
            .find(|x| x.path == "spec.provider")
            .expect("provider");
        assert!(
            provider
                .message
                .contains("Did you mean `gatewayapi:v1` or `gatewayapi:v1beta1`?")
        );
    }

    #[test]
    fn analysis_one_of() {
        let mut doc = base();
        doc["spec"]["analysis"]["iterations"] = json!(10);
        let (_, f) = run(doc);
        assert_eq!(paths(&f), vec![(Kind::Invalid, "spec.analysis")]);
        assert!(
            f[0].message
                .contains("sets `iterations`, `stepWeight` together")
        );

        let mut doc = base();
        doc["spec"]["analysis"] = json!({"interval": "1m", "iterations": 10});
        let (_, f) = run(doc);
        assert_eq!(paths(&f), vec![(Kind::Invalid, "spec.analysis.threshold")]);

        let mut doc = base();
        doc["spec"]["analysis"] = json!({"interval": "1m", "threshold": 1});
        let (_, f) = run(doc);
        assert_eq!(paths(&f), vec![(Kind::Invalid, "spec.analysis")]);
        assert!(f[0].message.contains("must set exactly one of"));
    }

    #[test]
    fn map_entries_use_brackets_and_their_own_one_of() {
        let mut doc = base();
        doc["spec"]["analysis"]["match"] =
            json!([{"headers": {"x-canary": {"exact": "a", "regex": "b"}}}]);
        let (_, f) = run(doc);
        assert_eq!(
            paths(&f),
            vec![(Kind::Invalid, "spec.analysis.match[0].headers[x-canary]")]
        );
    }

    #[test]
    fn nulls_are_dropped_then_required_fields_missing() {
        let mut doc = base();
        doc["spec"]["analysis"] = Value::Null;
        let (_, f) = run(doc);
        assert_eq!(
            paths(&f),
            vec![
                (Kind::Null, "spec.analysis"),
                (Kind::Invalid, "spec.analysis")
            ]
        );
        assert_eq!(f[0].level, Level::Warning);
    }

    #[test]
    fn max_items_and_int32() {
        let mut doc = base();
        let refs: Vec<Value> = (0..33).map(|i| json!({"name": format!("gw{i}")})).collect();
        doc["spec"]["service"]["gatewayRefs"] = Value::Array(refs);
        doc["spec"]["progressDeadlineSeconds"] = json!(5_000_000_000u64);
        let (_, f) = run(doc);
        assert_eq!(
            paths(&f),
            vec![
                (Kind::Invalid, "spec.progressDeadlineSeconds"),
                (Kind::Invalid, "spec.service.gatewayRefs"),
            ]
        );
    }
}
