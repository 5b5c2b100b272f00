//! Role-based access control evaluated as kube-apiserver's RBAC authorizer evaluates it
//! (`plugin/pkg/auth/authorizer/rbac`, `pkg/registry/rbac/validation`): the rules of every
//! ClusterRoleBinding that applies to the user, then those of the RoleBindings of the request's
//! namespace; a request is allowed by the first rule that matches it; rules only ever allow.
//!
//! [`Policy`] is a snapshot of the four RBAC resources, parsed once and shared until one of them
//! changes, so authorizing a request reads no JSON.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::attributes::Attributes;
use super::user::UserInfo;

/// `rbac.authorization.k8s.io/v1` PolicyRule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    #[serde(default, deserialize_with = "null_vec")]
    pub verbs: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub api_groups: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resources: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resource_names: Vec<String>,
    #[serde(
        default,
        rename = "nonResourceURLs",
        deserialize_with = "null_vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

fn null_vec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

fn has(set: &[String], v: &str) -> bool {
    set.iter().any(|s| s == v)
}

impl PolicyRule {
    /// A rule from string slices (tests, bootstrap policy).
    pub fn new(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Self {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        Self {
            verbs: s(verbs),
            api_groups: s(groups),
            resources: s(resources),
            ..Default::default()
        }
    }

    pub fn non_resource(urls: &[&str], verbs: &[&str]) -> Self {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        Self {
            verbs: s(verbs),
            non_resource_urls: s(urls),
            ..Default::default()
        }
    }

    pub fn with_names(mut self, names: &[&str]) -> Self {
        self.resource_names = names.iter().map(|x| x.to_string()).collect();
        self
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == verb)
    }

    fn group_matches(&self, group: &str) -> bool {
        self.api_groups.iter().any(|g| g == "*" || g == group)
    }

    /// `combined` is `resource` or `resource/subresource`; `*/sub` matches any resource's
    /// subresource `sub`.
    fn resource_matches(&self, combined: &str, sub: &str) -> bool {
        self.resources.iter().any(|r| {
            r == "*"
                || r == combined
                || (!sub.is_empty()
                    && r.len() == sub.len() + 2
                    && r.starts_with("*/")
                    && r.ends_with(sub))
        })
    }

    fn name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || has(&self.resource_names, name)
    }

    fn url_matches(&self, path: &str) -> bool {
        self.non_resource_urls.iter().any(|u| {
            u == "*" || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*')))
        })
    }

    /// Whether this rule allows the request (`RuleAllows`).
    pub fn allows(&self, a: &Attributes) -> bool {
        if a.resource_request {
            let combined = if a.subresource.is_empty() {
                a.resource.clone()
            } else {
                format!("{}/{}", a.resource, a.subresource)
            };
            self.verb_matches(&a.verb)
                && self.group_matches(&a.api_group)
                && self.resource_matches(&combined, &a.subresource)
                && self.name_matches(&a.name)
        } else {
            self.verb_matches(&a.verb) && self.url_matches(&a.path)
        }
    }

    /// The rule in kube-apiserver's compact form, as its escalation errors print it:
    /// `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`.
    pub fn compact(&self) -> String {
        let q = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
            format!("[{}]", items.join(" "))
        };
        let mut parts = Vec::new();
        if !self.api_groups.is_empty() {
            parts.push(format!("APIGroups:{}", q(&self.api_groups)));
        }
        if !self.resources.is_empty() {
            parts.push(format!("Resources:{}", q(&self.resources)));
        }
        if !self.non_resource_urls.is_empty() {
            parts.push(format!("NonResourceURLs:{}", q(&self.non_resource_urls)));
        }
        if !self.resource_names.is_empty() {
            parts.push(format!("ResourceNames:{}", q(&self.resource_names)));
        }
        if !self.verbs.is_empty() {
            parts.push(format!("Verbs:{}", q(&self.verbs)));
        }
        format!("{{{}}}", parts.join(", "))
    }

    /// The rule broken into rules of one group, resource, verb and name (or one URL and verb),
    /// as the escalation check compares them (`BreakdownRule`).
    pub fn breakdown(&self) -> Vec<PolicyRule> {
        let mut out = Vec::new();
        for g in &self.api_groups {
            for r in &self.resources {
                for v in &self.verbs {
                    let one = PolicyRule {
                        verbs: vec![v.clone()],
                        api_groups: vec![g.clone()],
                        resources: vec![r.clone()],
                        ..Default::default()
                    };
                    if self.resource_names.is_empty() {
                        out.push(one);
                    } else {
                        for n in &self.resource_names {
                            let mut o = one.clone();
                            o.resource_names = vec![n.clone()];
                            out.push(o);
                        }
                    }
                }
            }
        }
        for u in &self.non_resource_urls {
            for v in &self.verbs {
                out.push(PolicyRule {
                    verbs: vec![v.clone()],
                    non_resource_urls: vec![u.clone()],
                    ..Default::default()
                });
            }
        }
        out
    }

    /// Whether this rule covers `sub` (a broken-down rule), as `ruleCovers` decides.
    pub fn covers(&self, sub: &PolicyRule) -> bool {
        let all = |set: &[String], wanted: &[String]| wanted.iter().all(|w| has(set, w));
        let verbs = has(&self.verbs, "*") || all(&self.verbs, &sub.verbs);
        let groups = has(&self.api_groups, "*") || all(&self.api_groups, &sub.api_groups);
        let resources = has(&self.resources, "*")
            || all(&self.resources, &sub.resources)
            || sub.resources.iter().all(|r| {
                has(&self.resources, r)
                    || r.split_once('/')
                        .is_some_and(|(_, s)| has(&self.resources, &format!("*/{s}")))
            });
        let urls = sub.non_resource_urls.iter().all(|p| {
            self.non_resource_urls
                .iter()
                .any(|o| o == p || (o.ends_with('*') && p.starts_with(o.trim_end_matches('*'))))
        });
        let names = if sub.resource_names.is_empty() {
            self.resource_names.is_empty()
        } else {
            self.resource_names.is_empty() || all(&self.resource_names, &sub.resource_names)
        };
        verbs && groups && resources && names && urls
    }
}

/// Whether `owner` covers every rule of `servant`; the rules it misses, broken down (`Covers`).
pub fn covers(owner: &[PolicyRule], servant: &[PolicyRule]) -> (bool, Vec<PolicyRule>) {
    let missing: Vec<PolicyRule> = servant
        .iter()
        .flat_map(PolicyRule::breakdown)
        .filter(|sub| !owner.iter().any(|o| o.covers(sub)))
        .collect();
    (missing.is_empty(), missing)
}

/// `rbac.authorization.k8s.io/v1` Subject.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    #[serde(default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

impl Subject {
    /// Whether the subject is `user` (`appliesToUser`); `namespace` is the binding's.
    fn applies_to(&self, user: &UserInfo, namespace: &str) -> bool {
        match self.kind.as_str() {
            "User" => user.username == self.name,
            "Group" => has(&user.groups, &self.name),
            "ServiceAccount" => {
                let ns = if self.namespace.is_empty() {
                    namespace
                } else {
                    &self.namespace
                };
                !ns.is_empty()
                    && user.username == format!("system:serviceaccount:{ns}:{}", self.name)
            }
            _ => false,
        }
    }

    fn describe(&self, binding_ns: &str) -> String {
        match self.kind.as_str() {
            "ServiceAccount" => {
                let ns = if self.namespace.is_empty() {
                    binding_ns
                } else {
                    &self.namespace
                };
                format!("{} {:?}", self.kind, format!("{}/{ns}", self.name))
            }
            _ => format!("{} {:?}", self.kind, self.name),
        }
    }
}

/// `rbac.authorization.k8s.io/v1` RoleRef.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleRef {
    #[serde(default)]
    pub api_group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

/// A RoleBinding (namespace set) or ClusterRoleBinding (namespace empty).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Binding {
    pub name: String,
    pub namespace: String,
    pub subjects: Vec<Subject>,
    pub role_ref: RoleRef,
}

impl Binding {
    pub fn from_object(o: &Value) -> Self {
        let md = &o["metadata"];
        Self {
            name: md["name"].as_str().unwrap_or_default().into(),
            namespace: md["namespace"].as_str().unwrap_or_default().into(),
            subjects: serde_json::from_value(o["subjects"].clone()).unwrap_or_default(),
            role_ref: serde_json::from_value(o["roleRef"].clone()).unwrap_or_default(),
        }
    }

    fn applies(&self, user: &UserInfo) -> Option<&Subject> {
        self.subjects
            .iter()
            .find(|s| s.applies_to(user, &self.namespace))
    }
}

/// A rule that applies, where it comes from, and the subject that made it apply.
pub type RuleVisit<'a> = (&'a PolicyRule, RuleSource, &'a Subject);

/// Where an allowing rule came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleSource {
    /// `ClusterRoleBinding` or `RoleBinding`.
    pub binding_kind: String,
    pub binding: String,
    pub binding_namespace: String,
    /// `ClusterRole` or `Role`.
    pub role_kind: String,
    pub role: String,
    /// The index of the rule in the role's `rules`.
    pub rule: usize,
}

/// The authorizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// `RBAC: allowed by ...`, or the rule resolution errors of a denial (empty when none).
    pub reason: String,
    pub source: Option<RuleSource>,
}

/// A snapshot of Roles, ClusterRoles and their bindings.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub roles: HashMap<(String, String), Vec<PolicyRule>>,
    pub cluster_roles: HashMap<String, Vec<PolicyRule>>,
    /// RoleBindings by namespace, in name order.
    pub role_bindings: HashMap<String, Vec<Binding>>,
    /// ClusterRoleBindings in name order.
    pub cluster_role_bindings: Vec<Binding>,
}

fn rules_of(o: &Value) -> Vec<PolicyRule> {
    serde_json::from_value(o["rules"].clone()).unwrap_or_default()
}

impl Policy {
    /// Builds a snapshot from the stored objects of the four resources.
    pub fn from_objects(
        roles: &[Value],
        cluster_roles: &[Value],
        role_bindings: &[Value],
        cluster_role_bindings: &[Value],
    ) -> Self {
        let mut p = Policy::default();
        for r in roles {
            let md = &r["metadata"];
            p.roles.insert(
                (
                    md["namespace"].as_str().unwrap_or_default().into(),
                    md["name"].as_str().unwrap_or_default().into(),
                ),
                rules_of(r),
            );
        }
        for r in cluster_roles {
            p.cluster_roles.insert(
                r["metadata"]["name"].as_str().unwrap_or_default().into(),
                rules_of(r),
            );
        }
        for b in role_bindings {
            let b = Binding::from_object(b);
            p.role_bindings
                .entry(b.namespace.clone())
                .or_default()
                .push(b);
        }
        p.cluster_role_bindings = cluster_role_bindings
            .iter()
            .map(Binding::from_object)
            .collect();
        p
    }

    /// The rules a role reference names (`GetRoleReferenceRules`); `namespace` is the
    /// binding's (empty for a ClusterRoleBinding).
    pub fn role_ref_rules(&self, r: &RoleRef, namespace: &str) -> Result<&[PolicyRule], String> {
        match r.kind.as_str() {
            "Role" => self
                .roles
                .get(&(namespace.to_string(), r.name.clone()))
                .map(Vec::as_slice)
                .ok_or_else(|| format!("role.rbac.authorization.k8s.io {:?} not found", r.name)),
            "ClusterRole" => self
                .cluster_roles
                .get(&r.name)
                .map(Vec::as_slice)
                .ok_or_else(|| {
                    format!(
                        "clusterrole.rbac.authorization.k8s.io {:?} not found",
                        r.name
                    )
                }),
            k => Err(format!("unsupported role reference kind: {k:?}")),
        }
    }

    /// Calls `visit` with each rule that applies to `user` in `namespace` (cluster-wide
    /// bindings first, then the namespace's), or with each resolution error; stops when it
    /// returns false (`VisitRulesFor`).
    pub fn visit_rules_for(
        &self,
        user: &UserInfo,
        namespace: &str,
        visit: &mut dyn FnMut(Result<RuleVisit<'_>, String>) -> bool,
    ) {
        let mut walk = |bindings: &[Binding], kind: &str| -> bool {
            for b in bindings {
                let Some(subject) = b.applies(user) else {
                    continue;
                };
                match self.role_ref_rules(&b.role_ref, &b.namespace) {
                    Err(e) => {
                        if !visit(Err(e)) {
                            return false;
                        }
                    }
                    Ok(rules) => {
                        for (i, rule) in rules.iter().enumerate() {
                            let src = RuleSource {
                                binding_kind: kind.into(),
                                binding: b.name.clone(),
                                binding_namespace: b.namespace.clone(),
                                role_kind: b.role_ref.kind.clone(),
                                role: b.role_ref.name.clone(),
                                rule: i,
                            };
                            if !visit(Ok((rule, src, subject))) {
                                return false;
                            }
                        }
                    }
                }
            }
            true
        };
        if !walk(&self.cluster_role_bindings, "ClusterRoleBinding") {
            return;
        }
        if !namespace.is_empty()
            && let Some(bs) = self.role_bindings.get(namespace)
        {
            walk(bs, "RoleBinding");
        }
    }

    /// Every rule that applies to `user` in `namespace`, and the resolution errors (`RulesFor`).
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        self.visit_rules_for(user, namespace, &mut |r| {
            match r {
                Ok((rule, _, _)) => rules.push(rule.clone()),
                Err(e) => errors.push(e),
            }
            true
        });
        (rules, errors)
    }

    /// Authorizes a request as the RBAC authorizer does.
    pub fn authorize(&self, a: &Attributes) -> Decision {
        let mut errors: Vec<String> = Vec::new();
        let mut allowed: Option<(RuleSource, String)> = None;
        self.visit_rules_for(&a.user, &a.namespace, &mut |r| match r {
            Ok((rule, src, subject)) => {
                if rule.allows(a) {
                    let reason = if src.binding_kind == "ClusterRoleBinding" {
                        format!(
                            "RBAC: allowed by ClusterRoleBinding {:?} of {} {:?} to {}",
                            src.binding,
                            src.role_kind,
                            src.role,
                            subject.describe("")
                        )
                    } else {
                        format!(
                            "RBAC: allowed by RoleBinding {:?} of {} {:?} to {}",
                            format!("{}/{}", src.binding, src.binding_namespace),
                            src.role_kind,
                            src.role,
                            subject.describe(&src.binding_namespace)
                        )
                    };
                    allowed = Some((src, reason));
                    false
                } else {
                    true
                }
            }
            Err(e) => {
                errors.push(e);
                true
            }
        });
        match allowed {
            Some((src, reason)) => Decision {
                allowed: true,
                reason,
                source: Some(src),
            },
            None => Decision {
                allowed: false,
                reason: if errors.is_empty() {
                    String::new()
                } else {
                    format!("RBAC: {}", aggregate(&errors))
                },
                source: None,
            },
        }
    }

    /// The escalation check (`ConfirmNoEscalation`): `user`'s rules in `namespace` must cover
    /// `rules`; the error names what is missing, as kube-apiserver words it.
    pub fn confirm_no_escalation(
        &self,
        user: &UserInfo,
        namespace: &str,
        rules: &[PolicyRule],
    ) -> Result<(), String> {
        let (owner, errors) = self.rules_for(user, namespace);
        let (ok, missing) = covers(&owner, rules);
        if ok {
            return Ok(());
        }
        let described: BTreeSet<String> = compact_rules(&missing)
            .iter()
            .map(PolicyRule::compact)
            .collect();
        let mut msg = format!(
            "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
            user.username,
            go_quoted_list(&user.groups),
            described.into_iter().collect::<Vec<_>>().join("\n")
        );
        if !errors.is_empty() {
            let _ = write!(msg, "; resolution errors: [{}]", errors.join(" "));
        }
        Err(msg)
    }
}

/// Go's `%q` of a string slice: `["a" "b"]`.
pub fn go_quoted_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
}

/// Errors joined as `utilerrors.NewAggregate` prints them.
fn aggregate(errors: &[String]) -> String {
    if errors.len() == 1 {
        errors[0].clone()
    } else {
        format!("[{}]", errors.join(", "))
    }
}

/// Merges broken-down rules that differ only in their verbs (`CompactRules`: simple resource
/// rules of one group, resource and no names).
pub fn compact_rules(rules: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    for r in rules {
        let simple = r.api_groups.len() == 1
            && r.resources.len() == 1
            && r.resource_names.is_empty()
            && r.non_resource_urls.is_empty();
        if simple
            && let Some(existing) = out.iter_mut().find(|o| {
                o.api_groups == r.api_groups
                    && o.resources == r.resources
                    && o.resource_names.is_empty()
                    && o.non_resource_urls.is_empty()
            })
        {
            for v in &r.verbs {
                if !has(&existing.verbs, v) {
                    existing.verbs.push(v.clone());
                }
            }
            continue;
        }
        out.push(r.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    fn res(
        u: &UserInfo,
        verb: &str,
        group: &str,
        resource: &str,
        sub: &str,
        ns: &str,
        name: &str,
    ) -> Attributes {
        Attributes::resource(u, verb, group, resource, sub, ns, name)
    }

    /// One rule against one request: kube-apiserver's documented matching rules.
    #[test]
    fn rule_matching_table() {
        let u = user("u", &[]);
        let cases: Vec<(PolicyRule, Attributes, bool, &str)> = vec![
            (
                PolicyRule::new(&[""], &["pods"], &["get"]),
                res(&u, "get", "", "pods", "", "ns", "p"),
                true,
                "exact",
            ),
            (
                PolicyRule::new(&[""], &["pods"], &["get"]),
                res(&u, "list", "", "pods", "", "ns", ""),
                false,
                "other verb",
            ),
            (
                PolicyRule::new(&[""], &["pods"], &["*"]),
                res(&u, "deletecollection", "", "pods", "", "ns", ""),
                true,
                "verb *",
            ),
            (
                PolicyRule::new(&["apps"], &["pods"], &["get"]),
                res(&u, "get", "", "pods", "", "ns", "p"),
                false,
                "other group",
            ),
            (
                PolicyRule::new(&["*"], &["deployments"], &["get"]),
                res(&u, "get", "apps", "deployments", "", "ns", "d"),
                true,
                "group *",
            ),
            (
                PolicyRule::new(&[""], &["*"], &["get"]),
                res(&u, "get", "", "pods", "log", "ns", "p"),
                true,
                "resource * covers subresources",
            ),
            (
                PolicyRule::new(&[""], &["pods"], &["get"]),
                res(&u, "get", "", "pods", "log", "ns", "p"),
                false,
                "resource does not cover its subresource",
            ),
            (
                PolicyRule::new(&[""], &["pods/log"], &["get"]),
                res(&u, "get", "", "pods", "log", "ns", "p"),
                true,
                "subresource",
            ),
            (
                PolicyRule::new(&[""], &["pods/log"], &["get"]),
                res(&u, "get", "", "pods", "", "ns", "p"),
                false,
                "subresource does not cover the resource",
            ),
            (
                PolicyRule::new(&[""], &["*/log"], &["get"]),
                res(&u, "get", "", "pods", "log", "ns", "p"),
                true,
                "*/subresource",
            ),
            (
                PolicyRule::new(&[""], &["*/log"], &["get"]),
                res(&u, "get", "", "pods", "status", "ns", "p"),
                false,
                "*/subresource of another",
            ),
            (
                PolicyRule::new(&[""], &["*/status"], &["get"]),
                res(&u, "get", "", "pods", "", "ns", "p"),
                false,
                "*/subresource without subresource",
            ),
            (
                PolicyRule::new(&[""], &["pods"], &["get"]).with_names(&["a"]),
                res(&u, "get", "", "pods", "", "ns", "a"),
                true,
                "resourceNames hit",
            ),
            (
                PolicyRule::new(&[""], &["pods"], &["get"]).with_names(&["a"]),
                res(&u, "get", "", "pods", "", "ns", "b"),
                false,
                "resourceNames miss",
            ),
            (
                PolicyRule::new(&[""], &["pods"], &["list"]).with_names(&["a"]),
                res(&u, "list", "", "pods", "", "ns", ""),
                false,
                "resourceNames never allow an unnamed list",
            ),
            (
                PolicyRule::new(&[""], &["pods"], &["create"]).with_names(&["a"]),
                res(&u, "create", "", "pods", "", "ns", ""),
                false,
                "resourceNames never allow create",
            ),
            (
                PolicyRule::non_resource(&["/healthz"], &["get"]),
                Attributes::non_resource(&u, "get", "/healthz"),
                true,
                "URL",
            ),
            (
                PolicyRule::non_resource(&["/apis/*"], &["get"]),
                Attributes::non_resource(&u, "get", "/apis/apps/v1"),
                true,
                "URL prefix *",
            ),
            (
                PolicyRule::non_resource(&["/apis/*"], &["get"]),
                Attributes::non_resource(&u, "get", "/apis"),
                false,
                "prefix * needs the slash",
            ),
            (
                PolicyRule::non_resource(&["/apis*"], &["get"]),
                Attributes::non_resource(&u, "get", "/apis"),
                true,
                "trailing * alone",
            ),
            (
                PolicyRule::non_resource(&["*"], &["get"]),
                Attributes::non_resource(&u, "get", "/metrics"),
                true,
                "URL *",
            ),
            (
                PolicyRule::non_resource(&["/healthz"], &["get"]),
                Attributes::non_resource(&u, "post", "/healthz"),
                false,
                "URL other verb",
            ),
            (
                PolicyRule::new(&["*"], &["*"], &["*"]),
                Attributes::non_resource(&u, "get", "/healthz"),
                false,
                "resource rules never allow URLs",
            ),
            (
                PolicyRule::non_resource(&["*"], &["*"]),
                res(&u, "get", "", "pods", "", "ns", "p"),
                false,
                "URL rules never allow resources",
            ),
        ];
        for (rule, a, want, what) in cases {
            assert_eq!(rule.allows(&a), want, "{what}: {rule:?} vs {a:?}");
        }
    }

    fn policy() -> Policy {
        Policy::from_objects(
            &[
                json!({"metadata": {"namespace": "ns", "name": "pod-reader"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
            ],
            &[
                json!({"metadata": {"name": "deploy-admin"}, "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]}]}),
                json!({"metadata": {"name": "secret-reader"}, "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
            ],
            &[
                json!({"metadata": {"namespace": "ns", "name": "read-pods"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                       "subjects": [{"kind": "User", "name": "jane"}, {"kind": "ServiceAccount", "name": "bot"}]}),
                json!({"metadata": {"namespace": "ns", "name": "secrets"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "secret-reader"},
                       "subjects": [{"kind": "Group", "name": "system:serviceaccounts:ns"}]}),
                json!({"metadata": {"namespace": "ns", "name": "dangling"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gone"},
                       "subjects": [{"kind": "User", "name": "joe"}]}),
            ],
            &[
                json!({"metadata": {"name": "deployers"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "deploy-admin"},
                     "subjects": [{"kind": "Group", "name": "deployers"}, {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}]}),
            ],
        )
    }

    /// Bindings against users: who gets what, where, and the reasons kube-apiserver gives.
    #[test]
    fn bindings_table() {
        let p = policy();
        let jane = user("jane", &["system:authenticated"]);
        let bot = user(
            "system:serviceaccount:ns:bot",
            &[
                "system:serviceaccounts",
                "system:serviceaccounts:ns",
                "system:authenticated",
            ],
        );
        let other_bot = user(
            "system:serviceaccount:other:bot",
            &[
                "system:serviceaccounts",
                "system:serviceaccounts:other",
                "system:authenticated",
            ],
        );
        let ci = user(
            "system:serviceaccount:tools:ci",
            &["system:serviceaccounts", "system:serviceaccounts:tools"],
        );
        let dev = user("dev", &["deployers"]);
        let joe = user("joe", &[]);
        let cases: Vec<(Attributes, bool, &str)> = vec![
            (
                res(&jane, "list", "", "pods", "", "ns", ""),
                true,
                r#"RBAC: allowed by RoleBinding "read-pods/ns" of Role "pod-reader" to User "jane""#,
            ),
            (res(&jane, "list", "", "pods", "", "other", ""), false, ""),
            (res(&jane, "list", "", "pods", "", "", ""), false, ""),
            (res(&jane, "watch", "", "pods", "", "ns", ""), false, ""),
            // A ServiceAccount subject without namespace means the binding's namespace.
            (
                res(&bot, "get", "", "pods", "", "ns", "p"),
                true,
                r#"RBAC: allowed by RoleBinding "read-pods/ns" of Role "pod-reader" to ServiceAccount "bot/ns""#,
            ),
            (res(&other_bot, "get", "", "pods", "", "ns", "p"), false, ""),
            // A ClusterRole bound in a namespace grants only there; groups of service accounts.
            (
                res(&bot, "get", "", "secrets", "", "ns", "s"),
                true,
                r#"RBAC: allowed by RoleBinding "secrets/ns" of ClusterRole "secret-reader" to Group "system:serviceaccounts:ns""#,
            ),
            (res(&bot, "get", "", "secrets", "", "other", "s"), false, ""),
            (
                res(&dev, "delete", "apps", "deployments", "", "any", "d"),
                true,
                r#"RBAC: allowed by ClusterRoleBinding "deployers" of ClusterRole "deploy-admin" to Group "deployers""#,
            ),
            (
                res(&dev, "list", "apps", "deployments", "", "", ""),
                true,
                r#"RBAC: allowed by ClusterRoleBinding "deployers" of ClusterRole "deploy-admin" to Group "deployers""#,
            ),
            (
                res(&ci, "patch", "apps", "deployments", "scale", "x", "d"),
                false,
                "",
            ),
            (
                res(&ci, "patch", "apps", "deployments", "", "x", "d"),
                true,
                r#"RBAC: allowed by ClusterRoleBinding "deployers" of ClusterRole "deploy-admin" to ServiceAccount "ci/tools""#,
            ),
            // A binding to a missing role denies with the resolution error as reason.
            (
                res(&joe, "get", "", "pods", "", "ns", "p"),
                false,
                r#"RBAC: role.rbac.authorization.k8s.io "gone" not found"#,
            ),
        ];
        for (a, allowed, reason) in cases {
            let d = p.authorize(&a);
            assert_eq!((d.allowed, d.reason.as_str()), (allowed, reason), "{a:?}");
        }
    }

    #[test]
    fn escalation_check_as_kube_apiserver_words_it() {
        let p = policy();
        let dev = user("dev", &["deployers"]);
        assert!(
            p.confirm_no_escalation(
                &dev,
                "x",
                &[PolicyRule::new(
                    &["apps"],
                    &["deployments"],
                    &["get", "patch"]
                )]
            )
            .is_ok()
        );
        assert!(
            p.confirm_no_escalation(
                &dev,
                "x",
                &[PolicyRule::new(&["apps"], &["deployments/scale"], &["get"])]
            )
            .is_err(),
            "deployments/* is not deployments"
        );
        let err = p
            .confirm_no_escalation(
                &dev,
                "x",
                &[PolicyRule::new(
                    &["apps", ""],
                    &["deployments"],
                    &["get", "list"],
                )],
            )
            .expect_err("core deployments are not held");
        assert_eq!(
            err,
            "user \"dev\" (groups=[\"deployers\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"deployments\"], Verbs:[\"get\" \"list\"]}"
        );
        // Names and */subresource coverage.
        let owner = vec![
            PolicyRule::new(&[""], &["*/status"], &["get"]),
            PolicyRule::new(&[""], &["configmaps"], &["get"]).with_names(&["a", "b"]),
            PolicyRule::non_resource(&["/logs/*"], &["get"]),
        ];
        let cases = [
            (PolicyRule::new(&[""], &["pods/status"], &["get"]), true),
            (
                PolicyRule::new(&[""], &["configmaps"], &["get"]).with_names(&["a"]),
                true,
            ),
            (PolicyRule::new(&[""], &["configmaps"], &["get"]), false),
            (PolicyRule::non_resource(&["/logs/kubelet"], &["get"]), true),
            (PolicyRule::non_resource(&["/logs"], &["get"]), false),
        ];
        for (servant, want) in cases {
            assert_eq!(
                covers(&owner, std::slice::from_ref(&servant)).0,
                want,
                "{servant:?}"
            );
        }
    }
}
