//! Gateway API sub-types of `spec.service`: parent references and static mirror filters.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const DNS_SUBDOMAIN: &str = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
const KIND: &str = "^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$";
const DNS_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
const SECTION_NAME: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A parent Gateway (or Service) of the generated HTTPRoute.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParentRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "gateway.networking.k8s.io", "maxLength" = 253, "pattern" = DNS_SUBDOMAIN))]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Gateway", "maxLength" = 63, "minLength" = 1, "pattern" = KIND))]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 63, "minLength" = 1, "pattern" = DNS_LABEL))]
    pub namespace: Option<String>,
    #[schemars(extend("maxLength" = 253, "minLength" = 1))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 253, "minLength" = 1, "pattern" = SECTION_NAME))]
    pub section_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 1, "maximum" = 65535))]
    pub port: Option<i32>,
}

/// A static RequestMirror filter (`spec.service.mirror[]`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirrorFilter {
    pub backend_ref: MirrorBackendRef,
}

/// The backend a request is mirrored to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [{
    "message": "Must have port for Service reference",
    "rule": "(size(self.group) == 0 && self.kind == 'Service') ? has(self.port) : true",
}]))]
pub struct MirrorBackendRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "", "maxLength" = 253, "pattern" = DNS_SUBDOMAIN))]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Service", "maxLength" = 63, "minLength" = 1, "pattern" = KIND))]
    pub kind: Option<String>,
    #[schemars(extend("maxLength" = 253, "minLength" = 1))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 63, "minLength" = 1, "pattern" = DNS_LABEL))]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 1, "maximum" = 65535))]
    pub port: Option<i32>,
}
