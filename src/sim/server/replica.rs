//! The state one replica's handlers share: its configuration, the adapters it has
//! loaded, its request counter, its failure-injection generator and its driver.
//!
//! Locks here are short and synchronous (std `RwLock`/`Mutex`), never held across an
//! await. Model resolution and failure rolls live here because they read that state;
//! the request flow itself is in `generate`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderName, HeaderValue, StatusCode};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::config::{LoraModule, MAX_LORA_NAME_BYTES, MAX_LORA_PATH_BYTES, SimServerConfig};
use super::driver::DriverHandle;
use super::error::ApiError;
use crate::api::openai::{ModelCard, ModelList};
use crate::serve::ServeStats;
use crate::sim::engine::{Engine, RequestId};

/// A loaded adapter.
#[derive(Clone, Debug)]
pub struct Adapter {
    pub name: Arc<str>,
    pub path: String,
    /// Unix seconds at load.
    pub created: u64,
}

/// What a request's `model` field resolved to.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The name to echo in responses: the requested one, or the first served name.
    pub name: String,
    /// The adapter, for adapter requests.
    pub lora: Option<Arc<str>>,
}

/// Shared by every handler of one replica.
pub struct Replica {
    pub config: SimServerConfig,
    served_names: Vec<String>,
    /// In load order, as `/v1/models` lists them.
    adapters: RwLock<Vec<Adapter>>,
    next_id: AtomicU64,
    failures: Mutex<StdRng>,
    pub driver: DriverHandle,
    /// `x-inference-*` headers added to every response.
    pub identity_headers: Vec<(HeaderName, HeaderValue)>,
    /// Unix seconds at start, the `created` of base model cards.
    started: u64,
    /// The HTTP server's counters, for `/metrics`.
    pub http: Arc<ServeStats>,
}

impl Replica {
    /// Builds the replica and starts its driver. Must run inside a tokio runtime.
    pub fn start(
        config: SimServerConfig,
        port: u16,
        http: Arc<ServeStats>,
    ) -> Result<Replica, String> {
        config.validate()?;
        let engine = Engine::new(config.engine.clone())?;
        let driver = DriverHandle::spawn(engine, config.speedup);
        let now = unix_secs();
        let adapters = config
            .lora_modules
            .iter()
            .map(|m: &LoraModule| Adapter {
                name: m.name.as_str().into(),
                path: m.path.clone(),
                created: now,
            })
            .collect();
        Ok(Replica {
            served_names: config.served_names(),
            adapters: RwLock::new(adapters),
            next_id: AtomicU64::new(0),
            // Keyed by replica so that replicas fail independently.
            failures: Mutex::new(StdRng::seed_from_u64(
                config.engine.seed ^ 0xfa11_u64.wrapping_mul(config.engine_index as u64 + 1),
            )),
            driver,
            identity_headers: identity_headers(&config, port),
            started: now,
            http,
            config,
        })
    }

    /// The first served name: the `model_name` label of every metric.
    pub fn display_name(&self) -> &str {
        &self.served_names[0]
    }

    /// A fresh engine request id.
    pub fn next_request_id(&self) -> RequestId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Resolves a request's `model`: a served name, a loaded adapter, or (absent) the
    /// base model, as vLLM does. Anything else is vLLM's 404.
    pub fn resolve(&self, requested: Option<&str>) -> Result<Resolved, ApiError> {
        let name = match requested {
            None | Some("") => {
                return Ok(Resolved {
                    name: self.display_name().to_string(),
                    lora: None,
                });
            }
            Some(n) => n,
        };
        if self.served_names.iter().any(|s| s == name) {
            return Ok(Resolved {
                name: name.to_string(),
                lora: None,
            });
        }
        let adapters = self.adapters.read().unwrap_or_else(PoisonError::into_inner);
        match adapters.iter().find(|a| &*a.name == name) {
            Some(a) => Ok(Resolved {
                name: name.to_string(),
                lora: Some(a.name.clone()),
            }),
            None => Err(
                ApiError::not_found(format!("The model `{name}` does not exist."))
                    .with_param("model"),
            ),
        }
    }

    /// `GET /v1/models`: every served name, then every adapter (sim-facts §1.3).
    pub fn model_list(&self) -> ModelList {
        let base = &self.config.model;
        let mut data: Vec<ModelCard> = self
            .served_names
            .iter()
            .map(|name| ModelCard {
                id: name.clone(),
                object: "model".into(),
                created: self.started,
                owned_by: "vllm".into(),
                root: Some(base.clone()),
                parent: None,
                max_model_len: Some(self.config.engine.max_model_len),
            })
            .collect();
        let adapters = self.adapters.read().unwrap_or_else(PoisonError::into_inner);
        data.extend(adapters.iter().map(|a| ModelCard {
            id: a.name.to_string(),
            object: "model".into(),
            created: a.created,
            owned_by: "vllm".into(),
            root: Some(a.path.clone()),
            parent: Some(self.display_name().to_string()),
            max_model_len: None,
        }));
        ModelList {
            object: "list".into(),
            data,
        }
    }

    /// `POST /v1/load_lora_adapter`, with vLLM's checks and messages
    /// (`vllm/entrypoints/openai/serving_models.py`).
    pub fn load_adapter(&self, name: &str, path: &str) -> Result<String, ApiError> {
        if name.is_empty() || path.is_empty() {
            return Err(invalid_input(
                "Both 'lora_name' and 'lora_path' must be provided.",
            ));
        }
        for (param, value, max) in [
            ("lora_name", name, MAX_LORA_NAME_BYTES),
            ("lora_path", path, MAX_LORA_PATH_BYTES),
        ] {
            if value.len() > max {
                return Err(invalid_input(format!(
                    "'{param}' has {} bytes; at most {max} are accepted.",
                    value.len()
                ))
                .with_param(param));
            }
        }
        let mut adapters = self
            .adapters
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if adapters.iter().any(|a| &*a.name == name) {
            return Err(invalid_input(format!(
                "The lora adapter '{name}' has already been loaded."
            )));
        }
        if self.served_names.iter().any(|s| s == name) {
            // vLLM does not check this, but such an adapter could never be addressed.
            return Err(invalid_input(format!(
                "'{name}' is the name of a served model, not of an adapter."
            )));
        }
        let max = self.config.max_lora_adapters;
        if adapters.len() >= max {
            return Err(invalid_input(format!(
                "Cannot load the lora adapter '{name}': {} adapters are loaded, the most this \
                 server holds (--max-lora-adapters {max}). Unload one first.",
                adapters.len()
            ))
            .with_param("lora_name"));
        }
        adapters.push(Adapter {
            name: name.into(),
            path: path.to_string(),
            created: unix_secs(),
        });
        tracing::info!(lora_name = name, lora_path = path, "loaded LoRA adapter");
        Ok(format!(
            "Success: LoRA adapter '{name}' added successfully."
        ))
    }

    /// `POST /v1/unload_lora_adapter`. Requests already running on the adapter finish.
    pub fn unload_adapter(&self, name: &str, has_int_id: bool) -> Result<String, ApiError> {
        if name.is_empty() && !has_int_id {
            return Err(invalid_input(
                "either 'lora_name' and 'lora_int_id' needs to be provided.",
            ));
        }
        let mut adapters = self
            .adapters
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(i) = adapters.iter().position(|a| &*a.name == name) else {
            return Err(
                ApiError::not_found(format!("The lora adapter '{name}' cannot be found."))
                    .with_param("lora_name"),
            );
        };
        adapters.remove(i);
        tracing::info!(lora_name = name, "unloaded LoRA adapter");
        Ok(format!(
            "Success: LoRA adapter '{name}' removed successfully."
        ))
    }

    /// Rolls failure injection (`--failure-rate`): on a hit, one of llm-d-inference-sim's
    /// error types with its status (sim-facts §1.9).
    pub fn roll_failure(&self) -> Option<ApiError> {
        let rate = self.config.failure_rate;
        if rate <= 0.0 {
            return None;
        }
        let mut rng = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if rng.random_range(0.0..100.0) >= rate {
            return None;
        }
        let model = self.display_name();
        let len = self.config.engine.max_model_len;
        let e = match rng.random_range(0..6u32) {
            0 => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Rate limit reached for {model} in organization org-xxx on requests per \
                     min (RPM): Limit 3, Used 3, Requested 1."
                ),
            ),
            1 => ApiError::new(StatusCode::UNAUTHORIZED, "Incorrect API key provided."),
            2 => ApiError::bad_request(format!(
                "This model's maximum context length is {len} tokens. However, your messages \
                 resulted in {} tokens.",
                len + len / 10 + 1
            ))
            .with_param("messages"),
            3 => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is overloaded or not ready yet.",
            ),
            4 => ApiError::bad_request("Invalid request: missing required parameter 'model'.")
                .with_param("model"),
            _ => ApiError::not_found(format!("The model '{model}-nonexistent' does not exist"))
                .with_param("model"),
        };
        Some(e)
    }
}

fn invalid_input(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message).with_kind("InvalidUserInput")
}

/// `x-inference-pod`/`-port` when the pod name is known, `x-inference-namespace` when
/// the namespace is; values that are not valid header text are skipped.
fn identity_headers(config: &SimServerConfig, port: u16) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    let mut add = |name: &'static str, value: &str| match HeaderValue::from_str(value) {
        Ok(v) => out.push((HeaderName::from_static(name), v)),
        Err(_) => tracing::warn!(header = name, value, "not a valid header value; not sent"),
    };
    if let Some(pod) = &config.pod_name {
        add("x-inference-pod", pod);
        add("x-inference-port", &port.to_string());
    }
    if let Some(ns) = &config.pod_namespace {
        add("x-inference-namespace", ns);
    }
    out
}

/// Seconds since the Unix epoch (0 if the system clock is before it).
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
