//! `kubectl flagger`: a kubectl plugin to see and steer canaries (docs/kubectl-flagger.md).
//!
//! The `flagger` binary installed (or linked) as `kubectl-flagger` on the PATH runs this
//! directly (`kubectl flagger get`); `flagger kubectl get` is the same. Reads go through the
//! kubeconfig as kubectl's do (`--kubeconfig`, `--context`, `-n`, `-A`); actions write only the
//! `flagger.app/action` and `flagger.app/action-id` annotations, which no GitOps tool owns: the
//! controller acts on them at the watch event and removes them when done.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Subcommand, ValueEnum};
use flagger_api::labels::{ACTION, ACTION_ID, CONDITION_ANALYSIS, CONDITION_PAUSED};
use flagger_api::{Canary, CanaryCondition, CheckStatus};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Api, Client, Config, ResourceExt};
use serde::Serialize;

/// Field manager of the annotations the plugin writes.
const FIELD_MANAGER: &str = "kubectl-flagger";

/// See and steer canaries (a kubectl plugin: install `flagger` as `kubectl-flagger`).
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Cmd,
}

const EXAMPLES: &str = "Examples:
  kubectl flagger get -A                      # every canary: phase, weight, checks, last decision
  kubectl flagger -n test why podinfo         # each check: value, threshold, query; recent events
  kubectl flagger -n test watch podinfo       # live progress bar and analysis table
  kubectl flagger -n test promote podinfo     # finish now: skip the remaining analysis
  kubectl flagger -n test abort podinfo       # roll back now
  kubectl flagger -n test pause podinfo       # hold where it is; `resume` goes on
  kubectl flagger -n test retry podinfo       # run the analysis of a failed revision again
  kubectl flagger -n test history podinfo     # past runs and outcomes, from events
  kubectl flagger get podinfo -n test -o yaml
  kubectl flagger completion bash > /etc/bash_completion.d/kubectl-flagger

Actions write the annotations flagger.app/action and flagger.app/action-id on the Canary (no
field a GitOps tool owns); the controller acts at once and removes them when done.";

/// kubectl's connection flags.
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace (default: the context's).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Every namespace (get).
    #[arg(short = 'A', long = "all-namespaces", global = true)]
    pub all_namespaces: bool,
    /// Output format: a table for people, json or yaml for scripts.
    #[arg(short = 'o', long, global = true, value_enum)]
    pub output: Option<Output>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List canaries (or one): phase, weight, iteration, failed checks, last decision.
    Get { name: Option<String> },
    /// Follow one canary live: progress bar, analysis table, recent events.
    Watch {
        name: String,
        /// Stop once the run has ended (Succeeded, Failed, Initialized).
        #[arg(long)]
        until_done: bool,
        /// Stop after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Why the canary is where it is: each check with value, threshold, query; recent events.
    Why { name: String },
    /// Finish now: skip the remaining analysis and promote.
    Promote(ActionArgs),
    /// Roll back now.
    Abort(ActionArgs),
    /// Hold the analysis where it is (no advance, no check) until `resume`.
    Pause(ActionArgs),
    /// Go on after `pause`.
    Resume(ActionArgs),
    /// Run the analysis of a failed revision again.
    Retry(ActionArgs),
    /// Past runs and their outcomes, from the canary's events.
    History { name: String },
    /// Print shell completions for `kubectl-flagger`.
    Completion { shell: clap_complete::Shell },
    /// Candidates for the word being typed, in Cobra's `__complete` format, as kubectl asks a
    /// plugin's `kubectl_complete-flagger` for them (kubectl 1.26 and later).
    #[command(name = "__complete", hide = true)]
    Complete {
        /// The words after `kubectl flagger`, the last one being typed.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
}

#[derive(clap::Args, Debug)]
pub struct ActionArgs {
    /// The Canary.
    pub name: String,
    /// Wait until the controller has acted on the request.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits, in seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

/// Runs the plugin; the exit code says whether it worked. `cli` builds the `flagger` command
/// tree (the binary's parser), whose `kubectl` subcommand the completion scripts describe.
pub async fn run(args: Args, cli: fn() -> clap::Command) -> Result<()> {
    let g = &args.global;
    match args.command {
        Cmd::Completion { shell } => {
            let mut cmd = cli();
            let mut plugin = cmd
                .find_subcommand_mut("kubectl")
                .cloned()
                .context("the kubectl subcommand is missing")?
                .name("kubectl-flagger");
            clap_complete::generate(
                shell,
                &mut plugin,
                "kubectl-flagger",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Cmd::Get { name } => get(g, name.as_deref()).await,
        Cmd::Watch {
            name,
            until_done,
            timeout,
        } => watch(g, &name, until_done, timeout.map(Duration::from_secs)).await,
        Cmd::Why { name } => why(g, &name).await,
        Cmd::Promote(a) => act(g, "promote", &a).await,
        Cmd::Abort(a) => act(g, "abort", &a).await,
        Cmd::Pause(a) => act(g, "pause", &a).await,
        Cmd::Resume(a) => act(g, "resume", &a).await,
        Cmd::Retry(a) => act(g, "retry", &a).await,
        Cmd::History { name } => history(g, &name).await,
        Cmd::Complete { words } => {
            print!("{}", complete(g, &words).await);
            Ok(())
        }
    }
}

// ----- completion ----------------------------------------------------------------------------------

/// Cobra's directive "do not complete file names" (`ShellCompDirectiveNoFileComp`).
const NO_FILE_COMPLETION: u8 = 4;

/// The subcommands and their one-line help, as completion candidates show them.
const SUBCOMMANDS: &[(&str, &str)] = &[
    ("get", "List canaries (or one)"),
    ("watch", "Follow one canary live"),
    ("why", "Why the canary is where it is"),
    (
        "promote",
        "Finish now: skip the remaining analysis and promote",
    ),
    ("abort", "Roll back now"),
    ("pause", "Hold the analysis where it is"),
    ("resume", "Go on after pause"),
    ("retry", "Run the analysis of a failed revision again"),
    ("history", "Past runs and their outcomes"),
    ("completion", "Print shell completions"),
];

/// Flags that take a value (the next word is their value, not a positional).
const VALUE_FLAGS: &[&str] = &[
    "--kubeconfig",
    "--context",
    "-n",
    "--namespace",
    "-o",
    "--output",
    "--timeout",
];

/// What to complete, read from the words typed so far.
#[derive(Debug, PartialEq)]
enum Wanted {
    Subcommand,
    Canary { namespace: Option<String> },
    Namespace,
    Output,
    Shell,
    Flag { subcommand: Option<String> },
    Nothing,
}

/// Reads the words typed after `kubectl flagger` (the last is the one being typed).
fn wanted(words: &[String]) -> Wanted {
    let Some((_, before)) = words.split_last() else {
        return Wanted::Subcommand;
    };
    let typing = words.last().map(String::as_str).unwrap_or_default();
    let mut namespace = None;
    let mut positionals = Vec::new();
    let mut i = 0;
    while i < before.len() {
        let w = before[i].as_str();
        if VALUE_FLAGS.contains(&w) {
            if matches!(w, "-n" | "--namespace") {
                namespace = before.get(i + 1).cloned();
            }
            i += 2;
            continue;
        }
        if let Some(ns) = w.strip_prefix("--namespace=") {
            namespace = Some(ns.to_string());
        } else if !w.starts_with('-') {
            positionals.push(w);
        }
        i += 1;
    }
    match before.last().map(String::as_str) {
        Some("-n" | "--namespace") => return Wanted::Namespace,
        Some("-o" | "--output") => return Wanted::Output,
        Some(flag) if VALUE_FLAGS.contains(&flag) => return Wanted::Nothing,
        _ => {}
    }
    if typing.starts_with('-') {
        return Wanted::Flag {
            subcommand: positionals.first().map(|s| s.to_string()),
        };
    }
    match positionals.as_slice() {
        [] => Wanted::Subcommand,
        ["completion"] => Wanted::Shell,
        [sub] if SUBCOMMANDS.iter().any(|(name, _)| name == sub) => Wanted::Canary { namespace },
        _ => Wanted::Nothing,
    }
}

/// The flags of a subcommand (and the connection flags every one has).
fn flags_of(subcommand: Option<&str>) -> Vec<&'static str> {
    let mut flags = vec![
        "--kubeconfig",
        "--context",
        "--namespace",
        "--all-namespaces",
        "--output",
    ];
    match subcommand {
        Some("watch") => flags.extend(["--until-done", "--timeout"]),
        Some("promote" | "abort" | "pause" | "resume" | "retry") => {
            flags.extend(["--wait", "--timeout"])
        }
        _ => {}
    }
    flags
}

/// The candidates for the word being typed, one per line (`value<TAB>help`), then Cobra's
/// directive line. Canary and namespace names come from the cluster; when it cannot be
/// reached there are simply no candidates (a completion never prints an error).
async fn complete(g: &Global, words: &[String]) -> String {
    let typing = words.last().map(String::as_str).unwrap_or_default();
    let candidates: Vec<(String, String)> = match wanted(words) {
        Wanted::Subcommand => SUBCOMMANDS
            .iter()
            .map(|(n, h)| (n.to_string(), h.to_string()))
            .collect(),
        Wanted::Shell => ["bash", "zsh", "fish", "powershell", "elvish"]
            .iter()
            .map(|s| (s.to_string(), String::new()))
            .collect(),
        Wanted::Output => ["json", "yaml"]
            .iter()
            .map(|s| (s.to_string(), String::new()))
            .collect(),
        Wanted::Flag { subcommand } => flags_of(subcommand.as_deref())
            .into_iter()
            .map(|f| (f.to_string(), String::new()))
            .collect(),
        Wanted::Canary { namespace } => {
            let g = Global {
                namespace: namespace.or_else(|| g.namespace.clone()),
                ..g.clone()
            };
            canary_names(&g).await
        }
        Wanted::Namespace => namespace_names(g).await,
        Wanted::Nothing => Vec::new(),
    };
    let mut out = String::new();
    for (value, help) in candidates.iter().filter(|(v, _)| v.starts_with(typing)) {
        if help.is_empty() {
            out.push_str(&format!("{value}\n"));
        } else {
            out.push_str(&format!("{value}\t{help}\n"));
        }
    }
    out.push_str(&format!(":{NO_FILE_COMPLETION}\n"));
    out
}

/// The canaries of the namespace, with their phase as help.
async fn canary_names(g: &Global) -> Vec<(String, String)> {
    let Ok((client, ns)) = connect(g).await else {
        return Vec::new();
    };
    let api: Api<Canary> = Api::namespaced(client, &ns);
    match api.list(&Default::default()).await {
        Ok(list) => list
            .items
            .iter()
            .map(|c| {
                let phase = c
                    .status
                    .as_ref()
                    .map(|s| s.phase.to_string())
                    .unwrap_or_default();
                (c.name_any(), phase)
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The namespaces of the cluster.
async fn namespace_names(g: &Global) -> Vec<(String, String)> {
    let Ok((client, _)) = connect(g).await else {
        return Vec::new();
    };
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    match api.list(&Default::default()).await {
        Ok(list) => list
            .items
            .iter()
            .map(|n| (n.name_any(), String::new()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A client and the namespace to use, as kubectl picks them.
async fn connect(g: &Global) -> Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: g.context.clone(),
        cluster: None,
        user: None,
    };
    let config = match &g.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &options).await
        }
        None => Config::from_kubeconfig(&options).await,
    }
    .context("loading the kubeconfig")?;
    let namespace = g
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).context("connecting to the cluster")?;
    Ok((client, namespace))
}

async fn fetch(api: &Api<Canary>, name: &str, ns: &str) -> Result<Canary> {
    match api.get_opt(name).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => bail!("canary {name} not found in namespace {ns}"),
        Err(e) => Err(anyhow::anyhow!(
            "reading canary {name}.{ns}: {}",
            flagger_controller::error::api_text(&e)
        )),
    }
}

// ----- the summary of a canary -----------------------------------------------------------------

/// One canary in a line.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub name: String,
    pub namespace: String,
    pub phase: String,
    pub weight: i32,
    pub iterations: i32,
    pub failed_checks: i32,
    pub threshold: Option<i32>,
    pub paused: bool,
    pub last_decision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

fn condition<'a>(canary: &'a Canary, kind: &str) -> Option<&'a CanaryCondition> {
    canary
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.r#type == kind)
}

/// The last decision: our `Analysis` condition (it survives Flagger's CRDs), else
/// `status.analysis.lastDecision`, else Flagger's `Promoted` message.
pub fn last_decision(canary: &Canary) -> String {
    condition(canary, CONDITION_ANALYSIS)
        .and_then(|c| c.message.clone())
        .or_else(|| {
            canary
                .status
                .as_ref()
                .and_then(|s| s.analysis.as_ref())
                .and_then(|a| a.last_decision.clone())
        })
        .or_else(|| condition(canary, "Promoted").and_then(|c| c.message.clone()))
        .unwrap_or_default()
}

pub fn summary(canary: &Canary) -> Summary {
    let status = canary.status.clone().unwrap_or_default();
    Summary {
        name: canary.name_any(),
        namespace: canary.namespace().unwrap_or_default(),
        phase: match status.phase.as_str() {
            "" => "New".into(),
            p => p.into(),
        },
        weight: status.canary_weight.unwrap_or(0),
        iterations: status.iterations.unwrap_or(0),
        failed_checks: status.failed_checks.unwrap_or(0),
        threshold: canary.spec.analysis.as_ref().and_then(|a| a.threshold),
        paused: condition(canary, CONDITION_PAUSED).is_some(),
        last_decision: last_decision(canary),
        pending_action: canary.annotations().get(ACTION).cloned(),
        last_transition_time: status.last_transition_time.map(|t| t.0.to_string()),
    }
}

fn print_structured<T: Serialize>(output: Output, value: &T) -> Result<()> {
    let text = match output {
        Output::Json => serde_json::to_string_pretty(value)? + "\n",
        Output::Yaml => serde_yaml::to_string(value)?,
    };
    print!("{text}");
    Ok(())
}

/// Left-aligned columns, two spaces apart (kubectl's look).
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(&cell);
            } else {
                let pad = widths[i] - cell.chars().count() + 2;
                out.push_str(&cell);
                out.push_str(&" ".repeat(pad));
            }
        }
        out.push('\n');
    };
    line(header.iter().map(|h| h.to_string()).collect(), &mut out);
    for row in rows {
        line(row.clone(), &mut out);
    }
    out
}

// ----- get ---------------------------------------------------------------------------------------

async fn get(g: &Global, name: Option<&str>) -> Result<()> {
    let (client, ns) = connect(g).await?;
    let canaries = match name {
        Some(name) => {
            let api: Api<Canary> = Api::namespaced(client, &ns);
            vec![fetch(&api, name, &ns).await?]
        }
        None => {
            let api: Api<Canary> = if g.all_namespaces {
                Api::all(client)
            } else {
                Api::namespaced(client, &ns)
            };
            api.list(&ListParams::default())
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "listing canaries: {}",
                        flagger_controller::error::api_text(&e)
                    )
                })?
                .items
        }
    };
    let summaries: Vec<Summary> = canaries.iter().map(summary).collect();
    if let Some(output) = g.output {
        return match name {
            Some(_) => print_structured(output, &summaries[0]),
            None => print_structured(output, &summaries),
        };
    }
    if summaries.is_empty() {
        if g.all_namespaces {
            println!("No canaries found.");
        } else {
            println!("No canaries found in {ns} namespace.");
        }
        return Ok(());
    }
    let mut header = vec![
        "NAME",
        "PHASE",
        "WEIGHT",
        "ITERATION",
        "FAILED",
        "LAST DECISION",
    ];
    if g.all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            let mut row = vec![
                s.name.clone(),
                if s.paused {
                    format!("{} (paused)", s.phase)
                } else {
                    s.phase.clone()
                },
                format!("{}%", s.weight),
                s.iterations.to_string(),
                match s.threshold {
                    Some(t) => format!("{}/{t}", s.failed_checks),
                    None => s.failed_checks.to_string(),
                },
                s.last_decision.clone(),
            ];
            if g.all_namespaces {
                row.insert(0, s.namespace.clone());
            }
            row
        })
        .collect();
    print!("{}", table(&header, &rows));
    Ok(())
}

// ----- why ---------------------------------------------------------------------------------------

/// An event, for people and scripts.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct EventLine {
    pub time: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub count: i32,
    pub message: String,
}

/// The canary's events, oldest first.
async fn events(client: &Client, ns: &str, name: &str) -> Vec<EventLine> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let Ok(list) = api.list(&ListParams::default()).await else {
        return Vec::new();
    };
    let mut out: Vec<(String, EventLine)> = list
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some("Canary")
                && e.involved_object.name.as_deref() == Some(name)
        })
        .map(|e| {
            let time = e
                .last_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
                .or_else(|| e.first_timestamp.as_ref().map(|t| t.0.to_string()))
                .unwrap_or_default();
            (
                time.clone(),
                EventLine {
                    time,
                    kind: e.type_.unwrap_or_default(),
                    count: e.count.unwrap_or(1),
                    message: e.message.unwrap_or_default(),
                },
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, e)| e).collect()
}

/// `2.5`, `99.5` (two decimals at most).
fn number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn range(check: &CheckStatus) -> String {
    match (check.min, check.max) {
        (Some(min), Some(max)) => format!("{} .. {}", number(min), number(max)),
        (Some(min), None) => format!(">= {}", number(min)),
        (None, Some(max)) => format!("<= {}", number(max)),
        (None, None) => "any".into(),
    }
}

fn verdict_text(check: &CheckStatus) -> String {
    match check.verdict.as_str() {
        "InsufficientData" => "insufficient data".into(),
        v => v.to_lowercase(),
    }
}

/// The analysis table of `why` and `watch`.
fn checks_table(checks: &[CheckStatus]) -> String {
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.provider.clone().unwrap_or_default(),
                c.value.map(number).unwrap_or_else(|| "-".into()),
                range(c),
                verdict_text(c),
                c.failures.to_string(),
                c.time
                    .as_ref()
                    .map(|t| t.0.strftime("%H:%M:%S").to_string())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "CHECK",
            "PROVIDER",
            "VALUE",
            "THRESHOLD",
            "VERDICT",
            "FAILED",
            "TIME",
        ],
        &rows,
    )
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Why {
    #[serde(flatten)]
    summary: Summary,
    checks: Vec<CheckStatus>,
    conditions: Vec<CanaryCondition>,
    events: Vec<EventLine>,
}

async fn why(g: &Global, name: &str) -> Result<()> {
    let (client, ns) = connect(g).await?;
    let api: Api<Canary> = Api::namespaced(client.clone(), &ns);
    let canary = fetch(&api, name, &ns).await?;
    let status = canary.status.clone().unwrap_or_default();
    let checks = status
        .analysis
        .as_ref()
        .map(|a| a.checks.clone())
        .unwrap_or_default();
    let mut events = events(&client, &ns, name).await;
    let keep = events.len().saturating_sub(10);
    events.drain(..keep);
    let why = Why {
        summary: summary(&canary),
        checks,
        conditions: status.conditions.clone().unwrap_or_default(),
        events,
    };
    if let Some(output) = g.output {
        return print_structured(output, &why);
    }
    let s = &why.summary;
    let mut out = String::new();
    out.push_str(&format!(
        "Canary {}.{}: {}{}, weight {}%, iteration {}, failed checks {}{}\n",
        s.name,
        s.namespace,
        s.phase,
        if s.paused { " (paused)" } else { "" },
        s.weight,
        s.iterations,
        s.failed_checks,
        s.threshold.map(|t| format!(" of {t}")).unwrap_or_default()
    ));
    out.push_str(&format!(
        "Last decision: {}\n",
        if s.last_decision.is_empty() {
            "none yet"
        } else {
            &s.last_decision
        }
    ));
    if let Some(action) = &s.pending_action {
        out.push_str(&format!("Pending request: {action}\n"));
    }
    out.push('\n');
    if why.checks.is_empty() {
        out.push_str(
            "No metric check recorded in status.analysis (none ran in this analysis yet, or the \
             cluster has Flagger's CRDs, which prune it: the last decision above still says why).\n",
        );
    } else {
        out.push_str(&checks_table(&why.checks));
        out.push('\n');
        for c in &why.checks {
            out.push_str(&format!("{}:\n", c.name));
            if let Some(reason) = &c.reason {
                out.push_str(&format!("  reason:    {reason}\n"));
            }
            if let Some(v) = c.value {
                out.push_str(&format!("  value:     {v}\n"));
            }
            out.push_str(&format!("  threshold: {}\n", range(c)));
            if let Some(since) = &c.insufficient_since {
                out.push_str(&format!("  no data since: {}\n", since.0));
            }
            out.push_str(&format!(
                "  query:     {}\n",
                c.query
                    .as_deref()
                    .unwrap_or("(none: the check did not reach a query)")
            ));
        }
    }
    if !why.events.is_empty() {
        out.push_str("\nRecent events:\n");
        let rows: Vec<Vec<String>> = why
            .events
            .iter()
            .map(|e| {
                vec![
                    e.time.clone(),
                    e.kind.clone(),
                    if e.count > 1 {
                        format!("x{}", e.count)
                    } else {
                        String::new()
                    },
                    e.message.clone(),
                ]
            })
            .collect();
        out.push_str(&table(&["TIME", "TYPE", "COUNT", "MESSAGE"], &rows));
    }
    print!("{out}");
    Ok(())
}

// ----- watch -------------------------------------------------------------------------------------

/// Where the run stands against where it ends: `(now, end, unit)`.
fn progress(canary: &Canary) -> (i32, i32, &'static str) {
    let status = canary.status.clone().unwrap_or_default();
    let a = canary.spec.analysis.clone().unwrap_or_default();
    let iterations = a.iterations.unwrap_or(0);
    if iterations > 0 {
        return (status.iterations.unwrap_or(0), iterations, "iteration");
    }
    let max = a
        .step_weights
        .as_ref()
        .and_then(|w| w.last().copied())
        .or(a.max_weight)
        .unwrap_or(100);
    (status.canary_weight.unwrap_or(0), max.max(1), "%")
}

fn bar(now: i32, end: i32, width: usize) -> String {
    let filled = ((now.clamp(0, end) as f64 / end as f64) * width as f64).round() as usize;
    format!(
        "[{}{}]",
        "#".repeat(filled),
        "-".repeat(width.saturating_sub(filled))
    )
}

/// The screen of `watch` for one state of the canary.
fn screen(canary: &Canary, events: &[EventLine]) -> String {
    let s = summary(canary);
    let (now, end, unit) = progress(canary);
    let mut out = String::new();
    out.push_str(&format!(
        "Canary {}.{}   {}{}\n\n",
        s.name,
        s.namespace,
        s.phase,
        if s.paused { " (paused)" } else { "" }
    ));
    let done = matches!(s.phase.as_str(), "Succeeded" | "Promoting" | "Finalising");
    let (now, label) = if done {
        (end, "promoted".to_string())
    } else if unit == "%" {
        (now, format!("weight {now}% of {end}%"))
    } else {
        (now, format!("iteration {now}/{end}"))
    };
    out.push_str(&format!("{} {label}\n", bar(now, end, 40)));
    out.push_str(&format!(
        "failed checks {}{}\n",
        s.failed_checks,
        s.threshold.map(|t| format!(" of {t}")).unwrap_or_default()
    ));
    out.push_str(&format!("last decision: {}\n\n", s.last_decision));
    let checks = canary
        .status
        .as_ref()
        .and_then(|st| st.analysis.as_ref())
        .map(|a| a.checks.clone())
        .unwrap_or_default();
    if checks.is_empty() {
        out.push_str("(no metric check in this analysis yet)\n");
    } else {
        out.push_str(&checks_table(&checks));
    }
    if !events.is_empty() {
        out.push_str("\nEvents:\n");
        for e in events {
            let time = e.time.get(11..19).unwrap_or(&e.time);
            out.push_str(&format!("  {time}  {}\n", e.message));
        }
    }
    out
}

async fn watch(g: &Global, name: &str, until_done: bool, timeout: Option<Duration>) -> Result<()> {
    let (client, ns) = connect(g).await?;
    let api: Api<Canary> = Api::namespaced(client.clone(), &ns);
    fetch(&api, name, &ns).await?;
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(api, config).boxed();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, stream.next()).await {
                Ok(n) => n,
                Err(_) => return Ok(()),
            },
            None => stream.next().await,
        };
        let canary = match next {
            None => return Ok(()),
            Some(Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c))) => c,
            Some(Ok(watcher::Event::Delete(_))) => {
                println!("canary {name}.{ns} was deleted");
                return Ok(());
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                eprintln!("watch interrupted ({}); resuming", watch_text(&e));
                continue;
            }
        };
        let mut events = events(&client, &ns, name).await;
        let keep = events.len().saturating_sub(6);
        events.drain(..keep);
        if g.output.is_some() {
            println!("{}", serde_json::to_string(&summary(&canary))?);
        } else {
            let text = screen(&canary, &events);
            let mut stdout = std::io::stdout();
            if tty {
                // Home, then clear the screen: one frame per watch event.
                write!(stdout, "\x1b[H\x1b[2J{text}")?;
            } else {
                writeln!(stdout, "{text}---")?;
            }
            stdout.flush()?;
        }
        let phase = canary
            .status
            .as_ref()
            .map(|s| s.phase.as_str())
            .unwrap_or("");
        if until_done && matches!(phase, "Succeeded" | "Failed") {
            return Ok(());
        }
    }
}

// ----- actions -----------------------------------------------------------------------------------

/// A watcher error without Rust's debug formatting.
pub fn watch_text(e: &watcher::Error) -> String {
    match e {
        watcher::Error::InitialListFailed(k)
        | watcher::Error::WatchStartFailed(k)
        | watcher::Error::WatchFailed(k) => flagger_controller::error::api_text(k),
        watcher::Error::WatchError(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// A fresh id for a request (the time in nanoseconds and the process id).
fn nonce() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}-{}", std::process::id())
}

/// The actions a request annotation can carry.
pub const ACTIONS: [&str; 5] = ["promote", "abort", "pause", "resume", "retry"];

/// Writes the request `verb` on the Canary (the `flagger.app/action` and `flagger.app/action-id`
/// annotations, as `field_manager`) and returns the request's id. The plugin and the dashboard
/// both ask through this.
pub async fn request(
    api: &Api<Canary>,
    name: &str,
    verb: &str,
    field_manager: &str,
) -> Result<String, kube::Error> {
    let id = nonce();
    let patch = serde_json::json!({
        "metadata": {"annotations": {ACTION: verb, ACTION_ID: id}}
    });
    let params = PatchParams {
        field_manager: Some(field_manager.into()),
        ..Default::default()
    };
    api.patch(name, &params, &Patch::Merge(&patch)).await?;
    Ok(id)
}

async fn act(g: &Global, verb: &str, a: &ActionArgs) -> Result<()> {
    let (client, ns) = connect(g).await?;
    let api: Api<Canary> = Api::namespaced(client, &ns);
    let name = &a.name;
    fetch(&api, name, &ns).await?;
    let id = request(&api, name, verb, FIELD_MANAGER)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "writing the request on canary {name}.{ns}: {}",
                flagger_controller::error::api_text(&e)
            )
        })?;
    if !a.wait {
        println!("canary {name}.{ns}: {verb} requested ({ACTION}={verb}, {ACTION_ID}={id})");
        return Ok(());
    }
    let done = |c: &Canary| -> bool {
        let annotations = c.annotations();
        let mine = annotations.get(ACTION_ID) == Some(&id);
        if verb == "pause" {
            // A pause stays on the Canary; the controller says it holds by the condition.
            !mine || condition(c, CONDITION_PAUSED).is_some()
        } else {
            !mine
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(a.timeout);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(api.clone(), config).boxed();
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => bail!(
                "canary {name}.{ns}: the controller did not act on {verb} within {}s \
                 (is it running? `kubectl flagger why {name}` says more)",
                a.timeout
            ),
            Ok(None) => bail!("canary {name}.{ns}: the watch ended"),
            Ok(Some(Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)))) if done(&c) => {
                println!(
                    "canary {name}.{ns}: {verb} done: {} ({})",
                    summary(&c).phase,
                    last_decision(&c)
                );
                return Ok(());
            }
            Ok(Some(Ok(watcher::Event::Delete(_)))) => {
                bail!("canary {name}.{ns} was deleted")
            }
            Ok(Some(_)) => {}
        }
    }
}

// ----- history -----------------------------------------------------------------------------------

/// What an event says about a run, if anything.
fn run_outcome(message: &str) -> Option<&'static str> {
    let starts = |p: &str| message.starts_with(p);
    Some(if starts("New revision detected") {
        "started"
    } else if starts("Promotion completed") {
        "promoted"
    } else if starts("Canary failed!") {
        "failed"
    } else if starts("Rolling back") {
        "rolling back"
    } else if starts("Retrying") {
        "retry requested"
    } else if starts("Promotion of") {
        "promotion requested"
    } else if starts("Paused") {
        "paused"
    } else if starts("Resumed") {
        "resumed"
    } else if starts("Initialization done") {
        "initialized"
    } else if starts("Halt") && message.contains("insufficient data") {
        "insufficient data"
    } else {
        return None;
    })
}

#[derive(Serialize, Debug)]
struct HistoryLine {
    time: String,
    outcome: &'static str,
    count: i32,
    message: String,
}

async fn history(g: &Global, name: &str) -> Result<()> {
    let (client, ns) = connect(g).await?;
    let api: Api<Canary> = Api::namespaced(client.clone(), &ns);
    fetch(&api, name, &ns).await?;
    let lines: Vec<HistoryLine> = events(&client, &ns, name)
        .await
        .into_iter()
        .filter_map(|e| {
            run_outcome(&e.message).map(|outcome| HistoryLine {
                time: e.time,
                outcome,
                count: e.count,
                message: e.message,
            })
        })
        .collect();
    if let Some(output) = g.output {
        return print_structured(output, &lines);
    }
    if lines.is_empty() {
        println!(
            "No run recorded in the events of canary {name}.{ns} (events expire, after an hour \
             by default)."
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            vec![
                l.time.clone(),
                l.outcome.to_string(),
                if l.count > 1 {
                    format!("x{}", l.count)
                } else {
                    String::new()
                },
                l.message.clone(),
            ]
        })
        .collect();
    print!("{}", table(&["TIME", "OUTCOME", "COUNT", "MESSAGE"], &rows));
    Ok(())
}

/// `kubectl-flagger ARGS` → `flagger kubectl ARGS`, when the binary runs under the plugin's name.
pub fn plugin_args(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let invoked_as_plugin = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_stem().map(|s| s.to_owned()))
        .is_some_and(|stem| stem == "kubectl-flagger" || stem == "kubectl_complete-flagger");
    if !invoked_as_plugin {
        return args;
    }
    let completing = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_stem())
        .is_some_and(|stem| stem == "kubectl_complete-flagger");
    let mut out = vec![std::ffi::OsString::from("flagger"), "kubectl".into()];
    if completing {
        // kubectl hands its plugin's completer the words typed after `kubectl flagger`.
        out.extend(["__complete".into(), "--".into()]);
    }
    out.extend(args.into_iter().skip(1));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_reads_what_is_being_typed() {
        let w = |v: &[&str]| wanted(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(w(&[]), Wanted::Subcommand);
        assert_eq!(w(&["pro"]), Wanted::Subcommand);
        assert_eq!(w(&["-n", "test", ""]), Wanted::Subcommand);
        assert_eq!(
            w(&["-n", "test", "promote", "po"]),
            Wanted::Canary {
                namespace: Some("test".into())
            }
        );
        assert_eq!(
            w(&["why", "--namespace=prod", ""]),
            Wanted::Canary {
                namespace: Some("prod".into())
            }
        );
        assert_eq!(w(&["get", "-n", ""]), Wanted::Namespace);
        assert_eq!(w(&["get", "-o", "j"]), Wanted::Output);
        assert_eq!(w(&["completion", "ba"]), Wanted::Shell);
        assert_eq!(
            w(&["watch", "--u"]),
            Wanted::Flag {
                subcommand: Some("watch".into())
            }
        );
        assert_eq!(w(&["why", "podinfo", ""]), Wanted::Nothing);
        assert_eq!(w(&["get", "--kubeconfig", ""]), Wanted::Nothing);
        assert!(flags_of(Some("promote")).contains(&"--wait"));
        assert!(!flags_of(Some("get")).contains(&"--wait"));
    }

    #[test]
    fn the_plugin_name_runs_the_kubectl_subcommand() {
        let args = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert_eq!(
            plugin_args(args(&["/usr/local/bin/kubectl-flagger", "get", "-A"])),
            args(&["flagger", "kubectl", "get", "-A"])
        );
        assert_eq!(
            plugin_args(args(&["flagger", "get"])),
            args(&["flagger", "get"])
        );
        assert_eq!(
            plugin_args(args(&[
                "/bin/kubectl_complete-flagger",
                "-n",
                "test",
                "pro"
            ])),
            args(&[
                "flagger",
                "kubectl",
                "__complete",
                "--",
                "-n",
                "test",
                "pro"
            ])
        );
    }

    #[test]
    fn tables_align_and_bars_fill() {
        let t = table(
            &["A", "BB"],
            &[vec!["xxx".into(), "y".into()], vec!["z".into(), "w".into()]],
        );
        assert_eq!(t, "A    BB\nxxx  y\nz    w\n");
        assert_eq!(bar(20, 40, 10), "[#####-----]");
        assert_eq!(bar(50, 40, 4), "[####]");
        assert_eq!(
            run_outcome("Promotion completed! Scaling down a.b"),
            Some("promoted")
        );
        assert_eq!(run_outcome("Advance a.b canary weight 20"), None);
    }
}
