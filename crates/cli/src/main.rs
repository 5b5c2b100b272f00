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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", flagger_api::crd::crds_yaml());
            ExitCode::SUCCESS
        }
        Command::Validate(args) => validate::run(args),
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
