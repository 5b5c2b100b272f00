//! Endpoint selection behind a Service port, as kube-proxy does it: the Service's port maps to
//! a port of its Endpoints, and one ready address answers (round robin, so tests can count).
//!
//! An address with a `targetRef` to a Pod is a simulated pod. An address without one (a
//! selector-less Service with hand-written Endpoints, say `127.0.0.1`) is a real process, and
//! so is a Service annotated with [`UPSTREAM`].

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use super::router::ServicePort;
use crate::Api;

/// Service annotation: `HOST:PORT` of a real local process that serves this Service.
pub const UPSTREAM: &str = "localkube.dev/upstream";

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A simulated pod.
    Pod {
        namespace: String,
        name: String,
        port: u16,
    },
    /// A real process at `host:port`.
    Upstream { host: String, port: u16 },
}

/// Why a Service port has no endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoEndpoint {
    #[error("service \"{0}/{1}\" not found")]
    NoService(String, String),
    #[error("service \"{0}/{1}\" has no port {2}")]
    NoPort(String, String, u16),
    #[error("no endpoints available for service \"{0}/{1}\"")]
    NoReadyEndpoints(String, String),
    #[error("invalid {annotation} annotation on service \"{0}/{1}\": {2:?}", annotation = UPSTREAM)]
    BadUpstream(String, String, String),
}

/// Round-robin positions per Service port.
#[derive(Debug, Default)]
pub struct Picker {
    next: Mutex<HashMap<ServicePort, usize>>,
}

fn get(api: &Api, kind: &str, ns: &str, name: &str) -> Option<Value> {
    let info = api.resource("v1", kind).ok()?;
    api.store.get(&info.storage_key(), ns, name)
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (h, p) = s.trim().rsplit_once(':')?;
    let port = p.parse().ok()?;
    let host = h.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_string(), port))
}

impl Picker {
    /// The endpoint that answers the next request to `sp`.
    pub fn pick(&self, api: &Api, sp: &ServicePort) -> Result<Endpoint, NoEndpoint> {
        let (ns, name) = (sp.namespace.clone(), sp.service.clone());
        let svc = get(api, "Service", &ns, &name)
            .ok_or_else(|| NoEndpoint::NoService(ns.clone(), name.clone()))?;
        if let Some(up) = svc
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(UPSTREAM))
            .and_then(Value::as_str)
        {
            let (host, port) = split_host_port(up)
                .ok_or_else(|| NoEndpoint::BadUpstream(ns.clone(), name.clone(), up.into()))?;
            return Ok(Endpoint::Upstream { host, port });
        }
        let ports = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let sport = ports
            .iter()
            .find(|p| p["port"].as_u64() == Some(u64::from(sp.port)))
            .ok_or_else(|| NoEndpoint::NoPort(ns.clone(), name.clone(), sp.port))?;
        let port_name = sport["name"].as_str().unwrap_or_default();
        let eps = get(api, "Endpoints", &ns, &name);
        let mut candidates = Vec::new();
        for subset in eps
            .as_ref()
            .and_then(|e| e["subsets"].as_array())
            .into_iter()
            .flatten()
        {
            let eport = subset["ports"].as_array().and_then(|ps| {
                ps.iter()
                    .find(|p| p["name"].as_str().unwrap_or_default() == port_name)
                    .or_else(|| (ps.len() == 1).then(|| &ps[0]))
            });
            let Some(eport) = eport.and_then(|p| p["port"].as_u64()) else {
                continue;
            };
            let Ok(eport) = u16::try_from(eport) else {
                continue;
            };
            for a in subset["addresses"].as_array().into_iter().flatten() {
                let target = &a["targetRef"];
                candidates.push(if target["kind"] == "Pod" {
                    Endpoint::Pod {
                        namespace: target["namespace"].as_str().unwrap_or(&ns).to_string(),
                        name: target["name"].as_str().unwrap_or_default().to_string(),
                        port: eport,
                    }
                } else {
                    Endpoint::Upstream {
                        host: a["ip"].as_str().unwrap_or_default().to_string(),
                        port: eport,
                    }
                });
            }
        }
        if candidates.is_empty() {
            return Err(NoEndpoint::NoReadyEndpoints(ns, name));
        }
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let i = next.entry(sp.clone()).or_default();
        let chosen = candidates[*i % candidates.len()].clone();
        *i = i.wrapping_add(1);
        Ok(chosen)
    }
}
