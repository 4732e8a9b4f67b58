//! `POST /admin/explain`: the picker's dry-run decision through its admin port. A
//! replica that holds a long prompt's prefix wins a request sharing it on the prefix
//! scorer; once that replica is saturated (a queue and a full KV cache) it still leads
//! on the prefix scorer but loses the pick. Explaining books nothing, and a body the
//! gateway would refuse gets the gateway's error.
//!
//! Simulator replicas and the picker (GIE's default profile: queue 2, KV 2, prefix 3)
//! run in-process on 127.0.0.1:0; waits poll the admin view under a deadline.

mod support;

use igw::sim::options::EngineOptions;
use serde_json::{Value, json};
use support::epp::*;

/// About 900 bytes: 14 of GIE's 64-byte prefix blocks.
fn prefix() -> String {
    "You are a careful assistant. Answer in one short sentence. ".repeat(15)
}

async fn explain(p: &Picker, body: &Value) -> (u16, Value) {
    let resp = p
        .client
        .post(format!("{}/admin/explain/v1/completions", p.admin))
        .json(body)
        .send()
        .await
        .expect("the admin port answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

/// `scorer`'s (raw, weighted) score for `endpoint` in the first profile.
fn score(x: &Value, scorer: &str, endpoint: &str) -> (f64, f64) {
    let scorers = x["profiles"][0]["scorers"].as_array().expect("scorers");
    let s = scorers
        .iter()
        .find(|s| s["name"] == scorer)
        .unwrap_or_else(|| panic!("no {scorer} in {x:#}"));
    let e = s["scores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["endpoint"] == endpoint)
        .unwrap_or_else(|| panic!("no {endpoint} under {scorer} in {x:#}"));
    (e["raw"].as_f64().unwrap(), e["weighted"].as_f64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prefix_holder_wins_until_it_is_saturated() {
    // A small KV cache (6,400 tokens, room for one 2,000-token prompt and its 4,000
    // tokens of output) and three sequences at a time: long requests fill a replica.
    let engine = EngineOptions {
        kv_blocks: Some(400),
        max_num_seqs: Some(3),
        ..Default::default()
    };
    let sims = replicas(2, sim_config(engine, 1.0)).await;
    let p = picker(sims.addrs(), |_| {}).await;
    p.wait_healthy(sims.addrs()).await;

    // The prefix goes through the gateway once: the prefix index learns where.
    let first =
        json!({"model": MODEL, "prompt": format!("{}Question 0?", prefix()), "max_tokens": 2});
    let r = p.send(&first, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let holder_addr = r.served.expect("served header");
    let endpoints = p.endpoints().await;
    let name_of = |addr: &str| {
        endpoints
            .iter()
            .find(|e| e["address"] == addr)
            .map(|e| e["name"].as_str().unwrap().to_string())
            .unwrap()
    };
    let holder = name_of(&holder_addr);
    let other_addr = sims
        .addrs()
        .iter()
        .map(|a| a.to_string())
        .find(|a| *a != holder_addr)
        .unwrap();
    let other = name_of(&other_addr);

    let sharing =
        json!({"model": MODEL, "prompt": format!("{}Question 1?", prefix()), "max_tokens": 2});
    let (status, x) = explain(&p, &sharing).await;
    assert_eq!(status, 200, "{x:#}");
    assert_eq!(x["target"], holder.as_str(), "{x:#}");
    assert_eq!(x["primary_profile"], "default");
    assert_eq!(x["error"], Value::Null);
    assert_eq!(x["endpoints"].as_array().unwrap().len(), 2);
    assert!(
        x["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["candidate"] == true)
    );
    let (raw, weighted) = score(&x, "prefix-cache-scorer", &holder);
    assert!(raw > 0.8, "the holder matches most blocks: {raw}");
    assert!(
        (weighted - raw.min(1.0) * 3.0).abs() < 1e-9,
        "weight 3: {weighted}"
    );
    assert_eq!(score(&x, "prefix-cache-scorer", &other).0, 0.0);
    // A dry run: explaining again gives the same answer, and nothing is in flight.
    let (_, again) = explain(&p, &sharing).await;
    assert_eq!(again["profiles"], x["profiles"]);
    assert!(p.endpoints().await.iter().all(|e| e["in_flight"] == 0));

    // The holder saturated: requests queue on it and its KV cache fills.
    let holder_sock = holder_addr.parse().unwrap();
    let _load = keep_busy(holder_sock, MODEL, 6, 2000).await;
    p.wait_for("the holder queueing with its KV cache over 60 %", |v| {
        let e = view(v, holder_sock);
        field(e, "waiting_queue_size") >= 2.0 && field(e, "kv_cache_usage") >= 0.6
    })
    .await;
    let (status, x) = explain(&p, &sharing).await;
    assert_eq!(status, 200, "{x:#}");
    assert_eq!(x["target"], other.as_str(), "{x:#}");
    assert!(score(&x, "prefix-cache-scorer", &holder).0 > 0.8, "{x:#}");
    assert_eq!(score(&x, "queue-scorer", &holder).0, 0.0, "{x:#}");
    assert_eq!(score(&x, "queue-scorer", &other).0, 1.0, "{x:#}");
    let totals = x["profiles"][0]["totals"].as_array().unwrap();
    let total = |n: &str| {
        totals.iter().find(|t| t["endpoint"] == n).unwrap()["score"]
            .as_f64()
            .unwrap()
    };
    assert!(total(&other) > total(&holder), "{x:#}");
    assert_eq!(x["profiles"][0]["picked"][0], other.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explaining_a_bad_request_gives_the_gateways_error_and_dead_endpoints_say_why() {
    let sims = replicas(1, sim_config(EngineOptions::default(), 1000.0)).await;
    let live = sims.addrs()[0];
    let dead = dead_address().await;
    let p = picker(&[live, dead], |_| {}).await;
    let resp = p
        .client
        .post(format!("{}/admin/explain", p.admin))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], 400, "{body}");

    p.wait_for("the live endpoint healthy and the dead one not", |v| {
        view(v, live)["health"] == "healthy" && view(v, dead)["health"] == "unhealthy"
    })
    .await;
    let (status, x) = explain(&p, &short_request("one")).await;
    assert_eq!(status, 200);
    assert_eq!(x["error"], Value::Null, "{x:#}");
    assert_eq!(x["fallbacks"], json!([]));
    let verdict = |addr: std::net::SocketAddr| {
        x["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["address"] == addr.to_string())
            .unwrap()
            .clone()
    };
    assert_eq!(verdict(live)["candidate"], true);
    assert_eq!(verdict(dead)["candidate"], false);
    let why = verdict(dead)["excluded"].as_str().unwrap().to_string();
    assert!(why.starts_with("unhealthy: "), "{why}");
    // Only candidates reach the scorers.
    let scored = x["profiles"][0]["totals"].as_array().unwrap();
    assert_eq!(scored.len(), 1, "{x:#}");
}
