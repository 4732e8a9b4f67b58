//! Tests of the tidy checks: one per check against the real workspace, then each
//! check on small in-memory trees, so a check that never fires cannot pass unnoticed.

use super::*;

/// Runs one named check on the real workspace and fails with every problem found.
fn assert_tidy(name: &str) {
    let tree = Tree::load(&crate::workspace_root());
    let (_, check) = CHECKS.iter().find(|(n, _)| *n == name).unwrap();
    let failures = check(&tree);
    let report: Vec<String> = failures.iter().map(ToString::to_string).collect();
    assert!(
        failures.is_empty(),
        "tidy `{name}` failed:\n{}",
        report.join("\n")
    );
}

#[test]
fn doc_comments_hold() {
    assert_tidy("doc_comments");
}

#[test]
fn banned_text_is_absent() {
    assert_tidy("banned_text");
}

#[test]
fn file_length_holds() {
    assert_tidy("file_length");
}

#[test]
fn whitespace_is_clean() {
    assert_tidy("whitespace");
}

#[test]
fn lib_layout_names_every_module() {
    assert_tidy("lib_layout");
}

#[test]
fn architecture_maps_every_src_dir() {
    assert_tidy("architecture");
}

#[test]
fn ci_script_runs_every_step() {
    assert_tidy("ci_script");
}

#[test]
fn invariants_hold() {
    assert_tidy("invariants");
}

#[test]
fn the_tree_is_found_from_the_manifest_dir() {
    let tree = Tree::load(&crate::workspace_root());
    assert!(tree.files.contains_key("src/lib.rs"));
    assert!(tree.files.contains_key("xtask/src/tidy.rs"));
    assert!(!tree.files.keys().any(|p| p.contains("/target/")));
}

/// A tree with the given files (paths under a [`TREES`] entry go to `files`, others
/// to `root_files`) and `src/` directories.
fn tree(files: &[(&str, &str)], src_dirs: &[&str]) -> Tree {
    let mut t = Tree::default();
    for (path, text) in files {
        let top = path.split('/').next().unwrap();
        let map = if TREES.contains(&top) {
            &mut t.files
        } else {
            &mut t.root_files
        };
        map.insert(path.to_string(), text.to_string());
    }
    t.src_dirs = src_dirs.iter().map(|d| d.to_string()).collect();
    t
}

/// Runs `check` on `t` and compares the `path:line` prefixes of its failures.
fn check(check: Check, t: &Tree, expected: &[&str]) {
    let got: Vec<String> = check(t)
        .iter()
        .map(|f| format!("{}:{}", f.path, f.line))
        .collect();
    assert_eq!(got, expected, "{:#?}", check(t));
}

#[test]
fn doc_comment_must_open_the_file() {
    let t = tree(
        &[
            ("src/a.rs", "//! Says why.\n"),
            ("src/b.rs", "\n//! Too late.\n"),
            ("tests/c.rs", "use x;\n"),
            ("benches/d.rs", "// Plain comment.\n"),
            ("src/e.txt", "not rust\n"),
        ],
        &[],
    );
    check(
        doc_comments,
        &t,
        &["benches/d.rs:1", "src/b.rs:1", "tests/c.rs:1"],
    );
}

#[test]
fn banned_text_is_found_on_its_line() {
    let [(todo, _), (unimpl, _), (debug, _), (ignore, _)] = banned_needles();
    let body = format!("//! Doc.\nfn a() {{ {todo}) }}\n{ignore}]\n{debug}1);\n{unimpl})\n");
    let t = tree(
        &[
            ("src/x.rs", &body),
            ("src/ok.rs", "//! `dbg` alone is fine.\n"),
        ],
        &[],
    );
    check(
        banned_text,
        &t,
        &["src/x.rs:2", "src/x.rs:3", "src/x.rs:4", "src/x.rs:5"],
    );
}

#[test]
fn long_files_fail_unless_allowed_and_allowances_do_not_go_stale() {
    let long = "x\n".repeat(MAX_LINES + 5);
    let short = "x\n".repeat(10);
    let t = tree(
        &[
            ("src/long.rs", &long),
            ("src/old.rs", &long),
            ("src/fixed.rs", &short),
        ],
        &[],
    );
    let allowed = [
        ("src/old.rs", MAX_LINES + 5),
        ("src/fixed.rs", 700),
        ("src/gone.rs", 700),
    ];
    let got: Vec<String> = file_length_with(&t, &allowed)
        .iter()
        .map(|f| format!("{}:{}", f.path, f.line))
        .collect();
    assert_eq!(
        got,
        ["src/fixed.rs:1", "src/long.rs:601", "xtask/src/tidy.rs:1"]
    );
    let tighter = [("src/old.rs", MAX_LINES + 1)];
    let f = &file_length_with(&tree(&[("src/old.rs", &long)], &[]), &tighter)[0];
    assert_eq!(f.line, MAX_LINES + 2);
    assert!(f.message.contains("605 lines"), "{f}");
}

#[test]
fn whitespace_flags_trailing_blanks_everywhere_and_tabs_in_rust() {
    let t = tree(
        &[
            ("src/a.rs", "//! Doc.\nfn a() {} \n\tlet x;\n"),
            (
                "xtask/Cargo.toml",
                "[package]\t\nname = \"x\"\n\tindented = 1\n",
            ),
            ("README.md", "# igw\nok\nbad  \n"),
        ],
        &[],
    );
    check(
        whitespace,
        &t,
        &[
            "src/a.rs:2",
            "src/a.rs:3",
            "xtask/Cargo.toml:1",
            "README.md:3",
        ],
    );
}

#[test]
fn lib_layout_needs_every_pub_mod() {
    let lib = "//! igw.\n//!\n//! # Layout\n//!\n//! - [`sim`]: the simulator.\n//!\n\
               //! # Other\n//! `epp` is only mentioned here.\n\npub mod sim;\npub mod epp;\n\
               mod private;\n";
    check(
        lib_layout,
        &tree(&[("src/lib.rs", lib)], &[]),
        &["src/lib.rs:11"],
    );
    let no_section = "//! igw.\n\npub mod sim;\n";
    check(
        lib_layout,
        &tree(&[("src/lib.rs", no_section)], &[]),
        &["src/lib.rs:1"],
    );
}

#[test]
fn architecture_must_mention_every_src_dir() {
    let arch = "# Architecture\n`src/sim/` engine\n- `api/` wire types\n";
    let t = tree(&[("ARCHITECTURE.md", arch)], &["api", "sim", "epp"]);
    let f = architecture(&t);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].to_string()
            .starts_with("ARCHITECTURE.md:1: does not mention `src/epp/`")
    );
    check(architecture, &tree(&[], &["sim"]), &["ARCHITECTURE.md:1"]);
}

#[test]
fn ci_script_and_readme_agree_with_the_steps() {
    let all: Vec<String> = ci::STEPS.iter().map(|s| ci::command_line(s)).collect();
    let script = format!("#!/usr/bin/env bash\n{}\n", all.join("\n"));
    let readme = format!("Run `{README_TEST_COMMAND}`.\n");
    let good = tree(&[(".ci/run", &script), ("README.md", &readme)], &[]);
    check(ci_script, &good, &[]);
    let partial = script.replace(README_TEST_COMMAND, "cargo nextest run");
    let bad = tree(&[(".ci/run", &partial), ("README.md", "no command\n")], &[]);
    check(ci_script, &bad, &[".ci/run:1", ".ci/run:1", "README.md:1"]);
}

#[test]
fn invariants_keep_the_engine_clockless_and_xtask_std_only() {
    let engine = "//! Driven with tokio's clock by the server.\nuse std::time::Duration;\n\
                  fn f() { let t = std::time::Instant::now(); }\n    // sleep( in a comment\n";
    let xtask = "[package]\nname = \"xtask\"\n\n[dependencies]\n# none\n\n\
                 [dev-dependencies]\nregex = \"1\"\n";
    let t = tree(
        &[
            ("src/sim/engine/mod.rs", engine),
            ("src/sim/server/mod.rs", "use tokio::time::Instant;\n"),
            ("xtask/Cargo.toml", xtask),
        ],
        &[],
    );
    check(
        invariants,
        &t,
        &["src/sim/engine/mod.rs:3", "xtask/Cargo.toml:8"],
    );
}

#[test]
fn invariants_keep_the_scheduler_pure() {
    let plugin = "//! A plugin.\nuse super::{Filter, Scored};\nuse crate::epp::endpoint::Candidate;\n\
                  use crate::epp::{request::LlmRequest, clock::Clock};\n\
                  fn f(e: crate::epp::error::EppError) {}\nuse std::fs::read;\n";
    let root = "//! The scheduler.\nuse super::endpoint::Candidate;\nuse super::proxy::Target;\n\
                use self::run::Scheduler;\n";
    let t = tree(
        &[
            ("src/epp/scheduler/plugins/queue.rs", plugin),
            ("src/epp/scheduler/mod.rs", root),
            ("src/epp/director.rs", "use super::clock::Clock;\n"),
        ],
        &[],
    );
    check(
        invariants,
        &t,
        &[
            "src/epp/scheduler/mod.rs:3",
            "src/epp/scheduler/plugins/queue.rs:4",
            "src/epp/scheduler/plugins/queue.rs:5",
            "src/epp/scheduler/plugins/queue.rs:6",
        ],
    );
    assert_eq!(
        crate_paths(
            "use crate::epp::{request::LlmRequest, clock::{Clock, X}};",
            &module_path("src/epp/scheduler/run.rs")
        ),
        vec![
            "epp::request::LlmRequest",
            "epp::clock::Clock",
            "epp::clock::X"
        ]
    );
}
