//! `igw sim serve` with a flag out of range exits at once with one error line naming
//! the flag and what it accepts, instead of starting and failing later (before, a
//! `--speedup 1e-22` server panicked its engine driver on the first request and
//! went on answering `/health` with 200).
//!
//! Runs the real binary; a process still running after the deadline failed to
//! refuse its flags.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `igw sim serve` with `args`; its exit success and stderr, or `None` if it
/// was still running (serving) after 20 s.
fn serve(args: &[&str]) -> Option<(bool, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_igw"))
        .args(["sim", "serve", "--model", "m", "--port", "0"])
        .args(args)
        .env("RUST_LOG", "error")
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("igw runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn every_flag_out_of_range_is_refused_at_start_naming_the_flag() {
    // (arguments, the flag the one error line must name)
    let cases: &[(&[&str], &str)] = &[
        (&["--speedup", "1e-22"], "--speedup"),
        (&["--speedup", "1e300"], "--speedup"),
        (&["--speedup", "NaN"], "--speedup"),
        (&["--max-model-len", "0"], "--max-model-len"),
        (&["--max-model-len", "1000000000000"], "--max-model-len"),
        (&["--block-size", "0"], "--block-size"),
        (&["--block-size", "65536"], "--block-size"),
        (&["--kv-blocks", "4294967295"], "--kv-blocks"),
        (&["--max-num-seqs", "1000000000"], "--max-num-seqs"),
        (
            &["--max-num-batched-tokens", "0"],
            "--max-num-batched-tokens",
        ),
        (&["--max-loras", "0"], "--max-loras"),
        (&["--lora-load-ms", "1e300"], "--lora-load-ms"),
        (&["--step-noise", "3"], "--step-noise"),
        (&["--failure-rate", "101"], "--failure-rate"),
        (&["--max-body-bytes", "0"], "--max-body-bytes"),
        (&["--max-lora-adapters", "0"], "--max-lora-adapters"),
        (&["--replicas", "0"], "--replicas"),
        (&["--header-read-timeout", "0"], "--header-read-timeout"),
        (&["--idle-timeout", "1000h"], "--idle-timeout"),
        (&["--max-connections", "0"], "--max-connections"),
        (
            &[
                "--max-inflight-body-bytes",
                "1000",
                "--max-body-bytes",
                "2000",
            ],
            "--max-body-bytes",
        ),
    ];
    for (args, flag) in cases {
        let Some((ok, stderr)) = serve(args) else {
            panic!("{args:?}: the server started");
        };
        assert!(!ok, "{args:?}: exit status 0");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: one error line, got:\n{stderr}");
        assert!(lines[0].contains(flag), "{args:?}: {stderr}");
        assert!(
            lines[0].contains("between") || lines[0].contains("must be"),
            "{args:?}: the accepted range: {stderr}"
        );
    }
}

/// A running `igw sim serve`, killed when dropped.
struct Running {
    child: std::process::Child,
    addr: String,
    /// Every stderr line up to the listening line.
    log: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `igw sim serve ARGS --port 0` and waits (at most 20 s) for its listening line.
fn start(args: &[&str]) -> Running {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_igw"))
        .args(["sim", "serve", "--port", "0"])
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("igw runs");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut log = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{args:?}: no listening line within 20 s; stderr:\n{log}");
            }
        };
        log.push_str(&line);
        log.push('\n');
        if line.contains("simulated vLLM server listening") {
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .expect("the listening line names its address")
                .to_string();
            return Running { child, addr, log };
        }
    }
}

/// The body of `GET path` on a running server.
fn get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

/// The `vllm:cache_config_info` sample line of a running server.
fn cache_config(addr: &str) -> String {
    get(addr, "/metrics")
        .lines()
        .find(|l| l.starts_with("vllm:cache_config_info{"))
        .expect("a cache_config_info line")
        .to_string()
}

#[test]
fn no_enable_prefix_caching_turns_it_off_and_the_last_spelling_wins() {
    let off = start(&["--model", "m", "--no-enable-prefix-caching"]);
    assert!(cache_config(&off.addr).contains("enable_prefix_caching=\"False\""));
    let on = start(&[
        "--model",
        "m",
        "--no-enable-prefix-caching",
        "--enable-prefix-caching",
    ]);
    assert!(cache_config(&on.addr).contains("enable_prefix_caching=\"True\""));
}

#[test]
fn enable_prefix_caching_alone_is_accepted() {
    let on = start(&["--model", "m", "--enable-prefix-caching"]);
    assert!(cache_config(&on.addr).contains("enable_prefix_caching=\"True\""));
}

#[test]
fn no_enable_chunked_prefill_makes_the_budget_hold_a_whole_prompt() {
    // Without chunked prefill a 100-token budget cannot hold a 200-token context.
    let small = ["--max-num-batched-tokens", "100", "--max-model-len", "200"];
    let mut args = vec!["--no-enable-chunked-prefill"];
    args.extend(small);
    let (ok, stderr) = serve(&args).expect("refused at start");
    assert!(!ok && stderr.contains("chunked prefill"), "{stderr}");
    // Turned back on by vLLM's positive spelling, the same budget is fine.
    let mut args = vec![
        "--model",
        "m",
        "--no-enable-chunked-prefill",
        "--enable-chunked-prefill",
    ];
    args.extend(small);
    let _server = start(&args);
}

#[test]
fn num_gpu_blocks_override_sets_the_kv_blocks() {
    let s = start(&["--model", "m", "--num-gpu-blocks-override", "123"]);
    let line = cache_config(&s.addr);
    assert!(line.contains("num_gpu_blocks=\"123\""), "{line}");
    assert!(line.contains("num_gpu_blocks_override=\"123\""), "{line}");
    let default = start(&["--model", "m"]);
    assert!(cache_config(&default.addr).contains("num_gpu_blocks_override=\"None\""));
}

#[test]
fn gpu_memory_utilization_is_accepted_reported_and_explained() {
    let s = start(&["--model", "m", "--gpu-memory-utilization", "0.8"]);
    assert!(cache_config(&s.addr).contains("gpu_memory_utilization=\"0.8\""));
    assert!(
        s.log.contains("--gpu-memory-utilization 0.8") && s.log.contains("sizes nothing here"),
        "{}",
        s.log
    );
    let (ok, stderr) = serve(&["--gpu-memory-utilization", "1.5"]).expect("refused at start");
    assert!(
        !ok && stderr.contains("--gpu-memory-utilization"),
        "{stderr}"
    );
}

#[test]
fn the_model_may_be_positional_as_in_vllm_serve() {
    let s = start(&["my-model"]);
    let models = get(&s.addr, "/v1/models");
    assert!(models.contains("\"id\":\"my-model\""), "{models}");
    assert!(cache_config(&s.addr).contains("engine=\"0\""));
    // Both spellings naming different models are refused.
    let (ok, stderr) = serve(&["other-model"]).expect("refused at start");
    assert!(!ok && stderr.contains("given twice"), "{stderr}");
}
