//! The resource registry: every resource the server serves, built-in or from a CRD.

use std::sync::{Arc, RwLock};

use serde_json::Value;

/// Where a scale subresource reads and writes its numbers (JSON paths like `.spec.replicas`).
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleInfo {
    pub spec_replicas_path: String,
    pub status_replicas_path: String,
    pub label_selector_path: Option<String>,
}

/// One printer column of a CRD (`additionalPrinterColumns`).
#[derive(Clone, Debug, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub json_path: String,
    pub description: String,
    pub priority: i64,
    pub format: String,
}

/// The part of a resource that comes from a CustomResourceDefinition.
#[derive(Clone, Debug, PartialEq)]
pub struct CrdInfo {
    /// The CRD's name (`<plural>.<group>`).
    pub crd_name: String,
    /// The version's `openAPIV3Schema`, if any.
    pub schema: Option<Value>,
    pub printer_columns: Vec<PrinterColumn>,
    /// The storage version: objects are kept under it.
    pub storage_version: String,
}

/// A served resource.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    pub status: bool,
    pub scale: Option<ScaleInfo>,
    pub crd: Option<CrdInfo>,
}

pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceInfo {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The key objects of this resource are stored under.
    pub fn storage_key(&self) -> crate::store::ResourceKey {
        let version = self
            .crd
            .as_ref()
            .map(|c| c.storage_version.clone())
            .unwrap_or_else(|| self.version.clone());
        crate::store::ResourceKey::new(&self.group, &version, &self.plural)
    }

    /// Whether writes bump `metadata.generation`.
    pub fn has_generation(&self) -> bool {
        self.crd.is_some()
            || matches!(
                (self.group.as_str(), self.plural.as_str()),
                ("apps", _)
                    | ("autoscaling", _)
                    | ("networking.k8s.io", "ingresses")
                    | ("apiextensions.k8s.io", _)
            )
    }

    /// The path prefix of the collection, e.g. `/apis/apps/v1/namespaces/ns/deployments`.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(ns) if self.namespaced => format!("{base}/namespaces/{ns}/{}", self.plural),
            _ => format!("{base}/{}", self.plural),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    short: &[&str],
    categories: &[&str],
    namespaced: bool,
    status: bool,
    scale: bool,
) -> ResourceInfo {
    ResourceInfo {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: categories.iter().map(|s| s.to_string()).collect(),
        namespaced,
        verbs: ALL_VERBS.iter().map(|s| s.to_string()).collect(),
        status,
        scale: scale.then(|| ScaleInfo {
            spec_replicas_path: ".spec.replicas".into(),
            status_replicas_path: ".status.replicas".into(),
            label_selector_path: Some(".status.selector".into()),
        }),
        crd: None,
    }
}

/// The review resources: create-only, never stored (answered by `crate::auth::reviews`).
/// `(group, plural, kind, namespaced)`.
pub const REVIEWS: &[(&str, &str, &str, bool)] = &[
    (
        "authentication.k8s.io",
        "tokenreviews",
        "TokenReview",
        false,
    ),
    (
        "authentication.k8s.io",
        "selfsubjectreviews",
        "SelfSubjectReview",
        false,
    ),
    (
        "authorization.k8s.io",
        "subjectaccessreviews",
        "SubjectAccessReview",
        false,
    ),
    (
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        false,
    ),
    (
        "authorization.k8s.io",
        "selfsubjectrulesreviews",
        "SelfSubjectRulesReview",
        false,
    ),
    (
        "authorization.k8s.io",
        "localsubjectaccessreviews",
        "LocalSubjectAccessReview",
        true,
    ),
];

/// The built-in resources.
pub fn builtins() -> Vec<ResourceInfo> {
    let mut v = vec![
        builtin(
            "",
            "v1",
            "Namespace",
            "namespaces",
            &["ns"],
            &[],
            false,
            true,
            false,
        ),
        builtin(
            "",
            "v1",
            "Service",
            "services",
            &["svc"],
            &["all"],
            true,
            true,
            false,
        ),
        builtin(
            "",
            "v1",
            "Endpoints",
            "endpoints",
            &["ep"],
            &[],
            true,
            false,
            false,
        ),
        builtin(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            &["cm"],
            &[],
            true,
            false,
            false,
        ),
        builtin("", "v1", "Secret", "secrets", &[], &[], true, false, false),
        builtin(
            "",
            "v1",
            "Pod",
            "pods",
            &["po"],
            &["all"],
            true,
            true,
            false,
        ),
        builtin(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            &["sa"],
            &[],
            true,
            false,
            false,
        ),
        builtin(
            "",
            "v1",
            "Event",
            "events",
            &["ev"],
            &[],
            true,
            false,
            false,
        ),
        builtin("", "v1", "Node", "nodes", &["no"], &[], false, true, false),
        builtin(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            &["deploy"],
            &["all"],
            true,
            true,
            true,
        ),
        builtin(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            &["rs"],
            &["all"],
            true,
            true,
            true,
        ),
        builtin(
            "apps",
            "v1",
            "DaemonSet",
            "daemonsets",
            &["ds"],
            &["all"],
            true,
            true,
            false,
        ),
        builtin(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            &["sts"],
            &["all"],
            true,
            true,
            true,
        ),
        builtin(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            &["hpa"],
            &["all"],
            true,
            true,
            false,
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "Ingress",
            "ingresses",
            &["ing"],
            &[],
            true,
            true,
            false,
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            &[],
            &[],
            true,
            false,
            false,
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            &["crd", "crds"],
            &["api-extensions"],
            false,
            true,
            false,
        ),
        builtin(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            &[],
            &[],
            true,
            false,
            false,
        ),
        builtin(
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            &["ev"],
            &[],
            true,
            false,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            &[],
            &[],
            true,
            false,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            &[],
            &[],
            true,
            false,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            &[],
            &[],
            false,
            false,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            &[],
            &[],
            false,
            false,
            false,
        ),
        // Stored and served (install manifests carry them); evictions are not simulated.
        builtin(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            &["pdb"],
            &[],
            true,
            true,
            false,
        ),
    ];
    // The reviews of authentication and authorization: create-only, answered by
    // `crate::auth::reviews`, never stored.
    for (group, plural, kind, namespaced) in REVIEWS {
        let mut r = builtin(
            group,
            "v1",
            kind,
            plural,
            &[],
            &[],
            *namespaced,
            false,
            false,
        );
        r.verbs = vec!["create".into()];
        v.push(r);
    }
    for r in &mut v {
        if r.plural == "endpoints" {
            r.singular = "endpoints".into();
        }
    }
    v
}

/// The set of served resources, shared by the server and the simulators. CRDs add and remove
/// entries at run time.
#[derive(Debug)]
pub struct Registry {
    inner: RwLock<Vec<Arc<ResourceInfo>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self {
            inner: RwLock::new(builtins().into_iter().map(Arc::new).collect()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<ResourceInfo>>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn all(&self) -> Vec<Arc<ResourceInfo>> {
        self.read().clone()
    }

    /// Finds a resource by group, version and plural.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.read()
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// Finds a resource by apiVersion and kind.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        let (group, version) = split_api_version(api_version);
        self.read()
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
            .cloned()
    }

    /// Group names in serving order (core first, built-ins before CRDs), each with its versions.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in self.read().iter() {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) => {
                    if !versions.contains(&r.version) {
                        versions.push(r.version.clone());
                    }
                }
                None => out.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        out
    }

    pub fn resources_of(&self, group: &str, version: &str) -> Vec<Arc<ResourceInfo>> {
        self.read()
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .cloned()
            .collect()
    }

    /// Replaces all resources defined by the CRD `crd_name` with `resources`.
    pub fn set_crd(&self, crd_name: &str, resources: Vec<ResourceInfo>) {
        let mut w = self.inner.write().unwrap_or_else(|e| e.into_inner());
        w.retain(|r| r.crd.as_ref().is_none_or(|c| c.crd_name != crd_name));
        w.extend(resources.into_iter().map(Arc::new));
    }

    pub fn remove_crd(&self, crd_name: &str) {
        self.set_crd(crd_name, Vec::new());
    }
}

/// Splits `apps/v1` into (`apps`, `v1`) and `v1` into (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}
