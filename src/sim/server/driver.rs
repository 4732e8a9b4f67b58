//! The driver: one tokio task per replica that owns the [`Engine`] and runs it against
//! tokio's clock.
//!
//! HTTP handlers talk to it only through [`DriverHandle`] commands (add, abort,
//! snapshot), so the synchronous engine needs no lock and nothing awaits while holding
//! it. The loop: take every queued command, call [`Engine::step`], wait (still taking
//! commands) until the step's modelled end, then hand each [`EngineEvent`] to its
//! request's channel. Requests that arrive during a step join a later one, as in vLLM.
//!
//! Engine time is wall time × `speedup`. The engine's timeline stays continuous while
//! it is busy: the next step starts at the previous step's modelled end even when the
//! timer woke late, so timer granularity and scheduling hiccups delay delivery (which
//! is measured as lag, see [`LagStats`]) but never slow the modelled server down. The
//! driver must not sleep on anything but the clock and its command channel.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::sim::engine::{AddError, Engine, EngineEvent, NewRequest, RequestId, StepResult};
use crate::sim::metrics::{EngineGauges, EngineMetrics, Histogram, ReplicaInfo, write_float};

/// Upper bounds of the lag histogram, wall seconds: from timer granularity (~1 ms)
/// up to a driver that has fallen seconds behind.
pub const LAG_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// How faithfully the driver keeps to the modelled timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct LagStats {
    /// Engine steps run.
    pub steps_total: u64,
    /// Modelled duration of those steps, engine seconds. Over a busy window,
    /// `Δ(this) / speedup / Δ(wall seconds)` is the driver's cadence: 1.0 means steps
    /// follow each other exactly as the latency model says; below 1.0 the driver has
    /// fallen behind the model.
    pub step_modelled_seconds_total: f64,
    /// Per step: wall seconds between the step's modelled end (`end / speedup`) and
    /// the moment its tokens were handed to the requests.
    pub step_lag_seconds: Histogram,
}

impl LagStats {
    fn new() -> LagStats {
        LagStats {
            steps_total: 0,
            step_modelled_seconds_total: 0.0,
            step_lag_seconds: Histogram::new(LAG_BUCKETS),
        }
    }

    /// Appends `igw_sim_step_lag_seconds` and `igw_sim_steps_total` in the same text
    /// format as vLLM's families (labels sorted by name, Python float spelling), so they
    /// can follow them on `/metrics`.
    pub fn render(&self, out: &mut String, info: &ReplicaInfo) {
        let model = escape_label(&info.model_name);
        let engine = info.engine;
        let h = &self.step_lag_seconds;
        out.push_str(
            "# HELP igw_sim_step_lag_seconds Wall seconds between an engine step's modelled \
             end and the delivery of its tokens.\n# TYPE igw_sim_step_lag_seconds histogram\n",
        );
        let bounds = h.bounds().iter().copied().chain([f64::INFINITY]);
        for (bound, count) in bounds.zip(h.cumulative()) {
            let _ = write!(
                out,
                "igw_sim_step_lag_seconds_bucket{{engine=\"{engine}\",le=\""
            );
            write_float(out, bound);
            let _ = write!(out, "\",model_name=\"{model}\"}} ");
            write_float(out, count as f64);
            out.push('\n');
        }
        let labels = format!("{{engine=\"{engine}\",model_name=\"{model}\"}}");
        let _ = write!(out, "igw_sim_step_lag_seconds_count{labels} ");
        write_float(out, h.count() as f64);
        let _ = write!(out, "\nigw_sim_step_lag_seconds_sum{labels} ");
        write_float(out, h.sum());
        out.push_str(
            "\n# HELP igw_sim_steps_total Engine steps run.\n\
             # TYPE igw_sim_steps_total counter\n",
        );
        let _ = write!(out, "igw_sim_steps_total{labels} ");
        write_float(out, self.steps_total as f64);
        out.push_str(
            "\n# HELP igw_sim_step_modelled_seconds_total Modelled engine seconds of the steps \
             run.\n# TYPE igw_sim_step_modelled_seconds_total counter\n",
        );
        let _ = write!(out, "igw_sim_step_modelled_seconds_total{labels} ");
        write_float(out, self.step_modelled_seconds_total);
        out.push('\n');
    }
}

/// Escapes a Prometheus label value (backslash, double quote, newline).
pub(super) fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A copy of the engine's state for `/metrics`.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub metrics: EngineMetrics,
    pub gauges: EngineGauges,
    pub lag: LagStats,
}

/// Why a request could not be handed to the engine.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Rejected(#[from] AddError),
    #[error("the engine has stopped")]
    Stopped,
}

enum Command {
    Add {
        request: NewRequest,
        events: mpsc::UnboundedSender<EngineEvent>,
        reply: oneshot::Sender<Result<(), AddError>>,
    },
    Abort {
        id: RequestId,
    },
    Snapshot {
        reply: oneshot::Sender<Snapshot>,
    },
    #[cfg(test)]
    Crash,
}

/// Converts between tokio instants and engine time.
#[derive(Clone, Copy, Debug)]
struct Clock {
    start: Instant,
    /// Engine seconds per wall second.
    speedup: f64,
}

/// Where a conversion would overflow: a year from now, past any step the validated
/// flags allow (the bounds on `--speedup` and the profile keep that case unreachable;
/// this only keeps the driver from panicking if they ever did not).
const FAR: Duration = Duration::from_secs(365 * 24 * 3600);

impl Clock {
    fn engine_now(&self) -> Duration {
        Duration::try_from_secs_f64(self.start.elapsed().as_secs_f64() * self.speedup)
            .unwrap_or(Duration::MAX)
    }

    fn wall_at(&self, engine_time: Duration) -> Instant {
        Duration::try_from_secs_f64(engine_time.as_secs_f64() / self.speedup)
            .ok()
            .and_then(|d| self.start.checked_add(d))
            .unwrap_or_else(|| Instant::now() + FAR)
    }
}

/// The handlers' side of a driver. Cheap to clone. Commands are unbounded so that a
/// dropped request can send its abort from `Drop` without waiting; their number is
/// bounded by the requests in flight.
#[derive(Clone, Debug)]
pub struct DriverHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl DriverHandle {
    /// Starts a driver task for `engine`, running `speedup` times faster than real
    /// time. The task ends when every handle is gone. If it ever panics, its command
    /// channel closes: [`is_running`](Self::is_running) turns false (so `/health`
    /// answers 503), requests in flight end with an error, and the panic is logged.
    pub fn spawn(engine: Engine, speedup: f64) -> DriverHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = Driver {
            engine,
            clock: Clock {
                start: Instant::now(),
                speedup,
            },
            routes: HashMap::new(),
            lag: LagStats::new(),
            timeline: Duration::ZERO,
            last_stamp: Duration::ZERO,
        };
        let task = tokio::spawn(driver.run(rx));
        tokio::spawn(async move {
            if let Err(e) = task.await
                && e.is_panic()
            {
                let panic = e.into_panic();
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %why, "the engine driver stopped; /health answers 503");
            }
        });
        DriverHandle { tx }
    }

    /// Whether the driver still takes commands: false once it has stopped, whether
    /// every handle went away or it failed.
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Makes the driver panic, to test what its failure does to a replica.
    #[cfg(test)]
    pub fn crash(&self) {
        let _ = self.tx.send(Command::Crash);
    }

    /// Hands a request to the engine; its tokens and completion arrive on the returned
    /// channel. The caller must [`abort`](Self::abort) it if it stops listening early.
    pub async fn add(
        &self,
        request: NewRequest,
    ) -> Result<mpsc::UnboundedReceiver<EngineEvent>, SubmitError> {
        let (events, rx) = mpsc::unbounded_channel();
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Add {
                request,
                events,
                reply,
            })
            .map_err(|_| SubmitError::Stopped)?;
        answer.await.map_err(|_| SubmitError::Stopped)??;
        Ok(rx)
    }

    /// Cancels a request; its KV blocks and adapter slot are freed before the next step.
    pub fn abort(&self, id: RequestId) {
        // A stopped driver has nothing left to free.
        let _ = self.tx.send(Command::Abort { id });
    }

    /// The engine's counters, gauges and the driver's lag, as of now.
    pub async fn snapshot(&self) -> Option<Snapshot> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Command::Snapshot { reply }).ok()?;
        answer.await.ok()
    }
}

struct Driver {
    engine: Engine,
    clock: Clock,
    /// Where each live request's events go.
    routes: HashMap<RequestId, mpsc::UnboundedSender<EngineEvent>>,
    lag: LagStats,
    /// Engine time at which the next step starts: the last step's modelled end, or
    /// the wall-clock time at which an idle engine was woken.
    timeline: Duration,
    /// Latest arrival stamp handed to the engine, so stamps never go backwards.
    last_stamp: Duration,
}

impl Driver {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        loop {
            // Everything that arrived before this step may join it.
            loop {
                match rx.try_recv() {
                    Ok(cmd) => self.handle(cmd),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
            match self.engine.step(self.timeline) {
                StepResult::Ran(out) => {
                    self.timeline = out.end;
                    let deadline = self.clock.wall_at(out.end);
                    if !self.wait_until(&mut rx, deadline).await {
                        return;
                    }
                    let late = Instant::now().saturating_duration_since(deadline);
                    self.lag.steps_total += 1;
                    self.lag.step_modelled_seconds_total += out.duration.as_secs_f64();
                    self.lag.step_lag_seconds.observe(late.as_secs_f64());
                    self.deliver(out.events);
                }
                StepResult::Idle { wake_at } => {
                    let deadline = wake_at.map(|t| self.clock.wall_at(t));
                    let woke_by_timer = tokio::select! {
                        cmd = rx.recv() => match cmd {
                            Some(cmd) => {
                                self.handle(cmd);
                                false
                            }
                            None => return,
                        },
                        _ = sleep_until_opt(deadline) => true,
                    };
                    // Idle time is not modelled: the engine catches up with the wall.
                    self.timeline = self.timeline.max(self.clock.engine_now());
                    if woke_by_timer && let Some(t) = wake_at {
                        // Guard against rounding in the wall/engine conversion.
                        self.timeline = self.timeline.max(t);
                    }
                }
            }
        }
    }

    /// Sleeps until `deadline`, taking commands meanwhile. Returns false if every
    /// handle is gone (nobody is listening any more).
    async fn wait_until(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Command>,
        deadline: Instant,
    ) -> bool {
        if deadline <= Instant::now() {
            // Catching up (or sub-tick steps at a high speedup): don't sleep, but let
            // the handlers run between steps.
            tokio::task::yield_now().await;
            return true;
        }
        let sleep = tokio::time::sleep_until(deadline);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                biased;
                _ = &mut sleep => return true,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd),
                    None => return false,
                },
            }
        }
    }

    /// Engine time for an arrival or abort happening now, never before an earlier one.
    fn stamp(&mut self) -> Duration {
        self.last_stamp = self.last_stamp.max(self.clock.engine_now());
        self.last_stamp
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Add {
                request,
                events,
                reply,
            } => {
                let id = request.id;
                let now = self.stamp();
                let result = self.engine.add_request(request, now);
                if result.is_ok() {
                    self.routes.insert(id, events);
                }
                // If the handler has gone already, its guard's abort follows this command.
                let _ = reply.send(result);
            }
            Command::Abort { id } => {
                let now = self.stamp();
                self.engine.abort(id, now);
                self.routes.remove(&id);
            }
            #[cfg(test)]
            Command::Crash => panic!("driver crash requested by a test"),
            Command::Snapshot { reply } => {
                let _ = reply.send(Snapshot {
                    metrics: self.engine.metrics().clone(),
                    gauges: self.engine.gauges(),
                    lag: self.lag.clone(),
                });
            }
        }
    }

    fn deliver(&mut self, events: Vec<EngineEvent>) {
        for event in events {
            match event {
                EngineEvent::Token { id, .. } => {
                    let Some(tx) = self.routes.get(&id) else {
                        continue;
                    };
                    if tx.send(event).is_err() {
                        // The response is gone; free the request now rather than when
                        // its guard's abort arrives.
                        self.routes.remove(&id);
                        let now = self.stamp();
                        self.engine.abort(id, now);
                    }
                }
                EngineEvent::Finished { id, .. } => {
                    if let Some(tx) = self.routes.remove(&id) {
                        let _ = tx.send(event);
                    }
                }
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sim::engine::EngineConfig;
    use crate::sim::metrics::FinishReason;
    use crate::sim::profile::LatencyProfile;

    fn engine() -> Engine {
        let profile = LatencyProfile::builtin("h100-llama3-8b").unwrap();
        Engine::new(EngineConfig::from_profile(profile)).unwrap()
    }

    fn request(id: RequestId, output: usize) -> NewRequest {
        NewRequest {
            id,
            prompt: (0..64).collect(),
            output: (0..output as u32).collect(),
            finish_reason: FinishReason::Length,
            lora: None::<Arc<str>>,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_arrive_at_modelled_times_and_lag_is_counted() {
        let driver = DriverHandle::spawn(engine(), 1.0);
        let start = Instant::now();
        let mut rx = driver.add(request(1, 3)).await.unwrap();
        let mut tokens = 0;
        loop {
            match rx.recv().await.unwrap() {
                EngineEvent::Token { .. } => tokens += 1,
                EngineEvent::Finished { usage, .. } => {
                    assert_eq!(usage.completion_tokens, 3);
                    break;
                }
            }
        }
        assert_eq!(tokens, 3);
        // 18 ms frontend + a prefill step (~8.8 ms) + two decode steps (~6.9 ms each).
        let took = start.elapsed();
        assert!(took > Duration::from_millis(35), "{took:?}");
        assert!(took < Duration::from_millis(60), "{took:?}");
        let snap = driver.snapshot().await.unwrap();
        assert_eq!(snap.lag.steps_total, 3);
        assert_eq!(snap.gauges.num_requests_running, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn abort_frees_the_request_at_once() {
        let driver = DriverHandle::spawn(engine(), 1.0);
        let mut rx = driver.add(request(7, 1000)).await.unwrap();
        assert!(matches!(
            rx.recv().await.unwrap(),
            EngineEvent::Token { .. }
        ));
        driver.abort(7);
        let snap = driver.snapshot().await.unwrap();
        assert_eq!(snap.gauges.num_requests_running, 0);
        assert_eq!(snap.gauges.kv_cache_usage_perc, 0.0);
        assert_eq!(
            snap.metrics.request_success_total[2], 1,
            "counted as aborted"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_driver_that_panics_is_seen_stopped_and_refuses_work() {
        let driver = DriverHandle::spawn(engine(), 1.0);
        let mut rx = driver.add(request(1, 1000)).await.unwrap();
        assert!(driver.is_running());
        driver.crash();
        // The request in flight ends instead of hanging.
        while let Some(EngineEvent::Token { .. }) = rx.recv().await {}
        assert!(!driver.is_running());
        assert!(matches!(
            driver.add(request(2, 1)).await,
            Err(SubmitError::Stopped)
        ));
        assert!(driver.snapshot().await.is_none());
    }

    #[test]
    fn clock_conversions_saturate_instead_of_panicking() {
        let clock = Clock {
            start: Instant::now(),
            speedup: 1e-22,
        };
        assert!(clock.wall_at(Duration::from_millis(18)) > Instant::now());
        let fast = Clock {
            start: Instant::now(),
            speedup: f64::MAX,
        };
        let _ = fast.engine_now();
    }

    #[test]
    fn lag_renders_like_the_vllm_families() {
        let mut lag = LagStats::new();
        lag.steps_total = 2;
        lag.step_lag_seconds.observe(0.00025);
        lag.step_lag_seconds.observe(0.0025);
        let info = ReplicaInfo {
            model_name: "m\"1".into(),
            engine: 3,
            block_size: 16,
            num_gpu_blocks: 100,
            enable_prefix_caching: true,
            max_loras: 1,
        };
        let mut out = String::new();
        lag.render(&mut out, &info);
        let labels = r#"engine="3",model_name="m\"1""#;
        for line in [
            r#"igw_sim_step_lag_seconds_bucket{engine="3",le="0.0001",model_name="m\"1"} 0.0"#,
            r#"igw_sim_step_lag_seconds_bucket{engine="3",le="0.0005",model_name="m\"1"} 1.0"#,
            r#"igw_sim_step_lag_seconds_bucket{engine="3",le="+Inf",model_name="m\"1"} 2.0"#,
            &format!("igw_sim_step_lag_seconds_count{{{labels}}} 2.0"),
            &format!("igw_sim_step_lag_seconds_sum{{{labels}}} 0.00275"),
            &format!("igw_sim_steps_total{{{labels}}} 2.0"),
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line}:\n{out}");
        }
    }
}
