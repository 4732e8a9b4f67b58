//! The endpoint picker (EPP): for each inference request, choose the model-server
//! endpoint that will serve it fastest.
//!
//! [`endpoint`] holds what the picker knows about each endpoint (identity, last
//! scraped metrics, the load the picker itself has sent), and [`request`] what it
//! knows about a request. The [`scheduler`] works only on those values: it does no I/O
//! and reads no clock, so the live gateway and the virtual-time benchmark run the same
//! decision code. [`config`] reads GIE's `EndpointPickerConfig` and builds it.
//!
//! The data layer feeds it. [`discovery`] says which endpoints exist (a pool file or
//! `--endpoints`); [`scrape`] polls each one's `/metrics` every 50 ms, reading the text
//! with [`prom_text`] and mapping engine-specific names with [`metric_mapping`]; it
//! publishes one [`datastore`] snapshot per round, which the request path reads without
//! locking. [`saturation`] judges from a snapshot's candidates whether the pool is
//! full; [`clock`] is the time source the background tasks take, [`duration`] reads
//! Go-style durations.
//!
//! [`lifecycle`] is the request path every transport shares (context, the pure
//! decision core, the director, the decision that owns the in-flight booking, usage);
//! [`pool`] gathers one pool's datastore, scraper, director and metric mapping into
//! one value. The transports: [`proxy`] (the standalone HTTP gateway); [`admin`] and
//! [`metrics`] the operator port; [`run`] wires `igw epp run`.
//!
//! Behind Envoy, [`envoy`] is the picker's ext_proc server; [`extproc`] holds the
//! ext_proc plumbing (message codec, gRPC serving
//! with TLS and drain, gRPC health) the picker and the body-based router share;
//! [`bbr`] is that router, which copies a body's `model` into a routing header.

pub mod admin;
pub mod bbr;
pub mod clock;
pub mod config;
pub mod datastore;
pub mod discovery;
pub mod duration;
pub mod endpoint;
pub mod envoy;
pub mod error;
pub mod extproc;
pub mod lifecycle;
pub mod metric_mapping;
pub mod metrics;
pub mod parser;
pub mod pool;
pub mod prom_text;
pub mod proxy;
pub mod request;
pub mod run;
pub mod saturation;
pub mod scheduler;
pub mod scrape;
