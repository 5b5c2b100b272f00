//! Sharding across replicas (`-shards N`): each replica holds the Leases of some shards and acts
//! only on the canaries of those (the hash and the claiming rule: [`flagger_core::shard`]).
//!
//! Every shard has a [`Fence`], as the single leader has one: a replica writes for a canary only
//! while it renewed the canary's shard Lease within the renew deadline (monotonic clock), so a
//! replica paused past its Leases wakes up unable to write, and its status writes stay
//! conditional on the resourceVersion read. A shard given back is fenced before its Lease is
//! released; a shard taken over wakes its canaries, which resume from their status (iteration,
//! weight) on the new owner.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flagger_api::Canary;
use flagger_core::shard::{self, LeaseState};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};

use crate::leader::{Fence, FenceError, hold_lease, release_lease, retry_period};

/// The shards of this replica: one fence per shard.
#[derive(Debug)]
pub struct Shards {
    fences: Vec<Fence>,
}

impl Shards {
    /// `count` shards on Leases of `lease`.
    pub fn new(count: u32, lease: Duration) -> Shards {
        Shards {
            fences: (0..count).map(|_| Fence::new(lease)).collect(),
        }
    }

    pub fn count(&self) -> u32 {
        self.fences.len() as u32
    }

    /// The shard of a canary.
    pub fn of(&self, key: &ObjectRef<Canary>) -> u32 {
        shard::shard_of(
            key.namespace.as_deref().unwrap_or_default(),
            &key.name,
            self.count(),
        )
    }

    /// `Ok` when this replica may write for the canary: it holds the canary's shard.
    pub fn check(&self, key: &ObjectRef<Canary>) -> Result<(), FenceError> {
        let shard = self.of(key);
        match self.fences.get(shard as usize) {
            Some(fence) => fence.check().map_err(|e| e.for_shard(shard)),
            None => Err(FenceError::NotShardOwner { shard }),
        }
    }

    /// Whether this replica acts on the canary now.
    pub fn owns(&self, key: &ObjectRef<Canary>) -> bool {
        self.check(key).is_ok()
    }

    /// The shards this replica may write for now.
    pub fn held(&self) -> Vec<u32> {
        (0..self.count())
            .filter(|i| self.fences[*i as usize].check().is_ok())
            .collect()
    }
}

/// Holds, claims and gives back shard Leases, round after round.
pub struct Coordinator {
    api: Api<Lease>,
    identity: String,
    lease: Duration,
    shards: Arc<Shards>,
}

impl Coordinator {
    /// A coordinator for the Leases in `namespace`, under `identity`.
    pub fn new(
        client: Client,
        namespace: &str,
        identity: String,
        lease: Duration,
        shards: Arc<Shards>,
    ) -> Coordinator {
        Coordinator {
            api: Api::namespaced(client, namespace),
            identity,
            lease,
            shards,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Runs the rounds, one every retry period; `gained(shard)` is called when this replica
    /// starts holding a shard (its canaries are to be looked at now).
    pub async fn run(&self, gained: impl Fn(u32)) {
        loop {
            // Rounds start on a fixed cadence, whatever a round takes.
            let next = tokio::time::Instant::now() + retry_period(self.lease);
            if let Err(e) = self.round(&gained).await {
                tracing::warn!(
                    error = %crate::error::api_text(&e),
                    "sharding: reading the shard Leases failed"
                );
            }
            tokio::time::sleep_until(next).await;
        }
    }

    /// Reads the Leases, asks the core what to hold, and writes.
    async fn round(&self, gained: &impl Fn(u32)) -> Result<(), kube::Error> {
        let n = self.shards.count();
        let listed = self.api.list(&Default::default()).await?;
        let mut by_name: BTreeMap<String, Lease> = listed
            .items
            .into_iter()
            .map(|l| (l.name_any(), l))
            .collect();
        let state = |l: Option<&Lease>| {
            l.map(|l| {
                let spec = l.spec.clone().unwrap_or_default();
                LeaseState {
                    holder: spec.holder_identity.unwrap_or_default(),
                    renewed: spec.renew_time.map(|t| t.0),
                    duration_secs: i64::from(spec.lease_duration_seconds.unwrap_or(0)),
                }
            })
        };
        let members: Vec<Option<LeaseState>> = (0..n)
            .map(|k| state(by_name.get(&shard::member_lease(k))))
            .collect();
        let leases: Vec<Option<LeaseState>> = (0..n)
            .map(|i| state(by_name.get(&shard::shard_lease(i))))
            .collect();
        let plan = shard::plan(&self.identity, &members, &leases, Timestamp::now());

        for i in &plan.release {
            // Fenced first: nothing is written for the shard once its Lease may be taken.
            self.shards.fences[*i as usize].revoke();
        }
        for i in (0..n).filter(|i| !plan.hold.contains(i)) {
            self.shards.fences[i as usize].revoke();
        }
        // The shards held are renewed first, together: their fences run from these writes.
        let renewals = plan.hold.iter().map(|i| {
            let name = shard::shard_lease(*i);
            let current = by_name.get(&name).cloned();
            async move {
                let sent = Instant::now();
                let held = hold_lease(&self.api, &name, &self.identity, self.lease, current).await;
                (*i, sent, held)
            }
        });
        for (i, sent, held) in futures::future::join_all(renewals).await {
            let fence = &self.shards.fences[i as usize];
            let had = fence.check().is_ok();
            match held {
                Ok(true) => {
                    fence.renewed(sent);
                    if !had {
                        tracing::info!(identity = %self.identity, "sharding: holding shard {i} of {n}");
                        gained(i);
                    }
                }
                Ok(false) => fence.revoke(),
                // The fence lapses by itself when renewals keep failing.
                Err(e) => tracing::warn!(
                    error = %crate::error::api_text(&e),
                    "sharding: renewing the Lease of shard {i} failed"
                ),
            }
        }
        if let Some(k) = plan.member {
            let name = shard::member_lease(k);
            let current = by_name.remove(&name);
            if let Err(e) = hold_lease(&self.api, &name, &self.identity, self.lease, current).await
            {
                tracing::warn!(error = %crate::error::api_text(&e), "sharding: renewing member Lease {name} failed");
            }
        }
        for i in &plan.release {
            let name = shard::shard_lease(*i);
            release_lease(&self.api, &name, &self.identity, by_name.remove(&name)).await;
            tracing::info!(
                identity = %self.identity,
                "sharding: gave shard {i} back (a share is {} of {n} shards)",
                plan.share
            );
        }
        Ok(())
    }

    /// Gives every Lease this replica holds back (shutdown), fenced first.
    pub async fn release_all(&self) {
        let n = self.shards.count();
        for fence in &self.shards.fences {
            fence.revoke();
        }
        let names = (0..n)
            .map(shard::shard_lease)
            .chain((0..n).map(shard::member_lease));
        for name in names {
            if let Ok(current) = self.api.get_opt(&name).await {
                release_lease(&self.api, &name, &self.identity, current).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_writes_only_for_canaries_of_shards_it_renewed() {
        let shards = Shards::new(3, Duration::from_secs(4));
        let key = ObjectRef::<Canary>::new("app-1").within("test");
        let mine = shards.of(&key);
        assert_eq!(mine, shard::shard_of("test", "app-1", 3));
        let refused = shards.check(&key).expect_err("no shard held yet");
        assert_eq!(
            refused.to_string(),
            format!("not writing: this replica does not hold the Lease of shard {mine}")
        );
        shards.fences[mine as usize].renewed(Instant::now());
        assert!(shards.owns(&key));
        assert_eq!(shards.held(), vec![mine]);
        let other = (mine + 1) % 3;
        shards.fences[other as usize].renewed(Instant::now() - Duration::from_secs(3));
        assert_eq!(shards.held(), vec![mine], "a lapsed renewal does not count");
    }
}
