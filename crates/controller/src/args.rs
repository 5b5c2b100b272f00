//! Command-line flags of `flagger controller`: Flagger's flags (accepted with one dash or two),
//! each also settable through the environment.

use std::path::PathBuf;
use std::time::Duration;

use flagger_core::model::Provider;
use flagger_core::notify::{Destination, NotifierKind, check_address};
use flagger_core::workload::LabelPolicy;

/// Flags of the controller.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Path to a kubeconfig (out of cluster); default: in-cluster config or $KUBECONFIG.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// API server URL, overriding the kubeconfig's.
    #[arg(long)]
    pub master: Option<String>,

    /// Default Prometheus for builtin checks and inline queries.
    #[arg(
        long,
        env = "FLAGGER_METRICS_SERVER",
        default_value = "http://prometheus:9090"
    )]
    pub metrics_server: String,

    /// Default provider when a Canary sets none.
    #[arg(long, env = "FLAGGER_MESH_PROVIDER", default_value = "istio", value_parser = parse_provider)]
    pub mesh_provider: Provider,

    /// debug, info, warn (or warning), error.
    #[arg(long, env = "FLAGGER_LOG_LEVEL", default_value = "debug", value_parser = parse_log_level)]
    pub log_level: String,

    /// Port of /metrics, /healthz and /readyz.
    #[arg(long, env = "FLAGGER_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Watch one namespace only.
    #[arg(long, env = "FLAGGER_NAMESPACE")]
    pub namespace: Option<String>,

    /// Ordered selector label keys.
    #[arg(
        long,
        env = "FLAGGER_SELECTOR_LABELS",
        default_value = "app,name,app.kubernetes.io/name"
    )]
    pub selector_labels: String,

    /// Prefixes of labels and annotations copied to primary objects (`*` for all).
    #[arg(long, env = "FLAGGER_INCLUDE_LABEL_PREFIX", default_value = "")]
    pub include_label_prefix: String,

    /// Track ConfigMaps and Secrets referenced by targets.
    #[arg(long, env = "FLAGGER_ENABLE_CONFIG_TRACKING", default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_config_tracking: bool,

    /// Canaries reconciled in parallel.
    #[arg(long, env = "FLAGGER_THREADINESS", default_value_t = 2)]
    pub threadiness: u16,

    /// Global event webhook (called for every event when a canary has no `event` hook).
    #[arg(long, env = "EVENT_WEBHOOK_URL", hide_env_values = true)]
    pub event_webhook: Option<String>,

    /// Forbid cross-namespace MetricTemplate, AlertProvider and Upstream references.
    #[arg(long, env = "FLAGGER_NO_CROSS_NAMESPACE_REFS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub no_cross_namespace_refs: bool,

    /// Prefix of the NGINX canary annotations (`<prefix>/canary-weight`, ...).
    #[arg(
        long,
        env = "FLAGGER_INGRESS_ANNOTATIONS_PREFIX",
        default_value = "nginx.ingress.kubernetes.io"
    )]
    pub ingress_annotations_prefix: String,

    /// Name added to alerts as the `Cluster` field.
    #[arg(long, env = "FLAGGER_CLUSTER_NAME")]
    pub cluster_name: Option<String>,

    /// Global Slack notifier: incoming webhook URL (used when a canary has no `analysis.alerts`).
    #[arg(long, env = "SLACK_URL", hide_env_values = true)]
    pub slack_url: Option<String>,

    /// Global Slack notifier: bearer token.
    #[arg(long, env = "SLACK_TOKEN", hide_env_values = true)]
    pub slack_token: Option<String>,

    /// Global Slack notifier: HTTP(S) proxy.
    #[arg(long, env = "SLACK_PROXY_URL", hide_env_values = true)]
    pub slack_proxy_url: Option<String>,

    /// Global Slack notifier: user name.
    #[arg(long, env = "FLAGGER_SLACK_USER", default_value = "flagger")]
    pub slack_user: String,

    /// Global Slack notifier: channel (required, as in Flagger, for Slack alerts to be sent).
    #[arg(long, env = "FLAGGER_SLACK_CHANNEL")]
    pub slack_channel: Option<String>,

    /// Global MS Teams notifier: webhook URL; takes precedence over Slack.
    #[arg(long, env = "MSTEAMS_URL", hide_env_values = true)]
    pub msteams_url: Option<String>,

    /// Global MS Teams notifier: HTTP(S) proxy.
    #[arg(long, env = "MSTEAMS_PROXY_URL", hide_env_values = true)]
    pub msteams_proxy_url: Option<String>,

    /// Shortest analysis interval; Flagger's is 10s. Lower it for tests and demos.
    #[arg(long, env = "FLAGGER_MIN_ANALYSIS_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub min_analysis_interval: Duration,

    /// Reversions of another writer's change to one generated object (within
    /// `-gitops-window`) after which the controller stops reverting it and leaves the object to
    /// that writer, keeping the target serving if the object routes to it. 0: revert forever,
    /// as Flagger does.
    #[arg(long, env = "FLAGGER_GITOPS_MAX_REVERSIONS", default_value_t = 3)]
    pub gitops_max_reversions: u32,

    /// Window over which reversions are counted.
    #[arg(long, env = "FLAGGER_GITOPS_WINDOW", default_value = "30m", value_parser = parse_duration)]
    pub gitops_window: Duration,

    /// Hand traffic back to the target whenever a Canary is deleted, as `revertOnDeletion: true`
    /// does (the finalizer is added to every Canary): the target is scaled up and Ready, and the
    /// apex Service points at it, before the primary is garbage collected. `false`: Flagger's
    /// behaviour (without `revertOnDeletion`, deleting a Canary leaves the target at zero).
    #[arg(long, env = "FLAGGER_SAFE_DELETION", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub safe_deletion: bool,

    /// Log format: `json` (Flagger's: one JSON object per line with `level`, `ts`, `msg`,
    /// `canary`, `namespace`) or `text`.
    #[arg(long, env = "FLAGGER_LOG_FORMAT", default_value = "json", value_parser = ["text", "json"])]
    pub log_format: String,

    /// Flagger's log encoding flag: `json`, or `console` (the same as `-log-format=text`).
    #[arg(long, env = "FLAGGER_ZAP_ENCODING", value_parser = ["json", "console"])]
    pub zap_encoding: Option<String>,

    /// Run only while holding the Lease `flagger-leader-election` (several replicas, one active).
    #[arg(long, env = "FLAGGER_ENABLE_LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_leader_election: bool,

    /// Namespace of the leader election Lease (the `-namespace` one when that is set).
    #[arg(
        long,
        env = "FLAGGER_LEADER_ELECTION_NAMESPACE",
        default_value = "kube-system"
    )]
    pub leader_election_namespace: String,

    /// How long a leader's Lease lasts without renewal (flagger-rs; Flagger's is 60s).
    #[arg(long, env = "FLAGGER_LEADER_ELECTION_LEASE_DURATION", default_value = "60s", value_parser = parse_duration)]
    pub leader_election_lease_duration: Duration,

    /// Sustained requests per second to the API server (client-side limit; 0: none).
    #[arg(long, env = "FLAGGER_KUBECONFIG_QPS", default_value_t = 100.0)]
    pub kubeconfig_qps: f64,

    /// Requests the API server may get at once above `-kubeconfig-qps`.
    #[arg(long, env = "FLAGGER_KUBECONFIG_BURST", default_value_t = 250)]
    pub kubeconfig_burst: u64,
}

fn parse_provider(s: &str) -> Result<Provider, String> {
    Provider::parse_flag(s).ok_or_else(|| {
        format!(
            "unknown mesh provider {s:?}; valid: {}",
            flagger_api::PROVIDERS.join(", ")
        )
    })
}

fn parse_log_level(s: &str) -> Result<String, String> {
    match s {
        "debug" | "info" | "warn" | "error" => Ok(s.to_string()),
        // Flagger advertises `warning` but silently treats it as info; we honour it.
        "warning" => Ok("warn".into()),
        "fatal" | "panic" => Ok("error".into()),
        _ => Err(format!(
            "unknown log level {s:?}; valid: debug, info, warn, error"
        )),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    flagger_core::duration::parse_go_duration(s).map_err(|e| e.to_string())
}

impl Args {
    /// Whether logs are JSON lines (`-log-format`, overridden by `-zap-encoding`).
    pub fn json_logs(&self) -> bool {
        match self.zap_encoding.as_deref() {
            Some("console") => false,
            Some(_) => true,
            None => self.log_format == "json",
        }
    }

    /// The label policy from `-selector-labels` and `-include-label-prefix`.
    pub fn label_policy(&self) -> LabelPolicy {
        let split = |s: &str| -> Vec<String> {
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        };
        LabelPolicy {
            selector_labels: split(&self.selector_labels),
            include_prefixes: split(&self.include_label_prefix),
        }
    }
}

impl Args {
    /// The global notifier of `-slack-*` / `-msteams-*` (Flagger's `initNotifier`): MS Teams
    /// when its URL is set, else Slack when its URL is set, else none. `Err` when the flags
    /// cannot make a notifier (Flagger logs it and sends nothing).
    pub fn global_notifier(&self) -> Result<Option<Destination>, String> {
        let set = |o: &Option<String>| o.as_deref().filter(|s| !s.is_empty()).map(str::to_string);
        let (kind, url, proxy, token, channel) = if let Some(url) = set(&self.msteams_url) {
            (
                NotifierKind::MsTeams,
                url,
                set(&self.msteams_proxy_url),
                None,
                String::new(),
            )
        } else if let Some(url) = set(&self.slack_url) {
            let channel = set(&self.slack_channel)
                .ok_or("Notifier slack: empty channel; set -slack-channel to send alerts")?;
            (
                NotifierKind::Slack,
                url,
                set(&self.slack_proxy_url),
                set(&self.slack_token),
                channel,
            )
        } else {
            return Ok(None);
        };
        check_address(&url).map_err(|e| format!("Notifier {}: {e}", kind.as_str()))?;
        Ok(Some(Destination {
            kind,
            url,
            channel,
            username: self.slack_user.clone(),
            proxy,
            token,
        }))
    }
}

/// A parser for the controller's flags alone (embedding programs and tests).
#[derive(clap::Parser, Debug)]
#[command(name = "controller")]
struct Standalone {
    #[command(flatten)]
    args: Args,
}

impl Args {
    /// Parses `argv` (its first item is the program name), Go-style single-dash flags included.
    pub fn try_parse_from<I, T>(argv: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString>,
    {
        use clap::Parser as _;
        Standalone::try_parse_from(normalize_go_flags(argv.into_iter().map(Into::into)))
            .map(|s| s.args)
    }
}

/// Rewrites Go-style single-dash long flags (`-metrics-server=http://…`) to clap's double-dash
/// form. Single-letter flags are left alone.
pub fn normalize_go_flags(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    args.into_iter()
        .map(|a| match a.to_str() {
            Some(s) if s.starts_with('-') && !s.starts_with("--") && s.len() > 2 => {
                std::ffi::OsString::from(format!("-{s}"))
            }
            _ => a,
        })
        .collect()
}

/// Applies [`normalize_go_flags`] to the arguments that follow `subcommand` (the first
/// argument equal to it); the arguments before it are left alone.
pub fn normalize_go_flags_after(
    args: impl IntoIterator<Item = std::ffi::OsString>,
    subcommand: &str,
) -> Vec<std::ffi::OsString> {
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    match args.iter().position(|a| a == subcommand) {
        Some(i) => {
            let mut out = args[..=i].to_vec();
            out.extend(normalize_go_flags(args[i + 1..].iter().cloned()));
            out
        }
        None => args,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn accepts_flaggers_single_dash_flags() {
        let argv = normalize_go_flags(
            [
                "flagger",
                "-mesh-provider=kubernetes",
                "-metrics-server=http://prom:9090",
                "-log-level=warning",
                "-enable-config-tracking=false",
                "-include-label-prefix=app.kubernetes.io,team",
                "-min-analysis-interval=1s",
            ]
            .map(Into::into),
        );
        let cli = Cli::try_parse_from(argv).expect("parses");
        assert_eq!(cli.args.mesh_provider, Provider::Kubernetes);
        assert_eq!(cli.args.metrics_server, "http://prom:9090");
        assert_eq!(cli.args.log_level, "warn");
        assert!(!cli.args.enable_config_tracking);
        assert_eq!(cli.args.min_analysis_interval, Duration::from_secs(1));
        assert_eq!(
            cli.args.label_policy().include_prefixes,
            vec!["app.kubernetes.io", "team"]
        );
    }

    #[test]
    fn global_notifier_follows_flaggers_init_notifier() {
        let parse = |argv: &[&str]| {
            let mut all = vec!["flagger"];
            all.extend_from_slice(argv);
            Cli::try_parse_from(normalize_go_flags(all.into_iter().map(Into::into)))
                .expect("parses")
                .args
        };
        assert_eq!(parse(&[]).global_notifier(), Ok(None));
        let slack = parse(&[
            "-slack-url=https://hooks.slack.com/services/x",
            "-slack-channel=alerts",
            "-slack-token=t0k",
            "-slack-proxy-url=http://proxy:3128",
        ])
        .global_notifier()
        .expect("valid")
        .expect("configured");
        assert_eq!(
            slack,
            Destination {
                kind: NotifierKind::Slack,
                url: "https://hooks.slack.com/services/x".into(),
                channel: "alerts".into(),
                username: "flagger".into(),
                proxy: Some("http://proxy:3128".into()),
                token: Some("t0k".into()),
            }
        );
        // Flagger's Slack notifier needs a channel; without one nothing is sent.
        assert!(
            parse(&["-slack-url=https://hooks.slack.com/services/x"])
                .global_notifier()
                .is_err()
        );
        // MS Teams wins over Slack.
        let teams = parse(&[
            "-slack-url=https://hooks.slack.com/services/x",
            "-slack-channel=alerts",
            "-msteams-url=https://outlook.office.com/webhook/y",
            "-msteams-proxy-url=http://proxy:3128",
        ])
        .global_notifier()
        .expect("valid")
        .expect("configured");
        assert_eq!(teams.kind, NotifierKind::MsTeams);
        assert_eq!(teams.url, "https://outlook.office.com/webhook/y");
        assert_eq!(teams.proxy.as_deref(), Some("http://proxy:3128"));
        assert!(
            parse(&["-msteams-url=not a url"])
                .global_notifier()
                .is_err()
        );
    }

    #[test]
    fn rejects_unknown_provider_and_level() {
        assert!(Cli::try_parse_from(["flagger", "--mesh-provider", "gatewayapi"]).is_err());
        assert!(Cli::try_parse_from(["flagger", "--log-level", "loud"]).is_err());
    }
}
