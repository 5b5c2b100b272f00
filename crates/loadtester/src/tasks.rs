//! Task types (`cmd`, `bash`, `helm`, `helmv3`, `kubectl`, `concord`, `ngrinder`) and the runner
//! that executes them.
//!
//! `cmd` tasks are asynchronous and deduplicated: while a task with the same canary and command
//! is running, submitting it again is a no-op (Flagger's behaviour; a `hey -z 10m` started by the
//! `rollout` hook on every tick therefore runs once at a time); so are `ngrinder` tasks, per
//! canary and cloned test. The other types block the request until the command (or the Concord
//! process) ends.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use flagger_core::redact;

use crate::exec::{self, CommandSpec, Execution, Outcome, ProcessGroups};
use crate::metrics::{Metrics, TaskResult};

/// Task types this load tester runs.
pub const SUPPORTED_TYPES: &[&str] = &[
    "cmd", "bash", "helm", "helmv3", "kubectl", "concord", "ngrinder",
];

/// The answer to a task handled by [`TaskRunner::run_service_task`]: an HTTP status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// The default task type when `metadata.type` is absent.
pub const DEFAULT_TYPE: &str = "cmd";

/// Whether submitting an asynchronous task started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    Started,
    /// The same canary and command is still running: nothing was started.
    AlreadyRunning,
}

/// Runs tasks; shared by all requests.
#[derive(Debug)]
pub struct TaskRunner {
    timeout: Duration,
    groups: ProcessGroups,
    running: Mutex<HashSet<String>>,
    hey_dir: Option<PathBuf>,
    metrics: Arc<Metrics>,
    /// Client of the `concord` and `ngrinder` task types (60s per request, as Flagger's).
    http: reqwest::Client,
}

impl TaskRunner {
    pub fn new(timeout: Duration, hey_dir: Option<PathBuf>, metrics: Arc<Metrics>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Self {
            timeout,
            groups: ProcessGroups::default(),
            running: Mutex::new(HashSet::new()),
            hey_dir,
            metrics,
            http,
        }
    }

    /// Runs the task types that call a service rather than a command: `concord` (blocking: 200
    /// when the process finished, 500 with the reason otherwise, as Flagger answers) and
    /// `ngrinder` (asynchronous: 202, or 400 for bad metadata). `None` for every other type.
    pub async fn run_service_task(
        self: &Arc<Self>,
        canary: &str,
        task_type: &str,
        metadata: &std::collections::HashMap<String, String>,
    ) -> Option<Reply> {
        match task_type {
            "concord" => Some(self.run_concord(canary, metadata).await),
            "ngrinder" => Some(self.submit_ngrinder(canary, metadata)),
            _ => None,
        }
    }

    async fn run_concord(
        self: &Arc<Self>,
        canary: &str,
        metadata: &std::collections::HashMap<String, String>,
    ) -> Reply {
        let task = match crate::concord::ConcordTask::from_metadata(metadata) {
            Ok(t) => t,
            Err(e) => {
                let e = redact::text(&e).into_owned();
                tracing::error!(canary, "concord task init error: {e}");
                return Reply {
                    status: 500,
                    body: e,
                };
            }
        };
        let gauge = self.metrics.running("concord");
        gauge.inc();
        let started = std::time::Instant::now();
        // Its own tokio task, so a client that hangs up does not cancel the process's wait.
        let this = self.clone();
        let run = task.clone();
        let outcome = tokio::spawn(async move { run.run(&this.http, this.timeout).await })
            .await
            .unwrap_or_else(|e| Err(format!("concord task aborted: {e}")));
        gauge.dec();
        let result = if outcome.is_ok() {
            TaskResult::success
        } else {
            TaskResult::failure
        };
        self.metrics
            .task_done("concord", result, Some(started.elapsed().as_secs_f64()));
        match outcome {
            Ok(()) => {
                tracing::info!(
                    canary,
                    "concord task finished {}",
                    redact::text(&task.describe())
                );
                Reply {
                    status: 200,
                    body: String::new(),
                }
            }
            Err(e) => {
                // Errors name the server's URL, which may carry credentials.
                let e = redact::text(&e).into_owned();
                tracing::error!(canary, "concord task error: {e}");
                Reply {
                    status: 500,
                    body: e,
                }
            }
        }
    }

    fn submit_ngrinder(
        self: &Arc<Self>,
        canary: &str,
        metadata: &std::collections::HashMap<String, String>,
    ) -> Reply {
        let task = match crate::ngrinder::NGrinderTask::from_metadata(metadata) {
            Ok(t) => t,
            Err(e) => {
                return Reply {
                    status: 400,
                    body: redact::text(&e).into_owned(),
                };
            }
        };
        let key = task.key(canary);
        {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            if !running.insert(key.clone()) {
                tracing::info!(
                    canary,
                    "task skipped {} is already running",
                    redact::text(&task.describe())
                );
                self.metrics
                    .task_done("ngrinder", TaskResult::skipped, None);
                return Reply {
                    status: 202,
                    body: String::new(),
                };
            }
        }
        let this = self.clone();
        let canary = canary.to_string();
        tokio::spawn(async move {
            tracing::info!(canary, "task starting {}", redact::text(&task.describe()));
            let gauge = this.metrics.running("ngrinder");
            gauge.inc();
            let started = std::time::Instant::now();
            let outcome = task.run(&this.http, this.timeout).await;
            gauge.dec();
            let result = match &outcome {
                Ok(()) => TaskResult::success,
                Err(e) if e.contains("timed out") => TaskResult::timeout,
                Err(_) => TaskResult::failure,
            };
            this.metrics
                .task_done("ngrinder", result, Some(started.elapsed().as_secs_f64()));
            match outcome {
                Ok(()) => {
                    tracing::info!(canary, "task finished {}", redact::text(&task.describe()))
                }
                Err(e) => tracing::error!(
                    canary,
                    "task failed {}: {}",
                    redact::text(&task.describe()),
                    redact::text(&e)
                ),
            }
            this.running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        });
        Reply {
            status: 202,
            body: String::new(),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The process groups of the commands running now.
    pub fn process_groups(&self) -> &ProcessGroups {
        &self.groups
    }

    /// Number of asynchronous tasks running.
    pub fn async_running(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The command line for a task type, or `None` for an unknown type.
    pub fn spec_for(&self, task_type: &str, cmd: &str) -> Option<CommandSpec> {
        let fields = || {
            cmd.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let mut spec = match task_type {
            "cmd" => CommandSpec::new("sh", vec!["-c".into(), cmd.into()]),
            "bash" => CommandSpec::new("bash", vec!["-c".into(), cmd.into()]),
            "helm" => CommandSpec::new("helm", fields()),
            // Flagger runs `helmv3`; images that only have `helm` (v3) are common.
            "helmv3" => {
                let program = if on_path("helmv3") { "helmv3" } else { "helm" };
                CommandSpec::new(program, fields())
            }
            "kubectl" => CommandSpec::new("kubectl", fields()),
            _ => return None,
        };
        if matches!(task_type, "cmd" | "bash") {
            spec.extra_path = self.hey_dir.clone();
        }
        Some(spec)
    }

    /// Starts an asynchronous `cmd` task unless the same one is already running. Commands and
    /// their output are logged with credentials redacted (`-H 'Authorization: Bearer ...'`,
    /// `?token=...`).
    pub fn submit(self: &Arc<Self>, canary: &str, cmd: &str, log_output: bool) -> Submitted {
        let key = format!("{canary}\n{cmd}");
        let shown = redact::text(cmd).into_owned();
        {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            if !running.insert(key.clone()) {
                tracing::info!(canary, "command skipped {shown} is already running");
                self.metrics
                    .task_done(DEFAULT_TYPE, TaskResult::skipped, None);
                return Submitted::AlreadyRunning;
            }
        }
        let Some(spec) = self.spec_for(DEFAULT_TYPE, cmd) else {
            return Submitted::AlreadyRunning;
        };
        let this = self.clone();
        let canary = canary.to_string();
        tokio::spawn(async move {
            tracing::info!(canary, "command starting {shown}");
            let ex = this.execute(DEFAULT_TYPE, &spec).await;
            match ex.failure_reason() {
                None => {
                    if log_output {
                        tracing::info!(canary, "{}", shown_output(&ex.output));
                    }
                    tracing::info!(canary, "command finished {shown}");
                }
                Some(reason) => tracing::error!(
                    canary,
                    "command failed {shown} {reason} {}",
                    shown_output(&ex.output)
                ),
            }
            this.running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        });
        Submitted::Started
    }

    /// Runs a blocking task to completion. The command runs in its own tokio task, so a client
    /// that hangs up does not stop it (it still ends at the timeout).
    pub async fn run_blocking(
        self: &Arc<Self>,
        canary: &str,
        task_type: &str,
        spec: CommandSpec,
    ) -> Execution {
        let this = self.clone();
        let task_type_owned = task_type.to_string();
        let handle = tokio::spawn(async move { this.execute(&task_type_owned, &spec).await });
        let ex = match handle.await {
            Ok(ex) => ex,
            Err(e) => Execution {
                outcome: Outcome::SpawnFailed(format!("task aborted: {e}")),
                output: Vec::new(),
                pid: None,
                duration: Duration::ZERO,
            },
        };
        let out = shown_output(&ex.output);
        match ex.failure_reason() {
            None => tracing::info!(canary, task_type, "command finished, output: {out}"),
            Some(reason) => {
                tracing::error!(canary, task_type, "command failed: {reason}, output: {out}")
            }
        }
        ex
    }

    async fn execute(&self, task_type: &str, spec: &CommandSpec) -> Execution {
        let gauge = self.metrics.running(task_type);
        gauge.inc();
        let ex = exec::run(spec, self.timeout, &self.groups).await;
        gauge.dec();
        let result = match (&ex.outcome, ex.success()) {
            (_, true) => TaskResult::success,
            (Outcome::TimedOut(_), _) => TaskResult::timeout,
            _ => TaskResult::failure,
        };
        self.metrics
            .task_done(task_type, result, Some(ex.duration.as_secs_f64()));
        ex
    }
}

/// A command's output as it may be logged or returned: credentials redacted.
pub fn shown_output(output: &[u8]) -> String {
    redact::text(&String::from_utf8_lossy(output)).into_owned()
}

/// Whether `program` is an executable file in one of `PATH`'s directories.
pub fn on_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Makes the built-in `hey` reachable by commands: unless `prefer_builtin` is set and a `hey` is
/// already on `PATH`, creates a private directory holding a `hey` symlink to `exe` (by default
/// the running executable, which acts as `hey` when invoked under that name) and returns it, to
/// be prepended to the commands' `PATH`.
pub fn provide_builtin_hey(exe: Option<PathBuf>, prefer_builtin: bool) -> Option<PathBuf> {
    if !prefer_builtin && on_path("hey") {
        return None;
    }
    let exe = match exe {
        Some(e) => e,
        None => match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("cannot find the running executable for the built-in hey: {e}");
                return None;
            }
        },
    };
    let dir = std::env::temp_dir().join(format!("flagger-loadtester-{}-bin", std::process::id()));
    let link = dir.join("hey");
    let result = std::fs::create_dir_all(&dir).and_then(|()| {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&exe, &link)
    });
    match result {
        Ok(()) => {
            tracing::info!("built-in hey provided as {}", link.display());
            Some(dir)
        }
        Err(e) => {
            tracing::warn!("cannot provide the built-in hey in {}: {e}", dir.display());
            None
        }
    }
}
