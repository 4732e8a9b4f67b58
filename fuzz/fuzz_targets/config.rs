//! `config`: every YAML loader over arbitrary UTF-8 text: the `EndpointPickerConfig`,
//! the objectives file, the static pool file and the bench scenario.
//!
//! Nothing may panic, every error's text starts with the origin the caller named (so
//! a user always learns which file is wrong), and a scenario that loads plans a
//! finite, positive rate for a non-zero time in every stage, within the planning cap.

#![no_main]

use igw::bench::scenario::{self, MAX_PLANNED_REQUESTS};
use igw::epp::config::{self, objectives::Objectives};
use igw::epp::discovery::StaticPool;
use libfuzzer_sys::fuzz_target;

const ORIGIN: &str = "fuzz.yaml";

fn names_origin(loader: &str, error: impl std::fmt::Display) {
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("{ORIGIN}: ")),
        "{loader}: the error does not start with its origin: {text}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = config::from_yaml_str(text, ORIGIN) {
        names_origin("config", e);
    }
    if let Err(e) = Objectives::from_yaml_str(text, ORIGIN) {
        names_origin("objectives", e);
    }
    if let Err(e) = StaticPool::from_yaml(text, ORIGIN) {
        names_origin("pool", e);
    }
    match scenario::from_yaml_str(text, ORIGIN) {
        Err(e) => names_origin("scenario", e),
        Ok(s) => {
            let mut planned = 0.0;
            for stage in s.stages() {
                assert!(
                    stage.rate.is_finite() && stage.rate > 0.0 && !stage.duration.is_zero(),
                    "a loaded scenario plans {} req/s for {:?}",
                    stage.rate,
                    stage.duration
                );
                planned += stage.rate * stage.duration.as_secs_f64();
            }
            assert!(planned <= MAX_PLANNED_REQUESTS as f64, "{planned} planned");
        }
    }
});
