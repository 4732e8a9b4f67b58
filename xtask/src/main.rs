//! `cargo xtask`: the project's own automation, written in Rust so it runs wherever
//! cargo does.
//!
//! - `cargo xtask tidy` checks the repository's conventions ([`tidy`]). The same checks
//!   are tests of this crate, so `cargo test --workspace` enforces them.
//! - `cargo xtask ci` runs the steps `.ci/run` runs, in the same order ([`ci`]).
//! - `cargo xtask gen-sharegpt` rewrites `testdata/sharegpt/sample.json` by running
//!   `igw bench gen-sharegpt` (the generator lives in the library); `cargo xtask
//!   gen-trace` rewrites `testdata/traces/chat-service.jsonl` the same way.
//!
//! It depends on std only and never links the igw crate, so it compiles in seconds.
//! Paths are resolved from the workspace root, not the current directory.

mod ci;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  tidy    check the repository's conventions (also run by `cargo test --workspace`)
  ci      run what CI runs: fetch --locked, fmt check, clippy -D warnings, doc, tests
  gen-sharegpt
          regenerate testdata/sharegpt/sample.json (the bundled ShareGPT sample)
  gen-trace
          regenerate testdata/traces/chat-service.jsonl (the bundled trace sample)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str);
    if args.len() > 1 {
        eprintln!("unexpected argument `{}`\n\n{USAGE}", args[1]);
        return ExitCode::from(2);
    }
    let root = workspace_root();
    match task {
        Some("tidy") => {
            let tree = tidy::Tree::load(&root);
            let failures = tidy::run(&tree);
            for f in &failures {
                eprintln!("{f}");
            }
            if failures.is_empty() {
                eprintln!("tidy: ok ({} files)", tree.num_files());
                ExitCode::SUCCESS
            } else {
                eprintln!("tidy: {} problem(s)", failures.len());
                ExitCode::FAILURE
            }
        }
        Some("ci") => match ci::run(&root) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("ci: {message}");
                ExitCode::FAILURE
            }
        },
        Some("gen-sharegpt") => generate(&root, "gen-sharegpt", "testdata/sharegpt/sample.json"),
        Some("gen-trace") => generate(&root, "gen-trace", "testdata/traces/chat-service.jsonl"),
        None | Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("unknown task `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Runs the library's deterministic generator through the igw binary, so xtask stays
/// std-only.
/// Runs `igw bench <task> --out <root>/<out>`: the bundled samples' generators live
/// in the library.
fn generate(root: &Path, task: &str, out: &str) -> ExitCode {
    let status = std::process::Command::new("cargo")
        .args([
            "run",
            "--release",
            "--bin",
            "igw",
            "--",
            "bench",
            task,
            "--out",
        ])
        .arg(root.join(out))
        .current_dir(root)
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("{task}: igw failed ({s})");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{task}: cannot start cargo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's manifest directory, wherever cargo
/// was started from.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one directory below the workspace root")
        .to_path_buf()
}
