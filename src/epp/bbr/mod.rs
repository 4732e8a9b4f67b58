//! The body-based router (BBR, gie-facts §7): an ext_proc server in front of routing
//! that copies the request body's `model` into `X-Gateway-Model-Name` (and the base
//! model of a LoRA adapter into `X-Gateway-Base-Model-Name`), so Envoy's header-matching
//! routes can choose the pool.
//!
//! [`model`] reads the field from a body, [`base_model`] loads the adapter map,
//! [`stream`] is one ext_proc stream's pure state machine, [`service`] serves it over
//! tonic, [`metrics`] counts with GIE's names, and [`run`] is `igw bbr run`. BBR picks
//! no endpoint and keeps nothing between requests.

pub mod base_model;
pub mod metrics;
pub mod model;
pub mod run;
pub mod service;
pub mod stream;

pub use run::{BbrError, BbrOptions, RunningBbr, start};
pub use stream::{BASE_MODEL_HEADER, MODEL_HEADER};
