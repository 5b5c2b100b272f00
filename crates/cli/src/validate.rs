//! `flagger validate FILE...`: offline validation of Canary manifests.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `flagger validate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// YAML files (multi-document); `-` reads standard input.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub fn run(args: Args) -> ExitCode {
    let Args { files } = args;
    eprintln!("validate: not built yet ({} files)", files.len());
    ExitCode::FAILURE
}
