//! The live client: sends one stage's planned requests on schedule to OpenAI-compatible
//! base URLs and measures each streamed response.
//!
//! Open loop, as inference-perf and LPG send: request `i` leaves at `at / speedup`
//! wall seconds after the stage's start whatever the earlier ones are doing, so a slow
//! server meets the offered load instead of slowing the client down. How late each
//! request actually left is measured (the send-schedule lag) so a client that cannot
//! keep up shows in the numbers instead of quietly lowering the load. The one
//! exception is a chat session's next turn: it also waits for the reply to the turn
//! before it ([`StagePlan::predecessors`]), and its lag counts from whichever came
//! later.
//!
//! Every request streams (`stream: true`, `ignore_eos: true`, usage included) and is
//! read chunk by chunk ([`super::sse`]): TTFT at the first non-empty token, gaps
//! between token chunks as ITL, done at `[DONE]` or the end of the body. Nothing on
//! this path panics: a refused connection, an HTTP error or a broken stream becomes a
//! labelled failure (`"503 - Service Unavailable"`, `"connection - refused"`,
//! `"timeout"`).
//!
//! Times given back are in pool time (wall × `speedup`), from the stage's start.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use reqwest::Url;
use tokio::sync::watch;
use tokio::time::Instant;

use super::sse::{Event, LineBuffer, parse_data};
use crate::bench::interrupt::Interrupt;
use crate::bench::plan::StagePlan;
use crate::bench::recorder::{
    Failure, RequestLifecycle, RequestSample, Slo, StageRecorders, error_message,
};
use crate::bench::wire;
use crate::bench::workload::{PromptText, WorkloadRequest};
use crate::epp::lifecycle::headers::SERVED as SERVED_HEADER;

/// How long a connection may take to open, wall time; a pool on loopback answers in
/// microseconds, so this only bounds a target that is down or unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest silence inside a response, wall time, before it counts as `timeout`
/// (the gateway's own response timeout is 10 minutes).
const READ_TIMEOUT: Duration = Duration::from_secs(600);
/// The latest a request is scheduled, wall seconds from the stage's start; keeps the
/// deadline arithmetic far from overflow for absurd plans.
const MAX_OFFSET_SECONDS: f64 = 1e7;
/// The sender sleeps until this long before a request is due and spins the rest: a
/// thread's sleep overshoots by the kernel's timer slack (50 µs by default).
const SPIN_BELOW: Duration = Duration::from_micros(60);
/// The longest the sender sleeps before looking at the interrupt again.
const INTERRUPT_POLL: Duration = Duration::from_millis(50);

/// A client for one job: pooled keep-alive connections, no proxy from the
/// environment (the targets are named explicitly), Nagle off so small requests leave
/// at once.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .build()?)
}

/// Where a stage's requests go: the bases are used in turn (request `i` to base
/// `i % n`), so one base is a gateway or a target and several spread the load
/// evenly without a router.
#[derive(Clone, Debug)]
pub struct Destination {
    completions: Vec<Url>,
    chat: Vec<Url>,
}

impl Destination {
    /// `bases` are `http://host:port` (with or without a trailing `/` or a `/v1`).
    pub fn new(bases: &[String]) -> anyhow::Result<Destination> {
        anyhow::ensure!(!bases.is_empty(), "no URL to send requests to");
        let mut completions = Vec::with_capacity(bases.len());
        let mut chat = Vec::with_capacity(bases.len());
        for base in bases {
            let trimmed = base.trim_end_matches('/');
            let trimmed = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
            let parse = |path: &str| {
                Url::parse(&format!("{trimmed}{path}"))
                    .map_err(|e| anyhow::anyhow!("`{base}` is not a base URL: {e}"))
            };
            completions.push(parse("/v1/completions")?);
            chat.push(parse("/v1/chat/completions")?);
        }
        Ok(Destination { completions, chat })
    }

    fn url(&self, i: usize, prompt: &PromptText) -> &Url {
        let urls = match prompt {
            PromptText::Text(_) => &self.completions,
            PromptText::Chat(_) => &self.chat,
        };
        &urls[i % urls.len()]
    }
}

/// What one request measured.
#[derive(Clone, Debug)]
pub struct Sent {
    /// In pool time from the stage's start.
    pub sample: RequestSample,
    /// Gaps between consecutive token chunks, pool time.
    pub itl: Vec<Duration>,
    /// The gateway's `x-gateway-destination-endpoint-served`, when it sent one.
    pub served_by: Option<String>,
    /// Actual send − scheduled send, wall time.
    pub lag: Duration,
    /// The LoRA adapter the request named, if any.
    pub adapter: Option<String>,
}

/// One stage as the client saw it.
#[derive(Clone, Debug)]
pub struct StageOutcome {
    /// One per request sent, in plan order: every planned request unless the run was
    /// interrupted, then the leading ones sent before it.
    pub requests: Vec<Sent>,
    /// From the stage's start to the last response's end, wall time.
    pub wall: Duration,
}

impl StageOutcome {
    /// The stage's measurements with inference-perf's definitions, over all requests
    /// and per LoRA adapter.
    pub fn recorders(&self, slo: &Slo) -> StageRecorders {
        let mut recorders = StageRecorders::new(slo.clone());
        for s in &self.requests {
            let adapter = s.adapter.as_deref();
            recorders.record(&s.sample, adapter);
            if s.sample.error.is_none() {
                for &gap in &s.itl {
                    recorders.record_itl(gap, adapter);
                }
            }
        }
        recorders
    }

    /// Every request's per-request record for stage `stage`: its token chunks' times
    /// are the first token's followed by the recorded gaps.
    pub fn per_request(&self, stage: usize) -> Vec<RequestLifecycle> {
        self.requests
            .iter()
            .map(|s| {
                let times: Vec<Duration> = s
                    .sample
                    .first_token
                    .map(|first| {
                        std::iter::once(first)
                            .chain(s.itl.iter().scan(first, |t, gap| {
                                *t += *gap;
                                Some(*t)
                            }))
                            .collect()
                    })
                    .unwrap_or_default();
                RequestLifecycle::new(stage, &s.sample, &times, s.adapter.as_deref())
            })
            .collect()
    }

    /// Requests served by each of `endpoints` (addresses as the gateway names them,
    /// `ip:port`), in that order; responses naming none of them are not counted.
    pub fn per_endpoint(&self, endpoints: &[String]) -> Vec<u64> {
        let mut counts = vec![0u64; endpoints.len()];
        for s in &self.requests {
            if let Some(i) = s
                .served_by
                .as_deref()
                .and_then(|a| endpoints.iter().position(|e| e == a))
            {
                counts[i] += 1;
            }
        }
        counts
    }

    /// The send-schedule lag of every request, microseconds of wall time.
    pub fn lag_micros(&self) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .expect("static histogram bounds are valid");
        for s in &self.requests {
            h.saturating_record(s.lag.as_micros().clamp(1, u128::from(u64::MAX)) as u64);
        }
        h
    }
}

/// The fixed part of every request of a stage.
struct Shared {
    client: reqwest::Client,
    destination: Destination,
    model: String,
    speedup: f64,
    start: Instant,
    bar: ProgressBar,
    /// Per request, when its response ended (`None` until then): what the session
    /// turns waiting for it ([`StagePlan::predecessors`]) watch.
    ended: Vec<watch::Sender<Option<Instant>>>,
}

/// Marks request `i` ended when dropped, however its task ends, so no session turn
/// waits for it forever.
struct EndedOnDrop<'a>(&'a watch::Sender<Option<Instant>>);

impl Drop for EndedOnDrop<'_> {
    fn drop(&mut self) {
        self.0.send_replace(Some(Instant::now()));
    }
}

/// Sends request `i` at `due`, or, if it waits for request `after`, once that one has
/// ended if that is later (the lag is then measured from that moment).
async fn send_in_turn(
    shared: &Shared,
    i: usize,
    after: Option<usize>,
    request: &WorkloadRequest,
    due: Instant,
) -> Sent {
    let _ended = EndedOnDrop(&shared.ended[i]);
    let mut due = due;
    if let Some(before) = after.and_then(|a| shared.ended.get(a)) {
        let mut ended = before.subscribe();
        // The sender lives in `shared`, so the channel cannot close while we wait.
        if let Ok(at) = ended.wait_for(Option::is_some).await
            && let Some(at) = *at
            && at > due
        {
            due = at;
        }
    }
    send_one(shared, i, request, due).await
}

/// Sends `plan` on schedule (`at / speedup` wall seconds after the call) and waits for
/// every response. `model` is named by requests without a LoRA adapter. Once
/// `interrupt` fires, nothing more is sent; the requests already sent are awaited.
pub async fn run_stage(
    client: &reqwest::Client,
    destination: &Destination,
    model: &str,
    plan: &StagePlan,
    speedup: f64,
    bar: &ProgressBar,
    interrupt: &Interrupt,
) -> StageOutcome {
    let start = Instant::now();
    let shared = Arc::new(Shared {
        client: client.clone(),
        destination: destination.clone(),
        model: model.to_string(),
        speedup,
        start,
        bar: bar.clone(),
        ended: (0..plan.requests.len())
            .map(|_| watch::Sender::new(None))
            .collect(),
    });
    let mut predecessors = plan.predecessors().into_iter();
    let schedule: Vec<(Duration, Option<usize>, Arc<WorkloadRequest>)> = plan
        .requests
        .iter()
        .map(|p| {
            let offset = (p.at.as_secs_f64() / speedup).clamp(0.0, MAX_OFFSET_SECONDS);
            let after = predecessors.next().flatten();
            (Duration::from_secs_f64(offset), after, p.request.clone())
        })
        .collect();
    // The schedule is kept by a thread of its own: the OS sleeps it to within tens of
    // microseconds, where the runtime's timer wheel rounds every deadline up to the
    // next millisecond.
    let runtime = tokio::runtime::Handle::current();
    let sender = {
        let shared = shared.clone();
        let interrupt = interrupt.clone();
        tokio::task::spawn_blocking(move || {
            let wall_start = start.into_std();
            let mut tasks = Vec::with_capacity(schedule.len());
            'sending: for (i, (offset, after, request)) in schedule.into_iter().enumerate() {
                let due = wall_start + offset;
                // Long gaps are slept in slices, so an interrupt is seen promptly.
                loop {
                    if interrupt.stops(i) {
                        break 'sending;
                    }
                    let now = std::time::Instant::now();
                    if due <= now + SPIN_BELOW {
                        break;
                    }
                    std::thread::sleep((due - now - SPIN_BELOW).min(INTERRUPT_POLL));
                }
                while std::time::Instant::now() < due {
                    std::hint::spin_loop();
                }
                let shared = shared.clone();
                let due = Instant::from_std(due);
                tasks
                    .push(runtime.spawn(async move {
                        send_in_turn(&shared, i, after, &request, due).await
                    }));
            }
            tasks
        })
    };
    // The sender only sleeps and spawns; should it ever fail, the stage reports
    // no requests rather than panicking.
    let tasks: Vec<_> = sender.await.unwrap_or_default();
    let mut requests = Vec::with_capacity(tasks.len());
    for (task, p) in tasks.into_iter().zip(&plan.requests) {
        requests.push(task.await.unwrap_or_else(|_| Sent {
            sample: failed(
                p.at,
                p.at,
                Failure::other("client error", "the request task failed"),
            ),
            itl: Vec::new(),
            served_by: None,
            lag: Duration::ZERO,
            adapter: p.request.lora.clone(),
        }));
    }
    StageOutcome {
        requests,
        wall: start.elapsed(),
    }
}

/// Sends request `i` and reads its stream to the end.
async fn send_one(shared: &Shared, i: usize, r: &WorkloadRequest, due: Instant) -> Sent {
    let payload = wire::body(&shared.model, r);
    let url = shared.destination.url(i, &r.prompt).clone();
    let sent = Instant::now();
    let mut m = Measure::new(shared, sent, r.prompt_tokens.len() as u64);
    let request = shared
        .client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(payload);
    match request.send().await {
        Err(e) => m.error = Some(transport_failure(&e)),
        Ok(resp) => {
            m.served_by = resp
                .headers()
                .get(SERVED_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let status = resp.status();
            if status.is_success() {
                read_stream(resp, &mut m).await;
            } else {
                // The body says why (it also drains the connection for reuse).
                let body = error_body(resp).await;
                m.error = Some(Failure::http(status.as_u16(), &body));
            }
        }
    }
    let done = Instant::now();
    shared.bar.inc(1);
    m.finish(done, due, r.lora.clone())
}

/// Bytes of a body that is not an event stream quoted in its failure.
const GARBAGE_QUOTE: usize = 120;

/// Reads the SSE body into `m`. A 200 answer whose body holds no OpenAI stream event
/// at all is a failure of its own kind (`invalid response`), not a success with no
/// tokens; one that ends without `data: [DONE]` is `unfinished`.
async fn read_stream(resp: reqwest::Response, m: &mut Measure<'_>) {
    let mut body = resp.bytes_stream();
    let mut lines = LineBuffer::default();
    let mut events = 0usize;
    let mut head: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        let now = Instant::now();
        let bytes = match chunk {
            Ok(b) => b,
            Err(e) => {
                m.error = Some(if e.is_timeout() {
                    Failure::timeout()
                } else {
                    Failure::connection(format!("the response stream broke: {}", chain(&e)))
                });
                return;
            }
        };
        if head.len() < GARBAGE_QUOTE {
            let room = GARBAGE_QUOTE - head.len();
            head.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        let mut finished = false;
        lines.push(&bytes, |data| {
            if finished {
                return;
            }
            let event = parse_data(data);
            if !matches!(event, Event::Other) {
                events += 1;
            }
            match event {
                Event::Done => finished = true,
                Event::Chunk(c) => {
                    if c.has_token {
                        m.token(now);
                    }
                    if let Some(u) = c.usage {
                        m.usage = Some(u);
                    }
                }
                Event::Error => {
                    m.error.get_or_insert_with(|| {
                        Failure::other(
                            "stream error",
                            error_message(&String::from_utf8_lossy(data)),
                        )
                    });
                }
                Event::Other => {}
            }
        });
        if finished {
            return;
        }
    }
    if m.error.is_none() {
        m.error = Some(if events == 0 {
            Failure::other(
                "invalid response",
                format!(
                    "status 200, but the body is not an OpenAI event stream: {:?}",
                    String::from_utf8_lossy(&head)
                ),
            )
        } else {
            Failure::other(
                "unfinished",
                "the event stream ended without `data: [DONE]`",
            )
        });
    }
}

/// One request's state while it streams.
struct Measure<'a> {
    shared: &'a Shared,
    sent: Instant,
    prompt_tokens: u64,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
    tokens: u64,
    itl: Vec<Duration>,
    usage: Option<super::sse::Usage>,
    served_by: Option<String>,
    error: Option<Failure>,
}

impl<'a> Measure<'a> {
    fn new(shared: &'a Shared, sent: Instant, prompt_tokens: u64) -> Measure<'a> {
        Measure {
            shared,
            sent,
            prompt_tokens,
            first_token: None,
            last_token: None,
            tokens: 0,
            itl: Vec::new(),
            usage: None,
            served_by: None,
            error: None,
        }
    }

    fn token(&mut self, now: Instant) {
        self.tokens += 1;
        match self.last_token {
            None => self.first_token = Some(now),
            Some(last) => self
                .itl
                .push(self.pool(now.saturating_duration_since(last))),
        }
        self.last_token = Some(now);
    }

    /// A wall duration in pool time.
    fn pool(&self, wall: Duration) -> Duration {
        Duration::try_from_secs_f64(wall.as_secs_f64() * self.shared.speedup)
            .unwrap_or(Duration::MAX)
    }

    /// A wall instant as pool time since the stage's start.
    fn at(&self, t: Instant) -> Duration {
        self.pool(t.saturating_duration_since(self.shared.start))
    }

    /// The request's result; `adapter` is the LoRA adapter it named.
    fn finish(self, done: Instant, due: Instant, adapter: Option<String>) -> Sent {
        let usage = self.usage.unwrap_or_default();
        let sample = RequestSample {
            scheduled: self.at(due),
            sent: self.at(self.sent),
            first_token: self.first_token.map(|t| self.at(t)),
            done: self.at(done),
            prompt_tokens: usage.prompt_tokens.unwrap_or(self.prompt_tokens),
            output_tokens: usage.completion_tokens.unwrap_or(self.tokens),
            cached_tokens: usage.cached_tokens.unwrap_or(0),
            error: self.error,
        };
        Sent {
            sample,
            itl: self.itl,
            served_by: self.served_by,
            lag: self.sent.saturating_duration_since(due),
            adapter,
        }
    }
}

/// A request that never got going, at pool times `sent` and `done`.
fn failed(sent: Duration, done: Duration, failure: Failure) -> RequestSample {
    RequestSample {
        scheduled: sent,
        sent,
        first_token: None,
        done,
        prompt_tokens: 0,
        output_tokens: 0,
        cached_tokens: 0,
        error: Some(failure),
    }
}

/// Bytes of an error answer's body kept for its message; the rest is not read.
const ERROR_BODY_LIMIT: usize = 16 * 1024;

/// The start of an error answer's body (empty if it cannot be read).
async fn error_body(resp: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = ERROR_BODY_LIMIT - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == ERROR_BODY_LIMIT {
            break;
        }
    }
    body
}

/// Why a request got no response: a timeout, a connection failure, or else.
fn transport_failure(e: &reqwest::Error) -> Failure {
    let timed_out = e.is_timeout()
        || sources(e).any(|err| {
            err.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        });
    if timed_out {
        Failure::timeout()
    } else if e.is_connect() || sources(e).any(|err| err.is::<std::io::Error>()) {
        Failure::connection(chain(e))
    } else {
        Failure::other("request error", chain(e))
    }
}

/// `e` and the errors under it, outermost first.
fn sources<'e>(
    e: &'e (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'e (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |err| err.source())
}

/// Every message in `e`'s chain, joined with `: ` (a message its parent already
/// repeats is left out).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    for err in sources(e) {
        let message = err.to_string();
        if !text.contains(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
    }
    text
}
