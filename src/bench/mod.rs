//! The benchmark's pieces: what `igw bench` runs to compare routing strategies.
//! [`des`] is the virtual-time pool simulation (many simulator engines, a virtual
//! clock, scrape lag modelled) that `igw bench --virtual` drives; [`recorder`] turns
//! per-request samples into a stage's measurements with inference-perf's definitions.
//!
//! Nothing here reads the wall clock or does I/O; drivers that need either (the live
//! client, the CLI) sit on top.

pub mod des;
pub mod recorder;
