//! The simulated image registry: which images exist, so that a pod whose image does not is
//! left `ErrImagePull` / `ImagePullBackOff` by the kubelet, as on a cluster.
//!
//! The registry is an ordered list of rules, first match wins; an image no rule matches does
//! not exist. A rule is an image pattern, `!` in front for "does not exist"; `*` in a pattern
//! matches any run of characters. Images and patterns are compared in their full form, as the
//! container runtime resolves them: `podinfo:1` is `docker.io/library/podinfo:1`,
//! `stefanprodan/podinfo` is `docker.io/stefanprodan/podinfo:latest`. A pattern without a tag
//! or digest matches every tag of its repository; a pattern without a registry host is on
//! Docker Hub.
//!
//! The default ([`DEFAULT_RULES`]) holds every image, except in the two namespaces whose
//! catalog it knows: `stefanprodan/` on Docker Hub and on GHCR, where only the images Flagger's
//! documentation and end-to-end flows run exist (so `stefanprodan/potato:1.0.0`, the image
//! Flagger's flows use as "an image that does not exist", fails to pull, and
//! `ghcr.io/stefanprodan/podinfo:6.0.1` pulls).

/// The default rules (first match wins): the known repositories of the `stefanprodan/`
/// namespaces, nothing else there, everything elsewhere.
pub const DEFAULT_RULES: &[&str] = &[
    "docker.io/stefanprodan/podinfo",
    "ghcr.io/stefanprodan/podinfo",
    "docker.io/stefanprodan/podcli",
    "ghcr.io/stefanprodan/podcli",
    "docker.io/stefanprodan/flagger",
    "docker.io/stefanprodan/flagger-loadtester",
    "!docker.io/stefanprodan/*",
    "!ghcr.io/stefanprodan/*",
    "*",
];

/// One rule: patterns over a full image reference's name and its tag (or digest), and
/// whether matching images exist.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    exists: bool,
    /// Over the full name (`docker.io/library/nginx`).
    name: String,
    /// Over what follows the name (`:1.25`, `@sha256:...`); `None`: any.
    tag: Option<String>,
}

impl Rule {
    fn parse(rule: &str) -> Rule {
        let (exists, pattern) = match rule.strip_prefix('!') {
            Some(p) => (false, p.trim()),
            None => (true, rule),
        };
        let (name, tag) = split_tag(pattern);
        Rule {
            exists,
            name: if name == "*" {
                name.to_string()
            } else {
                full_name(name)
            },
            tag: (!tag.is_empty()).then(|| tag.to_string()),
        }
    }

    fn matches(&self, name: &str, tag: &str) -> bool {
        glob(&self.name, name) && self.tag.as_deref().is_none_or(|t| glob(t, tag))
    }
}

/// The images that exist (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRegistry {
    rules: Vec<Rule>,
}

impl Default for ImageRegistry {
    fn default() -> Self {
        Self::from_rules(DEFAULT_RULES.iter().copied())
    }
}

/// Why an image cannot be pulled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullError {
    /// The image as the pod names it.
    pub image: String,
    /// The reference the runtime resolved it to.
    pub resolved: String,
}

impl PullError {
    /// The runtime's message (containerd's, as the kubelet reports it).
    pub fn message(&self) -> String {
        let r = &self.resolved;
        format!(
            "rpc error: code = NotFound desc = failed to pull and unpack image \"{r}\": failed to resolve reference \"{r}\": {r}: not found"
        )
    }
}

impl ImageRegistry {
    /// A registry from rules (blank lines and `#` comments ignored).
    pub fn from_rules<'a>(rules: impl IntoIterator<Item = &'a str>) -> Self {
        let rules = rules
            .into_iter()
            .map(str::trim)
            .filter(|r| !r.is_empty() && !r.starts_with('#'))
            .map(Rule::parse)
            .collect();
        Self { rules }
    }

    /// Parses a rules file: one rule per line.
    pub fn parse(text: &str) -> Self {
        Self::from_rules(text.lines())
    }

    /// A registry holding every image.
    pub fn everything() -> Self {
        Self::from_rules(["*"])
    }

    /// These rules first, then the current ones.
    pub fn with_rules_first<'a>(self, rules: impl IntoIterator<Item = &'a str>) -> Self {
        let mut first = Self::from_rules(rules).rules;
        first.extend(self.rules);
        Self { rules: first }
    }

    /// Whether `image` can be pulled.
    pub fn pull(&self, image: &str) -> Result<(), PullError> {
        let resolved = full_reference(image);
        let (name, tag) = split_tag(&resolved);
        let exists = self
            .rules
            .iter()
            .find(|r| r.matches(name, tag))
            .is_some_and(|r| r.exists);
        if exists {
            Ok(())
        } else {
            Err(PullError {
                image: image.to_string(),
                resolved,
            })
        }
    }
}

/// Whether the first component of a reference is a registry host.
fn has_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

/// `name` with the registry host and Docker Hub's `library/` made explicit.
fn full_name(name: &str) -> String {
    match name.split_once('/') {
        Some((first, _)) if has_host(first) => name.to_string(),
        Some(_) => format!("docker.io/{name}"),
        None => format!("docker.io/library/{name}"),
    }
}

/// Splits `name[:tag][@digest]` into the name and the rest (with its `:` or `@`).
fn split_tag(reference: &str) -> (&str, &str) {
    let digest_at = reference.find('@');
    let before_digest = &reference[..digest_at.unwrap_or(reference.len())];
    let last_slash = before_digest.rfind('/').map_or(0, |i| i + 1);
    match before_digest[last_slash..].find(':') {
        Some(i) => reference.split_at(last_slash + i),
        None => match digest_at {
            Some(d) => reference.split_at(d),
            None => (reference, ""),
        },
    }
}

/// The reference as the runtime resolves it: `nginx` → `docker.io/library/nginx:latest`.
pub fn full_reference(image: &str) -> String {
    let (name, rest) = split_tag(image.trim());
    let rest = if rest.is_empty() { ":latest" } else { rest };
    format!("{}{rest}", full_name(name))
}

/// Whether `s` matches `pattern`, where `*` matches any run of characters.
fn glob(pattern: &str, s: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), s.as_bytes());
    let (mut pi, mut si) = (0, 0);
    // The last `*` seen and where in `s` it is tried up to now.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_as_the_runtime_resolves_them() {
        assert_eq!(full_reference("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(full_reference("podinfo:1"), "docker.io/library/podinfo:1");
        assert_eq!(
            full_reference("stefanprodan/potato:1.0.0"),
            "docker.io/stefanprodan/potato:1.0.0"
        );
        assert_eq!(
            full_reference("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(
            full_reference("ghcr.io/stefanprodan/podinfo:6.0.1"),
            "ghcr.io/stefanprodan/podinfo:6.0.1"
        );
        assert_eq!(
            full_reference("app@sha256:abc"),
            "docker.io/library/app@sha256:abc"
        );
    }

    #[test]
    fn the_default_fails_flaggers_missing_image_and_pulls_the_rest() {
        let r = ImageRegistry::default();
        let err = r
            .pull("stefanprodan/potato:1.0.0")
            .expect_err("potato is missing");
        assert_eq!(err.resolved, "docker.io/stefanprodan/potato:1.0.0");
        assert!(
            err.message()
                .contains("docker.io/stefanprodan/potato:1.0.0: not found")
        );
        assert!(r.pull("ghcr.io/stefanprodan/potato:1.0.0").is_err());
        for ok in [
            "ghcr.io/stefanprodan/podinfo:6.0.1",
            "stefanprodan/podinfo:3.1.1",
            "docker.io/stefanprodan/podinfo",
            "ghcr.io/fluxcd/flagger-loadtester:0.34.0",
            "flagger-rs/flagger:0.1.0",
            "podinfo:1",
            "x:1",
            "example.com/app:2",
            "localhost:5000/app",
            "busybox",
        ] {
            assert!(r.pull(ok).is_ok(), "{ok} pulls");
        }
    }

    #[test]
    fn rules_are_ordered_patterns_with_negation() {
        let r = ImageRegistry::parse(
            "# ours only\nregistry.example.com/team/*\n!nginx:1.25\nnginx\n\n",
        );
        assert!(r.pull("registry.example.com/team/app:3").is_ok());
        assert!(r.pull("registry.example.com/other/app:3").is_err());
        assert!(r.pull("nginx:1.25").is_err(), "the first match wins");
        assert!(r.pull("nginx:1.27").is_ok(), "no tag: every tag");
        assert!(r.pull("library/nginx").is_ok());
        assert!(
            r.pull("nginxinc/nginx:1").is_err(),
            "a repository is not a prefix of another"
        );
        let all = ImageRegistry::everything();
        assert!(all.pull("stefanprodan/potato:1.0.0").is_ok());
        let patched = ImageRegistry::default().with_rules_first(["stefanprodan/potato"]);
        assert!(patched.pull("stefanprodan/potato:1.0.0").is_ok());
        assert!(patched.pull("stefanprodan/tomato:1").is_err());
    }

    #[test]
    fn tags_and_digests_in_patterns() {
        let r = ImageRegistry::from_rules(["app:1.*", "app@sha256:*"]);
        assert!(r.pull("app:1.2").is_ok());
        assert!(r.pull("app:2.0").is_err());
        assert!(r.pull("app@sha256:0123").is_ok());
    }
}
