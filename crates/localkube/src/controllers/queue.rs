//! A keyed work queue and the loop that feeds it from store events, as kube controllers do:
//! each store event is mapped to the keys it concerns (the object, its owner, the services
//! selecting a pod, ...), each queued key is reconciled alone, and a key is looked at again
//! later only when its reconcile asked for it (readiness delays, progress deadlines).
//!
//! A controller that starts work elsewhere (the kubelet's probes, the KEDA scaler's queries)
//! gets the results back as inputs ([`Inputs`]): each input is handed to the controller, which
//! says which keys it concerns, on the same loop as the store events.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{mpsc, watch};

use crate::api::Api;
use crate::store::StoreEvent;

/// Keys reconciled before the loop yields and picks up new events.
const BATCH: usize = 64;

/// A simulated controller, reconciling one key at a time.
pub(super) trait Reconciler: Send + 'static {
    type Key: Clone + Eq + Hash + Send + std::fmt::Debug;

    /// Every key there is, rebuilding any cache from the store (on start and after missed
    /// events).
    fn resync(&mut self, api: &Api) -> Vec<Self::Key>;

    /// The keys a store event concerns, appended to `out`.
    fn keys(&mut self, api: &Api, ev: &StoreEvent, out: &mut Vec<Self::Key>);

    /// Reconciles one key; `Some(d)` asks for another look after `d`.
    fn reconcile(&mut self, api: &Api, key: &Self::Key) -> Option<Duration>;
}

/// A controller that also takes inputs from work it started (probe results, query answers).
pub(super) trait Inputs: Reconciler {
    type Input: Send + 'static;

    /// Takes one input; the keys it concerns are appended to `out`.
    fn input(&mut self, api: &Api, input: Self::Input, out: &mut Vec<Self::Key>);
}

/// Deduplicated keys to reconcile now, plus keys due later.
pub(super) struct WorkQueue<K> {
    queue: VecDeque<K>,
    queued: HashSet<K>,
    /// The earliest time each delayed key is due.
    due: HashMap<K, Instant>,
    timers: BTreeMap<(Instant, u64), K>,
    seq: u64,
}

impl<K: Clone + Eq + Hash> Default for WorkQueue<K> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            queued: HashSet::new(),
            due: HashMap::new(),
            timers: BTreeMap::new(),
            seq: 0,
        }
    }
}

impl<K: Clone + Eq + Hash> WorkQueue<K> {
    /// Queues `k` unless it is already queued.
    pub(super) fn add(&mut self, k: K) {
        if self.queued.insert(k.clone()) {
            self.queue.push_back(k);
        }
    }

    /// Queues `k` once `after` has passed (unless it is already due sooner).
    pub(super) fn add_after(&mut self, k: K, after: Duration) {
        let at = Instant::now() + after;
        if self.due.get(&k).is_some_and(|t| *t <= at) {
            return;
        }
        self.due.insert(k.clone(), at);
        self.seq += 1;
        self.timers.insert((at, self.seq), k);
    }

    /// Moves the keys due by `now` to the queue.
    pub(super) fn promote(&mut self, now: Instant) {
        while let Some(entry) = self.timers.first_entry() {
            let (at, _) = *entry.key();
            if at > now {
                break;
            }
            let k = entry.remove();
            if self.due.get(&k) == Some(&at) {
                self.due.remove(&k);
                self.add(k);
            }
        }
    }

    /// When the next delayed key is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.timers.first_key_value().map(|((at, _), _)| *at)
    }

    pub(super) fn pop(&mut self) -> Option<K> {
        let k = self.queue.pop_front()?;
        self.queued.remove(&k);
        Some(k)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// Runs `r` until shutdown: resync, then reconcile the keys store events map to.
pub(super) async fn run<R: Reconciler>(
    api: Api,
    name: &'static str,
    r: R,
    shutdown: watch::Receiver<bool>,
) {
    run_loop(api, name, r, None::<Feed<R, ()>>, shutdown).await;
}

/// Runs `r` until shutdown, as [`run`], also taking the inputs sent on `inputs`.
pub(super) async fn run_with_inputs<R: Inputs>(
    api: Api,
    name: &'static str,
    r: R,
    inputs: mpsc::UnboundedReceiver<R::Input>,
    shutdown: watch::Receiver<bool>,
) {
    run_loop(
        api,
        name,
        r,
        Some((inputs, R::input as Take<R, R::Input>)),
        shutdown,
    )
    .await;
}

/// How a loop hands an input to its controller.
type Take<R, I> = fn(&mut R, &Api, I, &mut Vec<<R as Reconciler>::Key>);
/// Where inputs come from, and how they are handed over.
type Feed<R, I> = (mpsc::UnboundedReceiver<I>, Take<R, I>);

/// The next input, or never when there is no feed (or it closed).
async fn next_input<R: Reconciler, I>(feed: &mut Option<Feed<R, I>>) -> Option<I> {
    match feed {
        Some((rx, _)) => match rx.recv().await {
            Some(i) => Some(i),
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

async fn run_loop<R: Reconciler, I>(
    api: Api,
    name: &'static str,
    mut r: R,
    mut feed: Option<Feed<R, I>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut rx = api.store.subscribe();
    let mut q: WorkQueue<R::Key> = WorkQueue::default();
    for k in r.resync(&api) {
        q.add(k);
    }
    let mut keys = Vec::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        // Take in every pending event and input.
        loop {
            match rx.try_recv() {
                Ok(ev) => r.keys(&api, &ev, &mut keys),
                Err(TryRecvError::Lagged(_)) => {
                    tracing::debug!(controller = name, "missed events: resync");
                    api.store.note_lagged();
                    keys.extend(r.resync(&api));
                }
                Err(TryRecvError::Closed) => return,
                Err(TryRecvError::Empty) => break,
            }
        }
        if let Some((inputs, take)) = feed.as_mut() {
            while let Ok(i) = inputs.try_recv() {
                take(&mut r, &api, i, &mut keys);
            }
        }
        for k in keys.drain(..) {
            q.add(k);
        }
        q.promote(Instant::now());
        if !q.is_empty() {
            let started = Instant::now();
            let mut n = 0;
            while n < BATCH
                && let Some(k) = q.pop()
            {
                n += 1;
                if let Some(after) = r.reconcile(&api, &k) {
                    q.add_after(k, after);
                }
            }
            tracing::trace!(
                controller = name,
                keys = n,
                took_ms = started.elapsed().as_millis() as u64,
                "reconciled"
            );
            tokio::task::yield_now().await;
            continue;
        }
        let next = q.next_due();
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => {}
            ev = rx.recv() => match ev {
                Ok(ev) => r.keys(&api, &ev, &mut keys),
                Err(RecvError::Lagged(_)) => {
                    api.store.note_lagged();
                    keys.extend(r.resync(&api));
                }
                Err(RecvError::Closed) => return,
            },
            input = next_input(&mut feed) => {
                if let (Some(i), Some((_, take))) = (input, feed.as_ref()) {
                    take(&mut r, &api, i, &mut keys);
                }
            }
        }
        for k in keys.drain(..) {
            q.add(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_dedupes_and_delays() {
        let mut q = WorkQueue::default();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.pop(), Some("a"));
        assert_eq!(q.pop(), Some("b"));
        assert_eq!(q.pop(), None);
        q.add_after("c", Duration::from_secs(60));
        q.add_after("c", Duration::from_secs(120));
        q.add_after("d", Duration::ZERO);
        let now = Instant::now();
        q.promote(now);
        assert_eq!(q.pop(), Some("d"));
        assert!(q.is_empty());
        q.promote(now + Duration::from_secs(61));
        assert_eq!(q.pop(), Some("c"));
        q.promote(now + Duration::from_secs(200));
        assert!(
            q.is_empty(),
            "the later, superseded timer does not fire again"
        );
        assert_eq!(q.next_due(), None);
    }
}
