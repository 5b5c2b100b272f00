//! Fights over generated objects: another writer (a GitOps tool, a person with kubectl)
//! changing fields the controller manages, and the controller changing them back, in a loop.
//!
//! Seed 000 is the case this module is for: Flux re-applied a Service `app` every five minutes
//! with a selector for the `app` pods (scaled to zero by Flagger), Flagger set it back to the
//! `app-primary` pods at its next tick, and 5–8% of requests failed until someone noticed.
//!
//! Pure logic: which fields differ between the live object and what the controller wants
//! ([`differences`]), who else owns them according to `metadata.managedFields`
//! ([`contenders`]), and a per-object record of reversions that decides when to stop reverting
//! ([`FightLog`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use flagger_api::{CanaryCondition, CanaryStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

/// Condition type present while another writer fights over a generated object.
pub const CONDITION_FIELD_CONFLICT: &str = "FieldConflict";

/// A field path, as object keys from the root (`["spec", "selector", "app"]`). A path that ends
/// at a list names the whole list.
pub type FieldPath = Vec<String>;

/// Dotted form of a path, as shown to people: `spec.selector.app`.
pub fn dotted(path: &FieldPath) -> String {
    path.join(".")
}

/// The fields `desired` sets that `live` does not hold (see [`crate::converge::holds`] for the
/// comparison rules).
pub fn differences(live: &Value, desired: &Value) -> Vec<FieldPath> {
    let mut out = Vec::new();
    walk(live, desired, &mut Vec::new(), &mut out);
    out
}

fn walk(live: &Value, desired: &Value, at: &mut FieldPath, out: &mut Vec<FieldPath>) {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => {
            for (k, dv) in d {
                at.push(k.clone());
                match l.get(k) {
                    Some(lv) => walk(lv, dv, at, out),
                    None if crate::converge::is_empty(dv) => {}
                    None => out.push(at.clone()),
                }
                at.pop();
            }
        }
        (l, d) if crate::converge::holds(l, d) => {}
        _ => out.push(at.clone()),
    }
}

/// Another writer's claim on fields the controller wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contender {
    /// The field manager (`kustomize-controller`, `argocd-controller`, `kubectl-client-side-apply`, …).
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// The contested fields it owns, dotted.
    pub fields: Vec<String>,
}

/// Managers other than `ours` (and the expected ones, see [`EXPECTED_MANAGERS`]) that own any of
/// `paths` in `managed`.
pub fn contenders(
    managed: &[ManagedFieldsEntry],
    ours: &str,
    paths: &[FieldPath],
) -> Vec<Contender> {
    let mut out: Vec<Contender> = Vec::new();
    for entry in managed {
        let manager = entry.manager.clone().unwrap_or_default();
        if manager == ours
            || EXPECTED_MANAGERS.contains(&manager.as_str())
            || entry.subresource.as_deref().is_some_and(|s| !s.is_empty())
        {
            continue;
        }
        let Some(fields) = entry.fields_v1.as_ref().map(|f| &f.0) else {
            continue;
        };
        let owned: Vec<String> = paths
            .iter()
            .filter(|p| owns(fields, p))
            .map(dotted)
            .collect();
        if owned.is_empty() {
            continue;
        }
        let operation = entry.operation.clone().unwrap_or_default();
        match out.iter_mut().find(|c| c.manager == manager) {
            Some(c) => {
                for f in owned {
                    if !c.fields.contains(&f) {
                        c.fields.push(f);
                    }
                }
            }
            None => out.push(Contender {
                manager,
                operation,
                fields: owned,
            }),
        }
    }
    out
}

/// The [`contenders`] that wrote at or after the controller's last write (managedFields times,
/// to the second): a write that came before ours is the state the controller took over, not a
/// fight. Without a write of ours there is no fight yet.
pub fn contenders_since_ours(
    managed: &[ManagedFieldsEntry],
    ours: &str,
    paths: &[FieldPath],
) -> Vec<Contender> {
    let time = |e: &ManagedFieldsEntry| e.time.as_ref().map(|t| t.0);
    let Some(last_ours) = managed
        .iter()
        .filter(|e| e.manager.as_deref() == Some(ours))
        .filter_map(time)
        .max()
    else {
        return Vec::new();
    };
    let since: Vec<ManagedFieldsEntry> = managed
        .iter()
        .filter(|e| time(e).is_some_and(|t| t >= last_ours))
        .cloned()
        .collect();
    contenders(&since, ours, paths)
}

/// Managers that write the controller's objects as a matter of course and are never a fight:
/// the HPA and other controllers of kube-controller-manager, and `flagger uninstall` (the
/// controller's own tool).
pub const EXPECTED_MANAGERS: &[&str] = &["kube-controller-manager", "flagger-uninstall"];

/// A foreign write found in `managedFields`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignWrite {
    pub contender: Contender,
    /// The entry's time (RFC 3339), which changes with each write.
    pub time: String,
}

/// Other managers (not `ours`, not the expected ones, not status writers) owning fields under
/// `spec`: who else edits an object the controller generated. The fields are dotted paths,
/// lists shown as the list (at most `limit` per manager).
pub fn foreign_spec_writers(
    managed: &[ManagedFieldsEntry],
    ours: &str,
    limit: usize,
) -> Vec<ForeignWrite> {
    let mut out = Vec::new();
    for entry in managed {
        let manager = entry.manager.clone().unwrap_or_default();
        if manager == ours || EXPECTED_MANAGERS.contains(&manager.as_str()) {
            continue;
        }
        if entry.subresource.as_deref().is_some_and(|s| s == "status") {
            continue;
        }
        let Some(spec) = entry.fields_v1.as_ref().and_then(|f| f.0.get("f:spec")) else {
            continue;
        };
        let mut fields = Vec::new();
        leaves(spec, &mut vec!["spec".to_string()], &mut fields);
        if fields.is_empty() {
            continue;
        }
        fields.truncate(limit);
        out.push(ForeignWrite {
            contender: Contender {
                manager,
                operation: entry.operation.clone().unwrap_or_default(),
                fields,
            },
            time: entry
                .time
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
        });
    }
    out
}

fn leaves(fields: &serde_json::Value, at: &mut Vec<String>, out: &mut Vec<String>) {
    let Value::Object(m) = fields else {
        out.push(at.join("."));
        return;
    };
    let keys: Vec<&String> = m.keys().filter(|k| k.as_str() != ".").collect();
    if keys.is_empty() || keys.iter().any(|k| !k.starts_with("f:")) {
        // A leaf, or a list (members keyed k:/i:/v:): report the path itself.
        out.push(at.join("."));
        return;
    }
    for k in keys {
        at.push(k.trim_start_matches("f:").to_string());
        leaves(&m[k.as_str()], at, out);
        at.pop();
    }
}

/// Whether a `fieldsV1` set covers `path`: every key along it is present as `f:<key>`; reaching
/// a list (`k:`/`i:`/`v:` members) or a leaf counts as owning the rest.
fn owns(fields: &Value, path: &FieldPath) -> bool {
    let mut at = fields;
    for key in path {
        let Value::Object(m) = at else {
            return true;
        };
        if m.keys()
            .any(|k| k.starts_with("k:") || k.starts_with("i:") || k.starts_with("v:"))
        {
            return true;
        }
        match m.get(&format!("f:{key}")) {
            Some(next) => at = next,
            None => return false,
        }
    }
    true
}

/// When to stop reverting another writer's changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FightPolicy {
    /// Reversions of one object, against one manager, within `window` after which the
    /// controller stops reverting. 0: never stop (Flagger's behaviour).
    pub max_reversions: u32,
    pub window: Duration,
}

impl Default for FightPolicy {
    fn default() -> Self {
        FightPolicy {
            max_reversions: 3,
            window: Duration::from_secs(30 * 60),
        }
    }
}

/// What to do about a foreign change just observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Put the controller's fields back; `count` reversions in the window so far (this one
    /// included).
    Revert { count: usize },
    /// Leave the object to the other writer from now on; `count` reversions were made.
    Yield { count: usize },
    /// A change to an object the controller writes only at set moments (the primary workload
    /// and autoscaler: at promotion): reported, not reverted now.
    Noted,
}

/// The latest description of a fight over one object, for the Canary condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    /// The controller stopped reverting the object.
    pub yielded: bool,
}

/// Per-object, per-manager history of reversions, and the objects yielded.
#[derive(Clone, Debug, Default)]
pub struct FightLog {
    reversions: BTreeMap<(String, String), VecDeque<Timestamp>>,
    yielded: BTreeMap<String, String>,
    notes: BTreeMap<String, Note>,
    /// Last write time seen per (object, manager), for objects only noted.
    writes: BTreeMap<(String, String), String>,
    /// When each note was made, so noted changes leave the condition after the window.
    noted_at: BTreeMap<String, Timestamp>,
}

impl FightLog {
    /// Whether the log holds nothing (no reversion, yield, note or write seen): such a log is
    /// not kept.
    pub fn is_empty(&self) -> bool {
        self.reversions.is_empty()
            && self.yielded.is_empty()
            && self.notes.is_empty()
            && self.writes.is_empty()
            && self.noted_at.is_empty()
    }

    /// Records a foreign change of `object` by `manager` at `now` and says what to do.
    pub fn observe(
        &mut self,
        object: &str,
        manager: &str,
        now: Timestamp,
        policy: FightPolicy,
    ) -> Verdict {
        let times = self
            .reversions
            .entry((object.to_string(), manager.to_string()))
            .or_default();
        let window = policy.window.as_secs() as i64;
        while times
            .front()
            .is_some_and(|t| now.as_second() - t.as_second() >= window)
        {
            times.pop_front();
        }
        let reverted = times.len();
        if policy.max_reversions > 0 && reverted >= policy.max_reversions as usize {
            self.yielded.insert(object.to_string(), manager.to_string());
            return Verdict::Yield { count: reverted };
        }
        times.push_back(now);
        Verdict::Revert { count: times.len() }
    }

    /// The manager `object` was yielded to, if it was.
    pub fn yielded_to(&self, object: &str) -> Option<&str> {
        self.yielded.get(object).map(String::as_str)
    }

    /// The other writer no longer holds the object's contested fields: fight over, history
    /// cleared.
    pub fn settle(&mut self, object: &str) {
        self.yielded.remove(object);
        self.notes.remove(object);
        self.reversions.retain(|(o, _), _| o != object);
    }

    /// Whether `manager`'s write of `object` at `time` (its managedFields entry's time) is one
    /// not seen before; remembers it.
    pub fn new_write(&mut self, object: &str, manager: &str, time: &str) -> bool {
        let key = (object.to_string(), manager.to_string());
        if self.writes.get(&key).is_some_and(|t| t == time) {
            return false;
        }
        self.writes.insert(key, time.to_string());
        true
    }

    /// Records a noted change (see [`Verdict::Noted`]) at `now`, with its description.
    pub fn noted(&mut self, object: &str, now: Timestamp, text: String) {
        self.noted_at.insert(object.to_string(), now);
        self.notes.insert(
            object.to_string(),
            Note {
                text,
                yielded: false,
            },
        );
    }

    /// Keeps the latest description of the fight over `object` (for the Canary condition).
    pub fn note(&mut self, object: &str, note: Note) {
        self.notes.insert(object.to_string(), note);
    }

    /// Records a reported change: its description, and when it is only noted, its time.
    pub fn record(&mut self, report: &ConflictReport, now: Timestamp, text: String) {
        match report.verdict {
            Verdict::Noted => self.noted(&report.object, now, text),
            Verdict::Yield { .. } => self.note(
                &report.object,
                Note {
                    text,
                    yielded: true,
                },
            ),
            Verdict::Revert { .. } => self.note(
                &report.object,
                Note {
                    text,
                    yielded: false,
                },
            ),
        }
    }

    /// Descriptions of the fights still active at `now`, by object.
    pub fn active_notes(&self, now: Timestamp, policy: FightPolicy) -> Vec<(String, Note)> {
        let window = policy.window.as_secs() as i64;
        let mut active: BTreeSet<String> = self
            .active(now, policy)
            .into_iter()
            .map(|(o, _, _)| o)
            .collect();
        active.extend(
            self.noted_at
                .iter()
                .filter(|(_, t)| now.as_second() - t.as_second() < window)
                .map(|(o, _)| o.clone()),
        );
        self.notes
            .iter()
            .filter(|(o, _)| active.contains(*o))
            .map(|(o, n)| (o.clone(), n.clone()))
            .collect()
    }

    /// Objects with reversions in the window ending at `now`, or yielded: `(object, manager,
    /// count)`.
    pub fn active(&self, now: Timestamp, policy: FightPolicy) -> Vec<(String, String, usize)> {
        let window = policy.window.as_secs() as i64;
        let mut out: BTreeSet<(String, String, usize)> = BTreeSet::new();
        for ((object, manager), times) in &self.reversions {
            let n = times
                .iter()
                .filter(|t| now.as_second() - t.as_second() < window)
                .count();
            if n > 0 || self.yielded.get(object) == Some(manager) {
                out.insert((object.clone(), manager.clone(), n));
            }
        }
        out.into_iter().collect()
    }
}

/// Another writer's change to a generated object, and what the controller does about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConflictReport {
    /// `Service/app`
    pub object: String,
    pub kind: String,
    pub name: String,
    /// The object is the apex Service (the one clients use).
    pub apex: bool,
    pub contender: Contender,
    pub verdict: Verdict,
    /// The object, as the other writer left it, routes to the target's pods.
    pub selects_target: bool,
}

impl ConflictReport {
    /// What the controller did, for the `flagger_field_conflicts_total` label.
    pub fn action(&self) -> &'static str {
        match self.verdict {
            Verdict::Noted => "noted",
            Verdict::Revert { .. } => "reverted",
            Verdict::Yield { .. } => "yielded",
        }
    }

    /// The event message: who changed what, what the controller does, and the fix. `target`
    /// is the target's kind and name.
    pub fn message(&self, policy: FightPolicy, target: (&str, &str)) -> String {
        let manager = &self.contender.manager;
        let fields = self.contender.fields.join(", ");
        let window = crate::duration::format_go(policy.window);
        let limit = policy.max_reversions;
        let remedy = remedy(manager, &self.kind, &self.name);
        let (kind, name) = (&self.kind, &self.name);
        match self.verdict {
            Verdict::Noted => format!(
                "{kind} {name}: field manager {manager} changed {fields}, which the controller \
                 manages; it is written again at the next promotion, undoing the change. Fix: \
                 {remedy}"
            ),
            Verdict::Revert { count } => {
                // Only Services are ever left to another writer; routing objects are always
                // put back.
                let stop = if limit == 0 || kind != "Service" {
                    String::new()
                } else {
                    format!("; stops after {limit}")
                };
                format!(
                    "{kind} {name}: field manager {manager} changed {fields}, which the \
                     controller manages; put back ({count} times in {window}{stop}). Fix: \
                     {remedy}"
                )
            }
            Verdict::Yield { count } => {
                let safety = if self.apex && self.selects_target {
                    format!(
                        "; it routes to the pods of {} {}, which is scaled up and kept up so \
                         traffic keeps flowing (the Service is put back until those pods are \
                         ready), and canary analysis no longer protects this Service",
                        target.0, target.1
                    )
                } else {
                    String::new()
                };
                format!(
                    "{kind} {name}: field manager {manager} changed {fields} again after \
                     {count} reversions in {window}; stopped reverting, the object is left to \
                     {manager}{safety}. Fix: {remedy}"
                )
            }
        }
    }
}

/// New writes by other managers to the spec of an object the controller generated and writes
/// only at set moments (the primary workload and autoscaler, rewritten at promotion): noted,
/// once per write.
pub fn noted_writes(
    log: &mut FightLog,
    kind: &str,
    name: &str,
    managed: &[ManagedFieldsEntry],
    ours: &str,
) -> Vec<ConflictReport> {
    let object = format!("{kind}/{name}");
    foreign_spec_writers(managed, ours, 5)
        .into_iter()
        .filter(|w| log.new_write(&object, &w.contender.manager, &w.time))
        .map(|w| ConflictReport {
            object: object.clone(),
            kind: kind.into(),
            name: name.into(),
            apex: false,
            contender: w.contender,
            verdict: Verdict::Noted,
            selects_target: false,
        })
        .collect()
}

/// A fight over a routing object. Routing objects are always put back (without them the canary
/// cannot route), so the verdict is always `Revert`.
pub fn routing_report(
    log: &mut FightLog,
    kind: &str,
    name: &str,
    contender: Contender,
    now: Timestamp,
    window: Duration,
) -> ConflictReport {
    let object = format!("{kind}/{name}");
    let policy = FightPolicy {
        max_reversions: 0,
        window,
    };
    let verdict = log.observe(&object, &contender.manager, now, policy);
    ConflictReport {
        object,
        kind: kind.into(),
        name: name.into(),
        apex: false,
        contender,
        verdict,
        selects_target: false,
    }
}

/// `status` with the `FieldConflict` condition made current from the fights still active (added,
/// updated or removed), or `None` when it already is. The reason is `StoppedReverting` when the
/// controller left an object to another writer, else `Reverting`.
pub fn with_condition(
    status: &CanaryStatus,
    notes: &[(String, Note)],
    now: Timestamp,
) -> Option<CanaryStatus> {
    let current = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.r#type == CONDITION_FIELD_CONFLICT);
    let wanted = (!notes.is_empty()).then(|| {
        let yielded = notes.iter().any(|(_, n)| n.yielded);
        (
            if yielded {
                "StoppedReverting"
            } else {
                "Reverting"
            },
            notes
                .iter()
                .map(|(_, n)| n.text.as_str())
                .collect::<Vec<_>>()
                .join(" | "),
        )
    });
    let unchanged = match (current, &wanted) {
        (None, None) => true,
        (Some(c), Some((reason, message))) => {
            c.reason == *reason && c.message.as_deref() == Some(message.as_str())
        }
        _ => false,
    };
    if unchanged {
        return None;
    }
    let mut updated = status.clone();
    let mut conditions: Vec<CanaryCondition> = updated
        .conditions
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.r#type != CONDITION_FIELD_CONFLICT)
        .collect();
    if let Some((reason, message)) = wanted {
        conditions.push(CanaryCondition {
            r#type: CONDITION_FIELD_CONFLICT.into(),
            status: "True".into(),
            last_update_time: Some(Time(now)),
            last_transition_time: Some(Time(
                current
                    .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
                    .unwrap_or(now),
            )),
            reason: reason.into(),
            message: Some(message),
        });
    }
    updated.conditions = (!conditions.is_empty()).then_some(conditions);
    Some(updated)
}

/// How to stop a GitOps tool from fighting over a generated object, for the message.
pub fn remedy(manager: &str, kind: &str, name: &str) -> String {
    let flux = format!(
        "remove {kind} {name} from the Git source (Flux: or annotate it there with \
         kustomize.toolkit.fluxcd.io/ssa: IfNotPresent, so Flux creates it but never \
         overwrites it)"
    );
    let argo = format!(
        "remove {kind} {name} from the Git source (Argo CD: or add an ignoreDifferences rule \
         for the contested fields, with RespectIgnoreDifferences=true in syncOptions)"
    );
    match manager {
        m if m.contains("kustomize-controller")
            || m.contains("helm-controller")
            || m.contains("flux") =>
        {
            flux
        }
        m if m.contains("argocd") => argo,
        _ => format!(
            "stop {manager} from writing {kind} {name}: the controller generates it; {flux}; {argo}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
    use serde_json::json;

    fn entry(manager: &str, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Apply".into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }
    }

    #[test]
    fn the_seed_selector_fight_names_flux() {
        let live = json!({"spec": {"selector": {"app": "app"}, "ports": [{"port": 80}]}});
        let desired =
            json!({"spec": {"selector": {"app": "app-primary"}, "ports": [{"port": 80}]}});
        let diff = differences(&live, &desired);
        assert_eq!(
            diff,
            vec![vec!["spec".to_string(), "selector".into(), "app".into()]]
        );
        let managed = vec![
            entry(
                "flagger",
                json!({"f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {}}}}),
            ),
            entry(
                "kustomize-controller",
                json!({"f:spec": {"f:selector": {"f:app": {}}}}),
            ),
        ];
        let c = contenders(&managed, "flagger", &diff);
        assert_eq!(
            c,
            vec![Contender {
                manager: "kustomize-controller".into(),
                operation: "Apply".into(),
                fields: vec!["spec.selector.app".into()],
            }]
        );
    }

    #[test]
    fn our_own_fields_and_status_writers_are_not_contenders() {
        let diff = vec![vec!["spec".to_string(), "selector".into()]];
        let managed = vec![
            entry("flagger", json!({"f:spec": {"f:selector": {}}})),
            ManagedFieldsEntry {
                subresource: Some("status".into()),
                ..entry(
                    "kube-controller-manager",
                    json!({"f:spec": {"f:selector": {}}}),
                )
            },
        ];
        assert!(contenders(&managed, "flagger", &diff).is_empty());
    }

    #[test]
    fn a_list_owner_owns_the_list() {
        let diff = vec![vec!["spec".to_string(), "ports".into()]];
        let managed = vec![entry(
            "argocd-controller",
            json!({"f:spec": {"f:ports": {"k:{\"port\":8080}": {}}}}),
        )];
        assert_eq!(
            contenders(&managed, "flagger", &diff)[0].manager,
            "argocd-controller"
        );
    }

    #[test]
    fn missing_fields_are_differences_and_extra_ones_are_not() {
        let live = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let desired = json!({"metadata": {"labels": {"a": "1", "c": "3"}, "annotations": {}}});
        assert_eq!(
            differences(&live, &desired),
            vec![vec!["metadata".to_string(), "labels".into(), "c".into()]]
        );
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn a_log_is_empty_until_it_sees_something() {
        let mut log = FightLog::default();
        assert!(log.is_empty());
        log.new_write("Service/app", "flux", "2026-12-04T16:00:00Z");
        assert!(!log.is_empty());
        let mut log = FightLog::default();
        log.observe("Service/app", "flux", at(0), FightPolicy::default());
        assert!(!log.is_empty());
    }

    #[test]
    fn yields_after_the_limit_within_the_window() {
        let policy = FightPolicy {
            max_reversions: 2,
            window: Duration::from_secs(600),
        };
        let mut log = FightLog::default();
        assert_eq!(
            log.observe("Service/app", "flux", at(0), policy),
            Verdict::Revert { count: 1 }
        );
        assert_eq!(
            log.observe("Service/app", "flux", at(300), policy),
            Verdict::Revert { count: 2 }
        );
        assert_eq!(
            log.observe("Service/app", "flux", at(590), policy),
            Verdict::Yield { count: 2 }
        );
        assert_eq!(log.yielded_to("Service/app"), Some("flux"));
        log.settle("Service/app");
        assert_eq!(log.yielded_to("Service/app"), None);
        assert_eq!(
            log.observe("Service/app", "flux", at(700), policy),
            Verdict::Revert { count: 1 }
        );
    }

    #[test]
    fn old_reversions_leave_the_window() {
        let policy = FightPolicy {
            max_reversions: 2,
            window: Duration::from_secs(600),
        };
        let mut log = FightLog::default();
        log.observe("Service/app", "flux", at(0), policy);
        log.observe("Service/app", "flux", at(100), policy);
        // Both older than the window: counting starts again.
        assert_eq!(
            log.observe("Service/app", "flux", at(800), policy),
            Verdict::Revert { count: 1 }
        );
        assert_eq!(
            log.active(at(800), policy),
            vec![("Service/app".into(), "flux".into(), 1)]
        );
    }

    #[test]
    fn zero_means_never_stop() {
        let policy = FightPolicy {
            max_reversions: 0,
            window: Duration::from_secs(600),
        };
        let mut log = FightLog::default();
        for i in 0..50 {
            assert!(matches!(
                log.observe("Service/app", "flux", at(i), policy),
                Verdict::Revert { .. }
            ));
        }
    }

    #[test]
    fn foreign_spec_writers_skip_expected_managers_and_status() {
        let managed = vec![
            entry("flagger", json!({"f:spec": {"f:replicas": {}}})),
            entry(
                "kube-controller-manager",
                json!({"f:spec": {"f:replicas": {}}}),
            ),
            ManagedFieldsEntry {
                subresource: Some("status".into()),
                ..entry("kubelet", json!({"f:spec": {"f:x": {}}}))
            },
            entry(
                "kubectl-edit",
                json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {"f:image": {}}}}}}}),
            ),
        ];
        let w = foreign_spec_writers(&managed, "flagger", 5);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].contender.manager, "kubectl-edit");
        assert_eq!(
            w[0].contender.fields,
            vec!["spec.template.spec.containers".to_string()]
        );
    }

    #[test]
    fn writes_are_new_once_per_time_and_notes_age_out() {
        let policy = FightPolicy {
            max_reversions: 3,
            window: Duration::from_secs(600),
        };
        let mut log = FightLog::default();
        assert!(log.new_write("Deployment/app-primary", "argocd", "t1"));
        assert!(!log.new_write("Deployment/app-primary", "argocd", "t1"));
        assert!(log.new_write("Deployment/app-primary", "argocd", "t2"));
        log.noted("Deployment/app-primary", at(0), "changed".into());
        assert_eq!(log.active_notes(at(10), policy).len(), 1);
        assert!(log.active_notes(at(700), policy).is_empty());
    }

    #[test]
    fn the_condition_reason_comes_from_the_verdict_not_the_text() {
        let status = CanaryStatus::default();
        let note = |text: &str, yielded| Note {
            text: text.into(),
            yielded,
        };
        let reverting = with_condition(
            &status,
            &[(
                "Service/app".into(),
                note("stopped reverting, says the text", false),
            )],
            at(0),
        )
        .expect("added");
        let c = &reverting.conditions.as_ref().expect("conditions")[0];
        assert_eq!(
            (c.r#type.as_str(), c.reason.as_str()),
            (CONDITION_FIELD_CONFLICT, "Reverting")
        );
        let yielded = with_condition(
            &reverting,
            &[("Service/app".into(), note("left to flux", true))],
            at(5),
        )
        .expect("updated");
        let c = &yielded.conditions.as_ref().expect("conditions")[0];
        assert_eq!(c.reason, "StoppedReverting");
        assert_eq!(c.last_transition_time.as_ref().map(|t| t.0), Some(at(0)));
        assert_eq!(
            with_condition(
                &yielded,
                &[("Service/app".into(), note("left to flux", true))],
                at(9)
            ),
            None
        );
        let cleared = with_condition(&yielded, &[], at(10)).expect("removed");
        assert!(cleared.conditions.is_none());
    }

    #[test]
    fn only_writes_at_or_after_ours_are_contenders() {
        let diff = vec![vec!["spec".to_string(), "selector".into(), "app".into()]];
        let timed = |manager: &str, time: &str, fields: Value| ManagedFieldsEntry {
            time: Some(Time(time.parse().expect("time"))),
            ..entry(manager, fields)
        };
        let selector = json!({"f:spec": {"f:selector": {"f:app": {}}}});
        let before = vec![
            timed(
                "kubectl-client-side-apply",
                "2024-01-01T00:00:00Z",
                selector.clone(),
            ),
            timed("flagger", "2024-01-01T00:00:05Z", json!({})),
        ];
        assert!(contenders_since_ours(&before, "flagger", &diff).is_empty());
        let after = vec![
            timed(
                "kustomize-controller",
                "2024-01-01T00:00:05Z",
                selector.clone(),
            ),
            timed("flagger", "2024-01-01T00:00:05Z", json!({})),
        ];
        assert_eq!(contenders_since_ours(&after, "flagger", &diff).len(), 1);
        let never_ours = vec![timed("kubectl", "2024-01-01T00:00:00Z", selector)];
        assert!(contenders_since_ours(&never_ours, "flagger", &diff).is_empty());
    }

    #[test]
    fn remedies_name_the_tool() {
        assert!(
            remedy("kustomize-controller", "Service", "app")
                .contains("kustomize.toolkit.fluxcd.io/ssa: IfNotPresent")
        );
        assert!(remedy("argocd-controller", "Service", "app").contains("ignoreDifferences"));
        let other = remedy("kubectl-client-side-apply", "Service", "app");
        assert!(other.contains("Flux") && other.contains("Argo CD"));
    }
}
