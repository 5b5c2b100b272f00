//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's Lease fields and
//! timing (Flagger: lease 60s, renew deadline 15s, retry 5s): a replica acts (reconciles, writes
//! status, applies effects) only while it holds the Lease; it renews it every `retry` and steps
//! down, ending the controller, when it cannot renew within the renew deadline (a quarter of the
//! lease). A stopping leader releases the Lease so another replica takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client};

/// The Lease's name: Flagger's, so that Flagger and flagger-rs replicas running side by side
/// (during a switch from one to the other) share one election.
pub const LEASE_NAME: &str = "flagger-leader-election";

/// One replica's view of the election.
pub struct Elector {
    api: Api<Lease>,
    identity: String,
    lease: Duration,
    renew_deadline: Duration,
    retry: Duration,
}

impl Elector {
    /// An elector for the Lease `flagger-leader-election` in `namespace`, under `identity` (pod name and a
    /// random suffix).
    pub fn new(client: Client, namespace: &str, identity: String, lease: Duration) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            identity,
            lease,
            renew_deadline: lease / 4,
            retry: (lease / 12).clamp(Duration::from_millis(100), Duration::from_secs(5)),
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
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(
                        error = %crate::error::api_text(&e),
                        "leader election: renewing the Lease failed"
                    );
                    if last_renewal.elapsed() >= self.renew_deadline {
                        return;
                    }
                }
            }
        }
    }

    /// Gives the Lease up so another replica takes over without waiting for it to expire.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(LEASE_NAME).await {
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() == Some(self.identity.as_str()) {
                spec.holder_identity = None;
                spec.renew_time = None;
                let _ = self
                    .api
                    .replace(LEASE_NAME, &crate::post_params(), &lease)
                    .await;
            }
        }
    }

    /// Takes or renews the Lease: `Ok(true)` when this replica holds it afterwards. Writes are
    /// guarded by the resourceVersion, so two replicas never both win.
    async fn try_hold(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let mine = |transitions: Option<i32>, acquired: Option<MicroTime>| LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease.as_secs().max(1) as i32),
            acquire_time: acquired.or(Some(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: transitions,
            ..Default::default()
        };
        let Some(mut lease) = self.api.get_opt(LEASE_NAME).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    ..Default::default()
                },
                spec: Some(mine(Some(0), None)),
            };
            return match self.api.create(&crate::post_params(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let held_by_me = spec.holder_identity.as_deref() == Some(self.identity.as_str());
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
        match self
            .api
            .replace(LEASE_NAME, &crate::post_params(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}
