//! A small Knative Serving controller (`serving.knative.dev/v1`), active once Knative's CRDs
//! are installed: for each Knative Service, a Configuration and a Route of its name, a
//! Revision per change of `spec.template` (`<service>-00001`, `-00002`, ... or the template's
//! own `metadata.name`), each revision backed by a Deployment `<revision>-deployment` (one
//! replica, the template's pod) and a Service `<revision>`, and the traffic split of
//! `spec.traffic` (default: all to the latest revision) resolved into the Route's and the
//! Service's `status.traffic`. A revision is ready when its Deployment has a ready replica;
//! `latestRevision: true` resolves to the latest ready revision, as in Knative. The data
//! plane routes the Route's address, a Service `<name>` with port 80, by that split
//! ([`crate::dataplane::mesh::knative`]).
//!
//! Not played: scale to zero and the autoscaler (every revision keeps one replica), the
//! activator and queue-proxy (the revision Service targets the user container), tags and
//! domain mapping. Knative's placeholder Service is an `ExternalName` to the ingress; here it
//! is a selector-less Service whose traffic the data plane routes as Kourier would.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::objects::short_hash;
use super::objects::{NsName, deleting, is, list, log_err, opts, owner_ref, res, set_condition};
use super::queue;
use crate::api::Api;
use crate::registry::ResourceInfo;
use crate::store::StoreEvent;
use crate::util;

const API_VERSION: &str = "serving.knative.dev/v1";
const MANAGER: &str = "knative-serving-controller";
const SERVICE_LABEL: &str = "serving.knative.dev/service";
const CONFIGURATION_LABEL: &str = "serving.knative.dev/configuration";
const GENERATION_LABEL: &str = "serving.knative.dev/configurationGeneration";
const REVISION_LABEL: &str = "serving.knative.dev/revision";
const ROUTE_LABEL: &str = "serving.knative.dev/route";
/// The hash of the template a revision was made from.
const TEMPLATE_HASH: &str = "localkube.dev/template-hash";

/// Knative Services, keyed by (namespace, name); their revisions' and Deployments' events
/// queue them by label.
pub(super) struct KnativeServices;

fn service_of(o: &Value) -> Option<&str> {
    o.pointer("/metadata/labels")?.get(SERVICE_LABEL)?.as_str()
}

impl queue::Reconciler for KnativeServices {
    type Key = NsName;

    fn resync(&mut self, api: &Api) -> Vec<NsName> {
        res(api, API_VERSION, "Service")
            .map(|i| api.store.keys(&i.storage_key()))
            .unwrap_or_default()
    }

    fn keys(&mut self, _: &Api, ev: &StoreEvent, out: &mut Vec<NsName>) {
        if is(&ev.key, "serving.knative.dev", "services") {
            out.push((ev.namespace.clone(), ev.name.clone()));
        } else if is(&ev.key, "serving.knative.dev", "revisions")
            || is(&ev.key, "apps", "deployments")
        {
            for o in std::iter::once(&ev.object).chain(ev.old.as_ref()) {
                if let Some(s) = service_of(o) {
                    out.push((ev.namespace.clone(), s.to_string()));
                }
            }
        }
    }

    fn reconcile(&mut self, api: &Api, (ns, name): &NsName) -> Option<Duration> {
        let kinds = Kinds {
            service: res(api, API_VERSION, "Service")?,
            configuration: res(api, API_VERSION, "Configuration")?,
            revision: res(api, API_VERSION, "Revision")?,
            route: res(api, API_VERSION, "Route")?,
            deployment: res(api, "apps/v1", "Deployment")?,
            core_service: res(api, "v1", "Service")?,
        };
        let svc = api.store.get(&kinds.service.storage_key(), ns, name)?;
        if deleting(&svc) {
            return None;
        }
        reconcile_service(api, &kinds, ns, name, &svc);
        None
    }
}

struct Kinds {
    service: std::sync::Arc<ResourceInfo>,
    configuration: std::sync::Arc<ResourceInfo>,
    revision: std::sync::Arc<ResourceInfo>,
    route: std::sync::Arc<ResourceInfo>,
    deployment: std::sync::Arc<ResourceInfo>,
    core_service: std::sync::Arc<ResourceInfo>,
}

/// Creates `desired` or updates the stored object's labels, annotations, owner references and
/// spec when they differ; returns the object as stored.
fn upsert(api: &Api, info: &ResourceInfo, ns: &str, desired: Value) -> Option<Value> {
    let name = util::name(&desired).to_string();
    let mut desired = desired;
    if let Some(m) = desired["metadata"].as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
    match api.store.get(&info.storage_key(), ns, &name) {
        None => {
            log_err(
                "knative create",
                api.create(info, ns, desired, &opts(MANAGER)),
            );
        }
        Some(current) => {
            // The API server adds defaults (a Deployment's strategy, a container's pull
            // policy, ...) and other controllers their labels and annotations (the
            // Deployment's revision): what is stored only has to cover what is desired.
            let meta = |o: &Value, k: &str| o["metadata"][k].clone();
            let same = ["labels", "annotations"]
                .iter()
                .all(|k| covers(&meta(&current, k), &meta(&desired, k)))
                && meta(&current, "ownerReferences") == meta(&desired, "ownerReferences")
                && covers(&current["spec"], &desired["spec"]);
            if !same {
                let mut next = current.clone();
                for k in ["labels", "annotations"] {
                    if let Some(Value::Object(want)) = desired["metadata"].get(k) {
                        let have = util::obj_at(&mut next, &["metadata", k]);
                        for (key, v) in want {
                            have.insert(key.clone(), v.clone());
                        }
                    }
                }
                next["metadata"]["ownerReferences"] = meta(&desired, "ownerReferences");
                next["spec"] = desired["spec"].clone();
                log_err(
                    "knative update",
                    api.update(info, ns, &name, next, "", &opts(MANAGER)),
                );
            }
        }
    }
    api.store.get(&info.storage_key(), ns, &name)
}

/// Whether `have` holds every field of `want` with the same value (objects may have more
/// fields; arrays match element by element).
fn covers(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, v)| v.is_null() || h.get(k).is_some_and(|hv| covers(hv, v))),
        (Value::Array(h), Value::Array(w)) => {
            h.len() == w.len() && h.iter().zip(w).all(|(a, b)| covers(a, b))
        }
        _ => have == want,
    }
}

/// The conditions `(type, ready, reason, message)` on top of the stored object's: a condition
/// whose status did not change keeps its transition time, so an unchanged status is not
/// written again.
fn conditions(stored: &Value, list: &[(&str, bool, &str, &str)]) -> Value {
    let mut status = json!({
        "conditions": stored.pointer("/status/conditions").cloned().unwrap_or(json!([])),
    });
    for (t, ok, reason, message) in list {
        set_condition(
            &mut status,
            t,
            if *ok { "True" } else { "Unknown" },
            reason,
            message,
            false,
        );
    }
    status["conditions"].take()
}

/// Writes `status` unless it is already the stored one's.
fn write_status(api: &Api, info: &ResourceInfo, ns: &str, o: &Value, status: Value) {
    if o["status"] == status {
        return;
    }
    let mut next = o.clone();
    next["status"] = status;
    log_err(
        "knative status",
        api.update(info, ns, util::name(o), next, "status", &opts(MANAGER)),
    );
}

fn generation_of(r: &Value) -> i64 {
    r.pointer("/metadata/labels")
        .and_then(|l| l.get(GENERATION_LABEL))
        .and_then(Value::as_str)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

/// The Service's `kind` of its name (Configuration, Route) with this spec.
fn owned_by_service(svc: &Value, kind: &str, spec: Value) -> Value {
    let name = util::name(svc);
    json!({
        "apiVersion": API_VERSION, "kind": kind,
        "metadata": {
            "name": name, "namespace": svc["metadata"]["namespace"],
            "labels": {SERVICE_LABEL: name},
            "ownerReferences": [owner_ref(svc)],
        },
        "spec": spec,
    })
}

fn reconcile_service(api: &Api, k: &Kinds, ns: &str, name: &str, svc: &Value) {
    let template = svc.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let template_hash = short_hash(&template);

    // The Configuration owns the revisions.
    let configuration = upsert(
        api,
        &k.configuration,
        ns,
        owned_by_service(svc, "Configuration", json!({"template": template})),
    );
    let Some(configuration) = configuration else {
        return;
    };

    // A revision per template change.
    let mut revisions: Vec<Arc<Value>> = list(api, &k.revision, Some(ns))
        .into_iter()
        .filter(|r| service_of(r) == Some(name) && !deleting(r))
        .collect();
    revisions.sort_by_key(|r| generation_of(r));
    let latest_hash = revisions
        .last()
        .and_then(|r| r.pointer("/metadata/annotations"))
        .and_then(|a| a.get(TEMPLATE_HASH))
        .and_then(Value::as_str);
    if latest_hash != Some(template_hash.as_str()) {
        let generation = revisions.last().map_or(0, |r| generation_of(r)) + 1;
        let revision_name = template
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| format!("{name}-{generation:05}"));
        let mut labels = template
            .pointer("/metadata/labels")
            .cloned()
            .unwrap_or(json!({}));
        labels[SERVICE_LABEL] = json!(name);
        labels[CONFIGURATION_LABEL] = json!(name);
        labels[GENERATION_LABEL] = json!(generation.to_string());
        let mut annotations = template
            .pointer("/metadata/annotations")
            .cloned()
            .unwrap_or(json!({}));
        annotations[TEMPLATE_HASH] = json!(template_hash);
        let revision = json!({
            "apiVersion": API_VERSION, "kind": "Revision",
            "metadata": {
                "name": revision_name, "namespace": ns,
                "labels": labels, "annotations": annotations,
                "ownerReferences": [owner_ref(&configuration)],
            },
            "spec": template.get("spec").cloned().unwrap_or(json!({})),
        });
        if let Some(r) = upsert(api, &k.revision, ns, revision) {
            revisions.push(Arc::new(r));
        }
    }

    // Each revision runs on a Deployment behind a Service; it is ready with a ready replica.
    let mut ready_names = Vec::new();
    for r in &revisions {
        if revision_ready(api, k, ns, name, r) {
            ready_names.push(util::name(r).to_string());
        }
    }
    let latest_created = revisions.last().map(|r| util::name(r).to_string());
    let latest_ready = revisions
        .iter()
        .rev()
        .map(|r| util::name(r).to_string())
        .find(|n| ready_names.contains(n));

    let mut config_status = json!({
        "observedGeneration": configuration["metadata"]["generation"],
        "latestCreatedRevisionName": latest_created,
        "latestReadyRevisionName": latest_ready,
    });
    let config_ready = latest_created.is_some() && latest_created == latest_ready;
    config_status["conditions"] = conditions(
        &configuration,
        &[(
            "Ready",
            config_ready,
            if config_ready { "" } else { "RevisionMissing" },
            "",
        )],
    );
    write_status(api, &k.configuration, ns, &configuration, config_status);

    // The Route: the traffic split resolved to ready revisions.
    let traffic = svc
        .pointer("/spec/traffic")
        .cloned()
        .filter(|t| t.as_array().is_some_and(|a| !a.is_empty()))
        .unwrap_or_else(|| json!([{"latestRevision": true, "percent": 100}]));
    let route = upsert(
        api,
        &k.route,
        ns,
        owned_by_service(svc, "Route", json!({"traffic": traffic})),
    );
    let Some(route) = route else {
        return;
    };
    let resolved = resolve_traffic(&traffic, latest_ready.as_deref(), &ready_names);
    let url = format!("http://{name}.{ns}.svc.cluster.local");
    let (route_traffic, routes_ready, message) = match &resolved {
        Ok(t) => (t.clone(), true, String::new()),
        Err(why) => (
            route
                .pointer("/status/traffic")
                .cloned()
                .unwrap_or(json!([])),
            false,
            why.clone(),
        ),
    };
    let mut route_status = json!({
        "observedGeneration": route["metadata"]["generation"],
        "url": url,
        "address": {"url": url},
        "traffic": route_traffic,
    });
    route_status["conditions"] = conditions(
        &route,
        &[(
            "Ready",
            routes_ready,
            if routes_ready { "" } else { "RevisionMissing" },
            &message,
        )],
    );
    write_status(api, &k.route, ns, &route, route_status);

    // The Route's address.
    upsert(
        api,
        &k.core_service,
        ns,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": name, "namespace": ns,
                "labels": {ROUTE_LABEL: name, SERVICE_LABEL: name},
                "annotations": Value::Null,
                "ownerReferences": [owner_ref(&route)],
            },
            "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}]},
        }),
    );

    // The Service's status gathers both.
    let mut status = json!({
        "observedGeneration": svc["metadata"]["generation"],
        "latestCreatedRevisionName": latest_created,
        "latestReadyRevisionName": latest_ready,
        "url": url,
        "address": {"url": url},
        "traffic": route_traffic,
    });
    let ready = config_ready && routes_ready;
    let list: Vec<(&str, bool, &str, &str)> = [
        ("ConfigurationsReady", config_ready),
        ("RoutesReady", routes_ready),
        ("Ready", ready),
    ]
    .into_iter()
    .map(|(t, ok)| {
        if ok {
            (t, ok, "", "")
        } else {
            (t, ok, "RevisionMissing", message.as_str())
        }
    })
    .collect();
    status["conditions"] = conditions(svc, &list);
    write_status(api, &k.service, ns, svc, status);
}

/// `spec.traffic` with each target named: `latestRevision: true` is the latest ready
/// revision; a named revision must be ready. Why not, otherwise.
fn resolve_traffic(
    traffic: &Value,
    latest_ready: Option<&str>,
    ready: &[String],
) -> Result<Value, String> {
    let mut out = Vec::new();
    for t in traffic.as_array().into_iter().flatten() {
        let latest = t["latestRevision"].as_bool() == Some(true);
        let name = if latest {
            latest_ready
                .ok_or("Configuration has no ready revision")?
                .to_string()
        } else {
            let n = t["revisionName"].as_str().unwrap_or_default();
            if !ready.iter().any(|r| r == n) {
                return Err(format!("Revision {n:?} referenced in traffic is not ready"));
            }
            n.to_string()
        };
        let mut entry = Map::new();
        if let Some(tag) = t.get("tag") {
            entry.insert("tag".into(), tag.clone());
        }
        entry.insert("revisionName".into(), json!(name));
        entry.insert("latestRevision".into(), json!(latest));
        entry.insert("percent".into(), t["percent"].clone());
        out.push(Value::Object(entry));
    }
    Ok(Value::Array(out))
}

/// Makes sure the revision's Deployment and Service exist and writes its status; whether it
/// is ready.
fn revision_ready(api: &Api, k: &Kinds, ns: &str, service: &str, r: &Value) -> bool {
    let name = util::name(r);
    let spec = r.get("spec").cloned().unwrap_or(json!({}));
    let mut pod_spec = json!({});
    for key in [
        "containers",
        "volumes",
        "serviceAccountName",
        "imagePullSecrets",
    ] {
        if let Some(v) = spec.get(key) {
            pod_spec[key] = v.clone();
        }
    }
    // Knative's defaulting names an unnamed container `user-container` (a second one
    // `user-container-<n>`).
    if let Some(cs) = pod_spec.get_mut("containers").and_then(Value::as_array_mut) {
        for (i, c) in cs.iter_mut().enumerate() {
            if c.get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                c["name"] = json!(if i == 0 {
                    "user-container".to_string()
                } else {
                    format!("user-container-{i}")
                });
            }
        }
    }
    let container_port = spec
        .pointer("/containers/0/ports/0/containerPort")
        .and_then(Value::as_i64)
        .unwrap_or(8080);
    let mut labels = r.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
    labels[REVISION_LABEL] = json!(name);
    labels["app"] = json!(name);
    let mut annotations = r
        .pointer("/metadata/annotations")
        .cloned()
        .unwrap_or(json!({}));
    if let Some(a) = annotations.as_object_mut() {
        a.remove(TEMPLATE_HASH);
    }
    let deployment = upsert(
        api,
        &k.deployment,
        ns,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": format!("{name}-deployment"), "namespace": ns,
                "labels": {REVISION_LABEL: name, SERVICE_LABEL: service, "app": name},
                "annotations": Value::Null,
                "ownerReferences": [owner_ref(r)],
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {REVISION_LABEL: name}},
                "template": {
                    "metadata": {"labels": labels, "annotations": annotations},
                    "spec": pod_spec,
                },
            },
        }),
    );
    upsert(
        api,
        &k.core_service,
        ns,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": name, "namespace": ns,
                "labels": {REVISION_LABEL: name, SERVICE_LABEL: service},
                "annotations": Value::Null,
                "ownerReferences": [owner_ref(r)],
            },
            "spec": {
                "selector": {REVISION_LABEL: name},
                "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": container_port}],
            },
        }),
    );
    let ready_replicas = deployment
        .as_ref()
        .and_then(|d| d.pointer("/status/readyReplicas"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let ready = ready_replicas > 0;
    let mut status = json!({
        "observedGeneration": r["metadata"]["generation"],
        "actualReplicas": ready_replicas,
        "desiredReplicas": 1,
    });
    let reason = if ready { "" } else { "Deploying" };
    let list: Vec<(&str, bool, &str, &str)> =
        ["ResourcesAvailable", "ContainerHealthy", "Active", "Ready"]
            .into_iter()
            .map(|t| (t, ready, reason, ""))
            .collect();
    status["conditions"] = conditions(r, &list);
    write_status(api, &k.revision, ns, r, status);
    ready
}
