//! The golden files of the routing objects (`tests/golden/routing/<provider>/<case>.json`) and
//! the Canary fixtures the routing golden suites share.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Value, json};

use flagger_core::effects::Routes;
use flagger_core::model::ValidatedCanary;

use super::canary;

/// Compares `actual` with the golden file, or rewrites the file when `UPDATE_GOLDEN=1`.
pub fn golden(path: &str, actual: &impl Serialize) {
    let actual = serde_json::to_value(actual).expect("serializable");
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/routing")
        .join(path);
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::create_dir_all(file.parent().expect("parent")).expect("golden dir");
        let text = serde_json::to_string_pretty(&actual).expect("json") + "\n";
        std::fs::write(&file, text).expect("write golden");
        return;
    }
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "golden {} unreadable ({e}); create it with UPDATE_GOLDEN=1",
            file.display()
        )
    });
    let expected: Value = serde_json::from_str(&text).expect("golden is JSON");
    pretty_assertions::assert_eq!(
        expected,
        actual,
        "golden {path} differs; if the change is intended, rerun with UPDATE_GOLDEN=1 and review the diff"
    );
}

/// A Canary `podinfo` in namespace `test` with this provider, service block and analysis.
pub fn mk(provider: &str, service: Value, analysis: Value) -> ValidatedCanary {
    let doc = json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "provider": provider,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": service,
            "analysis": analysis,
        }
    });
    canary(&doc.to_string())
}

/// Progressive analysis: 10% steps up to 50%.
pub fn progressive() -> Value {
    json!({"interval": "1m", "threshold": 5, "maxWeight": 50, "stepWeight": 10})
}

/// A/B analysis: ten iterations for requests with `x-canary: insider` or a cookie matching a
/// regex.
pub fn ab_analysis() -> Value {
    json!({
        "interval": "1m", "threshold": 5, "iterations": 10,
        "match": [
            {"headers": {"x-canary": {"exact": "insider"}}},
            {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}}
        ]
    })
}

/// These weights, no mirroring.
pub fn w(primary: u32, canary: u32) -> Routes {
    Routes::weights(primary, canary)
}
