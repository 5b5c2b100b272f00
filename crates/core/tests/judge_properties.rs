//! Properties of the statistical judge: identical samples always pass; a canary shifted beyond
//! the band and the effect size is always High (or Low) in the direction of the shift; the same
//! input always gives the same judgement.

use flagger_core::judge::config::{Direction, EffectSize, MetricConfig};
use flagger_core::judge::{Classification, MetricData, MetricInput, judge_metric};
use proptest::prelude::*;

fn run(
    config: MetricConfig,
    canary: Vec<f64>,
    primary: Vec<f64>,
) -> flagger_core::judge::MetricResult {
    judge_metric(&MetricInput {
        name: "prop".to_string(),
        config,
        data: MetricData::Series { canary, primary },
    })
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![
        Just(Direction::Increase),
        Just(Direction::Decrease),
        Just(Direction::Either)
    ]
}

/// Positive metric values (latencies, rates), with some repeats to make ties.
fn sample() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(
        prop_oneof![1.0..1000.0f64, (1u32..20).prop_map(f64::from)],
        2..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn identical_samples_always_pass(
        primary in sample(),
        direction in direction(),
        critical in any::<bool>(),
        rotate in 0usize..60,
    ) {
        // The same points in another order.
        let mut canary = primary.clone();
        let k = rotate % canary.len();
        canary.rotate_left(k);
        let config = MetricConfig { direction, critical, ..Default::default() };
        let r = run(config, canary, primary);
        prop_assert_eq!(r.classification, Classification::Pass, "{}", r.reason);
        prop_assert!(!r.critical);
    }

    #[test]
    fn a_shift_beyond_band_and_effect_size_is_high_or_low(
        primary in sample(),
        factor in 2.0..20.0f64,
        up in any::<bool>(),
        either in any::<bool>(),
    ) {
        // Shift every point by s > (5/3)·range: every pairwise difference has the shift's sign
        // and the interval [≥ s − range, …] clears the band 0.25·|estimate| ≤ 0.25·(s + range).
        let lo = primary.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = primary.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let s = factor * (hi - lo + 1.0);
        let shift = if up { s } else { -s };
        let canary: Vec<f64> = primary.iter().map(|v| v + shift).collect();
        let direction = match (either, up) {
            (true, _) => Direction::Either,
            (false, true) => Direction::Increase,
            (false, false) => Direction::Decrease,
        };
        // The mean ratio clears its gate: canary mean / primary mean is above 1 for an
        // increase; for a decrease it is below 1 (or undefined, which opens the gate).
        let config = MetricConfig {
            direction,
            effect_size: EffectSize::default(),
            ..Default::default()
        };
        let r = run(config, canary, primary);
        let want = if up { Classification::High } else { Classification::Low };
        prop_assert_eq!(r.classification, want, "{}", r.reason);
        let c = r.comparison.expect("a comparison");
        let clears = if up { c.lower > c.band } else { c.upper < -c.band };
        prop_assert!(clears, "interval [{}, {}], band {}", c.lower, c.upper, c.band);
    }

    #[test]
    fn the_same_input_gives_the_same_judgement(
        canary in sample(),
        primary in sample(),
        constant in any::<bool>(),
    ) {
        // Constant sides exercise the seeded noise.
        let (canary, primary) = if constant {
            (vec![canary[0]; canary.len()], vec![primary[0]; primary.len()])
        } else {
            (canary, primary)
        };
        let a = run(MetricConfig::default(), canary.clone(), primary.clone());
        let b = run(MetricConfig::default(), canary, primary);
        prop_assert_eq!(a, b);
    }
}
