//! Why an `EndpointPickerConfig` was rejected. Every message starts with the file (or
//! the origin the caller named) and then says where in it: the plugin by name and
//! type, the profile, the section, and the field. All are startup errors: fix the
//! file; retrying cannot help.

/// A rejected configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: cannot read the file: {error}")]
    Read {
        origin: String,
        // Not a `source`: the message already says it (printed once, not twice).
        error: std::io::Error,
    },
    /// Not YAML, or not the schema (an unknown or mistyped field).
    #[error("{origin}: {message}")]
    Syntax { origin: String, message: String },
    /// `apiVersion` or `kind` is not GIE's.
    #[error("{origin}: field `{field}`: expected `{expected}`, found `{found}`")]
    Header {
        origin: String,
        field: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("{origin}: field `featureGates`: unknown feature gate `{gate}` (known: {known})")]
    UnknownFeatureGate {
        origin: String,
        gate: String,
        known: String,
    },
    #[error("{origin}: plugins[{index}]: field `type` is empty")]
    MissingType { origin: String, index: usize },
    #[error("{origin}: plugins: duplicate plugin name `{name}`")]
    DuplicatePlugin { origin: String, name: String },
    #[error(
        "{origin}: plugin `{name}` (type `{type_name}`): field `type`: unknown plugin type{hint}"
    )]
    UnknownPluginType {
        origin: String,
        name: String,
        type_name: String,
        /// ", did you mean `…`?" or empty.
        hint: String,
    },
    /// A GIE plugin type igw does not implement.
    #[error(
        "{origin}: plugin `{name}` (type `{type_name}`): field `type`: not supported by igw: {reason}"
    )]
    Unsupported {
        origin: String,
        name: String,
        type_name: String,
        reason: &'static str,
    },
    /// An unknown, mistyped or invalid parameter.
    #[error("{origin}: plugin `{name}` (type `{type_name}`): field `{field}`: {message}")]
    Parameter {
        origin: String,
        name: String,
        type_name: String,
        field: String,
        message: String,
    },
    #[error("{origin}: {section}: field `pluginRef`: `{plugin_ref}` names no plugin")]
    UnknownPluginRef {
        origin: String,
        section: String,
        plugin_ref: String,
    },
    #[error(
        "{origin}: {section}: plugin `{plugin_ref}`: field `weight`: must be a finite number ≥ 0, got {weight}"
    )]
    BadWeight {
        origin: String,
        section: String,
        plugin_ref: String,
        weight: f64,
    },
    /// A structural rule broken (two pickers in a profile, a reference to the wrong
    /// kind of plugin, several profile handlers…).
    #[error("{origin}: {section}: {message}")]
    Invalid {
        origin: String,
        section: String,
        message: String,
    },
}

impl ConfigError {
    /// The error with the line of `text` (the file it came from) that it is about
    /// written after the origin, `file.yaml: line 12: …`, as parse errors name theirs.
    /// Unchanged when the line cannot be found.
    pub fn at_line(mut self, text: &str) -> ConfigError {
        use crate::yaml::{line_of, line_of_key_after};
        let plugin = |name: &str, type_name: &str| {
            line_of(text, "name", name, 0).or_else(|| line_of(text, "type", type_name, 0))
        };
        let line = match &self {
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
            ConfigError::Header { field, found, .. } => line_of(text, field, found, 0),
            ConfigError::UnknownFeatureGate { gate, .. } => text
                .lines()
                .position(|l| l.contains(gate.as_str()))
                .map(|i| i + 1),
            ConfigError::MissingType { .. } => line_of(text, "type", "", 0),
            ConfigError::DuplicatePlugin { name, .. } => {
                line_of(text, "name", name, 1).or_else(|| line_of(text, "type", name, 1))
            }
            ConfigError::UnknownPluginType {
                name, type_name, ..
            }
            | ConfigError::Unsupported {
                name, type_name, ..
            } => plugin(name, type_name),
            ConfigError::Parameter {
                name,
                type_name,
                field,
                ..
            } => plugin(name, type_name).map(|at| {
                let last = field.rsplit('.').next().unwrap_or(field);
                line_of_key_after(text, last, at).unwrap_or(at)
            }),
            ConfigError::UnknownPluginRef { plugin_ref, .. }
            | ConfigError::BadWeight { plugin_ref, .. } => {
                line_of(text, "pluginRef", plugin_ref, 0)
            }
            ConfigError::Invalid {
                section, message, ..
            } => {
                // `duplicate profile name `x``: the second profile of that name.
                let quoted = |s: &str| s.split('`').nth(1).map(str::to_string);
                if message.starts_with("duplicate profile name") {
                    quoted(message).and_then(|n| line_of(text, "name", &n, 1))
                } else if let Some(profile) =
                    section.strip_prefix("schedulingProfiles ").and_then(quoted)
                {
                    line_of(text, "name", &profile, 0)
                } else {
                    line_of_key_after(text, section, 1)
                }
            }
        };
        let Some(line) = line else {
            return self;
        };
        match &mut self {
            ConfigError::Read { origin, .. }
            | ConfigError::Syntax { origin, .. }
            | ConfigError::Header { origin, .. }
            | ConfigError::UnknownFeatureGate { origin, .. }
            | ConfigError::MissingType { origin, .. }
            | ConfigError::DuplicatePlugin { origin, .. }
            | ConfigError::UnknownPluginType { origin, .. }
            | ConfigError::Unsupported { origin, .. }
            | ConfigError::Parameter { origin, .. }
            | ConfigError::UnknownPluginRef { origin, .. }
            | ConfigError::BadWeight { origin, .. }
            | ConfigError::Invalid { origin, .. } => {
                origin.push_str(&format!(": line {line}"));
            }
        }
        self
    }
}
