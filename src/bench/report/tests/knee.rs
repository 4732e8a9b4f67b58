//! Tests of the baseline's knee: the highest stage it keeps up with within the SLOs,
//! in the table and in `summary.json`.

use super::*;
use crate::bench::recorder::GoodputMetrics;

/// `report()` with SLOs set and the baseline's goodput at each stage, % (in stage
/// order; extra values add stages at 50, 70, … req/s, copies of the last one).
fn with_baseline_goodput(percents: &[f64]) -> BenchReport {
    let mut report = report();
    while report.stages.len() < percents.len() {
        let mut stage = report.stages.last().unwrap().clone();
        stage.stage += 1;
        stage.rate += 20.0;
        report.stages.push(stage);
    }
    for (stage, &percent) in report.stages.iter_mut().zip(percents) {
        for r in &mut stage.results {
            r.summary.successes.goodput_metrics = Some(GoodputMetrics {
                goodput_percentage: percent,
                request_goodput: 1.0,
                token_goodput: 1.0,
                good_requests: 9,
                total_requests: 10,
                ttft_attainment_percentage: Some(percent),
                tpot_attainment_percentage: None,
                ntpot_attainment_percentage: None,
                request_latency_attainment_percentage: None,
            });
            if r.strategy == "random" {
                r.summary.goodput.percent = percent;
            }
        }
    }
    report
}

#[test]
fn the_knee_is_the_last_stage_the_baseline_keeps_up_with() {
    let report = with_baseline_goodput(&[95.0, 80.0]);
    assert_eq!(
        report.knee(),
        Knee::UpTo {
            stage: &report.stages[0],
            goodput_percent: 95.0,
            every_stage: false
        }
    );
    let text = comparison_table(&report);
    assert!(
        text.contains(
            "random keeps up to 10 req/s: the highest stage where at least 90% of its \
             requests meet every SLO (95.0%)"
        ),
        "{text}"
    );
    assert!(
        text.contains("at 10 req/s, epp igw-default p90 NTPOT is 0.50× random's, p90 e2e 0.50×"),
        "{text}"
    );
    assert!(
        text.contains("at 10 req/s, epp gie-default p90 NTPOT is 0.80× random's"),
        "{text}"
    );
    let dir = TempDir::new("knee");
    write(&report, &dir.0).unwrap();
    let text = std::fs::read_to_string(dir.0.join("summary.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let knee = &v["baseline_keeps_up"];
    assert_eq!(knee["strategy"], "random");
    assert_eq!(knee["stage"], 0);
    assert_eq!(knee["rate"], 10.0);
    assert_eq!(knee["every_stage"], false);
    assert_eq!(knee["threshold_percent"], 90.0);
    for chart in [
        "latency_vs_qps.svg",
        "ratio_vs_qps.svg",
        "throughput_vs_qps.svg",
    ] {
        let svg = std::fs::read_to_string(dir.0.join(chart)).unwrap();
        assert!(
            svg.contains("random keeps up to 10 req/s"),
            "{chart} marks the knee"
        );
    }
}

#[test]
fn a_stage_the_baseline_misses_ends_the_walk_even_if_a_higher_one_passes() {
    // 10 req/s kept up, 30 missed, 50 kept up again (noise): the knee is 10.
    let report = with_baseline_goodput(&[95.0, 89.9, 99.0]);
    assert_eq!(report.stages[2].rate, 50.0);
    assert!(matches!(
        report.knee(),
        Knee::UpTo { stage, every_stage: false, .. } if stage.rate == 10.0
    ));
}

#[test]
fn a_baseline_that_always_keeps_up_says_so() {
    let report = with_baseline_goodput(&[100.0, 90.0]);
    assert!(matches!(
        report.knee(),
        Knee::UpTo { stage, every_stage: true, .. } if stage.rate == 30.0
    ));
    let text = comparison_table(&report);
    assert!(
        text.contains("random keeps up at every stage: at least 90% of its requests meet every SLO up to 30 req/s (90.0%)"),
        "{text}"
    );
    assert!(
        text.contains("at 30 req/s, epp igw-default p90 NTPOT is 0.50×"),
        "{text}"
    );
}

#[test]
fn a_baseline_that_never_keeps_up_has_no_knee_stage() {
    let report = with_baseline_goodput(&[40.0, 10.0]);
    assert!(matches!(report.knee(), Knee::Never { lowest, .. } if lowest.rate == 10.0));
    assert_eq!(report.keeps_up(), None);
    let text = comparison_table(&report);
    assert!(
        text.contains("random keeps up at no stage: fewer than 90% of its requests meet every SLO even at 10 req/s (40.0%)"),
        "{text}"
    );
    assert!(
        !text.contains("at 10 req/s, epp igw-default p90 NTPOT is"),
        "{text}"
    );
}

#[test]
fn without_slos_there_is_no_knee() {
    // `report()` sets no SLO: goodput is 90% but there is nothing it measures against.
    let report = report();
    assert_eq!(report.knee(), Knee::Unknown);
    let text = comparison_table(&report);
    assert!(!text.contains("keeps up"), "{text}");
    let dir = TempDir::new("no-knee");
    write(&report, &dir.0).unwrap();
    let svg = std::fs::read_to_string(dir.0.join("latency_vs_qps.svg")).unwrap();
    assert!(!svg.contains("keeps up"), "no knee, no marker");
    let text = std::fs::read_to_string(dir.0.join("summary.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["baseline_keeps_up"], serde_json::Value::Null);
}

/// Sets `strategy`'s goodput at each stage, % (in stage order).
fn set_goodput(report: &mut BenchReport, strategy: &str, percents: &[f64]) {
    for (stage, &percent) in report.stages.iter_mut().zip(percents) {
        let r = stage
            .results
            .iter_mut()
            .find(|r| r.strategy == strategy)
            .unwrap();
        r.summary.goodput.percent = percent;
    }
}

#[test]
fn each_strategy_keeps_up_as_far_as_its_own_goodput_goes() {
    // Stages at 10, 30 and 50 req/s; random keeps up to 10 only.
    let mut report = with_baseline_goodput(&[95.0, 80.0, 70.0]);
    set_goodput(&mut report, "epp igw-default", &[99.0, 95.0, 85.0]);
    set_goodput(&mut report, "epp gie-default", &[50.0, 95.0, 95.0]);
    assert!(matches!(
        report.knee_of("epp igw-default"),
        Knee::UpTo { stage, every_stage: false, .. } if stage.rate == 30.0
    ));
    // The walk starts at the lowest stage, as the baseline's does.
    assert!(matches!(
        report.knee_of("epp gie-default"),
        Knee::Never { .. }
    ));
    assert_eq!(report.knee_of("no such strategy"), Knee::Unknown);
    let text = comparison_table(&report);
    assert!(
        text.contains(
            "epp igw-default keeps up to 30 req/s within the SLOs (3.00× random's 10 req/s)"
        ),
        "{text}"
    );
    assert!(
        text.contains("epp gie-default keeps up at no stage within the SLOs (50.0% at 10 req/s)"),
        "{text}"
    );

    let dir = TempDir::new("keeps-up");
    write(&report, &dir.0).unwrap();
    let text = std::fs::read_to_string(dir.0.join("summary.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let kept: Vec<(&str, f64)> = v["keeps_up"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["strategy"].as_str().unwrap(), k["rate"].as_f64().unwrap()))
        .collect();
    assert_eq!(kept, [("epp igw-default", 30.0), ("random", 10.0)]);

    // A strategy that never drops below the threshold has no knee in the sweep.
    set_goodput(&mut report, "epp igw-default", &[99.0, 99.0, 99.0]);
    let text = comparison_table(&report);
    assert!(
        text.contains(
            "epp igw-default keeps up at every stage within the SLOs, up to 50 req/s \
             (at least 5.00× random's 10 req/s; the sweep does not reach its knee)"
        ),
        "{text}"
    );
}

#[test]
fn strategies_can_keep_up_where_the_baseline_never_does() {
    let mut report = with_baseline_goodput(&[40.0, 10.0]);
    set_goodput(&mut report, "epp igw-default", &[95.0, 50.0]);
    let text = comparison_table(&report);
    assert!(
        text.contains("epp igw-default keeps up to 10 req/s within the SLOs\n"),
        "{text}"
    );
    set_goodput(&mut report, "epp igw-default", &[95.0, 95.0]);
    let text = comparison_table(&report);
    assert!(
        text.contains(
            "epp igw-default keeps up at every stage within the SLOs, up to 30 req/s (the \
             sweep does not reach its knee)"
        ),
        "{text}"
    );
}
