//! Running one external command: its own process group, combined stdout+stderr, and a hard
//! timeout that kills the whole group (the command and everything it started).

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

/// Output beyond this many bytes is read and discarded.
pub const MAX_OUTPUT: usize = 16 * 1024 * 1024;

/// How long to wait for the output pipe to close once the process group has been killed; only a
/// process that left the group (setsid) can keep it open longer.
const PIPE_DRAIN_GRACE: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub program: String,
    pub args: Vec<String>,
    /// Directory prepended to `PATH` (used to provide the built-in `hey`).
    pub extra_path: Option<PathBuf>,
}

impl CommandSpec {
    pub fn new(program: impl Into<String>, args: Vec<String>) -> Self {
        Self {
            program: program.into(),
            args,
            extra_path: None,
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Exited(ExitStatus),
    TimedOut(Duration),
    SpawnFailed(String),
}

/// The result of [`run`].
#[derive(Debug, Clone)]
pub struct Execution {
    pub outcome: Outcome,
    /// Combined stdout and stderr, in the order written.
    pub output: Vec<u8>,
    pub pid: Option<u32>,
    pub duration: Duration,
}

impl Execution {
    pub fn success(&self) -> bool {
        matches!(&self.outcome, Outcome::Exited(s) if s.success())
    }

    /// Why it failed, in Go's words where there is an equivalent (`exit status 1`).
    pub fn failure_reason(&self) -> Option<String> {
        match &self.outcome {
            Outcome::Exited(s) if s.success() => None,
            Outcome::Exited(s) => Some(
                match (s.code(), std::os::unix::process::ExitStatusExt::signal(s)) {
                    (Some(code), _) => format!("exit status {code}"),
                    (None, Some(sig)) => format!("signal: {}", signal_name(sig)),
                    (None, None) => "exited abnormally".into(),
                },
            ),
            Outcome::TimedOut(t) => Some(format!(
                "signal: killed (timeout {} exceeded)",
                crate::goflags::format_duration(*t)
            )),
            Outcome::SpawnFailed(e) => Some(e.clone()),
        }
    }
}

fn signal_name(sig: i32) -> String {
    match Signal::try_from(sig) {
        Ok(Signal::SIGKILL) => "killed".into(),
        Ok(Signal::SIGTERM) => "terminated".into(),
        Ok(Signal::SIGINT) => "interrupt".into(),
        Ok(s) => s.as_str().to_lowercase(),
        Err(_) => format!("signal {sig}"),
    }
}

/// Process groups currently running, so that they can all be killed on shutdown.
#[derive(Debug, Default, Clone)]
pub struct ProcessGroups {
    inner: Arc<Mutex<HashSet<i32>>>,
}

impl ProcessGroups {
    fn insert(&self, pgid: i32) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(pgid);
    }

    fn remove(&self, pgid: i32) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&pgid);
    }

    /// Number of commands running.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// SIGKILLs every running group (used on shutdown).
    pub fn kill_all(&self) {
        let groups: Vec<i32> = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect();
        for pgid in groups {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

/// Runs `spec` with stdin closed, in a new process group, and returns once the command has ended
/// and its output pipe is drained. When `timeout` passes, the whole group is SIGKILLed. When the
/// command exits on its own, any process it left behind in its group is killed too, so that no
/// task leaves orphans.
pub async fn run(spec: &CommandSpec, timeout: Duration, groups: &ProcessGroups) -> Execution {
    let started = Instant::now();
    let failed = |msg: String| Execution {
        outcome: Outcome::SpawnFailed(msg),
        output: Vec::new(),
        pid: None,
        duration: started.elapsed(),
    };
    let (reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return failed(format!("cannot create a pipe: {e}")),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return failed(format!("cannot create a pipe: {e}")),
    };
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.extra_path {
        let mut path = OsString::from(dir.as_os_str());
        if let Some(old) = std::env::var_os("PATH") {
            path.push(":");
            path.push(old);
        }
        cmd.env("PATH", path);
    }
    let spawned = cmd.spawn();
    // The parent's copies of the pipe's write end live in `cmd`: drop them so EOF can happen.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return failed(format!("exec: {:?}: {e}", spec.program)),
    };
    let Some(pid) = child.id() else {
        return failed("the command exited before it could be tracked".into());
    };
    let pgid = pid as i32;
    groups.insert(pgid);

    let collected = Arc::new(Mutex::new(Vec::new()));
    let reader_task = {
        let collected = collected.clone();
        tokio::task::spawn_blocking(move || drain(reader, &collected))
    };

    // Wait for the exit without reaping, so the group id cannot be reused before we kill it.
    let exited = tokio::task::spawn_blocking(move || {
        waitid(
            Id::Pid(Pid::from_raw(pgid)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        )
    });
    let timed_out = tokio::time::timeout(timeout, exited).await.is_err();
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    let status = child.wait().await;
    groups.remove(pgid);

    let _ = tokio::time::timeout(PIPE_DRAIN_GRACE, reader_task).await;
    let output = std::mem::take(&mut *collected.lock().unwrap_or_else(PoisonError::into_inner));
    let outcome = if timed_out {
        Outcome::TimedOut(timeout)
    } else {
        match status {
            Ok(s) => Outcome::Exited(s),
            Err(e) => Outcome::SpawnFailed(format!("wait: {e}")),
        }
    };
    Execution {
        outcome,
        output,
        pid: Some(pid),
        duration: started.elapsed(),
    }
}

fn drain(mut reader: std::io::PipeReader, into: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let mut out = into.lock().unwrap_or_else(PoisonError::into_inner);
                let room = MAX_OUTPUT.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Live (not zombie) processes whose process group is `pgid`.
    pub(crate) fn live_group_members(pgid: i32) -> Vec<i32> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the parenthesised command name: state ppid pgrp ...
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
                found.push(pid);
            }
        }
        found
    }

    async fn assert_group_gone(pgid: i32) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let live = live_group_members(pgid);
            if live.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processes left in group {pgid}: {live:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn sh(cmd: &str) -> CommandSpec {
        CommandSpec::new("sh", vec!["-c".into(), cmd.into()])
    }

    #[tokio::test]
    async fn captures_combined_output_and_status() {
        let groups = ProcessGroups::default();
        let ex = run(
            &sh("echo out; echo err >&2; exit 3"),
            Duration::from_secs(10),
            &groups,
        )
        .await;
        assert_eq!(String::from_utf8_lossy(&ex.output), "out\nerr\n");
        assert_eq!(ex.failure_reason().as_deref(), Some("exit status 3"));
        assert!(groups.is_empty());
    }

    #[tokio::test]
    async fn timeout_kills_the_group() {
        let groups = ProcessGroups::default();
        let ex = run(
            &sh("sleep 30 & sleep 30; echo never"),
            Duration::from_millis(300),
            &groups,
        )
        .await;
        assert!(matches!(ex.outcome, Outcome::TimedOut(_)));
        assert!(ex.duration < Duration::from_secs(5));
        assert_group_gone(ex.pid.unwrap() as i32).await;
    }

    #[tokio::test]
    async fn leftovers_are_killed_after_a_normal_exit() {
        let groups = ProcessGroups::default();
        let ex = run(
            &sh("sleep 30 >/dev/null 2>&1 & echo started"),
            Duration::from_secs(10),
            &groups,
        )
        .await;
        assert!(ex.success());
        assert_group_gone(ex.pid.unwrap() as i32).await;
    }

    #[tokio::test]
    async fn missing_program_is_reported() {
        let groups = ProcessGroups::default();
        let ex = run(
            &CommandSpec::new("/nonexistent/x", vec![]),
            Duration::from_secs(1),
            &groups,
        )
        .await;
        assert!(!ex.success());
        assert!(ex.failure_reason().unwrap().contains("/nonexistent/x"));
    }
}
