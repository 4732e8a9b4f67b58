//! One trait for every place a pool's endpoints come from, each ending in an
//! [`EndpointSink`] (the [`Pool`](crate::epp::pool::Pool) in the EPP):
//!
//! - [`Fixed`]: the static pool (`--pool-file`, `--endpoints`), given once;
//! - [`WatchedFile`]: llm-d's endpoints file, re-read when it changes when asked to
//!   (`watchFile: true`, or `--endpoints-file`).
//!
//! A watched file is polled: its size, modification time and inode every
//! [`POLL_INTERVAL`], the file read again only when one of them moved. Polling sees
//! what inotify on the file misses (an editor's or ConfigMap's atomic rename onto
//! it, the symlink swap Kubernetes does when a mounted ConfigMap changes) and needs
//! no extra dependency; a change reaches the pool within one interval.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::endpoints_file::EndpointsFile;
use super::pool_file::PoolError;
use crate::epp::endpoint::Endpoint;

/// How often a watched endpoints file is looked at.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// A future a source runs on, boxed so the trait stays object-safe.
pub type SourceFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where a source hands each new set of endpoints.
pub trait EndpointSink: Send + Sync {
    fn set_endpoints(&self, endpoints: Vec<Endpoint>);
}

impl EndpointSink for crate::epp::pool::Pool {
    fn set_endpoints(&self, endpoints: Vec<Endpoint>) {
        crate::epp::pool::Pool::set_endpoints(self, endpoints);
    }
}

/// A source of a pool's endpoints.
pub trait Discovery: Send {
    /// What it is, for the start-up log line (`endpoints file /etc/e.yaml, watched`).
    fn describe(&self) -> String;
    /// The endpoints at start, read before anything serves.
    fn initial(&self) -> Vec<Endpoint>;
    /// Follows the source's reloads, for a source that has them.
    fn reloads(&self) -> Option<watch::Receiver<Reloads>> {
        None
    }
    /// Keeps `sink` current until `stop` resolves, and resolves then (not before: the
    /// host takes a source that ends by itself for a fault). A source that never
    /// changes just waits for `stop`.
    fn run(self: Box<Self>, sink: Arc<dyn EndpointSink>, stop: SourceFuture) -> SourceFuture;
}

/// Endpoints given once.
pub struct Fixed {
    pub what: String,
    pub endpoints: Vec<Endpoint>,
}

impl Discovery for Fixed {
    fn describe(&self) -> String {
        self.what.clone()
    }

    fn initial(&self) -> Vec<Endpoint> {
        self.endpoints.clone()
    }

    fn run(self: Box<Self>, _sink: Arc<dyn EndpointSink>, stop: SourceFuture) -> SourceFuture {
        stop
    }
}

/// What a watched file has done since start, for tests and the admin API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reloads {
    /// New versions of the file taken (the start-up read not counted).
    pub applied: u64,
    /// New versions refused (the endpoints before them kept serving).
    pub refused: u64,
    /// Why the last refused version was refused.
    pub last_error: Option<String>,
}

/// llm-d's endpoints file, watched when `watch` is set.
pub struct WatchedFile {
    path: PathBuf,
    watch: bool,
    first: EndpointsFile,
    reloads: watch::Sender<Reloads>,
}

/// What is compared to decide the file may have changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn stamp(path: &std::path::Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
        inode,
    })
}

impl WatchedFile {
    /// Reads the file; a file that cannot be used is an error here, at start.
    pub fn open(path: PathBuf, watch: bool) -> Result<WatchedFile, PoolError> {
        let first = EndpointsFile::read(&path)?;
        for e in first.endpoints.iter().filter(|e| e.metrics_host.is_some()) {
            tracing::info!(
                endpoint = %e.endpoint.name,
                metrics_host = e.metrics_host.as_deref().unwrap_or_default(),
                "metricsHost: igw scrapes the serving address {}",
                e.endpoint.address
            );
        }
        Ok(WatchedFile {
            path,
            watch,
            first,
            reloads: watch::channel(Reloads::default()).0,
        })
    }

    fn endpoints(file: &EndpointsFile) -> Vec<Endpoint> {
        file.endpoints.iter().map(|e| e.endpoint.clone()).collect()
    }

    async fn watch_loop(self, sink: Arc<dyn EndpointSink>) {
        let mut seen = stamp(&self.path);
        let mut current = self.first;
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = stamp(&self.path);
            if now == seen {
                continue;
            }
            seen = now;
            let path = self.path.clone();
            let read = tokio::task::spawn_blocking(move || EndpointsFile::read(&path)).await;
            let read = read.unwrap_or_else(|e| {
                Err(PoolError::Read {
                    file: self.path.display().to_string(),
                    error: std::io::Error::other(e.to_string()),
                })
            });
            match read {
                Ok(next) if next == current => {}
                Ok(next) => {
                    tracing::info!(
                        file = %self.path.display(),
                        endpoints = next.endpoints.len(),
                        "endpoints file changed; endpoints replaced"
                    );
                    sink.set_endpoints(WatchedFile::endpoints(&next));
                    current = next;
                    self.reloads.send_modify(|r| r.applied += 1);
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        kept = current.endpoints.len(),
                        "endpoints file refused; the endpoints it gave before keep serving"
                    );
                    self.reloads.send_modify(|r| {
                        r.refused += 1;
                        r.last_error = Some(e.to_string());
                    });
                }
            }
        }
    }
}

impl Discovery for WatchedFile {
    fn describe(&self) -> String {
        let how = if self.watch { "watched" } else { "read once" };
        format!("endpoints file {}, {how}", self.path.display())
    }

    fn initial(&self) -> Vec<Endpoint> {
        WatchedFile::endpoints(&self.first)
    }

    fn reloads(&self) -> Option<watch::Receiver<Reloads>> {
        Some(self.reloads.subscribe())
    }

    fn run(self: Box<Self>, sink: Arc<dyn EndpointSink>, stop: SourceFuture) -> SourceFuture {
        if !self.watch {
            return stop;
        }
        Box::pin(async move {
            tokio::select! {
                () = stop => {}
                () = self.watch_loop(sink) => {}
            }
        })
    }
}
