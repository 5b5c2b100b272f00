//! Aggregation (reference §3): muted metrics out, the critical and no-data short-circuits, group
//! scores, the weighted summary score rounded to two decimals, and the verdict.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::{JudgeConfig, Thresholds};
use super::metric::{Classification, MetricResult};
use super::numbers::fmt_num;

/// The share of no-data metrics (in %) from which the canary fails outright.
pub const NODATA_THRESHOLD: f64 = 50.0;

/// The judgement's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Pass,
    Marginal,
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "Pass",
            Verdict::Marginal => "Marginal",
            Verdict::Fail => "Fail",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the score was set to 0 without counting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum ShortCircuit {
    /// A critical metric failed (the first one, in input order).
    Critical { metric: String },
    /// Half or more of the scored metrics had no data.
    NoData { nodata: usize, scored: usize },
}

/// Counts of each class in a group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClassCounts {
    pub pass: usize,
    pub high: usize,
    pub low: usize,
    pub nodata: usize,
    pub nodata_fail_metric: usize,
    pub error: usize,
}

impl ClassCounts {
    fn add(&mut self, c: Classification) {
        match c {
            Classification::Pass => self.pass += 1,
            Classification::High => self.high += 1,
            Classification::Low => self.low += 1,
            Classification::Nodata => self.nodata += 1,
            Classification::NodataFailMetric => self.nodata_fail_metric += 1,
            Classification::Error => self.error += 1,
        }
    }

    /// The metrics that count: Pass, High, Low and NodataFailMetric.
    pub fn counted(&self) -> usize {
        self.pass + self.high + self.low + self.nodata_fail_metric
    }
}

/// One group's score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupScore {
    pub name: String,
    /// 100 · Pass / (Pass + High + Low + NodataFailMetric); 0 when nothing counts.
    pub score: f64,
    /// Nothing counted in this group (only Nodata/Error): it counts as 100 in the summary.
    pub no_data: bool,
    /// The group's weight in the summary (explicit, or its share of what is left of 100).
    pub weight: f64,
    /// What it adds to the summary score: (no data ? 100 : score) · weight / 100.
    pub contribution: f64,
    pub counts: ClassCounts,
}

/// The whole judgement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Judgement {
    /// 0–100, rounded to two decimals (half up).
    pub score: f64,
    pub verdict: Verdict,
    pub thresholds: Thresholds,
    /// Why, in words.
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_circuit: Option<ShortCircuit>,
    pub groups: Vec<GroupScore>,
    /// Every metric, muted ones included, in input order.
    pub metrics: Vec<MetricResult>,
}

/// Scores metric results. Muted metrics are reported but not scored.
pub fn aggregate(metrics: Vec<MetricResult>, config: &JudgeConfig) -> Judgement {
    let scored: Vec<&MetricResult> = metrics.iter().filter(|m| !m.muted).collect();

    let mut counts: BTreeMap<String, ClassCounts> = BTreeMap::new();
    for m in &scored {
        for g in &m.groups {
            counts.entry(g.clone()).or_default().add(m.classification);
        }
    }
    let explicit: f64 = config.group_weights.values().sum();
    let unweighted = counts
        .keys()
        .filter(|g| !config.group_weights.contains_key(*g))
        .count();
    let leftover = if unweighted > 0 {
        (100.0 - explicit) / unweighted as f64
    } else {
        0.0
    };
    let mut groups = Vec::new();
    let mut summary = 0.0;
    for (name, c) in counts {
        let counted = c.counted();
        let no_data = counted == 0;
        let score = if no_data {
            0.0
        } else {
            c.pass as f64 / counted as f64 * 100.0
        };
        let weight = config.group_weights.get(&name).copied().unwrap_or(leftover);
        let contribution = if no_data { 100.0 } else { score } * (weight / 100.0);
        summary += contribution;
        groups.push(GroupScore {
            name,
            score,
            no_data,
            weight,
            contribution,
            counts: c,
        });
    }

    let critical = scored
        .iter()
        .find(|m| m.critical && m.classification != Classification::Pass);
    let nodata = scored
        .iter()
        .filter(|m| m.classification == Classification::Nodata)
        .count();
    let (score, short_circuit, why) = if let Some(m) = critical {
        (
            0.0,
            Some(ShortCircuit::Critical {
                metric: m.name.clone(),
            }),
            format!("critical metric {} failed: {}", m.name, m.reason),
        )
    } else if !scored.is_empty() && nodata as f64 / scored.len() as f64 * 100.0 >= NODATA_THRESHOLD
    {
        (
            0.0,
            Some(ShortCircuit::NoData {
                nodata,
                scored: scored.len(),
            }),
            format!(
                "{nodata} of {} metrics had no data ({}% or more fails the canary)",
                scored.len(),
                fmt_num(NODATA_THRESHOLD)
            ),
        )
    } else if scored.is_empty() {
        (0.0, None, "no metric to score".to_string())
    } else {
        let failing: Vec<&str> = scored
            .iter()
            .filter(|m| {
                matches!(
                    m.classification,
                    Classification::High | Classification::Low | Classification::NodataFailMetric
                )
            })
            .map(|m| m.name.as_str())
            .collect();
        let why = if failing.is_empty() {
            "every scored metric passed".to_string()
        } else {
            format!("failing: {}", failing.join(", "))
        };
        (round_half_up(summary, 2), None, why)
    };

    let Thresholds { pass, marginal } = config.thresholds;
    let verdict = if score >= pass {
        Verdict::Pass
    } else if score >= marginal {
        Verdict::Marginal
    } else {
        Verdict::Fail
    };
    let bound = match verdict {
        Verdict::Pass => format!("at least pass {}", fmt_num(pass)),
        Verdict::Marginal => format!(
            "below pass {}, at least marginal {}",
            fmt_num(pass),
            fmt_num(marginal)
        ),
        Verdict::Fail => format!("below marginal {}", fmt_num(marginal)),
    };
    Judgement {
        score,
        verdict,
        thresholds: config.thresholds,
        reason: format!("score {} ({bound}): {why}", fmt_score(score)),
        short_circuit,
        groups,
        metrics,
    }
}

/// A score with its two decimals.
pub fn fmt_score(score: f64) -> String {
    format!("{score:.2}")
}

/// Rounds to `places` decimals, ties away from zero, on the shortest decimal form of `x` (as
/// Kayenta's `Precision.round` does through `BigDecimal`): 66.665 → 66.67 although the binary
/// double nearest 66.665 lies just below it.
pub fn round_half_up(x: f64, places: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let text = format!("{}", x.abs());
    let (int, frac) = text.split_once('.').unwrap_or((text.as_str(), ""));
    if frac.len() <= places {
        return x;
    }
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes().take(places)).collect();
    if frac.as_bytes()[places] >= b'5' {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, b'1');
                break;
            }
            i -= 1;
            if digits[i] == b'9' {
                digits[i] = b'0';
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let split = digits.len() - places;
    let s = format!(
        "{}.{}",
        String::from_utf8_lossy(&digits[..split]),
        String::from_utf8_lossy(&digits[split..])
    );
    let v: f64 = s.parse().unwrap_or(x.abs());
    if x < 0.0 { -v } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::config::Direction;
    use crate::judge::metric::SideFigures;

    fn m(name: &str, class: Classification, groups: &[&str]) -> MetricResult {
        MetricResult {
            name: name.to_string(),
            classification: class,
            critical: false,
            muted: false,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            direction: Direction::Either,
            reason: format!("{name} is {class}"),
            canary: SideFigures::default(),
            primary: SideFigures::default(),
            deviation: None,
            comparison: None,
            effect: None,
            spread: None,
            noise_seed: None,
        }
    }

    fn critical(mut r: MetricResult) -> MetricResult {
        r.critical = true;
        r
    }

    fn muted(mut r: MetricResult) -> MetricResult {
        r.muted = true;
        r
    }

    use Classification::*;

    #[test]
    fn a_failed_critical_metric_zeroes_the_score() {
        let j = aggregate(
            vec![
                m("a", Pass, &["g"]),
                critical(m("b", High, &["g"])),
                critical(m("c", Nodata, &["g"])),
                m("d", Pass, &["g"]),
            ],
            &JudgeConfig::new(95.0, 75.0),
        );
        assert_eq!((j.score, j.verdict), (0.0, Verdict::Fail));
        assert_eq!(
            j.short_circuit,
            Some(ShortCircuit::Critical {
                metric: "b".to_string()
            })
        );
        assert_eq!(
            j.reason,
            "score 0.00 (below marginal 75): critical metric b failed: b is High"
        );
        // The group scores are still reported.
        assert_eq!(j.groups[0].counts.high, 1);
    }

    #[test]
    fn a_critical_pass_or_a_muted_critical_failure_does_not_short_circuit() {
        let j = aggregate(
            vec![
                critical(m("a", Pass, &["g"])),
                muted(critical(m("b", High, &["g"]))),
            ],
            &JudgeConfig::new(95.0, 75.0),
        );
        assert_eq!(
            (j.score, j.verdict, j.short_circuit),
            (100.0, Verdict::Pass, None)
        );
        assert_eq!(j.metrics.len(), 2, "muted metrics are still reported");
        assert_eq!(j.groups[0].counts.high, 0);
    }

    #[test]
    fn half_the_metrics_without_data_zeroes_the_score() {
        let half = aggregate(
            vec![
                m("a", Pass, &["g"]),
                m("b", Nodata, &["g"]),
                m("c", Nodata, &["h"]),
                m("d", Pass, &["h"]),
            ],
            &JudgeConfig::new(95.0, 75.0),
        );
        assert_eq!(half.score, 0.0);
        assert_eq!(
            half.short_circuit,
            Some(ShortCircuit::NoData {
                nodata: 2,
                scored: 4
            })
        );
        assert!(
            half.reason
                .ends_with("2 of 4 metrics had no data (50% or more fails the canary)")
        );
        let third = aggregate(
            vec![
                m("a", Pass, &["g"]),
                m("b", Nodata, &["g"]),
                m("c", Pass, &["g"]),
            ],
            &JudgeConfig::new(95.0, 75.0),
        );
        assert_eq!((third.score, third.short_circuit), (100.0, None));
    }

    #[test]
    fn group_scores_count_pass_high_low_and_required_data_only() {
        let j = aggregate(
            vec![
                m("a", Pass, &["g"]),
                m("b", High, &["g"]),
                m("c", NodataFailMetric, &["g"]),
                m("d", Error, &["g"]),
                m("e", Pass, &["g"]),
            ],
            &JudgeConfig::new(95.0, 50.0),
        );
        let g = &j.groups[0];
        assert_eq!(g.counts.counted(), 4);
        assert_eq!(g.score, 50.0);
        assert_eq!((j.score, j.verdict), (50.0, Verdict::Marginal));
        assert_eq!(
            j.reason,
            "score 50.00 (below pass 95, at least marginal 50): failing: b, c"
        );
    }

    #[test]
    fn weights_and_the_leftover_share() {
        // a: 60 explicit; b and c share the leftover 40; "unused" is weighted but has no
        // metric: its 10 still comes out of the leftover, as in Kayenta.
        let mut config = JudgeConfig::new(95.0, 75.0);
        config.group_weights.insert("a".to_string(), 60.0);
        config.group_weights.insert("unused".to_string(), 10.0);
        let j = aggregate(
            vec![
                m("x", High, &["a"]),
                m("y", Pass, &["b"]),
                m("z", Pass, &["c", "a"]),
            ],
            &config,
        );
        let by_name = |n: &str| j.groups.iter().find(|g| g.name == n).expect("group");
        assert_eq!((by_name("a").score, by_name("a").weight), (50.0, 60.0));
        assert_eq!(by_name("b").weight, 15.0);
        assert_eq!(by_name("c").weight, 15.0);
        // 50·0.6 + 100·0.15 + 100·0.15
        assert_eq!(j.score, 60.0);
        assert_eq!(j.verdict, Verdict::Fail);
    }

    #[test]
    fn a_group_with_nothing_to_count_counts_as_100() {
        let j = aggregate(
            vec![
                m("a", Pass, &["g"]),
                m("b", High, &["g"]),
                m("c", Error, &["h"]),
            ],
            &JudgeConfig::new(95.0, 75.0),
        );
        let h = j.groups.iter().find(|g| g.name == "h").expect("group h");
        assert!(h.no_data);
        assert_eq!((h.score, h.contribution), (0.0, 50.0));
        assert_eq!(j.score, 75.0);
        assert_eq!(j.verdict, Verdict::Marginal);
    }

    #[test]
    fn the_score_is_rounded_and_the_thresholds_are_inclusive() {
        let j = aggregate(
            vec![
                m("a", Pass, &["g"]),
                m("b", Pass, &["g"]),
                m("c", Low, &["g"]),
            ],
            &JudgeConfig::new(66.67, 50.0),
        );
        assert_eq!(j.score, 66.67);
        assert_eq!(j.verdict, Verdict::Pass);
        assert_eq!(
            aggregate(
                vec![m("a", Pass, &["g"]), m("c", Low, &["g"])],
                &JudgeConfig::new(95.0, 50.0)
            )
            .verdict,
            Verdict::Marginal
        );
    }

    #[test]
    fn nothing_to_score_fails() {
        let j = aggregate(vec![], &JudgeConfig::new(95.0, 75.0));
        assert_eq!((j.score, j.verdict), (0.0, Verdict::Fail));
        assert_eq!(
            j.reason,
            "score 0.00 (below marginal 75): no metric to score"
        );
    }

    #[test]
    fn rounding_is_half_up_on_the_decimal_form() {
        assert_eq!(round_half_up(66.665, 2), 66.67);
        assert_eq!(round_half_up(66.664999, 2), 66.66);
        assert_eq!(round_half_up(0.125, 2), 0.13);
        assert_eq!(round_half_up(99.995, 2), 100.0);
        assert_eq!(round_half_up(33.333333333333336, 2), 33.33);
        assert_eq!(round_half_up(50.0, 2), 50.0);
        assert_eq!(round_half_up(-1.005, 2), -1.01);
    }
}
