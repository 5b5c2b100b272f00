//! Who a request comes from (`user.Info`), and the names the server gives its own users.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

/// The user the admin token authenticates as.
pub const ADMIN_USER: &str = "kubernetes-admin";
/// The group that bypasses authorization checks and the escalation check.
pub const MASTERS: &str = "system:masters";

/// `user.Info`: who a request comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    pub username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn new(username: &str, groups: &[&str]) -> Self {
        Self {
            username: username.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    pub(super) fn anonymous() -> Self {
        Self::new("system:anonymous", &["system:unauthenticated"])
    }

    pub(super) fn unsecured() -> Self {
        Self::new("system:unsecured", &[MASTERS, "system:authenticated"])
    }

    pub fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }

    /// The user as a JSON `UserInfo` (reviews).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| json!({}))
    }
}
