//! Huge prompts beside a stream: the engine's cadence must not depend on what other
//! clients send. A prompt too long for the context window is refused from its length
//! before it is tokenized; a large one within the bound is tokenized (and its JSON
//! parsed) off the runtime threads that drive the engine and deliver streams.
//!
//! The replica runs in real time (`--speedup 1`) on two runtime threads, as a small
//! server would; cadence is read from the simulator's own counter of how late each
//! step's tokens were delivered (`igw_sim_step_lag_seconds`), never from the test's
//! clock. Before the length check, three 4 MB prompts delayed 29 steps by more than
//! 0.25 s.

mod support;

use futures::future::join_all;
use serde_json::{Value, json};
use support::*;

/// A real-time replica with a stream running on it; the stream aborts when dropped.
async fn replica_with_a_stream(
    max_model_len: usize,
) -> (igw::sim::server::SimServer, String, reqwest::Response) {
    let mut c = config();
    c.speedup = 1.0;
    c.engine.max_model_len = max_model_len;
    let (sim, url) = start(c).await;
    // ~28 s of tokens at 7 ms a step: it outlasts the test.
    let mut stream = reqwest::Client::new()
        .post(format!("{url}/v1/completions"))
        .json(&json!({"prompt": "long", "max_tokens": 4000, "ignore_eos": true, "stream": true}))
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    while seen.matches("data: ").count() < 3 {
        let chunk = stream.chunk().await.unwrap().expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    (sim, url, stream)
}

/// Every step so far delivered its tokens within `bound` seconds of its modelled
/// end (a bucket of the lag histogram), and the engine kept stepping.
async fn assert_cadence_kept(url: &str, steps_before: f64) {
    let text = metrics_text(url).await;
    let total = metric(&text, "igw_sim_step_lag_seconds_count", &[]);
    let within = metric(&text, "igw_sim_step_lag_seconds_bucket", &["le=\"0.5\""]);
    assert_eq!(
        within,
        total,
        "{} steps delivered over 0.5 s late",
        total - within
    );
    assert!(total > steps_before, "the engine stopped stepping");
}

async fn steps(url: &str) -> f64 {
    metric(&metrics_text(url).await, "igw_sim_steps_total", &[])
}

fn assert_too_long(status: u16, body: &Value, param: &str) {
    assert_error(status, body, 400, "BadRequestError");
    assert_eq!(body["error"]["param"], param, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("maximum context length is 8192 tokens"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_prompts_are_refused_unread_and_a_stream_keeps_its_cadence() {
    let (_sim, url, _stream) = replica_with_a_stream(8192).await;
    let before = steps(&url).await;
    // Just under the 16 MiB body limit, with the JSON around them.
    let text = "word ".repeat((16 << 20) / 5 - 1000);
    let completions = format!("{url}/v1/completions");
    let chat = format!("{url}/v1/chat/completions");
    let mut sends: Vec<_> = (0..3)
        .map(|_| post(&completions, json!({"prompt": text.clone()})))
        .collect();
    let messages = json!([{"role": "user", "content": text.clone()}]);
    sends.push(post(&chat, json!({"messages": messages, "max_tokens": 10})));
    let answers = join_all(sends).await;
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_too_long(*status, body, if i < 3 { "prompt" } else { "messages" });
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("at least"),
            "refused from its length: {message}"
        );
    }
    assert_cadence_kept(&url, before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_prompts_within_the_bound_are_tokenized_off_the_runtime() {
    let (_sim, url, _stream) = replica_with_a_stream(8192).await;
    let before = steps(&url).await;
    // 200 KB may be 1,563 tokens or more: it is tokenized, then refused exactly
    // ("word" + 39,999 × " word" + a trailing " ").
    let text = "word ".repeat(40_000);
    let completions = format!("{url}/v1/completions");
    let sends = (0..3).map(|_| post(&completions, json!({"prompt": text.clone()})));
    for (status, body) in join_all(sends).await {
        assert_too_long(status, &body, "prompt");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(!message.contains("at least"), "an exact count: {message}");
        assert!(message.contains("you requested 40001 tokens"), "{message}");
    }
    assert_cadence_kept(&url, before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_prompt_that_fits_is_served_beside_the_stream() {
    let (_sim, url, _stream) = replica_with_a_stream(65_536).await;
    let before = steps(&url).await;
    let text = "word ".repeat(20_000);
    let (status, body) = post(
        &format!("{url}/v1/completions"),
        json!({"prompt": text, "max_tokens": 2}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["prompt_tokens"], 20_001);
    assert_cadence_kept(&url, before).await;
}
