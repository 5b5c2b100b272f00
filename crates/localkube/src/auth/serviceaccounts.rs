//! ServiceAccount tokens as kube-apiserver's service account authenticator checks them: who a
//! token is, with its issuer, audiences, expiry and the objects it is bound to; the issuers and
//! the groups of a ServiceAccount, and the small helpers the reviews share with it.

use std::collections::BTreeMap;

use serde_json::Value;

use super::tokens::Signer;
use super::user::UserInfo;
use crate::api::Api;
use crate::store::ResourceKey;

/// The issuer of ServiceAccount tokens (kube-apiserver's `--service-account-issuer` on most
/// clusters).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The issuer of legacy Secret-based ServiceAccount tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

/// Seconds since the epoch (a token's `iat`, `nbf`, `exp`).
pub(super) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The storage key of a core/v1 resource.
pub(super) fn key(plural: &str) -> ResourceKey {
    ResourceKey::new("", "v1", plural)
}

/// The strings of a JSON array (none for anything else).
pub(super) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn service_account_groups(ns: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".into(),
        format!("system:serviceaccounts:{ns}"),
        "system:authenticated".into(),
    ]
}

/// Who a ServiceAccount token is: the signature, issuer, expiry and audiences are checked, and
/// the ServiceAccount (and the object the token is bound to) must still exist with the same
/// uid, as kube-apiserver's service account authenticator checks them.
pub fn service_account_user(
    signer: &Signer,
    api: &Api,
    token: &str,
    audiences: &[String],
) -> Result<UserInfo, String> {
    let invalid = || "invalid bearer token".to_string();
    let claims = signer.verify(token).ok_or_else(invalid)?;
    let get = |plural: &str, ns: &str, name: &str, uid: Option<&str>| -> Result<Value, String> {
        let o = api
            .store
            .get(&key(plural), ns, name)
            .filter(|o| o.pointer("/metadata/deletionTimestamp").is_none())
            .ok_or_else(|| format!("{plural} \"{name}\" not found"))?;
        match uid {
            Some(u) if o.pointer("/metadata/uid").and_then(Value::as_str) != Some(u) => Err(
                format!("{plural} {ns}/{name} has been deleted and recreated (uid changed)"),
            ),
            _ => Ok(o),
        }
    };
    let c = |k: &str| claims[k].as_str().unwrap_or_default();
    if c("iss") == LEGACY_ISSUER {
        let ns = c("kubernetes.io/serviceaccount/namespace");
        let name = c("kubernetes.io/serviceaccount/service-account.name");
        get(
            "serviceaccounts",
            ns,
            name,
            Some(c("kubernetes.io/serviceaccount/service-account.uid")),
        )?;
        let secret = get(
            "secrets",
            ns,
            c("kubernetes.io/serviceaccount/secret.name"),
            None,
        )?;
        let stored = secret
            .pointer("/data/token")
            .and_then(Value::as_str)
            .and_then(|b| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(b).ok()
            });
        if stored.as_deref() != Some(token.as_bytes()) {
            return Err("token does not match the one of its Secret".into());
        }
        return Ok(UserInfo {
            username: format!("system:serviceaccount:{ns}:{name}"),
            uid: c("kubernetes.io/serviceaccount/service-account.uid").into(),
            groups: service_account_groups(ns),
            extra: BTreeMap::new(),
        });
    }
    if c("iss") != ISSUER {
        return Err(invalid());
    }
    let t = now();
    if claims["exp"].as_i64().is_none_or(|exp| exp < t) {
        return Err("token has expired".into());
    }
    if claims["nbf"].as_i64().is_some_and(|nbf| nbf > t + 60) {
        return Err("token is not valid yet".into());
    }
    let token_aud = match &claims["aud"] {
        Value::String(s) => vec![s.clone()],
        v => strings(v),
    };
    let wanted: Vec<String> = if audiences.is_empty() {
        vec![ISSUER.to_string()]
    } else {
        audiences.to_vec()
    };
    if !token_aud.iter().any(|a| wanted.contains(a)) {
        return Err("token audiences are invalid for the target audiences".into());
    }
    let k = &claims["kubernetes.io"];
    let s = |p: &str| k.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let ns = s("/namespace");
    let name = s("/serviceaccount/name");
    let sa_uid = s("/serviceaccount/uid");
    get("serviceaccounts", ns, name, Some(sa_uid))?;
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(j) = claims["jti"].as_str() {
        extra.insert(
            "authentication.kubernetes.io/credential-id".into(),
            vec![format!("JTI={j}")],
        );
    }
    if k.get("pod").is_some() {
        get("pods", ns, s("/pod/name"), Some(s("/pod/uid")))?;
        extra.insert(
            "authentication.kubernetes.io/pod-name".into(),
            vec![s("/pod/name").into()],
        );
        extra.insert(
            "authentication.kubernetes.io/pod-uid".into(),
            vec![s("/pod/uid").into()],
        );
    }
    if k.get("secret").is_some() {
        get("secrets", ns, s("/secret/name"), Some(s("/secret/uid")))?;
    }
    Ok(UserInfo {
        username: format!("system:serviceaccount:{ns}:{name}"),
        uid: sa_uid.into(),
        groups: service_account_groups(ns),
        extra,
    })
}
