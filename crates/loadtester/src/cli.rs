//! Command lines: `flagger loadtester` (Flagger's flags, single or double dash) and `hey`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use regex::Regex;

use crate::conn::ConnLimits;
use crate::goflags;
use crate::server::{self, Config};

/// Flags of `flagger loadtester` (Flagger's `flagger-loadtester` flags, plus extensions).
#[derive(Parser, Debug, Clone)]
#[command(
    name = "flagger loadtester",
    about = "Flagger-compatible load tester: runs webhook commands (cmd, bash, helm, helmv3, \
             kubectl) and serves manual gates.\nSECURITY: it runs arbitrary commands; never \
             expose it outside the cluster.",
    disable_version_flag = true
)]
pub struct LoadtesterArgs {
    /// Port to listen on.
    #[arg(long = "port", default_value_t = 9090)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long = "listen-address", default_value = "0.0.0.0")]
    pub listen_address: String,
    /// Maximum run time of every command (Go duration); commands are killed, with their
    /// children, when it passes.
    #[arg(long = "timeout", default_value = "1h", value_parser = goflags::parse_duration)]
    pub timeout: Duration,
    /// Serve only payloads whose namespace matches this regular expression (unanchored).
    #[arg(long = "namespace-regexp", default_value = "")]
    pub namespace_regexp: String,
    /// Log level: debug, info, warn, error, fatal, panic.
    #[arg(long = "log-level", default_value = "debug")]
    pub log_level: String,
    /// Accepted for compatibility; no effect.
    #[arg(long = "zap-replace-globals")]
    pub zap_replace_globals: bool,
    /// Log encoding: json or console.
    #[arg(long = "zap-encoding", default_value = "json")]
    pub zap_encoding: String,
    /// Keep the gates in this file so that they survive restarts (written atomically).
    #[arg(long = "gates-file", env = "FLAGGER_LOADTESTER_GATES_FILE")]
    pub gates_file: Option<PathBuf>,
    /// Require `Authorization: Bearer <token>` (or `?access_token=<token>`) on every endpoint
    /// but /healthz.
    #[arg(
        long = "token",
        env = "FLAGGER_LOADTESTER_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Read the bearer token from this file (e.g. a mounted Secret).
    #[arg(long = "token-file", env = "FLAGGER_LOADTESTER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Run the built-in hey even when a `hey` binary is on PATH.
    #[arg(long = "prefer-builtin-hey")]
    pub prefer_builtin_hey: bool,
    /// How long to wait for requests in progress on SIGTERM/SIGINT.
    #[arg(long = "shutdown-timeout", default_value = "1m", value_parser = goflags::parse_duration)]
    pub shutdown_timeout: Duration,
    /// Close a connection that has not sent a complete request head within this time.
    #[arg(long = "header-read-timeout", default_value = "10s", value_parser = goflags::parse_duration)]
    pub header_read_timeout: Duration,
    /// Close a kept-alive connection after this long without a request.
    #[arg(long = "idle-timeout", default_value = "2m", value_parser = goflags::parse_duration)]
    pub idle_timeout: Duration,
    /// Most connections open at once (kept below the open-files limit); at the limit, the
    /// connection idle the longest is closed to make room.
    #[arg(long = "max-connections", default_value_t = 1024)]
    pub max_connections: usize,
    /// Extra `Host` names accepted when listening on a loopback address (comma-separated), for
    /// a proxy that forwards Service names to it; other names are refused there (DNS
    /// rebinding).
    #[arg(long = "allowed-hosts", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
}

fn is_bool_flag(name: &str) -> bool {
    matches!(name, "zap-replace-globals" | "prefer-builtin-hey")
}

impl LoadtesterArgs {
    /// Parses Go-style arguments (without the program name).
    pub fn parse_go(args: impl IntoIterator<Item = OsString>) -> Result<Self, clap::Error> {
        let args = goflags::normalize(args, is_bool_flag);
        Self::try_parse_from(std::iter::once(OsString::from("flagger loadtester")).chain(args))
    }

    /// The server configuration.
    pub fn config(&self) -> anyhow::Result<Config> {
        let namespace_regexp = if self.namespace_regexp.is_empty() {
            None
        } else {
            Some(Regex::new(&self.namespace_regexp).map_err(|e| {
                anyhow::anyhow!("invalid -namespace-regexp {:?}: {e}", self.namespace_regexp)
            })?)
        };
        let mut token = self.token.clone().filter(|t| !t.is_empty());
        if let Some(path) = &self.token_file {
            let t = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read -token-file {}: {e}", path.display()))?;
            token = Some(t.trim().to_string()).filter(|t| !t.is_empty());
        }
        if self.header_read_timeout.is_zero() || self.idle_timeout.is_zero() {
            anyhow::bail!("-header-read-timeout and -idle-timeout must be positive");
        }
        if self.max_connections == 0 {
            anyhow::bail!("-max-connections must be at least 1");
        }
        Ok(Config {
            timeout: self.timeout,
            namespace_regexp,
            token,
            gates_file: self.gates_file.clone(),
            hey_exe: None,
            prefer_builtin_hey: self.prefer_builtin_hey,
            connections: ConnLimits {
                header_read_timeout: self.header_read_timeout,
                idle_timeout: self.idle_timeout,
                max_connections: self.max_connections,
            },
            allowed_hosts: self
                .allowed_hosts
                .iter()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect(),
            hosts: None,
        })
    }
}

fn init_logging(level: &str, encoding: &str) {
    let level = match level {
        "debug" => "debug",
        "info" => "info",
        "warn" => "warn",
        "error" | "fatal" | "panic" => "error",
        _ => "info",
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(level)
        .with_writer(std::io::stderr);
    let _ = if encoding == "console" {
        builder.try_init()
    } else {
        builder.json().try_init()
    };
}

/// `flagger loadtester` entry point: `args` excludes the program and subcommand names.
pub fn loadtester_main(args: Vec<OsString>) -> ExitCode {
    let parsed = match LoadtesterArgs::parse_go(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(&parsed.log_level, &parsed.zap_encoding);
    let config = match parsed.config() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e:#}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(serve(parsed, config));
    // A command's output reader can outlive the command (a grandchild that left its process
    // group keeps the pipe open): it must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}

/// Raises the soft open-files limit to the hard one (as Go programs do at start) and returns
/// how many connections fit under it, leaving room for commands, pipes and the gate file.
fn connection_room(wanted: usize) -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    const RESERVE: u64 = 64;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return wanted;
    };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let room = usize::try_from(soft.saturating_sub(RESERVE)).unwrap_or(usize::MAX);
    wanted.min(room.max(1))
}

async fn serve(args: LoadtesterArgs, mut config: Config) -> anyhow::Result<()> {
    let addr = format!("{}:{}", args.listen_address, args.port);
    let timeout = config.timeout;
    let wanted = config.connections.max_connections;
    config.connections.max_connections = connection_room(wanted);
    if config.connections.max_connections < wanted {
        tracing::warn!(
            "-max-connections {wanted} does not fit the open-files limit: at most {} connections",
            config.connections.max_connections
        );
    }
    let mut running = server::spawn(config, &addr).await?;
    tracing::info!(
        "Starting load tester v{} API on {}, command timeout {}",
        env!("CARGO_PKG_VERSION"),
        running.addr,
        goflags::format_duration(timeout)
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        r = running.wait() => return r.map_err(Into::into),
    }
    tracing::info!("shutting down");
    running.shutdown(args.shutdown_timeout).await;
    tracing::info!("HTTP server stopped");
    Ok(())
}

/// Whether the program was invoked under the name `hey` (e.g. through a `hey` symlink).
pub fn invoked_as_hey(argv0: &Path) -> bool {
    argv0.file_name().is_some_and(|n| n == "hey")
}

/// When the process was started as `hey`, runs the built-in hey and returns its exit code.
pub fn run_if_invoked_as_hey() -> Option<ExitCode> {
    let mut args = std::env::args_os();
    let argv0 = args.next()?;
    invoked_as_hey(Path::new(&argv0)).then(|| crate::hey::main(args.collect()))
}

/// Entry point of the standalone binary: `hey` by name, `hey ...`, `loadtester ...`, or the
/// load tester's flags directly.
pub fn main_from_env() -> ExitCode {
    if let Some(code) = run_if_invoked_as_hey() {
        return code;
    }
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match args.first().and_then(|a| a.to_str()) {
        Some("hey") => {
            args.remove(0);
            crate::hey::main(args)
        }
        Some("loadtester") => {
            args.remove(0);
            loadtester_main(args)
        }
        _ => loadtester_main(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn flagger_style_flags_parse() {
        let a = LoadtesterArgs::parse_go(os(&[
            "-port=8080",
            "-log-level=info",
            "-timeout=1h",
            "-namespace-regexp",
            "^test$",
            "-zap-replace-globals",
        ]))
        .unwrap();
        assert_eq!(a.port, 8080);
        assert_eq!(a.timeout, Duration::from_secs(3600));
        assert_eq!(a.namespace_regexp, "^test$");
        assert!(a.zap_replace_globals);
        let b = LoadtesterArgs::parse_go(os(&["--port", "9999", "--timeout", "30s"])).unwrap();
        assert_eq!(b.port, 9999);
        assert_eq!(b.timeout, Duration::from_secs(30));
        let d = LoadtesterArgs::parse_go(os(&[])).unwrap();
        assert_eq!(d.port, 9090);
        assert_eq!(d.log_level, "debug");
        assert!(LoadtesterArgs::parse_go(os(&["-timeout=soon"])).is_err());
    }

    #[test]
    fn bad_regexp_is_rejected() {
        let a = LoadtesterArgs::parse_go(os(&["-namespace-regexp=("])).unwrap();
        assert!(a.config().is_err());
    }

    #[test]
    fn hey_by_name() {
        assert!(invoked_as_hey(Path::new("/usr/local/bin/hey")));
        assert!(invoked_as_hey(Path::new("hey")));
        assert!(!invoked_as_hey(Path::new("/usr/local/bin/flagger")));
    }
}
