//! igw: an inference gateway toolkit.
//!
//! # Layout
//!
//! - [`sim`]: a vLLM-compatible model-server simulator. A time-abstract continuous
//!   batching engine ([`sim::engine`]) priced by a per-step latency model
//!   ([`sim::profile`]), served over HTTP by [`sim::server`] and run in virtual time by
//!   [`sim::calibrate`].
//! - [`api`]: wire types shared by every part (OpenAI request/response bodies).
//! - [`epp`]: the endpoint picker: endpoint state, requests, the pure scheduler and its
//!   plugins ([`epp::scheduler`]), and GIE's `EndpointPickerConfig` ([`epp::config`]);
//!   behind Envoy, the ext_proc plumbing ([`epp::extproc`]) and the body-based router
//!   ([`epp::bbr`]).
//! - [`bench`](mod@bench): the benchmark's pieces; [`bench::workload`] decides what
//!   requests it sends (ShareGPT, synthetic, shared-prefix, multi-turn sessions, LoRA
//!   traffic split), [`bench::des`] runs a pool of engines behind a router (the real
//!   EPP scheduler or a baseline) in virtual time, scrape lag included, and
//!   [`bench::recorder`] measures a stage; [`bench::scenario`], [`bench::plan`],
//!   [`bench::virtual_run`], [`bench::live`] and [`bench::report`] make `igw bench`.
//! - [`serve`](mod@serve): the HTTP serving loop with the limits a server facing
//!   clients needs (header, body and idle timeouts, a connection cap, a budget of
//!   buffered request bytes), used by the simulator in place of `axum::serve`.
//! - [`hash`]: hashers for maps keyed by content hashes, shared by the engine's block
//!   pool and the picker's prefix index.
//! - [`yaml`]: YAML errors in words for the person who wrote the file, and the line a
//!   semantic error is about, for every loader.
//!
//! The kubectl plugin will build on these modules; see ARCHITECTURE.md for the whole
//! map.

pub mod api;
pub mod bench;
pub mod epp;
pub mod hash;
pub mod serve;
pub mod sim;
pub mod yaml;
