//! The picker end to end, on what it admits and when: shedding of sheddable requests
//! while the pool is saturated (gie-facts §5.1), endpoints that die and come back,
//! readiness and the picker's own metrics, and configuration files rejected at start
//! with errors that say where.
//!
//! Simulator replicas and the picker run in-process on 127.0.0.1:0; every wait polls
//! the picker's admin port under a deadline.

mod support;

use igw::epp::run::{EppOptions, start};
use igw::sim::options::EngineOptions;
use serde_json::json;
use support::epp::*;

/// Legacy admission: while every replica's waiting queue is at the utilization
/// detector's threshold (5), a request whose objective has priority < 0 is dropped
/// with 429; priority ≥ 0 and requests naming no objective are still routed.
#[tokio::test]
async fn only_sheddable_requests_are_shed_when_saturated() {
    // One sequence at a time, so every further request waits.
    let engine = EngineOptions {
        max_num_seqs: Some(1),
        ..Default::default()
    };
    let sims = replicas(2, sim_config(engine, 1.0)).await;
    let (a, b) = (sims.addrs()[0], sims.addrs()[1]);
    let p = picker(sims.addrs(), |o| {
        o.objectives = Some(testdata("objectives.yaml"));
    })
    .await;
    p.wait_healthy(&[a, b]).await;

    let r = p.send(&short_request("batch before"), Some("batch")).await;
    assert_eq!(r.status, 200, "not saturated yet: {}", r.text);

    // One running and five waiting on each replica.
    let _load_a = keep_busy(a, MODEL, 6, 16).await;
    let _load_b = keep_busy(b, MODEL, 6, 16).await;
    p.wait_for("five requests waiting on every replica", |v| {
        [a, b]
            .iter()
            .all(|&e| field(view(v, e), "waiting_queue_size") >= 5.0)
    })
    .await;

    let r = p.send(&short_request("batch during"), Some("batch")).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(
        support::error_message(&r.text, 429),
        "inference error: ResourceExhausted - system saturated, sheddable request dropped"
    );
    assert_eq!(r.served, None);
    // The others join a queue; their headers are enough, the stream is dropped.
    let streaming = json!({"model": MODEL, "prompt": "still served", "max_tokens": 2,
                           "stream": true});
    for objective in [Some("interactive"), None, Some("no-such-objective")] {
        let resp = p.open(&streaming, objective).await;
        assert_eq!(resp.status(), 200, "objective {objective:?}");
        assert!(
            resp.headers().contains_key(SERVED),
            "objective {objective:?}"
        );
    }
}

/// With GIE's `concurrency-detector` the pool is saturated by the picker's own
/// in-flight count (2 per endpoint here), not by metrics: two streams held open
/// through the gateway make it shed sheddable requests at once, and it stops when
/// they end.
#[tokio::test]
async fn the_concurrency_detector_sheds_on_the_pickers_own_in_flight_count() {
    let sims = replicas(1, sim_config(EngineOptions::default(), 1.0)).await;
    let a = sims.addrs()[0];
    let p = picker(sims.addrs(), |o| {
        o.objectives = Some(testdata("objectives.yaml"));
        o.config = Some(testdata("concurrency-detector.yaml"));
    })
    .await;
    p.wait_healthy(&[a]).await;
    let r = p.send(&short_request("batch before"), Some("batch")).await;
    assert_eq!(r.status, 200, "nothing in flight yet: {}", r.text);

    // Two long streams, held open: 2 in flight of a capacity of 2.
    let long = json!({"model": MODEL, "prompt": "a long answer", "max_tokens": 4000,
                      "ignore_eos": true, "stream": true});
    let held = [p.open(&long, None).await, p.open(&long, None).await];
    assert!(held.iter().all(|r| r.status() == 200));
    let seen = p
        .wait_for("two requests in flight", |v| {
            field(view(v, a), "in_flight") == 2.0
        })
        .await;
    // Each is booked at GIE's estimate of its body: bytes / 4 in, 1.5× that out.
    let input = (serde_json::to_vec(&long).unwrap().len() / 4) as f64;
    let each = input + (input * 1.5).round();
    assert_eq!(field(view(&seen, a), "in_flight_tokens"), 2.0 * each);
    let r = p.send(&short_request("batch during"), Some("batch")).await;
    assert_eq!(r.status, 429, "{}", r.text);
    let r = p
        .send(&short_request("interactive"), Some("interactive"))
        .await;
    assert_eq!(r.status, 200, "priority ≥ 0 is never shed: {}", r.text);

    drop(held);
    p.wait_for("nothing in flight", |v| {
        field(view(v, a), "in_flight") == 0.0 && field(view(v, a), "in_flight_tokens") == 0.0
    })
    .await;
    let r = p.send(&short_request("batch after"), Some("batch")).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// An endpoint nothing listens on is marked unhealthy with the scrape error and gets
/// no traffic; once a server listens there, it is healthy again.
#[tokio::test]
async fn a_dead_endpoint_is_avoided_and_recovers() {
    let live = replicas(1, sim_config(EngineOptions::default(), 1000.0)).await;
    let live_addr = live.addrs()[0];
    let dead = dead_address().await;
    let p = picker(&[live_addr, dead], |_| {}).await;
    let seen = p
        .wait_for(
            "the live endpoint healthy and the dead one unhealthy",
            |v| view(v, live_addr)["health"] == "healthy" && view(v, dead)["health"] == "unhealthy",
        )
        .await;
    let error = view(&seen, dead)["last_error"]
        .as_str()
        .expect("the dead endpoint has a last_error");
    assert!(error.contains(&dead.to_string()), "{error}");

    for i in 0..6 {
        let r = p.send(&short_request(&format!("dead {i}")), None).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text);
        assert_eq!(r.served, Some(live_addr.to_string()), "request {i}");
    }

    let _revived = replica_at(dead, sim_config(EngineOptions::default(), 1000.0)).await;
    let seen = p
        .wait_for("the revived endpoint healthy", |v| {
            view(v, dead)["health"] == "healthy"
        })
        .await;
    assert_eq!(view(&seen, dead)["last_error"], json!(null));
    assert_eq!(view(&seen, dead)["waiting_queue_size"], json!(0));
}

/// `/ready` answers 503 until an endpoint has been scraped healthy, then 200; the
/// picker's `/metrics` counts requests by objective priority and ready endpoints.
#[tokio::test]
async fn readiness_follows_the_first_healthy_scrape_and_metrics_follow_requests() {
    let addr = dead_address().await;
    let p = picker(&[addr], |o| {
        o.objectives = Some(testdata("objectives.yaml"));
    })
    .await;
    let (status, text) = p.admin_get("/ready").await;
    assert_eq!(status, 503, "{text}");
    p.wait_for("the only endpoint scraped and unhealthy", |v| {
        view(v, addr)["health"] == "unhealthy"
    })
    .await;
    let (status, text) = p.admin_get("/ready").await;
    assert_eq!(status, 503, "no endpoint healthy yet: {text}");

    let _sim = replica_at(addr, sim_config(EngineOptions::default(), 1000.0)).await;
    p.wait_ready(200).await;

    let r = p
        .send(&short_request("interactive"), Some("interactive"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (status, metrics) = p.admin_get("/metrics").await;
    assert_eq!(status, 200);
    let requests = support::metric(
        &metrics,
        "inference_objective_request_total",
        &[
            &format!("model_name=\"{MODEL}\""),
            &format!("target_model_name=\"{MODEL}\""),
            "priority=\"10\"",
        ],
    );
    assert_eq!(requests, 1.0, "{metrics}");
    assert_eq!(
        support::metric(
            &metrics,
            "inference_pool_ready_pods",
            &["name=\"igw-pool\""]
        ),
        1.0,
        "{metrics}"
    );
}

/// A bad configuration stops the picker before it listens, and the error names the
/// file, the plugin and the field at fault.
#[tokio::test]
async fn config_errors_name_the_file_the_plugin_and_the_field() {
    let pool = [dead_address().await];
    // (EndpointPickerConfig file, objectives file, what the error must name)
    let cases: [(Option<&str>, Option<&str>, &[&str]); 3] = [
        (
            Some("bad-unknown-plugin.yaml"),
            None,
            &[
                "bad-unknown-plugin.yaml",
                "plugin `queue`",
                "`queue-scorre`",
                "field `type`",
            ],
        ),
        (
            Some("bad-negative-weight.yaml"),
            None,
            &[
                "bad-negative-weight.yaml",
                "plugin `kv-cache-utilization-scorer`",
                "field `weight`",
                "-1",
            ],
        ),
        (
            None,
            Some("bad-objectives.yaml"),
            &["bad-objectives.yaml", "unknown field `priorty`"],
        ),
    ];
    for (config, objectives, needles) in cases {
        let mut opts = EppOptions::local(&pool);
        opts.config = config.map(testdata);
        opts.objectives = objectives.map(testdata);
        let err = match start(&opts).await {
            Ok(_) => panic!("the picker started with {opts:?}"),
            Err(e) => format!("{e:#}"),
        };
        for needle in needles {
            assert!(err.contains(needle), "`{needle}` missing from: {err}");
        }
    }
}
