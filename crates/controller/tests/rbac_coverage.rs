//! The controller's RBAC is least privilege, shown from what the e2e suites did: every e2e
//! environment (`support::Env`) runs the controller under `deploy/flagger`'s ClusterRole on a
//! localkube that enforces RBAC, fails when the controller is refused anything, and leaves the
//! controller's authorization decisions in `target/tmp/rbac-audit`. This test, run by
//! `scripts/test.sh` after the e2e suites, shows that every rule of the ClusterRole allowed
//! something in some scenario (so none can go), prints which requests each rule served and in
//! which scenarios, and names the verbs and resources of each rule no scenario used.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize as _;
use serde_json::Value;

/// The rules of the ClusterRole in `deploy/flagger/rbac.yaml`.
fn cluster_role_rules() -> Vec<Value> {
    let text = include_str!("../../../deploy/flagger/rbac.yaml");
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|d| {
            serde_yaml::from_value::<Value>(serde_yaml::Value::deserialize(d).ok()?).ok()
        })
        .find(|d| d["kind"] == "ClusterRole")
        .and_then(|d| d["rules"].as_array().cloned())
        .expect("deploy/flagger/rbac.yaml has a ClusterRole with rules")
}

#[test]
#[ignore = "reads what the e2e suites recorded: scripts/test.sh runs it after them"]
fn every_rule_of_the_controller_rbac_is_used_and_nothing_else_is_asked() {
    let dir = support::audit_dir();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run the e2e suites first)", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no audits in {}", dir.display());
    let rules = cluster_role_rules();
    // rule index → (verb group/resource) → scenarios
    let mut used: BTreeMap<usize, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut denied: Vec<String> = Vec::new();
    let mut other: BTreeSet<String> = BTreeSet::new();
    for f in &files {
        let audit: Value = serde_json::from_slice(&std::fs::read(f).expect("audit readable"))
            .expect("audit is JSON");
        let scenario = format!(
            "{}::{}",
            audit["suite"].as_str().unwrap_or_default(),
            audit["test"].as_str().unwrap_or_default()
        );
        for d in audit["decisions"].as_array().into_iter().flatten() {
            let what = if d["resource"] == "" {
                format!(
                    "{} {}",
                    d["verb"].as_str().unwrap_or_default(),
                    d["path"].as_str().unwrap_or_default()
                )
            } else {
                format!(
                    "{} {}/{}",
                    d["verb"].as_str().unwrap_or_default(),
                    d["apiGroup"].as_str().unwrap_or_default(),
                    d["resource"].as_str().unwrap_or_default()
                )
            };
            if d["allowed"] != true {
                denied.push(format!("{what} in {scenario}"));
                continue;
            }
            let src = &d["source"];
            if src["bindingKind"] == "ClusterRoleBinding" && src["binding"] == "flagger" {
                let i = src["rule"].as_u64().unwrap_or_default() as usize;
                used.entry(i)
                    .or_default()
                    .entry(what)
                    .or_default()
                    .insert(scenario.clone());
            } else {
                // Allowed by the bootstrap policy every authenticated user has (discovery,
                // reviews): not the chart's to grant.
                other.insert(format!(
                    "{what} (by {} {})",
                    src["bindingKind"].as_str().unwrap_or_default(),
                    src["binding"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    println!("{} scenarios audited from {}", files.len(), dir.display());
    let mut unused_rules = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let s = |k: &str| {
            rule[k]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        println!(
            "rule {i}: {:?} {:?} {:?}",
            s("apiGroups"),
            s("resources"),
            s("verbs")
        );
        let Some(reqs) = used.get(&i) else {
            println!("    NOT USED by any scenario");
            unused_rules.push(i);
            continue;
        };
        for (what, scenarios) in reqs {
            let first: Vec<&String> = scenarios.iter().take(2).collect();
            println!("    {what}: {} scenarios, e.g. {first:?}", scenarios.len());
        }
        for g in s("apiGroups") {
            for r in s("resources") {
                for v in s("verbs") {
                    let what = format!("{v} {g}/{r}");
                    if !reqs.contains_key(&what) {
                        println!("    (no scenario used {what})");
                    }
                }
            }
        }
    }
    for o in &other {
        println!("outside the chart's rules, allowed to every authenticated user: {o}");
    }
    assert!(
        denied.is_empty(),
        "the controller was refused:\n{}",
        denied.join("\n")
    );
    assert!(
        unused_rules.is_empty(),
        "rules of deploy/flagger/rbac.yaml no scenario used: {unused_rules:?} (remove them, or add the scenario that needs them)"
    );
}
