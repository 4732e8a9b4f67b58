//! `igw sim serve`: vLLM's OpenAI-compatible HTTP API in front of the simulated engine.
//!
//! Each replica is an axum router plus one driver task that owns its [`Engine`]; the
//! handlers reach the engine only through the driver's command channel, so no lock is
//! held across an await and the engine stays synchronous and clock-free. [`serve`] runs
//! one replica on a listener until a shutdown signal; [`spawn`] binds and starts
//! several on consecutive ports and returns their addresses, which is what tests and
//! the benchmark use.
//!
//! Layout: [`config`] (what a replica is, and the CLI flags), `driver` (the engine
//! loop), `replica` (shared handler state: models, adapters, failure injection),
//! `generate` (the completion endpoints), `job` (checks and output plans of every
//! choice), `choice` (one choice: its index, presentation, usage), `tools`
//! (`response_format`, `tools`, `tool_choice`), `structured` (JSON from a schema),
//! `logprobs` (seeded log probabilities), `prompt` (length checks before tokenizing,
//! heavy work off the runtime), `stream` (a running sequence and its in-flight
//! guard), `sse` (streamed responses), `tokenize` (`/tokenize`, `/detokenize`,
//! render, `/version`), `embed` (`/v1/embeddings`), `admin` (models, adapters,
//! health, metrics), `error` (vLLM error bodies).
//!
//! [`Engine`]: crate::sim::engine::Engine

mod admin;
mod choice;
pub mod config;
mod driver;
mod embed;
mod error;
mod generate;
mod job;
mod logprobs;
mod prompt;
mod replica;
mod sse;
mod stream;
mod structured;
mod tokenize;
mod tools;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_LORA_ADAPTERS, Listen, LoraModule, MAX_LORA_NAME_BYTES,
    MAX_LORA_PATH_BYTES, Runner, ServeOptions, SimServerConfig,
};
pub use driver::{LAG_BUCKETS, LagStats};
pub use error::ApiError;

use replica::Replica;

/// Serves one replica on `listener` until `shutdown` completes, then finishes the
/// requests in flight. Fails at once if the configuration is invalid. Connections
/// are served by [`crate::serve`] under `config.limits`.
pub async fn serve<F>(listener: TcpListener, config: SimServerConfig, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let port = listener.local_addr()?.port();
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    let server = crate::serve::Server::new(config.limits.clone())
        .map_err(|e| invalid(e.to_string()))?
        .with_rejection(|e| ApiError::from(e).into_response());
    warm_up_tokenizer().await;
    let replica = Replica::start(config, port, server.stats()).map_err(invalid)?;
    let app = router(Arc::new(replica));
    server.serve(listener, app, shutdown).await
}

/// Replicas started by [`spawn`]. Dropping it shuts them down too, without waiting.
#[derive(Debug)]
pub struct SimServer {
    addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<()>,
    tasks: Vec<JoinHandle<io::Result<()>>>,
}

impl SimServer {
    /// Where each replica listens, in replica order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// `http://addr` of each replica.
    pub fn base_urls(&self) -> Vec<String> {
        self.addrs.iter().map(|a| format!("http://{a}")).collect()
    }

    /// Stops accepting, lets the requests in flight finish, and waits for every
    /// replica to stop. Returns the first server error, if any.
    pub async fn shutdown(self) -> io::Result<()> {
        let _ = self.shutdown.send(());
        let mut result = Ok(());
        for task in self.tasks {
            let r = task.await.unwrap_or_else(|e| Err(io::Error::other(e)));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

/// Builds the tokenizer's vocabulary off the async workers.
async fn warm_up_tokenizer() {
    if let Err(e) = tokio::task::spawn_blocking(crate::sim::tokens::warm_up).await {
        tracing::warn!(error = %e, "tokenizer warm-up failed; the first request will build it");
    }
}

/// Binds `listen.replicas` servers and starts them, each with its own engine. Replica
/// `i` gets `engine_index = i` (its `engine` metric label) and an engine seed offset by
/// `i`, so replicas are independent but reproducible.
pub async fn spawn(config: SimServerConfig, listen: Listen) -> io::Result<SimServer> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if listen.replicas == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "at least one replica is needed",
        ));
    }
    // Before binding, so no client can connect while the vocabulary is being built.
    warm_up_tokenizer().await;
    let (shutdown, signal) = watch::channel(());
    let mut listeners = Vec::with_capacity(listen.replicas);
    for i in 0..listen.replicas {
        let port = if listen.port == 0 {
            0
        } else {
            u16::try_from(usize::from(listen.port) + i).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("replica {i} would listen past port 65535"),
                )
            })?
        };
        let listener = TcpListener::bind((listen.host.as_str(), port)).await?;
        listeners.push(listener);
    }
    let mut addrs = Vec::with_capacity(listeners.len());
    let mut tasks = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.into_iter().enumerate() {
        addrs.push(listener.local_addr()?);
        let mut c = config.clone();
        c.engine_index = i;
        c.engine.seed = c.engine.seed.wrapping_add(i as u64);
        let mut signal = signal.clone();
        // Resolves on `shutdown()` and when the handle is dropped.
        let stop = async move {
            let _ = signal.changed().await;
        };
        tasks.push(tokio::spawn(serve(listener, c, stop)));
    }
    Ok(SimServer {
        addrs,
        shutdown,
        tasks,
    })
}

fn router(replica: Arc<Replica>) -> Router {
    let identity: Arc<[(HeaderName, HeaderValue)]> = replica.identity_headers.clone().into();
    let limit = replica.config.max_body_bytes;
    // As vLLM registers routes by the model's tasks: a pooling model serves no
    // generation, a generative one no embeddings (both answer 404 then).
    let tasks = match replica.config.runner {
        config::Runner::Generate => Router::new()
            .route("/v1/completions", post(generate::completions))
            .route("/v1/chat/completions", post(generate::chat_completions)),
        config::Runner::Pooling => Router::new().route("/v1/embeddings", post(embed::embeddings)),
    };
    tasks
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .route("/v1/completions/render", post(tokenize::render_completion))
        .route("/v1/chat/completions/render", post(tokenize::render_chat))
        .route("/version", get(tokenize::version))
        .route("/v1/models", get(admin::models))
        .route("/v1/load_lora_adapter", post(admin::load_lora_adapter))
        .route("/v1/unload_lora_adapter", post(admin::unload_lora_adapter))
        .route("/health", get(admin::health))
        .route("/metrics", get(admin::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            limit,
            refuse_declared_over_limit,
        ))
        .layer(axum::middleware::map_response_with_state(
            identity,
            add_identity_headers,
        ))
        .with_state(replica)
}

/// 413 before reading a body whose `Content-Length` is past the limit (the body
/// limit alone would read up to it first, or wait for a body that never comes).
async fn refuse_declared_over_limit(
    State(limit): State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::body_too_large().into_response();
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::not_found("Not Found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed",
    )
}

async fn add_identity_headers(
    State(headers): State<Arc<[(HeaderName, HeaderValue)]>>,
    mut res: Response,
) -> Response {
    for (name, value) in headers.iter() {
        res.headers_mut().insert(name.clone(), value.clone());
    }
    res
}
