//! The request lifecycle every transport shares: the standalone HTTP gateway, the
//! ext_proc server behind Envoy, and (its pure core) the virtual-time benchmark. A
//! transport adds framing; admission, scheduling and load booking happen here, once.
//!
//! ```text
//! transport ─► RequestContext (headers of both generations, path, subset hint)
//!           ─► parse (the pool's parser) ─► LlmRequest
//!           ─► Director::route ─► core: candidates → admission → schedule → PreRequest
//!           ◄─ Decision (ordered targets)
//! transport forwards: Decision::reserve(i) books in-flight load on the target;
//!   refused ─► endpoint_failed(i), next target
//! response headers ─► ResponseMeter::start ─► chunk() per body chunk (usage sniffed)
//!   ─► finish(complete) ─► running gauge, duration, usage, plugin hooks; load released
//! ```
//!
//! - [`context`]: [`RequestContext`], what the picker reads from a request besides its
//!   body; [`headers`] the wire names; [`subset`] Envoy's subset hint.
//! - [`core`]: the pure [`DecisionCore`] and candidate collection, shared with
//!   `bench::des`.
//! - [`director`]: a pool's request path around the core (objectives, snapshot,
//!   metrics, reporting).
//! - [`decision`]: the [`Decision`] that owns the in-flight booking; [`outlier`] takes
//!   endpoints whose requests keep failing out of rotation for a back-off.
//! - [`response`]: the [`ResponseMeter`]; [`usage`] reads token usage from JSON and
//!   SSE bodies; [`body`] rewrites the model name into requests and back out of
//!   responses.

pub mod body;
pub mod context;
pub mod core;
pub mod decision;
pub mod director;
pub mod explain;
pub mod headers;
pub mod outlier;
pub mod response;
pub mod subset;
pub mod usage;

pub use context::{RequestContext, RequestIds};
pub use core::{DecisionCore, collect_candidates};
pub use decision::{Decision, Target};
pub use director::{Director, DirectorParts};
pub use response::ResponseMeter;
pub use subset::SubsetHint;
pub use usage::UsageSniffer;
