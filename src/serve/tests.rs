//! The serving loop against raw sockets under tokio's paused clock: every timeout
//! passes in virtual time, so nothing waits real seconds and the assertions are on
//! what the server did (closed, answered 408/503/413), never on how long it took.

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;

fn limits() -> ServeLimits {
    ServeLimits {
        header_read_timeout: Duration::from_millis(200),
        request_body_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(1),
        max_connections: 4,
        max_inflight_body_bytes: 1000,
    }
}

/// `/hello` answers at once; `/echo` reads its body and answers its length, or the
/// status of the body error behind the rejection; `/big` answers 8 MiB.
fn app() -> Router {
    async fn echo(body: Result<Bytes, axum::extract::rejection::BytesRejection>) -> Response {
        match body {
            Ok(b) => b.len().to_string().into_response(),
            Err(rejection) => match body_error(&rejection) {
                Some(e) => (e.status(), e.to_string()).into_response(),
                None => rejection.into_response(),
            },
        }
    }
    Router::new()
        .route("/hello", get(|| async { "hi" }))
        .route("/echo", post(echo))
        .route("/big", get(|| async { vec![b'b'; 8 << 20] }))
        .layer(DefaultBodyLimit::max(600))
}

struct Running {
    addr: std::net::SocketAddr,
    stats: Arc<ServeStats>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

async fn start(limits: ServeLimits) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::new(limits).unwrap();
    let stats = server.stats();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, app(), async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stats,
        stop: Some(stop),
        task,
    }
}

/// Everything the server sends until it closes the connection; `None` if it is
/// still open after a minute of virtual time.
async fn until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Reads one response whose body is `body_len` bytes, leaving the connection open.
async fn one_response(stream: &mut TcpStream, body_len: usize) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some(i) = text.find("\r\n\r\n")
            && out.len() >= i + 4 + body_len
        {
            return text;
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed mid-response: {text:?}");
        out.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_head_sent_a_line_a_second_is_cut_off() {
    let s = start(limits()).await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    let (mut rd, mut wr) = stream.split();
    let trickle = async {
        wr.write_all(b"GET /hello HTTP/1.1\r\n").await.ok()?;
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            wr.write_all(format!("x-line-{i}: 1\r\n").as_bytes())
                .await
                .ok()?;
        }
        Some(())
    };
    let mut got = Vec::new();
    let closed = async {
        let _ = rd.read_to_end(&mut got).await;
    };
    tokio::select! {
        _ = trickle => panic!("the server took a 100-line head"),
        _ = closed => {}
    }
    assert!(got.is_empty(), "no response to a half head: {got:?}");
    assert_eq!(s.stats.snapshot().header_timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_closed_at_the_header_timeout() {
    let s = start(limits()).await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    assert_eq!(until_closed(&mut stream).await.as_deref(), Some(""));
    let snap = s.stats.snapshot();
    assert_eq!((snap.header_timeouts, snap.connections_open), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_kept_alive_connection_waits_the_idle_timeout_not_the_header_one() {
    let s = start(limits()).await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    let req = b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n";
    stream.write_all(req).await.unwrap();
    assert!(
        one_response(&mut stream, 2)
            .await
            .starts_with("HTTP/1.1 200")
    );
    // Longer than the header timeout, shorter than the idle one: still open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stream.write_all(req).await.unwrap();
    assert!(
        one_response(&mut stream, 2)
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert_eq!(until_closed(&mut stream).await.as_deref(), Some(""));
    let snap = s.stats.snapshot();
    assert_eq!((snap.idle_timeouts, snap.header_timeouts), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_body_trickled_a_byte_a_second_gets_408_and_a_closed_connection() {
    let s = start(limits()).await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n\r\n")
        .await
        .unwrap();
    let (mut rd, mut wr) = stream.split();
    let mut sent = 0;
    let trickle = async {
        loop {
            if wr.write_all(b"a").await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let mut got = Vec::new();
    tokio::select! {
        _ = trickle => {}
        _ = rd.read_to_end(&mut got) => {}
    }
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(sent < 500, "the whole body went in: {sent} bytes");
    let snap = s.stats.snapshot();
    assert_eq!((snap.body_timeouts, snap.inflight_body_bytes), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn an_endless_chunked_body_is_cut_off_slow_or_fast() {
    let s = start(limits()).await;
    for (pause, status) in [(Duration::from_millis(300), "408"), (Duration::ZERO, "413")] {
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let (mut rd, mut wr) = stream.split();
        let endless = async {
            while wr.write_all(b"10\r\n0123456789abcdef\r\n").await.is_ok() {
                tokio::time::sleep(pause).await;
            }
        };
        let mut got = Vec::new();
        tokio::select! {
            // The server stopped reading; its answer is still to be read.
            _ = endless => { let _ = rd.read_to_end(&mut got).await; }
            _ = rd.read_to_end(&mut got) => {}
        }
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with(&format!("HTTP/1.1 {status}")), "{got}");
    }
    assert_eq!(s.stats.snapshot().inflight_body_bytes, 0);
}

#[tokio::test(start_paused = true)]
async fn bodies_beyond_the_budget_are_refused_at_their_head() {
    let s = start(limits()).await;
    // 500 declared bytes hold half the budget while the body stalls.
    let mut stalled = TcpStream::connect(s.addr).await.unwrap();
    stalled
        .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n\r\nabc")
        .await
        .unwrap();
    let mut snap = s.stats.snapshot();
    while snap.inflight_body_bytes == 0 {
        tokio::task::yield_now().await;
        snap = s.stats.snapshot();
    }
    assert_eq!(snap.inflight_body_bytes, 500);
    for (declared, status) in [(600, "503"), (5000, "413")] {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let head = format!("POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: {declared}\r\n\r\n");
        c.write_all(head.as_bytes()).await.unwrap();
        let got = until_closed(&mut c).await.expect("closed");
        assert!(got.starts_with(&format!("HTTP/1.1 {status}")), "{got}");
        assert!(got.contains("\"error\""), "{got}");
        assert_eq!(got.contains("retry-after: 1\r\n"), status == "503", "{got}");
    }
    // What fits is still served.
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 400\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    c.write_all(&[b'z'; 400]).await.unwrap();
    let got = until_closed(&mut c).await.expect("closed");
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("400"),
        "{got}"
    );
    let snap = s.stats.snapshot();
    assert_eq!((snap.bodies_over_budget, snap.bodies_too_large), (1, 1));
    // The stalled body times out and gives its bytes back.
    assert!(
        until_closed(&mut stalled)
            .await
            .expect("closed")
            .starts_with("HTTP/1.1 408")
    );
    assert_eq!(s.stats.snapshot().inflight_body_bytes, 0);
}

#[tokio::test(start_paused = true)]
async fn a_chunked_body_past_the_budget_fails_with_503() {
    let mut l = limits();
    l.max_inflight_body_bytes = 100;
    let s = start(l).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 64, "q".repeat(64));
    let (mut rd, mut wr) = c.split();
    let writes = async {
        for _ in 0..4 {
            if wr.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    let mut got = Vec::new();
    tokio::select! {
        _ = writes => {}
        _ = rd.read_to_end(&mut got) => {}
    }
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    let snap = s.stats.snapshot();
    assert_eq!((snap.bodies_over_budget, snap.inflight_body_bytes), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn connections_past_the_limit_wait_until_one_closes() {
    let s = start(limits()).await;
    // Twice the limit of silent sockets: the first four are accepted and timed out,
    // then the next four.
    let mut flood = Vec::new();
    for _ in 0..8 {
        flood.push(TcpStream::connect(s.addr).await.unwrap());
    }
    for c in &mut flood {
        assert_eq!(until_closed(c).await.as_deref(), Some(""));
    }
    let snap = s.stats.snapshot();
    assert_eq!(snap.connections_peak, 4, "{snap:?}");
    assert_eq!(snap.header_timeouts, 8);
    assert!(snap.accept_paused >= 1);
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(
        until_closed(&mut c)
            .await
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_idle_connections_and_returns() {
    let mut s = start(limits()).await;
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    idle.write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(one_response(&mut idle, 2).await.starts_with("HTTP/1.1 200"));
    let _ = s.stop.take().unwrap().send(());
    s.task.await.unwrap().unwrap();
    assert_eq!(until_closed(&mut idle).await.as_deref(), Some(""));
    assert_eq!(
        s.stats.snapshot().idle_timeouts,
        0,
        "closed by the shutdown"
    );
}

#[tokio::test]
async fn a_real_client_is_served_and_rendering_names_every_family() {
    let s = start(ServeLimits::default()).await;
    let body = reqwest::get(format!("http://{}/hello", s.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "hi");
    let mut out = String::new();
    s.stats.snapshot().render(&mut out, "engine=\"0\"");
    for line in [
        "igw_http_connections_accepted_total{engine=\"0\"} 1",
        "igw_http_connections_timed_out_total{engine=\"0\",reason=\"header\"} 0",
        "igw_http_request_bodies_refused_total{engine=\"0\",reason=\"timeout\"} 0",
        "igw_http_max_inflight_body_bytes{engine=\"0\"} 134217728",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line}:\n{out}");
    }
    assert_eq!(
        StatusCode::REQUEST_TIMEOUT,
        BodyError::TimedOut(Duration::ZERO).status()
    );
}

#[tokio::test(start_paused = true)]
async fn a_response_left_unread_is_cut_but_a_slow_reader_is_not() {
    let s = start(limits()).await;
    let get_big = b"GET /big HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    // Sips 64 KiB every 20 ms: slower than the server writes and longer in all than
    // the idle timeout, but the kernel's send buffer drains well within it.
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(get_big).await.unwrap();
    let mut total = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        match slow.read(&mut buf).await.unwrap() {
            0 => break,
            n => total += n,
        }
    }
    assert!(total > 8 << 20, "the slow reader got {total} bytes");
    assert_eq!(s.stats.snapshot().unread_timeouts, 0);
    // Never reads: closed once its response has waited the idle timeout.
    let mut deaf = TcpStream::connect(s.addr).await.unwrap();
    deaf.write_all(get_big).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while s.stats.snapshot().unread_timeouts == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never cut");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.stats.snapshot().connections_open, 0);
}
