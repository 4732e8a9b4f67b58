//! The picker behind Envoy: GIE's Endpoint Picker Protocol over ext_proc
//! (gie-facts §1), on the lifecycle every transport shares.
//!
//! [`stream`] is one stream's state machine (request headers and body in, the
//! destination out; the response metered and its model name turned back);
//! [`service`] runs it as a tonic `ExternalProcessor`. Serving (TLS, message limits,
//! drain) and gRPC health come from [`crate::epp::extproc`].

pub mod service;
pub mod stream;

pub use service::PickerProcessor;
pub use stream::{MAX_HELD_RESPONSE, PickerStream, Shared};
