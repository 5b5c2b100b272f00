//! A simulated container's life as the kubelet drives it: its image pulled (or not, with the
//! kubelet's back-off), started, probed ([`super::probes`]), killed and restarted (with the
//! kubelet's back-off) when its liveness or startup probe fails or its image changes, and the
//! status and events a kubelet reports for it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::images::{ImageRegistry, full_reference};
use super::objects::short_hash;
use super::probes::{Kind, Outcome, Spec, Worker};
use crate::util;

/// The first image-pull and restart back-off; each next one doubles, up to [`MAX_BACKOFF`].
const BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long a failed pull shows `ErrImagePull` before the kubelet's next sync shows
/// `ImagePullBackOff`.
const ERR_IMAGE_PULL_SHOWN: Duration = Duration::from_secs(1);
/// How often a container of a `localkube.dev/crash-loop` pod counts a restart.
const CRASH_EVERY: Duration = Duration::from_secs(2);
/// The exit code of a container the kubelet killed (SIGKILL after the grace period).
const KILLED_EXIT_CODE: i64 = 137;

/// An event the kubelet records about the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Event {
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
}

fn normal(reason: &'static str, message: String) -> Event {
    Event {
        type_: "Normal",
        reason,
        message,
    }
}

fn warning(reason: &'static str, message: String) -> Event {
    Event {
        type_: "Warning",
        reason,
        message,
    }
}

/// What the pod and the simulator say about its containers.
pub(super) struct Ctx<'a> {
    pub registry: &'a ImageRegistry,
    /// How long after starting the app accepts connections.
    pub delay: Duration,
    pub never_ready: bool,
    pub crash: bool,
    /// `name_namespace(uid)`, as the kubelet names the pod in back-off messages.
    pub pod_ref: String,
}

fn backoff(n: u32) -> Duration {
    let doubled = BACKOFF.saturating_mul(1 << n.min(16));
    doubled.min(MAX_BACKOFF)
}

/// `Always` for untagged and `:latest` images, else `IfNotPresent` (the API's default).
fn pull_policy(c: &Value) -> &str {
    match c["imagePullPolicy"].as_str() {
        Some(p) => p,
        None => {
            let image = c["image"].as_str().unwrap_or_default();
            if !image.contains('@') && full_reference(image).ends_with(":latest") {
                "Always"
            } else {
                "IfNotPresent"
            }
        }
    }
}

/// The image of a container.
#[derive(Debug, Clone)]
enum Pull {
    /// To pull before the next start.
    Needed,
    Done,
    Failed {
        /// Failed attempts so far.
        attempts: u32,
        retry_at: Instant,
        /// When the status moves from `ErrImagePull` to `ImagePullBackOff`.
        backoff_at: Instant,
        backing_off: bool,
        reason: &'static str,
        message: String,
    },
}

/// A running instance of the container.
#[derive(Debug, Clone)]
struct Run {
    since: Instant,
    started_at: String,
    id: String,
}

/// One container of a pod.
#[derive(Debug, Clone)]
pub(super) struct Container {
    pub name: String,
    image: String,
    spec: Value,
    pull: Pull,
    run: Option<Run>,
    restarts: i64,
    last_state: Option<Value>,
    /// Waiting in `CrashLoopBackOff` until then.
    restart_at: Option<Instant>,
    /// The back-off of the pending restart.
    restart_wait: Duration,
    workers: Vec<Worker>,
    /// Counts starts, so that answers to probes of a former instance are dropped.
    pub instance: u64,
    /// `localkube.dev/crash-loop`: when the last restart was counted.
    crash_counted: Instant,
}

/// A probe to start now.
pub(super) struct Launch {
    pub kind: Kind,
    pub spec: Spec,
    pub instance: u64,
    pub container: Value,
}

impl Container {
    pub(super) fn new(spec: &Value, now: Instant) -> Container {
        Container {
            name: spec["name"].as_str().unwrap_or_default().to_string(),
            image: spec["image"].as_str().unwrap_or_default().to_string(),
            spec: spec.clone(),
            pull: Pull::Needed,
            run: None,
            restarts: 0,
            last_state: None,
            restart_at: None,
            restart_wait: Duration::ZERO,
            workers: Vec::new(),
            instance: 0,
            crash_counted: now,
        }
    }

    /// Whether the container ever ran (a pod with one that never did is `Pending`).
    pub(super) fn ever_ran(&self, ctx: &Ctx) -> bool {
        ctx.crash || self.run.is_some() || self.restarts > 0
    }

    /// Moves the container on at `now`: its spec changed, its image pulled, it started.
    pub(super) fn sync(&mut self, spec: &Value, ctx: &Ctx, now: Instant, ev: &mut Vec<Event>) {
        if ctx.crash {
            if self.crash_counted.elapsed() >= CRASH_EVERY {
                self.crash_counted = now;
                self.restarts += 1;
            }
            return;
        }
        let image = spec["image"].as_str().unwrap_or_default();
        self.spec = spec.clone();
        if image != self.image {
            if self.run.is_some() {
                let msg = format!(
                    "Container {} definition changed, will be restarted",
                    self.name
                );
                self.kill(normal("Killing", msg), ctx, now, ev);
                self.restart_at = None;
            }
            self.image = image.to_string();
            self.pull = Pull::Needed;
        }
        if self.run.is_some() || self.restart_at.is_some_and(|t| now < t) {
            return;
        }
        self.pull_image(ctx, now, ev);
        if matches!(self.pull, Pull::Done) {
            self.start(now, ev);
        }
    }

    fn pull_image(&mut self, ctx: &Ctx, now: Instant, ev: &mut Vec<Event>) {
        let attempts = match &mut self.pull {
            Pull::Done => return,
            Pull::Needed => 0,
            Pull::Failed {
                attempts,
                retry_at,
                backoff_at,
                backing_off,
                reason,
                ..
            } => {
                if now < *retry_at {
                    if !*backing_off && now >= *backoff_at {
                        *backing_off = true;
                        let (image, back) = (&self.image, *reason == "ErrImagePull");
                        if back {
                            ev.push(normal(
                                "BackOff",
                                format!("Back-off pulling image \"{image}\""),
                            ));
                            ev.push(warning("Failed", "Error: ImagePullBackOff".into()));
                        }
                    }
                    return;
                }
                *attempts
            }
        };
        let image = self.image.clone();
        let policy = pull_policy(&self.spec).to_string();
        let found = ctx.registry.pull(&image);
        let failed = |reason: &'static str, message: String| Pull::Failed {
            attempts: attempts + 1,
            retry_at: now + backoff(attempts),
            backoff_at: now + ERR_IMAGE_PULL_SHOWN,
            backing_off: false,
            reason,
            message,
        };
        match (policy.as_str(), found) {
            ("Never", Ok(())) | ("IfNotPresent", Ok(())) => {
                ev.push(normal(
                    "Pulled",
                    format!("Container image \"{image}\" already present on machine"),
                ));
                self.pull = Pull::Done;
            }
            ("Never", Err(_)) => {
                let msg =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                ev.push(warning("ErrImageNeverPull", msg.clone()));
                self.pull = failed("ErrImageNeverPull", msg);
            }
            (_, Ok(())) => {
                ev.push(normal("Pulling", format!("Pulling image \"{image}\"")));
                ev.push(normal(
                    "Pulled",
                    format!("Successfully pulled image \"{image}\" in 0s (0s including waiting)"),
                ));
                self.pull = Pull::Done;
            }
            (_, Err(e)) => {
                ev.push(normal("Pulling", format!("Pulling image \"{image}\"")));
                ev.push(warning(
                    "Failed",
                    format!("Failed to pull image \"{image}\": {}", e.message()),
                ));
                ev.push(warning("Failed", "Error: ErrImagePull".into()));
                self.pull = failed("ErrImagePull", e.message());
            }
        }
    }

    fn start(&mut self, now: Instant, ev: &mut Vec<Event>) {
        self.instance += 1;
        self.restart_at = None;
        let id = short_hash(&json!([self.name, self.image, self.instance, util::now()]));
        self.run = Some(Run {
            since: now,
            started_at: util::now(),
            id: format!("localkube://{id}"),
        });
        ev.push(normal(
            "Created",
            format!("Created container {}", self.name),
        ));
        ev.push(normal(
            "Started",
            format!("Started container {}", self.name),
        ));
        self.workers.clear();
        let first: &[Kind] = if Spec::of(&self.spec, Kind::Startup).is_some() {
            &[Kind::Startup]
        } else {
            &[Kind::Readiness, Kind::Liveness]
        };
        self.add_workers(first, now);
        // The next start pulls again (a no-op for present images).
        self.pull = Pull::Needed;
    }

    fn add_workers(&mut self, kinds: &[Kind], now: Instant) {
        let Some(run) = &self.run else {
            return;
        };
        for kind in kinds {
            if let Some(spec) = Spec::of(&self.spec, *kind) {
                self.workers.push(Worker::new(spec, run.since, now));
            }
        }
    }

    /// Stops the running instance (`why` is the event saying so) and schedules the restart.
    fn kill(&mut self, why: Event, ctx: &Ctx, now: Instant, ev: &mut Vec<Event>) {
        let Some(run) = self.run.take() else {
            return;
        };
        ev.push(why);
        self.last_state = Some(json!({"terminated": {
            "exitCode": KILLED_EXIT_CODE, "reason": "Error",
            "startedAt": run.started_at, "finishedAt": util::now(), "containerID": run.id,
        }}));
        self.restarts += 1;
        self.workers.clear();
        // The first restart is at once; each next one waits twice as long as the last.
        let wait = match self.restarts {
            1 => Duration::ZERO,
            n => backoff(u32::try_from(n - 2).unwrap_or(u32::MAX)),
        };
        self.restart_at = Some(now + wait);
        self.restart_wait = wait;
        if !wait.is_zero() {
            ev.push(warning(
                "BackOff",
                format!(
                    "Back-off restarting failed container {} in pod {}",
                    self.name, ctx.pod_ref
                ),
            ));
        }
    }

    /// The probes due now (each marked as started).
    pub(super) fn due_probes(&mut self, now: Instant) -> Vec<Launch> {
        let mut out = Vec::new();
        for w in &mut self.workers {
            if w.due(now) {
                w.begin(now);
                out.push(Launch {
                    kind: w.spec.kind,
                    spec: w.spec.clone(),
                    instance: self.instance,
                    container: self.spec.clone(),
                });
            }
        }
        out
    }

    /// Takes a probe's answer (dropped when it was about a former instance).
    pub(super) fn probed(
        &mut self,
        probe: (Kind, u64),
        outcome: &Outcome,
        ctx: &Ctx,
        now: Instant,
        ev: &mut Vec<Event>,
    ) {
        let (kind, instance) = probe;
        if instance != self.instance || self.run.is_none() {
            return;
        }
        let Some(w) = self.workers.iter_mut().find(|w| w.spec.kind == kind) else {
            return;
        };
        if let Outcome::Failure(msg) = outcome {
            ev.push(warning(
                "Unhealthy",
                format!("{} probe failed: {msg}", kind.label()),
            ));
        }
        match (kind, w.finish(outcome)) {
            (Kind::Startup, Some(true)) => {
                self.add_workers(&[Kind::Readiness, Kind::Liveness], now)
            }
            (Kind::Liveness | Kind::Startup, Some(false)) => {
                let what = if kind == Kind::Liveness {
                    "liveness"
                } else {
                    "startup"
                };
                let msg = format!(
                    "Container {} failed {what} probe, will be restarted",
                    self.name
                );
                self.kill(normal("Killing", msg), ctx, now, ev);
            }
            _ => {}
        }
    }

    fn result(&self, kind: Kind) -> Option<Option<bool>> {
        self.workers
            .iter()
            .find(|w| w.spec.kind == kind)
            .map(Worker::result)
    }

    fn started(&self) -> bool {
        self.run.is_some() && self.result(Kind::Startup).is_none_or(|r| r == Some(true))
    }

    /// Whether the app accepts connections (its start-up delay is over).
    pub(super) fn listening(&self, ctx: &Ctx, now: Instant) -> bool {
        self.run
            .as_ref()
            .is_some_and(|r| now >= r.since + ctx.delay)
    }

    /// Ready: started, its app listening, and its readiness probe (if any) succeeding.
    pub(super) fn ready(&self, ctx: &Ctx, now: Instant) -> bool {
        let probe_ok = match self.result(Kind::Readiness) {
            Some(r) => r == Some(true),
            // A container with a readiness probe not yet created (startup pending) is not ready.
            None => Spec::of(&self.spec, Kind::Readiness).is_none(),
        };
        !ctx.never_ready && !ctx.crash && self.started() && self.listening(ctx, now) && probe_ok
    }

    /// When the container should be looked at again.
    pub(super) fn wake_at(&self, ctx: &Ctx, now: Instant) -> Option<Instant> {
        let mut at: Vec<Instant> = Vec::new();
        if ctx.crash {
            at.push(self.crash_counted + CRASH_EVERY);
        }
        if let Pull::Failed {
            retry_at,
            backoff_at,
            backing_off,
            ..
        } = &self.pull
        {
            at.push(*retry_at);
            if !backing_off {
                at.push(*backoff_at);
            }
        }
        at.extend(self.restart_at);
        at.extend(self.workers.iter().filter_map(Worker::next_due));
        if let Some(r) = &self.run
            && !self.listening(ctx, now)
        {
            at.push(r.since + ctx.delay);
        }
        at.into_iter().min()
    }

    /// The container's status, as the kubelet reports it.
    pub(super) fn status(&self, ctx: &Ctx, now: Instant) -> Value {
        let state = self.state(ctx);
        let image_id = match &self.run {
            Some(_) => {
                let resolved = full_reference(&self.image);
                let name = resolved
                    .rsplit_once([':', '@'])
                    .map_or(resolved.as_str(), |(n, _)| n);
                let digest = short_hash(&json!(resolved)).repeat(7);
                format!("{name}@sha256:{}", &digest[..64])
            }
            None => String::new(),
        };
        let mut s = json!({
            "name": self.name, "image": self.image, "imageID": image_id,
            "ready": self.ready(ctx, now), "started": !ctx.crash && self.started(),
            "restartCount": self.restarts, "state": state,
            "lastState": self.last_state.clone().unwrap_or_else(|| json!({})),
        });
        if let Some(r) = &self.run {
            s["containerID"] = json!(r.id);
        }
        s
    }

    fn state(&self, ctx: &Ctx) -> Value {
        if ctx.crash {
            let msg = format!("back-off restarting failed container {}", self.name);
            return json!({"waiting": {"reason": "CrashLoopBackOff", "message": msg}});
        }
        if let Some(r) = &self.run {
            return json!({"running": {"startedAt": r.started_at}});
        }
        if self.restart_at.is_some() {
            let msg = format!(
                "back-off {}s restarting failed container={} pod={}",
                self.restart_wait.as_secs(),
                self.name,
                ctx.pod_ref
            );
            return json!({"waiting": {"reason": "CrashLoopBackOff", "message": msg}});
        }
        match &self.pull {
            Pull::Failed {
                backing_off: true,
                reason: "ErrImagePull",
                ..
            } => {
                let msg = format!("Back-off pulling image \"{}\"", self.image);
                json!({"waiting": {"reason": "ImagePullBackOff", "message": msg}})
            }
            Pull::Failed {
                reason, message, ..
            } => json!({"waiting": {"reason": reason, "message": message}}),
            _ => json!({"waiting": {"reason": "ContainerCreating"}}),
        }
    }
}
