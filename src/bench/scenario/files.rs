//! The files a scenario names: relative paths found next to the scenario file when
//! they are not in the working directory, and the pool's tokenizer loaded.

use std::path::{Path, PathBuf};

use super::{Scenario, ScenarioError};
use crate::bench::workload::WorkloadSpec;
use crate::bench::workload::sessions::SessionSource;

/// `dir/path`, when a relative `path` is missing from the working directory but is
/// there. `None` keeps `path` as written, so a file missing from both is named in its
/// error as the scenario states it.
fn beside(dir: &Path, path: &Path) -> Option<PathBuf> {
    if !path.is_relative() || path.exists() {
        return None;
    }
    let candidate = dir.join(path);
    candidate.exists().then_some(candidate)
}

impl Scenario {
    /// Loads `pool.tokenizer` (see [`PoolSpec::load_tokenizer`](super::PoolSpec::load_tokenizer)); `origin` names the
    /// scenario in the error.
    pub fn load_tokenizer(&mut self, origin: &str) -> Result<(), ScenarioError> {
        self.pool
            .load_tokenizer()
            .map_err(|message| ScenarioError::Invalid {
                origin: origin.to_string(),
                field: "pool.tokenizer".into(),
                message,
            })
    }

    /// Files the scenario names (workload data, EPP configs, profile files) by a
    /// relative path that is not there from the working directory but is next to the
    /// scenario file are taken from there: a scenario and its files can be kept
    /// together and run from anywhere. The working directory wins when both have
    /// one, as the shipped scenarios name `testdata/…` from the repository's root.
    pub(super) fn find_files_beside(&mut self, dir: &Path) {
        let fix = |path: &mut PathBuf| {
            if let Some(found) = beside(dir, path) {
                *path = found;
            }
        };
        match &mut self.workload {
            WorkloadSpec::ShareGpt(s) => fix(&mut s.path),
            WorkloadSpec::Sessions(s) => {
                if let SessionSource::Sharegpt { path } = &mut s.source {
                    fix(path);
                }
            }
            WorkloadSpec::Trace(s) => fix(&mut s.path),
            WorkloadSpec::Synthetic(_) | WorkloadSpec::SharedPrefix(_) => {}
        }
        if let Some(p) = &mut self.pool.profile_file {
            fix(p);
        }
        if let Some(p) = &mut self.pool.tokenizer {
            fix(p);
        }
        for group in &mut self.pool.also {
            if let Some(p) = &mut group.profile_file {
                fix(p);
            }
        }
        for strategy in &mut self.strategies {
            if let Some(config) = &mut strategy.config
                && !matches!(config.as_str(), "gie-default" | "igw-default")
                && let Some(found) = beside(dir, Path::new(config.as_str()))
            {
                *config = found.display().to_string();
            }
        }
    }
}
