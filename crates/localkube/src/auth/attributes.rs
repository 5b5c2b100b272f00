//! What a request asks for, read from its method, path and query alone, as kube-apiserver's
//! `RequestInfoFactory` reads it before authorization (nothing here looks at the registry:
//! a request for a resource the server does not serve is still authorized as one).

use super::user::UserInfo;

/// The attributes an authorizer decides on (`authorizer.Attributes`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attributes {
    pub user: UserInfo,
    pub verb: String,
    /// Whether this is a resource request (`/api/...`, `/apis/...` with a resource) or a
    /// non-resource URL (`/healthz`, `/version`, `/apis`, ...).
    pub resource_request: bool,
    pub namespace: String,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// The URL path (non-resource requests are authorized by it).
    pub path: String,
}

impl Attributes {
    /// Attributes of a resource request.
    pub fn resource(
        user: &UserInfo,
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> Self {
        Self {
            user: user.clone(),
            verb: verb.into(),
            resource_request: true,
            namespace: namespace.into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    /// Attributes of a non-resource request.
    pub fn non_resource(user: &UserInfo, verb: &str, path: &str) -> Self {
        Self {
            user: user.clone(),
            verb: verb.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    /// Reads the attributes of an HTTP request; `query` is the decoded query string.
    pub fn from_request(
        user: &UserInfo,
        method: &str,
        path: &str,
        query: &[(String, String)],
    ) -> Self {
        let q = |k: &str| {
            query
                .iter()
                .find(|(kk, _)| kk == k)
                .map(|(_, v)| v.as_str())
        };
        let mut a = Attributes {
            user: user.clone(),
            path: path.to_string(),
            // Non-resource requests are authorized with the lower-cased method.
            verb: method.to_ascii_lowercase(),
            ..Default::default()
        };
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if parts.len() < 3 {
            return a;
        }
        let mut rest: &[&str] = match parts[0] {
            "api" => &parts[1..],
            "apis" => {
                if parts.len() < 4 {
                    return a;
                }
                a.api_group = parts[1].to_string();
                &parts[2..]
            }
            _ => return a,
        };
        a.resource_request = true;
        a.api_version = rest[0].to_string();
        rest = &rest[1..];
        let mut verb_in_path = false;
        if matches!(rest.first(), Some(&"watch") | Some(&"proxy")) {
            if rest.len() < 2 {
                // kube-apiserver cannot tell the kind: the request is refused later.
                a.verb = rest[0].to_string();
                return a;
            }
            a.verb = rest[0].to_string();
            verb_in_path = true;
            rest = &rest[1..];
        } else {
            a.verb = match method {
                "POST" => "create",
                "GET" | "HEAD" => "get",
                "PUT" => "update",
                "PATCH" => "patch",
                "DELETE" => "delete",
                _ => "",
            }
            .to_string();
        }
        if rest.first() == Some(&"namespaces")
            && let Some(ns) = rest.get(1)
        {
            a.namespace = ns.to_string();
            // `namespaces/<ns>/<resource>...`, unless what follows is the namespace's own
            // subresource (`status`, `finalize`).
            if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
                rest = &rest[2..];
            }
        }
        if let Some(r) = rest.first() {
            a.resource = r.to_string();
        }
        if let Some(n) = rest.get(1) {
            a.name = n.to_string();
        }
        if rest.len() >= 3 && !(verb_in_path && a.verb == "proxy") {
            a.subresource = rest[2].to_string();
        }
        if a.name.is_empty() && a.verb == "get" {
            a.verb = if matches!(q("watch"), Some("true") | Some("1")) {
                "watch".into()
            } else {
                "list".into()
            };
        }
        // A list or watch of one object by `metadata.name` is authorized for that name (so
        // `resourceNames` rules allow it), as kube-apiserver does.
        if matches!(a.verb.as_str(), "list" | "watch")
            && a.name.is_empty()
            && let Some(fs) = q("fieldSelector")
            && let Some(name) = exact_name(fs)
        {
            a.name = name;
        }
        if a.name.is_empty() && a.verb == "delete" {
            a.verb = "deletecollection".into();
        }
        a
    }
}

/// The name a field selector requires exactly (`metadata.name=x` or `metadata.name==x`, alone
/// or among other terms), if it is a valid path segment.
fn exact_name(fs: &str) -> Option<String> {
    fs.split(',').find_map(|term| {
        let (k, v) = term
            .split_once("==")
            .or_else(|| term.split_once('='))
            .filter(|(k, _)| !k.ends_with('!'))?;
        (k.trim() == "metadata.name"
            && !v.is_empty()
            && v != "."
            && v != ".."
            && !v.contains('/')
            && !v.contains('%'))
        .then(|| v.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(method: &str, path: &str, query: &[(&str, &str)]) -> Attributes {
        let q: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Attributes::from_request(&UserInfo::default(), method, path, &q)
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn request_info_as_kube_apiserver_reads_it() {
        // (method, path, query) → (resource request, verb, group, ns, resource, sub, name)
        let cases: &[(
            &str,
            &str,
            &[(&str, &str)],
            bool,
            &str,
            &str,
            &str,
            &str,
            &str,
            &str,
        )] = &[
            ("GET", "/api", &[], false, "get", "", "", "", "", ""),
            ("GET", "/api/v1", &[], false, "get", "", "", "", "", ""),
            (
                "GET",
                "/apis/apps/v1",
                &[],
                false,
                "get",
                "",
                "",
                "",
                "",
                "",
            ),
            ("GET", "/healthz", &[], false, "get", "", "", "", "", ""),
            ("POST", "/version", &[], false, "post", "", "", "", "", ""),
            (
                "GET",
                "/api/v1/pods",
                &[],
                true,
                "list",
                "",
                "",
                "pods",
                "",
                "",
            ),
            (
                "GET",
                "/api/v1/namespaces/ns/pods",
                &[("watch", "true")],
                true,
                "watch",
                "",
                "ns",
                "pods",
                "",
                "",
            ),
            (
                "GET",
                "/api/v1/watch/namespaces/ns/pods",
                &[],
                true,
                "watch",
                "",
                "ns",
                "pods",
                "",
                "",
            ),
            (
                "GET",
                "/api/v1/namespaces/ns/pods/p/log",
                &[],
                true,
                "get",
                "",
                "ns",
                "pods",
                "log",
                "p",
            ),
            (
                "GET",
                "/apis/apps/v1/namespaces/ns/deployments",
                &[("fieldSelector", "metadata.name=d")],
                true,
                "list",
                "apps",
                "ns",
                "deployments",
                "",
                "d",
            ),
            (
                "DELETE",
                "/apis/apps/v1/namespaces/ns/deployments",
                &[],
                true,
                "deletecollection",
                "apps",
                "ns",
                "deployments",
                "",
                "",
            ),
            (
                "DELETE",
                "/apis/apps/v1/namespaces/ns/deployments/d",
                &[],
                true,
                "delete",
                "apps",
                "ns",
                "deployments",
                "",
                "d",
            ),
            (
                "PATCH",
                "/apis/flagger.app/v1beta1/namespaces/ns/canaries/c/status",
                &[],
                true,
                "patch",
                "flagger.app",
                "ns",
                "canaries",
                "status",
                "c",
            ),
            (
                "PUT",
                "/apis/apps/v1/namespaces/ns/deployments/d/scale",
                &[],
                true,
                "update",
                "apps",
                "ns",
                "deployments",
                "scale",
                "d",
            ),
            (
                "POST",
                "/api/v1/namespaces/ns/serviceaccounts/sa/token",
                &[],
                true,
                "create",
                "",
                "ns",
                "serviceaccounts",
                "token",
                "sa",
            ),
            // A namespace is addressed in its own namespace.
            (
                "GET",
                "/api/v1/namespaces/ns",
                &[],
                true,
                "get",
                "",
                "ns",
                "namespaces",
                "",
                "ns",
            ),
            (
                "PUT",
                "/api/v1/namespaces/ns/finalize",
                &[],
                true,
                "update",
                "",
                "ns",
                "namespaces",
                "finalize",
                "ns",
            ),
            (
                "GET",
                "/api/v1/namespaces",
                &[],
                true,
                "list",
                "",
                "",
                "namespaces",
                "",
                "",
            ),
            (
                "POST",
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                &[],
                true,
                "create",
                "authorization.k8s.io",
                "",
                "selfsubjectaccessreviews",
                "",
                "",
            ),
            (
                "GET",
                "/api/v1/proxy/namespaces/ns/services/s/a/b",
                &[],
                true,
                "proxy",
                "",
                "ns",
                "services",
                "",
                "s",
            ),
        ];
        for (m, p, q, rr, verb, g, ns, res, sub, name) in cases {
            let a = at(m, p, q);
            assert_eq!(
                (
                    a.resource_request,
                    a.verb.as_str(),
                    a.api_group.as_str(),
                    a.namespace.as_str(),
                    a.resource.as_str(),
                    a.subresource.as_str(),
                    a.name.as_str()
                ),
                (*rr, *verb, *g, *ns, *res, *sub, *name),
                "{m} {p} {q:?}"
            );
        }
    }
}
