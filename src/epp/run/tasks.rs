//! The background tasks of a running picker, watched: a task that ends before
//! shutdown (it returned, or it panicked) records a fault, which fails `/health` and
//! `/ready` and ends `igw epp run` with an error, so the process never looks healthy
//! while, say, its scrape loop is gone and every request fails.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why the picker is broken, if it is.
pub type Fault = watch::Receiver<Option<String>>;

/// Spawns and watches tasks.
pub struct Tasks {
    handles: Vec<JoinHandle<()>>,
    fault: watch::Sender<Option<String>>,
    stopping: Arc<AtomicBool>,
}

impl Default for Tasks {
    fn default() -> Tasks {
        Tasks {
            handles: Vec::new(),
            fault: watch::Sender::new(None),
            stopping: Arc::default(),
        }
    }
}

impl Tasks {
    /// Runs `task` named `name`; ending before [`Tasks::stopping`] is a fault.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let fault = self.fault.clone();
        let stopping = self.stopping.clone();
        self.handles.push(tokio::spawn(async move {
            let ended = AssertUnwindSafe(task).catch_unwind().await;
            if stopping.load(Ordering::Relaxed) {
                return;
            }
            let why = match ended {
                Ok(()) => format!("{name} stopped"),
                Err(panic) => format!("{name} panicked: {}", panic_message(panic.as_ref())),
            };
            tracing::error!("{why}");
            fault.send_if_modified(|f| {
                let first = f.is_none();
                if first {
                    *f = Some(why);
                }
                first
            });
        }));
    }

    /// Watches for the first fault.
    pub fn fault(&self) -> Fault {
        self.fault.subscribe()
    }

    /// Shutdown has begun: tasks ending now are expected.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Waits for every task to end.
    pub async fn join(self) {
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_dies_is_a_fault_and_one_stopped_on_purpose_is_not() {
        let mut tasks = Tasks::default();
        let mut fault = tasks.fault();
        tasks.spawn("scrape loop", async { panic!("interval of zero") });
        let why = fault.wait_for(Option::is_some).await.unwrap().clone();
        assert_eq!(
            why.as_deref(),
            Some("scrape loop panicked: interval of zero")
        );

        let mut tasks = Tasks::default();
        let fault = tasks.fault();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn("server", async move {
            let _ = rx.await;
        });
        tasks.stopping();
        drop(tx);
        tasks.join().await;
        assert_eq!(*fault.borrow(), None);
    }
}
