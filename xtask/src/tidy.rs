//! `cargo xtask tidy`: the repository's conventions, checked by reading files.
//!
//! Each check is also a `#[test]` (in `tidy/tests.rs`), so `cargo test
//! --workspace` enforces it. Every failure reads `path:line: what is wrong`.
//!
//! - `doc_comments`: every `.rs` file under `src/`, `tests/`, `benches/` and `xtask/`
//!   opens with a `//!` comment.
//! - `banned_text`: no `todo` or `unimplemented` macro calls, no `dbg` calls and no
//!   ignored tests anywhere in those trees.
//! - `file_length`: no file in those trees is longer than [`MAX_LINES`] lines, except
//!   the ones in [`LONG_FILES`], which may not grow.
//! - `whitespace`: no trailing whitespace in those trees or in the root's text files,
//!   and no tabs in `.rs` files.
//! - `lib_layout`: every `pub mod` in `src/lib.rs` is named in the `# Layout` section
//!   of its `//!` comment.
//! - `architecture`: `ARCHITECTURE.md` exists and mentions every top-level directory
//!   under `src/`.
//! - `ci_script`: `.ci/run` runs every step of `cargo xtask ci`, and the README shows
//!   the same test command.
//! - `invariants`: ARCHITECTURE.md's absences that text can show: no code under
//!   `src/sim/engine/` or `src/epp/scheduler/` names a clock, a sleep, tokio or I/O;
//!   the scheduler names no crate module but the values it decides on (endpoint,
//!   request), durations and the hashers; and `xtask/Cargo.toml` lists no
//!   dependencies.
//!
//! Tidy only reads: it runs nothing and writes nothing. The needles it searches for are
//! assembled from pieces so that this file does not match itself.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::Path;

use crate::ci;

/// The trees whose every file is checked.
const TREES: [&str; 4] = ["src", "tests", "benches", "xtask"];

/// Text files at the root, checked for trailing whitespace; absent ones are skipped.
const ROOT_FILES: [&str; 9] = [
    "README.md",
    "ARCHITECTURE.md",
    "Cargo.toml",
    ".ci/run",
    ".cargo/config.toml",
    ".gitignore",
    "clippy.toml",
    "rustfmt.toml",
    "rust-toolchain.toml",
];

/// The longest a file may be, in lines.
pub const MAX_LINES: usize = 600;

/// Files that were already longer than [`MAX_LINES`] when the limit came in, with the
/// most lines each may have. Split a file and delete its entry; never raise a number.
pub const LONG_FILES: &[(&str, usize)] = &[];

/// The test command the README tells readers to run; CI must run exactly this.
pub const README_TEST_COMMAND: &str = "cargo test --workspace";

/// One broken convention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Relative to the workspace root, with `/` separators.
    pub path: String,
    /// 1-based.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path, self.line, self.message)
    }
}

fn fail(path: &str, line: usize, message: impl Into<String>) -> Failure {
    Failure {
        path: path.to_string(),
        line,
        message: message.into(),
    }
}

/// What the checks look at, read once.
#[derive(Debug, Default)]
pub struct Tree {
    /// Every UTF-8 file in [`TREES`], by relative path.
    files: BTreeMap<String, String>,
    /// The [`ROOT_FILES`] that exist, by relative path.
    root_files: BTreeMap<String, String>,
    /// Names of the directories directly under `src/`.
    src_dirs: Vec<String>,
}

impl Tree {
    /// Reads the workspace at `root`. Hidden entries and `target` directories are
    /// skipped; so are files that are not UTF-8 (binary fixtures).
    pub fn load(root: &Path) -> Tree {
        let mut tree = Tree::default();
        for dir in TREES {
            collect(root, dir, &mut tree.files);
        }
        for name in ROOT_FILES {
            if let Ok(text) = fs::read_to_string(root.join(name)) {
                tree.root_files.insert(name.to_string(), text);
            }
        }
        if let Ok(entries) = fs::read_dir(root.join("src")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.path().is_dir() && !name.starts_with('.') {
                    tree.src_dirs.push(name);
                }
            }
        }
        tree.src_dirs.sort();
        tree
    }

    pub fn num_files(&self) -> usize {
        self.files.len() + self.root_files.len()
    }

    fn rust_files(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files
            .iter()
            .filter(|(path, _)| path.ends_with(".rs"))
            .map(|(p, t)| (p.as_str(), t.as_str()))
    }
}

fn collect(root: &Path, rel: &str, out: &mut BTreeMap<String, String>) {
    let Ok(entries) = fs::read_dir(root.join(rel)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        let child = format!("{rel}/{name}");
        let path = entry.path();
        if path.is_dir() {
            collect(root, &child, out);
        } else if let Ok(text) = fs::read_to_string(&path) {
            out.insert(child, text);
        }
    }
}

/// A named check over the whole tree.
pub type Check = fn(&Tree) -> Vec<Failure>;

/// Every check, in the order failures are reported.
pub const CHECKS: [(&str, Check); 8] = [
    ("doc_comments", doc_comments),
    ("banned_text", banned_text),
    ("file_length", file_length),
    ("whitespace", whitespace),
    ("lib_layout", lib_layout),
    ("architecture", architecture),
    ("ci_script", ci_script),
    ("invariants", invariants),
];

/// Runs every check.
pub fn run(tree: &Tree) -> Vec<Failure> {
    CHECKS.iter().flat_map(|(_, check)| check(tree)).collect()
}

fn doc_comments(tree: &Tree) -> Vec<Failure> {
    tree.rust_files()
        .filter(|(_, text)| !text.starts_with("//!"))
        .map(|(path, _)| {
            fail(
                path,
                1,
                "does not open with a `//!` comment saying what the file is for",
            )
        })
        .collect()
}

/// Needles that must not appear in [`TREES`], with the reason. Built from pieces so
/// that this file does not contain them.
fn banned_needles() -> [(String, &'static str); 4] {
    let call = |name: &str| format!("{name}!(");
    [
        (call("todo"), "unfinished code"),
        (call("unimplemented"), "unfinished code"),
        (call("dbg"), "debug output"),
        (
            format!("#[{}", "ignore"),
            "an ignored test: make it pass or delete it",
        ),
    ]
}

fn banned_text(tree: &Tree) -> Vec<Failure> {
    let needles = banned_needles();
    let mut out = Vec::new();
    for (path, text) in &tree.files {
        for (i, line) in text.lines().enumerate() {
            for (needle, why) in &needles {
                if line.contains(needle.as_str()) {
                    out.push(fail(path, i + 1, format!("`{needle}`: {why}")));
                }
            }
        }
    }
    out
}

fn file_length(tree: &Tree) -> Vec<Failure> {
    file_length_with(tree, LONG_FILES)
}

fn file_length_with(tree: &Tree, allowed: &[(&str, usize)]) -> Vec<Failure> {
    let mut out = Vec::new();
    for (path, text) in &tree.files {
        let lines = text.lines().count();
        let budget = allowed.iter().find(|(p, _)| p == path).map(|&(_, n)| n);
        match budget {
            None if lines > MAX_LINES => out.push(fail(
                path,
                MAX_LINES + 1,
                format!("{lines} lines, over the limit of {MAX_LINES}: split the file"),
            )),
            Some(budget) if lines > budget => out.push(fail(
                path,
                budget + 1,
                format!(
                    "{lines} lines, over its LONG_FILES allowance of {budget} \
                     (xtask/src/tidy.rs): split the file instead of growing it"
                ),
            )),
            Some(_) if lines <= MAX_LINES => out.push(fail(
                path,
                1,
                format!(
                    "{lines} lines, within the limit of {MAX_LINES}: delete its \
                     LONG_FILES entry in xtask/src/tidy.rs"
                ),
            )),
            _ => {}
        }
    }
    for (path, _) in allowed {
        if !tree.files.contains_key(*path) {
            out.push(fail(
                "xtask/src/tidy.rs",
                1,
                format!("LONG_FILES names `{path}`, which does not exist: delete the entry"),
            ));
        }
    }
    out
}

fn whitespace(tree: &Tree) -> Vec<Failure> {
    let mut out = Vec::new();
    for (path, text) in tree.files.iter().chain(&tree.root_files) {
        let is_rust = path.ends_with(".rs");
        for (i, line) in text.lines().enumerate() {
            if line.ends_with([' ', '\t', '\r']) {
                out.push(fail(path, i + 1, "trailing whitespace"));
            }
            if is_rust && line.contains('\t') {
                out.push(fail(path, i + 1, "tab character (indent with spaces)"));
            }
        }
    }
    out
}

fn lib_layout(tree: &Tree) -> Vec<Failure> {
    const LIB: &str = "src/lib.rs";
    let Some(text) = tree.files.get(LIB) else {
        return vec![fail(LIB, 1, "missing")];
    };
    // The `# Layout` section runs to the next heading or the end of the `//!` block.
    let mut layout: Option<String> = None;
    for line in text.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            break;
        };
        let doc = doc.trim();
        match &mut layout {
            None if doc == "# Layout" => layout = Some(String::new()),
            Some(_) if doc.starts_with('#') => break,
            Some(section) => {
                section.push_str(doc);
                section.push('\n');
            }
            None => {}
        }
    }
    let Some(layout) = layout else {
        return vec![fail(
            LIB,
            1,
            "the `//!` comment has no `# Layout` section naming each module",
        )];
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("pub mod ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !layout.contains(&format!("`{name}`")) {
            out.push(fail(
                LIB,
                i + 1,
                format!(
                    "`pub mod {name}` is not named in the `# Layout` section of the `//!` comment"
                ),
            ));
        }
    }
    out
}

fn architecture(tree: &Tree) -> Vec<Failure> {
    const ARCH: &str = "ARCHITECTURE.md";
    let Some(text) = tree.root_files.get(ARCH) else {
        return vec![fail(
            ARCH,
            1,
            "missing: the bird's-eye view and code map live here",
        )];
    };
    tree.src_dirs
        .iter()
        .filter(|dir| {
            !text.contains(&format!("src/{dir}/")) && !text.contains(&format!("`{dir}/`"))
        })
        .map(|dir| {
            fail(
                ARCH,
                1,
                format!("does not mention `src/{dir}/`: give it a line in the code map"),
            )
        })
        .collect()
}

fn ci_script(tree: &Tree) -> Vec<Failure> {
    const SCRIPT: &str = ".ci/run";
    const README: &str = "README.md";
    let mut out = Vec::new();
    match tree.root_files.get(SCRIPT) {
        None => out.push(fail(SCRIPT, 1, "missing: CI runs `bash .ci/run`")),
        Some(text) => {
            for step in ci::STEPS {
                let line = ci::command_line(step);
                if !text.contains(&line) {
                    out.push(fail(
                        SCRIPT,
                        1,
                        format!("does not run `{line}`, a step of `cargo xtask ci`"),
                    ));
                }
            }
            if !text.contains(README_TEST_COMMAND) {
                out.push(fail(
                    SCRIPT,
                    1,
                    format!("does not run the README's test command `{README_TEST_COMMAND}`"),
                ));
            }
        }
    }
    match tree.root_files.get(README) {
        None => out.push(fail(README, 1, "missing")),
        Some(text) if !text.contains(README_TEST_COMMAND) => out.push(fail(
            README,
            1,
            format!("does not show the test command `{README_TEST_COMMAND}` that CI runs"),
        )),
        Some(_) => {}
    }
    out
}

/// Trees that must stay pure: no clock, no runtime, no I/O; their driver hands them
/// the time. The reason is part of each failure.
const PURE_TREES: [(&str, &str); 2] = [
    (
        "src/sim/engine/",
        "the engine never reads a clock and has no tokio; take `now` from the driver",
    ),
    (
        "src/epp/scheduler/",
        "the scheduler does no I/O and reads no clock; the time, the candidates and the \
         RNG come in with each decision",
    ),
];

/// Words that show code reading time, depending on a runtime or doing I/O. Comments
/// may name them (the docs say who drives the code); code may not.
const IMPURE_WORDS: [&str; 8] = [
    "tokio",
    "Instant",
    "SystemTime",
    "sleep(",
    "std::fs",
    "std::io",
    "std::env",
    "std::process",
];

/// The only crate modules the scheduler may name (`crate::…`, or `super::…` leading
/// out of it): the values it decides on, durations, and the content hashers.
const SCHEDULER_MAY_USE: [&str; 5] = [
    "epp::scheduler",
    "epp::endpoint",
    "epp::request",
    "epp::duration",
    "hash",
];

fn invariants(tree: &Tree) -> Vec<Failure> {
    let mut out = Vec::new();
    for (path, text) in &tree.files {
        let Some((_, why)) = PURE_TREES.iter().find(|(dir, _)| path.starts_with(dir)) else {
            continue;
        };
        let module = module_path(path);
        for (i, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for word in IMPURE_WORDS {
                if code.contains(word) {
                    out.push(fail(path, i + 1, format!("`{word}`: {why}")));
                }
            }
            if path.starts_with("src/epp/scheduler/") {
                for used in crate_paths(code, &module) {
                    let allowed = SCHEDULER_MAY_USE
                        .iter()
                        .any(|ok| used == *ok || used.starts_with(&format!("{ok}::")));
                    if !allowed {
                        out.push(fail(
                            path,
                            i + 1,
                            format!(
                                "the scheduler names `crate::{used}`; it may use only {}: {why}",
                                SCHEDULER_MAY_USE.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
    }
    const XTASK: &str = "xtask/Cargo.toml";
    if let Some(text) = tree.files.get(XTASK) {
        let mut in_deps = false;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.starts_with('[') {
                in_deps = line.ends_with("dependencies]");
            } else if in_deps && !line.is_empty() && !line.starts_with('#') {
                out.push(fail(
                    XTASK,
                    i + 1,
                    "xtask depends on std only, so it builds in seconds",
                ));
            }
        }
    }
    out
}

/// The module a source file is, as `::`-joined segments under the crate root:
/// `src/epp/scheduler/plugins/queue.rs` is `epp::scheduler::plugins::queue`, a
/// `mod.rs` is its directory.
fn module_path(path: &str) -> Vec<String> {
    let rel = path.strip_prefix("src/").unwrap_or(path);
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut segments: Vec<String> = rel.split('/').map(str::to_string).collect();
    if matches!(segments.last().map(String::as_str), Some("mod" | "lib")) {
        segments.pop();
    }
    segments
}

/// Every module path a line of code names through `crate::` or `super::`, resolved
/// against the file's `module` and expanded over `{…}` groups. (`super` in an inline
/// `mod tests` is resolved one level too high; within a checked tree that only makes
/// the check stricter.)
fn crate_paths(code: &str, module: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(['c', 's']) {
        let tail = &rest[at..];
        let boundary = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'));
        let (base, after) = if let Some(after) = tail.strip_prefix("crate::") {
            (Vec::new(), after)
        } else if tail.starts_with("super::") {
            let mut base = module.to_vec();
            let mut after = tail;
            while let Some(next) = after.strip_prefix("super::") {
                base.pop();
                after = next;
            }
            (base, after)
        } else {
            rest = &tail[1..];
            continue;
        };
        if boundary {
            expand(&base, after, &mut out);
        }
        rest = &tail[1..];
    }
    out
}

/// Appends `base::path` for the path at the start of `text`, one entry per item of a
/// `{…}` group.
fn expand(base: &[String], text: &str, out: &mut Vec<String>) {
    let mut segments = base.to_vec();
    let mut rest = text;
    loop {
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if len == 0 {
            break;
        }
        segments.push(rest[..len].to_string());
        rest = &rest[len..];
        match rest.strip_prefix("::") {
            Some(next) if next.starts_with('{') => {
                let inner = group(&next[1..]);
                for item in split_top_level(inner) {
                    expand(&segments, item.trim(), out);
                }
                return;
            }
            Some(next) => rest = next,
            None => break,
        }
    }
    if !segments.is_empty() {
        out.push(segments.join("::"));
    }
}

/// The text inside a `{…}` group that starts right after the opening brace.
fn group(text: &str) -> &str {
    let mut depth = 1;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[..i];
                }
            }
            _ => {}
        }
    }
    text
}

/// Splits at commas outside nested braces.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests;
