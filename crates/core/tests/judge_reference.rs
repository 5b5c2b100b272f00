//! The judge's numerics against reference values computed independently by R 4.2
//! (`tests/judge/reference.R`, output committed as `tests/judge/reference.json`):
//! `wilcox.test(x, y, conf.int = TRUE, exact = FALSE, correct = TRUE)` on 30 vector pairs (ties,
//! constant sides, one to three points, 1000-point samples with ties, identical samples,
//! shifted samples, seconds, ratios and milliseconds, the Kayenta issue vectors), at R's root
//! tolerance and at the judge's scaled one, and with `exact = TRUE` where R uses it by default
//! (10 tie-free pairs under 50 points); `prop.test` on 9 pairs of counts; type-7 quantiles.
//!
//! Stated tolerance: estimate, interval ends and statistic within 1e-12 of R's (relative to
//! max(1, |value|)), p-values within 1e-12 relative. Both sides run the same algorithm, so the
//! figures agree to the last bit or two (measured: at most 1 ulp); the slack covers R's
//! `pnorm`/`pchisq` against `erfc` and the order of floating-point sums.

use flagger_core::judge::proportions::{Counts, prop_test};
use flagger_core::judge::stats::percentile_sorted;
use flagger_core::judge::wilcoxon::{RootTolerance, wilcoxon, wilcoxon_exact};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    generator: String,
    wilcoxon: Vec<WilcoxonCase>,
    proportions: Vec<PropCase>,
    quantiles: Quantiles,
}

#[derive(Deserialize)]
struct WilcoxonCase {
    name: String,
    confidence_level: f64,
    x: Vec<f64>,
    y: Vec<f64>,
    r_tolerance: Expected,
    scaled_tolerance: Expected,
    exact: Option<Exact>,
}

#[derive(Deserialize)]
struct Exact {
    statistic: f64,
    p_value: f64,
    estimate: f64,
    lower: f64,
    upper: f64,
    confidence_level: f64,
}

#[derive(Deserialize)]
struct Expected {
    statistic: f64,
    p_value: f64,
    estimate: f64,
    lower: f64,
    upper: f64,
    tol: f64,
}

#[derive(Deserialize)]
struct PropCase {
    canary: [f64; 2],
    primary: [f64; 2],
    estimate: f64,
    lower: f64,
    upper: f64,
    statistic: f64,
    p_value: f64,
}

#[derive(Deserialize)]
struct Quantiles {
    values: Vec<f64>,
    percents: Vec<f64>,
    type7: Vec<f64>,
}

fn reference() -> Reference {
    let text = include_str!("judge/reference.json");
    serde_json::from_str(text).expect("reference.json parses")
}

fn close(what: &str, case: &str, ours: f64, r: f64) {
    let slack = 1e-12 * r.abs().max(1.0);
    assert!(
        (ours - r).abs() <= slack,
        "{case}: {what} {ours:.17} vs R {r:.17} (difference {:e})",
        ours - r
    );
}

fn close_p(case: &str, ours: f64, r: f64) {
    assert!(
        (ours - r).abs() <= 1e-12 * r.abs() || (ours - r).abs() < 1e-300,
        "{case}: p-value {ours:e} vs R {r:e}"
    );
}

#[test]
fn reference_was_made_by_r() {
    let r = reference();
    assert!(r.generator.starts_with("R version 4."), "{}", r.generator);
    assert!(r.wilcoxon.len() >= 20);
}

#[test]
fn mann_whitney_interval_matches_r_at_r_tolerance() {
    for case in reference().wilcoxon {
        let want = &case.r_tolerance;
        let got = wilcoxon(&case.x, &case.y, case.confidence_level, RootTolerance::R)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(got.root_tolerance, want.tol, "{}", case.name);
        close("statistic", &case.name, got.statistic, want.statistic);
        close("estimate", &case.name, got.estimate, want.estimate);
        close("lower", &case.name, got.lower, want.lower);
        close("upper", &case.name, got.upper, want.upper);
        close_p(&case.name, got.p_value, want.p_value);
    }
}

#[test]
fn mann_whitney_interval_matches_r_at_the_judges_scaled_tolerance() {
    for case in reference().wilcoxon {
        let want = &case.scaled_tolerance;
        let got = wilcoxon(
            &case.x,
            &case.y,
            case.confidence_level,
            RootTolerance::Scaled,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert!(
            (got.root_tolerance - want.tol).abs() <= 1e-15 * want.tol,
            "{}: tolerance {} vs {}",
            case.name,
            got.root_tolerance,
            want.tol
        );
        // Scaled figures: compare relative to the data's scale, not to 1.
        let scale = want.tol / 1e-4;
        for (what, ours, r) in [
            ("estimate", got.estimate, want.estimate),
            ("lower", got.lower, want.lower),
            ("upper", got.upper, want.upper),
        ] {
            close(what, &case.name, ours / scale, r / scale);
        }
        close_p(&case.name, got.p_value, want.p_value);
    }
}

#[test]
fn exact_interval_matches_r_where_r_uses_it() {
    let mut checked = 0;
    for case in reference().wilcoxon {
        let got = wilcoxon_exact(&case.x, &case.y, case.confidence_level);
        let Some(want) = case.exact else {
            assert!(
                got.is_none(),
                "{}: R would not use the exact test",
                case.name
            );
            continue;
        };
        let got = got.unwrap_or_else(|| panic!("{}: exact test expected", case.name));
        assert!(got.exact);
        close("statistic", &case.name, got.statistic, want.statistic);
        close("estimate", &case.name, got.estimate, want.estimate);
        close("lower", &case.name, got.lower, want.lower);
        close("upper", &case.name, got.upper, want.upper);
        close(
            "level",
            &case.name,
            got.confidence_level,
            want.confidence_level,
        );
        close_p(&case.name, got.p_value, want.p_value);
        checked += 1;
    }
    assert!(checked >= 8, "{checked} exact cases");
}

#[test]
fn proportions_match_r_prop_test() {
    for case in reference().proportions {
        let name = format!("{:?} vs {:?}", case.canary, case.primary);
        let c = |v: [f64; 2]| Counts {
            events: v[0],
            trials: v[1],
        };
        let got = prop_test(c(case.canary), c(case.primary), 0.98).expect("test runs");
        close("estimate", &name, got.estimate, case.estimate);
        close("lower", &name, got.lower, case.lower);
        close("upper", &name, got.upper, case.upper);
        close("statistic", &name, got.statistic, case.statistic);
        close_p(&name, got.p_value, case.p_value);
    }
}

#[test]
fn percentiles_match_r_type_7() {
    let q = reference().quantiles;
    let mut sorted = q.values.clone();
    sorted.sort_by(f64::total_cmp);
    for (p, want) in q.percents.iter().zip(&q.type7) {
        close(
            "quantile",
            &format!("p{p}"),
            percentile_sorted(&sorted, *p),
            *want,
        );
    }
}

#[test]
fn one_point_each_cannot_be_tested_as_in_r() {
    // R: wilcox.test(1, 2, conf.int = TRUE, exact = FALSE) stops (every shift ties all values).
    assert!(wilcoxon(&[1.0], &[2.0], 0.98, RootTolerance::R).is_err());
}
