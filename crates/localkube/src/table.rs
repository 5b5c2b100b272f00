//! `meta.k8s.io/v1` Table output: default columns per built-in kind, a CRD's
//! additionalPrinterColumns for custom resources.

use serde_json::{Value, json};

use crate::registry::ResourceInfo;
use crate::util::{self, age, jsonpath};

struct Col {
    name: &'static str,
    type_: &'static str,
    priority: i64,
    description: &'static str,
}

const fn col(name: &'static str, type_: &'static str, priority: i64) -> Col {
    Col {
        name,
        type_,
        priority,
        description: "",
    }
}

fn s(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn i(v: &Value, p: &str) -> i64 {
    v.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

fn created(o: &Value) -> String {
    age(util::str_at(o, &["metadata", "creationTimestamp"]).unwrap_or_default())
}

fn or_none(s: String) -> String {
    if s.is_empty() { "<none>".into() } else { s }
}

fn builtin_columns(info: &ResourceInfo) -> Vec<Col> {
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "pods") => vec![
            col("Name", "string", 0),
            col("Ready", "string", 0),
            col("Status", "string", 0),
            col("Restarts", "string", 0),
            col("Age", "string", 0),
            col("IP", "string", 1),
            col("Node", "string", 1),
        ],
        ("apps", "deployments") => vec![
            col("Name", "string", 0),
            col("Ready", "string", 0),
            col("Up-to-date", "string", 0),
            col("Available", "string", 0),
            col("Age", "string", 0),
            col("Containers", "string", 1),
            col("Images", "string", 1),
            col("Selector", "string", 1),
        ],
        ("apps", "replicasets") => vec![
            col("Name", "string", 0),
            col("Desired", "integer", 0),
            col("Current", "integer", 0),
            col("Ready", "integer", 0),
            col("Age", "string", 0),
        ],
        ("apps", "statefulsets") => vec![
            col("Name", "string", 0),
            col("Ready", "string", 0),
            col("Age", "string", 0),
        ],
        ("apps", "daemonsets") => vec![
            col("Name", "string", 0),
            col("Desired", "integer", 0),
            col("Current", "integer", 0),
            col("Ready", "integer", 0),
            col("Up-to-date", "integer", 0),
            col("Available", "integer", 0),
            col("Node Selector", "string", 0),
            col("Age", "string", 0),
        ],
        ("", "services") => vec![
            col("Name", "string", 0),
            col("Type", "string", 0),
            col("Cluster-IP", "string", 0),
            col("External-IP", "string", 0),
            col("Port(s)", "string", 0),
            col("Age", "string", 0),
            col("Selector", "string", 1),
        ],
        ("", "namespaces") => vec![
            col("Name", "string", 0),
            col("Status", "string", 0),
            col("Age", "string", 0),
        ],
        ("", "configmaps") => vec![
            col("Name", "string", 0),
            col("Data", "integer", 0),
            col("Age", "string", 0),
        ],
        ("", "secrets") => vec![
            col("Name", "string", 0),
            col("Type", "string", 0),
            col("Data", "integer", 0),
            col("Age", "string", 0),
        ],
        ("", "endpoints") => vec![
            col("Name", "string", 0),
            col("Endpoints", "string", 0),
            col("Age", "string", 0),
        ],
        ("", "nodes") => vec![
            col("Name", "string", 0),
            col("Status", "string", 0),
            col("Roles", "string", 0),
            col("Age", "string", 0),
            col("Version", "string", 0),
        ],
        ("", "events") | ("events.k8s.io", "events") => vec![
            col("Last Seen", "string", 0),
            col("Type", "string", 0),
            col("Reason", "string", 0),
            col("Object", "string", 0),
            col("Message", "string", 0),
        ],
        ("autoscaling", "horizontalpodautoscalers") => vec![
            col("Name", "string", 0),
            col("Reference", "string", 0),
            col("Targets", "string", 0),
            col("MinPods", "string", 0),
            col("MaxPods", "string", 0),
            col("Replicas", "string", 0),
            col("Age", "string", 0),
        ],
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            vec![col("Name", "string", 0), col("Created At", "date", 0)]
        }
        _ => vec![col("Name", "string", 0), col("Age", "string", 0)],
    }
}

fn cells(info: &ResourceInfo, o: &Value) -> Vec<Value> {
    let name = json!(util::name(o));
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "pods") => {
            let statuses = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = o
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, |c| c.len());
            let ready = statuses
                .iter()
                .filter(|c| c["ready"] == json!(true))
                .count();
            let restarts: i64 = statuses
                .iter()
                .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                .sum();
            let mut status = s(o.pointer("/status/phase"));
            for c in &statuses {
                if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str) {
                    status = r.to_string();
                }
            }
            if o.pointer("/metadata/deletionTimestamp").is_some() {
                status = "Terminating".into();
            }
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(status),
                json!(restarts.to_string()),
                json!(created(o)),
                json!(or_none(s(o.pointer("/status/podIP")))),
                json!(or_none(s(o.pointer("/spec/nodeName")))),
            ]
        }
        ("apps", "deployments") => {
            let containers = o
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    i(o, "/status/readyReplicas"),
                    i(o, "/spec/replicas")
                )),
                json!(i(o, "/status/updatedReplicas").to_string()),
                json!(i(o, "/status/availableReplicas").to_string()),
                json!(created(o)),
                json!(
                    containers
                        .iter()
                        .map(|c| s(c.get("name")))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                json!(
                    containers
                        .iter()
                        .map(|c| s(c.get("image")))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                json!(
                    crate::selectors::LabelSelector::from_object(&o["spec"]["selector"])
                        .to_string_form()
                ),
            ]
        }
        ("apps", "replicasets") => vec![
            name,
            json!(i(o, "/spec/replicas")),
            json!(i(o, "/status/replicas")),
            json!(i(o, "/status/readyReplicas")),
            json!(created(o)),
        ],
        ("apps", "statefulsets") => vec![
            name,
            json!(format!(
                "{}/{}",
                i(o, "/status/readyReplicas"),
                i(o, "/spec/replicas")
            )),
            json!(created(o)),
        ],
        ("apps", "daemonsets") => vec![
            name,
            json!(i(o, "/status/desiredNumberScheduled")),
            json!(i(o, "/status/currentNumberScheduled")),
            json!(i(o, "/status/numberReady")),
            json!(i(o, "/status/updatedNumberScheduled")),
            json!(i(o, "/status/numberAvailable")),
            json!(or_none(
                o.pointer("/spec/template/spec/nodeSelector")
                    .and_then(Value::as_object)
                    .map(|m| m
                        .iter()
                        .map(|(k, v)| format!("{k}={}", s(Some(v))))
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_default()
            )),
            json!(created(o)),
        ],
        ("", "services") => {
            let ports = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let ports: Vec<String> = ports
                .iter()
                .map(|p| {
                    let np = p
                        .get("nodePort")
                        .map(|n| format!(":{n}"))
                        .unwrap_or_default();
                    format!(
                        "{}{np}/{}",
                        s(p.get("port")),
                        p["protocol"].as_str().unwrap_or("TCP")
                    )
                })
                .collect();
            vec![
                name,
                json!(s(o.pointer("/spec/type"))),
                json!(or_none(s(o.pointer("/spec/clusterIP")))),
                json!("<none>"),
                json!(or_none(ports.join(","))),
                json!(created(o)),
                json!(or_none(
                    o.pointer("/spec/selector")
                        .and_then(Value::as_object)
                        .map(|m| m
                            .iter()
                            .map(|(k, v)| format!("{k}={}", s(Some(v))))
                            .collect::<Vec<_>>()
                            .join(","))
                        .unwrap_or_default()
                )),
            ]
        }
        ("", "namespaces") => vec![
            name,
            json!(s(o.pointer("/status/phase"))),
            json!(created(o)),
        ],
        ("", "configmaps") => {
            let n = o
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())
                + o.get("binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len());
            vec![name, json!(n), json!(created(o))]
        }
        ("", "secrets") => vec![
            name,
            json!(o["type"].as_str().unwrap_or("Opaque")),
            json!(
                o.get("data")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len())
            ),
            json!(created(o)),
        ],
        ("", "endpoints") => {
            let mut eps = Vec::new();
            for ss in o["subsets"].as_array().cloned().unwrap_or_default() {
                for a in ss["addresses"].as_array().cloned().unwrap_or_default() {
                    for p in ss["ports"].as_array().cloned().unwrap_or_default() {
                        eps.push(format!("{}:{}", s(a.get("ip")), s(p.get("port"))));
                    }
                }
            }
            vec![name, json!(or_none(eps.join(","))), json!(created(o))]
        }
        ("", "nodes") => {
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .is_some_and(|c| c["status"] == "True");
            vec![
                name,
                json!(if ready { "Ready" } else { "NotReady" }),
                json!("<none>"),
                json!(created(o)),
                json!(s(o.pointer("/status/nodeInfo/kubeletVersion"))),
            ]
        }
        ("", "events") | ("events.k8s.io", "events") => {
            let last = o["lastTimestamp"]
                .as_str()
                .or(o["eventTime"].as_str())
                .or(o
                    .pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str))
                .unwrap_or_default();
            let reg = o
                .get("involvedObject")
                .or(o.get("regarding"))
                .cloned()
                .unwrap_or_default();
            vec![
                json!(age(last)),
                json!(s(o.get("type"))),
                json!(s(o.get("reason"))),
                json!(format!(
                    "{}/{}",
                    s(reg.get("kind")).to_lowercase(),
                    s(reg.get("name"))
                )),
                json!(s(o.get("message")).or_else_note(o)),
            ]
        }
        ("autoscaling", "horizontalpodautoscalers") => vec![
            name,
            json!(format!(
                "{}/{}",
                s(o.pointer("/spec/scaleTargetRef/kind")),
                s(o.pointer("/spec/scaleTargetRef/name"))
            )),
            json!(hpa_targets(o)),
            json!(s(o.pointer("/spec/minReplicas"))),
            json!(s(o.pointer("/spec/maxReplicas"))),
            json!(i(o, "/status/currentReplicas").to_string()),
            json!(created(o)),
        ],
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            vec![name, json!(s(o.pointer("/metadata/creationTimestamp")))]
        }
        _ => vec![name, json!(created(o))],
    }
}

/// The TARGETS column of an HPA, as kubectl prints it: `cpu: 12%/50%`, `40/5 (avg)`, ...
fn hpa_targets(o: &Value) -> String {
    let specs = o
        .pointer("/spec/metrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let statuses = o
        .pointer("/status/currentMetrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let q = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let mut list: Vec<String> = Vec::new();
    for (i, m) in specs.iter().enumerate() {
        let t = m["type"].as_str().unwrap_or_default();
        let field = match t {
            "Resource" => "resource",
            "ContainerResource" => "containerResource",
            "Pods" => "pods",
            "Object" => "object",
            "External" => "external",
            _ => {
                list.push("<unknown type>".into());
                continue;
            }
        };
        let target = &m[field]["target"];
        let current = &statuses
            .get(i)
            .map(|st| st[field]["current"].clone())
            .unwrap_or_default();
        let unknown = || "<unknown>".to_string();
        let entry = match (field, q(&target["averageValue"])) {
            ("resource" | "containerResource", Some(avg)) => format!(
                "{}: {}/{avg}",
                m[field]["name"].as_str().unwrap_or_default(),
                q(&current["averageValue"]).unwrap_or_else(unknown)
            ),
            ("resource" | "containerResource", None) => format!(
                "{}: {}/{}",
                m[field]["name"].as_str().unwrap_or_default(),
                q(&current["averageUtilization"])
                    .map(|u| format!("{u}%"))
                    .unwrap_or_else(unknown),
                q(&target["averageUtilization"])
                    .map(|u| format!("{u}%"))
                    .unwrap_or_else(|| "<auto>".into())
            ),
            ("pods", avg) => format!(
                "{}/{}",
                q(&current["averageValue"]).unwrap_or_else(unknown),
                avg.unwrap_or_default()
            ),
            (_, Some(avg)) => format!(
                "{}/{avg} (avg)",
                q(&current["averageValue"]).unwrap_or_else(unknown)
            ),
            (_, None) => format!(
                "{}/{}",
                q(&current["value"]).unwrap_or_else(unknown),
                q(&target["value"]).unwrap_or_default()
            ),
        };
        list.push(entry);
    }
    match list.len() {
        0 => "<none>".into(),
        n if n > 2 => format!("{} + {} more...", list[..2].join(", "), n - 2),
        _ => list.join(", "),
    }
}

trait OrElseNote {
    fn or_else_note(self, o: &Value) -> String;
}

impl OrElseNote for String {
    fn or_else_note(self, o: &Value) -> String {
        if self.is_empty() {
            s(o.get("note"))
        } else {
            self
        }
    }
}

/// The column definitions and row cells for a resource.
fn layout(info: &ResourceInfo) -> (Vec<Value>, Option<Vec<crate::registry::PrinterColumn>>) {
    if let Some(crd) = &info.crd
        && !crd.printer_columns.is_empty()
    {
        let mut defs = vec![
            json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
        ];
        for c in &crd.printer_columns {
            defs.push(json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}));
        }
        return (defs, Some(crd.printer_columns.clone()));
    }
    let defs = builtin_columns(info)
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.type_, "format": if c.name == "Name" { "name" } else { "" }, "description": c.description, "priority": c.priority})
        })
        .collect();
    (defs, None)
}

fn printer_cell(c: &crate::registry::PrinterColumn, o: &Value) -> Value {
    let v = jsonpath(o, &c.json_path).cloned().unwrap_or(Value::Null);
    match (c.type_.as_str(), &v) {
        ("date", Value::String(ts)) => json!(age(ts)),
        (_, Value::Null) => json!("<none>"),
        (_, Value::Array(_)) | (_, Value::Object(_)) => json!(v.to_string()),
        _ => v,
    }
}

/// How much of each object a row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

fn row(
    info: &ResourceInfo,
    o: &Value,
    cols: &Option<Vec<crate::registry::PrinterColumn>>,
    include: Include,
) -> Value {
    let cells = match cols {
        Some(cols) => {
            let mut c = vec![json!(util::name(o))];
            c.extend(cols.iter().map(|pc| printer_cell(pc, o)));
            c
        }
        None => cells(info, o),
    };
    let object = match include {
        Include::None => Value::Null,
        Include::Object => o.clone(),
        Include::Metadata => {
            let mut md = o["metadata"].clone();
            if let Some(m) = md.as_object_mut() {
                m.remove("managedFields");
            }
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": md})
        }
    };
    json!({"cells": cells, "object": object})
}

/// A Table of the given objects.
pub fn table(info: &ResourceInfo, objects: &[Value], list_meta: Value, include: Include) -> Value {
    let (defs, cols) = layout(info);
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| row(info, o, &cols, include))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}
