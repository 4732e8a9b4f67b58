//! `igw sim serve` against clients that stall, trickle, flood or oversize: slow
//! headers, slow and endless bodies, a flood of silent sockets past the connection
//! cap, bodies past the size limit and the byte budget, stalled uploads, and a flood
//! of adapter names. After each, a normal request is still served.
//!
//! Slow clients are raw `TcpStream` writes. Every test runs under tokio's paused
//! clock with small limits (200 ms for a head, 2 s for a body), so the timeouts
//! pass in virtual time: nothing waits real seconds, and what is asserted is what
//! the server did (closed, answered 408/413/503), read back from its `/metrics`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use igw::serve::ServeLimits;
use igw::sim::server::SimServerConfig;
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn hostile_config() -> SimServerConfig {
    let mut c = config();
    c.limits = ServeLimits {
        header_read_timeout: Duration::from_millis(200),
        request_body_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(1),
        max_connections: 16,
        max_inflight_body_bytes: 64 * 1024 * 1024,
    };
    c
}

fn addr(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

/// Everything the server sends until it closes the connection (a reset counts as
/// closed); `None` if it is still open after ten minutes of virtual time.
async fn until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut out = Vec::new();
    let read = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(600), read)
        .await
        .ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The status of a raw response, and its JSON body if it has one.
fn parse_response(raw: &str) -> (u16, Value) {
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

async fn still_serves(url: &str) {
    let (status, body) = post(
        &format!("{url}/v1/completions"),
        json!({"prompt": "still there?", "max_tokens": 3}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn http_metric(url: &str, name: &str, labels: &[&str]) -> f64 {
    metric(&metrics_text(url).await, name, labels)
}

/// Resident and peak memory of this test process, kB (Linux; 0 elsewhere).
fn rss_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(start_paused = true)]
async fn a_header_sent_a_line_a_second_is_cut_off() {
    let (_sim, url) = start(hostile_config()).await;
    let mut stream = TcpStream::connect(addr(&url)).await.unwrap();
    let (mut rd, mut wr) = stream.split();
    let trickle = async {
        wr.write_all(b"POST /v1/completions HTTP/1.1\r\n")
            .await
            .ok()?;
        for i in 0..600 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            wr.write_all(format!("x-{i}: y\r\n").as_bytes())
                .await
                .ok()?;
        }
        Some(())
    };
    let mut got = Vec::new();
    tokio::select! {
        _ = trickle => panic!("a 600-line head trickled in"),
        _ = rd.read_to_end(&mut got) => {}
    }
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert_eq!(
        http_metric(
            &url,
            "igw_http_connections_timed_out_total",
            &["reason=\"header\""]
        )
        .await,
        1.0
    );
    still_serves(&url).await;
}

#[tokio::test(start_paused = true)]
async fn a_body_trickled_a_byte_a_second_gets_vllms_408() {
    let (_sim, url) = start(hostile_config()).await;
    let mut stream = TcpStream::connect(addr(&url)).await.unwrap();
    stream
        .write_all(b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 300\r\n\r\n{")
        .await
        .unwrap();
    let (mut rd, mut wr) = stream.split();
    let trickle = async {
        for _ in 0..299 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if wr.write_all(b" ").await.is_err() {
                return;
            }
        }
        panic!("the whole body trickled in");
    };
    let mut got = Vec::new();
    tokio::select! {
        _ = trickle => {}
        _ = rd.read_to_end(&mut got) => {}
    }
    let (status, body) = parse_response(&String::from_utf8_lossy(&got));
    assert_error(status, &body, 408, "APIError");
    assert_eq!(
        http_metric(
            &url,
            "igw_http_request_bodies_refused_total",
            &["reason=\"timeout\""]
        )
        .await,
        1.0
    );
    still_serves(&url).await;
}

#[tokio::test(start_paused = true)]
async fn an_endless_chunked_body_is_cut_off_slow_or_fast() {
    let (_sim, url) = start(hostile_config()).await;
    // Slow: a chunk every 100 ms never ends; fast: 1 MiB chunks pass the 16 MiB limit.
    for (pause, chunk_len, status) in [
        (Duration::from_millis(100), 16, 408),
        (Duration::ZERO, 1 << 20, 413),
    ] {
        let mut stream = TcpStream::connect(addr(&url)).await.unwrap();
        stream
            .write_all(
                b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n",
            )
            .await
            .unwrap();
        let chunk = [
            format!("{chunk_len:x}\r\n").into_bytes(),
            vec![b' '; chunk_len],
            b"\r\n".to_vec(),
        ]
        .concat();
        let (mut rd, mut wr) = stream.split();
        let endless = async {
            while wr.write_all(&chunk).await.is_ok() {
                tokio::time::sleep(pause).await;
            }
        };
        let mut got = Vec::new();
        tokio::select! {
            _ = endless => { let _ = rd.read_to_end(&mut got).await; }
            _ = rd.read_to_end(&mut got) => {}
        }
        let (got_status, body) = parse_response(&String::from_utf8_lossy(&got));
        assert_eq!(got_status, status, "{body}");
        assert_eq!(body["error"]["code"], status, "{body}");
    }
    assert_eq!(
        http_metric(&url, "igw_http_inflight_body_bytes", &[]).await,
        0.0
    );
    still_serves(&url).await;
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_silent_sockets_past_the_cap_is_cleared() {
    let (_sim, url) = start(hostile_config()).await;
    // Four times the cap: the kernel's backlog holds what the server does not accept.
    let mut flood = Vec::new();
    for _ in 0..64 {
        flood.push(TcpStream::connect(addr(&url)).await.unwrap());
    }
    // A real client behind the flood is served once the silent ones time out.
    let normal = tokio::spawn({
        let url = url.clone();
        async move { still_serves(&url).await }
    });
    for c in &mut flood {
        assert_eq!(until_closed(c).await.as_deref(), Some(""));
    }
    normal.await.unwrap();
    let text = metrics_text(&url).await;
    assert!(
        metric(&text, "igw_http_connections_peak", &[]) <= 16.0,
        "{text}"
    );
    assert!(metric(&text, "igw_http_accept_paused_total", &[]) >= 1.0);
    assert!(
        metric(
            &text,
            "igw_http_connections_timed_out_total",
            &["reason=\"header\""]
        ) >= 64.0
    );
}

#[tokio::test(start_paused = true)]
async fn oversized_bodies_get_413_without_being_read() {
    let (_sim, url) = start(hostile_config()).await;
    // Past --max-body-bytes (16 MiB), and past the whole 64 MiB budget.
    for declared in [17u64 << 20, 100 << 20] {
        let mut stream = TcpStream::connect(addr(&url)).await.unwrap();
        let head = format!(
            "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {declared}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let (status, body) = parse_response(&until_closed(&mut stream).await.expect("closed"));
        assert_error(status, &body, 413, "BadRequestError");
    }
    let text = metrics_text(&url).await;
    assert_eq!(
        metric(
            &text,
            "igw_http_request_bodies_refused_total",
            &["reason=\"too_large\""]
        ),
        1.0
    );
    assert_eq!(metric(&text, "igw_http_inflight_body_bytes", &[]), 0.0);
    still_serves(&url).await;
}

#[tokio::test(start_paused = true)]
async fn stalled_uploads_hold_no_more_than_the_budget() {
    let (_sim, url) = start(hostile_config()).await;
    let before = rss_kb();
    // 30 uploads declare 15 MB and stall after 8 MB: four fit the 64 MiB budget and
    // time out; the rest are refused at their head.
    let sent = Arc::new(vec![b' '; 8_000_000]);
    let uploads = (0..30).map(|_| {
        let (addr, sent) = (addr(&url), sent.clone());
        tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let head =
                "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 15000000\r\n\r\n";
            stream.write_all(head.as_bytes()).await.unwrap();
            let _ = stream.write_all(&sent).await;
            parse_response(&until_closed(&mut stream).await.expect("closed")).0
        })
    });
    let mut statuses = Vec::new();
    for u in uploads.collect::<Vec<_>>() {
        statuses.push(u.await.unwrap());
    }
    let after = rss_kb();
    let refused = statuses.iter().filter(|&&s| s == 503).count();
    let timed_out = statuses.iter().filter(|&&s| s == 408).count();
    assert_eq!(refused + timed_out, 30, "{statuses:?}");
    assert!(timed_out <= 4, "{statuses:?}");
    println!(
        "30 stalled 15 MB uploads: {timed_out} buffered and timed out, {refused} refused; \
         test process RSS {} MB before, {} MB after, peak {} MB",
        before.0 / 1024,
        after.0 / 1024,
        after.1 / 1024
    );
    assert_eq!(
        http_metric(&url, "igw_http_inflight_body_bytes", &[]).await,
        0.0
    );
    still_serves(&url).await;
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_adapter_names_stops_at_the_cap() {
    let mut c = hostile_config();
    c.max_lora_adapters = 64;
    let (_sim, url) = start(c).await;
    let load = format!("{url}/v1/load_lora_adapter");
    // One adapter is loaded at start, so 63 more fit.
    for i in 0..63 {
        let (status, body) = post(
            &load,
            json!({"lora_name": format!("a{i}"), "lora_path": "/p"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    for i in 63..200 {
        let (status, body) = post(
            &load,
            json!({"lora_name": format!("a{i}"), "lora_path": "/p"}),
        )
        .await;
        assert_error(status, &body, 400, "InvalidUserInput");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--max-lora-adapters"),
            "{body}"
        );
    }
    let (status, body) = post(
        &load,
        json!({"lora_name": "n".repeat(100_000), "lora_path": "/p"}),
    )
    .await;
    assert_error(status, &body, 400, "InvalidUserInput");
    let (status, models) = get_json(&format!("{url}/v1/models")).await;
    assert_eq!(status, 200);
    assert_eq!(models["data"].as_array().unwrap().len(), 1 + 64);
    // Unloading one makes room for another.
    let (status, _) = post(
        &format!("{url}/v1/unload_lora_adapter"),
        json!({"lora_name": "a0"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = post(&load, json!({"lora_name": "late", "lora_path": "/p"})).await;
    assert_eq!(status, 200, "{body}");
    still_serves(&url).await;
}
