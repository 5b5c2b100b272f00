//! The `flagger` binary. Each subcommand's work lives in a library crate; this file only parses
//! arguments and dispatches.
//!
//! Layers: the subcommand modules use the library crates and their own submodules (a submodule
//! never reaches back into its parent: `demo/manifests` takes the router's row as data), one
//! another only downwards (`demo` → `dashboard` → `kubectl`), and never this file: `kubectl`
//! gets the command tree it completes as a parameter.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod dashboard;
mod demo;
mod judge;
mod kubectl;
mod schema_check;
mod uninstall;
mod validate;

/// jemalloc: its statistics let the controller's `/debug/memory` tell the live heap from what
/// the allocator keeps resident and size each cache; the figures against glibc's malloc are in
/// docs/performance.md ("Fleet scale").
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// flagger-rs: progressive delivery for Kubernetes, compatible with Flagger's API.
#[derive(Parser, Debug)]
#[command(name = "flagger", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the operator (Flagger's flags, with one dash or two).
    Controller(Box<flagger_controller::Args>),
    /// Print the CustomResourceDefinitions (Canary, MetricTemplate, AlertProvider) as YAML.
    Crd,
    /// Check Canary manifests offline: every problem, with its field path and how to fix it.
    Validate(validate::Args),
    /// Find objects in GitOps manifests that collide or fight with what Flagger generates.
    Lint(flagger_lint::Args),
    /// Hand every Canary's traffic back to its target and remove the Canaries, so the
    /// controller and its CRDs can be removed or reinstalled without an outage.
    Uninstall(uninstall::Args),
    /// Judge a canary's series against the primary's offline (statistical judge, docs/judge.md).
    Judge(Box<judge::Args>),
    /// Serve localkube, an in-memory Kubernetes API server, until stopped; writes a kubeconfig.
    Local(LocalArgs),
    /// Run a blue/green canary on localkube end to end: a promotion, then a rollback.
    Demo(demo::DemoArgs),
    /// See and steer canaries: get, watch, why, promote, abort, pause, resume, retry, history
    /// (also run as the kubectl plugin `kubectl-flagger`).
    Kubectl(kubectl::Args),
    /// Serve the web dashboard: every canary, live charts and events, actions; Kubernetes
    /// authentication and RBAC (docs/dashboard.md).
    Dashboard(Box<dashboard::Args>),
    /// Run the Flagger-compatible load tester (`flagger loadtester -h` for its flags).
    #[command(disable_help_flag = true)]
    Loadtester {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Built-in hey HTTP load generator (`flagger hey -h`); also run when invoked as `hey`.
    #[command(disable_help_flag = true)]
    Hey {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// Arguments of `flagger local`.
#[derive(clap::Args, Debug)]
struct LocalArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:6443")]
    addr: std::net::SocketAddr,
    /// Where to write the kubeconfig for kubectl and kube clients.
    #[arg(long, default_value = "localkube.kubeconfig")]
    kubeconfig: std::path::PathBuf,
    /// Number of simulated nodes.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Delay before simulated pods become ready (e.g. 2s, 500ms).
    #[arg(long, default_value = "0s")]
    ready_delay: String,
    /// Run the simulated data plane: pods answer HTTP behind an HTTP proxy (see docs/localkube.md).
    #[arg(long)]
    dataplane: bool,
    /// Where the data plane's proxy and request metrics listen (with --dataplane).
    #[arg(long, default_value = "127.0.0.1:0")]
    proxy_addr: std::net::SocketAddr,
    /// An image rule of the simulated registry, checked before the others (repeatable):
    /// `PATTERN` exists, `!PATTERN` does not, `*` matches anything (see docs/localkube.md).
    #[arg(long = "registry-image", value_name = "PATTERN")]
    registry_images: Vec<String>,
    /// A file of registry rules (one per line) replacing the default ones.
    #[arg(long, value_name = "FILE")]
    registry_file: Option<std::path::PathBuf>,
    /// Run the KEDA-like scaler: ScaledObjects with prometheus triggers act (its CRD is
    /// installed).
    #[arg(long)]
    keda: bool,
    /// How often the simulated HorizontalPodAutoscaler controller syncs each HPA.
    #[arg(long, default_value = "15s")]
    hpa_sync_period: String,
    /// Listen on an address other machines can reach (--addr, --proxy-addr). The API has no
    /// authentication: whoever reaches it can read Secrets and run workloads.
    #[arg(long)]
    allow_remote: bool,
    /// More names the API answers to besides loopback ones and --addr's address (e.g. this
    /// machine's name with --allow-remote); requests naming other hosts are refused.
    #[arg(long = "allowed-host", value_name = "NAME", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Inject API faults: a YAML list of rules (verb, resource, namespace, name pattern, code,
    /// rate or count, latency, watch cut); see docs/localkube.md.
    #[arg(long, value_name = "FILE")]
    faults: Option<std::path::PathBuf>,
    /// Authenticate (bearer tokens) and authorize every request with RBAC, as kube-apiserver
    /// does; the written kubeconfig carries an admin token (`system:masters`). See
    /// docs/localkube.md.
    #[arg(long)]
    rbac: bool,
    /// Static users (with --rbac), in kube-apiserver's `--token-auth-file` CSV format:
    /// `token,user,uid[,"group1,group2"]` per line.
    #[arg(long, value_name = "FILE", requires = "rbac")]
    token_auth_file: Option<std::path::PathBuf>,
}

/// Refuses a non-loopback listen address unless `--allow-remote` was given; with it, says
/// loudly what that means.
fn check_remote(args: &LocalArgs) -> Result<(), String> {
    let remote: Vec<String> = std::iter::once(("--addr", args.addr))
        .chain(args.dataplane.then_some(("--proxy-addr", args.proxy_addr)))
        .filter(|(_, a)| !a.ip().is_loopback())
        .map(|(flag, a)| format!("{flag} {a}"))
        .collect();
    if remote.is_empty() {
        return Ok(());
    }
    if !args.allow_remote {
        return Err(format!(
            "{} is reachable from other machines, and localkube's API has no authentication \
             (anyone who reaches it can read Secrets and create workloads). Listen on \
             127.0.0.1, or pass --allow-remote to accept that",
            remote.join(" and ")
        ));
    }
    eprintln!(
        "WARNING: {} listens beyond this machine with --allow-remote.\n\
         WARNING: localkube has NO authentication and NO authorization: anyone who can reach \
         it can read every Secret, create workloads and delete everything.\n\
         WARNING: use it only on a network you trust, and stop it when you are done.",
        remote.join(" and ")
    );
    Ok(())
}

/// Reads a `--faults` file.
fn read_faults(path: &std::path::Path) -> anyhow::Result<localkube::Faults> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("--faults {}: cannot read: {e}", path.display()))?;
    localkube::Faults::from_yaml(&text)
        .map_err(|e| anyhow::anyhow!("--faults {}: {e}", path.display()))
}

fn run_local(args: LocalArgs) -> ExitCode {
    if let Err(e) = check_remote(&args) {
        eprintln!("flagger local: {e}");
        return ExitCode::from(2);
    }
    let faults = match args.faults.as_deref().map(read_faults).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("flagger local: {}", plain(&e));
            return ExitCode::from(2);
        }
    };
    let run = async move {
        let mut config = localkube::Config {
            addr: args.addr,
            allowed_hosts: args.allowed_hosts.clone(),
            ..Default::default()
        };
        if let Some(faults) = faults {
            eprintln!(
                "fault injection: {} rule(s) from {}",
                faults.rules.len(),
                args.faults
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
            config.faults = faults;
        }
        config.sim.nodes = args.nodes;
        config.sim.readiness_delay = localkube::controllers::parse_duration(&args.ready_delay)
            .ok_or_else(|| anyhow::anyhow!("invalid --ready-delay {:?}", args.ready_delay))?;
        config.sim.hpa.sync_period = localkube::controllers::parse_duration(&args.hpa_sync_period)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                anyhow::anyhow!("invalid --hpa-sync-period {:?}", args.hpa_sync_period)
            })?;
        if let Some(file) = &args.registry_file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("reading --registry-file {}: {e}", file.display()))?;
            config.sim.registry = localkube::controllers::ImageRegistry::parse(&text);
        }
        config.sim.registry = config
            .sim
            .registry
            .with_rules_first(args.registry_images.iter().map(String::as_str));
        config.sim.keda = args.keda;
        config.auth.rbac = args.rbac;
        if let Some(file) = &args.token_auth_file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                anyhow::anyhow!("reading --token-auth-file {}: {e}", file.display())
            })?;
            config.auth.static_tokens = localkube::auth::tokens::parse_token_file(&text)
                .map_err(|e| anyhow::anyhow!("--token-auth-file {}: {e}", file.display()))?;
        }
        if args.dataplane {
            config.dataplane = Some(localkube::dataplane::DataPlaneConfig {
                addr: args.proxy_addr,
                ..Default::default()
            });
        }
        let handle = localkube::Server::start(config).await?;
        handle.write_kubeconfig(&args.kubeconfig)?;
        eprintln!(
            "localkube serving on {} - export KUBECONFIG={}{}",
            handle.url(),
            args.kubeconfig.display(),
            if args.rbac {
                " (RBAC on: the kubeconfig's token is the admin's)"
            } else {
                ""
            }
        );
        if let Some(dp) = &handle.dataplane {
            let proxy = dp.proxy_url();
            eprintln!(
                "data plane: export http_proxy={proxy} HTTP_PROXY={proxy} (as workload NAME of namespace NS: {}) - pods to scrape at {}, proxy series at {}",
                dp.proxy_url_for("NAME", "NS"),
                dp.pod_discovery_url(),
                dp.metrics_url()
            );
        }
        stop_requested().await?;
        eprintln!("localkube stopping");
        anyhow::Ok(())
    };
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flagger local: {}", plain(&e));
            ExitCode::FAILURE
        }
    }
}

/// SIGINT (Ctrl-C) or SIGTERM (`kill`, a container runtime stopping the process).
async fn stop_requested() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

/// Flagger's image runs its binary with the controller's flags alone (`./flagger
/// -log-level=info ...`, as its chart and kustomize patches do): when the first argument is a
/// flag other than help or version, `controller` is implied.
fn implicit_controller(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let first = args.get(1).and_then(|a| a.to_str());
    if let Some(first) = first
        && first.starts_with('-')
        && !matches!(first, "-h" | "--help" | "-V" | "--version")
    {
        args.insert(1, "controller".into());
    }
    args
}

fn main() -> ExitCode {
    if let Some(code) = flagger_loadtester::cli::run_if_invoked_as_hey() {
        return code;
    }
    let args = kubectl::plugin_args(std::env::args_os().collect());
    let cli = Cli::parse_from(flagger_controller::args::normalize_go_flags_after(
        implicit_controller(args),
        "controller",
    ));
    match cli.command {
        Command::Controller(args) => run_async(flagger_controller::run::run(*args)),
        Command::Crd => {
            print!("{}", flagger_api::crd::crds_yaml());
            ExitCode::SUCCESS
        }
        Command::Validate(args) => validate::run(args),
        Command::Lint(args) => flagger_lint::run(args),
        Command::Uninstall(args) => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(uninstall::run(args)),
            Err(e) => {
                eprintln!("error: starting the async runtime: {e}");
                ExitCode::from(2)
            }
        },
        Command::Judge(args) => judge::run(*args),
        Command::Kubectl(args) => {
            run_async(kubectl::run(args, <Cli as clap::CommandFactory>::command))
        }
        Command::Dashboard(args) => match dashboard::check(&args) {
            Ok(()) => run_async(dashboard::run(*args)),
            Err(e) => {
                eprintln!("flagger dashboard: {e}");
                ExitCode::from(2)
            }
        },
        Command::Local(args) => run_local(args),
        Command::Demo(args) => run_async(async move {
            if demo::run(args).await? {
                Ok(())
            } else {
                anyhow::bail!("the demo did not end as expected (see above)")
            }
        }),
        Command::Loadtester { args } => flagger_loadtester::cli::loadtester_main(args),
        Command::Hey { args } => flagger_loadtester::hey::main(args),
    }
}

/// Runs an async entry point on a multi-threaded runtime, reporting errors on stderr.
/// An error and its causes for the terminal: an API failure as the API server's message, never
/// the client's debug rendering.
fn plain(e: &anyhow::Error) -> String {
    flagger_controller::error::text(e.as_ref())
}

fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(fut);
    // Work still blocked (a name lookup, a read on a dead connection) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", plain(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn flags_alone_imply_the_controller() {
        let argv = |a: &[&str]| {
            a.iter()
                .map(Into::into)
                .collect::<Vec<std::ffi::OsString>>()
        };
        assert_eq!(
            super::implicit_controller(argv(&["./flagger", "-log-level=info"])),
            argv(&["./flagger", "controller", "-log-level=info"])
        );
        for kept in [
            &["flagger", "crd"][..],
            &["flagger", "--help"],
            &["flagger", "-V"],
            &["flagger"],
        ] {
            assert_eq!(super::implicit_controller(argv(kept)), argv(kept));
        }
    }
}
