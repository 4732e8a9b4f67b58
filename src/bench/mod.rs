//! The benchmark's pieces: what `igw bench` runs to compare routing strategies.
//! [`workload`] decides what requests are sent; [`des`] is the virtual-time pool
//! simulation (many simulator engines, a virtual clock, scrape lag modelled) that
//! `igw bench --virtual` drives; [`recorder`] turns per-request samples into a stage's
//! measurements with inference-perf's definitions.
//!
//! Nothing here reads the wall clock or does network I/O (workloads read files);
//! drivers that need either (the live client, the CLI) sit on top.

pub mod des;
pub mod recorder;
pub mod workload;
