//! The decision core: candidates → admission → schedule → PreRequest hooks, as one pure
//! function every driver calls (the director for the gateway and the ext_proc server,
//! and the virtual-time benchmark), so a benchmark measures the code that ships.
//!
//! ```text
//! pool states ─► candidates (subset hint, then routable: healthy, fresh metrics)
//!   ─► admission (shed priority < 0 when the detector says saturated) ─► scheduler
//!   ─► on_scheduled (the prefix index learns the prompt) ─► result (indices)
//! ```
//!
//! No I/O, no clock, no locks: the time, the RNG and the scratch come in with the call.
//! Errors carry GIE's codes and texts (gie-facts §1.5).

use std::net::SocketAddr;
use std::time::Duration;

use crate::epp::config::LoadedConfig;
use crate::epp::datastore::EndpointState;
use crate::epp::endpoint::Candidate;
use crate::epp::error::EppError;
use crate::epp::request::LlmRequest;
use crate::epp::saturation::{Detector, should_shed};
use crate::epp::scheduler::{Scheduler, SchedulingContext, SchedulingError, SchedulingResult};

use super::subset::SubsetHint;

/// The scheduler and the admission rule of one pool: what a decision needs besides
/// its inputs.
#[derive(Debug)]
pub struct DecisionCore {
    pub scheduler: Scheduler,
    /// Judges saturation for the shedding rule.
    pub detector: Detector,
}

impl DecisionCore {
    /// The core a loaded EndpointPickerConfig describes.
    pub fn from_config(config: LoadedConfig) -> DecisionCore {
        DecisionCore {
            scheduler: config.scheduler,
            detector: config.saturation,
        }
    }

    /// Admits and schedules `request` among `candidates`, then runs the PreRequest
    /// hooks on the target. The result's indices point into `candidates`.
    pub fn decide(
        &self,
        request: &LlmRequest,
        candidates: &[Candidate],
        ctx: &mut SchedulingContext<'_>,
    ) -> Result<SchedulingResult, EppError> {
        if candidates.is_empty() {
            return Err(EppError::no_fresh_candidates());
        }
        // Saturation is judged only for requests it could shed.
        if request.priority < 0
            && should_shed(
                request.priority,
                self.detector.saturation(candidates, ctx.now),
            )
        {
            return Err(EppError::ResourceExhausted(
                "system saturated, sheddable request dropped".into(),
            ));
        }
        let result = self.scheduler.schedule(request, candidates, ctx)?;
        self.scheduler
            .on_scheduled(request, &candidates[result.target()], ctx.cycle);
        Ok(result)
    }
}

/// Fills `candidates` with the endpoints of `states` a request may go to at `now`, in
/// pool order, and `rows` with the index into `states` of each: those the subset hint
/// allows (all without one), then those routable (healthy, metrics no older than
/// `threshold`, not ejected) and not in `exclude` (endpoints this request already
/// failed on). Both buffers are cleared first.
pub fn collect_candidates(
    states: &[EndpointState],
    now: Duration,
    threshold: Duration,
    subset: Option<&SubsetHint>,
    exclude: &[SocketAddr],
    candidates: &mut Vec<Candidate>,
    rows: &mut Vec<usize>,
) -> Result<(), EppError> {
    candidates.clear();
    rows.clear();
    if states.is_empty() {
        return Err(EppError::Internal("no pods available in datastore".into()));
    }
    let mut allowed = 0;
    for (i, state) in states.iter().enumerate() {
        if subset.is_some_and(|s| !s.allows(state.endpoint.address)) {
            continue;
        }
        allowed += 1;
        if state.is_routable(now, threshold) && !exclude.contains(&state.endpoint.address) {
            candidates.push(state.candidate());
            rows.push(i);
        }
    }
    if allowed == 0 {
        return Err(EppError::ServiceUnavailable(
            "failed to find endpoint candidates for serving the request".into(),
        ));
    }
    if candidates.is_empty() {
        return Err(EppError::no_fresh_candidates());
    }
    Ok(())
}

impl From<SchedulingError> for EppError {
    fn from(e: SchedulingError) -> EppError {
        match e {
            SchedulingError::NoCandidates => EppError::ServiceUnavailable(e.to_string()),
            SchedulingError::NoEndpoint { .. } => EppError::ResourceExhausted(e.to_string()),
            SchedulingError::Handler(_) => EppError::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::epp::datastore::Health;
    use crate::epp::endpoint::{Endpoint, EndpointMetrics};

    const NOW: Duration = Duration::from_secs(10);
    const THRESHOLD: Duration = Duration::from_secs(2);

    fn state(addr: &str, health: Health, age: Duration) -> EndpointState {
        let address: SocketAddr = addr.parse().unwrap();
        EndpointState {
            endpoint: Arc::new(Endpoint {
                name: addr.into(),
                address,
            }),
            load: Arc::default(),
            outlier: Arc::default(),
            metrics: Some(EndpointMetrics {
                updated_at: NOW - age,
                ..EndpointMetrics::default()
            }),
            health,
            last_error: None,
        }
    }

    fn collect(
        states: &[EndpointState],
        subset: Option<&SubsetHint>,
    ) -> Result<Vec<usize>, EppError> {
        let (mut candidates, mut rows) = (Vec::new(), Vec::new());
        collect_candidates(
            states,
            NOW,
            THRESHOLD,
            subset,
            &[],
            &mut candidates,
            &mut rows,
        )?;
        assert_eq!(candidates.len(), rows.len());
        Ok(rows)
    }

    #[test]
    fn candidates_are_the_routable_endpoints_the_subset_allows() {
        let ok = Duration::ZERO;
        let states = [
            state("10.0.0.1:8000", Health::Healthy, ok),
            state("10.0.0.2:8000", Health::Unhealthy, ok),
            state("10.0.0.3:8000", Health::Healthy, THRESHOLD * 2),
            state("10.0.0.4:8000", Health::Healthy, ok),
        ];
        assert_eq!(collect(&states, None), Ok(vec![0, 3]));
        let hint = SubsetHint::parse(["10.0.0.4"]);
        assert_eq!(collect(&states, Some(&hint)), Ok(vec![3]));
        // Allowed but not routable: GIE's "no fresh metrics" 503.
        let hint = SubsetHint::parse(["10.0.0.2:8000,10.0.0.3:8000"]);
        assert_eq!(
            collect(&states, Some(&hint)),
            Err(EppError::no_fresh_candidates())
        );
        let none = SubsetHint::parse(["10.9.9.9"]);
        let err = collect(&states, Some(&none)).unwrap_err();
        assert_eq!(err.status(), 503);
        assert_eq!(
            err.to_string(),
            "inference error: ServiceUnavailable - failed to find endpoint candidates for serving the request"
        );
        let err = collect(&[], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "inference error: Internal - no pods available in datastore"
        );
    }

    #[test]
    fn scheduling_errors_get_gies_codes() {
        let no_endpoint = SchedulingError::NoEndpoint {
            profile: "strict".into(),
        };
        let cases = [
            (
                no_endpoint,
                429,
                "ResourceExhausted - failed to find target endpoint",
            ),
            (SchedulingError::NoCandidates, 503, "ServiceUnavailable"),
            (SchedulingError::Handler("loop".into()), 500, "Internal"),
        ];
        for (err, status, needle) in cases {
            let http = EppError::from(err);
            assert_eq!(http.status(), status);
            assert!(http.to_string().contains(needle), "{http}");
        }
    }
}
