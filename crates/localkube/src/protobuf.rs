//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`) for the kinds kubectl's
//! generators create with typed clients: `kubectl create namespace | configmap | secret |
//! serviceaccount | service | deployment`. Answers stay JSON (every client that sends protobuf
//! also accepts JSON).
//!
//! The body is Kubernetes' envelope: the magic `k8s\0`, then a `runtime.Unknown` whose `raw`
//! field holds the object's message. Messages are decoded against field tables taken from
//! Kubernetes' `generated.proto` files, for the fields those kinds carry. Like the Go
//! marshaller's output, zero values of plain fields are dropped (JSON's `omitempty`) and
//! optional (pointer) fields keep them. A field outside the tables is ignored when it holds a
//! zero value and refused (415, naming it) otherwise, so nothing is silently lost.

use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};

/// The value type of a field.
#[derive(Debug, Clone, Copy)]
enum T {
    Str,
    Int,
    Bool,
    Msg(&'static [F]),
    /// `map<string, string>`.
    MapStr,
    /// `map<string, bytes>`.
    MapBytes,
    /// `map<string, Quantity>`.
    MapQuantity,
    Time,
    IntOrString,
}

/// A field: number, JSON name, type, repeated, keeps zero values (an optional field).
#[derive(Debug, Clone, Copy)]
struct F(u32, &'static str, T, bool, bool);

const fn f(n: u32, name: &'static str, t: T) -> F {
    F(n, name, t, false, false)
}
const fn rep(n: u32, name: &'static str, t: T) -> F {
    F(n, name, t, true, false)
}
const fn opt(n: u32, name: &'static str, t: T) -> F {
    F(n, name, t, false, true)
}

// === meta/v1 ===

static OWNER_REFERENCE: [F; 6] = [
    f(1, "kind", T::Str),
    f(3, "name", T::Str),
    f(4, "uid", T::Str),
    f(5, "apiVersion", T::Str),
    opt(6, "controller", T::Bool),
    opt(7, "blockOwnerDeletion", T::Bool),
];

static OBJECT_META: [F; 13] = [
    f(1, "name", T::Str),
    f(2, "generateName", T::Str),
    f(3, "namespace", T::Str),
    f(5, "uid", T::Str),
    f(6, "resourceVersion", T::Str),
    f(7, "generation", T::Int),
    f(8, "creationTimestamp", T::Time),
    f(9, "deletionTimestamp", T::Time),
    opt(10, "deletionGracePeriodSeconds", T::Int),
    f(11, "labels", T::MapStr),
    f(12, "annotations", T::MapStr),
    rep(13, "ownerReferences", T::Msg(&OWNER_REFERENCE)),
    rep(14, "finalizers", T::Str),
];

static LABEL_SELECTOR_REQUIREMENT: [F; 3] = [
    f(1, "key", T::Str),
    f(2, "operator", T::Str),
    rep(3, "values", T::Str),
];

static LABEL_SELECTOR: [F; 2] = [
    f(1, "matchLabels", T::MapStr),
    rep(2, "matchExpressions", T::Msg(&LABEL_SELECTOR_REQUIREMENT)),
];

// === core/v1 ===

static NAMESPACE_SPEC: [F; 1] = [rep(1, "finalizers", T::Str)];
static NAMESPACE_STATUS: [F; 1] = [f(1, "phase", T::Str)];
static NAMESPACE: [F; 3] = [
    f(1, "metadata", T::Msg(&OBJECT_META)),
    f(2, "spec", T::Msg(&NAMESPACE_SPEC)),
    f(3, "status", T::Msg(&NAMESPACE_STATUS)),
];

static CONFIG_MAP: [F; 4] = [
    f(1, "metadata", T::Msg(&OBJECT_META)),
    f(2, "data", T::MapStr),
    f(3, "binaryData", T::MapBytes),
    opt(4, "immutable", T::Bool),
];

static SECRET: [F; 5] = [
    f(1, "metadata", T::Msg(&OBJECT_META)),
    f(2, "data", T::MapBytes),
    f(3, "type", T::Str),
    f(4, "stringData", T::MapStr),
    opt(5, "immutable", T::Bool),
];

static LOCAL_OBJECT_REFERENCE: [F; 1] = [f(1, "name", T::Str)];
static OBJECT_REFERENCE: [F; 7] = [
    f(1, "kind", T::Str),
    f(2, "namespace", T::Str),
    f(3, "name", T::Str),
    f(4, "uid", T::Str),
    f(5, "apiVersion", T::Str),
    f(6, "resourceVersion", T::Str),
    f(7, "fieldPath", T::Str),
];
static SERVICE_ACCOUNT: [F; 4] = [
    f(1, "metadata", T::Msg(&OBJECT_META)),
    rep(2, "secrets", T::Msg(&OBJECT_REFERENCE)),
    rep(3, "imagePullSecrets", T::Msg(&LOCAL_OBJECT_REFERENCE)),
    opt(4, "automountServiceAccountToken", T::Bool),
];

static SERVICE_PORT: [F; 6] = [
    f(1, "name", T::Str),
    f(2, "protocol", T::Str),
    f(3, "port", T::Int),
    f(4, "targetPort", T::IntOrString),
    f(5, "nodePort", T::Int),
    opt(6, "appProtocol", T::Str),
];
static SERVICE_SPEC: [F; 8] = [
    rep(1, "ports", T::Msg(&SERVICE_PORT)),
    f(2, "selector", T::MapStr),
    f(3, "clusterIP", T::Str),
    f(4, "type", T::Str),
    rep(5, "externalIPs", T::Str),
    f(7, "sessionAffinity", T::Str),
    f(8, "loadBalancerIP", T::Str),
    f(10, "externalName", T::Str),
];
static SERVICE_STATUS: [F; 0] = [];
static SERVICE: [F; 3] = [
    f(1, "metadata", T::Msg(&OBJECT_META)),
    f(2, "spec", T::Msg(&SERVICE_SPEC)),
    f(3, "status", T::Msg(&SERVICE_STATUS)),
];

static CONTAINER_PORT: [F; 5] = [
    f(1, "name", T::Str),
    f(2, "hostPort", T::Int),
    f(3, "containerPort", T::Int),
    f(4, "protocol", T::Str),
    f(5, "hostIP", T::Str),
];
static ENV_VAR: [F; 2] = [f(1, "name", T::Str), f(2, "value", T::Str)];
static RESOURCE_REQUIREMENTS: [F; 2] = [
    f(1, "limits", T::MapQuantity),
    f(2, "requests", T::MapQuantity),
];
static CONTAINER: [F; 14] = [
    f(1, "name", T::Str),
    f(2, "image", T::Str),
    rep(3, "command", T::Str),
    rep(4, "args", T::Str),
    f(5, "workingDir", T::Str),
    rep(6, "ports", T::Msg(&CONTAINER_PORT)),
    rep(7, "env", T::Msg(&ENV_VAR)),
    f(8, "resources", T::Msg(&RESOURCE_REQUIREMENTS)),
    f(13, "terminationMessagePath", T::Str),
    f(14, "imagePullPolicy", T::Str),
    f(16, "stdin", T::Bool),
    f(17, "stdinOnce", T::Bool),
    f(18, "tty", T::Bool),
    f(20, "terminationMessagePolicy", T::Str),
];
static POD_SPEC: [F; 6] = [
    rep(2, "containers", T::Msg(&CONTAINER)),
    f(3, "restartPolicy", T::Str),
    f(6, "dnsPolicy", T::Str),
    f(7, "nodeSelector", T::MapStr),
    f(8, "serviceAccountName", T::Str),
    rep(20, "initContainers", T::Msg(&CONTAINER)),
];
static POD_TEMPLATE_SPEC: [F; 2] = [
    f(1, "metadata", T::Msg(&OBJECT_META)),
    f(2, "spec", T::Msg(&POD_SPEC)),
];

// === apps/v1 ===

static ROLLING_UPDATE_DEPLOYMENT: [F; 2] = [
    opt(1, "maxUnavailable", T::IntOrString),
    opt(2, "maxSurge", T::IntOrString),
];
static DEPLOYMENT_STRATEGY: [F; 2] = [
    f(1, "type", T::Str),
    f(2, "rollingUpdate", T::Msg(&ROLLING_UPDATE_DEPLOYMENT)),
];
static DEPLOYMENT_SPEC: [F; 8] = [
    opt(1, "replicas", T::Int),
    f(2, "selector", T::Msg(&LABEL_SELECTOR)),
    f(3, "template", T::Msg(&POD_TEMPLATE_SPEC)),
    f(4, "strategy", T::Msg(&DEPLOYMENT_STRATEGY)),
    f(5, "minReadySeconds", T::Int),
    opt(6, "revisionHistoryLimit", T::Int),
    f(7, "paused", T::Bool),
    opt(9, "progressDeadlineSeconds", T::Int),
];
static DEPLOYMENT_STATUS: [F; 0] = [];
static DEPLOYMENT: [F; 3] = [
    f(1, "metadata", T::Msg(&OBJECT_META)),
    f(2, "spec", T::Msg(&DEPLOYMENT_SPEC)),
    f(3, "status", T::Msg(&DEPLOYMENT_STATUS)),
];

// === authentication/v1, authorization/v1: what `kubectl create token`, `kubectl auth whoami`
// and `kubectl auth can-i` send ===

static BOUND_OBJECT_REFERENCE: [F; 4] = [
    f(1, "kind", T::Str),
    f(2, "apiVersion", T::Str),
    f(3, "name", T::Str),
    f(4, "uid", T::Str),
];
static TOKEN_REQUEST_SPEC: [F; 3] = [
    rep(1, "audiences", T::Str),
    opt(3, "boundObjectRef", T::Msg(&BOUND_OBJECT_REFERENCE)),
    opt(4, "expirationSeconds", T::Int),
];
// Go's marshaller always writes a status (a struct, not a pointer); what the client sends
// there is read and then replaced by the server's.
static TOKEN_REQUEST_STATUS: [F; 2] = [f(1, "token", T::Str), f(2, "expirationTimestamp", T::Time)];
static TOKEN_REQUEST: [F; 3] = [
    f(1, "metadata", T::Msg(&OBJECT_META)),
    f(2, "spec", T::Msg(&TOKEN_REQUEST_SPEC)),
    f(3, "status", T::Msg(&TOKEN_REQUEST_STATUS)),
];
static USER_INFO: [F; 3] = [
    f(1, "username", T::Str),
    f(2, "uid", T::Str),
    rep(3, "groups", T::Str),
];
static TOKEN_REVIEW_SPEC: [F; 2] = [f(1, "token", T::Str), rep(2, "audiences", T::Str)];
static TOKEN_REVIEW_STATUS: [F; 4] = [
    f(1, "authenticated", T::Bool),
    f(2, "user", T::Msg(&USER_INFO)),
    f(3, "error", T::Str),
    rep(4, "audiences", T::Str),
];
static TOKEN_REVIEW: [F; 3] = [
    f(1, "metadata", T::Msg(&OBJECT_META)),
    f(2, "spec", T::Msg(&TOKEN_REVIEW_SPEC)),
    f(3, "status", T::Msg(&TOKEN_REVIEW_STATUS)),
];
static SELF_SUBJECT_REVIEW_STATUS: [F; 1] = [f(1, "userInfo", T::Msg(&USER_INFO))];
static SELF_SUBJECT_REVIEW: [F; 2] = [
    f(1, "metadata", T::Msg(&OBJECT_META)),
    f(2, "status", T::Msg(&SELF_SUBJECT_REVIEW_STATUS)),
];
static RESOURCE_ATTRIBUTES: [F; 7] = [
    f(1, "namespace", T::Str),
    f(2, "verb", T::Str),
    f(3, "group", T::Str),
    f(4, "version", T::Str),
    f(5, "resource", T::Str),
    f(6, "subresource", T::Str),
    f(7, "name", T::Str),
];
static NON_RESOURCE_ATTRIBUTES: [F; 2] = [f(1, "path", T::Str), f(2, "verb", T::Str)];
static SELF_SUBJECT_ACCESS_REVIEW_SPEC: [F; 2] = [
    opt(1, "resourceAttributes", T::Msg(&RESOURCE_ATTRIBUTES)),
    opt(2, "nonResourceAttributes", T::Msg(&NON_RESOURCE_ATTRIBUTES)),
];
static SUBJECT_ACCESS_REVIEW_STATUS: [F; 4] = [
    f(1, "allowed", T::Bool),
    f(2, "reason", T::Str),
    f(3, "evaluationError", T::Str),
    f(4, "denied", T::Bool),
];
static SELF_SUBJECT_ACCESS_REVIEW: [F; 3] = [
    f(1, "metadata", T::Msg(&OBJECT_META)),
    f(2, "spec", T::Msg(&SELF_SUBJECT_ACCESS_REVIEW_SPEC)),
    f(3, "status", T::Msg(&SUBJECT_ACCESS_REVIEW_STATUS)),
];
static SUBJECT_ACCESS_REVIEW_SPEC: [F; 5] = [
    opt(1, "resourceAttributes", T::Msg(&RESOURCE_ATTRIBUTES)),
    opt(2, "nonResourceAttributes", T::Msg(&NON_RESOURCE_ATTRIBUTES)),
    f(3, "user", T::Str),
    rep(4, "groups", T::Str),
    f(6, "uid", T::Str),
];
static SUBJECT_ACCESS_REVIEW: [F; 3] = [
    f(1, "metadata", T::Msg(&OBJECT_META)),
    f(2, "spec", T::Msg(&SUBJECT_ACCESS_REVIEW_SPEC)),
    f(3, "status", T::Msg(&SUBJECT_ACCESS_REVIEW_STATUS)),
];
static SELF_SUBJECT_RULES_REVIEW_SPEC: [F; 1] = [f(1, "namespace", T::Str)];
static SUBJECT_RULES_REVIEW_STATUS: [F; 2] =
    [f(3, "incomplete", T::Bool), f(4, "evaluationError", T::Str)];
static SELF_SUBJECT_RULES_REVIEW: [F; 3] = [
    f(1, "metadata", T::Msg(&OBJECT_META)),
    f(2, "spec", T::Msg(&SELF_SUBJECT_RULES_REVIEW_SPEC)),
    f(3, "status", T::Msg(&SUBJECT_RULES_REVIEW_STATUS)),
];

// === rbac.authorization.k8s.io/v1: `kubectl create role | clusterrole | rolebinding |
// clusterrolebinding` ===

static POLICY_RULE: [F; 5] = [
    rep(1, "verbs", T::Str),
    rep(2, "apiGroups", T::Str),
    rep(3, "resources", T::Str),
    rep(4, "resourceNames", T::Str),
    rep(5, "nonResourceURLs", T::Str),
];
static ROLE: [F; 2] = [
    f(1, "metadata", T::Msg(&OBJECT_META)),
    rep(2, "rules", T::Msg(&POLICY_RULE)),
];
static AGGREGATION_RULE: [F; 1] = [rep(1, "clusterRoleSelectors", T::Msg(&LABEL_SELECTOR))];
static CLUSTER_ROLE: [F; 3] = [
    f(1, "metadata", T::Msg(&OBJECT_META)),
    rep(2, "rules", T::Msg(&POLICY_RULE)),
    opt(3, "aggregationRule", T::Msg(&AGGREGATION_RULE)),
];
static SUBJECT: [F; 4] = [
    f(1, "kind", T::Str),
    f(2, "apiGroup", T::Str),
    f(3, "name", T::Str),
    f(4, "namespace", T::Str),
];
static ROLE_REF: [F; 3] = [
    f(1, "apiGroup", T::Str),
    f(2, "kind", T::Str),
    f(3, "name", T::Str),
];
static ROLE_BINDING: [F; 3] = [
    f(1, "metadata", T::Msg(&OBJECT_META)),
    rep(2, "subjects", T::Msg(&SUBJECT)),
    f(3, "roleRef", T::Msg(&ROLE_REF)),
];

fn schema_of(api_version: &str, kind: &str) -> Option<&'static [F]> {
    Some(match (api_version, kind) {
        ("v1", "Namespace") => &NAMESPACE,
        ("v1", "ConfigMap") => &CONFIG_MAP,
        ("v1", "Secret") => &SECRET,
        ("v1", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("v1", "Service") => &SERVICE,
        ("apps/v1", "Deployment") => &DEPLOYMENT,
        ("authentication.k8s.io/v1", "TokenRequest") => &TOKEN_REQUEST,
        ("authentication.k8s.io/v1", "TokenReview") => &TOKEN_REVIEW,
        ("authentication.k8s.io/v1", "SelfSubjectReview") => &SELF_SUBJECT_REVIEW,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => &SELF_SUBJECT_ACCESS_REVIEW,
        ("authorization.k8s.io/v1", "SubjectAccessReview" | "LocalSubjectAccessReview") => {
            &SUBJECT_ACCESS_REVIEW
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => &SELF_SUBJECT_RULES_REVIEW,
        ("rbac.authorization.k8s.io/v1", "Role") => &ROLE,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => &CLUSTER_ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => &ROLE_BINDING,
        _ => return None,
    })
}

// === wire format ===

struct Reader<'a> {
    buf: &'a [u8],
}

/// A field's raw value.
enum Wire<'a> {
    Varint(u64),
    Len(&'a [u8]),
    Fixed(u64),
}

impl Wire<'_> {
    fn is_zero(&self) -> bool {
        match self {
            Wire::Varint(v) | Wire::Fixed(v) => *v == 0,
            Wire::Len(b) => b.is_empty(),
        }
    }
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or("truncated varint")?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err("truncated field".into());
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    fn field(&mut self) -> Result<Option<(u32, Wire<'a>)>, String> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let num = u32::try_from(key >> 3).map_err(|_| "bad field number")?;
        let w = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                Wire::Fixed(u64::from_le_bytes(b.try_into().map_err(|_| "bad fixed64")?))
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "bad length")?;
                Wire::Len(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Wire::Fixed(u64::from(u32::from_le_bytes(
                    b.try_into().map_err(|_| "bad fixed32")?,
                )))
            }
            t => return Err(format!("unsupported wire type {t}")),
        };
        Ok(Some((num, w)))
    }
}

fn fields(buf: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, String> {
    let mut r = Reader { buf };
    let mut out = Vec::new();
    while let Some(f) = r.field()? {
        out.push(f);
    }
    Ok(out)
}

fn string(w: &Wire<'_>, path: &str) -> Result<String, String> {
    match w {
        Wire::Len(b) => String::from_utf8(b.to_vec()).map_err(|_| format!("{path}: invalid UTF-8")),
        _ => Err(format!("{path}: expected a string")),
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A map entry message `{1: key, 2: value}`.
fn entry<'a>(w: &Wire<'a>, path: &str) -> Result<(String, Option<Wire<'a>>), String> {
    let Wire::Len(b) = w else {
        return Err(format!("{path}: expected a map entry"));
    };
    let mut key = String::new();
    let mut value = None;
    for (n, w) in fields(b)? {
        match n {
            1 => key = string(&w, path)?,
            2 => value = Some(w),
            _ => {}
        }
    }
    Ok((key, value))
}

fn value(t: T, w: &Wire<'_>, path: &str) -> Result<Value, String> {
    Ok(match t {
        T::Str => json!(string(w, path)?),
        T::Int => match w {
            // int32 and int64 negatives are sign-extended to 64 bits on the wire.
            Wire::Varint(v) => json!(*v as i64),
            _ => return Err(format!("{path}: expected an integer")),
        },
        T::Bool => match w {
            Wire::Varint(v) => json!(*v != 0),
            _ => return Err(format!("{path}: expected a bool")),
        },
        T::Msg(schema) => match w {
            Wire::Len(b) => Value::Object(message(b, schema, path)?),
            _ => return Err(format!("{path}: expected a message")),
        },
        T::Time => {
            let Wire::Len(b) = w else {
                return Err(format!("{path}: expected a time"));
            };
            let mut secs = 0i64;
            for (n, w) in fields(b)? {
                if let (1, Wire::Varint(v)) = (n, w) {
                    secs = v as i64;
                }
            }
            if b.is_empty() {
                Value::Null
            } else {
                chrono::DateTime::from_timestamp(secs, 0)
                    .map(|t| json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
                    .unwrap_or(Value::Null)
            }
        }
        T::IntOrString => {
            let Wire::Len(b) = w else {
                return Err(format!("{path}: expected an int-or-string"));
            };
            let (mut ty, mut int, mut s) = (0u64, 0i64, String::new());
            for (n, w) in fields(b)? {
                match (n, &w) {
                    (1, Wire::Varint(v)) => ty = *v,
                    (2, Wire::Varint(v)) => int = *v as i64,
                    (3, _) => s = string(&w, path)?,
                    _ => {}
                }
            }
            if ty == 1 { json!(s) } else { json!(int) }
        }
        T::MapStr | T::MapBytes | T::MapQuantity => {
            return Err(format!("{path}: a map is not a single value"));
        }
    })
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Bool(b) => !b,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn message(buf: &[u8], schema: &[F], path: &str) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (n, w) in fields(buf)? {
        let Some(&F(_, name, t, repeated, keep_zero)) = schema.iter().find(|f| f.0 == n) else {
            if w.is_zero() {
                continue;
            }
            return Err(format!(
                "field {n} of {} is not supported by localkube's protobuf decoder",
                if path.is_empty() { "the object" } else { path }
            ));
        };
        let fpath = if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        match t {
            T::MapStr | T::MapBytes | T::MapQuantity => {
                let (k, v) = entry(&w, &fpath)?;
                let v = match (t, v) {
                    (T::MapStr, Some(v)) => json!(string(&v, &fpath)?),
                    (T::MapBytes, Some(Wire::Len(b))) => json!(base64(b)),
                    (T::MapQuantity, Some(Wire::Len(b))) => {
                        let q = fields(b)?
                            .into_iter()
                            .find(|(n, _)| *n == 1)
                            .map(|(_, w)| string(&w, &fpath))
                            .transpose()?
                            .unwrap_or_default();
                        json!(q)
                    }
                    (T::MapBytes | T::MapQuantity, None) | (T::MapStr, None) => json!(""),
                    _ => return Err(format!("{fpath}: bad map value")),
                };
                if let Some(m) = out.entry(name).or_insert_with(|| json!({})).as_object_mut() {
                    m.insert(k, v);
                }
            }
            _ => {
                let v = value(t, &w, &fpath)?;
                if repeated {
                    if let Some(a) = out.entry(name).or_insert_with(|| json!([])).as_array_mut() {
                        a.push(v);
                    }
                } else if keep_zero || !is_zero(&v) {
                    out.insert(name.to_string(), v);
                }
            }
        }
    }
    Ok(out)
}

fn unsupported(message: String) -> ApiError {
    ApiError::unsupported_media(format!(
        "{message}; localkube reads protobuf only for Namespaces, ConfigMaps, Secrets, ServiceAccounts, Services, Deployments, RBAC objects and the authentication and authorization reviews - send JSON (kubectl: create -f / apply -f)"
    ))
}

/// Decodes a protobuf request body into the object's JSON form.
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    let raw = body
        .strip_prefix(b"k8s\0")
        .ok_or_else(|| unsupported("protobuf body without the k8s envelope".into()))?;
    let (mut api_version, mut kind, mut object) = (String::new(), String::new(), None);
    let envelope = fields(raw).map_err(|e| ApiError::bad_request(format!("protobuf: {e}")))?;
    for (n, w) in envelope {
        match (n, w) {
            (1, Wire::Len(tm)) => {
                for (n, w) in
                    fields(tm).map_err(|e| ApiError::bad_request(format!("protobuf: {e}")))?
                {
                    match n {
                        1 => api_version = string(&w, "apiVersion").unwrap_or_default(),
                        2 => kind = string(&w, "kind").unwrap_or_default(),
                        _ => {}
                    }
                }
            }
            (2, Wire::Len(b)) => object = Some(b),
            _ => {}
        }
    }
    let schema = schema_of(&api_version, &kind)
        .ok_or_else(|| unsupported(format!("protobuf {api_version} {kind}")))?;
    let mut out = message(object.unwrap_or_default(), schema, "")
        .map_err(|e| unsupported(format!("protobuf {kind}: {e}")))?;
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!(kind));
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    fn len(n: u32, b: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(n << 3 | 2), out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    #[test]
    fn configmap_envelope() {
        let mut meta = Vec::new();
        len(1, b"cfg", &mut meta);
        len(8, b"", &mut meta); // zero creationTimestamp, always marshalled
        let mut entry = Vec::new();
        len(1, b"a", &mut entry);
        len(2, b"1", &mut entry);
        let mut cm = Vec::new();
        len(1, &meta, &mut cm);
        len(2, &entry, &mut cm);
        let mut bentry = Vec::new();
        len(1, b"bin", &mut bentry);
        len(2, b"hi!", &mut bentry);
        len(3, &bentry, &mut cm);
        let mut tm = Vec::new();
        len(1, b"v1", &mut tm);
        len(2, b"ConfigMap", &mut tm);
        let mut unknown = b"k8s\0".to_vec();
        len(1, &tm, &mut unknown);
        len(2, &cm, &mut unknown);
        len(3, b"", &mut unknown);
        len(4, b"", &mut unknown);
        assert_eq!(
            decode(&unknown).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}, "binaryData": {"bin": "aGkh"}})
        );
        // A non-zero field outside the tables is refused, not dropped.
        let mut cm2 = cm.clone();
        len(99, b"x", &mut cm2);
        let mut unknown = b"k8s\0".to_vec();
        len(1, &tm, &mut unknown);
        len(2, &cm2, &mut unknown);
        let e = decode(&unknown).unwrap_err();
        assert_eq!(e.code, 415);
        assert!(e.message.contains("field 99"), "{}", e.message);
    }

    #[test]
    fn base64_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
    }
}
