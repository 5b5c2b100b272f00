//! API errors rendered as `metav1.Status`.

use serde_json::{Value, json};

/// An error the API answers with, as kube-apiserver would.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    fn gr(group: &str, resource: &str) -> String {
        if group.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}.{group}")
        }
    }

    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", Self::gr(group, resource)),
        )
        .with_details(json!({"name": name, "group": group, "kind": resource}))
    }

    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", Self::gr(group, resource)),
        )
        .with_details(json!({"name": name, "group": group, "kind": resource}))
    }

    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                Self::gr(group, resource)
            ),
        )
        .with_details(json!({"name": name, "group": group, "kind": resource}))
    }

    pub fn stale(group: &str, resource: &str, name: &str) -> Self {
        Self::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid with causes `(field, message)`, the reason of each read from its message
    /// (`Required value` is FieldValueRequired, ...).
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<(String, String)>) -> Self {
        let causes = causes
            .into_iter()
            .map(|(field, body)| Cause {
                reason: reason_of(&body).into(),
                field,
                message: body,
            })
            .collect();
        Self::invalid_causes(kind, group, name, causes)
    }

    /// 422 Invalid worded as kube-apiserver's `NewInvalid`: `Kind.group "name" is invalid: `
    /// then the one error, or `[a, b]` for several (repeated texts dropped).
    pub fn invalid_causes(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> Self {
        let mut seen = std::collections::HashSet::new();
        let texts: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .filter(|m| seen.insert(m.clone()))
            .collect();
        let agg = match texts.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let kg = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let msg = format!("{kg} \"{name}\" is invalid: {agg}");
        Self::new(422, "Invalid", msg).with_details(json!({
            "name": name, "group": group, "kind": kind,
            "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>()
        }))
    }

    /// 403 Forbidden for a create in a terminating namespace, as the NamespaceLifecycle
    /// admission plugin answers it (with its `NamespaceTerminating` cause).
    pub fn namespace_terminating(group: &str, resource: &str, name: &str, ns: &str) -> Self {
        let gr = Self::gr(group, resource);
        let why = format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        );
        let message = if name.is_empty() {
            format!("{gr} is forbidden: {why}")
        } else {
            format!("{gr} \"{name}\" is forbidden: {why}")
        };
        Self::new(403, "Forbidden", message).with_details(json!({
            "name": name, "group": group, "kind": resource,
            "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]
        }))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// An injected fault with code `code`, carrying the `metav1.StatusReason` kube-apiserver
    /// uses for that code (429 and 503 also carry `details.retryAfterSeconds`, as the
    /// apiserver's max-in-flight and readiness filters send them).
    pub fn injected(code: u16) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            410 => "Expired",
            415 => "UnsupportedMediaType",
            422 => "Invalid",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        let e = Self::new(code, reason, format!("injected fault ({code} {reason})"));
        if matches!(code, 429 | 503) {
            e.with_details(json!({"retryAfterSeconds": 1}))
        } else {
            e
        }
    }

    /// The `Retry-After` seconds this error tells clients to wait, if any.
    pub fn retry_after(&self) -> Option<u64> {
        self.details.as_ref()?.get("retryAfterSeconds")?.as_u64()
    }

    /// The `metav1.Status` object.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

/// One `StatusCause` of an Invalid answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub reason: String,
    pub field: String,
    pub message: String,
}

/// The cause reason of a field error's message, by its leading text.
fn reason_of(body: &str) -> &'static str {
    [
        ("Not found", "FieldValueNotFound"),
        ("Required value", "FieldValueRequired"),
        ("Duplicate value", "FieldValueDuplicate"),
        ("Unsupported value", "FieldValueNotSupported"),
        ("Forbidden", "FieldValueForbidden"),
        ("Too long", "FieldValueTooLong"),
        ("Too many", "FieldValueTooMany"),
    ]
    .into_iter()
    .find(|(t, _)| body.starts_with(t))
    .map_or("FieldValueInvalid", |(_, r)| r)
}

pub type ApiResult<T> = Result<T, ApiError>;
