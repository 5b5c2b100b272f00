//! The `flagger` binary. Each subcommand's work lives in a library crate; this file only parses
//! arguments and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod schema_check;
mod validate;

/// flagger-rs: progressive delivery for Kubernetes, compatible with Flagger's API.
#[derive(Parser, Debug)]
#[command(name = "flagger", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinitions (Canary, MetricTemplate, AlertProvider) as YAML.
    Crd,
    /// Check Canary manifests offline: every problem, with its field path and how to fix it.
    Validate(validate::Args),
    /// Serve localkube, an in-memory Kubernetes API server, until stopped; writes a kubeconfig.
    Local(LocalArgs),
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
}

fn run_local(args: LocalArgs) -> ExitCode {
    let run = async move {
        let mut config = localkube::Config {
            addr: args.addr,
            ..Default::default()
        };
        config.sim.nodes = args.nodes;
        config.sim.readiness_delay = localkube::controllers::parse_duration(&args.ready_delay)
            .ok_or_else(|| anyhow::anyhow!("invalid --ready-delay {:?}", args.ready_delay))?;
        let handle = localkube::Server::start(config).await?;
        handle.write_kubeconfig(&args.kubeconfig)?;
        eprintln!(
            "localkube serving on {} - export KUBECONFIG={}",
            handle.url(),
            args.kubeconfig.display()
        );
        tokio::signal::ctrl_c().await?;
        anyhow::Ok(())
    };
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flagger local: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", flagger_api::crd::crds_yaml());
            ExitCode::SUCCESS
        }
        Command::Validate(args) => validate::run(args),
        Command::Local(args) => run_local(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
