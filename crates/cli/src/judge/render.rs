//! The table `flagger judge` prints: one row per metric with the figures that decided it, the
//! reasons, the groups and the verdict.

use std::fmt::Write as _;

use flagger_core::judge::config::TestKind;
use flagger_core::judge::metric::SideFigures;
use flagger_core::judge::score::fmt_score;
use flagger_core::judge::{Judgement, MetricResult, fmt_num};

fn side(s: &SideFigures) -> String {
    if let Some(c) = s.counts {
        let rate = if c.trials > 0.0 {
            fmt_num(c.events / c.trials)
        } else {
            "-".to_string()
        };
        return format!("{}/{} = {rate}", fmt_num(c.events), fmt_num(c.trials));
    }
    if s.summary.count == 0 {
        return "n=0".to_string();
    }
    format!("n={} median={}", s.summary.count, fmt_num(s.summary.median))
}

fn row(m: &MetricResult) -> Vec<String> {
    let mut result = m.classification.to_string();
    if m.critical {
        result.push_str(" (critical)");
    }
    if m.muted {
        result.push_str(" (muted)");
    }
    let (estimate, interval, band) = match &m.comparison {
        Some(c) => (
            fmt_num(c.estimate),
            format!("[{}, {}]", fmt_num(c.lower), fmt_num(c.upper)),
            format!("±{}", fmt_num(c.band)),
        ),
        None => ("-".into(), "-".into(), "-".into()),
    };
    let effect = match &m.effect {
        Some(e) => format!(
            "{} {}",
            e.thresholds.measure.as_str(),
            e.value.map_or("n/a".to_string(), fmt_num)
        ),
        None => "-".to_string(),
    };
    let test = m.comparison.as_ref().map_or("-", |c| match c.test {
        TestKind::MannWhitney => "mann-whitney",
        TestKind::Proportions => "proportions",
    });
    vec![
        m.name.clone(),
        result,
        side(&m.canary),
        side(&m.primary),
        test.to_string(),
        estimate,
        interval,
        band,
        effect,
    ]
}

/// The table, reasons, groups and verdict, ready to print.
pub fn table(j: &Judgement) -> String {
    let level = j
        .metrics
        .iter()
        .find_map(|m| m.comparison.as_ref())
        .map_or("98".to_string(), |c| fmt_num(c.confidence_level * 100.0));
    let header: Vec<String> = [
        "METRIC",
        "RESULT",
        "CANARY",
        "PRIMARY",
        "TEST",
        "ESTIMATE",
        &format!("{level}% INTERVAL"),
        "BAND",
        "EFFECT",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows: Vec<Vec<String>> = std::iter::once(header)
        .chain(j.metrics.iter().map(row))
        .collect();
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out.push('\n');
    for m in &j.metrics {
        let _ = writeln!(out, "{}: {}", m.name, m.reason);
        if let Some(s) = &m.spread {
            let _ = writeln!(
                out,
                "{}: spread: mean distance to the median {} vs {}, ratio {}, interval [{}, {}] (band ±{})",
                m.name,
                fmt_num(s.canary_deviation),
                fmt_num(s.primary_deviation),
                s.ratio.map_or("n/a".to_string(), fmt_num),
                fmt_num(s.comparison.lower),
                fmt_num(s.comparison.upper),
                fmt_num(s.comparison.band)
            );
        }
    }
    out.push('\n');
    for g in &j.groups {
        let score = if g.no_data {
            "no data (counts as 100)".to_string()
        } else {
            fmt_score(g.score)
        };
        let _ = writeln!(
            out,
            "group {}: {score}, weight {} ({} pass, {} high, {} low, {} nodata, {} error)",
            g.name,
            fmt_num(g.weight),
            g.counts.pass,
            g.counts.high,
            g.counts.low,
            g.counts.nodata + g.counts.nodata_fail_metric,
            g.counts.error
        );
    }
    let _ = writeln!(out, "{}: {}", j.verdict, j.reason);
    out
}
