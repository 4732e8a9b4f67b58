//! `cargo xtask`: the project's own automation, written in Rust so it runs wherever
//! cargo does.
//!
//! - `cargo xtask tidy` checks the repository's conventions ([`tidy`]). The same checks
//!   are tests of this crate, so `cargo test --workspace` enforces them.
//! - `cargo xtask ci` runs the steps `.ci/run` runs, in the same order ([`ci`]).
//! - `cargo xtask gen-sharegpt` rewrites `testdata/sharegpt/sample.json` by running
//!   `igw bench gen-sharegpt` (the generator lives in the library).
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
        Some("gen-sharegpt") => gen_sharegpt(&root),
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
fn gen_sharegpt(root: &Path) -> ExitCode {
    let out = root.join("testdata/sharegpt/sample.json");
    let status = std::process::Command::new("cargo")
        .args([
            "run",
            "--release",
            "--bin",
            "igw",
            "--",
            "bench",
            "gen-sharegpt",
            "--out",
        ])
        .arg(&out)
        .current_dir(root)
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("gen-sharegpt: igw failed ({s})");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("gen-sharegpt: cannot start cargo: {e}");
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
