//! What kube-apiserver answers that is not a stored object: the TokenRequest subresource
//! (`serviceaccounts/<name>/token`), `TokenReview`, `SelfSubjectReview` (`kubectl auth
//! whoami`), `SubjectAccessReview`, `SelfSubjectAccessReview` (`kubectl auth can-i`),
//! `LocalSubjectAccessReview`, `SelfSubjectRulesReview` (`kubectl auth can-i --list`); and
//! RBAC's escalation check on writes of Roles, ClusterRoles and their bindings.

use serde_json::{Value, json};

use super::attributes::Attributes;
use super::rbac::PolicyRule;
use super::serviceaccounts::{ISSUER, LEGACY_ISSUER, key, now, strings};
use super::user::{MASTERS, UserInfo};
use super::{Auth, forbidden_object};
use crate::api::{Api, PatchType, WriteOptions};
use crate::error::{ApiError, ApiResult};
use crate::registry::{REVIEWS, ResourceInfo};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
/// kube-apiserver's default and shortest TokenRequest lifetimes.
const DEFAULT_EXPIRATION: i64 = 3600;
const MIN_EXPIRATION: i64 = 600;

/// A request the server may answer here instead of the object store.
pub struct Request<'a> {
    pub method: &'a str,
    pub verb: &'a str,
    pub info: &'a ResourceInfo,
    pub namespace: &'a str,
    pub name: &'a str,
    pub sub: &'a str,
    pub content_type: &'a str,
    /// Decodes the request body.
    pub body: &'a dyn Fn() -> ApiResult<Value>,
    /// The write's options (field manager, force): the admission checks look at the object
    /// the write would produce, as the write itself would produce it.
    pub write: WriteOptions,
}

/// Answers `r` when it is a review, a TokenRequest, or an RBAC write the escalation check
/// refuses: `Some((code, body))` or `Some(error)`; `None` lets the store serve it.
pub fn intercept(
    auth: &Auth,
    api: &Api,
    user: &UserInfo,
    r: &Request<'_>,
) -> Option<ApiResult<(u16, Value)>> {
    let (group, plural) = (r.info.group.as_str(), r.info.plural.as_str());
    if let Some((_, _, kind, _)) = REVIEWS
        .iter()
        .find(|(g, p, _, _)| *g == group && *p == plural)
    {
        if r.method != "POST" || !r.name.is_empty() {
            return Some(Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            )));
        }
        return Some((r.body)().and_then(|body| review(auth, api, user, kind, group, r, body)));
    }
    if group.is_empty() && plural == "serviceaccounts" && r.sub == "token" {
        if r.method != "POST" {
            return Some(Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            )));
        }
        return Some(
            (r.body)().and_then(|body| token_request(auth, api, r.namespace, r.name, body)),
        );
    }
    if !auth.enabled() || !matches!(r.verb, "create" | "update" | "patch") {
        return None;
    }
    let checks = || -> Result<(), ApiError> {
        create_on_patch(auth, api, user, r)?;
        if auth.config.owner_references_permission_enforcement && r.sub.is_empty() {
            owner_references(auth, api, user, r)?;
        }
        if group == RBAC_GROUP && r.sub.is_empty() {
            escalation(auth, api, user, r)?;
        }
        Ok(())
    };
    checks().err().map(Err)
}

/// A server-side apply that creates its object needs `create` too, as kube-apiserver's patch
/// handler authorizes the create it turns into (its `withAuthorization`).
fn create_on_patch(auth: &Auth, api: &Api, user: &UserInfo, r: &Request<'_>) -> ApiResult<()> {
    if r.verb != "patch"
        || !r.sub.is_empty()
        || PatchType::from_content_type(r.content_type) != Some(PatchType::Apply)
    {
        return Ok(());
    }
    let ns = if r.info.namespaced { r.namespace } else { "" };
    if api.store.get(&r.info.storage_key(), ns, r.name).is_some() {
        return Ok(());
    }
    let a = Attributes::resource(
        user,
        "create",
        &r.info.group,
        &r.info.plural,
        "",
        ns,
        r.name,
    );
    let d = auth.authorize(api, &a);
    if d.allowed {
        Ok(())
    } else {
        Err(forbidden_object(
            &r.info.group,
            &r.info.plural,
            r.name,
            &d.reason,
        ))
    }
}

/// The owner references with `blockOwnerDeletion` of an object.
fn blocking_refs(o: Option<&Value>) -> Vec<Value> {
    o.and_then(|o| o.pointer("/metadata/ownerReferences"))
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter(|r| r["blockOwnerDeletion"] == json!(true))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// The `OwnerReferencesPermissionEnforcement` admission plugin (off by default in
/// kube-apiserver, on in OpenShift and hardened clusters): changing an object's owner
/// references needs `delete` on it (unless it is being created), and a new reference with
/// `blockOwnerDeletion` needs `update` on the owner's `finalizers` subresource.
fn owner_references(auth: &Auth, api: &Api, user: &UserInfo, r: &Request<'_>) -> ApiResult<()> {
    let Some(new) = written_object(api, r) else {
        return Ok(());
    };
    let ns = if r.info.namespaced { r.namespace } else { "" };
    let name = new
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or(r.name)
        .to_string();
    let old = if r.verb == "create" {
        None
    } else {
        api.store.get(&r.info.storage_key(), ns, &name)
    };
    let refs = |o: Option<&Value>| {
        o.and_then(|o| o.pointer("/metadata/ownerReferences"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let empty = |v: &Value| v.is_null() || v.as_array().is_some_and(Vec::is_empty);
    let (new_refs, old_refs) = (refs(Some(&new)), refs(old.as_ref()));
    if new_refs == old_refs || (empty(&new_refs) && empty(&old_refs)) {
        return Ok(());
    }
    let refuse = |why: String| forbidden_object(&r.info.group, &r.info.plural, &name, &why);
    if old.is_some() {
        let a = Attributes::resource(user, "delete", &r.info.group, &r.info.plural, "", ns, &name);
        let d = auth.authorize(api, &a);
        if !d.allowed {
            return Err(refuse(format!(
                "cannot set an ownerRef on a resource you can't delete: {}, <nil>",
                d.reason
            )));
        }
    }
    let before = blocking_refs(old.as_ref());
    for owner in blocking_refs(Some(&new)) {
        if before.iter().any(|b| b["uid"] == owner["uid"]) {
            continue;
        }
        let api_version = owner["apiVersion"].as_str().unwrap_or_default();
        let kind = owner["kind"].as_str().unwrap_or_default();
        let Some(info) = api.registry.by_kind(api_version, kind) else {
            return Err(refuse(format!(
                "cannot set blockOwnerDeletion in this case because cannot find RESTMapping for APIVersion {api_version} Kind {kind}"
            )));
        };
        let owner_ns = if info.namespaced { ns } else { "" };
        let a = Attributes::resource(
            user,
            "update",
            &info.group,
            &info.plural,
            "finalizers",
            owner_ns,
            owner["name"].as_str().unwrap_or_default(),
        );
        if !auth.authorize(api, &a).allowed {
            let what = super::forbidden(&a, "").message;
            return Err(refuse(format!(
                "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: {}",
                what.split_once(": ").map_or(what.as_str(), |(_, w)| w)
            )));
        }
    }
    Ok(())
}

/// The review echoed back with its status, as kube-apiserver answers a create of one.
fn answer(group: &str, kind: &str, mut body: Value, status: Value) -> (u16, Value) {
    if !body.is_object() {
        body = json!({});
    }
    body["apiVersion"] = json!(format!("{group}/v1"));
    body["kind"] = json!(kind);
    if !body["metadata"].is_object() {
        body["metadata"] = json!({});
    }
    body["metadata"]["creationTimestamp"] = Value::Null;
    if body.get("spec").is_none() {
        body["spec"] = json!({});
    }
    body["status"] = status;
    (201, body)
}

fn review(
    auth: &Auth,
    api: &Api,
    user: &UserInfo,
    kind: &str,
    group: &str,
    r: &Request<'_>,
    body: Value,
) -> ApiResult<(u16, Value)> {
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = match kind {
        "TokenReview" => {
            let token = spec["token"].as_str().unwrap_or_default();
            let audiences = strings(&spec["audiences"]);
            if token.is_empty() {
                return Err(ApiError::invalid(
                    kind,
                    group,
                    "",
                    vec![(
                        "spec.token".into(),
                        "Required value: token must be specified".into(),
                    )],
                ));
            }
            let wanted = if audiences.is_empty() {
                vec![ISSUER.to_string()]
            } else {
                audiences.clone()
            };
            match auth.authenticate_token(api, token, &audiences) {
                Ok(u) => json!({"authenticated": true, "user": u.to_json(), "audiences": wanted}),
                Err(e) => json!({"user": {}, "error": e}),
            }
        }
        "SelfSubjectReview" => json!({"userInfo": user.to_json()}),
        "SelfSubjectRulesReview" => {
            let ns = spec["namespace"].as_str().unwrap_or_default();
            rules_review(auth, api, user, ns)
        }
        _ => {
            let subject = match kind {
                "SubjectAccessReview" | "LocalSubjectAccessReview" => {
                    let u = UserInfo {
                        username: spec["user"].as_str().unwrap_or_default().into(),
                        uid: spec["uid"].as_str().unwrap_or_default().into(),
                        groups: strings(&spec["groups"]),
                        extra: serde_json::from_value(spec["extra"].clone()).unwrap_or_default(),
                    };
                    if u.username.is_empty() && u.groups.is_empty() {
                        return Err(ApiError::invalid(
                            kind,
                            group,
                            "",
                            vec![(
                                "spec.user".into(),
                                "Invalid value: \"\": at least one of user or group must be specified".into(),
                            )],
                        ));
                    }
                    u
                }
                _ => user.clone(),
            };
            let a = access_attributes(kind, group, &subject, &spec, r.namespace)?;
            let d = auth.authorize(api, &a);
            let mut s = json!({"allowed": d.allowed});
            if !d.reason.is_empty() {
                s["reason"] = json!(d.reason);
            }
            s
        }
    };
    Ok(answer(group, kind, body, status))
}

/// The attributes an access review asks about.
fn access_attributes(
    kind: &str,
    group: &str,
    user: &UserInfo,
    spec: &Value,
    request_ns: &str,
) -> ApiResult<Attributes> {
    let ra = spec.get("resourceAttributes").filter(|v| v.is_object());
    let nra = spec.get("nonResourceAttributes").filter(|v| v.is_object());
    let invalid = |field: &str, msg: &str| {
        ApiError::invalid(kind, group, "", vec![(field.into(), msg.into())])
    };
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    match (ra, nra) {
        (Some(_), Some(_)) => Err(invalid(
            "spec.nonResourceAttributes",
            "Invalid value: \"non-null\": cannot be specified in combination with resourceAttributes",
        )),
        (None, None) => Err(invalid(
            "spec.resourceAttributes",
            "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        (Some(ra), None) => {
            let ns = s(ra, "namespace");
            if kind == "LocalSubjectAccessReview" && ns != request_ns {
                return Err(invalid(
                    "spec.resourceAttributes.namespace",
                    &format!("Invalid value: {ns:?}: must match metadata.namespace"),
                ));
            }
            let mut a = Attributes::resource(
                user,
                &s(ra, "verb"),
                &s(ra, "group"),
                &s(ra, "resource"),
                &s(ra, "subresource"),
                &ns,
                &s(ra, "name"),
            );
            a.api_version = s(ra, "version");
            Ok(a)
        }
        (None, Some(nra)) => Ok(Attributes::non_resource(
            user,
            &s(nra, "verb"),
            &s(nra, "path"),
        )),
    }
}

/// `SelfSubjectRulesReview` status: the rules that apply in `ns`.
fn rules_review(auth: &Auth, api: &Api, user: &UserInfo, ns: &str) -> Value {
    if !auth.enabled() {
        // No authorizer to ask: everything, as the always-allow authorizer answers.
        return json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        });
    }
    let (rules, errors) = auth.policy(api).rules_for(user, ns);
    let mut resource = Vec::new();
    let mut non_resource = Vec::new();
    for r in rules {
        if r.non_resource_urls.is_empty() {
            let mut o =
                json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
            if !r.resource_names.is_empty() {
                o["resourceNames"] = json!(r.resource_names);
            }
            resource.push(o);
        } else {
            non_resource.push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
        }
    }
    let mut s = json!({"resourceRules": resource, "nonResourceRules": non_resource, "incomplete": !errors.is_empty()});
    if !errors.is_empty() {
        s["evaluationError"] = json!(format!("[{}]", errors.join(", ")));
    }
    s
}

/// `POST serviceaccounts/<name>/token`: a signed token for the ServiceAccount.
/// A token for the ServiceAccount `ns/name` lasting `expiration_seconds`.
pub fn mint(
    auth: &Auth,
    api: &Api,
    ns: &str,
    name: &str,
    expiration_seconds: i64,
) -> ApiResult<String> {
    let (_, answer) = token_request(
        auth,
        api,
        ns,
        name,
        json!({"spec": {"expirationSeconds": expiration_seconds}}),
    )?;
    Ok(answer["status"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

fn token_request(
    auth: &Auth,
    api: &Api,
    ns: &str,
    name: &str,
    mut body: Value,
) -> ApiResult<(u16, Value)> {
    let sa = api
        .store
        .get(&key("serviceaccounts"), ns, name)
        .ok_or_else(|| ApiError::not_found("", "serviceaccounts", name))?;
    let group = "authentication.k8s.io";
    let invalid = |field: &str, msg: String| {
        ApiError::invalid("TokenRequest", group, name, vec![(field.into(), msg)])
    };
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let expiration = spec["expirationSeconds"]
        .as_i64()
        .unwrap_or(DEFAULT_EXPIRATION);
    if expiration < MIN_EXPIRATION {
        return Err(invalid(
            "spec.expirationSeconds",
            format!("Invalid value: {expiration}: may not specify a duration less than 10 minutes"),
        ));
    }
    if expiration > 1 << 32 {
        return Err(invalid(
            "spec.expirationSeconds",
            format!(
                "Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds"
            ),
        ));
    }
    let mut audiences = strings(&spec["audiences"]);
    if audiences.is_empty() {
        audiences = vec![ISSUER.to_string()];
    }
    let sa_uid = sa.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
    let mut k8s = json!({"namespace": ns, "serviceaccount": {"name": name, "uid": sa_uid}});
    let bound = spec.get("boundObjectRef").filter(|b| b.is_object());
    if let Some(b) = bound {
        let kind = b["kind"].as_str().unwrap_or_default();
        let bname = b["name"].as_str().unwrap_or_default();
        let plural = match kind {
            "Pod" => "pods",
            "Secret" => "secrets",
            other => {
                return Err(invalid(
                    "spec.boundObjectRef.kind",
                    format!("Unsupported value: {other:?}: supported values: \"Pod\", \"Secret\""),
                ));
            }
        };
        let obj = api
            .store
            .get(&key(plural), ns, bname)
            .ok_or_else(|| ApiError::not_found("", plural, bname))?;
        let uid = obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
        if let Some(want) = b["uid"].as_str()
            && Some(want) != uid.as_str()
        {
            return Err(ApiError::conflict(
                "",
                plural,
                bname,
                &format!(
                    "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
        k8s[kind.to_ascii_lowercase()] = json!({"name": bname, "uid": uid});
    }
    let iat = now();
    let exp = iat + expiration;
    let claims = json!({
        "aud": audiences, "exp": exp, "iat": iat, "nbf": iat, "iss": ISSUER,
        "jti": uuid::Uuid::new_v4().to_string(),
        "sub": format!("system:serviceaccount:{ns}:{name}"),
        "kubernetes.io": k8s,
    });
    let token = auth
        .signer
        .sign(&claims)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if !body.is_object() {
        body = json!({});
    }
    body["apiVersion"] = json!(format!("{group}/v1"));
    body["kind"] = json!("TokenRequest");
    body["metadata"] = json!({"name": name, "namespace": ns, "creationTimestamp": null});
    body["spec"]["audiences"] = json!(audiences);
    body["spec"]["expirationSeconds"] = json!(expiration);
    if bound.is_none() {
        body["spec"]["boundObjectRef"] = Value::Null;
    }
    let expires = chrono::DateTime::from_timestamp(exp, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    body["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok((201, body))
}

/// A legacy Secret-based token for the ServiceAccount `sa` in the Secret `secret` (what the
/// token controller writes into `data.token`).
pub fn legacy_token(auth: &Auth, ns: &str, sa: &Value, secret: &str) -> anyhow::Result<String> {
    let name = sa
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    auth.signer.sign(&json!({
        "iss": LEGACY_ISSUER,
        "kubernetes.io/serviceaccount/namespace": ns,
        "kubernetes.io/serviceaccount/secret.name": secret,
        "kubernetes.io/serviceaccount/service-account.name": name,
        "kubernetes.io/serviceaccount/service-account.uid": sa.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
        "sub": format!("system:serviceaccount:{ns}:{name}"),
    }))
}

/// The object a write of `r` would store (a dry run of a patch).
fn written_object(api: &Api, r: &Request<'_>) -> Option<Value> {
    let body = (r.body)().ok()?;
    if r.verb != "patch" {
        return Some(body);
    }
    let ptype = PatchType::from_content_type(r.content_type)?;
    let opts = WriteOptions {
        dry_run: true,
        ..r.write.clone()
    };
    api.patch(r.info, r.namespace, r.name, ptype, body, "", &opts)
        .ok()
        .map(|o| o.object)
}

/// RBAC's escalation check: a Role or ClusterRole may only grant what its writer holds
/// (unless it may `escalate`), a binding only bind a role whose rules its writer holds (unless
/// it may `bind` it); `system:masters` is exempt.
fn escalation(auth: &Auth, api: &Api, user: &UserInfo, r: &Request<'_>) -> Result<(), ApiError> {
    if user.in_group(MASTERS) {
        return Ok(());
    }
    let Some(obj) = written_object(api, r) else {
        // The write itself fails; its own error is the answer.
        return Ok(());
    };
    let plural = r.info.plural.as_str();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or(r.name)
        .to_string();
    let ns = if r.info.namespaced { r.namespace } else { "" };
    let allowed = |verb: &str, resource: &str, rname: &str| {
        auth.authorize(
            api,
            &Attributes::resource(user, verb, RBAC_GROUP, resource, "", ns, rname),
        )
        .allowed
    };
    let policy = auth.policy(api);
    let refuse = |msg: String| forbidden_object(RBAC_GROUP, plural, &name, &msg);
    match plural {
        "roles" | "clusterroles" => {
            if allowed("escalate", plural, &name) {
                return Ok(());
            }
            if plural == "clusterroles" && obj.get("aggregationRule").is_some_and(|a| !a.is_null())
            {
                let full = [
                    PolicyRule::new(&["*"], &["*"], &["*"]),
                    PolicyRule::non_resource(&["*"], &["*"]),
                ];
                if policy.confirm_no_escalation(user, ns, &full).is_err() {
                    return Err(refuse(
                        "must have cluster-admin privileges to use the aggregationRule".into(),
                    ));
                }
            }
            let rules: Vec<PolicyRule> =
                serde_json::from_value(obj["rules"].clone()).unwrap_or_default();
            policy
                .confirm_no_escalation(user, ns, &rules)
                .map_err(refuse)
        }
        "rolebindings" | "clusterrolebindings" => {
            let role_ref: super::rbac::RoleRef =
                serde_json::from_value(obj["roleRef"].clone()).unwrap_or_default();
            let role_resource = if role_ref.kind == "Role" {
                "roles"
            } else {
                "clusterroles"
            };
            if allowed("bind", role_resource, &role_ref.name) {
                return Ok(());
            }
            let rules = policy
                .role_ref_rules(&role_ref, ns)
                .map_err(|_| ApiError::not_found(RBAC_GROUP, role_resource, &role_ref.name))?;
            policy
                .confirm_no_escalation(user, ns, rules)
                .map_err(refuse)
        }
        _ => Ok(()),
    }
}
