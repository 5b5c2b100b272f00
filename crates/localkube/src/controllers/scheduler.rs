//! The scheduler: binds a pod without `spec.nodeName` to a node matching its `nodeSelector`
//! (round robin), or marks it unschedulable with the scheduler's message.

use std::sync::Arc;

use serde_json::{Value, json};

use super::objects::record_event;
use super::objects::{log_err, node_matches, opts};
use crate::api::Api;
use crate::registry::ResourceInfo;
use crate::util;

const MANAGER: &str = "default-scheduler";

/// Round-robin scheduling state.
#[derive(Debug, Default)]
pub(super) struct Scheduler {
    rr: usize,
}

impl Scheduler {
    /// The pod's node: the one it is bound to, or the one it is bound to now; `None` when no
    /// node fits (the pod's status says why).
    pub(super) fn node_of(
        &mut self,
        api: &Api,
        pinfo: &ResourceInfo,
        nodes: &[Arc<Value>],
        p: &Value,
    ) -> Option<String> {
        let bound = p
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !bound.is_empty() {
            return Some(bound.to_string());
        }
        let (ns, name) = (util::namespace(p), util::name(p));
        let spec = p.get("spec").cloned().unwrap_or_default();
        let fits: Vec<&Value> = nodes
            .iter()
            .filter(|n| node_matches(n, &spec))
            .map(Arc::as_ref)
            .collect();
        if fits.is_empty() {
            unschedulable(api, pinfo, nodes.len(), p);
            return None;
        }
        self.rr += 1;
        let node = util::name(fits[self.rr % fits.len()]).to_string();
        let mut np = p.clone();
        np["spec"]["nodeName"] = json!(node);
        if api.update(pinfo, ns, name, np, "", &opts(MANAGER)).is_ok() {
            record_event(
                api,
                p,
                "Normal",
                "Scheduled",
                &format!("Successfully assigned {ns}/{name} to {node}"),
                MANAGER,
            );
        }
        Some(node)
    }
}

fn unschedulable(api: &Api, pinfo: &ResourceInfo, nodes: usize, p: &Value) {
    let msg = format!(
        "0/{nodes} nodes are available: {nodes} node(s) didn't match Pod's node affinity/selector."
    );
    let st = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg, "lastTransitionTime": util::now()}]});
    if p.get("status").and_then(|s| s.get("conditions")) != st.get("conditions") {
        let mut np = p.clone();
        np["status"] = st;
        log_err(
            "pod unschedulable",
            api.update(
                pinfo,
                util::namespace(p),
                util::name(p),
                np,
                "status",
                &opts(MANAGER),
            ),
        );
    }
}
