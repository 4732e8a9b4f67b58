//! Progress while a benchmark runs: one bar per strategy and stage, counting finished
//! requests, on stderr. Hidden when stderr is not a terminal or when asked (tests,
//! `--quiet`), so output stays clean in logs and CI.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::plan::StagePlan;

/// The bars of one run.
#[derive(Clone)]
pub struct Progress {
    multi: MultiProgress,
}

impl Progress {
    /// Bars drawn on stderr when `show` and stderr is a terminal.
    pub fn new(show: bool) -> Progress {
        let target = if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Progress {
            multi: MultiProgress::with_draw_target(target),
        }
    }

    /// Nothing drawn.
    pub fn hidden() -> Progress {
        Progress::new(false)
    }

    /// One bar per stage and strategy (`bars[stage][strategy]`), labelled with the
    /// strategy's name and the stage's rate, counting the stage's requests.
    pub fn stage_bars(&self, plans: &[StagePlan], names: &[String]) -> Vec<Vec<ProgressBar>> {
        plans
            .iter()
            .map(|plan| {
                names
                    .iter()
                    .map(|name| {
                        self.job(
                            &format!("{name} · {} req/s", plan.stage.rate),
                            plan.requests.len() as u64,
                        )
                    })
                    .collect()
            })
            .collect()
    }

    /// A bar for `total` requests labelled `label` (e.g. `epp igw-default · 300 req/s`).
    pub fn job(&self, label: &str, total: u64) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>32} {bar:30} {pos:>7}/{len:7} {msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        bar
    }
}
