//! The gateway against clients that hold connections: a head sent slowly, a body that
//! never completes, an endless chunked body, a flood of silent sockets above the
//! connection cap, bodies larger than the cap or the buffered-bytes budget. Each
//! attack ends in a 4xx/5xx or a closed connection, and a normal request is served
//! after it. The gateway's limits are set small (300 ms timeouts, 16 connections,
//! 1 MiB of buffered bodies) so the suite runs in seconds; waits are on the socket
//! (a reply, or the server closing it) under a deadline.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use igw::epp::run::EppOptions;
use igw::serve::ServeLimitOptions;
use support::epp::{Picker, picker, replicas, short_request, sim_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(10);

fn small_limits(o: &mut EppOptions) {
    o.limits = ServeLimitOptions {
        header_read_timeout: Duration::from_millis(300),
        request_body_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(2),
        max_connections: 16,
        max_inflight_body_bytes: 1 << 20,
    };
    o.max_body_bytes = 512 << 10;
}

async fn gateway() -> (Picker, igw::sim::server::SimServer) {
    let sim = replicas(1, sim_config(Default::default(), 100.0)).await;
    let p = picker(sim.addrs(), small_limits).await;
    p.wait_healthy(sim.addrs()).await;
    (p, sim)
}

/// Reads until the server answers or closes; returns what it sent (empty if it just
/// closed).
async fn answer(conn: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("the gateway answers or closes the connection in time");
    String::from_utf8_lossy(&got).into_owned()
}

async fn still_serves(p: &Picker) {
    let r = p.send(&short_request("after the attack"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

fn addr(p: &Picker) -> SocketAddr {
    p.epp.proxy_addr.unwrap()
}

#[tokio::test]
async fn a_head_sent_slowly_is_cut_off() {
    let (p, _sim) = gateway().await;
    let mut conn = TcpStream::connect(addr(&p)).await.unwrap();
    conn.write_all(b"POST /v1/completions HTTP/1.1\r\nhost: g\r\n")
        .await
        .unwrap();
    // The rest of the head never comes.
    let got = answer(&mut conn).await;
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");
    still_serves(&p).await;
}

#[tokio::test]
async fn a_body_that_never_completes_gets_408() {
    let (p, _sim) = gateway().await;
    let mut conn = TcpStream::connect(addr(&p)).await.unwrap();
    conn.write_all(
        b"POST /v1/completions HTTP/1.1\r\nhost: g\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"model\":",
    )
    .await
    .unwrap();
    let got = answer(&mut conn).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    still_serves(&p).await;
}

#[tokio::test]
async fn an_endless_chunked_body_is_refused() {
    let (p, _sim) = gateway().await;
    let mut conn = TcpStream::connect(addr(&p)).await.unwrap();
    conn.write_all(
        b"POST /v1/completions HTTP/1.1\r\nhost: g\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 8192, "x".repeat(8192));
    // Fast chunks forever: the body cap (512 KiB) ends it with 413.
    let mut sent = 0usize;
    let writer = async {
        while conn.write_all(chunk.as_bytes()).await.is_ok() {
            sent += 8192;
            if sent > 8 << 20 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DEADLINE, writer).await;
    let got = answer(&mut conn).await;
    assert!(
        got.is_empty() || got.starts_with("HTTP/1.1 413") || got.starts_with("HTTP/1.1 408"),
        "{got}"
    );
    assert!(sent < 8 << 20, "the gateway kept reading an endless body");
    still_serves(&p).await;
}

#[tokio::test]
async fn a_flood_of_silent_sockets_above_the_cap_does_not_lock_out_clients() {
    let (p, _sim) = gateway().await;
    let mut silent = Vec::new();
    for _ in 0..64 {
        silent.push(TcpStream::connect(addr(&p)).await.unwrap());
    }
    // Silent connections are closed at the header timeout, so a real client gets in.
    still_serves(&p).await;
    drop(silent);
}

#[tokio::test]
async fn bodies_over_the_cap_or_the_budget_are_refused_from_their_head() {
    let (p, _sim) = gateway().await;
    let rss_before = rss_bytes();
    // Over --max-body-bytes: 413 before any body byte is sent.
    let mut conn = TcpStream::connect(addr(&p)).await.unwrap();
    conn.write_all(b"POST /v1/completions HTTP/1.1\r\nhost: g\r\ncontent-length: 1048577\r\n\r\n")
        .await
        .unwrap();
    let got = answer(&mut conn).await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    // Within the cap, but five stalled 400 KB uploads exceed the 1 MiB budget: some
    // are refused at once with 503 instead of buffered.
    let mut stalled = Vec::new();
    let mut refused = 0;
    for _ in 0..5 {
        let mut c = TcpStream::connect(addr(&p)).await.unwrap();
        c.write_all(b"POST /v1/completions HTTP/1.1\r\nhost: g\r\ncontent-length: 409600\r\n\r\n")
            .await
            .unwrap();
        c.write_all(&[b' '; 300 << 10]).await.unwrap();
        stalled.push(c);
    }
    for c in &mut stalled {
        let got = answer(c).await;
        if got.starts_with("HTTP/1.1 503") {
            refused += 1;
        }
    }
    assert!(refused >= 3, "{refused} of 5 refused");
    still_serves(&p).await;
    // The gateway buffers at most the 1 MiB budget of bodies; the whole test process
    // (simulator and client included) stays within 64 MiB of where it started.
    let grown = rss_bytes().saturating_sub(rss_before);
    println!("RSS grew by {} KiB", grown >> 10);
    assert!(grown < 64 << 20, "RSS grew by {grown} bytes");
}

/// This process's resident memory, bytes (`/proc/self/statm`, 4 KiB pages).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}
