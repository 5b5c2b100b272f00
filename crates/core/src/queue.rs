//! The cap on concurrent rollouts (`-max-concurrent-canaries`, cluster-wide, and
//! `-max-concurrent-canaries-per-namespace`): whether a canary whose new revision is about to
//! start a run may start it now, or waits in line.
//!
//! Decided from the fleet as the controller observes it (every canary's phase and its `Queued`
//! condition, see [`member_of`]):
//! - a canary whose run is under way (`Progressing`, `WaitingPromotion`, `Promoting`,
//!   `Finalising`) holds a slot until it ends; the cap never touches a run under way, so
//!   promotion and rollback are never blocked by it;
//! - the canaries in line are served first come, first served by detection time (when they
//!   were first put in line: the `Queued` condition's `lastTransitionTime`), ties broken by
//!   namespace and name; a canary asking for the first time stands at the back;
//! - slots are handed out along the line: a canary is admitted when a slot is free under both
//!   caps once every canary ahead of it that fits has taken one (a canary held back only by its
//!   namespace's cap does not hold back canaries of other namespaces).

use flagger_api::labels::CONDITION_QUEUED;
use flagger_api::{CanaryPhase, CanaryStatus};
use k8s_openapi::jiff::Timestamp;

/// The caps (`None`: no cap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    pub cluster: Option<u32>,
    pub namespace: Option<u32>,
    /// With `-shards`: the shard whose canaries the fleet holds. The caps then hold per shard
    /// (each shard has one owner at a time, which can keep them exactly); the cluster-wide
    /// total is at most the shard count times the cap.
    pub shard: Option<u32>,
}

impl Caps {
    /// Whether any cap is set.
    pub fn any(&self) -> bool {
        self.cluster.is_some() || self.namespace.is_some()
    }
}

/// One canary of the fleet, as the cap sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub namespace: String,
    pub name: String,
    pub state: State,
}

/// Where a canary stands with respect to the cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Its run is under way: it holds a slot.
    Running,
    /// In line since that time.
    Queued(Timestamp),
    /// Neither.
    Idle,
}

/// Whether a phase holds a slot.
pub fn running(phase: CanaryPhase) -> bool {
    use CanaryPhase::*;
    matches!(
        phase,
        Progressing | WaitingPromotion | Promoting | Finalising
    )
}

/// A canary as the cap sees it, from its status.
pub fn member_of(namespace: &str, name: &str, status: &CanaryStatus) -> Member {
    let queued = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.r#type == CONDITION_QUEUED && c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(Timestamp::UNIX_EPOCH)
        });
    let state = if running(status.phase) {
        State::Running
    } else if let Some(since) = queued {
        State::Queued(since)
    } else {
        State::Idle
    };
    Member {
        namespace: namespace.into(),
        name: name.into(),
        state,
    }
}

/// The answer for one canary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A slot is free: the run starts.
    Admitted,
    /// Wait in line.
    Queued(Place),
}

/// A canary's place in line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// 1 for the first in line (among the canaries that cannot start now).
    pub position: usize,
    /// How many wait in line in all.
    pub of: usize,
    /// The cap that holds it back, in words (`3 of 3 cluster-wide`).
    pub full: String,
}

impl Place {
    /// The `Queued` condition's message.
    pub fn message(&self) -> String {
        format!(
            "waiting for a rollout slot: {} of {} in line; slots in use: {}",
            self.position, self.of, self.full
        )
    }
}

/// Whether the canary `namespace/name` may start its run now (see the module documentation).
/// `now` is its detection time when it is not in line yet.
pub fn admit(
    caps: &Caps,
    fleet: &[Member],
    namespace: &str,
    name: &str,
    now: Timestamp,
) -> Admission {
    if !caps.any() {
        return Admission::Admitted;
    }
    let me = |m: &Member| m.namespace == namespace && m.name == name;
    let mut total = 0u32;
    let mut by_ns: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    let mut line: Vec<(Timestamp, &str, &str)> = Vec::new();
    for m in fleet {
        match m.state {
            State::Running if !me(m) => {
                total += 1;
                *by_ns.entry(m.namespace.as_str()).or_default() += 1;
            }
            State::Queued(since) if !me(m) => line.push((since, &m.namespace, &m.name)),
            _ => {}
        }
    }
    let since = fleet
        .iter()
        .find(|m| me(m))
        .and_then(|m| match m.state {
            State::Queued(since) => Some(since),
            _ => None,
        })
        .unwrap_or(now);
    line.push((since, namespace, name));
    line.sort();

    let mut waiting = 0usize;
    let mut mine: Option<(usize, String)> = None;
    for (_, ns, n) in &line {
        let in_ns = by_ns.get(ns).copied().unwrap_or(0);
        let cluster_full = caps.cluster.is_some_and(|cap| total >= cap);
        let ns_full = caps.namespace.is_some_and(|cap| in_ns >= cap);
        let is_me = *ns == namespace && *n == name;
        if !cluster_full && !ns_full {
            if is_me {
                return Admission::Admitted;
            }
            total += 1;
            *by_ns.entry(ns).or_default() += 1;
            continue;
        }
        waiting += 1;
        if is_me {
            let mut full = Vec::new();
            if let Some(cap) = caps.cluster.filter(|_| cluster_full) {
                match caps.shard {
                    Some(shard) => full.push(format!("{total} of {cap} in shard {shard}")),
                    None => full.push(format!("{total} of {cap} cluster-wide")),
                }
            }
            if let Some(cap) = caps.namespace.filter(|_| ns_full) {
                full.push(format!("{in_ns} of {cap} in namespace {ns}"));
            }
            mine = Some((waiting, full.join(", ")));
        }
    }
    match mine {
        Some((position, full)) => Admission::Queued(Place {
            position,
            of: waiting,
            full,
        }),
        // Not reached: the canary is in the line it walked.
        None => Admission::Admitted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).expect("timestamp")
    }

    fn m(ns: &str, name: &str, state: State) -> Member {
        Member {
            namespace: ns.into(),
            name: name.into(),
            state,
        }
    }

    fn cluster(n: u32) -> Caps {
        Caps {
            cluster: Some(n),
            ..Default::default()
        }
    }

    #[test]
    fn no_cap_admits_everyone() {
        let fleet = vec![m("a", "x", State::Running); 50];
        assert_eq!(
            admit(&Caps::default(), &fleet, "a", "y", t(0)),
            Admission::Admitted
        );
    }

    #[test]
    fn a_free_slot_is_taken_and_a_full_cap_queues_at_the_back() {
        let fleet = vec![
            m("a", "r1", State::Running),
            m("a", "r2", State::Running),
            m("a", "idle", State::Idle),
        ];
        assert_eq!(
            admit(&cluster(3), &fleet, "a", "new", t(10)),
            Admission::Admitted
        );
        let fleet = [
            fleet,
            vec![
                m("a", "r3", State::Running),
                m("b", "q1", State::Queued(t(1))),
            ],
        ]
        .concat();
        let Admission::Queued(place) = admit(&cluster(3), &fleet, "a", "new", t(10)) else {
            panic!("expected to wait");
        };
        assert_eq!((place.position, place.of), (2, 2));
        assert_eq!(
            place.message(),
            "waiting for a rollout slot: 2 of 2 in line; slots in use: 3 of 3 cluster-wide"
        );
    }

    #[test]
    fn first_come_first_served_by_detection_time() {
        // One slot free, three in line: only the earliest goes.
        let fleet = vec![
            m("a", "r1", State::Running),
            m("a", "late", State::Queued(t(30))),
            m("z", "early", State::Queued(t(10))),
            m("b", "middle", State::Queued(t(20))),
        ];
        let caps = cluster(2);
        assert_eq!(
            admit(&caps, &fleet, "z", "early", t(99)),
            Admission::Admitted
        );
        let place = |ns, n| match admit(&caps, &fleet, ns, n, t(99)) {
            Admission::Queued(p) => p.position,
            Admission::Admitted => 0,
        };
        assert_eq!(place("b", "middle"), 1);
        assert_eq!(place("a", "late"), 2);
        // Same detection time: by namespace, then name.
        let tie = vec![
            m("a", "r1", State::Running),
            m("b", "x", State::Queued(t(5))),
            m("a", "y", State::Queued(t(5))),
        ];
        assert_eq!(admit(&caps, &tie, "a", "y", t(9)), Admission::Admitted);
        assert!(matches!(
            admit(&caps, &tie, "b", "x", t(9)),
            Admission::Queued(_)
        ));
    }

    #[test]
    fn a_running_canary_is_never_queued_and_its_own_slot_does_not_count_against_it() {
        let fleet = vec![m("a", "r1", State::Running), m("a", "r2", State::Running)];
        assert_eq!(
            admit(&cluster(2), &fleet, "a", "r1", t(0)),
            Admission::Admitted
        );
    }

    #[test]
    fn the_namespace_cap_holds_back_only_its_namespace() {
        let caps = Caps {
            cluster: Some(3),
            namespace: Some(1),
            shard: None,
        };
        let fleet = vec![
            m("a", "r1", State::Running),
            m("a", "q1", State::Queued(t(1))),
            m("b", "q2", State::Queued(t(2))),
        ];
        let Admission::Queued(place) = admit(&caps, &fleet, "a", "q1", t(9)) else {
            panic!("namespace a is full");
        };
        assert_eq!(place.full, "1 of 1 in namespace a");
        assert_eq!(admit(&caps, &fleet, "b", "q2", t(9)), Admission::Admitted);
        // b's slot taken, the cluster-wide cap is reached for a third namespace.
        let fleet = [
            fleet,
            vec![m("b", "r2", State::Running), m("c", "r3", State::Running)],
        ]
        .concat();
        let Admission::Queued(place) = admit(&caps, &fleet, "d", "new", t(9)) else {
            panic!("cluster is full");
        };
        assert_eq!(place.full, "3 of 3 cluster-wide");
    }

    #[test]
    fn with_shards_the_cap_is_counted_and_named_per_shard() {
        let caps = Caps {
            shard: Some(2),
            ..cluster(1)
        };
        let fleet = vec![m("a", "r1", State::Running)];
        let Admission::Queued(place) = admit(&caps, &fleet, "a", "new", t(0)) else {
            panic!("the shard's slot is taken");
        };
        assert_eq!(place.full, "1 of 1 in shard 2");
    }

    #[test]
    fn membership_is_read_from_the_status() {
        let mut status = CanaryStatus {
            phase: CanaryPhase::Promoting,
            ..Default::default()
        };
        assert_eq!(member_of("a", "x", &status).state, State::Running);
        status.phase = CanaryPhase::Waiting;
        assert_eq!(member_of("a", "x", &status).state, State::Idle);
        status.conditions = Some(vec![flagger_api::CanaryCondition {
            r#type: CONDITION_QUEUED.into(),
            status: "True".into(),
            last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(7))),
            ..Default::default()
        }]);
        assert_eq!(member_of("a", "x", &status).state, State::Queued(t(7)));
    }
}
