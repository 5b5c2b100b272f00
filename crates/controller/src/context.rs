//! State shared by every reconcile: the client, settings derived from the flags, metrics, the
//! event recorder, HTTP clients and the per-canary tick schedule.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flagger_core::conflict::{FightLog, FightPolicy};
use flagger_core::validate::ValidationContext;
use flagger_core::workload::LabelPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::runtime::reflector::ObjectRef;

use flagger_api::{Canary, CanaryStatus};

use crate::cache::Caches;
use crate::events::Recorder;
use crate::metrics::Metrics;
use crate::templates::Lookups;
use crate::webhook::Clients;

/// Settings derived from the flags.
#[derive(Clone, Debug)]
pub struct Settings {
    pub validation: ValidationContext,
    pub labels: LabelPolicy,
    pub metrics_server: String,
    pub event_webhook: Option<String>,
    pub config_tracking: bool,
    /// When to stop reverting another writer's changes to generated objects.
    pub fights: FightPolicy,
    /// Finalize every Canary (hand traffic back on deletion), not only `revertOnDeletion` ones.
    pub safe_deletion: bool,
    /// The global notifier (`-slack-*` / `-msteams-*`), for canaries without alert routes.
    pub notifier: Option<flagger_core::notify::Destination>,
    /// `-cluster-name`: the `Cluster` field of every alert.
    pub cluster_name: Option<String>,
    /// `-ingress-annotations-prefix`: the nginx router's annotation prefix.
    pub ingress_prefix: String,
    /// `-autoscaler-sync=immediate`: a change to the target's HPA reaches the primary HPA at
    /// once (Flagger's behaviour, `promotion`: at the next promotion).
    pub autoscaler_sync_immediate: bool,
    /// `-max-concurrent-canaries` and its per-namespace twin.
    pub caps: flagger_core::queue::Caps,
    /// `-ingress-class`: the contour router's `spec.ingressClassName`.
    pub ingress_class: String,
}

/// Which canaries track a ConfigMap or Secret (`<namespace>/<kind>/<name>`), learned while
/// observing targets, so that a config change can trigger its canaries at once.
#[derive(Default)]
pub struct ConfigIndex {
    by_config: Mutex<HashMap<String, HashSet<ObjectRef<Canary>>>>,
}

impl ConfigIndex {
    pub fn key(namespace: &str, kind: &str, name: &str) -> String {
        format!("{namespace}/{kind}/{name}")
    }

    /// Records the configs a canary tracks.
    pub fn set(&self, canary: ObjectRef<Canary>, keys: impl IntoIterator<Item = String>) {
        if let Ok(mut m) = self.by_config.lock() {
            for set in m.values_mut() {
                set.remove(&canary);
            }
            for k in keys {
                m.entry(k).or_default().insert(canary.clone());
            }
            m.retain(|_, v| !v.is_empty());
        }
    }

    /// The index itself, for sizing it (`memory.rs`, which sits above this module).
    pub fn table(&self) -> &Mutex<HashMap<String, HashSet<ObjectRef<Canary>>>> {
        &self.by_config
    }

    /// The canaries that track a config.
    pub fn canaries(&self, key: &str) -> Vec<ObjectRef<Canary>> {
        self.by_config
            .lock()
            .ok()
            .and_then(|m| m.get(key).map(|s| s.iter().cloned().collect()))
            .unwrap_or_default()
    }
}

/// Everything a reconcile needs.
pub struct Context {
    pub client: Client,
    /// Watch caches of everything the controller reads.
    pub caches: Caches,
    /// Watch caches of the kinds known at run time (routing objects, ScaledObjects).
    pub objects: crate::watched::Objects,
    pub settings: Settings,
    pub metrics: Metrics,
    pub recorder: Recorder,
    pub http: Clients,
    /// Where MetricTemplates and their Secrets are read from.
    pub lookups: Lookups,
    pub configs: ConfigIndex,
    /// When each canary's next analysis tick is due.
    pub schedule: Mutex<HashMap<ObjectRef<Canary>, tokio::time::Instant>>,
    /// Caches synced: `/readyz` answers 200.
    pub ready: AtomicBool,
    /// The last status each reconcile wrote, until the watch cache catches up with it.
    pub written: Mutex<HashMap<ObjectRef<Canary>, WrittenStatus>>,
    /// Per canary: other writers' changes to its generated objects, and the objects yielded.
    pub fights: Mutex<HashMap<ObjectRef<Canary>, FightLog>>,
    /// Alerts on their way out, in order.
    pub outbox: crate::alerts::Outbox,
    /// Consecutive failed reconciles per canary (the retry backoff).
    pub failures: Mutex<HashMap<ObjectRef<Canary>, u32>>,
    /// With leader election: whether this replica may write (see [`crate::leader`]).
    pub fence: Option<std::sync::Arc<crate::leader::Fence>>,
    /// With `-shards`: the shards this replica holds (see [`crate::shard`]).
    pub shards: Option<std::sync::Arc<crate::shard::Shards>>,
    /// Canaries to read again from the API server (a status write was refused as stale).
    pub refresh: Mutex<HashSet<ObjectRef<Canary>>>,
    /// The fleet: the controller's Canary cache (set once the controller is built).
    pub canaries: std::sync::OnceLock<kube::runtime::reflector::Store<Canary>>,
    /// Held from reading the fleet to recording the status by a canary that may start a run
    /// under a cap on concurrent rollouts, so that two reconciles never take the same slot.
    pub admission: tokio::sync::Mutex<()>,
    /// Canaries to reconcile now (a rollout slot was freed: the ones in line ask again).
    pub wake: tokio::sync::mpsc::UnboundedSender<ObjectRef<Canary>>,
}

/// A status write the reflector may not have seen yet.
#[derive(Clone, Debug)]
pub struct WrittenStatus {
    /// resourceVersion of the object the write produced.
    pub after: String,
    pub status: CanaryStatus,
    pub at: std::time::Instant,
}

/// How long a remembered status write may stand in for the cache's copy.
const WRITTEN_STATUS_TTL: Duration = Duration::from_secs(30);

impl Context {
    /// Wall-clock time for timestamps written to the API (status, events).
    pub fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    /// Time left until the canary's next tick (zero when due or never run).
    pub fn until_due(&self, canary: &ObjectRef<Canary>) -> Duration {
        let now = tokio::time::Instant::now();
        self.schedule
            .lock()
            .ok()
            .and_then(|s| s.get(canary).copied())
            .map(|due| due.saturating_duration_since(now))
            .unwrap_or_default()
    }

    /// When the canary's next tick is due (`None` before its first).
    pub fn due(&self, canary: &ObjectRef<Canary>) -> Option<tokio::time::Instant> {
        self.schedule
            .lock()
            .ok()
            .and_then(|s| s.get(canary).copied())
    }

    /// Records that a tick ran; the next is due one interval later.
    pub fn ticked(&self, canary: ObjectRef<Canary>, interval: Duration) {
        if let Ok(mut s) = self.schedule.lock() {
            s.insert(canary, tokio::time::Instant::now() + interval);
        }
    }

    /// `Ok` when this replica may write for `canary`: it leads (renewed the Lease within the
    /// renew deadline), or holds the canary's shard (`-shards`), or runs without either.
    pub fn fenced(&self, canary: &Canary) -> Result<(), crate::leader::FenceError> {
        if let Some(shards) = &self.shards {
            return shards.check(&ObjectRef::from_obj(canary));
        }
        self.fence.as_ref().map_or(Ok(()), |f| f.check())
    }

    /// Whether this replica acts on the canary: always, but with `-shards` only on the
    /// canaries of the shards it holds.
    pub fn acts_on(&self, key: &ObjectRef<Canary>) -> bool {
        self.shards.as_ref().is_none_or(|s| s.owns(key))
    }

    /// With `-shards`: the canary's shard.
    pub fn shard_of(&self, key: &ObjectRef<Canary>) -> Option<u32> {
        self.shards.as_ref().map(|s| s.of(key))
    }

    /// A shard was taken over: its canaries are read again from the API server (this replica
    /// may remember a status it wrote before it last held the shard) and looked at now, to
    /// resume where their status says.
    pub fn shard_gained(&self, shard: u32) {
        let Some(store) = self.canaries.get() else {
            return;
        };
        for c in store.state() {
            let key = ObjectRef::from_obj(&*c);
            if self.shard_of(&key) == Some(shard) {
                self.stale(&key);
                let _ = self.wake.send(key);
            }
        }
    }

    /// Marks a canary to be read again from the API server at its next reconcile, forgetting
    /// the status this controller last wrote (another writer got there first).
    pub fn stale(&self, key: &ObjectRef<Canary>) {
        if let Ok(mut w) = self.written.lock() {
            w.remove(key);
        }
        if let Ok(mut r) = self.refresh.lock() {
            r.insert(key.clone());
        }
    }

    /// Whether the canary must be read again (and clears the mark).
    pub fn take_refresh(&self, key: &ObjectRef<Canary>) -> bool {
        self.refresh.lock().is_ok_and(|mut r| r.remove(key))
    }

    /// The status to act on and the resourceVersion it was written at: the one this
    /// controller last wrote, until the watch cache shows it (the cached object is the
    /// version the write produced, or already carries that status; only the controller
    /// writes status). Acting on an older cached copy, including the versions produced by
    /// earlier writes still in flight, would run a step twice (e.g. emit `Initialization
    /// done!` twice); writing with its resourceVersion would be refused as stale.
    pub fn current_version(
        &self,
        key: &ObjectRef<Canary>,
        canary: &Canary,
    ) -> (CanaryStatus, String) {
        let rv = canary.metadata.resource_version.clone().unwrap_or_default();
        let cached = canary.status.clone().unwrap_or_default();
        if let Ok(mut w) = self.written.lock()
            && let Some(memo) = w.get(key)
        {
            let caught_up = memo.after == rv || memo.status == cached;
            if caught_up || memo.at.elapsed() > WRITTEN_STATUS_TTL {
                w.remove(key);
            } else {
                return (memo.status.clone(), memo.after.clone());
            }
        }
        (cached, rv)
    }

    /// The status to act on (see [`Context::current_version`]).
    pub fn current_status(&self, key: &ObjectRef<Canary>, canary: &Canary) -> CanaryStatus {
        self.current_version(key, canary).0
    }

    /// Remembers a status write that produced resourceVersion `after`.
    pub fn wrote_status(&self, key: ObjectRef<Canary>, after: String, status: CanaryStatus) {
        if let Ok(mut w) = self.written.lock() {
            w.insert(
                key,
                WrittenStatus {
                    after,
                    status,
                    at: std::time::Instant::now(),
                },
            );
        }
    }

    /// Counts a failed reconcile of the canary; returns how many failed in a row.
    pub fn failed(&self, canary: &ObjectRef<Canary>) -> u32 {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(canary.clone()).or_default();
        *n = n.saturating_add(1);
        *n
    }

    /// A reconcile of the canary succeeded: its backoff starts over.
    pub fn succeeded(&self, canary: &ObjectRef<Canary>) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(canary);
        }
    }

    /// What alert delivery needs.
    pub fn alerting(&self) -> crate::alerts::Alerting<'_> {
        crate::alerts::Alerting {
            client: &self.client,
            caches: &self.caches,
            notifier: self.settings.notifier.as_ref(),
            cluster_name: self.settings.cluster_name.as_deref(),
            outbox: &self.outbox,
        }
    }

    /// The fleet as the cap on concurrent rollouts sees it for `canary`: every cached canary
    /// (with `-shards`, of the canary's shard) with the status this controller acts on (its own
    /// writes count before the cache shows them).
    pub fn fleet(&self, canary: &ObjectRef<Canary>) -> Vec<flagger_core::queue::Member> {
        let Some(store) = self.canaries.get() else {
            return Vec::new();
        };
        let shard = self.shard_of(canary);
        store
            .state()
            .iter()
            .filter(|c| shard.is_none() || self.shard_of(&ObjectRef::from_obj(&***c)) == shard)
            .map(|c| {
                let key = ObjectRef::from_obj(&**c);
                let status = self.current_status(&key, c);
                flagger_core::queue::member_of(
                    key.namespace.as_deref().unwrap_or_default(),
                    &key.name,
                    &status,
                )
            })
            .collect()
    }

    /// A rollout slot was freed: the canaries in line are reconciled now, not at their next
    /// tick.
    pub fn wake_queued(&self) {
        let Some(store) = self.canaries.get() else {
            return;
        };
        for c in store.state() {
            let key = ObjectRef::from_obj(&*c);
            let status = self.current_status(&key, &c);
            if matches!(
                flagger_core::queue::member_of("", "", &status).state,
                flagger_core::queue::State::Queued(_)
            ) {
                let _ = self.wake.send(key);
            }
        }
    }

    /// Forgets a deleted canary.
    pub fn forget(&self, canary: &ObjectRef<Canary>) {
        if let Ok(mut s) = self.schedule.lock() {
            s.remove(canary);
        }
        if let Ok(mut w) = self.written.lock() {
            w.remove(canary);
        }
        if let Ok(mut f) = self.fights.lock() {
            f.remove(canary);
        }
        if let Ok(mut r) = self.refresh.lock() {
            r.remove(canary);
        }
        self.succeeded(canary);
        self.configs.set(canary.clone(), []);
    }

    /// Runs `f` on the canary's fight log.
    pub fn with_fights<T>(
        &self,
        canary: &ObjectRef<Canary>,
        f: impl FnOnce(&mut FightLog) -> T,
    ) -> T {
        let mut guard = self.fights.lock().unwrap_or_else(|e| e.into_inner());
        let log = guard.entry(canary.clone()).or_default();
        let out = f(log);
        // Most canaries never see a fight: an empty log is not kept (about 500 bytes each).
        if log.is_empty() {
            guard.remove(canary);
        }
        out
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}
