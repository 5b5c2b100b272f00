//! Command-line flags of `flagger controller`: every flag of Flagger 1.44's controller
//! (`cmd/flagger/main.go`, and the klog flags it registers), accepted with one dash or two and
//! Go's boolean spellings, most also settable through the environment. Flags whose job
//! flagger-rs does differently, or not yet, are accepted and reported at startup by
//! [`Args::startup_notes`], never refused: a Deployment written for Flagger starts unchanged.

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

    /// Default provider when a Canary sets none (empty: istio, as in Flagger).
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
    #[arg(long, env = "FLAGGER_ENABLE_CONFIG_TRACKING", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub enable_config_tracking: bool,

    /// Canaries reconciled in parallel.
    #[arg(long, env = "FLAGGER_THREADINESS", default_value_t = 2)]
    pub threadiness: u16,

    /// Global event webhook (called for every event when a canary has no `event` hook).
    #[arg(long, env = "EVENT_WEBHOOK_URL", hide_env_values = true)]
    pub event_webhook: Option<String>,

    /// Forbid cross-namespace MetricTemplate, AlertProvider and Upstream references.
    #[arg(long, env = "FLAGGER_NO_CROSS_NAMESPACE_REFS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
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

    /// What a metric check without data does when the Canary's `flagger.app/no-data`
    /// annotation does not say: `fail` (Flagger's behaviour: a failed check) or `hold` (neither
    /// advance nor count until data arrives or the progress deadline).
    #[arg(long, env = "FLAGGER_NO_DATA_POLICY", default_value = "fail")]
    pub no_data_policy: flagger_core::steer::NoDataPolicy,

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
    #[arg(long, env = "FLAGGER_SAFE_DELETION", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub safe_deletion: bool,

    /// When a change to the target's HorizontalPodAutoscaler reaches the primary's:
    /// `promotion` (Flagger's behaviour: copied at the next promotion) or `immediate` (at once,
    /// without a rollout).
    #[arg(long, env = "FLAGGER_AUTOSCALER_SYNC", default_value = "promotion", value_parser = ["promotion", "immediate"])]
    pub autoscaler_sync: String,

    /// Cap on canaries whose run is under way at once, cluster-wide (0: no cap). Canaries over
    /// the cap wait in `Waiting` with a `Queued` condition giving their place in line, first
    /// come first served by detection time; runs under way are never held back.
    #[arg(long, env = "FLAGGER_MAX_CONCURRENT_CANARIES", default_value_t = 0)]
    pub max_concurrent_canaries: u32,

    /// The same cap per namespace (0: no cap).
    #[arg(
        long,
        env = "FLAGGER_MAX_CONCURRENT_CANARIES_PER_NAMESPACE",
        default_value_t = 0
    )]
    pub max_concurrent_canaries_per_namespace: u32,

    /// Log format: `json` (Flagger's: one JSON object per line with `level`, `ts`, `msg`,
    /// `canary`, `namespace`) or `text`.
    #[arg(long, env = "FLAGGER_LOG_FORMAT", default_value = "json", value_parser = ["text", "json"])]
    pub log_format: String,

    /// Flagger's log encoding flag: `json`, or `console` (the same as `-log-format=text`).
    #[arg(long, env = "FLAGGER_ZAP_ENCODING", value_parser = ["json", "console"])]
    pub zap_encoding: Option<String>,

    /// Run only while holding the Lease `flagger-leader-election` (several replicas, one active).
    #[arg(long, env = "FLAGGER_ENABLE_LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
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

    /// Split the canaries into this many shards across replicas (flagger-rs; 0: one leader, or
    /// every replica acting without `-enable-leader-election`, as Flagger). Each replica holds
    /// the Leases `flagger-shard-<i>` of a share of the shards (in the leader election
    /// namespace, with its lease duration) and acts only on their canaries; a dead replica's
    /// shards are taken over when their Leases expire. Every replica must run the same value.
    #[arg(long, env = "FLAGGER_SHARDS", default_value_t = 0)]
    pub shards: u32,

    /// Sustained requests per second to the API server (client-side limit; 0: none).
    #[arg(long, env = "FLAGGER_KUBECONFIG_QPS", default_value_t = 100.0)]
    pub kubeconfig_qps: f64,

    /// Requests the API server may get at once above `-kubeconfig-qps`.
    #[arg(long, env = "FLAGGER_KUBECONFIG_BURST", default_value_t = 250)]
    pub kubeconfig_burst: u64,

    /// How often the canaries are counted into the `flagger_canary_total` gauge (Flagger
    /// recounts it when it syncs its canary map to analysis jobs, at this period). flagger-rs
    /// schedules canaries by watch events and each canary's own analysis interval, so the gauge
    /// is all this flag sets.
    #[arg(long, env = "FLAGGER_CONTROL_LOOP_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub control_loop_interval: Duration,

    /// Kubeconfig of the cluster that holds the mesh/ingress objects (Flagger: defaults to
    /// `-kubeconfig`). Only one cluster is supported yet: routing objects are written with the
    /// main client, and a different value is reported at startup.
    #[arg(long, env = "FLAGGER_KUBECONFIG_SERVICE_MESH")]
    pub kubeconfig_service_mesh: Option<PathBuf>,

    /// Ingress class set on Contour HTTPProxy objects (`spec.ingressClassName`).
    #[arg(long, env = "FLAGGER_INGRESS_CLASS")]
    pub ingress_class: Option<String>,

    /// Flagger's switch for its global zap logger. flagger-rs has one logger: accepted, no effect.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub zap_replace_globals: bool,

    /// Print the version and exit.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub version: bool,

    /// klog's flags, which Flagger registers (its client library's logging). flagger-rs logs
    /// through `-log-level` and `-log-format`: accepted, no effect.
    #[command(flatten)]
    pub klog: KlogFlags,
}

/// The flags `klog.InitFlags` adds to Flagger's command line. Accepted so that Flagger's
/// manifests start flagger-rs unchanged; none has an effect (see [`Args::startup_notes`]).
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "klog flags (Flagger's client logging; accepted, no effect)")]
pub struct KlogFlags {
    /// klog: verbosity level.
    #[arg(long = "v", short = 'v', value_name = "LEVEL")]
    pub v: Option<String>,
    /// klog: per-file verbosity (pattern=N,...).
    #[arg(long = "vmodule", value_name = "PATTERNS")]
    pub vmodule: Option<String>,
    /// klog: directory of log files.
    #[arg(long = "log_dir", value_name = "DIR")]
    pub log_dir: Option<String>,
    /// klog: a single log file.
    #[arg(long = "log_file", value_name = "FILE")]
    pub log_file: Option<String>,
    /// klog: maximum log file size in MB.
    #[arg(long = "log_file_max_size", value_name = "MB")]
    pub log_file_max_size: Option<String>,
    /// klog: log to standard error instead of files.
    #[arg(long = "logtostderr", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub logtostderr: Option<bool>,
    /// klog: log to standard error as well as files.
    #[arg(long = "alsologtostderr", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub alsologtostderr: Option<bool>,
    /// klog: add the file directory to log headers.
    #[arg(long = "add_dir_header", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub add_dir_header: Option<bool>,
    /// klog: no header prefixes on log lines.
    #[arg(long = "skip_headers", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub skip_headers: Option<bool>,
    /// klog: no headers when opening log files.
    #[arg(long = "skip_log_headers", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub skip_log_headers: Option<bool>,
    /// klog: write each severity to its own file only.
    #[arg(long = "one_output", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub one_output: Option<bool>,
    /// klog: severity from which logs also go to standard error.
    #[arg(long = "stderrthreshold", value_name = "SEVERITY")]
    pub stderrthreshold: Option<String>,
    /// klog: emit a stack trace when logging hits file:N.
    #[arg(long = "log_backtrace_at", value_name = "FILE:N")]
    pub log_backtrace_at: Option<String>,
    /// klog: whether -stderrthreshold follows klog's legacy rules.
    #[arg(long = "legacy_stderr_threshold_behavior", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub legacy_stderr_threshold_behavior: Option<bool>,
}

impl KlogFlags {
    /// The klog flags given on the command line, as `-name=value`.
    pub fn given(&self) -> Vec<String> {
        let text = |name: &str, v: &Option<String>| v.as_ref().map(|v| format!("-{name}={v}"));
        let flag = |name: &str, v: &Option<bool>| v.map(|v| format!("-{name}={v}"));
        [
            text("v", &self.v),
            text("vmodule", &self.vmodule),
            text("log_dir", &self.log_dir),
            text("log_file", &self.log_file),
            text("log_file_max_size", &self.log_file_max_size),
            flag("logtostderr", &self.logtostderr),
            flag("alsologtostderr", &self.alsologtostderr),
            flag("add_dir_header", &self.add_dir_header),
            flag("skip_headers", &self.skip_headers),
            flag("skip_log_headers", &self.skip_log_headers),
            flag("one_output", &self.one_output),
            text("stderrthreshold", &self.stderrthreshold),
            text("log_backtrace_at", &self.log_backtrace_at),
            flag(
                "legacy_stderr_threshold_behavior",
                &self.legacy_stderr_threshold_behavior,
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// How loud a startup note is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteLevel {
    Info,
    Warn,
}

/// The version line of `-version`.
pub fn version_line() -> String {
    format!(
        "flagger-rs version {} (Flagger 1.44 API and flags)",
        env!("CARGO_PKG_VERSION")
    )
}

fn parse_provider(s: &str) -> Result<Provider, String> {
    // Flagger's chart passes no -mesh-provider when `meshProvider` is empty, and an explicitly
    // empty value reaches Flagger's router and observer factories, whose fallback is Istio.
    if s.trim().is_empty() {
        return Ok(Provider::Istio);
    }
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

/// Go's `strconv.ParseBool`, which Flagger's boolean flags use.
fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!(
            "invalid boolean value {s:?}; valid: true, false (or 1, 0, t, f)"
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
    /// What to say at startup about flags that flagger-rs accepts for compatibility but does
    /// not act on (or acts on differently): one line per flag given, none for defaults.
    pub fn startup_notes(&self) -> Vec<(NoteLevel, String)> {
        let mut notes = Vec::new();
        if self.control_loop_interval != Duration::from_secs(10) {
            notes.push((
                NoteLevel::Info,
                format!(
                    "-control-loop-interval={}: sets only how often flagger_canary_total is counted; flagger-rs schedules canaries by watch events and each canary's own analysis interval",
                    flagger_core::duration::format_go(self.control_loop_interval)
                ),
            ));
        }
        if let Some(mesh) = &self.kubeconfig_service_mesh
            && Some(mesh) != self.kubeconfig.as_ref()
        {
            notes.push((
                NoteLevel::Warn,
                format!(
                    "-kubeconfig-service-mesh={}: a separate service-mesh cluster is not supported yet; routing objects are written to the cluster of -kubeconfig",
                    mesh.display()
                ),
            ));
        }
        if self.zap_replace_globals {
            notes.push((
                NoteLevel::Info,
                "-zap-replace-globals: flagger-rs has a single logger; no effect".into(),
            ));
        }
        if self.shards > 0 && self.enable_leader_election {
            notes.push((
                NoteLevel::Info,
                format!(
                    "-shards={} with -enable-leader-election: the shard Leases replace the single leader's; every replica acts on the canaries of the shards it holds",
                    self.shards
                ),
            ));
        }
        let klog = self.klog.given();
        if !klog.is_empty() {
            notes.push((
                NoteLevel::Info,
                format!(
                    "{}: klog flags have no effect in flagger-rs; logs follow -log-level and -log-format",
                    klog.join(" ")
                ),
            ));
        }
        notes
    }

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

    /// Every flag of Flagger 1.44's `cmd/flagger/main.go` and of `klog.InitFlags`, with a value.
    const FLAGGER_FLAGS: &[&str] = &[
        "-kubeconfig=/tmp/kubeconfig",
        "-kubeconfig-qps=50",
        "-kubeconfig-burst=100",
        "-master=https://127.0.0.1:6443",
        "-metrics-server=http://prometheus.istio-system:9090",
        "-control-loop-interval=5s",
        "-log-level=info",
        "-port=9090",
        "-slack-url=https://hooks.slack.com/services/x",
        "-slack-token=t0k",
        "-slack-proxy-url=http://proxy:3128",
        "-slack-user=bot",
        "-slack-channel=alerts",
        "-event-webhook=http://events.example/hook",
        "-msteams-url=https://outlook.office.com/webhook/y",
        "-msteams-proxy-url=http://proxy:3128",
        "-include-label-prefix=app.kubernetes.io",
        "-threadiness=4",
        "-zap-replace-globals",
        "-zap-encoding=console",
        "-namespace=test",
        "-mesh-provider=linkerd",
        "-selector-labels=app,name",
        "-ingress-annotations-prefix=custom.ingress.kubernetes.io",
        "-ingress-class=contour",
        "-enable-leader-election=true",
        "-leader-election-namespace=flagger-system",
        "-enable-config-tracking=false",
        "-version=false",
        "-kubeconfig-service-mesh=/tmp/controlplane/kubeconfig",
        "-cluster-name=prod",
        "-no-cross-namespace-refs=true",
        // klog
        "-v=2",
        "-vmodule=controller=4",
        "-log_dir=/tmp",
        "-log_file=/tmp/flagger.log",
        "-log_file_max_size=1800",
        "-logtostderr=true",
        "-alsologtostderr",
        "-add_dir_header=false",
        "-skip_headers",
        "-skip_log_headers=true",
        "-one_output=false",
        "-stderrthreshold=2",
        "-log_backtrace_at=main.go:10",
        "-legacy_stderr_threshold_behavior=true",
    ];

    #[test]
    fn accepts_every_flag_of_flaggers_controller() {
        for dashes in ["-", "--"] {
            let argv = std::iter::once("controller".to_string()).chain(
                FLAGGER_FLAGS
                    .iter()
                    .map(|f| format!("{}{}", &dashes[1..], f)),
            );
            let args = Args::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(args.control_loop_interval, Duration::from_secs(5));
            assert_eq!(args.ingress_class.as_deref(), Some("contour"));
            assert!(args.zap_replace_globals);
            assert!(!args.json_logs());
            assert!(!args.version);
            assert_eq!(args.mesh_provider, Provider::Linkerd);
            assert_eq!(args.port, 9090);
            assert_eq!(
                args.kubeconfig_service_mesh,
                Some(PathBuf::from("/tmp/controlplane/kubeconfig"))
            );
            assert_eq!(args.klog.given().len(), 14);
            let notes = args.startup_notes();
            let text: Vec<&str> = notes.iter().map(|(_, n)| n.as_str()).collect();
            assert_eq!(notes.len(), 4, "{text:#?}");
            assert!(text[0].starts_with(
                "-control-loop-interval=5s: sets only how often flagger_canary_total is counted"
            ));
            assert_eq!(notes[1].0, NoteLevel::Warn);
            assert!(text[1].contains("not supported yet"));
            assert!(text[2].starts_with("-zap-replace-globals"));
            assert!(text[3].starts_with("-v=2 -vmodule=controller=4"));
        }
        // Defaults say nothing; the same mesh kubeconfig as the main one is no news.
        let quiet = Args::try_parse_from([
            "controller",
            "-kubeconfig=/k",
            "-kubeconfig-service-mesh=/k",
        ])
        .expect("parses");
        assert_eq!(quiet.startup_notes(), vec![]);
    }

    #[test]
    fn version_and_go_booleans() {
        let args = Args::try_parse_from(["controller", "-version"]).expect("parses");
        assert!(args.version);
        assert!(version_line().starts_with("flagger-rs version "));
        for (value, want) in [
            ("1", true),
            ("t", true),
            ("TRUE", true),
            ("F", false),
            ("0", false),
        ] {
            let args = Args::try_parse_from([
                "controller".to_string(),
                format!("-enable-config-tracking={value}"),
            ])
            .expect("parses");
            assert_eq!(args.enable_config_tracking, want, "{value}");
        }
        let bare = Args::try_parse_from(["controller", "-enable-config-tracking"]).expect("parses");
        assert!(bare.enable_config_tracking);
        let err = Args::try_parse_from(["controller", "-enable-config-tracking=maybe"])
            .expect_err("refused")
            .to_string();
        assert!(err.contains("invalid boolean value \"maybe\""), "{err}");
    }

    /// Flagger's chart passes no `-mesh-provider` when `meshProvider` is empty, and Flagger's
    /// factories fall back to Istio for an empty one: both mean istio here too.
    #[test]
    fn empty_mesh_provider_means_istio() {
        let unset = Args::try_parse_from(["controller"]).expect("parses");
        assert_eq!(unset.mesh_provider, Provider::Istio);
        let empty = Args::try_parse_from(["controller", "-mesh-provider="]).expect("parses");
        assert_eq!(empty.mesh_provider, Provider::Istio);
    }

    #[test]
    fn help_lists_every_flag_and_unknown_flags_fail_clearly() {
        use clap::CommandFactory;
        let help = Standalone::command().render_long_help().to_string();
        for flag in FLAGGER_FLAGS {
            let name = flag.trim_start_matches('-');
            let name = name.split_once('=').map_or(name, |(n, _)| n);
            assert!(help.contains(&format!("--{name}")), "--help lacks {name}");
        }
        let err = Args::try_parse_from(["controller", "-no-such-flag=1"])
            .expect_err("unknown flags are refused")
            .to_string();
        assert!(
            err.contains("unexpected argument '--no-such-flag'"),
            "{err}"
        );
    }

    #[test]
    fn rejects_unknown_provider_and_level() {
        assert!(Cli::try_parse_from(["flagger", "--mesh-provider", "gatewayapi"]).is_err());
        assert!(Cli::try_parse_from(["flagger", "--log-level", "loud"]).is_err());
    }
}
