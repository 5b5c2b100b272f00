//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's Lease fields and
//! timing (Flagger: lease 60s, renew deadline 15s, retry 5s): a replica acts (reconciles, writes
//! status, applies effects) only while it holds the Lease; it renews it every `retry` and steps
//! down, ending the controller, when it cannot renew within the renew deadline (a quarter of the
//! lease). A stopping leader releases the Lease so another replica takes over at once.
//!
//! Leadership is fenced: noticing a lost Lease takes a renewal attempt, and a replica paused
//! past its Lease (a VM stall, SIGSTOP) wakes up still believing it leads. So before each write
//! batch the controller asks the [`Fence`] whether it renewed the Lease within the renew
//! deadline, measured on the monotonic clock (it keeps running while the process is stopped),
//! and its status writes are conditional on the resourceVersion it read: a deposed leader's
//! write is refused (409) instead of rolling the canary back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client};

pub use crate::error::FenceError;

/// The Lease's name: Flagger's, so that Flagger and flagger-rs replicas running side by side
/// (during a switch from one to the other) share one election.
pub const LEASE_NAME: &str = "flagger-leader-election";

/// Whether this replica may write: it renewed the Lease within the renew deadline.
#[derive(Debug)]
pub struct Fence {
    /// When the last successful renewal was sent (monotonic clock); `None`: not leading.
    renewed: Mutex<Option<Instant>>,
    deadline: Duration,
}

impl Fence {
    /// A fence for a Lease of `lease` (renew deadline: a quarter of it, as the elector's).
    pub fn new(lease: Duration) -> Fence {
        Fence {
            renewed: Mutex::new(None),
            deadline: renew_deadline(lease),
        }
    }

    /// Records a renewal sent at `at`.
    pub fn renewed(&self, at: Instant) {
        if let Ok(mut r) = self.renewed.lock() {
            *r = Some(at);
        }
    }

    /// The Lease is lost or given up.
    pub fn revoke(&self) {
        if let Ok(mut r) = self.renewed.lock() {
            *r = None;
        }
    }

    /// `Ok` when the Lease was renewed less than the renew deadline before `now`; else why
    /// this replica must not write.
    pub fn check_at(&self, now: Instant) -> Result<(), FenceError> {
        let renewed = self.renewed.lock().map(|r| *r).unwrap_or(None);
        match renewed {
            Some(at) if now.saturating_duration_since(at) < self.deadline => Ok(()),
            Some(at) => Err(FenceError::Lapsed {
                ago: now.saturating_duration_since(at).as_secs_f64(),
                deadline: self.deadline.as_secs_f64(),
            }),
            None => Err(FenceError::NotLeader),
        }
    }

    /// [`Fence::check_at`] now.
    pub fn check(&self) -> Result<(), FenceError> {
        self.check_at(Instant::now())
    }
}

fn renew_deadline(lease: Duration) -> Duration {
    lease / 4
}

/// How often a holder renews (and a candidate retries): a twelfth of the Lease, between
/// 100 ms and 5 s (Flagger's 5 s for its 60 s Lease).
pub fn retry_period(lease: Duration) -> Duration {
    (lease / 12).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// One replica's view of the election.
pub struct Elector {
    api: Api<Lease>,
    identity: String,
    lease: Duration,
    renew_deadline: Duration,
    retry: Duration,
    fence: Arc<Fence>,
}

impl Elector {
    /// An elector for the Lease `flagger-leader-election` in `namespace`, under `identity` (pod
    /// name and a random suffix), recording its renewals in `fence`.
    pub fn new(
        client: Client,
        namespace: &str,
        identity: String,
        lease: Duration,
        fence: Arc<Fence>,
    ) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            identity,
            lease,
            renew_deadline: renew_deadline(lease),
            retry: retry_period(lease),
            fence,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_hold().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    error = %crate::error::api_text(&e),
                    "leader election: reading the Lease failed"
                ),
            }
            tokio::time::sleep(self.retry).await;
        }
    }

    /// Renews the Lease until it is lost (another holder, or no renewal within the renew
    /// deadline); then returns.
    pub async fn hold(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.retry).await;
            match self.try_hold().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    self.fence.revoke();
                    return;
                }
                Err(e) => {
                    tracing::warn!(
                        error = %crate::error::api_text(&e),
                        "leader election: renewing the Lease failed"
                    );
                    if last_renewal.elapsed() >= self.renew_deadline {
                        self.fence.revoke();
                        return;
                    }
                }
            }
        }
    }

    /// Gives the Lease up so another replica takes over without waiting for it to expire.
    pub async fn release(&self) {
        self.fence.revoke();
        if let Ok(current) = self.api.get_opt(LEASE_NAME).await {
            release_lease(&self.api, LEASE_NAME, &self.identity, current).await;
        }
    }

    /// Takes or renews the Lease: `Ok(true)` when this replica holds it afterwards. Writes are
    /// guarded by the resourceVersion, so two replicas never both win.
    async fn try_hold(&self) -> Result<bool, kube::Error> {
        let sent = Instant::now();
        let held = self.try_hold_once().await?;
        if held {
            // The Lease runs from the renewal written; measured from before it was sent.
            self.fence.renewed(sent);
        }
        Ok(held)
    }

    async fn try_hold_once(&self) -> Result<bool, kube::Error> {
        let current = self.api.get_opt(LEASE_NAME).await?;
        hold_lease(&self.api, LEASE_NAME, &self.identity, self.lease, current).await
    }
}

/// Gives the Lease `name` (as read: `current`) up when `identity` holds it; the write is
/// conditional on the version read, and best effort (the Lease expires anyway).
pub async fn release_lease(api: &Api<Lease>, name: &str, identity: &str, current: Option<Lease>) {
    let Some(mut lease) = current else { return };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() == Some(identity) {
        spec.holder_identity = None;
        spec.renew_time = None;
        let _ = api
            .replace(name, &crate::write::post_params(), &lease)
            .await;
    }
}

/// Takes or renews the Lease `name` for `identity`, given the Lease as read (`current`; `None`:
/// it does not exist): `Ok(true)` when `identity` holds it afterwards. A Lease another holder
/// renewed within its duration is left alone. Writes are conditional on the version read (a
/// create fails when it exists), so two replicas never both win.
pub async fn hold_lease(
    api: &Api<Lease>,
    name: &str,
    identity: &str,
    duration: Duration,
    current: Option<Lease>,
) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let mine = |transitions: Option<i32>, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(duration.as_secs().max(1) as i32),
        acquire_time: acquired.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: transitions,
        ..Default::default()
    };
    let Some(mut lease) = current else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(mine(Some(0), None)),
        };
        return match api.create(&crate::write::post_params(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let held_by_me = spec.holder_identity.as_deref() == Some(identity);
    let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
    let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
        (Some(renewed), Some(secs)) => {
            now.as_millisecond() - renewed.0.as_millisecond() > i64::from(secs) * 1000
        }
        _ => true,
    };
    if !(held_by_me || free || expired) {
        return Ok(false);
    }
    lease.spec = Some(if held_by_me {
        mine(spec.lease_transitions, spec.acquire_time.clone())
    } else {
        mine(Some(spec.lease_transitions.unwrap_or(0) + 1), None)
    });
    match api
        .replace(name, &crate::write::post_params(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_writes_only_within_the_renew_deadline_of_its_last_renewal() {
        let fence = Fence::new(Duration::from_secs(2));
        let t0 = Instant::now();
        assert!(fence.check_at(t0).is_err(), "not leading yet");
        fence.renewed(t0);
        assert!(fence.check_at(t0 + Duration::from_millis(499)).is_ok());
        let late = fence
            .check_at(t0 + Duration::from_secs(5))
            .expect_err("paused past its Lease");
        let text = late.to_string();
        assert!(text.contains("5.0s ago") && text.contains("0.5s"), "{text}");
        assert_eq!(late.category(), crate::error::Category::Conflict);
        fence.renewed(t0 + Duration::from_secs(5));
        assert!(fence.check_at(t0 + Duration::from_millis(5200)).is_ok());
        fence.revoke();
        assert!(fence.check_at(t0 + Duration::from_millis(5200)).is_err());
    }
}
