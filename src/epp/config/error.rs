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
