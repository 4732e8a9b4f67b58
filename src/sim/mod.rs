//! The model-server simulator: a vLLM stand-in that needs no GPU.
//!
//! [`engine`] is a continuous-batching engine that never reads a clock: its driver
//! hands it the time. [`profile`] prices each engine step. [`server`] drives one engine
//! per replica with tokio's clock and speaks vLLM's HTTP API; [`calibrate`] drives it in
//! virtual time. [`tokens`] turns text into token ids and back; [`metrics`] holds the
//! engine's counters and histograms and renders them as vLLM's Prometheus text.

pub mod calibrate;
pub mod demo;
pub mod engine;
pub mod metrics;
pub mod options;
pub mod profile;
pub mod server;
pub mod tokens;
