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
