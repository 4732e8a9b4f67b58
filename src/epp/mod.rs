//! The endpoint picker (EPP): for each inference request, choose the model-server
//! endpoint that will serve it fastest.
//!
//! [`endpoint`] holds what the picker knows about each endpoint (identity, last
//! scraped metrics, the load the picker itself has sent), and [`request`] what it
//! knows about a request. The [`scheduler`] works only on those values: it does no I/O
//! and reads no clock, so the live gateway and the virtual-time benchmark run the same
//! decision code. [`config`] reads GIE's `EndpointPickerConfig` and builds it.

pub mod config;
pub mod endpoint;
pub mod error;
pub mod parser;
pub mod request;
pub mod scheduler;
