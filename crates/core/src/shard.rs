//! Sharding across replicas (`-shards N`): which canaries a replica acts on, and which shard
//! Leases it holds, claims or gives up.
//!
//! - A canary belongs to shard `fnv1a64("<namespace>/<name>") mod N` ([`shard_of`]): FNV-1a,
//!   64-bit (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`) over the UTF-8 bytes of
//!   the namespace, a `/` and the name. It depends on nothing but those and `N`, so every
//!   replica (and every version of the controller) agrees on it.
//! - Shard `i` is owned through the Lease `flagger-shard-<i>`; a replica acts on a canary only
//!   while it holds its shard's Lease (renewed within the renew deadline, as the single
//!   leader's, see the controller's `leader` module: the same fencing).
//! - Replicas announce themselves on member Leases `flagger-shard-member-<k>` (`k < N`: a
//!   replica beyond `N` has nothing to hold), so that a replica holding no shard yet is
//!   counted. With `R` live members, a replica aims at `ceil(N / R)` shards: it claims free or
//!   expired shards up to that, and gives back the ones above it, so that a new replica gets
//!   its share and a dead replica's shards are taken over once their Leases expire.
//!
//! [`plan`] is the decision, from observed Leases, the replica's identity and the time: pure.

use k8s_openapi::jiff::Timestamp;

/// Prefix of the shard Leases' names: `flagger-shard-<i>`.
pub const SHARD_LEASE_PREFIX: &str = "flagger-shard-";
/// Prefix of the member Leases' names: `flagger-shard-member-<k>`.
pub const MEMBER_LEASE_PREFIX: &str = "flagger-shard-member-";

/// The name of shard `i`'s Lease.
pub fn shard_lease(i: u32) -> String {
    format!("{SHARD_LEASE_PREFIX}{i}")
}

/// The name of member slot `k`'s Lease.
pub fn member_lease(k: u32) -> String {
    format!("{MEMBER_LEASE_PREFIX}{k}")
}

/// FNV-1a, 64-bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The shard of the canary `namespace/name` among `shards` (0 when `shards` is 0).
pub fn shard_of(namespace: &str, name: &str, shards: u32) -> u32 {
    if shards == 0 {
        return 0;
    }
    let key = format!("{namespace}/{name}");
    (fnv1a64(key.as_bytes()) % u64::from(shards)) as u32
}

/// A Lease as observed (`None` in the observation lists: it does not exist).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseState {
    /// `spec.holderIdentity` (empty: free).
    pub holder: String,
    /// `spec.renewTime`.
    pub renewed: Option<Timestamp>,
    /// `spec.leaseDurationSeconds`.
    pub duration_secs: i64,
}

impl LeaseState {
    /// Its holder, when it has one whose Lease has not expired at `now`.
    pub fn live_holder(&self, now: Timestamp) -> Option<&str> {
        if self.holder.is_empty() {
            return None;
        }
        let renewed = self.renewed?;
        let age_ms = now.as_millisecond() - renewed.as_millisecond();
        (age_ms <= self.duration_secs.saturating_mul(1000)).then_some(self.holder.as_str())
    }
}

/// What a replica does with the Leases this round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The member slot to take or renew (`None`: every slot is held by a live replica).
    pub member: Option<u32>,
    /// Shards to renew (held) or take (free or expired), in order.
    pub hold: Vec<u32>,
    /// Shards held and given back (over this replica's share).
    pub release: Vec<u32>,
    /// The share aimed at: `ceil(N / live members)`.
    pub share: u32,
}

/// Decides the round of `identity` among `shards.len()` shards (`members.len()` member slots),
/// at `now` (see the module documentation).
pub fn plan(
    identity: &str,
    members: &[Option<LeaseState>],
    shards: &[Option<LeaseState>],
    now: Timestamp,
) -> Plan {
    let n = shards.len() as u32;
    if n == 0 {
        return Plan::default();
    }
    let mine = |l: &Option<LeaseState>| l.as_ref().is_some_and(|l| l.holder == identity);
    let live = |l: &Option<LeaseState>| {
        l.as_ref()
            .and_then(|l| l.live_holder(now))
            .map(str::to_string)
    };
    // The member slot: the one held already, else the first free or expired one.
    let member = members
        .iter()
        .position(mine)
        .or_else(|| members.iter().position(|l| live(l).is_none()))
        .map(|k| k as u32);
    let mut replicas: std::collections::BTreeSet<String> =
        members.iter().filter_map(live).collect();
    replicas.insert(identity.to_string());
    let share = n.div_ceil(replicas.len() as u32);

    let held: Vec<u32> = (0..n).filter(|i| mine(&shards[*i as usize])).collect();
    let mut hold: Vec<u32> = held.iter().copied().take(share as usize).collect();
    let release: Vec<u32> = held.iter().copied().skip(share as usize).collect();
    // Free shards, searched from a place of this replica's own, so that replicas starting
    // together do not all race for shard 0.
    let start = (fnv1a64(identity.as_bytes()) % u64::from(n)) as u32;
    for i in (0..n).map(|k| (start + k) % n) {
        if hold.len() >= share as usize {
            break;
        }
        let lease = &shards[i as usize];
        if !mine(lease) && live(lease).is_none() {
            hold.push(i);
        }
    }
    Plan {
        member,
        hold,
        release,
        share,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).expect("timestamp")
    }

    fn held(by: &str, at: i64) -> Option<LeaseState> {
        Some(LeaseState {
            holder: by.into(),
            renewed: Some(t(at)),
            duration_secs: 10,
        })
    }

    #[test]
    fn the_shard_of_a_canary_is_a_stable_hash_of_its_namespace_and_name() {
        // FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(shard_of("test", "app-0", 3), shard_of("test", "app-0", 3));
        assert_eq!(
            shard_of("test", "app", 7),
            (fnv1a64(b"test/app") % 7) as u32
        );
        assert_eq!(shard_of("a", "b", 0), 0);
        // 300 canaries spread over 3 shards.
        let mut counts = [0u32; 3];
        for i in 0..300 {
            counts[shard_of("test", &format!("app-{i}"), 3) as usize] += 1;
        }
        assert!(counts.iter().all(|c| *c > 70), "{counts:?}");
    }

    #[test]
    fn a_lone_replica_takes_every_shard_and_a_slot() {
        let p = plan("a", &[None, None, None], &[None, None, None], t(0));
        assert_eq!(p.member, Some(0));
        assert_eq!(p.share, 3);
        let mut hold = p.hold.clone();
        hold.sort();
        assert_eq!(hold, vec![0, 1, 2]);
        assert!(p.release.is_empty());
    }

    #[test]
    fn a_new_member_makes_the_holder_give_back_its_excess_and_takes_it() {
        let shards = vec![held("a", 0), held("a", 0), held("a", 0)];
        // b announced itself: a's share is now 2; it gives the highest shard back.
        let members = vec![held("a", 0), held("b", 0), None];
        let p = plan("a", &members, &shards, t(1));
        assert_eq!((p.share, p.member), (2, Some(0)));
        assert_eq!(p.hold, vec![0, 1]);
        assert_eq!(p.release, vec![2]);
        // b cannot take what a holds; once given back, it takes it.
        let p = plan("b", &members, &shards, t(1));
        assert_eq!((p.member, p.hold.len()), (Some(1), 0));
        let shards = vec![
            held("a", 1),
            held("a", 1),
            Some(LeaseState {
                holder: String::new(),
                renewed: None,
                duration_secs: 10,
            }),
        ];
        let p = plan("b", &members, &shards, t(2));
        assert_eq!(p.hold, vec![2]);
    }

    #[test]
    fn a_dead_replica_s_shards_are_taken_over_once_their_leases_expire() {
        // c stopped renewing at 0; before its Lease expires nothing moves.
        let before = vec![held("a", 9), held("b", 9), held("c", 0)];
        let members_9 = vec![held("a", 9), held("b", 9), held("c", 0)];
        let p = plan("a", &members_9, &before, t(9));
        assert_eq!((p.share, p.hold.clone()), (1, vec![0]));
        // After expiry: two live members, a share of 2 each; shard 2 is free to take.
        let after = vec![held("a", 11), held("b", 11), held("c", 0)];
        let members_11 = vec![held("a", 11), held("b", 11), held("c", 0)];
        let p = plan("a", &members_11, &after, t(11));
        assert_eq!(p.share, 2);
        assert_eq!(p.hold, vec![0, 2]);
        let p = plan("b", &members_11, &after, t(11));
        assert_eq!(p.hold, vec![1, 2]);
        // Both may try: the Lease write is conditional, one wins. The next round the loser
        // sees it held.
        let won = vec![held("a", 12), held("b", 12), held("a", 12)];
        let p = plan("b", &members_11, &won, t(12));
        assert_eq!(p.hold, vec![1]);
    }

    #[test]
    fn more_replicas_than_shards_leave_the_extra_ones_idle() {
        let members = vec![held("a", 0), held("b", 0)];
        let shards = vec![held("a", 0), held("b", 0)];
        let p = plan("c", &members, &shards, t(1));
        assert_eq!(p.member, None);
        assert!(p.hold.is_empty());
    }
}
