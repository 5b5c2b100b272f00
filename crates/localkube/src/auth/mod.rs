//! Authentication and authorization, as kube-apiserver does them when asked
//! ([`crate::Config::rbac`], `flagger local --rbac`).
//!
//! - **Who** ([`Auth::authenticate`]): a bearer token is the admin token the written kubeconfig
//!   carries (`kubernetes-admin` in `system:masters`), a static token of a
//!   `--token-auth-file` ([`tokens::parse_token_file`]), a ServiceAccount token minted by the
//!   TokenRequest subresource (an ES256 JWT signed by a key this server holds, checked for
//!   issuer, audiences, expiry and the ServiceAccount and bound object still existing) or a
//!   legacy Secret-based one. A request without a token is `system:anonymous`; a token that is
//!   none of these is answered 401. `Impersonate-*` headers are honoured as kube-apiserver does.
//! - **May it** ([`Auth::authorize`]): RBAC ([`rbac`]) over the stored Roles, ClusterRoles and
//!   bindings, with the bootstrap policy ([`bootstrap`]) seeded at start; 403 with
//!   kube-apiserver's message otherwise.
//! - The reviews (`TokenReview`, `SubjectAccessReview`, `SelfSubjectAccessReview`,
//!   `LocalSubjectAccessReview`, `SelfSubjectRulesReview`, `SelfSubjectReview`), the
//!   TokenRequest subresource and RBAC's escalation check live in [`reviews`].
//!
//! Every authorization decision is recorded in an [`Audit`] (one row per distinct request
//! shape), so a test can show which rules a client used and what it was refused.
//!
//! Without `rbac`, every request is served as `system:unsecured` (in `system:masters`), as the
//! old insecure port did; tokens that are valid are still recognised (`kubectl auth whoami`).
//!
//! Layering inside: [`user`], [`tokens`], [`tls`] and [`attributes`] at the bottom, then
//! [`rbac`], [`bootstrap`] and [`serviceaccounts`]; this file ([`Auth`]) uses them, and
//! [`reviews`], which answers with [`Auth`], sits on top; no module reaches back up.

pub mod attributes;
pub mod bootstrap;
pub mod rbac;
pub mod reviews;
pub mod serviceaccounts;
pub mod tls;
pub mod tokens;
pub mod user;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::Api;
use crate::error::ApiError;
use crate::store::ResourceKey;
use attributes::Attributes;
use rbac::{Decision, Policy, RuleSource};
use tokens::{Signer, StaticToken};

pub use serviceaccounts::{ISSUER, LEGACY_ISSUER};
pub use user::{ADMIN_USER, MASTERS, UserInfo};

/// What authentication and authorization do.
#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    /// Authenticate and authorize (RBAC); off: everything is allowed.
    pub rbac: bool,
    /// Static users (`--token-auth-file`).
    pub static_tokens: Vec<StaticToken>,
    /// Run the `OwnerReferencesPermissionEnforcement` admission plugin (with `rbac`).
    pub owner_references_permission_enforcement: bool,
}

/// One row of the authorization audit: a distinct (user, verb, resource, namespace) asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub user: String,
    pub verb: String,
    pub api_group: String,
    /// `resource` or `resource/subresource`; empty for a non-resource request.
    pub resource: String,
    pub namespace: String,
    /// The path of a non-resource request.
    pub path: String,
    pub allowed: bool,
    /// The rule that allowed it.
    pub source: Option<RuleSource>,
    /// How many requests of this shape were decided.
    pub count: u64,
}

/// (user, verb, group, resource, namespace, path, allowed).
type AuditKey = (String, String, String, String, String, String, bool);

/// The authorization decisions taken, one row per distinct request shape.
#[derive(Debug, Default)]
pub struct Audit {
    rows: Mutex<HashMap<AuditKey, AuditRecord>>,
}

/// The most distinct rows kept (a bound on memory; a test never comes close).
const AUDIT_MAX_ROWS: usize = 100_000;

impl Audit {
    fn record(&self, a: &Attributes, d: &Decision) {
        let resource = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let path = if a.resource_request {
            String::new()
        } else {
            a.path.clone()
        };
        let key = (
            a.user.username.clone(),
            a.verb.clone(),
            a.api_group.clone(),
            resource.clone(),
            a.namespace.clone(),
            path.clone(),
            d.allowed,
        );
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = rows.get_mut(&key) {
            r.count += 1;
            return;
        }
        if rows.len() >= AUDIT_MAX_ROWS {
            return;
        }
        rows.insert(
            key,
            AuditRecord {
                user: a.user.username.clone(),
                verb: a.verb.clone(),
                api_group: a.api_group.clone(),
                resource,
                namespace: a.namespace.clone(),
                path,
                allowed: d.allowed,
                source: d.source.clone(),
                count: 1,
            },
        );
    }

    /// The rows, sorted.
    pub fn records(&self) -> Vec<AuditRecord> {
        let rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<AuditRecord> = rows.values().cloned().collect();
        v.sort_by(|a, b| {
            (
                &a.user,
                &a.api_group,
                &a.resource,
                &a.verb,
                &a.namespace,
                &a.path,
            )
                .cmp(&(
                    &b.user,
                    &b.api_group,
                    &b.resource,
                    &b.verb,
                    &b.namespace,
                    &b.path,
                ))
        });
        v
    }

    /// Forgets every row.
    pub fn clear(&self) {
        self.rows.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Authentication and authorization state of a server.
#[derive(Debug)]
pub struct Auth {
    pub config: AuthConfig,
    pub signer: Signer,
    /// The token of the admin kubeconfig.
    pub admin_token: String,
    pub audit: Audit,
    /// The RBAC policy as of a store resourceVersion, rebuilt when RBAC objects change.
    policy: Mutex<(u64, Arc<Policy>)>,
}

fn rbac_keys() -> [ResourceKey; 4] {
    let g = "rbac.authorization.k8s.io";
    [
        ResourceKey::new(g, "v1", "roles"),
        ResourceKey::new(g, "v1", "clusterroles"),
        ResourceKey::new(g, "v1", "rolebindings"),
        ResourceKey::new(g, "v1", "clusterrolebindings"),
    ]
}

/// The bearer token of a request (`Authorization: Bearer <token>`).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

/// kube-apiserver's 403 for a request its authorizer refused (`responsewriters.Forbidden`).
pub fn forbidden(a: &Attributes, reason: &str) -> ApiError {
    let who = &a.user.username;
    let what = if !a.resource_request {
        format!("User {who:?} cannot {} path {:?}", a.verb, a.path)
    } else {
        let resource = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        if a.namespace.is_empty() {
            format!(
                "User {who:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
                a.verb, a.api_group
            )
        } else {
            format!(
                "User {who:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
                a.verb, a.api_group, a.namespace
            )
        }
    };
    let err = if reason.is_empty() {
        what
    } else {
        format!("{what}: {reason}")
    };
    forbidden_object(&a.api_group, &a.resource, &a.name, &err)
}

/// `apierrors.NewForbidden(groupResource, name, err)`.
pub fn forbidden_object(group: &str, resource: &str, name: &str, err: &str) -> ApiError {
    let gr = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    let message = if resource.is_empty() {
        format!("forbidden: {err}")
    } else if name.is_empty() {
        format!("{gr} is forbidden: {err}")
    } else {
        format!("{gr} {name:?} is forbidden: {err}")
    };
    let mut details = serde_json::Map::new();
    if !name.is_empty() {
        details.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        details.insert("group".into(), json!(group));
    }
    if !resource.is_empty() {
        details.insert("kind".into(), json!(resource));
    }
    let mut e = ApiError::forbidden(message);
    e.details = Some(Value::Object(details));
    e
}

impl Auth {
    pub fn new(config: AuthConfig) -> anyhow::Result<Self> {
        let signer = Signer::generate()?;
        Ok(Self {
            config,
            admin_token: random_token()?,
            signer,
            audit: Audit::default(),
            policy: Mutex::new((u64::MAX, Arc::new(Policy::default()))),
        })
    }

    pub fn enabled(&self) -> bool {
        self.config.rbac
    }

    /// The RBAC policy now.
    pub fn policy(&self, api: &Api) -> Arc<Policy> {
        let keys = rbac_keys();
        let at = api.store.changed_at(&keys);
        let mut cached = self.policy.lock().unwrap_or_else(|e| e.into_inner());
        if cached.0 != at {
            let list = |k: &ResourceKey| api.store.list(k, None).0;
            let p = Policy::from_objects(
                &list(&keys[0]),
                &list(&keys[1]),
                &list(&keys[2]),
                &list(&keys[3]),
            );
            *cached = (at, Arc::new(p));
        }
        cached.1.clone()
    }

    /// Authorizes `a` (everything when RBAC is off), recording the decision.
    pub fn authorize(&self, api: &Api, a: &Attributes) -> Decision {
        if !self.enabled() {
            return Decision {
                allowed: true,
                reason: String::new(),
                source: None,
            };
        }
        let d = self.policy(api).authorize(a);
        self.audit.record(a, &d);
        d
    }

    /// Who a bearer token is, for `audiences` (empty: the server's own), or why not.
    pub fn authenticate_token(
        &self,
        api: &Api,
        token: &str,
        audiences: &[String],
    ) -> Result<UserInfo, String> {
        if token == self.admin_token {
            return Ok(UserInfo::new(
                ADMIN_USER,
                &[MASTERS, "system:authenticated"],
            ));
        }
        if let Some(t) = self.config.static_tokens.iter().find(|t| t.token == token) {
            let mut groups = t.groups.clone();
            if !groups.iter().any(|g| g == "system:authenticated") {
                groups.push("system:authenticated".into());
            }
            return Ok(UserInfo {
                username: t.user.clone(),
                uid: t.uid.clone(),
                groups,
                extra: BTreeMap::new(),
            });
        }
        serviceaccounts::service_account_user(&self.signer, api, token, audiences)
    }

    /// The user of a request: its token's, anonymous without one; 401 for a token that is
    /// not valid. Without RBAC: the token's user if it is valid, `system:unsecured` otherwise.
    pub fn authenticate(&self, api: &Api, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
        let user = match bearer(headers) {
            None if self.enabled() => UserInfo::anonymous(),
            None => UserInfo::unsecured(),
            Some(t) => match self.authenticate_token(api, t, &[]) {
                Ok(u) => u,
                Err(_) if !self.enabled() => UserInfo::unsecured(),
                Err(e) => {
                    tracing::debug!(target: "localkube::auth", "unauthorized: {e}");
                    return Err(unauthorized());
                }
            },
        };
        self.impersonate(api, user, headers)
    }

    /// Applies `Impersonate-User`/`-Group`/`-Uid`/`-Extra-*`, each checked with the
    /// `impersonate` verb as kube-apiserver's impersonation filter does.
    fn impersonate(
        &self,
        api: &Api,
        user: UserInfo,
        headers: &HeaderMap,
    ) -> Result<UserInfo, ApiError> {
        let values = |name: &str| -> Vec<String> {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(String::from)
                .collect()
        };
        let target_user = values("impersonate-user").into_iter().next();
        let groups = values("impersonate-group");
        let uid = values("impersonate-uid").into_iter().next();
        let extras: Vec<(String, String)> = headers
            .iter()
            .filter_map(|(k, v)| {
                let key = k.as_str().strip_prefix("impersonate-extra-")?;
                Some((percent_decode(key), v.to_str().ok()?.to_string()))
            })
            .collect();
        let Some(username) = target_user else {
            if !groups.is_empty() || uid.is_some() || !extras.is_empty() {
                return Err(ApiError::internal(
                    "Internal error occurred: requested impersonation of groups, uid or extra without impersonating a user",
                ));
            }
            return Ok(user);
        };
        let check = |a: Attributes| -> Result<(), ApiError> {
            let d = self.authorize(api, &a);
            if d.allowed {
                Ok(())
            } else {
                Err(forbidden(&a, &d.reason))
            }
        };
        let sa = username
            .strip_prefix("system:serviceaccount:")
            .and_then(|r| r.split_once(':'));
        match sa {
            Some((ns, name)) => check(Attributes::resource(
                &user,
                "impersonate",
                "",
                "serviceaccounts",
                "",
                ns,
                name,
            ))?,
            None => check(Attributes::resource(
                &user,
                "impersonate",
                "",
                "users",
                "",
                "",
                &username,
            ))?,
        }
        for g in &groups {
            check(Attributes::resource(
                &user,
                "impersonate",
                "",
                "groups",
                "",
                "",
                g,
            ))?;
        }
        if let Some(u) = &uid {
            check(Attributes::resource(
                &user,
                "impersonate",
                "authentication.k8s.io",
                "uids",
                "",
                "",
                u,
            ))?;
        }
        for (k, v) in &extras {
            check(Attributes::resource(
                &user,
                "impersonate",
                "authentication.k8s.io",
                "userextras",
                k,
                "",
                v,
            ))?;
        }
        let mut out = UserInfo {
            username: username.clone(),
            uid: uid.unwrap_or_default(),
            groups: groups.clone(),
            extra: BTreeMap::new(),
        };
        for (k, v) in extras {
            out.extra.entry(k).or_default().push(v);
        }
        if let Some((ns, _)) = sa
            && groups.is_empty()
        {
            out.groups = vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
            ];
        }
        let add = if username == "system:anonymous" {
            "system:unauthenticated"
        } else {
            "system:authenticated"
        };
        if !out.in_group(add) {
            out.groups.push(add.into());
        }
        Ok(out)
    }

    /// Authenticates and authorizes one HTTP request: the user, or the 401/403 to answer.
    pub fn admit(
        &self,
        api: &Api,
        method: &str,
        path: &str,
        query: &[(String, String)],
        headers: &HeaderMap,
    ) -> Result<UserInfo, ApiError> {
        let user = self.authenticate(api, headers)?;
        if !self.enabled() {
            return Ok(user);
        }
        let a = Attributes::from_request(&user, method, path, query);
        let d = self.authorize(api, &a);
        if d.allowed {
            Ok(user)
        } else {
            Err(forbidden(&a, &d.reason))
        }
    }
}

/// A random 32-byte token, base64url.
pub fn random_token() -> anyhow::Result<String> {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| anyhow::anyhow!("cannot draw a random token"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// Decodes `%XX` escapes (impersonated extra keys are percent-encoded in header names).
fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(s.replace('+', "%2B").as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_messages_as_kube_apiserver_words_them() {
        let u = UserInfo::new("x", &[]);
        let e = forbidden(
            &Attributes::resource(&u, "list", "", "pods", "", "y", ""),
            "",
        );
        assert_eq!(
            e.message,
            r#"pods is forbidden: User "x" cannot list resource "pods" in API group "" in the namespace "y""#
        );
        assert_eq!(e.details, Some(json!({"kind": "pods"})));
        let e = forbidden(
            &Attributes::resource(&u, "get", "apps", "deployments", "scale", "y", "d"),
            "",
        );
        assert_eq!(
            e.message,
            r#"deployments.apps "d" is forbidden: User "x" cannot get resource "deployments/scale" in API group "apps" in the namespace "y""#
        );
        let e = forbidden(
            &Attributes::resource(&u, "list", "", "nodes", "", "", ""),
            "RBAC: clusterrole.rbac.authorization.k8s.io \"gone\" not found",
        );
        assert_eq!(
            e.message,
            r#"nodes is forbidden: User "x" cannot list resource "nodes" in API group "" at the cluster scope: RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found"#
        );
        let e = forbidden(&Attributes::non_resource(&u, "get", "/metrics"), "");
        assert_eq!(
            e.message,
            r#"forbidden: User "x" cannot get path "/metrics""#
        );
        assert_eq!(e.details, Some(json!({})));
    }

    #[test]
    fn bearer_tokens_are_read_as_kube_apiserver_reads_them() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer abc".parse().expect("header"));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert("authorization", "bearer  abc ".parse().expect("header"));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert("authorization", "Basic abc".parse().expect("header"));
        assert_eq!(bearer(&h), None);
    }
}
