//! A small file of request objectives for running without Kubernetes: the name a
//! request gives in `x-gateway-inference-objective` and the priority it gets, as an
//! InferenceObjective's `spec.priority` would give it (gie-facts §6.2). Not part of
//! GIE's `EndpointPickerConfig`; read separately (the CLI's `--objectives`).
//!
//! ```yaml
//! objectives:
//! - name: interactive
//!   priority: 10
//! - name: batch
//!   priority: -1   # below 0: sheddable when the pool is saturated
//! ```
//!
//! Pure data; [`Objectives::load`] is the only I/O.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::ConfigError;

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    objectives: Vec<Objective>,
}

/// One objective.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Objective {
    pub name: String,
    /// Higher is more important; absent means 0, below 0 is sheddable.
    #[serde(default)]
    pub priority: Option<i32>,
}

/// Objectives by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Objectives {
    by_name: HashMap<String, i32>,
}

impl Objectives {
    pub fn load(path: &Path) -> Result<Objectives, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            origin: origin.clone(),
            error,
        })?;
        Objectives::from_yaml_str(&text, &origin)
    }

    pub fn from_yaml_str(text: &str, origin: &str) -> Result<Objectives, ConfigError> {
        if crate::yaml::is_blank(text) {
            return Err(ConfigError::Syntax {
                origin: origin.to_string(),
                message: "the file is empty: list objectives under `objectives:` (each a \
                          `name` and a `priority`), or leave out --objectives"
                    .into(),
            });
        }
        let file: File = serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax {
            origin: origin.to_string(),
            message: crate::yaml::error_text(&e),
        })?;
        let mut by_name = HashMap::new();
        for (i, o) in file.objectives.into_iter().enumerate() {
            let section = format!("objectives[{i}]");
            let invalid = |message: String| ConfigError::Invalid {
                origin: origin.to_string(),
                section: section.clone(),
                message,
            };
            if o.name.is_empty() {
                return Err(invalid("field `name` is empty".into()));
            }
            if by_name
                .insert(o.name.clone(), o.priority.unwrap_or(0))
                .is_some()
            {
                return Err(invalid(format!(
                    "field `name`: duplicate objective `{}`",
                    o.name
                )));
            }
        }
        Ok(Objectives { by_name })
    }

    /// The priority for a request naming `objective`: 0 when it names none or one
    /// that does not exist, as GIE does.
    pub fn priority(&self, objective: Option<&str>) -> i32 {
        objective
            .and_then(|name| self.by_name.get(name))
            .copied()
            .unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
