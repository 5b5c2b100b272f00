//! The `AlertProvider` resource: where alerts go.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::metric::SecretRef;

/// Every value `spec.type` accepts.
pub const ALERT_PROVIDER_TYPES: &[&str] = &["slack", "msteams", "discord", "rocket", "gchat"];

/// AlertProvider is the Schema for the AlertProvider API.
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema,
)]
#[kube(
    group = "flagger.app",
    version = "v1beta1",
    kind = "AlertProvider",
    plural = "alertproviders",
    singular = "alertprovider",
    namespaced,
    category = "all",
    doc = "AlertProvider is the Schema for the AlertProvider API.",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-flagger-one-of" = [
    {"required": ["type", "address"]},
    {"required": ["type", "secretRef"]},
]))]
pub struct AlertProviderSpec {
    /// Type of this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ALERT_PROVIDER_TYPES))]
    pub r#type: Option<String>,
    /// Channel (slack, discord, rocket; default `general`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Bot user name (default `flagger`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Hook URL; ignored when `secretRef` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// HTTP(S) proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Secret with key `address` (and optional `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}
