//! Revision hashes: of the target's spec (to detect a new revision) and of tracked ConfigMaps and
//! Secrets (Flagger's `trackedConfigs`).
//!
//! Flagger hashes the target with a dump of Go structs that no other language can reproduce, so
//! flagger-rs writes its own, recognisable format ([`SPEC_HASH_PREFIX`]). A status that carries a
//! hash without that prefix was written by Flagger; [`is_foreign`] tells the decision core to
//! re-baseline instead of treating every adopted canary as changed. Config checksums, in
//! contrast, follow Flagger's recipe exactly (SHA-256 of the Go JSON encoding of `.data`, first
//! eight bytes in hex), so adopted `trackedConfigs` keep matching.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Prefix of every target hash flagger-rs writes.
pub const SPEC_HASH_PREFIX: &str = "rs1-";

/// Hash of a target's spec: for Deployments and DaemonSets the pod template (DaemonSets without
/// the scale-to-zero node selector), for Service targets the Service spec.
pub fn spec_hash(spec: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(spec, &mut canonical);
    let digest = Sha256::digest(canonical.as_bytes());
    format!("{SPEC_HASH_PREFIX}{}", hex(&digest[..8]))
}

/// Whether a stored hash was written by another implementation (Flagger).
pub fn is_foreign(hash: &str) -> bool {
    !hash.is_empty() && !hash.starts_with(SPEC_HASH_PREFIX)
}

/// Flagger's checksum of a ConfigMap's or Secret's `data` (string values; for Secrets the
/// base64 text as it appears on the wire, which is what Go's encoding of `[]byte` produces).
pub fn config_checksum<'a>(data: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut entries: Vec<(&str, &str)> = data.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut json = String::from("{");
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        go_json_string(k, &mut json);
        json.push(':');
        go_json_string(v, &mut json);
    }
    json.push('}');
    let digest = Sha256::digest(json.as_bytes());
    hex(&digest[..8])
}

/// Flagger's "has the target changed" rule: a target equal to the last promoted revision never
/// starts an analysis; otherwise any difference from the last applied revision does.
pub fn spec_changed(
    current: &str,
    last_applied: Option<&str>,
    last_promoted: Option<&str>,
) -> bool {
    match last_applied {
        None | Some("") => true,
        Some(applied) => {
            if last_promoted == Some(current) {
                false
            } else {
                applied != current
            }
        }
    }
}

/// Flagger's "have the tracked configs changed" rule.
pub fn configs_changed(
    current: &std::collections::BTreeMap<String, String>,
    recorded: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    match recorded {
        None => !current.is_empty(),
        Some(recorded) => recorded != current,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// JSON with object keys sorted, independent of how the map was built.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(k, out);
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::String(s) => go_json_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

/// A string as Go's `encoding/json` writes it (HTML-safe: `<`, `>`, `&`, U+2028 and U+2029
/// escaped as `\u00XX`).
fn go_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spec_hash_ignores_key_order_and_is_prefixed() {
        let a = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}]}, "metadata": {}});
        let b = json!({"metadata": {}, "spec": {"containers": [{"image": "x:1", "name": "a"}]}});
        assert_eq!(spec_hash(&a), spec_hash(&b));
        assert!(spec_hash(&a).starts_with(SPEC_HASH_PREFIX));
        let c = json!({"metadata": {}, "spec": {"containers": [{"image": "x:2", "name": "a"}]}});
        assert_ne!(spec_hash(&a), spec_hash(&c));
    }

    #[test]
    fn foreign_hashes_are_recognised() {
        assert!(is_foreign("5f7b8c9d4"));
        assert!(!is_foreign(""));
        assert!(!is_foreign(&spec_hash(&json!({}))));
    }

    #[test]
    fn config_checksum_matches_go_encoding() {
        // sha256(`{"a":"1","b":"\u003chi\u003e"}`), first 8 bytes.
        let expected = {
            let d = Sha256::digest(br#"{"a":"1","b":"\u003chi\u003e"}"#);
            hex(&d[..8])
        };
        assert_eq!(config_checksum([("b", "<hi>"), ("a", "1")]), expected);
        assert_eq!(config_checksum([]).len(), 16);
    }

    #[test]
    fn reverting_to_promoted_spec_is_not_a_change() {
        assert!(spec_changed("x", None, None));
        assert!(spec_changed("x", Some(""), None));
        assert!(!spec_changed("x", Some("x"), Some("w")));
        assert!(spec_changed("y", Some("x"), Some("w")));
        assert!(!spec_changed("w", Some("x"), Some("w")));
    }

    #[test]
    fn config_change_rules() {
        let mut m = std::collections::BTreeMap::new();
        assert!(!configs_changed(&m, None));
        m.insert("configmap/a".to_string(), "1".to_string());
        assert!(configs_changed(&m, None));
        assert!(!configs_changed(&m, Some(&m.clone())));
    }
}
