//! The benchmark behind `igw bench --scenario F`: compare routing strategies on the
//! same traffic, in virtual time or live.
//!
//! - [`scenario`]: the YAML file that states the question; [`plan`] turns it into
//!   timed requests per stage ([`arrivals`] for when, [`workload`] for what).
//! - [`des`]: the virtual-time pool simulation (many simulator engines, a virtual
//!   clock, scrape lag modelled) that [`virtual_run`] drives once per strategy and
//!   stage; [`live`] runs the same plan over real HTTP against in-process simulators
//!   and one gateway per strategy (or an external URL).
//! - [`recorder`]: per-request samples to a stage's measurements, with
//!   inference-perf's definitions; [`report`]: tables, JSON and charts;
//!   [`progress`]: bars while it runs; [`wire`]: the HTTP body a request goes out as;
//!   [`interrupt`]: Ctrl-C during a live or target run, which keeps what was measured;
//!   [`retokenize`]: prompts counted with the pool's own `tokenizer.json`.
//!
//! Pure parts (workload, arrivals, plan, des, recorder) read no clock and do no
//! network I/O; drivers that need either (the live client, the CLI) sit on top.

pub mod arrivals;
pub mod cli;
pub mod des;
pub mod interrupt;
pub mod live;
pub mod plan;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod retokenize;
pub mod scenario;
pub mod virtual_run;
pub mod wire;
pub mod workload;
