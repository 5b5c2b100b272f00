//! Whether an object already holds what the controller would write, so that an unchanged tick
//! writes nothing.
//!
//! The comparison mirrors what a server-side apply of `desired` would change: every field the
//! controller sets must have the same value in the live object; fields the controller does not
//! set (server defaults such as a port's `protocol`, labels added by others) are ignored. Lists
//! are compared element by element and must have the same length, because the controller owns
//! the whole list (a port it no longer wants must go).

use serde_json::Value;

/// `true` when applying `desired` to `live` would change nothing the controller sets.
pub fn holds(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (_, Value::Null) => true,
        (Value::Object(l), Value::Object(d)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => holds(lv, dv),
            None => is_empty(dv),
        }),
        (Value::Array(l), Value::Array(d)) => {
            l.len() == d.len() && l.iter().zip(d).all(|(lv, dv)| holds(lv, dv))
        }
        (Value::Number(l), Value::Number(d)) => l.as_f64() == d.as_f64(),
        (l, d) => l == d,
    }
}

/// Values an apply would not write into an absent field: null and empty maps.
pub(crate) fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().all(is_empty),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_defaults_and_foreign_fields_are_ignored() {
        let live = json!({"metadata": {"labels": {"app": "x", "team": "a"}},
            "spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}], "clusterIP": "10.0.0.1"}});
        let desired = json!({"metadata": {"labels": {"app": "x"}},
            "spec": {"ports": [{"port": 80}]}});
        assert!(holds(&live, &desired));
    }

    #[test]
    fn a_changed_scalar_or_selector_is_a_change() {
        let live = json!({"spec": {"selector": {"app": "x"}}});
        assert!(!holds(
            &live,
            &json!({"spec": {"selector": {"app": "x-primary"}}})
        ));
        assert!(!holds(&live, &json!({"spec": {"type": "ClusterIP"}})));
    }

    #[test]
    fn lists_must_match_in_length() {
        let live = json!({"ports": [{"port": 80}, {"port": 9090}]});
        assert!(!holds(&live, &json!({"ports": [{"port": 80}]})));
        assert!(holds(
            &live,
            &json!({"ports": [{"port": 80}, {"port": 9090}]})
        ));
    }

    #[test]
    fn empty_maps_and_nulls_need_nothing() {
        let live = json!({"metadata": {"name": "x"}});
        assert!(holds(
            &live,
            &json!({"metadata": {"annotations": {}, "labels": null}})
        ));
        assert!(!holds(
            &live,
            &json!({"metadata": {"annotations": {"a": "b"}}})
        ));
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(holds(&json!({"n": 1}), &json!({"n": 1.0})));
    }
}
