//! `flagger judge`: the statistical judge (`flagger_core::judge`, docs/judge.md) run offline on
//! two series, from files or from two PromQL range queries, to see what it would decide.
//!
//! Exit codes: 0 Pass, 1 Fail, 2 Marginal or bad input (a message on stderr, nothing judged).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use flagger_core::judge::config::{
    Direction, EffectMeasure, NanStrategy, OutlierStrategy, Spread, TestKind,
};
use flagger_core::judge::{
    self, Counts, JudgeConfig, Judgement, MetricConfig, MetricData, MetricInput, Thresholds,
    Verdict,
};
use serde::Deserialize;

pub mod input;
pub mod prometheus;
mod render;

use input::Series;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The per-metric table, the reasons and the verdict.
    Table,
    /// The whole judgement as JSON (every figure).
    Json,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DirectionArg {
    Increase,
    Decrease,
    Either,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum NanArg {
    Remove,
    Replace,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum MeasureArg {
    #[value(name = "meanRatio", alias = "mean-ratio")]
    MeanRatio,
    Cles,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum TestArg {
    #[value(name = "mannWhitney", alias = "mann-whitney")]
    MannWhitney,
    Proportions,
}

/// Options of every metric, as flags (or per metric in `--config`).
#[derive(clap::Args, Debug, Default)]
#[command(next_help_heading = "Metric options (every metric; or per metric with --config)")]
pub struct MetricFlags {
    /// Which change counts against the canary [default: either].
    #[arg(long, value_enum)]
    direction: Option<DirectionArg>,
    /// A failure of the metric fails the canary (score 0).
    #[arg(long)]
    critical: bool,
    /// Missing data counts as a failure instead of being left out.
    #[arg(long)]
    must_have_data: bool,
    /// Points that are not numbers (NaN, ±Inf): dropped or counted as 0 [default: remove].
    #[arg(long, value_enum)]
    nan_strategy: Option<NanArg>,
    /// Drop outliers beyond the IQR fences before testing.
    #[arg(long)]
    remove_outliers: bool,
    /// IQR multiplier of the outlier fences [default: 3].
    #[arg(long, value_name = "FACTOR")]
    outlier_factor: Option<f64>,
    /// Effect-size measure gating High/Low [default: meanRatio].
    #[arg(long, value_enum)]
    effect_size: Option<MeasureArg>,
    /// Effect size at or above which a higher canary is High (meanRatio 1.1 = 10% higher).
    #[arg(long, value_name = "EFFECT")]
    allowed_increase: Option<f64>,
    /// Effect size at or below which a lower canary is Low.
    #[arg(long, value_name = "EFFECT")]
    allowed_decrease: Option<f64>,
    /// Effect size from which a critical metric's High fails the canary.
    #[arg(long, value_name = "EFFECT")]
    critical_increase: Option<f64>,
    /// Effect size from which a critical metric's Low fails the canary.
    #[arg(long, value_name = "EFFECT")]
    critical_decrease: Option<f64>,
    /// Score group of the metrics (repeatable) [default: default].
    #[arg(long = "group", value_name = "NAME")]
    groups: Vec<String>,
    /// The test: Mann-Whitney on the series, or proportions of events out of trials
    /// [default: mannWhitney].
    #[arg(long, value_enum)]
    test: Option<TestArg>,
    /// With --test proportions: the metric (column) holding the trials; every other metric is
    /// a count of events.
    #[arg(long, value_name = "METRIC")]
    trials: Option<String>,
    /// Also compare the spread (distances to the median); fails as High when the canary's is
    /// higher and their mean ratio is at least RATIO.
    #[arg(long, value_name = "RATIO", num_args = 0..=1, default_missing_value = "1")]
    spread: Option<f64>,
    /// Exact Mann-Whitney interval where R uses it (under 50 points a side, no ties).
    #[arg(long)]
    exact: bool,
    /// Fewer points than this on a side is "no data" [default: 0, off].
    #[arg(long, value_name = "N")]
    min_points: Option<usize>,
}

impl MetricFlags {
    fn any(&self) -> bool {
        let MetricFlags {
            direction,
            critical,
            must_have_data,
            nan_strategy,
            remove_outliers,
            outlier_factor,
            effect_size,
            allowed_increase,
            allowed_decrease,
            critical_increase,
            critical_decrease,
            groups,
            test,
            trials,
            spread,
            exact,
            min_points,
        } = self;
        direction.is_some()
            || *critical
            || *must_have_data
            || nan_strategy.is_some()
            || *remove_outliers
            || outlier_factor.is_some()
            || effect_size.is_some()
            || allowed_increase.is_some()
            || allowed_decrease.is_some()
            || critical_increase.is_some()
            || critical_decrease.is_some()
            || !groups.is_empty()
            || test.is_some()
            || trials.is_some()
            || spread.is_some()
            || *exact
            || min_points.is_some()
    }

    fn config(&self) -> MetricConfig {
        let mut c = MetricConfig::default();
        if let Some(d) = self.direction {
            c.direction = match d {
                DirectionArg::Increase => Direction::Increase,
                DirectionArg::Decrease => Direction::Decrease,
                DirectionArg::Either => Direction::Either,
            };
        }
        c.critical = self.critical;
        c.must_have_data = self.must_have_data;
        if let Some(n) = self.nan_strategy {
            c.nan_strategy = match n {
                NanArg::Remove => NanStrategy::Remove,
                NanArg::Replace => NanStrategy::Replace,
            };
        }
        if self.remove_outliers {
            c.outliers.strategy = OutlierStrategy::Remove;
        }
        if let Some(f) = self.outlier_factor {
            c.outliers.outlier_factor = f;
        }
        if let Some(m) = self.effect_size {
            c.effect_size.measure = match m {
                MeasureArg::MeanRatio => EffectMeasure::MeanRatio,
                MeasureArg::Cles => EffectMeasure::Cles,
            };
        }
        c.effect_size.allowed_increase = self.allowed_increase;
        c.effect_size.allowed_decrease = self.allowed_decrease;
        c.effect_size.critical_increase = self.critical_increase;
        c.effect_size.critical_decrease = self.critical_decrease;
        c.groups = self.groups.clone();
        if let Some(t) = self.test {
            c.test = match t {
                TestArg::MannWhitney => TestKind::MannWhitney,
                TestArg::Proportions => TestKind::Proportions,
            };
        }
        c.spread = self
            .spread
            .map(|allowed_increase| Spread { allowed_increase });
        c.exact = self.exact;
        c.min_points = self.min_points.unwrap_or(0);
        c
    }
}

/// Arguments of `flagger judge`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Input:
  Files (--canary and --primary): CSV, or JSON when the name ends in .json.
    CSV, wide form: a header line naming the columns; each column is a metric, except
      timestamp/time; one row per point; an empty cell is no point.
    CSV, long form: columns metric and value (others ignored); one row per point.
    JSON: {\"latency\": [0.1, 0.12, ...], ...}, or a saved Prometheus query_range answer
      with one series (named by --metric).
    Values: numbers, or NaN/Inf/-Inf (handled by --nan-strategy).
  Prometheus (--prometheus URL): --canary-query and --primary-query are range queries over
    --start..--end every --step; each must give one series (aggregate in PromQL).

Config file (--config, YAML):
  thresholds: {pass: 95, marginal: 75}
  groupWeights: {latency: 60, errors: 40}
  default: {direction: increase}          # metrics not listed below
  metrics:
    latency: {direction: increase, critical: true, effectSize: {allowedIncrease: 1.1}}
    errors: {test: proportions, trials: requests, groups: [errors]}

Exit codes:
  0  Pass
  1  Fail
  2  Marginal, or bad input (nothing judged)

See docs/judge.md for what the judge computes and how to read the table.")]
pub struct Args {
    /// Canary series file (CSV or JSON).
    #[arg(
        long,
        value_name = "FILE",
        requires = "primary",
        conflicts_with = "prometheus"
    )]
    pub canary: Option<PathBuf>,
    /// Primary series file (CSV or JSON).
    #[arg(long, value_name = "FILE", requires = "canary")]
    pub primary: Option<PathBuf>,
    /// Prometheus URL to run --canary-query and --primary-query against.
    #[arg(
        long,
        value_name = "URL",
        requires_all = ["canary_query", "primary_query", "start", "end"]
    )]
    pub prometheus: Option<String>,
    /// PromQL giving the canary's series.
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    pub canary_query: Option<String>,
    /// PromQL giving the primary's series.
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    pub primary_query: Option<String>,
    /// With --test proportions: PromQL giving the canary's trials (the query gives events).
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    pub canary_trials_query: Option<String>,
    /// With --test proportions: PromQL giving the primary's trials.
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    pub primary_trials_query: Option<String>,
    /// Start of the range: RFC 3339, Unix seconds, now or now-<duration> (now-30m).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub start: Option<String>,
    /// End of the range (same forms as --start).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub end: Option<String>,
    /// Resolution of the range queries: a duration or seconds.
    #[arg(long, value_name = "DURATION", default_value = "1m")]
    pub step: String,
    /// Name of the metric of a single series (Prometheus queries, a saved query_range answer).
    #[arg(long, value_name = "NAME", default_value = "metric")]
    pub metric: String,
    /// YAML file of thresholds, group weights and per-metric options.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Score at or above which the canary passes [default: 95, or the config file's].
    #[arg(long, value_name = "SCORE")]
    pub pass: Option<f64>,
    /// Score at or above which a canary that does not pass is marginal [default: 75].
    #[arg(long, value_name = "SCORE")]
    pub marginal: Option<f64>,
    /// Weight of a group in the score (repeatable): GROUP=WEIGHT.
    #[arg(long = "group-weight", value_name = "GROUP=WEIGHT")]
    pub group_weights: Vec<String>,
    #[command(flatten)]
    pub metric_options: MetricFlags,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Format,
}

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigFile {
    thresholds: Option<Thresholds>,
    #[serde(default)]
    group_weights: BTreeMap<String, f64>,
    default: Option<serde_yaml::Value>,
    #[serde(default)]
    metrics: BTreeMap<String, serde_yaml::Value>,
}

/// A metric's options and, for the proportions test, where its trials are.
#[derive(Clone, Debug)]
struct MetricSpec {
    config: MetricConfig,
    trials: Option<String>,
}

/// Reads a metric's options: `trials` is the CLI's own key, the rest is the core's schema.
fn metric_spec(field: &str, value: &serde_yaml::Value) -> Result<MetricSpec, String> {
    let mut value = value.clone();
    if !(value.is_null() || value.is_mapping()) {
        return Err(format!("{field}: expected a map of options"));
    }
    let trials = match value.as_mapping_mut().and_then(|m| m.remove("trials")) {
        None => None,
        Some(serde_yaml::Value::String(s)) => Some(s),
        Some(_) => return Err(format!("{field}.trials: must be a metric name")),
    };
    let config = if value.is_null() {
        MetricConfig::default()
    } else {
        serde_yaml::from_value(value).map_err(|e| format!("{field}: {e}"))?
    };
    Ok(MetricSpec { config, trials })
}

/// Everything that decides how the series are judged.
struct Plan {
    judge: JudgeConfig,
    default: MetricSpec,
    metrics: BTreeMap<String, MetricSpec>,
}

fn plan(args: &Args) -> Result<Plan, String> {
    let file = match &args.config {
        Some(path) => {
            if args.metric_options.any() {
                return Err(
                    "per-metric flags cannot be combined with --config: put the options in the file"
                        .to_string(),
                );
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
            serde_yaml::from_str::<ConfigFile>(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => ConfigFile::default(),
    };
    let mut thresholds = file.thresholds.unwrap_or(Thresholds {
        pass: 95.0,
        marginal: 75.0,
    });
    if let Some(p) = args.pass {
        thresholds.pass = p;
    }
    if let Some(m) = args.marginal {
        thresholds.marginal = m;
    }
    let mut group_weights = file.group_weights;
    for gw in &args.group_weights {
        let (g, w) = gw
            .split_once('=')
            .ok_or_else(|| format!("--group-weight {gw:?}: expected GROUP=WEIGHT"))?;
        let w: f64 = w
            .trim()
            .parse()
            .map_err(|_| format!("--group-weight {gw:?}: {w:?} is not a number"))?;
        group_weights.insert(g.trim().to_string(), w);
    }
    let default = match &file.default {
        Some(v) => metric_spec("default", v)?,
        None => MetricSpec {
            config: args.metric_options.config(),
            trials: args.metric_options.trials.clone(),
        },
    };
    let mut metrics = BTreeMap::new();
    for (name, v) in &file.metrics {
        metrics.insert(name.clone(), metric_spec(&format!("metrics.{name}"), v)?);
    }
    Ok(Plan {
        judge: JudgeConfig {
            thresholds,
            group_weights,
        },
        default,
        metrics,
    })
}

/// The metrics to judge, built from the two sides' series.
fn inputs(plan: &Plan, canary: &Series, primary: &Series) -> Result<Vec<MetricInput>, String> {
    // Every series name, in order of appearance, then metrics configured but absent.
    let mut names: Vec<String> = Vec::new();
    for n in canary.names().chain(primary.names()) {
        if !names.iter().any(|m| m == n) {
            names.push(n.to_string());
        }
    }
    for n in plan.metrics.keys() {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let spec = |name: &str| plan.metrics.get(name).unwrap_or(&plan.default);
    // Series used as trials are not judged themselves.
    let trials_of: Vec<String> = names
        .iter()
        .filter(|n| spec(n).config.test == TestKind::Proportions)
        .filter_map(|n| spec(n).trials.clone())
        .collect();
    let empty = Vec::new();
    let mut out = Vec::new();
    for name in &names {
        if trials_of.contains(name) {
            continue;
        }
        let s = spec(name);
        let c = canary.get(name).unwrap_or(&empty);
        let p = primary.get(name).unwrap_or(&empty);
        let data = match s.config.test {
            TestKind::MannWhitney => MetricData::Series {
                canary: c.clone(),
                primary: p.clone(),
            },
            TestKind::Proportions => {
                let Some(t) = &s.trials else {
                    return Err(format!(
                        "metric {name}: the proportions test needs its trials: name the metric \
                         holding them (trials: in --config, or --trials)"
                    ));
                };
                if canary.get(t).is_none() && primary.get(t).is_none() {
                    return Err(format!(
                        "metric {name}: no series named {t} (its trials) in the input"
                    ));
                }
                let sum = |v: Option<&Vec<f64>>| {
                    v.map(|v| v.iter().filter(|x| x.is_finite()).sum())
                        .unwrap_or(0.0)
                };
                MetricData::Counts {
                    canary: Counts {
                        events: sum(Some(c)),
                        trials: sum(canary.get(t)),
                    },
                    primary: Counts {
                        events: sum(Some(p)),
                        trials: sum(primary.get(t)),
                    },
                }
            }
        };
        out.push(MetricInput {
            name: name.clone(),
            config: s.config.clone(),
            data,
        });
    }
    if out.is_empty() {
        return Err("no metric to judge: the inputs hold no series".to_string());
    }
    Ok(out)
}

/// Both sides' series, from files or Prometheus.
fn load(args: &Args, plan: &Plan) -> Result<(Series, Series), String> {
    if let (Some(c), Some(p)) = (&args.canary, &args.primary) {
        return Ok((
            input::read_file(c, &args.metric)?,
            input::read_file(p, &args.metric)?,
        ));
    }
    let (Some(url), Some(cq), Some(pq), Some(start), Some(end)) = (
        &args.prometheus,
        &args.canary_query,
        &args.primary_query,
        &args.start,
        &args.end,
    ) else {
        return Err(
            "give --canary and --primary files, or --prometheus with --canary-query, \
             --primary-query, --start and --end"
                .to_string(),
        );
    };
    let now = SystemTime::now();
    let start = prometheus::parse_time(start, now).map_err(|e| format!("--start {e}"))?;
    let end = prometheus::parse_time(end, now).map_err(|e| format!("--end {e}"))?;
    if end <= start {
        return Err("--end must come after --start".to_string());
    }
    let step = prometheus::parse_step(&args.step)?;
    let proportions = plan.default.config.test == TestKind::Proportions
        || plan
            .metrics
            .get(&args.metric)
            .is_some_and(|s| s.config.test == TestKind::Proportions);
    let trials_name = format!("{}:trials", args.metric);
    let trials = match (&args.canary_trials_query, &args.primary_trials_query) {
        (Some(_), Some(_)) if !proportions => {
            return Err(
                "--canary-trials-query and --primary-trials-query go with --test proportions"
                    .to_string(),
            );
        }
        (Some(c), Some(p)) => Some((c.clone(), p.clone())),
        (None, None) if proportions => {
            return Err(
                "the proportions test needs --canary-trials-query and --primary-trials-query"
                    .to_string(),
            );
        }
        (None, None) => None,
        _ => {
            return Err(
                "give both --canary-trials-query and --primary-trials-query, or neither"
                    .to_string(),
            );
        }
    };
    let prom = prometheus::Prometheus::new(url)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    rt.block_on(async {
        let mut canary = prom.range(&args.metric, cq, start, end, step).await?;
        let mut primary = prom.range(&args.metric, pq, start, end, step).await?;
        if let Some((ct, pt)) = trials {
            canary
                .0
                .extend(prom.range(&trials_name, &ct, start, end, step).await?.0);
            primary
                .0
                .extend(prom.range(&trials_name, &pt, start, end, step).await?.0);
        }
        Ok((canary, primary))
    })
}

fn judge_all(args: &Args) -> Result<Judgement, String> {
    let mut plan = plan(args)?;
    if args.prometheus.is_some()
        && (args.canary_trials_query.is_some() || args.primary_trials_query.is_some())
    {
        // The trials queries' series go by this name.
        let trials = format!("{}:trials", args.metric);
        let spec = plan
            .metrics
            .get(&args.metric)
            .cloned()
            .unwrap_or_else(|| plan.default.clone());
        plan.metrics.insert(
            args.metric.clone(),
            MetricSpec {
                trials: Some(trials),
                ..spec
            },
        );
    }
    let (canary, primary) = load(args, &plan)?;
    let inputs = inputs(&plan, &canary, &primary)?;
    judge::judge(&inputs, &plan.judge).map_err(|e| {
        let lines: Vec<String> = e.problems.iter().map(|p| format!("  {p}")).collect();
        format!("invalid options:\n{}", lines.join("\n"))
    })
}

pub fn run(args: Args) -> ExitCode {
    let judgement = match judge_all(&args) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("flagger judge: {e}");
            return ExitCode::from(2);
        }
    };
    match args.output {
        Format::Table => print!("{}", render::table(&judgement)),
        Format::Json => match serde_json::to_string_pretty(&judgement) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("flagger judge: writing JSON: {e}");
                return ExitCode::from(2);
            }
        },
    }
    match judgement.verdict {
        Verdict::Pass => ExitCode::SUCCESS,
        Verdict::Fail => ExitCode::from(1),
        Verdict::Marginal => ExitCode::from(2),
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

    fn args(argv: &[&str]) -> Args {
        Cli::try_parse_from(std::iter::once("judge").chain(argv.iter().copied()))
            .expect("arguments parse")
            .args
    }

    fn series(items: &[(&str, &[f64])]) -> Series {
        Series(
            items
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect(),
        )
    }

    #[test]
    fn flags_configure_every_metric() {
        let a = args(&[
            "--canary=c.csv",
            "--primary=p.csv",
            "--direction=increase",
            "--critical",
            "--allowed-increase=1.1",
            "--group=latency",
            "--spread",
            "--pass=90",
        ]);
        let p = plan(&a).expect("plan");
        assert_eq!(p.judge.thresholds.pass, 90.0);
        assert_eq!(p.judge.thresholds.marginal, 75.0);
        let c = &p.default.config;
        assert_eq!(c.direction, Direction::Increase);
        assert!(c.critical);
        assert_eq!(c.effect_size.allowed_increase, Some(1.1));
        assert_eq!(c.groups, ["latency"]);
        assert_eq!(c.spread, Some(Spread::default()));
    }

    #[test]
    fn proportions_take_their_trials_from_another_series() {
        let a = args(&[
            "--canary=c.csv",
            "--primary=p.csv",
            "--test=proportions",
            "--trials=requests",
        ]);
        let p = plan(&a).expect("plan");
        let canary = series(&[("errors", &[1.0, 2.0]), ("requests", &[100.0, 100.0])]);
        let primary = series(&[("errors", &[0.0, f64::NAN]), ("requests", &[100.0, 90.0])]);
        let inputs = inputs(&p, &canary, &primary).expect("inputs");
        assert_eq!(inputs.len(), 1, "the trials series is not judged");
        assert_eq!(
            inputs[0].data,
            MetricData::Counts {
                canary: Counts {
                    events: 3.0,
                    trials: 200.0
                },
                primary: Counts {
                    events: 0.0,
                    trials: 190.0
                },
            }
        );
        let missing = args(&["--canary=c.csv", "--primary=p.csv", "--test=proportions"]);
        let err = inputs_err(&missing, &canary, &primary);
        assert!(err.contains("needs its trials"), "{err}");
    }

    fn inputs_err(a: &Args, canary: &Series, primary: &Series) -> String {
        let p = plan(a).expect("plan");
        inputs(&p, canary, primary).expect_err("refused")
    }

    #[test]
    fn config_file_metrics_and_the_cli_trials_key() {
        let spec = metric_spec(
            "metrics.errors",
            &serde_yaml::from_str("{test: proportions, trials: requests, direction: increase}")
                .expect("yaml"),
        )
        .expect("spec");
        assert_eq!(spec.trials.as_deref(), Some("requests"));
        assert_eq!(spec.config.test, TestKind::Proportions);
        let err = metric_spec(
            "metrics.errors",
            &serde_yaml::from_str("{direktion: increase}").expect("yaml"),
        )
        .expect_err("unknown option");
        assert!(
            err.starts_with("metrics.errors: unknown field `direktion`"),
            "{err}"
        );
    }

    #[test]
    fn metrics_missing_from_one_side_are_judged_without_data() {
        let a = args(&["--canary=c.csv", "--primary=p.csv"]);
        let p = plan(&a).expect("plan");
        let canary = series(&[("a", &[1.0]), ("b", &[2.0])]);
        let primary = series(&[("a", &[1.0])]);
        let inputs = inputs(&p, &canary, &primary).expect("inputs");
        let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }
}
