//! Controller settings the rules depend on (`-mesh-provider`, `-selector-labels`), and the ones a
//! repository declares through Flagger's Helm values.

use serde_json::Value;

use flagger_core::model::Provider;
use flagger_core::validate::ValidationContext;

use crate::object::Object;

/// Controller settings the rules depend on.
#[derive(Clone, Debug)]
pub struct Context {
    /// Provider of Canaries without `spec.provider` (`-mesh-provider`).
    pub default_provider: Provider,
    /// `-selector-labels`, in order.
    pub selector_labels: Vec<String>,
    pub validation: ValidationContext,
}

impl Default for Context {
    fn default() -> Self {
        Self {
            default_provider: Provider::Istio,
            selector_labels: flagger_api::labels::DEFAULT_SELECTOR_LABELS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            validation: ValidationContext::default(),
        }
    }
}

/// Flagger's Helm values found in the repository (a `HelmRelease` of the `flagger` chart):
/// `meshProvider` and `selectorLabels`, which change what the controller generates.
pub fn helm_settings(objects: &[Object]) -> (Option<String>, Option<String>) {
    for o in objects {
        if o.kind() != "HelmRelease" || o.group() != "helm.toolkit.fluxcd.io" {
            continue;
        }
        let chart = o
            .str_at("/spec/chart/spec/chart")
            .or_else(|| o.str_at("/spec/chartRef/name"))
            .unwrap_or("");
        if chart != "flagger" {
            continue;
        }
        let get = |k: &str| {
            o.value
                .pointer(&format!("/spec/values/{k}"))
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        return (get("meshProvider"), get("selectorLabels"));
    }
    (None, None)
}
