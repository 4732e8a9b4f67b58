//! The benchmark: workloads, arrivals, the virtual-time pool simulation, measurement and reports.
pub mod workload;
