//! The objects of a repository as the rules read them: where each comes from, its identity, and
//! whether a GitOps tool is told to keep off it (Flux annotations, Argo CD `ignoreDifferences`).

use serde_json::Value;

use flagger_api::labels::{FIELD_MANAGER, FLUX_RECONCILE_DISABLED};

/// Flux kustomize-controller's apply policy annotation (`Override`, `Merge`, `IfNotPresent`,
/// `Ignore`).
const FLUX_SSA: &str = "kustomize.toolkit.fluxcd.io/ssa";

/// Where an object was read from: the file and the line of its `kind:` (or of the document
/// start when there is no top-level `kind:` line).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Source {
    pub path: String,
    pub line: usize,
}

/// One Kubernetes object of the repository.
#[derive(Clone, Debug)]
pub struct Object {
    pub source: Source,
    pub value: Value,
}

impl Object {
    pub fn new(path: &str, line: usize, value: Value) -> Self {
        Self {
            source: Source {
                path: path.to_string(),
                line,
            },
            value,
        }
    }

    pub(crate) fn str_at(&self, pointer: &str) -> Option<&str> {
        self.value.pointer(pointer).and_then(Value::as_str)
    }

    pub fn api_version(&self) -> &str {
        self.str_at("/apiVersion").unwrap_or("")
    }

    /// API group: what comes before the `/` of `apiVersion`; empty for the core group.
    pub fn group(&self) -> &str {
        self.api_version()
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
    }

    pub fn kind(&self) -> &str {
        self.str_at("/kind").unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.str_at("/metadata/name").unwrap_or("")
    }

    /// `metadata.namespace`, when the manifest sets one.
    pub fn namespace(&self) -> Option<&str> {
        self.str_at("/metadata/namespace").filter(|n| !n.is_empty())
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.value
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
    }

    /// `Kind/name`, as findings name objects.
    pub fn display(&self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }

    /// How the manifest keeps Flux's kustomize-controller from applying it over the live
    /// object, if it does: `kustomize.toolkit.fluxcd.io/ssa: IfNotPresent` (create once) or
    /// `Ignore` (never apply), or `kustomize.toolkit.fluxcd.io/reconcile: disabled`.
    pub(crate) fn flux_hands_off(&self) -> Option<String> {
        if let Some(v) = self
            .annotation(FLUX_SSA)
            .filter(|v| v.eq_ignore_ascii_case("IfNotPresent") || v.eq_ignore_ascii_case("Ignore"))
        {
            return Some(format!("{FLUX_SSA}: {v}"));
        }
        let (key, value) = FLUX_RECONCILE_DISABLED;
        self.annotation(key)
            .filter(|v| v.eq_ignore_ascii_case(value))
            .map(|v| format!("{key}: {v}"))
    }
}

/// Two objects can be the same object when their namespaces agree. A manifest without a
/// namespace gets one at apply time (the Kustomization's `targetNamespace`, the Application's
/// destination), so it is taken to agree with any namespace.
pub(crate) fn same_namespace(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// Whether an Argo CD Application in the repository ignores every one of `pointers` on the
/// object and keeps syncs from writing them (`RespectIgnoreDifferences=true`), or trusts
/// Flagger's field manager (`managedFieldsManagers: [flagger]`, flagger-rs's
/// [`FIELD_MANAGER`]; Flagger's client-go manager is named after its binary, `flagger`, too).
pub(crate) fn argo_ignores(objects: &[Object], o: &Object, pointers: &[&str]) -> bool {
    objects
        .iter()
        .filter(|a| a.kind() == "Application" && a.group() == "argoproj.io")
        .filter(|a| {
            a.value
                .pointer("/spec/syncPolicy/syncOptions")
                .and_then(Value::as_array)
                .is_some_and(|opts| {
                    opts.iter()
                        .any(|v| v.as_str() == Some("RespectIgnoreDifferences=true"))
                })
        })
        .flat_map(|a| {
            a.value
                .pointer("/spec/ignoreDifferences")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .any(|rule| {
            let field = |k: &str| rule.get(k).and_then(Value::as_str);
            let list = |k: &str| -> Vec<String> {
                rule.get(k)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let matches = field("kind") == Some(o.kind())
                && field("group").unwrap_or("") == o.group()
                && field("name").is_none_or(|n| n == o.name())
                && same_namespace(field("namespace"), o.namespace());
            let json = list("jsonPointers");
            let jq = list("jqPathExpressions");
            let covered = |p: &str| {
                json.iter()
                    .any(|j| p == j || p.starts_with(&format!("{j}/")))
                    || jq.iter().any(|q| p.replace('/', ".") == *q)
            };
            matches
                && (list("managedFieldsManagers")
                    .iter()
                    .any(|m| m == FIELD_MANAGER)
                    || pointers.iter().all(|p| covered(p)))
        })
}
