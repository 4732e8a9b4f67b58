//! `cargo xtask ci`: the steps `.ci/run` runs, run locally in the same order, so a
//! green local run means a green CI run.
//!
//! [`STEPS`] is the single list; the tidy check `ci_script` fails when `.ci/run` stops
//! running one of them. This module only spawns cargo: it installs nothing.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// What CI runs, in order. Each step is a complete command line.
pub const STEPS: &[&[&str]] = &[
    // Fails early, and clearly, when Cargo.lock is stale or crates.io is unreachable.
    &["cargo", "fetch", "--locked"],
    &["cargo", "fmt", "--all", "--", "--check"],
    &[
        "cargo",
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ],
    // Dead doc links are errors (the crate's `[lints.rustdoc]`).
    &["cargo", "doc", "--workspace", "--no-deps"],
    // The README's test command, character for character.
    &["cargo", "test", "--workspace"],
];

/// A step as it is written in `.ci/run` and in logs.
pub fn command_line(step: &[&str]) -> String {
    step.join(" ")
}

/// Runs every step from the workspace root; stops at the first that fails.
pub fn run(root: &Path) -> Result<(), String> {
    let all = Instant::now();
    for step in STEPS {
        let line = command_line(step);
        eprintln!("--- {line}");
        let start = Instant::now();
        let status = Command::new(step[0])
            .args(&step[1..])
            .current_dir(root)
            .status()
            .map_err(|e| format!("cannot start `{line}`: {e}"))?;
        if !status.success() {
            return Err(format!("`{line}` failed ({status})"));
        }
        eprintln!("--- ok in {:.1}s", start.elapsed().as_secs_f64());
    }
    eprintln!(
        "ci: all {} steps passed in {:.1}s",
        STEPS.len(),
        all.elapsed().as_secs_f64()
    );
    Ok(())
}
