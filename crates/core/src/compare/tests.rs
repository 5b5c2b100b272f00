use super::*;

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn judge_options(marking: &Marking) -> &JudgeOptions {
    match &marking.mode {
        Mode::Judge(o) => o,
        Mode::Relative(m) => panic!("marked {}, not judge", m.as_str()),
    }
}

#[test]
fn an_unmarked_template_is_an_ordinary_check() {
    let a = annotations(&[("flagger.app/other", "x"), ("owner", "team-a")]);
    assert_eq!(marking(&a), Ok(None));
}

#[test]
fn judge_with_kayentas_defaults() {
    let m = marking(&annotations(&[(COMPARE, "judge")]))
        .expect("valid")
        .expect("marked");
    let o = judge_options(&m);
    assert_eq!(o.metric, MetricConfig::default());
    assert_eq!(o.thresholds.pass, 95.0);
    assert_eq!(o.thresholds.marginal, 75.0);
    assert!(m.needs_range_queries());
    assert_eq!(m.step, None);
}

#[test]
fn judge_options_use_kayentas_names_in_yaml_or_json() {
    let yaml = "{direction: increase, critical: true, mustHaveData: true, nanStrategy: replace,\n \
                effectSize: {allowedIncrease: 1.1}, pass: 90, marginal: 50}";
    let m = marking(&annotations(&[
        (COMPARE, " judge "),
        (OPTIONS, yaml),
        (STEP, "2s"),
    ]))
    .expect("valid")
    .expect("marked");
    let o = judge_options(&m);
    assert_eq!(o.metric.direction, judge::config::Direction::Increase);
    assert!(o.metric.critical && o.metric.must_have_data);
    assert_eq!(o.metric.nan_strategy, judge::config::NanStrategy::Replace);
    assert_eq!(o.metric.effect_size.allowed_increase, Some(1.1));
    assert_eq!((o.thresholds.pass, o.thresholds.marginal), (90.0, 50.0));
    assert_eq!(m.step, Some(Duration::from_secs(2)));
    let json = r#"{"direction": "decrease", "minPoints": 5}"#;
    let m = marking(&annotations(&[(COMPARE, "judge"), (OPTIONS, json)]))
        .expect("valid")
        .expect("marked");
    assert_eq!(judge_options(&m).metric.min_points, 5);
}

#[test]
fn relative_modes_take_no_options() {
    for (text, mode) in [
        ("ratio", RelativeMode::Ratio),
        ("difference", RelativeMode::Difference),
    ] {
        let m = marking(&annotations(&[(COMPARE, text)]))
            .expect("valid")
            .expect("marked");
        assert_eq!(m.mode, Mode::Relative(mode));
        assert!(!m.needs_range_queries());
    }
    assert_eq!(
        marking(&annotations(&[(COMPARE, "ratio"), (STEP, "5s")])),
        Err("annotation flagger.app/compare-step applies to flagger.app/compare: judge, not to ratio".into())
    );
}

#[test]
fn every_mistake_is_refused_naming_the_annotation() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[(COMPARE, "kayenta")],
            "annotation flagger.app/compare: \"kayenta\" is not a comparison; use judge, ratio or difference",
        ),
        (
            &[(COMPARE, "judge"), ("flagger.app/compare-option", "{}")],
            "annotation flagger.app/compare-option is not known; the comparison annotations are flagger.app/compare, flagger.app/compare-options and flagger.app/compare-step",
        ),
        (
            &[(OPTIONS, "{direction: increase}")],
            "flagger.app/compare-options and flagger.app/compare-step need flagger.app/compare: judge, ratio or difference",
        ),
        (
            &[(COMPARE, "judge"), (STEP, "500ms")],
            "annotation flagger.app/compare-step: \"500ms\" is under 1s",
        ),
        (
            &[(COMPARE, "judge"), (OPTIONS, "{pass: 70, marginal: 80}")],
            "annotation flagger.app/compare-options: marginal: 80 is above the pass threshold 70",
        ),
        (
            &[(COMPARE, "judge"), (OPTIONS, "{test: proportions}")],
            "annotation flagger.app/compare-options: test: proportions needs events and trials, which one query does not give; compare an error ratio with flagger.app/compare: ratio instead",
        ),
        (
            &[(COMPARE, "judge"), (OPTIONS, "{muted: true, groups: [a]}")],
            "annotation flagger.app/compare-options: muted: a muted check could never fail; groups: a comparison check is judged on its own",
        ),
    ];
    for (pairs, want) in cases {
        assert_eq!(marking(&annotations(pairs)), Err(want.to_string()));
    }
    // A misspelt option is named by the parser.
    let typo = marking(&annotations(&[
        (COMPARE, "judge"),
        (OPTIONS, "{direktion: increase}"),
    ]))
    .expect_err("unknown option");
    assert!(typo.contains("direktion"), "{typo}");
    let step =
        marking(&annotations(&[(COMPARE, "judge"), (STEP, "often")])).expect_err("not a duration");
    assert!(
        step.starts_with("annotation flagger.app/compare-step: \"often\""),
        "{step}"
    );
}

#[test]
fn the_window_is_the_metric_interval_with_thirty_points() {
    let m = marking(&annotations(&[(COMPARE, "judge")]))
        .expect("valid")
        .expect("marked");
    let w = m.window(Some(Duration::from_secs(60)), Duration::from_secs(10));
    assert_eq!(
        (w.range, w.step),
        (Duration::from_secs(60), Duration::from_secs(2))
    );
    // No metric interval: the analysis interval; never under a 1s step.
    let w = m.window(None, Duration::from_secs(15));
    assert_eq!(
        (w.range, w.step),
        (Duration::from_secs(15), Duration::from_secs(1))
    );
    let stepped = Marking {
        step: Some(Duration::from_secs(5)),
        ..m.clone()
    };
    assert_eq!(
        stepped
            .window(Some(Duration::from_secs(60)), Duration::ZERO)
            .step,
        Duration::from_secs(5)
    );
    // Never more than 10,000 points.
    let day = m.window(Some(Duration::from_secs(86_400 * 7)), Duration::ZERO);
    assert!(day.range.as_secs_f64() / day.step.as_secs_f64() <= 10_000.0);
}

fn options(direction: judge::config::Direction) -> JudgeOptions {
    JudgeOptions {
        metric: MetricConfig {
            direction,
            ..Default::default()
        },
        thresholds: Thresholds {
            pass: 95.0,
            marginal: 75.0,
        },
    }
}

/// The judge (increases count) on two latency vectors.
fn latency_judged(canary: (String, Vec<f64>), primary: (String, Vec<f64>)) -> Compared {
    Compared::judged(
        "latency",
        &options(judge::config::Direction::Increase),
        window(),
        canary,
        primary,
    )
    .expect("judged")
}

fn window() -> Window {
    Window {
        range: Duration::from_secs(30),
        step: Duration::from_secs(1),
    }
}

/// `n` points around `centre`, spread deterministically by ±5%.
fn points(centre: f64, n: usize, phase: usize) -> Vec<f64> {
    (0..n)
        .map(|i| centre * (1.0 + 0.05 * (((i * 7 + phase) % 11) as f64 / 10.0 - 0.5)))
        .collect()
}

#[test]
fn a_canary_thirty_percent_slower_fails_with_the_figures_in_words() {
    let c = latency_judged(
        ("canary q".into(), points(0.13, 30, 3)),
        ("primary q".into(), points(0.10, 30, 0)),
    );
    assert_eq!(c.value(), Some(0.0));
    let j = c.judgement().expect("a judgement");
    assert_eq!(j.metrics[0].classification, judge::Classification::High);
    let range = Range {
        min: Some(95.0),
        max: None,
    };
    let r = c.check("podinfo.test", "latency", range);
    assert!(!r.passed);
    assert!(
        r.message.starts_with(
            "Halt podinfo.test advancement latency: the judge fails the canary against the primary: \
             score 0.00 < 95, verdict Fail over the last 30s every 1s; High: canary higher: the 98% interval of the shift ["
        ),
        "{}",
        r.message
    );
    for figure in [
        "lies above +",
        "meanRatio 1.3",
        "estimated change 0.03",
        "canary 30 points, median 0.13",
        "primary 30 points, median 0.1)",
    ] {
        assert!(r.message.contains(figure), "{figure} in {}", r.message);
    }
    assert_eq!(c.canary.query, "canary q");
    assert_eq!(c.primary.variant, Variant::Primary);
}

#[test]
fn a_canary_as_slow_as_the_primary_passes() {
    let c = latency_judged(
        ("c".into(), points(0.6, 30, 5)),
        ("p".into(), points(0.6, 30, 0)),
    );
    assert_eq!(c.value(), Some(100.0));
    // No thresholdRange: the score must reach the pass threshold.
    let r = c.check("podinfo.test", "latency", Range::default());
    assert!(r.passed, "{}", r.message);
    assert!(
        r.message.starts_with(
            "podinfo.test latency: the judge passes the canary against the primary: score 100.00 >= 95 (pass), verdict Pass"
        ),
        "{}",
        r.message
    );
    // A faster canary passes a judge that counts increases only.
    let faster = latency_judged(
        ("c".into(), points(0.3, 30, 5)),
        ("p".into(), points(0.6, 30, 0)),
    );
    assert_eq!(faster.value(), Some(100.0));
}

#[test]
fn no_points_on_a_side_fails_the_check() {
    let c = latency_judged(("c".into(), vec![]), ("p".into(), points(0.6, 30, 0)));
    let r = c.check(
        "podinfo.test",
        "latency",
        Range {
            min: Some(95.0),
            max: None,
        },
    );
    assert!(!r.passed);
    assert!(r.message.contains("Nodata: "), "{}", r.message);
    assert!(r.message.contains("canary no points"), "{}", r.message);
}

#[test]
fn relative_checks_compare_against_the_threshold_range() {
    let range = Range {
        min: None,
        max: Some(2.0),
    };
    let worse = Compared::relative(
        RelativeMode::Ratio,
        range,
        ("c".into(), Some(0.1)),
        ("p".into(), Some(0.02)),
    );
    assert_eq!(worse.value(), Some(5.0));
    let r = worse.check("podinfo.test", "error-rate", range);
    assert_eq!(
        (r.passed, r.message.as_str()),
        (
            false,
            "Halt podinfo.test advancement error-rate: canary 0.1 vs primary 0.02: ratio 5 is above the maximum 2"
        )
    );
    let same = Compared::relative(
        RelativeMode::Ratio,
        range,
        ("c".into(), Some(0.1)),
        ("p".into(), Some(0.1)),
    );
    let r = same.check("podinfo.test", "error-rate", range);
    assert_eq!(
        (r.passed, r.message.as_str()),
        (
            true,
            "podinfo.test error-rate: canary 0.1 vs primary 0.1: ratio 1 is within bounds"
        )
    );
    let none = Compared::relative(
        RelativeMode::Difference,
        range,
        ("c".into(), None),
        ("p".into(), Some(0.1)),
    );
    let r = none.check("podinfo.test", "error-rate", range);
    assert_eq!(
        (r.passed, r.message.as_str()),
        (
            false,
            "Halt advancement no values found for custom metric: error-rate: canary has no value"
        )
    );
}

#[test]
fn a_judge_that_could_not_compare_fails_the_check() {
    // One point a side: no interval can be computed (Kayenta's Error, left out of its score).
    let c = latency_judged(("c".into(), vec![0.67]), ("p".into(), vec![0.675]));
    assert_eq!(c.value(), Some(100.0));
    let r = c.check(
        "podinfo.test",
        "latency",
        Range {
            min: Some(95.0),
            max: None,
        },
    );
    assert!(!r.passed);
    assert!(
        r.message.starts_with(
            "Halt podinfo.test advancement latency: the judge could not compare the canary with the primary over the last 30s every 1s; Error: "
        ),
        "{}",
        r.message
    );
}
