//! The ClusterRole aggregation controller: a ClusterRole with an `aggregationRule` gets, as
//! its `rules`, the rules of every other ClusterRole its `clusterRoleSelectors` select
//! (ClusterRoles in name order, each rule once), kept up to date as ClusterRoles come, change
//! and go: what kube-controller-manager's `clusterrole-aggregation` controller does, and what
//! `admin`, `edit` and `view` are made of.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::objects::{is, list, log_err, opts, res};
use super::queue;
use crate::api::Api;
use crate::selectors::LabelSelector;
use crate::store::StoreEvent;
use crate::util;

const MANAGER: &str = "clusterrole-aggregation-controller";

/// Aggregated ClusterRoles, keyed by name; any ClusterRole event queues every aggregated one.
pub(super) struct Aggregation;

impl queue::Reconciler for Aggregation {
    type Key = String;

    fn resync(&mut self, api: &Api) -> Vec<String> {
        let Some(info) = res(api, "rbac.authorization.k8s.io/v1", "ClusterRole") else {
            return Vec::new();
        };
        list(api, &info, None)
            .iter()
            .filter(|r| r.get("aggregationRule").is_some_and(|a| !a.is_null()))
            .map(|r| util::name(r).to_string())
            .collect()
    }

    fn keys(&mut self, api: &Api, ev: &StoreEvent, out: &mut Vec<String>) {
        if is(&ev.key, "rbac.authorization.k8s.io", "clusterroles") {
            out.extend(self.resync(api));
        }
    }

    fn reconcile(&mut self, api: &Api, name: &String) -> Option<Duration> {
        let info = res(api, "rbac.authorization.k8s.io/v1", "ClusterRole")?;
        let mut role = api.store.get(&info.storage_key(), "", name)?;
        let selectors: Vec<LabelSelector> = role
            .pointer("/aggregationRule/clusterRoleSelectors")?
            .as_array()?
            .iter()
            .map(LabelSelector::from_object)
            .collect();
        let rules = aggregate(&list(api, &info, None), name, &selectors);
        if role["rules"] == rules {
            return None;
        }
        role["rules"] = rules;
        log_err(
            "clusterrole aggregation",
            api.update(&info, "", name, role, "", &opts(MANAGER)),
        );
        None
    }
}

/// The rules of the ClusterRoles (other than `name`) that any of `selectors` selects.
fn aggregate(roles: &[Arc<Value>], name: &str, selectors: &[LabelSelector]) -> Value {
    let mut selected: Vec<&Value> = roles
        .iter()
        .filter(|r| util::name(r) != name)
        .filter(|r| {
            selectors
                .iter()
                .any(|s| s.matches(r.pointer("/metadata/labels")))
        })
        .map(Arc::as_ref)
        .collect();
    selected.sort_by_key(|r| util::name(r).to_string());
    let mut rules: Vec<Value> = Vec::new();
    for r in selected {
        for rule in r["rules"].as_array().into_iter().flatten() {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    json!(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_the_selected_roles_in_name_order_once() {
        let role = |name: &str, label: Option<&str>, verbs: &[&str]| {
            json!({"metadata": {"name": name, "labels": label.map(|l| json!({l: "true"})).unwrap_or(json!({}))},
                   "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": verbs}]})
        };
        let roles = vec![
            role("z", Some("to-view"), &["get"]),
            role("a", Some("to-view"), &["list"]),
            role("dup", Some("to-view"), &["get"]),
            role("other", None, &["delete"]),
        ]
        .into_iter()
        .map(Arc::new)
        .collect::<Vec<_>>();
        let sel = vec![LabelSelector::from_object(
            &json!({"matchLabels": {"to-view": "true"}}),
        )];
        let rules = aggregate(&roles, "view", &sel);
        let verbs: Vec<&Value> = rules
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| &r["verbs"][0])
            .collect();
        assert_eq!(verbs, vec!["list", "get"]);
        // An empty selector selects every ClusterRole (`LabelSelectorAsSelector` of `{}`).
        assert_eq!(
            aggregate(&roles, "view", &[LabelSelector::from_object(&json!({}))])
                .as_array()
                .map(Vec::len),
            Some(3)
        );
    }
}
