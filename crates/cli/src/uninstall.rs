//! `flagger uninstall`: hand every Canary's traffic back to its target before the controller
//! (or its CRDs) go; see `flagger_controller::handover` for the order of the steps.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use flagger_controller::handover::{self, Options};
use flagger_core::workload::LabelPolicy;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Arguments of `flagger uninstall`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Run it before removing the controller, deleting the CRDs or moving from \
manifests to Helm (docs/gitops.md). It needs no running controller. Exit codes: 0 every \
Canary handed over; 1 the Canaries could not be listed, or one or more could not be handed \
over (each is reported; a Canary that fails is not deleted); 2 usage or kubeconfig error."
)]
pub struct Args {
    /// Only Canaries in this namespace (default: all namespaces).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// How long to wait for each target to be ready and each Service to have endpoints.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    timeout: Duration,
    /// The controller's -selector-labels, if it was started with other ones.
    #[arg(long, value_delimiter = ',')]
    selector_labels: Vec<String>,
    /// Hand traffic back but keep the Canaries (suspended).
    #[arg(long)]
    keep_canaries: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    flagger_core::duration::parse_go_duration(s).map_err(|e| e.to_string())
}

pub async fn run(args: Args) -> ExitCode {
    let client = match client(&args).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", flagger_controller::error::text(e.as_ref()));
            return ExitCode::from(2);
        }
    };
    let mut labels = LabelPolicy::default();
    if !args.selector_labels.is_empty() {
        labels.selector_labels = args.selector_labels.clone();
    }
    let opts = Options {
        namespace: args.namespace.clone(),
        timeout: args.timeout,
        labels,
        keep_canaries: args.keep_canaries,
    };
    let mut say = |line: String| println!("{line}");
    match handover::uninstall(&client, &opts, &mut say).await {
        Ok(n) => {
            println!("{n} Canaries handed over; the controller and the CRDs can now be removed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", flagger_controller::error::text(e.as_ref()));
            ExitCode::from(1)
        }
    }
}

async fn client(args: &Args) -> anyhow::Result<kube::Client> {
    let config = match &args.kubeconfig {
        Some(path) => {
            // Bounded like every file the CLI reads, checked before it is parsed.
            let text = input_guard::files::read_file(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            input_guard::check_yaml(&text, &input_guard::files::DOCUMENT_LIMITS)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            let kc = Kubeconfig::from_yaml(&text)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}
