//! The Deployment controller: one ReplicaSet per pod template, rolled by the strategy's budget
//! (`maxSurge`/`maxUnavailable`, or `Recreate`), old ReplicaSets kept up to
//! `revisionHistoryLimit`, and the status and conditions (`Available`, `Progressing` with its
//! deadline) a cluster shows.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::objects::{
    NsName, condition, controller_uid, deleting, drop_zeros, i64_at, is, keys_of, log_err, opts,
    owner_keys, owner_ref, res, set_condition, uid,
};
use super::objects::{record_event, short_hash};
use super::queue;
use crate::api::{Api, DeleteOptions};
use crate::registry::ResourceInfo;
use crate::store::StoreEvent;
use crate::util;

const MANAGER: &str = "deployment-controller";

/// Deployments, keyed by (namespace, name); ReplicaSet events queue their owning Deployment.
pub(super) struct Deployments {
    tick: Duration,
}

impl Deployments {
    pub(super) fn new(tick: Duration) -> Self {
        Self { tick }
    }
}

impl queue::Reconciler for Deployments {
    type Key = NsName;

    fn resync(&mut self, api: &Api) -> Vec<NsName> {
        keys_of(api, "apps/v1", "Deployment")
    }

    fn keys(&mut self, _: &Api, ev: &StoreEvent, out: &mut Vec<NsName>) {
        if is(&ev.key, "apps", "deployments") {
            out.push((ev.namespace.clone(), ev.name.clone()));
        } else if is(&ev.key, "apps", "replicasets") {
            owner_keys(ev, "Deployment", out);
        }
    }

    fn reconcile(&mut self, api: &Api, (ns, name): &NsName) -> Option<Duration> {
        let (dinfo, rsinfo) = (
            res(api, "apps/v1", "Deployment")?,
            res(api, "apps/v1", "ReplicaSet")?,
        );
        let d = api.store.get(&dinfo.storage_key(), ns, name)?;
        if deleting(&d) {
            return None;
        }
        let owned = api.store.owned(&rsinfo.storage_key(), uid(&d));
        reconcile_deployment(api, &dinfo, &rsinfo, &d, &owned).then_some(self.tick)
    }
}

/// An int-or-percent of `total` (`round_up` for surge, down for unavailability).
fn resolve(v: Option<&Value>, total: i64, round_up: bool, default_pct: i64) -> i64 {
    let pct = |p: i64| {
        if round_up {
            (total * p + 99) / 100
        } else {
            total * p / 100
        }
    };
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) if s.ends_with('%') => {
            pct(s.trim_end_matches('%').parse().unwrap_or(default_pct))
        }
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => pct(default_pct),
    }
}

/// The `deployment.kubernetes.io/revision` of a ReplicaSet.
fn revision(rs: &Value) -> i64 {
    rs.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// What the Deployment asks for: replicas and the rollout budget.
struct Plan {
    desired: i64,
    max_surge: i64,
    max_unavailable: i64,
    recreate: bool,
    paused: bool,
}

impl Plan {
    fn of(d: &Value) -> Plan {
        let desired = d
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let paused = d.pointer("/spec/paused") == Some(&json!(true));
        let recreate = d.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate");
        let (max_surge, mut max_unavailable) = if recreate {
            (0, desired)
        } else {
            let ru = |k: &str| d.pointer(&format!("/spec/strategy/rollingUpdate/{k}"));
            (
                resolve(ru("maxSurge"), desired, true, 25),
                resolve(ru("maxUnavailable"), desired, false, 25),
            )
        };
        if max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        Plan {
            desired,
            max_surge,
            max_unavailable,
            recreate,
            paused,
        }
    }
}

/// The Deployment's own live ReplicaSets, oldest revision first.
fn owned_replicasets(d: &Value, all_rs: &[Arc<Value>]) -> Vec<Value> {
    let ns = util::namespace(d);
    let mut owned: Vec<Value> = all_rs
        .iter()
        .filter(|rs| {
            util::namespace(rs) == ns && controller_uid(rs) == Some(uid(d)) && !deleting(rs)
        })
        .map(|rs| Value::clone(rs))
        .collect();
    owned.sort_by_key(revision);
    owned
}

/// One pass over a Deployment, collecting the events it causes.
struct Sync<'a> {
    api: &'a Api,
    dinfo: &'a ResourceInfo,
    rsinfo: &'a ResourceInfo,
    d: &'a Value,
    plan: Plan,
    events: Vec<String>,
}

/// What the status pass found.
struct Outcome {
    complete: bool,
    want_tick: bool,
    /// The revision of the new ReplicaSet (0 when there is none).
    revision: i64,
}

/// Reconciles one Deployment; true while it should be looked at again on the next tick.
fn reconcile_deployment(
    api: &Api,
    dinfo: &ResourceInfo,
    rsinfo: &ResourceInfo,
    d: &Value,
    all_rs: &[Arc<Value>],
) -> bool {
    let mut s = Sync {
        api,
        dinfo,
        rsinfo,
        d,
        plan: Plan::of(d),
        events: Vec::new(),
    };
    let mut owned = owned_replicasets(d, all_rs);
    let (new_rs, created_new) = s.new_replicaset(&mut owned);
    let new_name = new_rs
        .as_ref()
        .map(|r| util::name(r).to_string())
        .unwrap_or_default();
    let olds: Vec<Value> = owned
        .iter()
        .filter(|r| util::name(r) != new_name)
        .cloned()
        .collect();
    if !s.plan.paused
        && let Some(nrs) = &new_rs
    {
        if s.plan.recreate {
            s.recreate(nrs, &olds);
        } else {
            s.roll(nrs, &olds);
        }
    }
    s.record_events();
    s.clean_history(&olds);
    let Some(out) = s.write_status(&owned, &new_name, created_new) else {
        return false;
    };
    s.sync_revision(out.revision);
    out.want_tick || !out.complete
}

impl Sync<'_> {
    fn ns(&self) -> &str {
        util::namespace(self.d)
    }

    fn name(&self) -> &str {
        util::name(self.d)
    }

    /// The ReplicaSet of the current template, created (or its revision bumped after a
    /// rollback) when needed; true when it was created now.
    fn new_replicaset(&mut self, owned: &mut Vec<Value>) -> (Option<Value>, bool) {
        let template = self
            .d
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let hash = short_hash(&template);
        let max_rev = owned.iter().map(revision).max().unwrap_or(0);
        let existing = owned
            .iter()
            .find(|rs| {
                rs.pointer("/metadata/labels/pod-template-hash")
                    .and_then(Value::as_str)
                    == Some(hash.as_str())
            })
            .cloned();
        match existing {
            None if !self.plan.paused => self.create_replicaset(owned, template, &hash, max_rev),
            None => (None, false),
            Some(rs) if revision(&rs) < max_rev => {
                // Rollback to an older template: bump its revision.
                let mut r = rs.clone();
                r["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                    json!((max_rev + 1).to_string());
                match self.api.update(
                    self.rsinfo,
                    self.ns(),
                    util::name(&rs),
                    r,
                    "",
                    &opts(MANAGER),
                ) {
                    Ok(o) => (Some(o.object), false),
                    Err(_) => (Some(rs), false),
                }
            }
            Some(rs) => (Some(rs), false),
        }
    }

    fn create_replicaset(
        &mut self,
        owned: &mut Vec<Value>,
        template: Value,
        hash: &str,
        max_rev: i64,
    ) -> (Option<Value>, bool) {
        let (ns, name) = (self.ns(), self.name());
        let Plan {
            desired,
            max_surge,
            recreate,
            ..
        } = self.plan;
        let mut labels = template
            .pointer("/metadata/labels")
            .cloned()
            .unwrap_or_else(|| json!({}));
        labels["pod-template-hash"] = json!(hash);
        let mut tpl = template;
        util::obj_at(&mut tpl, &["metadata", "labels"])
            .insert("pod-template-hash".into(), json!(hash));
        let mut selector = self
            .d
            .pointer("/spec/selector")
            .cloned()
            .unwrap_or_else(|| json!({}));
        util::obj_at(&mut selector, &["matchLabels"])
            .insert("pod-template-hash".into(), json!(hash));
        let old_total: i64 = owned.iter().map(|r| i64_at(r, "/spec/replicas")).sum();
        let initial = if recreate {
            0
        } else {
            (desired + max_surge - old_total).clamp(0, desired)
        };
        let rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": format!("{name}-{hash}"), "namespace": ns, "labels": labels,
                "annotations": {
                    "deployment.kubernetes.io/revision": (max_rev + 1).to_string(),
                    "deployment.kubernetes.io/desired-replicas": desired.to_string(),
                    "deployment.kubernetes.io/max-replicas": (desired + max_surge).to_string(),
                },
                "ownerReferences": [owner_ref(self.d)],
            },
            "spec": {"replicas": initial, "minReadySeconds": self.d.pointer("/spec/minReadySeconds").cloned().unwrap_or(json!(0)), "selector": selector, "template": tpl},
        });
        match self.api.create(self.rsinfo, ns, rs, &opts(MANAGER)) {
            Ok(o) => {
                if initial > 0 {
                    self.events.push(format!(
                        "Scaled up replica set {} from 0 to {initial}",
                        util::name(&o.object)
                    ));
                }
                owned.push(o.object.clone());
                (Some(o.object), true)
            }
            Err(e) if e.code == 409 => {
                // A same-named RS exists (e.g. adopted after a rollback): take it over.
                let existing = self
                    .api
                    .get(self.rsinfo, ns, &format!("{name}-{hash}"))
                    .ok();
                (existing, false)
            }
            Err(e) => {
                log_err("create replicaset", Err::<(), _>(e));
                (None, false)
            }
        }
    }

    /// Sets a ReplicaSet's replicas, with the event the deployment controller records.
    fn scale(&mut self, rs: &Value, n: i64) {
        let cur = i64_at(rs, "/spec/replicas");
        if cur == n {
            return;
        }
        let mut r = rs.clone();
        r["spec"]["replicas"] = json!(n);
        r["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
            json!(self.plan.desired.to_string());
        let written = self.api.update(
            self.rsinfo,
            util::namespace(rs),
            util::name(rs),
            r,
            "",
            &opts(MANAGER),
        );
        if written.is_ok() {
            let verb = if n > cur { "up" } else { "down" };
            self.events.push(format!(
                "Scaled {verb} replica set {} from {cur} to {n}",
                util::name(rs)
            ));
        }
    }

    /// `Recreate`: every old pod goes before the new ReplicaSet scales up.
    fn recreate(&mut self, nrs: &Value, olds: &[Value]) {
        let old_spec: i64 = olds.iter().map(|r| i64_at(r, "/spec/replicas")).sum();
        let old_pods: i64 = olds.iter().map(|r| i64_at(r, "/status/replicas")).sum();
        for o in olds {
            self.scale(o, 0);
        }
        if old_pods == 0 && old_spec == 0 {
            self.scale(nrs, self.plan.desired);
        }
    }

    /// `RollingUpdate`: the new ReplicaSet grows within the surge budget, the old ones shrink
    /// within the unavailability budget (unhealthy old pods can always go).
    fn roll(&mut self, nrs: &Value, olds: &[Value]) {
        let Plan {
            desired,
            max_surge,
            max_unavailable,
            ..
        } = self.plan;
        let new_spec = i64_at(nrs, "/spec/replicas");
        let old_spec: i64 = olds.iter().map(|r| i64_at(r, "/spec/replicas")).sum();
        let allowed = desired + max_surge - (new_spec + old_spec);
        let target = if new_spec > desired {
            desired
        } else if allowed > 0 {
            (new_spec + allowed).min(desired)
        } else {
            new_spec
        };
        self.scale(nrs, target);
        let min_available = desired - max_unavailable;
        let new_unavailable = (target - i64_at(nrs, "/status/availableReplicas")).max(0);
        let mut budget = (old_spec + target - min_available - new_unavailable).max(0);
        for o in olds {
            let spec = i64_at(o, "/spec/replicas");
            let unhealthy = (spec - i64_at(o, "/status/availableReplicas")).max(0);
            let cut = (unhealthy + budget.min(spec - unhealthy)).min(spec);
            if cut > 0 {
                budget -= (cut - unhealthy).max(0);
                self.scale(o, spec - cut);
            }
        }
    }

    fn record_events(&mut self) {
        for e in std::mem::take(&mut self.events) {
            record_event(self.api, self.d, "Normal", "ScalingReplicaSet", &e, MANAGER);
        }
    }

    /// Old ReplicaSets beyond `revisionHistoryLimit` with no replicas are removed.
    fn clean_history(&self, olds: &[Value]) {
        let limit = self
            .d
            .pointer("/spec/revisionHistoryLimit")
            .and_then(Value::as_i64)
            .unwrap_or(10);
        let idle: Vec<&Value> = olds
            .iter()
            .filter(|r| i64_at(r, "/spec/replicas") == 0 && i64_at(r, "/status/replicas") == 0)
            .collect();
        if idle.len() as i64 > limit {
            for r in idle.iter().take(idle.len() - limit as usize) {
                log_err(
                    "delete old rs",
                    self.api.delete(
                        self.rsinfo,
                        self.ns(),
                        util::name(r),
                        &DeleteOptions::default(),
                    ),
                );
            }
        }
    }

    /// Writes the status from the ReplicaSets as they are now; `None` when the Deployment is
    /// gone.
    fn write_status(&self, owned: &[Value], new_name: &str, created_new: bool) -> Option<Outcome> {
        let (ns, name) = (self.ns(), self.name());
        let fresh: Vec<Value> = owned
            .iter()
            .filter_map(|r| {
                self.api
                    .store
                    .get(&self.rsinfo.storage_key(), ns, util::name(r))
            })
            .collect();
        let new_fresh = fresh.iter().find(|r| util::name(r) == new_name);
        let cur = self.api.store.get(&self.dinfo.storage_key(), ns, name)?;
        let prev = cur.get("status").cloned().unwrap_or_else(|| json!({}));
        let mut status = prev.clone();
        let counts = Counts::of(&fresh, new_fresh);
        counts.apply(&mut status, &cur, self.plan.desired);
        self.available_condition(&mut status, counts.available);
        let complete = counts.updated == self.plan.desired
            && counts.new_available == self.plan.desired
            && counts.replicas == self.plan.desired
            && !new_name.is_empty();
        let want_tick =
            self.progressing_condition(&mut status, &prev, new_name, complete, created_new);
        if status != prev {
            let mut newd = cur.clone();
            newd["status"] = status;
            log_err(
                "deployment status",
                self.api
                    .update(self.dinfo, ns, name, newd, "status", &opts(MANAGER)),
            );
        }
        Some(Outcome {
            complete,
            want_tick,
            revision: new_fresh.map(revision).unwrap_or(0),
        })
    }

    fn available_condition(&self, status: &mut Value, available: i64) {
        if available >= self.plan.desired - self.plan.max_unavailable {
            set_condition(
                status,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                false,
            );
        } else {
            set_condition(
                status,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                false,
            );
        }
    }

    /// Sets `Progressing` (paused, complete, new ReplicaSet, progressing, or past its deadline);
    /// true while the deadline should be rechecked.
    fn progressing_condition(
        &self,
        status: &mut Value,
        prev: &Value,
        new_name: &str,
        complete: bool,
        created_new: bool,
    ) -> bool {
        let progress_changed = [
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
        ]
        .iter()
        .any(|k| prev.get(*k) != status.get(*k));
        if self.plan.paused {
            set_condition(
                status,
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                false,
            );
            return false;
        }
        if complete {
            set_condition(
                status,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                progress_changed,
            );
            return false;
        }
        if created_new {
            set_condition(
                status,
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                &format!("Created new replica set \"{new_name}\""),
                true,
            );
            return true;
        }
        let deadline = self
            .d
            .pointer("/spec/progressDeadlineSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(600);
        let pc = condition(status, "Progressing").cloned();
        let already_failed = pc
            .as_ref()
            .is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded");
        let since = pc
            .as_ref()
            .and_then(|c| c["lastUpdateTime"].as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_milliseconds())
            .unwrap_or(0);
        let was_complete = pc
            .as_ref()
            .is_some_and(|c| c["reason"] == "NewReplicaSetAvailable");
        if progress_changed || pc.is_none() || (was_complete && !already_failed) {
            set_condition(
                status,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{new_name}\" is progressing."),
                true,
            );
            true
        } else if !already_failed && since > deadline * 1000 {
            set_condition(
                status,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                &format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                false,
            );
            false
        } else {
            !already_failed
        }
    }

    /// Copies the new ReplicaSet's revision to the Deployment's annotation.
    fn sync_revision(&self, rev: i64) {
        let (ns, name) = (self.ns(), self.name());
        if rev <= 0 {
            return;
        }
        let Some(mut nd) = self.api.store.get(&self.dinfo.storage_key(), ns, name) else {
            return;
        };
        if nd
            .pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
            .and_then(Value::as_str)
            == Some(rev.to_string().as_str())
        {
            return;
        }
        util::obj_at(&mut nd, &["metadata", "annotations"]).insert(
            "deployment.kubernetes.io/revision".into(),
            json!(rev.to_string()),
        );
        log_err(
            "deployment revision",
            self.api
                .update(self.dinfo, ns, name, nd, "", &opts(MANAGER)),
        );
    }
}

/// Replica counts summed over a Deployment's ReplicaSets.
struct Counts {
    replicas: i64,
    ready: i64,
    available: i64,
    spec_total: i64,
    updated: i64,
    new_available: i64,
}

impl Counts {
    fn of(fresh: &[Value], new_rs: Option<&Value>) -> Counts {
        let sum = |p: &str| -> i64 { fresh.iter().map(|r| i64_at(r, p)).sum() };
        Counts {
            replicas: sum("/status/replicas"),
            ready: sum("/status/readyReplicas"),
            available: sum("/status/availableReplicas"),
            spec_total: sum("/spec/replicas"),
            updated: new_rs.map(|r| i64_at(r, "/status/replicas")).unwrap_or(0),
            new_available: new_rs
                .map(|r| i64_at(r, "/status/availableReplicas"))
                .unwrap_or(0),
        }
    }

    fn apply(&self, status: &mut Value, d: &Value, desired: i64) {
        status["observedGeneration"] = d["metadata"]["generation"].clone();
        status["replicas"] = json!(self.replicas);
        status["updatedReplicas"] = json!(self.updated);
        status["readyReplicas"] = json!(self.ready);
        status["availableReplicas"] = json!(self.available);
        status["unavailableReplicas"] =
            json!((self.spec_total.max(desired) - self.available).max(0));
        drop_zeros(
            status,
            &[
                "readyReplicas",
                "availableReplicas",
                "unavailableReplicas",
                "updatedReplicas",
                "replicas",
            ],
        );
    }
}
