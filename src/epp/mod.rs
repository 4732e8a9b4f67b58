//! The endpoint picker (EPP): for each inference request, choose the model-server
//! endpoint that will serve it fastest.
//!
//! [`endpoint`] holds what the picker knows about each endpoint (identity, last
//! scraped metrics, the load the picker itself has sent), and [`request`] what it
//! knows about a request. The scheduler works only on those values: it does no I/O
//! and reads no clock, so the live gateway and the virtual-time benchmark run the same
//! decision code.

pub mod clock;
pub mod datastore;
pub mod endpoint;
pub mod error;
pub mod metric_mapping;
pub mod parser;
pub mod pool;
pub mod prom_text;
pub mod request;
pub mod saturation;
