//! Wire types shared by the simulator, the endpoint picker and the benchmark.
//!
//! Only data and (de)serialisation live here: no I/O, no policy.

pub mod crds;
pub mod openai;
pub mod vllm;
