//! GIE's `single-profile-handler` (gie-facts §3.2, §3.4): runs the one profile once;
//! if it failed, the request fails with "failed to find target endpoint" (429).
//! No state, no parameters.

use super::NoParams;
use crate::epp::request::LlmRequest;
use crate::epp::scheduler::{
    Plugin, ProfileHandler, ProfileResult, SchedulingError, SchedulingProfile,
};

pub const TYPE: &str = "single-profile-handler";

#[derive(Debug, Default)]
pub struct SingleProfileHandler;

impl SingleProfileHandler {
    pub fn new(_: NoParams) -> SingleProfileHandler {
        SingleProfileHandler
    }
}

impl Plugin for SingleProfileHandler {}

impl ProfileHandler for SingleProfileHandler {
    fn pick(
        &self,
        _request: &LlmRequest,
        profiles: &[SchedulingProfile],
        done: &[ProfileResult],
        next: &mut Vec<usize>,
    ) {
        if done.is_empty() && !profiles.is_empty() {
            next.push(0);
        }
    }

    fn process_results(
        &self,
        _request: &LlmRequest,
        results: &[ProfileResult],
    ) -> Result<usize, SchedulingError> {
        match results.first() {
            Some(r) if r.targets.is_some() => Ok(0),
            Some(r) => Err(SchedulingError::NoEndpoint {
                profile: r.profile.to_string(),
            }),
            None => Err(SchedulingError::Handler("no profile to run".into())),
        }
    }
}
