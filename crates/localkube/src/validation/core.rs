//! core/v1: Pods and pod templates (containers, ports, probes, resources, volumes), Services,
//! ConfigMaps, Secrets, Namespaces (`pkg/apis/core/validation`).

use std::collections::HashSet;

use serde_json::Value;

use super::content::{self, Quantity, go_quote};
use super::field::{Bad, Errors, FieldError};
use super::meta::{self, nonnegative};

/// The largest ConfigMap or Secret payload (`MaxSecretSize`, 1 MiB).
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `ValidateDNS1123Label` at `path`.
fn dns_label(v: &str, path: &str, errs: &mut Errors) {
    for m in content::dns1123_label(v) {
        errs.push(FieldError::invalid(path, Bad::str(v), m));
    }
}

/// `ValidatePortNumOrName` at `path`.
pub fn port_num_or_name(v: &Value, path: &str, errs: &mut Errors) {
    match v {
        Value::String(name) => {
            for m in content::port_name(name) {
                errs.push(FieldError::invalid(path, Bad::str(name.as_str()), m));
            }
        }
        Value::Number(n) => {
            let n = n.as_i64().unwrap_or(0);
            for m in content::port_num(n) {
                errs.push(FieldError::invalid(path, Bad::int(n), m));
            }
        }
        // An unset IntOrString is the integer 0.
        Value::Null => {
            for m in content::port_num(0) {
                errs.push(FieldError::invalid(path, Bad::int(0), m));
            }
        }
        _ => {}
    }
}

/// A Pod.
pub fn pod(obj: &Value, errs: &mut Errors) {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    pod_spec(&spec, "spec", errs);
}

/// `ValidatePodTemplateSpec` at `path` (`spec.template`).
pub fn pod_template(t: &Value, path: &str, errs: &mut Errors) {
    let md = t.get("metadata").cloned().unwrap_or(Value::Null);
    // The template's metadata fields sit directly under the template in the error paths.
    meta::labels(md.get("labels"), &format!("{path}.labels"), errs);
    meta::annotations(md.get("annotations"), &format!("{path}.annotations"), errs);
    let spec = t.get("spec").cloned().unwrap_or(Value::Null);
    pod_spec(&spec, &format!("{path}.spec"), errs);
}

/// `ValidatePodSpec` at `path`, in its order: volumes, containers, init containers, restart
/// and DNS policies, node selector, DNS config, active deadline.
pub fn pod_spec(spec: &Value, path: &str, errs: &mut Errors) {
    let mut volumes = HashSet::new();
    for (i, v) in arr(spec, "volumes").iter().enumerate() {
        let p = format!("{path}.volumes[{i}].name");
        let name = s(v, "name");
        if name.is_empty() {
            errs.push(FieldError::required(p, ""));
        } else {
            dns_label(name, &p, errs);
            if !volumes.insert(name.to_string()) {
                errs.push(FieldError::duplicate(p, Bad::str(name)));
            }
        }
    }
    // `validateContainers`: names unique among the regular containers, then the init
    // containers checked against all of them (`validateInitContainers`).
    let containers = arr(spec, "containers");
    let mut names = HashSet::new();
    if containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    for (i, c) in containers.iter().enumerate() {
        container(
            c,
            &format!("{path}.containers[{i}]"),
            &mut names,
            &volumes,
            Kind::Regular,
            errs,
        );
    }
    for (i, c) in arr(spec, "initContainers").iter().enumerate() {
        container(
            c,
            &format!("{path}.initContainers[{i}]"),
            &mut names,
            &volumes,
            Kind::Init,
            errs,
        );
    }
    let rp = s(spec, "restartPolicy");
    if !matches!(rp, "Always" | "OnFailure" | "Never") {
        if rp.is_empty() {
            errs.push(FieldError::required(format!("{path}.restartPolicy"), ""));
        } else {
            errs.push(FieldError::not_supported(
                format!("{path}.restartPolicy"),
                Bad::str(rp),
                &["Always", "OnFailure", "Never"],
            ));
        }
    }
    let dp = s(spec, "dnsPolicy");
    if !matches!(
        dp,
        "ClusterFirst" | "ClusterFirstWithHostNet" | "Default" | "None"
    ) {
        if dp.is_empty() {
            errs.push(FieldError::required(format!("{path}.dnsPolicy"), ""));
        } else {
            errs.push(FieldError::not_supported(
                format!("{path}.dnsPolicy"),
                Bad::str(dp),
                &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
            ));
        }
    }
    meta::labels(
        spec.get("nodeSelector"),
        &format!("{path}.nodeSelector"),
        errs,
    );
    if dp == "None" {
        match spec.get("dnsConfig").filter(|c| !c.is_null()) {
            None => errs.push(FieldError::required(
                format!("{path}.dnsConfig"),
                "must provide `dnsConfig` when `dnsPolicy` is None",
            )),
            Some(c) if arr(c, "nameservers").is_empty() => errs.push(FieldError::required(
                format!("{path}.dnsConfig.nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            )),
            Some(_) => {}
        }
    }
    if let Some(n) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64)
        && !(1..=i64::from(i32::MAX)).contains(&n)
    {
        errs.push(FieldError::invalid(
            format!("{path}.activeDeadlineSeconds"),
            Bad::int(n),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
}

/// Which list a container is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Regular,
    Init,
}

/// `validateContainerCommon`, then what `validateContainers` / `validateInitContainers` add:
/// the duplicate name, the probes (init containers may not have them unless they are
/// restartable sidecars).
fn container(
    c: &Value,
    path: &str,
    names: &mut HashSet<String>,
    volumes: &HashSet<String>,
    kind: Kind,
    errs: &mut Errors,
) {
    let name = s(c, "name");
    let np = format!("{path}.name");
    if name.is_empty() {
        errs.push(FieldError::required(&np, ""));
    } else {
        dns_label(name, &np, errs);
    }
    if s(c, "image").is_empty() {
        errs.push(FieldError::required(format!("{path}.image"), ""));
    }
    let tmp = s(c, "terminationMessagePolicy");
    if !tmp.is_empty() && !matches!(tmp, "File" | "FallbackToLogsOnError") {
        errs.push(FieldError::not_supported(
            format!("{path}.terminationMessagePolicy"),
            Bad::str(tmp),
            &["File", "FallbackToLogsOnError"],
        ));
    }
    container_ports(arr(c, "ports"), &format!("{path}.ports"), errs);
    for (i, e) in arr(c, "env").iter().enumerate() {
        let p = format!("{path}.env[{i}].name");
        let n = s(e, "name");
        if n.is_empty() {
            errs.push(FieldError::required(p, ""));
        } else {
            for m in content::relaxed_env_var_name(n) {
                errs.push(FieldError::invalid(&p, Bad::str(n), m));
            }
        }
    }
    for (i, m) in arr(c, "volumeMounts").iter().enumerate() {
        let p = format!("{path}.volumeMounts[{i}]");
        let name = s(m, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        }
        if !volumes.contains(name) {
            errs.push(FieldError::not_found(format!("{p}.name"), Bad::str(name)));
        }
        if s(m, "mountPath").is_empty() {
            errs.push(FieldError::required(format!("{p}.mountPath"), ""));
        }
    }
    let pull = s(c, "imagePullPolicy");
    if !matches!(pull, "Always" | "IfNotPresent" | "Never") {
        if pull.is_empty() {
            errs.push(FieldError::required(format!("{path}.imagePullPolicy"), ""));
        } else {
            errs.push(FieldError::not_supported(
                format!("{path}.imagePullPolicy"),
                Bad::str(pull),
                &["Always", "IfNotPresent", "Never"],
            ));
        }
    }
    resources(c.get("resources"), &format!("{path}.resources"), errs);
    if !names.insert(name.to_string()) {
        errs.push(FieldError::duplicate(&np, Bad::str(name)));
    }
    let sidecar = s(c, "restartPolicy") == "Always";
    for probe_name in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(p) = c.get(probe_name).filter(|p| !p.is_null()) else {
            continue;
        };
        let pp = format!("{path}.{probe_name}");
        if kind == Kind::Init && !sidecar {
            errs.push(FieldError::forbidden(
                pp,
                "may not be set for init containers without restartPolicy=Always",
            ));
            continue;
        }
        probe(p, &pp, errs);
        match probe_name {
            "readinessProbe" => {
                if let Some(n) = p
                    .get("terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
                {
                    errs.push(FieldError::invalid(
                        format!("{pp}.terminationGracePeriodSeconds"),
                        Bad::int(n),
                        "must not be set for readinessProbes",
                    ));
                }
            }
            _ => {
                let st = p
                    .get("successThreshold")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if st != 1 {
                    errs.push(FieldError::invalid(
                        format!("{pp}.successThreshold"),
                        Bad::int(st),
                        "must be 1",
                    ));
                }
            }
        }
    }
    if kind == Kind::Regular && c.get("restartPolicy").is_some_and(|v| !v.is_null()) {
        errs.push(FieldError::forbidden(
            format!("{path}.restartPolicy"),
            "may not be set for non-init containers",
        ));
    }
}

/// `validateContainerPorts`: names unique within the container, numbers in range.
fn container_ports(ports: &[Value], path: &str, errs: &mut Errors) {
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let ip = format!("{path}[{i}]");
        let name = s(p, "name");
        if !name.is_empty() {
            let msgs = content::port_name(name);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(FieldError::invalid(format!("{ip}.name"), Bad::str(name), m));
                }
            } else if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(format!("{ip}.name"), Bad::str(name)));
            }
        }
        match p.get("containerPort").and_then(Value::as_i64).unwrap_or(0) {
            0 => errs.push(FieldError::required(format!("{ip}.containerPort"), "")),
            n => {
                for m in content::port_num(n) {
                    errs.push(FieldError::invalid(
                        format!("{ip}.containerPort"),
                        Bad::int(n),
                        m,
                    ));
                }
            }
        }
        if let Some(n) = p.get("hostPort").and_then(Value::as_i64)
            && n != 0
        {
            for m in content::port_num(n) {
                errs.push(FieldError::invalid(
                    format!("{ip}.hostPort"),
                    Bad::int(n),
                    m,
                ));
            }
        }
        protocol(p, &ip, errs);
    }
}

fn protocol(p: &Value, path: &str, errs: &mut Errors) {
    let proto = s(p, "protocol");
    if proto.is_empty() {
        errs.push(FieldError::required(format!("{path}.protocol"), ""));
    } else if !PROTOCOLS.contains(&proto) {
        errs.push(FieldError::not_supported(
            format!("{path}.protocol"),
            Bad::str(proto),
            PROTOCOLS,
        ));
    }
}

/// `validateProbe`: exactly one handler (`validateHandler` checks the first one set, in the
/// order exec, httpGet, tcpSocket, grpc, and forbids the others), non-negative numbers.
fn probe(p: &Value, path: &str, errs: &mut Errors) {
    let mut handlers = 0;
    for h in ["exec", "httpGet", "tcpSocket", "grpc"] {
        let Some(v) = p.get(h).filter(|x| !x.is_null()) else {
            continue;
        };
        let hp = format!("{path}.{h}");
        if handlers > 0 {
            errs.push(FieldError::forbidden(
                hp,
                "may not specify more than 1 handler type",
            ));
            continue;
        }
        handlers += 1;
        match h {
            "exec" => {
                if arr(v, "command").is_empty() {
                    errs.push(FieldError::required(format!("{hp}.command"), ""));
                }
            }
            "httpGet" => {
                if s(v, "path").is_empty() {
                    errs.push(FieldError::required(format!("{hp}.path"), ""));
                }
                port_num_or_name(
                    v.get("port").unwrap_or(&Value::Null),
                    &format!("{hp}.port"),
                    errs,
                );
                let scheme = s(v, "scheme");
                if !matches!(scheme, "HTTP" | "HTTPS") {
                    errs.push(FieldError::not_supported(
                        format!("{hp}.scheme"),
                        Bad::str(scheme),
                        &["HTTP", "HTTPS"],
                    ));
                }
            }
            _ => port_num_or_name(
                v.get("port").unwrap_or(&Value::Null),
                &format!("{hp}.port"),
                errs,
            ),
        }
    }
    if handlers == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
    for f in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        nonnegative(p.get(f), &format!("{path}.{f}"), errs);
    }
    if let Some(n) = p
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        && n <= 0
    {
        errs.push(FieldError::invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            Bad::int(n),
            "must be greater than 0",
        ));
    }
}

/// `ValidateResourceRequirements`: known resource names, quantities that parse and are not
/// negative, requests not above limits.
fn resources(r: Option<&Value>, path: &str, errs: &mut Errors) {
    let Some(r) = r else { return };
    let mut limits = Vec::new();
    for part in ["limits", "requests"] {
        let Some(m) = r.get(part).and_then(Value::as_object) else {
            continue;
        };
        for (name, v) in m {
            let p = format!("{path}.{part}[{name}]");
            if !name.contains('/')
                && !matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage")
                && !name.starts_with("hugepages-")
            {
                errs.push(FieldError::invalid(
                    &p,
                    Bad::str(name.as_str()),
                    "must be a standard resource for containers",
                ));
            }
            let Some(q) = Quantity::parse(v) else {
                errs.decode(format!(
                    "quantities must match the regular expression '{}'",
                    content::QUANTITY_FMT
                ));
                continue;
            };
            if q.is_negative() {
                errs.push(FieldError::invalid(
                    &p,
                    Bad::str(q.canonical()),
                    "must be greater than or equal to 0",
                ));
            }
            if part == "limits" {
                limits.push((name.clone(), q));
            } else if let Some((_, l)) = limits.iter().find(|(n, _)| n == name)
                && q.nanos > l.nanos
            {
                errs.push(FieldError::invalid(
                    format!("{path}.requests"),
                    Bad::str(q.canonical()),
                    format!(
                        "must be less than or equal to {name} limit of {}",
                        l.canonical()
                    ),
                ));
            }
        }
    }
}

/// Go's `%#v` of the `core.ServicePort` key used for duplicate port/protocol pairs.
fn go_service_port_key(proto: &str, port: i64) -> String {
    format!(
        "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
        go_quote(proto)
    )
}

/// The checks kube-apiserver's Service allocators make before validation runs (the
/// registry's `BeginCreate`/`BeginUpdate`): `ValidateServiceClusterIPsRelatedFields` on the
/// cluster IP, then the node-port allocator's range (`--service-node-port-range`, default
/// 30000-32767). Their 422 carries only these causes, as validation never ran.
pub fn service_allocation(obj: &Value) -> Vec<FieldError> {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let ty = s(&spec, "type");
    if ty == "ExternalName" {
        return Vec::new();
    }
    let ips: Vec<String> = match spec.get("clusterIPs").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => match s(&spec, "clusterIP") {
            "" => Vec::new(),
            ip => vec![ip.to_string()],
        },
    };
    let mut out = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        if (i == 0 && ip == "None") || ip.parse::<std::net::IpAddr>().is_ok() {
            continue;
        }
        out.push(FieldError::invalid(
            format!("spec.clusterIPs[{i}]"),
            Bad::str(ip.as_str()),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    if !out.is_empty() || !matches!(ty, "NodePort" | "LoadBalancer") {
        return out;
    }
    for (i, p) in arr(&spec, "ports").iter().enumerate() {
        if let Some(n) = p.get("nodePort").and_then(Value::as_i64)
            && n != 0
            && !(30000..=32767).contains(&n)
        {
            return vec![FieldError::invalid(
                format!("spec.ports[{i}].nodePort"),
                Bad::int(n),
                "provided port is not in the valid range. The range of valid ports is 30000-32767",
            )];
        }
    }
    out
}

/// `ValidateService` (and `ValidateServiceUpdate` with `old`), in its order.
pub fn service(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(old) = old {
        cluster_ip_update(old, obj, errs);
    }
    let ty = s(&spec, "type");
    let headless = s(&spec, "clusterIP") == "None";
    let ports = arr(&spec, "ports");
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    match ty {
        "LoadBalancer" | "NodePort" if headless => errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            Bad::str("None"),
            format!("may not be set to 'None' for {ty} services"),
        )),
        "ExternalName" => {
            let cname = s(&spec, "externalName");
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                errs.push(FieldError::required("spec.externalName", ""));
            } else {
                for m in content::dns1123_subdomain(cname) {
                    errs.push(FieldError::invalid("spec.externalName", Bad::str(cname), m));
                }
            }
        }
        _ => {}
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        let name = s(p, "name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(format!("{pp}.name"), ""));
        } else if !name.is_empty() {
            dns_label(name, &format!("{pp}.name"), errs);
            if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(format!("{pp}.name"), Bad::str(name)));
            }
        }
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        for m in content::port_num(port) {
            errs.push(FieldError::invalid(format!("{pp}.port"), Bad::int(port), m));
        }
        protocol(p, &pp, errs);
        port_num_or_name(
            p.get("targetPort").unwrap_or(&Value::Null),
            &format!("{pp}.targetPort"),
            errs,
        );
    }
    meta::labels(spec.get("selector"), "spec.selector", errs);
    let sa = s(&spec, "sessionAffinity");
    if !matches!(sa, "ClientIP" | "None") {
        if sa.is_empty() {
            errs.push(FieldError::required("spec.sessionAffinity", ""));
        } else {
            errs.push(FieldError::not_supported(
                "spec.sessionAffinity",
                Bad::str(sa),
                &["ClientIP", "None"],
            ));
        }
    }
    errs.extend(
        service_allocation(obj)
            .into_iter()
            .filter(|e| e.field.starts_with("spec.clusterIPs")),
    );
    match ty {
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName" => {}
        "" => errs.push(FieldError::required("spec.type", "")),
        other => errs.push(FieldError::not_supported(
            "spec.type",
            Bad::str(other),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    if ty == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if p.get("nodePort")
                .and_then(Value::as_i64)
                .is_some_and(|n| n != 0)
            {
                errs.push(FieldError::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let Some(np) = p
            .get("nodePort")
            .and_then(Value::as_i64)
            .filter(|n| *n != 0)
        else {
            continue;
        };
        if !node_ports.insert((s(p, "protocol").to_string(), np)) {
            errs.push(FieldError::duplicate(
                format!("spec.ports[{i}].nodePort"),
                Bad::int(np),
            ));
        }
    }
    let mut seen = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let key = (
            s(p, "protocol").to_string(),
            p.get("port").and_then(Value::as_i64).unwrap_or(0),
        );
        if !seen.insert(key.clone()) {
            errs.push(FieldError::duplicate(
                format!("spec.ports[{i}]"),
                Bad::Go(go_service_port_key(&key.0, key.1)),
            ));
        }
    }
    // `validateServiceExternalTrafficPolicy`: only for Services reachable from outside.
    let external =
        matches!(ty, "NodePort" | "LoadBalancer") || !arr(&spec, "externalIPs").is_empty();
    let etp = s(&spec, "externalTrafficPolicy");
    if !external {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                Bad::str(etp),
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required("spec.externalTrafficPolicy", ""));
    } else if !matches!(etp, "Cluster" | "Local") {
        errs.push(FieldError::not_supported(
            "spec.externalTrafficPolicy",
            Bad::str(etp),
            &["Cluster", "Local"],
        ));
    }
    // `validateServiceInternalTrafficFieldsValue`.
    match spec.get("internalTrafficPolicy").and_then(Value::as_str) {
        None if matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer") => {
            errs.push(FieldError::required("spec.internalTrafficPolicy", ""));
        }
        Some(v) if !matches!(v, "Cluster" | "Local") => errs.push(FieldError::not_supported(
            "spec.internalTrafficPolicy",
            Bad::str(v),
            &["Cluster", "Local"],
        )),
        _ => {}
    }
}

/// The primary ClusterIP may not change, except to or from an ExternalName Service.
fn cluster_ip_update(old: &Value, new: &Value, errs: &mut Errors) {
    let external =
        |v: &Value| v.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName");
    if external(old) || external(new) {
        return;
    }
    let first = |v: &Value| {
        v.pointer("/spec/clusterIPs/0")
            .or_else(|| v.pointer("/spec/clusterIP"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (o, n) = (first(old), first(new));
    if !o.is_empty() && o != n {
        let shown = new.pointer("/spec/clusterIPs").map_or_else(
            || content::go_string_slice(None),
            |v| content::go_string_slice(Some(v)),
        );
        errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            Bad::Go(shown),
            "may not change once set",
        ));
    }
}

fn data_keys(obj: &Value, field: &str, other: &str, other_field: &str, errs: &mut Errors) -> usize {
    let mut total = 0;
    let Some(m) = obj.get(field).and_then(Value::as_object) else {
        return 0;
    };
    for (k, v) in m {
        let p = format!("{field}[{k}]");
        for msg in content::config_map_key(k) {
            errs.push(FieldError::invalid(&p, Bad::str(k.as_str()), msg));
        }
        if obj.get(other).and_then(|o| o.get(k)).is_some() {
            errs.push(FieldError::invalid(
                &p,
                Bad::str(k.as_str()),
                format!("duplicate of key present in {other_field}"),
            ));
        }
        total += v.as_str().map_or(0, str::len);
    }
    total
}

/// `immutable: true` freezes `data`, `binaryData` and itself.
fn immutable_data(old: &Value, new: &Value, fields: &[&str], errs: &mut Errors) {
    if old.get("immutable") != Some(&Value::Bool(true)) {
        return;
    }
    const MSG: &str = "field is immutable when `immutable` is set";
    if new.get("immutable") != Some(&Value::Bool(true)) {
        errs.push(FieldError::forbidden("immutable", MSG));
    }
    let empty = |v: Option<&Value>| v.and_then(Value::as_object).is_none_or(|m| m.is_empty());
    for f in fields {
        let (o, n) = (old.get(*f), new.get(*f));
        if !(o == n || (empty(o) && empty(n))) {
            errs.push(FieldError::forbidden(*f, MSG));
        }
    }
}

/// `ValidateConfigMap` (and the update rules with `old`).
pub fn config_map(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    if let Some(old) = old {
        immutable_data(old, obj, &["data", "binaryData"], errs);
    }
    let total = data_keys(obj, "data", "binaryData", "binaryData", errs)
        + data_keys(obj, "binaryData", "data", "data", errs);
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("", MAX_SECRET_SIZE));
    }
}

/// `ValidateSecret` (and the update rules with `old`). `data` holds base64 text here; its size
/// counts the decoded bytes.
pub fn secret(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    if let Some(old) = old {
        let (ot, nt) = (s(old, "type"), s(obj, "type"));
        if ot != nt {
            errs.push(FieldError::invalid(
                "type",
                Bad::str(nt),
                "field is immutable",
            ));
        }
        immutable_data(old, obj, &["data"], errs);
    }
    let mut total = 0usize;
    if let Some(m) = obj.get("data").and_then(Value::as_object) {
        for (k, v) in m {
            for msg in content::config_map_key(k) {
                errs.push(FieldError::invalid(
                    format!("data[{k}]"),
                    Bad::str(k.as_str()),
                    msg,
                ));
            }
            total += v.as_str().map_or(0, |b| b.len() / 4 * 3);
        }
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("data", MAX_SECRET_SIZE));
    }
    let data = |k: &str| {
        obj.pointer("/data")
            .and_then(|d| d.get(k))
            .map(|v| v.as_str().unwrap_or_default())
    };
    let has = |k: &str| data(k).is_some();
    match s(obj, "type") {
        "kubernetes.io/service-account-token" => {
            let sa = obj
                .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if sa.is_empty() {
                errs.push(FieldError::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        t @ ("kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson") => {
            let key = if t == "kubernetes.io/dockercfg" {
                ".dockercfg"
            } else {
                ".dockerconfigjson"
            };
            match data(key) {
                None => errs.push(FieldError::required(format!("data[{key}]"), "")),
                Some(b64) => {
                    if let Some(msg) = docker_config_error(b64) {
                        errs.push(FieldError::invalid(
                            format!("data[{key}]"),
                            Bad::str("<secret contents redacted>"),
                            msg,
                        ));
                    }
                }
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(FieldError::required("data[username]", ""));
            errs.push(FieldError::required("data[password]", ""));
        }
        "kubernetes.io/ssh-auth" if data("ssh-privatekey").is_none_or(str::is_empty) => {
            errs.push(FieldError::required("data[ssh-privatekey]", ""));
        }
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    errs.push(FieldError::required(format!("data[{k}]"), ""));
                }
            }
        }
        _ => {}
    }
}

/// Why a docker config (base64 in `data`) does not decode as Go's `json.Unmarshal` into a
/// `map[string]interface{}` would refuse it: Go's texts for the empty document, a document of
/// another JSON type and a bad first character; any other syntax error gets Go's text for a
/// bad character at the place serde reports.
fn docker_config_error(b64: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let trimmed = text.trim_start_matches([' ', '\t', '\n', '\r']);
    if trimmed.is_empty() {
        return Some("unexpected end of JSON input".into());
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(_) | Value::Null) => None,
        Ok(v) => {
            let what = match v {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Bool(_) => "bool",
                _ => "number",
            };
            Some(format!(
                "json: cannot unmarshal {what} into Go value of type map[string]interface {{}}"
            ))
        }
        Err(e) if e.is_eof() => Some("unexpected end of JSON input".into()),
        Err(_) => {
            let c = trimmed.chars().next().unwrap_or_default();
            Some(format!(
                "invalid character {} looking for beginning of value",
                go_quote_rune(c)
            ))
        }
    }
}

/// Go's `quoteChar` (encoding/json's way of naming a bad character).
fn go_quote_rune(c: char) -> String {
    match c {
        '\'' => "'\\''".into(),
        '"' => "'\"'".into(),
        c => {
            let q = go_quote(&c.to_string());
            format!("'{}'", &q[1..q.len() - 1])
        }
    }
}

/// `ValidateNamespace`: `spec.finalizers` names (the field, as Go's path, has no index).
pub fn namespace(obj: &Value, errs: &mut Errors) {
    for f in obj
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
    {
        let f = f.as_str().unwrap_or_default();
        let p = "spec.finalizers";
        for m in content::qualified_name(f) {
            errs.push(FieldError::invalid(p, Bad::str(f), m));
        }
        if !f.contains('/') && !matches!(f, "kubernetes" | "orphan" | "foregroundDeletion") {
            errs.push(FieldError::invalid(
                p,
                Bad::str(f),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::testing::run;
    use serde_json::json;

    /// A ClusterIP Service with `ports`, defaulted as the API server would.
    fn svc(mut ports: Value) -> Value {
        for p in ports.as_array_mut().into_iter().flatten() {
            if p.get("targetPort").is_none()
                && let Some(n) = p.get("port").cloned()
            {
                p["targetPort"] = n;
            }
        }
        json!({"spec": {"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster", "ports": ports}})
    }

    #[test]
    fn service_ports() {
        let m = run(|e| {
            service(
                &svc(json!([{"port": 80, "protocol": "TCP"}, {"port": 81, "protocol": "TCP"}])),
                None,
                e,
            )
        });
        assert_eq!(
            m,
            vec![
                "spec.ports[0].name: Required value",
                "spec.ports[1].name: Required value"
            ]
        );
        let m = run(|e| {
            service(
                &svc(
                    json!([{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "http", "port": 9898, "protocol": "TCP"}]),
                ),
                None,
                e,
            )
        });
        assert_eq!(m, vec!["spec.ports[1].name: Duplicate value: \"http\""]);
        let m = run(|e| {
            service(
                &svc(
                    json!([{"name": "a", "port": 80, "protocol": "TCP"}, {"name": "b", "port": 80, "protocol": "TCP"}]),
                ),
                None,
                e,
            )
        });
        assert_eq!(
            m,
            vec![
                "spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}"
            ]
        );
        let m = run(|e| {
            service(
                &svc(json!([{"port": 70000, "protocol": "HTTP", "targetPort": "Web_1"}])),
                None,
                e,
            )
        });
        assert_eq!(
            m,
            vec![
                "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.ports[0].targetPort: Invalid value: \"Web_1\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            ]
        );
        let m = run(|e| service(&svc(json!([])), None, e));
        assert_eq!(m, vec!["spec.ports: Required value"]);
        let m = run(|e| {
            service(
                &json!({"spec": {"type": "Magic", "sessionAffinity": "Sticky", "ports": [{"port": 1, "protocol": "TCP", "targetPort": 1}]}}),
                None,
                e,
            )
        });
        assert_eq!(
            m,
            vec![
                "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
                "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            ]
        );
    }

    #[test]
    fn service_cluster_ip_is_immutable() {
        let old = json!({"spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"]}});
        let mut new = svc(json!([{"port": 80, "protocol": "TCP"}]));
        new["spec"]["clusterIP"] = json!("10.96.0.11");
        new["spec"]["clusterIPs"] = json!(["10.96.0.11"]);
        let m = run(|e| service(&new, Some(&old), e));
        assert_eq!(
            m,
            vec![
                "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set"
            ]
        );
    }

    #[test]
    fn containers_and_probes() {
        let spec = json!({
            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
            "containers": [
                {"name": "app", "image": "x", "imagePullPolicy": "Always",
                 "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}, {"name": "http", "containerPort": 0, "protocol": "TCP"}],
                 "livenessProbe": {"httpGet": {"path": "/", "port": 80, "scheme": "HTTP"}, "successThreshold": 2, "periodSeconds": -1},
                 "readinessProbe": {"periodSeconds": 10},
                 "resources": {"limits": {"cpu": "100m"}, "requests": {"cpu": "200m", "gpu": "1"}}},
                {"name": "app", "image": "", "imagePullPolicy": "Always"},
                {"name": "Bad_Name", "image": "y", "imagePullPolicy": "Sometimes"}
            ]
        });
        let m = run(|e| pod_spec(&spec, "spec.template.spec", e));
        assert_eq!(
            m,
            vec![
                "spec.template.spec.containers[0].ports[1].name: Duplicate value: \"http\"",
                "spec.template.spec.containers[0].ports[1].containerPort: Required value",
                "spec.template.spec.containers[0].resources.requests: Invalid value: \"200m\": must be less than or equal to cpu limit of 100m",
                "spec.template.spec.containers[0].resources.requests[gpu]: Invalid value: \"gpu\": must be a standard resource for containers",
                "spec.template.spec.containers[0].livenessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
                "spec.template.spec.containers[0].readinessProbe: Required value: must specify a handler type",
                "spec.template.spec.containers[1].image: Required value",
                "spec.template.spec.containers[1].name: Duplicate value: \"app\"",
                "spec.template.spec.containers[2].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                "spec.template.spec.containers[2].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
            ]
        );
        let m = run(|e| {
            pod_spec(
                &json!({"restartPolicy": "Sometimes", "dnsPolicy": "ClusterFirst"}),
                "spec",
                e,
            )
        });
        assert_eq!(
            m,
            vec![
                "spec.containers: Required value",
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ]
        );
    }

    #[test]
    fn quantities_decode() {
        let mut e = Errors::default();
        resources(
            Some(&json!({"limits": {"memory": "lots"}})),
            "spec.containers[0].resources",
            &mut e,
        );
        assert_eq!(
            e.decode.map(|d| d.0),
            Some("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'".to_string())
        );
        let m = run(|e| resources(Some(&json!({"limits": {"memory": "-1Gi"}})), "r", e));
        assert_eq!(
            m,
            vec!["r.limits[memory]: Invalid value: \"-1Gi\": must be greater than or equal to 0"]
        );
    }

    #[test]
    fn volumes_and_mounts() {
        let spec = json!({"restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
            "volumes": [{"name": "cfg"}, {"name": "cfg"}],
            "containers": [{"name": "a", "image": "x", "imagePullPolicy": "Always", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]});
        let m = run(|e| pod_spec(&spec, "spec", e));
        assert_eq!(
            m,
            vec![
                "spec.volumes[1].name: Duplicate value: \"cfg\"",
                "spec.containers[0].volumeMounts[0].name: Not found: \"data\"",
            ]
        );
    }

    #[test]
    fn config_maps_and_secrets() {
        let m = run(|e| config_map(&json!({"data": {"a/b": "x"}}), None, e));
        assert_eq!(
            m,
            vec![
                "data[a/b]: Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
            ]
        );
        let old = json!({"immutable": true, "data": {"a": "1"}});
        let m = run(|e| {
            config_map(
                &json!({"immutable": true, "data": {"a": "2"}}),
                Some(&old),
                e,
            )
        });
        assert_eq!(
            m,
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
        let m = run(|e| config_map(&json!({"data": {"a": "1"}}), Some(&old), e));
        assert_eq!(
            m,
            vec!["immutable: Forbidden: field is immutable when `immutable` is set"]
        );
        let m = run(|e| {
            secret(
                &json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}),
                None,
                e,
            )
        });
        assert_eq!(m, vec!["data[tls.key]: Required value"]);
        let m = run(|e| {
            secret(
                &json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}),
                Some(&json!({"type": "Opaque"})),
                e,
            )
        });
        assert_eq!(
            m,
            vec!["type: Invalid value: \"kubernetes.io/tls\": field is immutable"]
        );
    }
}
