//! Where a pool's endpoints come from: [`pool_file`], the static pool read from
//! `--pool-file` (an InferencePool manifest listing addresses) or `--endpoints`; and
//! [`endpoints_file`], llm-d Router's endpoints file (`file-discovery`,
//! `--endpoints-file`), watched for changes; and [`kubernetes`], an InferencePool and
//! its ready pods on the Kubernetes API. [`source`] puts each behind one
//! [`Discovery`] trait, whose every change ends in
//! [`Pool::set_endpoints`](crate::epp::pool::Pool::set_endpoints).

pub mod endpoints_file;
pub mod kubernetes;
pub mod pool_file;
pub mod source;

pub use endpoints_file::EndpointsFile;
pub use pool_file::StaticPool;
pub use source::{Discovery, EndpointSink, Fixed, Reloads, WatchedFile};
