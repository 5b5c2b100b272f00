//! Cluster DNS as the proxy sees it: a request's host and port become a Service port, a pod,
//! or an address outside the cluster.
//!
//! Names resolve as from a pod in the default namespace: `svc`, `svc.ns`, `svc.ns.svc` and
//! `svc.ns.svc.cluster.local`. A ClusterIP resolves to its Service and a pod IP to its pod.
//! Anything else (`localhost`, `127.0.0.1`, `example.com`) is outside the cluster and is
//! forwarded as an ordinary proxy would, so a whole process can run with `HTTP_PROXY` set.

use serde_json::Value;

use super::router::ServicePort;
use crate::Api;
use crate::util;

/// What a host names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A Service port (the Service may turn out not to have that port).
    Service(ServicePort),
    /// A Service named with the cluster suffix that does not exist.
    NoSuchService { namespace: String, service: String },
    /// A pod, addressed by its IP.
    Pod {
        namespace: String,
        name: String,
        port: u16,
    },
    /// An `ExternalName` Service: forward to this host.
    External { host: String, port: u16 },
    /// Not a cluster name: forward to `host:port` as given.
    Outside { host: String, port: u16 },
}

fn service(api: &Api, ns: &str, name: &str) -> Option<Value> {
    let info = api.resource("v1", "Service").ok()?;
    api.store.get(&info.storage_key(), ns, name)
}

fn namespace_exists(api: &Api, ns: &str) -> bool {
    api.resource("v1", "Namespace")
        .ok()
        .and_then(|info| api.store.get(&info.storage_key(), "", ns))
        .is_some()
}

fn service_port(svc: &Value, port: u16) -> Resolved {
    let namespace = util::namespace(svc).to_string();
    let name = util::name(svc).to_string();
    if svc.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName")
        && let Some(host) = svc.pointer("/spec/externalName").and_then(Value::as_str)
    {
        return Resolved::External {
            host: host.to_string(),
            port,
        };
    }
    Resolved::Service(ServicePort {
        namespace,
        service: name,
        port,
    })
}

fn by_ip(api: &Api, ip: &str, port: u16) -> Option<Resolved> {
    let svc = api.resource("v1", "Service").ok()?;
    let (services, _) = api.store.list_shared(&svc.storage_key(), None);
    if let Some(s) = services
        .iter()
        .find(|s| s.pointer("/spec/clusterIP").and_then(Value::as_str) == Some(ip))
    {
        return Some(service_port(s, port));
    }
    let pod = api.resource("v1", "Pod").ok()?;
    let (pods, _) = api.store.list_shared(&pod.storage_key(), None);
    pods.iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .find(|p| p.pointer("/status/podIP").and_then(Value::as_str) == Some(ip))
        .map(|p| Resolved::Pod {
            namespace: util::namespace(p).to_string(),
            name: util::name(p).to_string(),
            port,
        })
}

/// Resolves `host` (no port) and `port` as cluster DNS would, `default_ns` being the
/// namespace of single-label names.
pub fn resolve(api: &Api, host: &str, port: u16, default_ns: &str) -> Resolved {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let outside = || Resolved::Outside {
        host: host.clone(),
        port,
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return by_ip(api, &host, port).unwrap_or_else(outside);
    }
    if host == "localhost" {
        return outside();
    }
    let (base, qualified) = match host
        .strip_suffix(".svc.cluster.local")
        .or_else(|| host.strip_suffix(".svc"))
    {
        Some(b) => (b, true),
        None => (host.as_str(), false),
    };
    let parts: Vec<&str> = base.split('.').collect();
    let (name, ns) = match parts.as_slice() {
        [name] => (*name, default_ns),
        [name, ns] => (*name, *ns),
        _ => return outside(),
    };
    match service(api, ns, name) {
        Some(s) => service_port(&s, port),
        None if qualified || (parts.len() == 2 && namespace_exists(api, ns)) => {
            Resolved::NoSuchService {
                namespace: ns.to_string(),
                service: name.to_string(),
            }
        }
        None => outside(),
    }
}
