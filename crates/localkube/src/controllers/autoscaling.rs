//! The HorizontalPodAutoscaler's algorithm (autoscaling/v2), pure: replica counts from metric
//! values (usage ratio, tolerance, unready and missing pods), then the recommendation
//! stabilised and limited ([`normalize`]: the scale-down stabilization window, the scaling
//! policies of `spec.behavior` or the legacy rate limit, `minReplicas`/`maxReplicas`), with
//! the reasons and messages of the conditions a cluster shows.

use std::time::{Duration, Instant};

use serde_json::Value;

/// `--horizontal-pod-autoscaler-tolerance`.
pub const TOLERANCE: f64 = 0.1;

/// A pod as the replica calculation sees it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PodMetric {
    pub name: String,
    /// `Pending` pods count as unready.
    pub pending: bool,
    pub ready: bool,
    /// The pod's metric value; `None` when the metrics have none for it.
    pub value: Option<f64>,
    /// Its resource request (utilization targets only).
    pub request: f64,
}

/// The pods in the calculation, grouped as the controller groups them.
struct Groups {
    ready_count: usize,
    /// Indexes of unready pods (ignored for CPU, and pending pods for every metric).
    unready: Vec<usize>,
    missing: Vec<usize>,
    /// `(index, value)` of the pods with metrics that count.
    metrics: Vec<(usize, f64)>,
}

fn group(pods: &[PodMetric], cpu: bool) -> Groups {
    let mut g = Groups {
        ready_count: 0,
        unready: Vec::new(),
        missing: Vec::new(),
        metrics: Vec::new(),
    };
    for (i, p) in pods.iter().enumerate() {
        if p.pending {
            g.unready.push(i);
            continue;
        }
        let Some(v) = p.value else {
            g.missing.push(i);
            continue;
        };
        if cpu && !p.ready {
            g.unready.push(i);
            continue;
        }
        g.ready_count += 1;
        g.metrics.push((i, v));
    }
    g
}

/// A replica count proposed for one metric, with the metric's current value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Proposal {
    pub replicas: i32,
    /// Utilization targets: the current utilization (percent of request).
    pub utilization: i64,
    /// The current average (per pod) or total value.
    pub value: f64,
}

const NO_METRICS: &str = "did not receive metrics for targeted pods (pods might be unready)";

fn ceil(x: f64) -> i32 {
    x.ceil() as i32
}

/// A ratio that adding the missing and unready pods moved across 1 (or into the tolerance)
/// keeps the current count; so does a count that moved against the ratio.
fn settle(ratio: f64, new_ratio: f64, new_replicas: i32, current: i32, tolerance: f64) -> i32 {
    if (1.0 - new_ratio).abs() <= tolerance
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
        || (new_ratio < 1.0 && new_replicas > current)
        || (new_ratio > 1.0 && new_replicas < current)
    {
        current
    } else {
        new_replicas
    }
}

/// `(pod index, value)` of the pods counted in a ratio.
type Values = [(usize, f64)];

/// The replica count for a usage `ratio`, damped as the controller damps it when pods are
/// unready or miss metrics: they are added back (missing pods at `at_target` on a scale-down,
/// at zero on a scale-up; unready ones at zero on a scale-up), `ratio_of` measures the ratio
/// again, and a ratio that moved across 1 or into the tolerance keeps the current count.
fn damped(
    g: &Groups,
    ratio: f64,
    ratio_of: &dyn Fn(&Values) -> Option<f64>,
    at_target: &dyn Fn(usize) -> f64,
    current: i32,
    tolerance: f64,
) -> i32 {
    let up_with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !up_with_unready && g.missing.is_empty() {
        if (1.0 - ratio).abs() <= tolerance {
            return current;
        }
        return ceil(ratio * g.ready_count as f64);
    }
    let mut m = g.metrics.clone();
    if ratio < 1.0 {
        m.extend(g.missing.iter().map(|i| (*i, at_target(*i))));
    } else if ratio > 1.0 {
        m.extend(g.missing.iter().map(|i| (*i, 0.0)));
    }
    if up_with_unready {
        m.extend(g.unready.iter().map(|i| (*i, 0.0)));
    }
    let Some(new_ratio) = ratio_of(&m) else {
        return current;
    };
    let new_replicas = ceil(new_ratio * m.len() as f64);
    settle(ratio, new_ratio, new_replicas, current, tolerance)
}

/// Replicas for a target utilization (percent of the pods' requests): `Resource` and
/// `ContainerResource` metrics with `type: Utilization`.
pub(super) fn utilization_replicas(
    pods: &[PodMetric],
    target_pct: f64,
    current: i32,
    cpu: bool,
    tolerance: f64,
) -> Result<Proposal, String> {
    let g = group(pods, cpu);
    if g.metrics.is_empty() {
        return Err(NO_METRICS.into());
    }
    let utilization_of = |m: &[(usize, f64)]| -> Option<i64> {
        let usage: f64 = m.iter().map(|(_, v)| v).sum();
        let requests: f64 = m.iter().map(|(i, _)| pods[*i].request).sum();
        (requests > 0.0).then(|| (usage * 100.0 / requests) as i64)
    };
    let ratio_of = |m: &[(usize, f64)]| utilization_of(m).map(|u| u as f64 / target_pct);
    let utilization = utilization_of(&g.metrics)
        .ok_or_else(|| "no metrics returned matched known pods".to_string())?;
    let ratio = utilization as f64 / target_pct;
    // A scale-down counts missing pods at 100% of their request (or at the target above).
    let fallback = target_pct.max(100.0) / 100.0;
    let at_target = |i: usize| pods[i].request * fallback;
    Ok(Proposal {
        replicas: damped(&g, ratio, &ratio_of, &at_target, current, tolerance),
        utilization,
        value: g.metrics.iter().map(|(_, v)| v).sum::<f64>() / g.metrics.len() as f64,
    })
}

/// Replicas for a target average value per pod: `Resource` metrics with `type: AverageValue`
/// and `Pods` metrics.
pub(super) fn average_replicas(
    pods: &[PodMetric],
    target: f64,
    current: i32,
    cpu: bool,
    tolerance: f64,
) -> Result<Proposal, String> {
    let g = group(pods, cpu);
    if g.metrics.is_empty() {
        return Err(NO_METRICS.into());
    }
    if target <= 0.0 {
        return Err("the target value must be greater than zero".into());
    }
    let avg_of = |m: &[(usize, f64)]| m.iter().map(|(_, v)| v).sum::<f64>() / m.len() as f64;
    let ratio_of = |m: &[(usize, f64)]| Some(avg_of(m) / target);
    let avg = avg_of(&g.metrics);
    Ok(Proposal {
        replicas: damped(&g, avg / target, &ratio_of, &|_| target, current, tolerance),
        utilization: 0,
        value: avg,
    })
}

/// Replicas for a target total value (`Object` and `External` metrics with `type: Value`):
/// the ratio applied to the ready pods.
pub(super) fn value_replicas(
    value: f64,
    target: f64,
    current: i32,
    ready_pods: usize,
    tolerance: f64,
) -> Result<Proposal, String> {
    if target <= 0.0 {
        return Err("the target value must be greater than zero".into());
    }
    let ratio = value / target;
    let replicas = if current != 0 {
        if (1.0 - ratio).abs() <= tolerance {
            current
        } else {
            ceil(ratio * ready_pods as f64)
        }
    } else {
        ceil(ratio)
    };
    Ok(Proposal {
        replicas,
        utilization: 0,
        value,
    })
}

/// Replicas for a target value per pod of a total (`Object` and `External` metrics with
/// `type: AverageValue`); the value reported is the total over the current replicas.
pub(super) fn per_pod_replicas(
    value: f64,
    target: f64,
    status_replicas: i32,
    tolerance: f64,
) -> Result<Proposal, String> {
    if target <= 0.0 {
        return Err("the target value must be greater than zero".into());
    }
    let mut replicas = status_replicas;
    let ratio = value / (target * status_replicas as f64);
    if (1.0 - ratio).abs() > tolerance {
        replicas = ceil(value / target);
    }
    Ok(Proposal {
        replicas,
        utilization: 0,
        value: value / status_replicas.max(1) as f64,
    })
}

/// A scaling policy of `spec.behavior`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Policy {
    pub pods: bool,
    pub value: i32,
    pub period: Duration,
}

/// How policies combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Select {
    Max,
    Min,
    Disabled,
}

/// The rules of one direction.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Rules {
    pub window: Duration,
    pub select: Select,
    pub policies: Vec<Policy>,
}

/// `spec.behavior`, with the API's defaults for what it leaves out.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Behavior {
    pub up: Rules,
    pub down: Rules,
}

fn rules(v: &Value, default: Rules) -> Rules {
    if !v.is_object() {
        return default;
    }
    let select = match v["selectPolicy"].as_str() {
        Some("Min") => Select::Min,
        Some("Disabled") => Select::Disabled,
        Some(_) => Select::Max,
        None => default.select,
    };
    let policies: Vec<Policy> = v["policies"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    Some(Policy {
                        pods: p["type"].as_str()? == "Pods",
                        value: i32::try_from(p["value"].as_i64()?).ok()?,
                        period: Duration::from_secs(p["periodSeconds"].as_u64()?),
                    })
                })
                .collect()
        })
        .unwrap_or(default.policies);
    Rules {
        window: v["stabilizationWindowSeconds"]
            .as_u64()
            .map(Duration::from_secs)
            .unwrap_or(default.window),
        select,
        policies,
    }
}

impl Behavior {
    /// The behavior of an HPA spec; `None` when it has none (the legacy rules apply).
    pub(super) fn of(spec: &Value, down_window: Duration) -> Option<Behavior> {
        let b = spec.get("behavior").filter(|b| b.is_object())?;
        let period = Duration::from_secs(15);
        let up = Rules {
            window: Duration::ZERO,
            select: Select::Max,
            policies: vec![
                Policy {
                    pods: false,
                    value: 100,
                    period,
                },
                Policy {
                    pods: true,
                    value: 4,
                    period,
                },
            ],
        };
        let down = Rules {
            window: down_window,
            select: Select::Max,
            policies: vec![Policy {
                pods: false,
                value: 100,
                period,
            }],
        };
        Some(Behavior {
            up: rules(&b["scaleUp"], up),
            down: rules(&b["scaleDown"], down),
        })
    }
}

/// What an autoscaler remembers between syncs: its recommendations and its scale events.
#[derive(Debug, Default, Clone)]
pub(super) struct History {
    recommendations: Vec<(Instant, i32)>,
    /// `(when, replicas added)`.
    ups: Vec<(Instant, i32)>,
    /// `(when, replicas removed)`.
    downs: Vec<(Instant, i32)>,
}

impl History {
    /// Records a rescale from `from` to `to`.
    pub(super) fn rescaled(&mut self, now: Instant, from: i32, to: i32) {
        if to > from {
            self.ups.push((now, to - from));
        } else if to < from {
            self.downs.push((now, from - to));
        }
        let keep = Duration::from_secs(3600);
        self.ups.retain(|(t, _)| now.duration_since(*t) < keep);
        self.downs.retain(|(t, _)| now.duration_since(*t) < keep);
    }

    fn changed_within(events: &[(Instant, i32)], period: Duration, now: Instant) -> i32 {
        events
            .iter()
            .filter(|(t, _)| now.duration_since(*t) < period)
            .map(|(_, n)| n)
            .sum()
    }

    /// Records a recommendation, replacing one older than `window` if there is one.
    fn record(&mut self, now: Instant, rec: i32, old: impl Fn(Instant) -> bool) {
        match self.recommendations.iter_mut().find(|(t, _)| old(*t)) {
            Some(slot) => *slot = (now, rec),
            None => self.recommendations.push((now, rec)),
        }
    }
}

/// A condition's status, reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cond {
    pub status: bool,
    pub reason: &'static str,
    pub message: &'static str,
}

/// The normalized count, and the `AbleToScale` and `ScalingLimited` conditions saying why.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Decision {
    pub desired: i32,
    pub able: Cond,
    pub limited: Cond,
}

const fn cond(status: bool, reason: &'static str, message: &'static str) -> Cond {
    Cond {
        status,
        reason,
        message,
    }
}

const READY: Cond = cond(
    true,
    "ReadyForNewScale",
    "recommended size matches current size",
);
const DOWN_STABILIZED: Cond = cond(
    true,
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const UP_STABILIZED: Cond = cond(
    true,
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const WITHIN: Cond = cond(
    false,
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);
const TOO_MANY: Cond = cond(
    true,
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const TOO_FEW: Cond = cond(
    true,
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);
const UP_LIMIT: Cond = cond(
    true,
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const DOWN_LIMIT: Cond = cond(
    true,
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);

/// The bounds of one sync.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    pub current: i32,
    pub min: i32,
    pub max: i32,
}

/// Stabilises and limits the proposed count (`behavior`: `None` for the legacy rules, with the
/// downscale stabilization window `down_window`).
pub(super) fn normalize(
    h: &mut History,
    now: Instant,
    proposed: i32,
    b: Bounds,
    behavior: Option<&Behavior>,
    down_window: Duration,
) -> Decision {
    match behavior {
        None => normalize_legacy(h, now, proposed, b, down_window),
        Some(behavior) => normalize_with_behavior(h, now, proposed, b, behavior),
    }
}

fn before(t: Instant, now: Instant, window: Duration) -> bool {
    now.checked_sub(window).is_some_and(|cutoff| t < cutoff)
}

fn normalize_legacy(
    h: &mut History,
    now: Instant,
    proposed: i32,
    b: Bounds,
    window: Duration,
) -> Decision {
    let stabilized = h
        .recommendations
        .iter()
        .filter(|(t, _)| !before(*t, now, window))
        .map(|(_, r)| *r)
        .fold(proposed, i32::max);
    h.record(now, proposed, |t| before(t, now, window));
    let able = if stabilized != proposed {
        DOWN_STABILIZED
    } else {
        READY
    };
    // No more than doubling (at least 4) in one go.
    let up_limit = (2 * b.current).max(4);
    let (max_allowed, over) = if b.max > up_limit {
        (up_limit, UP_LIMIT)
    } else {
        (b.max, TOO_MANY)
    };
    let (desired, limited) = if stabilized < b.min {
        (b.min, TOO_FEW)
    } else if stabilized > max_allowed {
        (max_allowed, over)
    } else {
        (stabilized, WITHIN)
    };
    Decision {
        desired,
        able,
        limited,
    }
}

fn normalize_with_behavior(
    h: &mut History,
    now: Instant,
    proposed: i32,
    b: Bounds,
    behavior: &Behavior,
) -> Decision {
    let (up_window, down_window) = (behavior.up.window, behavior.down.window);
    let mut up_rec = proposed;
    let mut down_rec = proposed;
    for (t, r) in &h.recommendations {
        if now.duration_since(*t) < up_window {
            up_rec = up_rec.min(*r);
        }
        if now.duration_since(*t) < down_window {
            down_rec = down_rec.max(*r);
        }
    }
    let stabilized = b.current.max(up_rec).min(down_rec);
    h.record(now, proposed, |t| {
        before(t, now, up_window) && before(t, now, down_window)
    });
    let able = if stabilized == proposed {
        READY
    } else if proposed >= b.current {
        UP_STABILIZED
    } else {
        DOWN_STABILIZED
    };
    let (desired, limit) = limit_rate(h, now, stabilized, b, behavior);
    let limited = if desired == stabilized {
        Cond {
            status: false,
            ..limit
        }
    } else {
        limit
    };
    Decision {
        desired,
        able,
        limited,
    }
}

/// Applies the scaling policies and the bounds.
fn limit_rate(
    h: &History,
    now: Instant,
    desired: i32,
    b: Bounds,
    behavior: &Behavior,
) -> (i32, Cond) {
    if desired > b.current {
        let limit = up_limit(h, now, b.current, &behavior.up).max(b.current);
        let (max_allowed, why) = if b.max > limit {
            (limit, UP_LIMIT)
        } else {
            (b.max, TOO_MANY)
        };
        if desired > max_allowed {
            return (max_allowed, why);
        }
    } else if desired < b.current {
        let limit = down_limit(h, now, b.current, &behavior.down).min(b.current);
        let (min_allowed, why) = if b.min < limit {
            (limit, DOWN_LIMIT)
        } else {
            (b.min, TOO_FEW)
        };
        if desired < min_allowed {
            return (min_allowed, why);
        }
    }
    (desired, WITHIN)
}

fn up_limit(h: &History, now: Instant, current: i32, rules: &Rules) -> i32 {
    rate_limit(h, now, current, rules, true)
}

fn down_limit(h: &History, now: Instant, current: i32, rules: &Rules) -> i32 {
    rate_limit(h, now, current, rules, false)
}

/// The furthest the policies let the count go from `current` in one direction (`up`), from
/// where each policy's period started. `Max` picks the policy allowing the largest change,
/// `Min` the smallest, `Disabled` none.
fn rate_limit(h: &History, now: Instant, current: i32, rules: &Rules, up: bool) -> i32 {
    let widest = (rules.select == Select::Max) == up;
    let pick: fn(i32, i32) -> i32 = match rules.select {
        Select::Disabled => return current,
        _ if widest => i32::max,
        _ => i32::min,
    };
    let start = if widest { i32::MIN } else { i32::MAX };
    rules.policies.iter().fold(start, |acc, p| {
        let added = History::changed_within(&h.ups, p.period, now);
        let removed = History::changed_within(&h.downs, p.period, now);
        let base = current - added + removed;
        let proposed = match (p.pods, up) {
            (true, true) => base + p.value,
            (true, false) => base - p.value,
            (false, true) => (base as f64 * (1.0 + p.value as f64 / 100.0)).ceil() as i32,
            (false, false) => (base as f64 * (1.0 - p.value as f64 / 100.0)) as i32,
        };
        pick(acc, proposed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, value: Option<f64>, request: f64) -> PodMetric {
        PodMetric {
            name: name.into(),
            pending: false,
            ready: true,
            value,
            request,
        }
    }

    #[test]
    fn utilization_scales_by_the_ratio_outside_the_tolerance() {
        let pods = [pod("a", Some(0.2), 0.1), pod("b", Some(0.2), 0.1)];
        // 200% of request against 50%: four times the pods.
        let p = utilization_replicas(&pods, 50.0, 2, true, TOLERANCE).expect("computed");
        assert_eq!((p.replicas, p.utilization), (8, 200));
        assert!((p.value - 0.2).abs() < 1e-9);
        // 54% against 50%: within the tolerance, no change.
        let pods = [pod("a", Some(0.054), 0.1), pod("b", Some(0.054), 0.1)];
        let p = utilization_replicas(&pods, 50.0, 2, true, TOLERANCE).expect("computed");
        assert_eq!((p.replicas, p.utilization), (2, 54));
        // 20% against 50%: scale down.
        let pods = [pod("a", Some(0.02), 0.1), pod("b", Some(0.02), 0.1)];
        let p = utilization_replicas(&pods, 50.0, 2, true, TOLERANCE).expect("computed");
        assert_eq!(p.replicas, 1);
    }

    #[test]
    fn unready_and_missing_pods_damp_the_change() {
        // Scaling up with an unready pod counts it at zero usage.
        let mut unready = pod("c", Some(0.5), 0.1);
        unready.ready = false;
        let pods = [pod("a", Some(0.1), 0.1), pod("b", Some(0.1), 0.1), unready];
        let p = utilization_replicas(&pods, 50.0, 3, true, TOLERANCE).expect("computed");
        // Ready pods at 100%: ratio 2; with the unready one at 0: 200/3 % → ratio 1.33 → 4.
        assert_eq!((p.replicas, p.utilization), (4, 100));
        // Scaling down with a pod missing metrics counts it at 100% of its request: no change.
        let pods = [pod("a", Some(0.04), 0.1), pod("b", None, 0.1)];
        let p = utilization_replicas(&pods, 50.0, 2, true, TOLERANCE).expect("computed");
        assert_eq!(p.replicas, 2);
        // No pod with metrics: an error, as the controller reports it.
        let err = utilization_replicas(&[pod("a", None, 0.1)], 50.0, 1, true, TOLERANCE)
            .expect_err("no metrics");
        assert_eq!(err, NO_METRICS);
    }

    #[test]
    fn averages_values_and_per_pod_totals() {
        let pods = [pod("a", Some(30.0), 0.0), pod("b", Some(10.0), 0.0)];
        let p = average_replicas(&pods, 10.0, 2, false, TOLERANCE).expect("computed");
        assert_eq!(p.replicas, 4);
        assert_eq!(p.value, 20.0);
        assert_eq!(
            value_replicas(300.0, 100.0, 2, 2, TOLERANCE).map(|p| p.replicas),
            Ok(6)
        );
        assert_eq!(
            value_replicas(300.0, 100.0, 0, 0, TOLERANCE).map(|p| p.replicas),
            Ok(3)
        );
        // KEDA's AverageValue: 40 req/s against 5 per pod.
        let p = per_pod_replicas(40.0, 5.0, 1, TOLERANCE).expect("computed");
        assert_eq!((p.replicas, p.value), (8, 40.0));
        let p = per_pod_replicas(10.5, 5.0, 2, TOLERANCE).expect("computed");
        assert_eq!(p.replicas, 2, "within the tolerance");
    }

    #[test]
    fn legacy_rules_stabilize_scale_down_and_limit_scale_up() {
        let t0 = Instant::now();
        let window = Duration::from_secs(300);
        let b = |current| Bounds {
            current,
            min: 1,
            max: 10,
        };
        let mut h = History::default();
        let d = normalize(&mut h, t0, 9, b(2), None, window);
        assert_eq!(d.desired, 4, "at most doubled, at least 4");
        assert_eq!(d.limited, UP_LIMIT);
        assert_eq!(d.able, READY);
        let d = normalize(&mut h, t0 + Duration::from_secs(15), 2, b(5), None, window);
        assert_eq!(d.desired, 9, "the highest recommendation of the window");
        assert_eq!(d.able, DOWN_STABILIZED);
        let later = t0 + Duration::from_secs(400);
        let d = normalize(&mut h, later, 2, b(9), None, window);
        assert_eq!(d.desired, 2, "the window has passed");
        let d = normalize(&mut History::default(), later, 0, b(2), None, window);
        assert_eq!((d.desired, d.limited.clone()), (1, TOO_FEW));
        let d = normalize(&mut h, later, 30, b(20), None, window);
        assert_eq!((d.desired, d.limited), (10, TOO_MANY));
    }

    #[test]
    fn behaviors_apply_windows_and_policies() {
        let t0 = Instant::now();
        let spec = json!({"behavior": {
            "scaleDown": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]},
        }});
        let behavior = Behavior::of(&spec, Duration::from_secs(300)).expect("a behavior");
        assert_eq!(behavior.up.window, Duration::ZERO, "scale-up defaults");
        assert_eq!(behavior.up.policies.len(), 2);
        assert_eq!(behavior.down.window, Duration::from_secs(60));
        let b = |current| Bounds {
            current,
            min: 1,
            max: 20,
        };
        let mut h = History::default();
        // Up: the larger of +100% and +4 pods per 15 s.
        let d = normalize(&mut h, t0, 20, b(2), Some(&behavior), Duration::ZERO);
        assert_eq!((d.desired, d.limited.clone()), (6, UP_LIMIT));
        h.rescaled(t0, 2, 6);
        let d = normalize(
            &mut h,
            t0 + Duration::from_secs(5),
            20,
            b(6),
            Some(&behavior),
            Duration::ZERO,
        );
        assert_eq!(d.desired, 6, "the period's budget is spent");
        // Down: stabilized for a minute, then one pod per 30 s.
        let t1 = t0 + Duration::from_secs(30);
        let d = normalize(&mut h, t1, 2, b(6), Some(&behavior), Duration::ZERO);
        assert_eq!((d.desired, d.able.clone()), (6, DOWN_STABILIZED));
        let t2 = t0 + Duration::from_secs(100);
        let d = normalize(&mut h, t2, 2, b(6), Some(&behavior), Duration::ZERO);
        assert_eq!((d.desired, d.limited.clone()), (5, DOWN_LIMIT));
        assert!(Behavior::of(&json!({}), Duration::ZERO).is_none());
    }
}
