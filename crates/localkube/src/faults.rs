//! Fault injection, off by default: API requests that fail, slow down, or watch streams that
//! are cut, as a real cluster's API server does under load or during an upgrade.
//!
//! Rules come from [`Config::faults`](crate::Config), [`Handle::set_faults`](crate::Handle),
//! or a YAML file (`flagger local --faults FILE`, read by [`Faults::from_yaml`]):
//!
//! ```yaml
//! - verb: patch              # get list watch create update patch delete deletecollection
//!   resource: deployments    # plural; `deployments/scale` for a subresource only
//!   namespace: test
//!   name: podinfo            # glob (`podinfo-*`); only requests that name an object match
//!   code: 500                # default 500; 409 answers a Conflict
//!   count: 1                 # exactly this many failures, then requests pass
//! - verb: update
//!   rate: 0.05               # or: this fraction of matching requests fail
//!   code: 409
//! - latency: 50ms            # added to every matching request
//! - verb: watch
//!   cut: 5s                  # watch streams end after this long (clients watch again)
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;

/// The verbs a rule can name.
pub const VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// One rule: requests matching verb, resource, namespace and name (None = any) fail with
/// `code` at `error_rate` (0..=1) or exactly `times` times, and are delayed by `latency`.
#[derive(Debug, Clone, Default)]
pub struct FaultRule {
    pub verb: Option<String>,
    /// Plural (`deployments`: the resource and its subresources) or `plural/subresource`.
    pub resource: Option<String>,
    pub namespace: Option<String>,
    /// Glob over the object's name (`*` any run, `?` one character); requests that do not
    /// name an object (list, watch, create, deletecollection) never match a rule with a name.
    pub name: Option<String>,
    pub error_rate: f64,
    /// 0 means 500.
    pub code: u16,
    pub latency: Duration,
    /// Writes (update/patch) fail with 409 Conflict at this rate.
    pub conflict_rate: f64,
    /// At most this many failures from this rule (every matching request fails until then
    /// when `error_rate` is 0).
    pub times: Option<u64>,
    /// Watch streams matching the rule end after this long.
    pub watch_cut: Option<Duration>,
    /// Failures injected so far (shared by clones of the rule), whether by `times`, by
    /// `error_rate` or by `conflict_rate`.
    pub injected: Arc<AtomicU64>,
}

/// Fault configuration.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub rules: Vec<FaultRule>,
    /// Every watch stream is cut after this long.
    pub watch_cut: Option<Duration>,
}

/// What a request should suffer.
#[derive(Debug, Default)]
pub struct Verdict {
    pub latency: Duration,
    pub error: Option<u16>,
    /// For a watch: when to end the stream.
    pub watch_cut: Option<Duration>,
}

/// What a request addresses, as rules match it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    pub verb: &'a str,
    /// Plural, without the subresource.
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// Set by [`seed_chance`]: the state of the seeded sequence, and whether it is used.
static SEEDED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static STATE: AtomicU64 = AtomicU64::new(0);

/// Makes [`chance`] (fault rates, the data plane's weighted picks and latencies) a sequence
/// drawn from `seed` for the rest of the process, so that a chaos run can be repeated with the
/// same draws. Which request gets which draw still depends on timing.
pub fn seed_chance(seed: u64) {
    STATE.store(seed, Ordering::SeqCst);
    SEEDED.store(true, Ordering::SeqCst);
}

/// A uniform number in [0, 1).
pub fn chance() -> f64 {
    let bits = if SEEDED.load(Ordering::Relaxed) {
        // splitmix64: one step of the shared counter, then its finaliser.
        let mut z = STATE
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    } else {
        uuid::Uuid::new_v4().as_u128() as u64
    };
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// `*` and `?` glob match, linear in `pattern.len() * name.len()` at worst.
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

impl FaultRule {
    fn matches(&self, req: &Request<'_>) -> bool {
        if self.verb.as_deref().is_some_and(|v| v != req.verb) {
            return false;
        }
        if let Some(r) = self.resource.as_deref() {
            let ok = match r.split_once('/') {
                Some((plural, sub)) => plural == req.resource && req.subresource == Some(sub),
                None => r == req.resource,
            };
            if !ok {
                return false;
            }
        }
        if let Some(ns) = self.namespace.as_deref()
            && req.namespace != Some(ns)
        {
            return false;
        }
        match (self.name.as_deref(), req.name) {
            (None, _) => true,
            (Some(p), Some(n)) => glob(p, n),
            (Some(_), None) => false,
        }
    }

    /// Takes one of the `times` failures; false once they are used up.
    fn take(&self, times: u64) -> bool {
        self.injected
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c < times).then_some(c + 1)
            })
            .is_ok()
    }
}

impl Faults {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.watch_cut.is_none()
    }

    /// What a request suffers: the latency of every matching rule, the first failure that
    /// fires, the shortest watch cut.
    pub fn judge(&self, req: &Request<'_>) -> Verdict {
        let mut v = Verdict {
            watch_cut: self.watch_cut.filter(|_| req.verb == "watch"),
            ..Verdict::default()
        };
        for r in &self.rules {
            if !r.matches(req) {
                continue;
            }
            v.latency += r.latency;
            if let Some(cut) = r.watch_cut.filter(|_| req.verb == "watch") {
                v.watch_cut = Some(v.watch_cut.map_or(cut, |c| c.min(cut)));
            }
            if v.error.is_none() {
                let fires = match r.times {
                    Some(times) => {
                        (r.error_rate == 0.0 || chance() < r.error_rate) && r.take(times)
                    }
                    None => {
                        let fires = r.error_rate > 0.0 && chance() < r.error_rate;
                        if fires {
                            r.injected.fetch_add(1, Ordering::AcqRel);
                        }
                        fires
                    }
                };
                if fires {
                    v.error = Some(if r.code == 0 { 500 } else { r.code });
                }
            }
            if v.error.is_none()
                && r.conflict_rate > 0.0
                && matches!(req.verb, "update" | "patch")
                && chance() < r.conflict_rate
            {
                r.injected.fetch_add(1, Ordering::AcqRel);
                v.error = Some(409);
            }
        }
        v
    }

    /// Reads rules from YAML (see the module documentation); every mistake is named with the
    /// rule's position.
    pub fn from_yaml(text: &str) -> Result<Faults, String> {
        let limits = input_guard::Limits::with_max_bytes(1024 * 1024);
        let specs: Vec<RuleSpec> = input_guard::from_yaml_str(text, &limits).map_err(|e| {
            format!(
                "not a list of fault rules: {e} (each rule is a mapping of verb, resource, \
                 namespace, name, code, rate or count, latency, cut)"
            )
        })?;
        let mut rules = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let rule = spec
                .rule()
                .map_err(|why| format!("rule {} ({}): {why}", i + 1, spec.describe()))?;
            rules.push(rule);
        }
        Ok(Faults {
            rules,
            watch_cut: None,
        })
    }
}

/// One rule as written in YAML.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    verb: Option<String>,
    resource: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    code: Option<u16>,
    rate: Option<f64>,
    count: Option<u64>,
    latency: Option<String>,
    cut: Option<String>,
}

impl RuleSpec {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("verb", &self.verb),
            ("resource", &self.resource),
            ("namespace", &self.namespace),
            ("name", &self.name),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k} {v}"));
            }
        }
        if parts.is_empty() {
            "every request".into()
        } else {
            parts.join(", ")
        }
    }

    fn duration(what: &str, s: &Option<String>) -> Result<Option<Duration>, String> {
        match s {
            None => Ok(None),
            Some(s) => crate::util::parse_duration(s)
                .map(Some)
                .ok_or_else(|| format!("{what} {s:?} is not a duration (e.g. 200ms, 5s, 1m)")),
        }
    }

    fn rule(&self) -> Result<FaultRule, String> {
        if let Some(v) = self.verb.as_deref()
            && !VERBS.contains(&v)
        {
            return Err(format!("verb {v:?} is not one of {}", VERBS.join(", ")));
        }
        if let Some(r) = self.resource.as_deref() {
            let ok = !r.is_empty()
                && r.split('/').count() <= 2
                && r.split('/').all(|p| {
                    !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                });
            if !ok {
                return Err(format!(
                    "resource {r:?} is not a plural resource name (deployments, \
                     deployments/scale, canaries/status)"
                ));
            }
        }
        if let Some(code) = self.code
            && !(400..=599).contains(&code)
        {
            return Err(format!("code {code} is not an HTTP error status (400-599)"));
        }
        if let Some(rate) = self.rate
            && !(rate > 0.0 && rate <= 1.0)
        {
            return Err(format!("rate {rate} is not in (0, 1]"));
        }
        if self.count == Some(0) {
            return Err("count 0 would inject nothing; remove the rule or give 1 or more".into());
        }
        if self.rate.is_some() && self.count.is_some() {
            return Err(
                "give either rate (a fraction of requests) or count (an exact number \
                        of failures), not both"
                    .into(),
            );
        }
        if self.code.is_some() && self.rate.is_none() && self.count.is_none() {
            return Err(format!(
                "code {} needs rate or count (how many requests fail)",
                self.code.unwrap_or_default()
            ));
        }
        let latency = Self::duration("latency", &self.latency)?;
        let cut = Self::duration("cut", &self.cut)?;
        if cut.is_some() && self.verb.as_deref().is_some_and(|v| v != "watch") {
            return Err("cut applies to watch streams: use it with verb watch (or no verb)".into());
        }
        if cut.is_some_and(|c| c.is_zero()) {
            return Err("cut must be longer than 0s".into());
        }
        if self.rate.is_none() && self.count.is_none() && latency.is_none() && cut.is_none() {
            return Err(
                "the rule does nothing: give rate or count (with code), latency or cut".into(),
            );
        }
        Ok(FaultRule {
            verb: self.verb.clone(),
            resource: self.resource.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            error_rate: self.rate.unwrap_or(0.0),
            code: self.code.unwrap_or(500),
            latency: latency.unwrap_or_default(),
            conflict_rate: 0.0,
            times: self.count,
            watch_cut: cut,
            injected: Arc::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(verb: &'a str, resource: &'a str, name: Option<&'a str>) -> Request<'a> {
        Request {
            verb,
            resource,
            subresource: None,
            namespace: Some("test"),
            name,
        }
    }

    #[test]
    fn globs() {
        assert!(glob("podinfo", "podinfo"));
        assert!(glob("podinfo-*", "podinfo-primary"));
        assert!(glob("*-primary", "podinfo-primary"));
        assert!(glob("p?dinfo*", "podinfo"));
        assert!(glob("*", ""));
        assert!(!glob("podinfo", "podinfo-primary"));
        assert!(!glob("podinfo-*", "podinfo"));
    }

    #[test]
    fn an_exact_count_fails_that_many_matching_requests() {
        let faults = Faults::from_yaml(
            "- verb: patch\n  resource: deployments\n  name: podinfo\n  count: 1\n",
        )
        .expect("valid");
        let other = faults.judge(&req("patch", "deployments", Some("podinfo-primary")));
        assert_eq!(other.error, None);
        let get = faults.judge(&req("get", "deployments", Some("podinfo")));
        assert_eq!(get.error, None);
        let first = faults.judge(&req("patch", "deployments", Some("podinfo")));
        assert_eq!(first.error, Some(500));
        // Clones (one per request in the server) share the count.
        let again = faults
            .clone()
            .judge(&req("patch", "deployments", Some("podinfo")));
        assert_eq!(again.error, None);
    }

    #[test]
    fn subresources_latency_and_cuts() {
        let faults = Faults::from_yaml(
            "- resource: deployments/scale\n  count: 2\n  code: 503\n- latency: 5ms\n- verb: watch\n  cut: 3s\n",
        )
        .expect("valid");
        let mut scale = req("patch", "deployments", Some("podinfo"));
        scale.subresource = Some("scale");
        assert_eq!(faults.judge(&scale).error, Some(503));
        assert_eq!(
            faults
                .judge(&req("patch", "deployments", Some("podinfo")))
                .error,
            None
        );
        let w = faults.judge(&req("watch", "pods", None));
        assert_eq!(w.watch_cut, Some(Duration::from_secs(3)));
        assert_eq!(w.latency, Duration::from_millis(5));
        assert_eq!(faults.judge(&req("get", "pods", None)).watch_cut, None);
    }

    #[test]
    fn mistakes_are_named_with_their_rule() {
        let cases = [
            (
                "- verb: pach\n  count: 1\n",
                "rule 1 (verb pach): verb \"pach\" is not one of",
            ),
            (
                "- count: 1\n- rate: 2\n",
                "rule 2 (every request): rate 2 is not in (0, 1]",
            ),
            ("- rate: 0.5\n  count: 3\n", "either rate"),
            ("- code: 500\n", "code 500 needs rate or count"),
            (
                "- code: 200\n  count: 1\n",
                "code 200 is not an HTTP error status",
            ),
            ("- latency: soon\n", "latency \"soon\" is not a duration"),
            ("- verb: get\n  cut: 5s\n", "cut applies to watch streams"),
            ("- name: x\n", "the rule does nothing"),
            (
                "- resource: Deployments\n  count: 1\n",
                "is not a plural resource name",
            ),
            ("- rat: 0.5\n", "unknown field `rat`"),
            ("verb: get\n", "not a list of fault rules"),
        ];
        for (yaml, want) in cases {
            let err = Faults::from_yaml(yaml).expect_err(yaml);
            assert!(err.contains(want), "{yaml:?}: {err}");
        }
    }
}
