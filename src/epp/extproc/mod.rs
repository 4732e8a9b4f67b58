//! Envoy's external processing (ext_proc) plumbing shared by the EPP and BBR.
//!
//! [`codec`] reads and builds ext_proc messages (headers, mutations, 62,000-byte
//! streamed body chunks, immediate responses, `envoy.lb` metadata) with no I/O;
//! [`server`] serves tonic services on a listener with optional TLS and a graceful
//! drain; [`health`](mod@health) serves the gRPC health service whose readiness the
//! host flips.
//! Policy (what to route where) lives in the processors built on these, never here.

pub mod codec;
pub mod health;
pub mod server;
pub mod stream;

pub use health::{Health, HealthNames, HealthReporter, health, serve_health};
pub use server::{
    DEFAULT_DRAIN_TIMEOUT, DEFAULT_MAX_MESSAGE_BYTES, GrpcServer, GrpcServing, ServeError, Tls,
};
pub use stream::{Replies, Step, StreamState, replies};
