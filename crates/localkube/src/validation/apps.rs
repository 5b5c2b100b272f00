//! apps/v1: Deployments, ReplicaSets, DaemonSets, StatefulSets (`pkg/apis/apps/validation`
//! and the registry strategies' immutable selectors).

use serde_json::Value;

use super::content::{self, go_label_selector, go_string_map, int_or_string};
use super::core::pod_template;
use super::field::{Bad, Errors, FieldError};
use super::meta::{self, nonnegative};
use crate::selectors::LabelSelector;

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The selector rules shared by the workload kinds: required, well-formed, not empty, and
/// matching the pod template's labels; then the template and its restart policy.
fn selector_and_template(spec: &Value, empty_msg: &str, errs: &mut Errors) {
    selector_rules(spec, empty_msg, errs);
    template_rules(spec, "ReplicaSet", errs);
}

/// The selector: required, well-formed, not empty.
fn selector_rules(spec: &Value, empty_msg: &str, errs: &mut Errors) {
    match spec.get("selector").filter(|s| !s.is_null()) {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => {
            meta::label_selector(sel, "spec.selector", errs);
            let n = sel
                .get("matchLabels")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())
                + sel
                    .get("matchExpressions")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
            if n == 0 {
                errs.push(FieldError::invalid(
                    "spec.selector",
                    Bad::Go(go_label_selector(sel)),
                    empty_msg,
                ));
            }
        }
    }
}

/// The template: labels matching the selector, the pod template, restart policy `Always`, no
/// active deadline (`activeDeadlineSeconds in {kind} is not Supported`).
/// The workload's selector selects its template's labels.
fn selector_matches_template(spec: &Value, template: &Value, errs: &mut Errors) {
    let Some(sel) = spec.get("selector").filter(|s| !s.is_null()) else {
        return;
    };
    let selector = LabelSelector::from_object(sel);
    let labels = template.pointer("/metadata/labels");
    if !selector.is_empty() && !selector.matches(labels) {
        errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            Bad::Go(go_string_map(labels)),
            "`selector` does not match template `labels`",
        ));
    }
}

fn template_rules(spec: &Value, kind: &str, errs: &mut Errors) {
    let Some(t) = spec.get("template").filter(|t| !t.is_null()) else {
        errs.push(FieldError::required("spec.template", ""));
        return;
    };
    selector_matches_template(spec, t, errs);
    pod_template(t, "spec.template", errs);
    let rp = t
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !rp.is_empty() && rp != "Always" {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            Bad::str(rp),
            &["Always"],
        ));
    }
    if t.pointer("/spec/activeDeadlineSeconds")
        .is_some_and(|v| !v.is_null())
    {
        errs.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

/// An IntOrString percent or count (`ValidatePositiveIntOrPercent`, `IsNotMoreThan100Percent`).
fn int_or_percent(v: Option<&Value>, path: &str, max100: bool, errs: &mut Errors) {
    match v {
        Some(Value::String(p)) => {
            let ok = p
                .strip_suffix('%')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                errs.push(FieldError::invalid(
                    path,
                    Bad::Plain(p.clone()),
                    content::regex_error(
                        "a valid percent string must be a numeric string followed by an ending '%'",
                        "[0-9]+%",
                        &["1%", "93%"],
                    ),
                ));
            } else if max100
                && p.trim_end_matches('%')
                    .parse::<u64>()
                    .is_ok_and(|n| n > 100)
            {
                errs.push(FieldError::invalid(
                    path,
                    Bad::Plain(p.clone()),
                    "must not be greater than 100%",
                ));
            }
        }
        Some(n @ Value::Number(_)) => nonnegative(Some(n), path, errs),
        _ => {}
    }
}

fn is_zero(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Number(n)) => n.as_i64() == Some(0),
        Some(Value::String(s)) => s.trim_end_matches('%').parse::<i64>().ok() == Some(0),
        _ => false,
    }
}

fn rolling_update(ru: &Value, path: &str, errs: &mut Errors) {
    let mu = ru.get("maxUnavailable");
    let ms = ru.get("maxSurge");
    int_or_percent(mu, &format!("{path}.maxUnavailable"), false, errs);
    int_or_percent(ms, &format!("{path}.maxSurge"), false, errs);
    if is_zero(mu) && is_zero(ms) {
        errs.push(FieldError::invalid(
            format!("{path}.maxUnavailable"),
            Bad::Plain(mu.map_or_else(|| "0".to_string(), int_or_string)),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    if let Some(Value::String(p)) = mu
        && p.trim_end_matches('%')
            .parse::<u64>()
            .is_ok_and(|n| n > 100)
    {
        errs.push(FieldError::invalid(
            format!("{path}.maxUnavailable"),
            Bad::Plain(p.clone()),
            "must not be greater than 100%",
        ));
    }
}

/// A Deployment (`ValidateDeployment`, `ValidateDeploymentUpdate` and the immutable selector).
pub fn deployment(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    nonnegative(spec.get("replicas"), "spec.replicas", errs);
    selector_and_template(&spec, "empty selector is invalid for deployment", errs);
    let strategy = spec.get("strategy").cloned().unwrap_or(Value::Null);
    match s(&strategy, "type") {
        "Recreate" => {
            if strategy.get("rollingUpdate").is_some_and(|v| !v.is_null()) {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match strategy.get("rollingUpdate").filter(|v| !v.is_null()) {
            None => errs.push(FieldError::required(
                "spec.strategy.rollingUpdate",
                "this should be defaulted and never be nil",
            )),
            Some(ru) => rolling_update(ru, "spec.strategy.rollingUpdate", errs),
        },
        other => errs.push(FieldError::not_supported(
            "spec.strategy",
            Bad::Go(format!(
                "apps.DeploymentStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}}",
                content::go_quote(other)
            )),
            &["Recreate", "RollingUpdate"],
        )),
    }
    nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds", errs);
    nonnegative(
        spec.get("revisionHistoryLimit"),
        "spec.revisionHistoryLimit",
        errs,
    );
    if let Some(pd) = spec.get("progressDeadlineSeconds").and_then(Value::as_i64) {
        nonnegative(
            spec.get("progressDeadlineSeconds"),
            "spec.progressDeadlineSeconds",
            errs,
        );
        let min_ready = spec
            .get("minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if pd <= min_ready {
            errs.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                Bad::int(pd),
                "must be greater than minReadySeconds",
            ));
        }
    }
    if let Some(old) = old {
        meta::immutable_selector(old, obj, "spec.selector", errs);
    }
}

/// A ReplicaSet.
pub fn replica_set(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    nonnegative(spec.get("replicas"), "spec.replicas", errs);
    nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds", errs);
    selector_and_template(&spec, "empty selector is invalid for deployment", errs);
    if let Some(old) = old {
        meta::immutable_selector(old, obj, "spec.selector", errs);
    }
}

/// Go's `%#v` of a pointer field that is set: a made-up address (Go prints a real one).
fn go_ptr(ty: &str, v: Option<&Value>) -> String {
    match v.filter(|v| !v.is_null()) {
        None => format!("(*{ty})(nil)"),
        Some(_) => format!("(*{ty})(0xc000000000)"),
    }
}

/// A DaemonSet (`ValidateDaemonSetSpec`, in its order). A missing selector is no error of
/// its own: it matches no labels, so the template's labels do not match it.
pub fn daemon_set(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let sel = spec.get("selector").filter(|s| !s.is_null());
    if let Some(sel) = sel {
        meta::label_selector(sel, "spec.selector", errs);
    }
    let labels = spec.pointer("/template/metadata/labels");
    let matches = sel.is_some_and(|s| LabelSelector::from_object(s).matches(labels));
    if !matches {
        errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            Bad::Go(go_string_map(labels)),
            "`selector` does not match template `labels`",
        ));
    }
    if let Some(sel) = sel
        && sel
            .get("matchLabels")
            .and_then(Value::as_object)
            .map_or(0, |m| m.len())
            + sel
                .get("matchExpressions")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
            == 0
    {
        errs.push(FieldError::invalid(
            "spec.selector",
            Bad::Go(go_label_selector(sel)),
            "empty selector is invalid for daemonset",
        ));
    }
    let mut tmpl = spec.clone();
    if let Some(m) = tmpl.as_object_mut() {
        // The label match is reported above.
        m.remove("selector");
    }
    template_rules(&tmpl, "DaemonSet", errs);
    nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds", errs);
    let us = spec.get("updateStrategy").cloned().unwrap_or(Value::Null);
    match s(&us, "type") {
        "OnDelete" => {}
        "RollingUpdate" => match us.get("rollingUpdate").filter(|v| !v.is_null()) {
            None => errs.push(FieldError::required(
                "spec.updateStrategy.rollingUpdate",
                "",
            )),
            Some(ru) => daemon_set_rolling_update(ru, errs),
        },
        other => errs.push(FieldError::not_supported(
            "spec.updateStrategy",
            Bad::Go(format!(
                "apps.DaemonSetUpdateStrategy{{Type:{}, RollingUpdate:{}}}",
                content::go_quote(other),
                go_ptr("apps.RollingUpdateDaemonSet", us.get("rollingUpdate"))
            )),
            &["RollingUpdate", "OnDelete"],
        )),
    }
    nonnegative(
        spec.get("revisionHistoryLimit"),
        "spec.revisionHistoryLimit",
        errs,
    );
    if let Some(old) = old {
        meta::immutable_selector(old, obj, "spec.selector", errs);
    }
}

/// `ValidateRollingUpdateDaemonSet`: each a count or percent, neither over 100%, exactly
/// one of them non-zero.
fn daemon_set_rolling_update(ru: &Value, errs: &mut Errors) {
    let path = "spec.updateStrategy.rollingUpdate";
    let mu = ru.get("maxUnavailable");
    let ms = ru.get("maxSurge");
    int_or_percent(mu, &format!("{path}.maxUnavailable"), false, errs);
    int_or_percent(ms, &format!("{path}.maxSurge"), false, errs);
    for (v, f) in [(mu, "maxUnavailable"), (ms, "maxSurge")] {
        if let Some(Value::String(p)) = v
            && p.strip_suffix('%')
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n > 100)
        {
            errs.push(FieldError::invalid(
                format!("{path}.{f}"),
                Bad::Plain(p.clone()),
                "must not be greater than 100%",
            ));
        }
    }
    match (is_zero(mu), is_zero(ms)) {
        (false, false) => errs.push(FieldError::invalid(
            format!("{path}.maxSurge"),
            Bad::Plain(ms.map_or_else(|| "0".to_string(), int_or_string)),
            "may not be set when maxUnavailable is non-zero",
        )),
        (true, true) => errs.push(FieldError::required(
            format!("{path}.maxUnavailable"),
            "cannot be 0 when maxSurge is 0",
        )),
        _ => {}
    }
}

/// A StatefulSet (`ValidateStatefulSetSpec`, in its order; its template's pod spec is not
/// validated, only its labels and annotations). Updates may change only replicas, ordinals,
/// template, updateStrategy, persistentVolumeClaimRetentionPolicy and minReadySeconds.
pub fn stateful_set(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    match s(&spec, "podManagementPolicy") {
        "" => errs.push(FieldError::required("spec.podManagementPolicy", "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(FieldError::invalid(
            "spec.podManagementPolicy",
            Bad::str(other),
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let us = spec.get("updateStrategy").cloned().unwrap_or(Value::Null);
    let ru = us.get("rollingUpdate").filter(|v| !v.is_null());
    let go_ru = |ru: &Value| {
        format!(
            "apps.RollingUpdateStatefulSetStrategy{{Partition:{}, MaxUnavailable:{}}}",
            ru.get("partition").and_then(Value::as_i64).unwrap_or(0),
            go_ptr("intstr.IntOrString", ru.get("maxUnavailable"))
        )
    };
    match s(&us, "type") {
        "" => errs.push(FieldError::required("spec.updateStrategy", "")),
        "OnDelete" => {
            if let Some(ru) = ru {
                errs.push(FieldError::invalid(
                    "spec.updateStrategy.rollingUpdate",
                    Bad::Go(go_ru(ru)),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = ru {
                let p = "spec.updateStrategy.rollingUpdate";
                nonnegative(ru.get("partition"), &format!("{p}.partition"), errs);
                if let Some(mu) = ru.get("maxUnavailable").filter(|v| !v.is_null()) {
                    let mp = format!("{p}.maxUnavailable");
                    int_or_percent(Some(mu), &mp, false, errs);
                    if is_zero(Some(mu)) {
                        errs.push(FieldError::invalid(
                            &mp,
                            Bad::Plain(int_or_string(mu)),
                            "cannot be 0",
                        ));
                    }
                    if let Value::String(pc) = mu
                        && pc
                            .strip_suffix('%')
                            .and_then(|n| n.parse::<u64>().ok())
                            .is_some_and(|n| n > 100)
                    {
                        errs.push(FieldError::invalid(
                            &mp,
                            Bad::Plain(pc.clone()),
                            "must not be greater than 100%",
                        ));
                    }
                }
            }
        }
        other => errs.push(FieldError::invalid(
            "spec.updateStrategy",
            Bad::Go(format!(
                "apps.StatefulSetUpdateStrategy{{Type:{}, RollingUpdate:{}}}",
                content::go_quote(other),
                go_ptr("apps.RollingUpdateStatefulSetStrategy", ru)
            )),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(p) = spec
        .get("persistentVolumeClaimRetentionPolicy")
        .filter(|v| !v.is_null())
    {
        for f in ["whenDeleted", "whenScaled"] {
            let v = s(p, f);
            if !matches!(v, "Retain" | "Delete") {
                errs.push(FieldError::not_supported(
                    format!("spec.persistentVolumeClaimRetentionPolicy.{f}"),
                    Bad::str(v),
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    nonnegative(spec.get("replicas"), "spec.replicas", errs);
    nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds", errs);
    selector_rules(&spec, "empty selector is invalid for statefulset", errs);
    // `ValidatePodTemplateSpecForStatefulSet`: the label match, the template's labels and
    // annotations; then restart policy and active deadline.
    if let Some(t) = spec.get("template").filter(|t| !t.is_null()) {
        selector_matches_template(&spec, t, errs);
        meta::labels(t.pointer("/metadata/labels"), "spec.template.labels", errs);
        meta::annotations(
            t.pointer("/metadata/annotations"),
            "spec.template.annotations",
            errs,
        );
    }
    let rp = spec
        .pointer("/template/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if rp != "Always" {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            Bad::str(rp),
            &["Always"],
        ));
    }
    if spec
        .pointer("/template/spec/activeDeadlineSeconds")
        .is_some_and(|v| !v.is_null())
    {
        errs.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in StatefulSet is not Supported",
        ));
    }
    if let Some(old) = old {
        let strip = |v: &Value| {
            let mut sp = v.get("spec").cloned().unwrap_or(Value::Null);
            if let Some(m) = sp.as_object_mut() {
                for k in [
                    "replicas",
                    "ordinals",
                    "template",
                    "updateStrategy",
                    "persistentVolumeClaimRetentionPolicy",
                    "minReadySeconds",
                ] {
                    m.remove(k);
                }
            }
            sp
        };
        if strip(old) != strip(obj) {
            errs.push(FieldError::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::testing::run;
    use serde_json::json;

    fn deploy(selector: Value, labels: Value) -> Value {
        json!({"spec": {
            "replicas": 1, "selector": selector, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": labels}, "spec": {
                "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                "containers": [{"name": "app", "image": "x:1", "imagePullPolicy": "IfNotPresent"}]}}
        }})
    }

    #[test]
    fn selector_must_match_template() {
        let d = deploy(json!({"matchLabels": {"app": "a"}}), json!({"app": "b"}));
        assert_eq!(
            run(|e| deployment(&d, None, e)),
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"b\"}: `selector` does not match template `labels`"
            ]
        );
        let d = deploy(json!({}), json!({"app": "b"}));
        assert_eq!(
            run(|e| deployment(&d, None, e)),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
            ]
        );
        let mut d = deploy(json!({"matchLabels": {"app": "a"}}), json!({"app": "a"}));
        d["spec"].as_object_mut().map(|m| m.remove("selector"));
        assert_eq!(
            run(|e| deployment(&d, None, e)),
            vec!["spec.selector: Required value"]
        );
    }

    #[test]
    fn selector_is_immutable() {
        let old = deploy(
            json!({"matchLabels": {"app": "a"}}),
            json!({"app": "a", "b": "c"}),
        );
        let new = deploy(
            json!({"matchLabels": {"app": "a", "b": "c"}}),
            json!({"app": "a", "b": "c"}),
        );
        assert_eq!(
            run(|e| deployment(&new, Some(&old), e)),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"a\", \"b\":\"c\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
            ]
        );
        assert!(run(|e| deployment(&old, Some(&old), e)).is_empty());
        assert_eq!(run(|e| daemon_set(&new, Some(&old), e)).len(), 2);
        assert_eq!(run(|e| replica_set(&new, Some(&old), e)).len(), 1);
    }

    #[test]
    fn strategy_and_numbers() {
        let mut d = deploy(json!({"matchLabels": {"app": "a"}}), json!({"app": "a"}));
        d["spec"]["replicas"] = json!(-1);
        d["spec"]["strategy"]["rollingUpdate"] = json!({"maxSurge": 0, "maxUnavailable": "120%"});
        d["spec"]["progressDeadlineSeconds"] = json!(5);
        d["spec"]["minReadySeconds"] = json!(10);
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        assert_eq!(
            run(|e| deployment(&d, None, e)),
            vec![
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 120%: must not be greater than 100%",
                "spec.progressDeadlineSeconds: Invalid value: 5: must be greater than minReadySeconds",
            ]
        );
        d["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {}});
        assert!(run(|e| deployment(&d, None, e)).contains(&"spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'".to_string()));
    }

    #[test]
    fn statefulset_updates_are_limited() {
        let mut old = deploy(json!({"matchLabels": {"app": "a"}}), json!({"app": "a"}));
        old["spec"]["serviceName"] = json!("a");
        old["spec"]["podManagementPolicy"] = json!("OrderedReady");
        old["spec"]["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}});
        let mut new = old.clone();
        new["spec"]["serviceName"] = json!("b");
        assert_eq!(run(|e| stateful_set(&new, Some(&old), e)).len(), 1);
        new["spec"]["serviceName"] = json!("a");
        new["spec"]["replicas"] = json!(3);
        assert!(run(|e| stateful_set(&new, Some(&old), e)).is_empty());
    }
}
