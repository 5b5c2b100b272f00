//! networking.k8s.io/v1 Ingresses (`pkg/apis/networking/validation`).

use serde_json::Value;

use super::content;
use super::field::{Bad, Errors, FieldError};

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Go's `%#v` of an Ingress's rules when there are none.
const NO_RULES: &str = "[]networking.IngressRule(nil)";

/// An Ingress: rules or a default backend, host names, paths and their types, backends.
pub fn ingress(obj: &Value, errs: &mut Errors) {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let rules = spec
        .get("rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let default_backend = spec.get("defaultBackend").filter(|b| !b.is_null());
    if rules.is_empty() && default_backend.is_none() {
        errs.push(FieldError::invalid(
            "spec",
            Bad::Go(NO_RULES.into()),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = default_backend {
        backend(b, "spec.defaultBackend", errs);
    }
    for (i, r) in rules.iter().enumerate() {
        let host = s(r, "host");
        let hp = format!("spec.rules[{i}].host");
        if !host.is_empty() {
            if host.parse::<std::net::IpAddr>().is_ok() {
                errs.push(FieldError::invalid(
                    &hp,
                    Bad::str(host),
                    "must be a DNS name, not an IP address",
                ));
            }
            let msgs = if host.contains('*') {
                content::wildcard_dns1123_subdomain(host)
            } else {
                content::dns1123_subdomain(host)
            };
            for m in msgs {
                errs.push(FieldError::invalid(&hp, Bad::str(host), m));
            }
        }
        let Some(http) = r.get("http").filter(|h| !h.is_null()) else {
            continue;
        };
        let paths = http
            .get("paths")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let pp = format!("spec.rules[{i}].http.paths");
        if paths.is_empty() {
            errs.push(FieldError::required(&pp, ""));
        }
        for (j, p) in paths.iter().enumerate() {
            let jp = format!("{pp}[{j}]");
            let path = s(p, "path");
            match p.get("pathType").and_then(Value::as_str) {
                None => {
                    errs.push(FieldError::required(
                        format!("{jp}.pathType"),
                        "pathType must be specified",
                    ));
                    continue;
                }
                Some("Exact" | "Prefix") => {
                    if !path.starts_with('/') {
                        errs.push(FieldError::invalid(
                            format!("{jp}.path"),
                            Bad::str(path),
                            "must be an absolute path",
                        ));
                    }
                    for bad in ["//", "/./", "/../", "%2f", "%2F"] {
                        if path.contains(bad) {
                            errs.push(FieldError::invalid(
                                format!("{jp}.path"),
                                Bad::str(path),
                                format!("must not contain '{bad}'"),
                            ));
                        }
                    }
                }
                Some("ImplementationSpecific") => {
                    if !path.is_empty() && !path.starts_with('/') {
                        errs.push(FieldError::invalid(
                            format!("{jp}.path"),
                            Bad::str(path),
                            "must be an absolute path",
                        ));
                    }
                }
                Some(other) => errs.push(FieldError::not_supported(
                    format!("{jp}.pathType"),
                    Bad::str(other),
                    &["Exact", "ImplementationSpecific", "Prefix"],
                )),
            }
            backend(
                p.get("backend").unwrap_or(&Value::Null),
                &format!("{jp}.backend"),
                errs,
            );
        }
    }
    if let Some(c) = spec.get("ingressClassName").and_then(Value::as_str) {
        for m in content::dns1123_subdomain(c) {
            errs.push(FieldError::invalid("spec.ingressClassName", Bad::str(c), m));
        }
    }
}

fn backend(b: &Value, path: &str, errs: &mut Errors) {
    let resource = b.get("resource").filter(|r| !r.is_null());
    let service = b.get("service").filter(|r| !r.is_null());
    match (resource, service) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid(
            path,
            Bad::str(""),
            "cannot set both resource and service backends",
        )),
        (Some(r), None) => {
            if s(r, "kind").is_empty() {
                errs.push(FieldError::required(format!("{path}.resource.kind"), ""));
            }
            if s(r, "name").is_empty() {
                errs.push(FieldError::required(format!("{path}.resource.name"), ""));
            }
        }
        (None, Some(svc)) => {
            let name = s(svc, "name");
            if name.is_empty() {
                errs.push(FieldError::required(format!("{path}.service.name"), ""));
            } else {
                for m in content::dns1035_label(name) {
                    errs.push(FieldError::invalid(
                        format!("{path}.service.name"),
                        Bad::str(name),
                        m,
                    ));
                }
            }
            let port = svc.get("port").cloned().unwrap_or(Value::Null);
            let pname = s(&port, "name");
            let pnum = port.get("number").and_then(Value::as_i64).unwrap_or(0);
            match (pname.is_empty(), pnum == 0) {
                (false, false) => errs.push(FieldError::invalid(
                    path,
                    Bad::str(""),
                    "cannot set both port name & port number",
                )),
                (false, true) => {
                    for m in content::port_name(pname) {
                        errs.push(FieldError::invalid(
                            format!("{path}.service.port.name"),
                            Bad::str(pname),
                            m,
                        ));
                    }
                }
                (true, false) => {
                    for m in content::port_num(pnum) {
                        errs.push(FieldError::invalid(
                            format!("{path}.service.port.number"),
                            Bad::int(pnum),
                            m,
                        ));
                    }
                }
                (true, true) => errs.push(FieldError::required(
                    path,
                    "port name or number is required",
                )),
            }
        }
        (None, None) => errs.push(FieldError::invalid(
            path,
            Bad::str(""),
            "resource or service backend is required",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::testing;
    use serde_json::json;

    fn run(obj: Value) -> Vec<String> {
        testing::run(|e| ingress(&obj, e))
    }

    #[test]
    fn ingresses() {
        assert_eq!(
            run(json!({"spec": {}})),
            vec![
                "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified"
            ]
        );
        let ok = json!({"spec": {"rules": [{"host": "app.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "podinfo", "port": {"number": 80}}}}]}}]}});
        assert!(run(ok).is_empty());
        let bad = json!({"spec": {"rules": [{"host": "10.0.0.1", "http": {"paths": [
            {"path": "api", "pathType": "Exact", "backend": {"service": {"name": "podinfo", "port": {}}}},
            {"path": "/", "backend": {"service": {"name": "podinfo", "port": {"number": 80}}}},
            {"path": "/", "pathType": "Regex", "backend": {}}]}}]}});
        assert_eq!(
            run(bad),
            vec![
                "spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
                "spec.rules[0].http.paths[0].path: Invalid value: \"api\": must be an absolute path",
                "spec.rules[0].http.paths[0].backend: Required value: port name or number is required",
                "spec.rules[0].http.paths[1].pathType: Required value: pathType must be specified",
                "spec.rules[0].http.paths[2].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"",
                "spec.rules[0].http.paths[2].backend: Invalid value: \"\": resource or service backend is required",
            ]
        );
    }
}
