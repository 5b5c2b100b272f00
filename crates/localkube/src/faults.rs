//! Fault injection, off by default.

use std::time::Duration;

/// One rule: requests matching verb and resource (None = any) fail with `code` at
/// `error_rate` (0..=1) and are delayed by `latency`.
#[derive(Debug, Clone, Default)]
pub struct FaultRule {
    pub verb: Option<String>,
    pub resource: Option<String>,
    pub error_rate: f64,
    pub code: u16,
    pub latency: Duration,
    /// Writes (update/patch) fail with 409 Conflict at this rate.
    pub conflict_rate: f64,
}

/// Fault configuration.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub rules: Vec<FaultRule>,
    /// Watch streams are cut after this long.
    pub watch_cut: Option<Duration>,
}

/// What a request should suffer.
#[derive(Debug, Default)]
pub struct Verdict {
    pub latency: Duration,
    pub error: Option<u16>,
}

/// A uniform number in [0, 1).
pub fn chance() -> f64 {
    let b = uuid::Uuid::new_v4().as_u128();
    (b as u64 >> 11) as f64 / (1u64 << 53) as f64
}

impl Faults {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.watch_cut.is_none()
    }

    pub fn judge(&self, verb: &str, resource: &str) -> Verdict {
        let mut v = Verdict::default();
        for r in &self.rules {
            if r.verb.as_deref().is_some_and(|x| x != verb)
                || r.resource.as_deref().is_some_and(|x| x != resource)
            {
                continue;
            }
            v.latency += r.latency;
            if v.error.is_none() && r.error_rate > 0.0 && chance() < r.error_rate {
                v.error = Some(if r.code == 0 { 500 } else { r.code });
            }
            if v.error.is_none()
                && r.conflict_rate > 0.0
                && matches!(verb, "update" | "patch")
                && chance() < r.conflict_rate
            {
                v.error = Some(409);
            }
        }
        v
    }
}
