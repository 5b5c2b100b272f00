//! The per-metric pipeline against the reference's rules (kayenta-judge.md §2) and Kayenta's
//! own classifier cases.

use super::*;
use crate::judge::config::{EffectSize, Outliers, Spread};

fn series(name: &str, config: MetricConfig, canary: &[f64], primary: &[f64]) -> MetricResult {
    judge_metric(&MetricInput {
        name: name.to_string(),
        config,
        data: MetricData::Series {
            canary: canary.to_vec(),
            primary: primary.to_vec(),
        },
    })
}

fn counts(config: MetricConfig, canary: (f64, f64), primary: (f64, f64)) -> MetricResult {
    let c = |(events, trials)| Counts { events, trials };
    judge_metric(&MetricInput {
        name: "errors".to_string(),
        config,
        data: MetricData::Counts {
            canary: c(canary),
            primary: c(primary),
        },
    })
}

const HIGH_CANARY: [f64; 5] = [20.0, 22.0, 21.0, 25.0, 30.0];
const LOW_PRIMARY: [f64; 5] = [1.0, 2.2, 1.1, 2.5, 3.0];

#[test]
fn clear_increase_is_high_with_its_figures() {
    let r = series("m", MetricConfig::default(), &HIGH_CANARY, &LOW_PRIMARY);
    assert_eq!(r.classification, Classification::High, "{}", r.reason);
    assert!(!r.critical);
    let c = r.comparison.expect("figures");
    assert_eq!(c.test, TestKind::MannWhitney);
    assert!(c.lower > c.band && c.band == 0.25 * c.estimate.abs());
    let ratio = 23.6 / 1.96;
    assert!((r.deviation.expect("ratio") - ratio).abs() < 1e-12);
    let e = r.effect.expect("effect");
    assert_eq!(e.value, r.deviation);
    assert_eq!(e.thresholds.allowed_increase, 1.0);
    assert_eq!((r.canary.summary.count, r.primary.summary.count), (5, 5));
    assert!(
        r.reason
            .starts_with("canary higher: the 98% interval of the shift [")
    );
}

#[test]
fn the_direction_decides_which_change_counts() {
    let increase = MetricConfig {
        direction: Direction::Increase,
        ..Default::default()
    };
    // Canary lower than primary, but only increases count: Pass.
    let r = series("m", increase.clone(), &LOW_PRIMARY, &HIGH_CANARY);
    assert_eq!(r.classification, Classification::Pass);
    assert!(
        r.reason.contains("not counted against the canary"),
        "{}",
        r.reason
    );
    let decrease = MetricConfig {
        direction: Direction::Decrease,
        ..Default::default()
    };
    assert_eq!(
        series("m", decrease.clone(), &LOW_PRIMARY, &HIGH_CANARY).classification,
        Classification::Low
    );
    assert_eq!(
        series("m", decrease, &HIGH_CANARY, &LOW_PRIMARY).classification,
        Classification::Pass
    );
}

#[test]
fn the_effect_size_gate_can_hold_back_a_significant_shift() {
    // The mean ratio is about 12.04: an allowed increase of 12.5 is not reached.
    let cfg = MetricConfig {
        effect_size: EffectSize {
            allowed_increase: Some(12.5),
            ..Default::default()
        },
        ..Default::default()
    };
    let r = series("m", cfg, &HIGH_CANARY, &LOW_PRIMARY);
    assert_eq!(r.classification, Classification::Pass);
    assert!(
        r.reason.contains("below the allowed increase 12.5"),
        "{}",
        r.reason
    );
}

#[test]
fn critical_metrics_fail_critically_only_past_the_critical_effect_size() {
    let critical = MetricConfig {
        critical: true,
        ..Default::default()
    };
    let r = series("m", critical.clone(), &HIGH_CANARY, &LOW_PRIMARY);
    assert_eq!((r.classification, r.critical), (Classification::High, true));

    let mut lenient = critical.clone();
    lenient.effect_size.critical_increase = Some(100.0);
    let r = series("m", lenient, &HIGH_CANARY, &LOW_PRIMARY);
    assert_eq!(
        (r.classification, r.critical),
        (Classification::High, false)
    );
    assert!(r.reason.contains("does not reach the critical threshold"));

    // Kayenta's critical Low case.
    let r = series(
        "m",
        critical,
        &[2.0, 2.0, 2.0, 2.0, 3.0],
        &[10.0, 20.2, 10.1, 20.5, 30.0],
    );
    assert_eq!((r.classification, r.critical), (Classification::Low, true));
}

#[test]
fn missing_data_follows_the_nan_strategy_and_must_have_data() {
    let empty: [f64; 0] = [];
    let r = series("m", MetricConfig::default(), &empty, &[1.0, 2.0]);
    assert_eq!(
        (r.classification, r.critical),
        (Classification::Nodata, false)
    );
    assert_eq!(
        r.reason,
        "canary has no data; the metric is left out of the score"
    );

    let critical = MetricConfig {
        critical: true,
        must_have_data: true,
        ..Default::default()
    };
    let r = series("m", critical, &[1.0, 2.0], &[f64::NAN]);
    // Critical wins over mustHaveData: Nodata, flagged critical.
    assert_eq!(
        (r.classification, r.critical),
        (Classification::Nodata, true)
    );

    let must = MetricConfig {
        must_have_data: true,
        ..Default::default()
    };
    let r = series("m", must, &empty, &empty);
    assert_eq!(
        (r.classification, r.critical),
        (Classification::NodataFailMetric, false)
    );

    let replace = MetricConfig {
        nan_strategy: NanStrategy::Replace,
        ..Default::default()
    };
    assert_eq!(
        series("m", replace, &empty, &[1.0]).classification,
        Classification::Pass
    );
}

#[test]
fn not_numbers_are_removed_or_replaced() {
    let canary = [f64::NAN, 1.0, 2.0, f64::INFINITY, 3.0];
    let r = series("m", MetricConfig::default(), &canary, &[1.0, 2.0, 3.0]);
    assert_eq!((r.canary.points, r.canary.not_numbers), (5, 2));
    assert_eq!(r.canary.summary.count, 3);
    assert_eq!(r.classification, Classification::Pass);
    assert_eq!(r.reason, "canary and primary data are identical");

    let replace = MetricConfig {
        nan_strategy: NanStrategy::Replace,
        ..Default::default()
    };
    let r = series("m", replace, &canary, &[1.0, 2.0, 3.0]);
    assert_eq!(r.canary.summary.count, 5);
    assert_eq!(r.canary.summary.min, 0.0);
}

#[test]
fn outliers_beyond_the_reduced_sensitivity_fences_are_dropped() {
    let mut canary: Vec<f64> = (1..=20).map(f64::from).collect();
    canary.push(1000.0);
    let primary: Vec<f64> = (1..=20).map(f64::from).collect();
    let keep = series("m", MetricConfig::default(), &canary, &primary);
    assert_eq!(keep.canary.outliers, 0);
    assert_eq!(keep.canary.summary.max, 1000.0);

    let remove = MetricConfig {
        outliers: Outliers {
            strategy: OutlierStrategy::Remove,
            outlier_factor: 3.0,
        },
        ..Default::default()
    };
    let r = series("m", remove.clone(), &canary, &primary);
    assert_eq!(r.canary.outliers, 1);
    assert_eq!(r.canary.summary.max, 20.0);
    assert_eq!(r.reason, "canary and primary data are identical");
    // The 99th percentile widens a fence the IQR makes too tight: with Q1 = Q3 = 1 the IQR
    // fence is 1, the 99th percentile 59, so 50 stays and only 60 goes.
    let mut spiky = vec![1.0; 9];
    spiky.extend([50.0, 60.0]);
    let r = series("m", remove, &spiky, &primary);
    assert_eq!(r.canary.outliers, 1);
    assert_eq!(r.canary.summary.max, 50.0);
}

#[test]
fn trivial_cases_pass_without_a_test() {
    let r = series(
        "m",
        MetricConfig::default(),
        &[1.0, 2.0, 3.0, 4.0, 5.0],
        &[5.0, 4.0, 3.0, 2.0, 1.0],
    );
    assert_eq!(r.classification, Classification::Pass);
    assert!(r.comparison.is_none());
    // Kayenta's "tied observations": different lengths, one value.
    let r = series("m", MetricConfig::default(), &[1.0, 1.0, 1.0], &[1.0, 1.0]);
    assert_eq!(r.classification, Classification::Pass);
    assert_eq!(r.reason, "every point on both sides is 1");
}

#[test]
fn constant_sides_get_seeded_noise_and_a_reproducible_verdict() {
    let a = series("rps", MetricConfig::default(), &[10.0; 5], &[1.0; 5]);
    let b = series("rps", MetricConfig::default(), &[10.0; 5], &[1.0; 5]);
    assert_eq!(a, b);
    assert_eq!(a.classification, Classification::High, "{}", a.reason);
    assert_eq!(a.noise_seed, Some(crate::judge::noise::seed_for("rps")));
    assert_eq!(a.canary.noise_sigma, Some(1e-4));
    assert_eq!(a.primary.noise_sigma, Some(1e-5));
    let c = a.comparison.expect("figures");
    assert!((c.estimate - 9.0).abs() < 1e-3, "{}", c.estimate);
}

#[test]
fn kayentas_known_weaknesses_pass_by_default() {
    // spinnaker/spinnaker#6278: 7 of 10 canary points at 100, the primary all at 1.
    let mut canary = vec![100.0; 7];
    canary.extend([1.0; 3]);
    let r = series("m", MetricConfig::default(), &canary, &[1.0; 10]);
    assert_eq!(r.classification, Classification::Pass);
    let c = r.comparison.expect("figures");
    // Kayenta reported lower 6.825e-5, upper 99 (its estimate keeps the continuity correction).
    assert!(
        (c.lower - 6.825_022_991_538_788e-5).abs() < 1e-9,
        "{}",
        c.lower
    );
    assert_eq!(c.upper, 99.0);
    assert!((c.estimate - 99.0).abs() < 1e-3);
    assert!(r.reason.starts_with("no clear shift"), "{}", r.reason);

    // spinnaker/kayenta#426: sparse errors against none.
    let r = series(
        "m",
        MetricConfig::default(),
        &[0.0, 1.0, 2.0, 1.0, 0.0, 0.0],
        &[0.0; 6],
    );
    assert_eq!(r.classification, Classification::Pass);
}

#[test]
fn too_few_points_is_no_data_with_min_points() {
    let cfg = MetricConfig {
        min_points: 6,
        ..Default::default()
    };
    let r = series("m", cfg, &HIGH_CANARY, &LOW_PRIMARY);
    assert_eq!(r.classification, Classification::Nodata);
    assert_eq!(
        r.reason,
        "too few points to judge: canary 5, primary 5, minPoints 6; the metric is left out of the score"
    );
}

#[test]
fn cles_measures_the_chance_a_canary_point_is_higher() {
    let cfg = MetricConfig {
        effect_size: EffectSize {
            measure: EffectMeasure::Cles,
            ..Default::default()
        },
        ..Default::default()
    };
    let r = series("m", cfg.clone(), &HIGH_CANARY, &LOW_PRIMARY);
    let e = r.effect.expect("effect");
    assert_eq!(e.value, Some(1.0));
    assert_eq!(e.thresholds.allowed_increase, 0.5);
    assert_eq!(r.classification, Classification::High);
    // Ties count half: P(x > y) + P(x = y)/2.
    assert_eq!(cles(&[1.0, 2.0], &[2.0, 3.0]), 0.125);
}

#[test]
fn proportions_see_sparse_errors_the_rank_test_misses() {
    // 36 errors in 30 steps of 200 requests on the canary, none on the primary: the per-step
    // series is zero-heavy and the rank test passes it; the rates differ clearly.
    let mut canary_steps = vec![0.0; 30];
    for (i, e) in [(2, 3.0), (7, 9.0), (11, 4.0), (19, 12.0), (25, 8.0)] {
        canary_steps[i] = e;
    }
    let primary_steps = vec![0.0; 30];
    let rank = series(
        "errors",
        MetricConfig::default(),
        &canary_steps,
        &primary_steps,
    );
    assert_eq!(rank.classification, Classification::Pass, "{}", rank.reason);

    let cfg = MetricConfig {
        test: TestKind::Proportions,
        direction: Direction::Increase,
        ..Default::default()
    };
    let r = counts(cfg.clone(), (36.0, 6000.0), (0.0, 6000.0));
    assert_eq!(r.classification, Classification::High, "{}", r.reason);
    let c = r.comparison.expect("figures");
    assert_eq!(c.test, TestKind::Proportions);
    assert!((c.estimate - 0.006).abs() < 1e-15);
    // A zero primary rate leaves the ratio undefined: the effect gate is open.
    assert_eq!(r.deviation, None);
    assert!(r.reason.contains("rate difference"), "{}", r.reason);

    // Three errors against none is not enough evidence.
    assert_eq!(
        counts(cfg.clone(), (3.0, 6000.0), (0.0, 6000.0)).classification,
        Classification::Pass
    );
    // No trials on a side: no data.
    assert_eq!(
        counts(cfg, (0.0, 0.0), (1.0, 100.0)).classification,
        Classification::Nodata
    );
}

#[test]
fn the_spread_check_catches_a_variance_blow_up() {
    // Same median, five times the spread.
    let primary: Vec<f64> = (0..40).map(|i| 100.0 + f64::from(i % 9) - 4.0).collect();
    let canary: Vec<f64> = primary.iter().map(|v| 100.0 + (v - 100.0) * 5.0).collect();
    let plain = series("m", MetricConfig::default(), &canary, &primary);
    assert_eq!(plain.classification, Classification::Pass);
    assert!(plain.spread.is_none());

    let cfg = MetricConfig {
        spread: Some(Spread::default()),
        ..Default::default()
    };
    let r = series("m", cfg, &canary, &primary);
    assert_eq!(r.classification, Classification::High, "{}", r.reason);
    let s = r.spread.expect("spread figures");
    assert!(s.higher);
    assert!((s.ratio.expect("ratio") - 5.0).abs() < 1e-9);
    assert!(r.reason.starts_with("canary spread higher"), "{}", r.reason);

    // A canary as tight as the primary passes the spread check.
    let cfg = MetricConfig {
        spread: Some(Spread::default()),
        ..Default::default()
    };
    let r = series(
        "m",
        cfg,
        &primary,
        &primary.iter().map(|v| v + 0.1).collect::<Vec<_>>(),
    );
    assert_eq!(r.classification, Classification::Pass, "{}", r.reason);
}

#[test]
fn one_point_each_is_an_error_as_in_kayenta() {
    let r = series("m", MetricConfig::default(), &[2.0], &[1.0]);
    assert_eq!(r.classification, Classification::Error);
    assert!(
        r.reason.starts_with("the test could not run: "),
        "{}",
        r.reason
    );
}

#[test]
fn the_exact_option_uses_the_exact_interval_for_small_samples() {
    let canary = [2.1, 2.4, 2.2, 2.6, 2.3];
    let primary = [1.9, 2.0, 1.8, 2.05, 1.95];
    let normal = series("m", MetricConfig::default(), &canary, &primary);
    assert_eq!(
        normal.classification,
        Classification::Pass,
        "{}",
        normal.reason
    );
    let c = normal.comparison.expect("figures");
    assert!(!c.exact && c.root_tolerance.is_some());

    let exact = MetricConfig {
        exact: true,
        ..Default::default()
    };
    let r = series("m", exact.clone(), &canary, &primary);
    assert_eq!(r.classification, Classification::High, "{}", r.reason);
    let c = r.comparison.expect("figures");
    assert!(c.exact && c.root_tolerance.is_none());
    // Order statistics of the pairwise differences.
    assert!((c.lower - 0.1).abs() < 1e-12 && (c.upper - 0.7).abs() < 1e-12);
    assert!(r.reason.contains("98% exact interval"), "{}", r.reason);

    // Three points a side cannot reach 98% (at best 90%): no verdict.
    let r = series("m", exact.clone(), &[5.0, 6.0, 7.0], &[1.0, 2.0, 3.0]);
    assert_eq!(r.classification, Classification::Nodata, "{}", r.reason);
    assert!(r.reason.starts_with(
        "too few points for a 98% interval: with 3 and 3 points the exact distribution reaches 90%"
    ));
    assert!(r.comparison.is_some(), "the figures are kept");

    // Ties: the normal approximation, as in R.
    let r = series("m", exact, &[2.0, 2.0, 3.0, 4.0], &[1.0, 1.0, 2.0, 0.5]);
    assert!(!r.comparison.expect("figures").exact);
}
