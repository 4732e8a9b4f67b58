//! The flags GIE and llm-d users already type, on the real `igw epp run` binary: each
//! is accepted and does what it does there. The binary is started on free ports and
//! read until it logs its active configuration (or exits), under a deadline; then it
//! is stopped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);

fn testdata(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/epp")
        .join(name)
        .display()
        .to_string()
}

/// Kills the child when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `igw epp run` with `args` on free ports and returns its stderr lines up to
/// and including the one that names the active configuration.
fn start(args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_igw"));
    cmd.args([
        "epp",
        "run",
        "--endpoints",
        "127.0.0.1:1",
        "--host",
        "127.0.0.1",
    ])
    .args(["--proxy-port", "0", "--metrics-port", "0"])
    .args(["--grpc-port", "0", "--grpc-health-port", "0"])
    .args(args)
    .env_remove("RUST_LOG")
    .env("RUST_BACKTRACE", "1")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = Running(cmd.spawn().expect("igw starts"));
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(DEADLINE) {
            Ok(line) => {
                let done = line.contains("active configuration");
                lines.push(line);
                if done {
                    return lines;
                }
            }
            Err(_) => panic!(
                "no active-configuration line; stderr so far:\n{}",
                lines.join("\n")
            ),
        }
    }
}

#[test]
fn config_file_is_gies_name_for_config() {
    let lines = start(&["--config-file", &testdata("lora-affinity.yaml")], &[]);
    let last = lines.last().unwrap();
    assert!(last.contains("lora-affinity-scorer"), "{last}");
    assert!(last.contains("lora-affinity.yaml"), "{last}");
}

#[test]
fn config_text_takes_the_file_inline() {
    let text = "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\n";
    let lines = start(&["--config-text", text], &[]);
    let last = lines.last().unwrap();
    assert!(last.contains("default: queue-scorer"), "{last}");
    assert!(last.contains("--config-text"), "{last}");
}

#[test]
fn pool_namespace_comes_from_the_flag_or_the_environment() {
    let lines = start(&["--pool-namespace", "team-a"], &[]);
    assert!(
        lines.last().unwrap().contains("team-a/igw-pool"),
        "{lines:?}"
    );
    let lines = start(&[], &[("NAMESPACE", "from-env")]);
    assert!(
        lines.last().unwrap().contains("from-env/igw-pool"),
        "{lines:?}"
    );
}

#[test]
fn v_sets_the_log_level() {
    // At --v 4 the binary logs at debug, which info never shows.
    let quiet = start(&[], &[]);
    assert!(quiet.iter().all(|l| !l.contains("DEBUG")), "{quiet:?}");
    let loud = start(&["--v", "4"], &[]);
    assert!(loud.iter().any(|l| l.contains("DEBUG")), "{loud:?}");
}

#[test]
fn zap_encoder_json_logs_one_json_object_a_line_without_colour() {
    let lines = start(&["--zap-encoder", "json"], &[]);
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    let plain = start(&[], &[]);
    assert!(
        plain.iter().all(|l| !l.contains('\u{1b}')),
        "colour codes in a log that is not a terminal: {plain:?}"
    );
}

#[test]
fn a_bad_config_is_one_line_without_a_backtrace() {
    let out = Command::new(env!("CARGO_BIN_EXE_igw"))
        .args(["epp", "run", "--endpoints", "127.0.0.1:1"])
        .args(["--config-file", &testdata("bad-unknown-plugin.yaml")])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or("");
    assert!(last.starts_with("error: "), "{err}");
    assert!(last.contains("bad-unknown-plugin.yaml"), "{err}");
    assert!(
        !err.contains("backtrace") && !err.contains("Stack"),
        "{err}"
    );
}
