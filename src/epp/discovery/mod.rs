//! Where a pool's endpoints come from. Today: [`pool_file`], the static pool read from
//! `--pool-file` (an InferencePool manifest listing addresses) or `--endpoints`. Every
//! source ends in [`Pool::set_endpoints`](crate::epp::pool::Pool::set_endpoints).
//!
//! Reading and validating only: no source here opens connections.

pub mod pool_file;

pub use pool_file::StaticPool;
