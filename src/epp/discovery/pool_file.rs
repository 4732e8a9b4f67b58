//! The static pool: which endpoints the picker routes to when it runs without
//! Kubernetes. Read from `--pool-file` (an InferencePool v1 manifest, gie-facts §6.1,
//! plus igw's `spec.endpoints` list standing in for the pod selector) or from the quick
//! form `--endpoints 127.0.0.1:8001,127.0.0.1:8002`.
//!
//! Each pod in GIE serves one endpoint per `targetPorts` entry, named `<pod>-rank-<idx>`
//! (gie-facts §2.2). Here an address without a port plays the pod: it expands to one
//! endpoint per target port, `<pool>-<ip>-rank-<idx>`; an address with a port is one
//! endpoint, `<pool>-<ip>-<port>`.
//!
//! Decoding is strict (unknown fields are errors) and every error names the file and
//! the field. This module reads a file and builds values; it resolves no hostnames,
//! opens no connections and does not watch the file.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::Deserialize;

use crate::epp::endpoint::Endpoint;

/// The InferencePool API this file format follows.
pub const POOL_API_VERSION: &str = "inference.networking.k8s.io/v1";
pub const POOL_KIND: &str = "InferencePool";
/// The namespace of a pool that names none (GIE's `--pool-namespace` fallback).
pub const DEFAULT_NAMESPACE: &str = "default";
/// The CRD's bounds on `targetPorts` and `selector.matchLabels`.
const MAX_TARGET_PORTS: usize = 8;
const MAX_MATCH_LABELS: usize = 64;

/// A pool as the picker uses it: identity, ports and the endpoints to route to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticPool {
    pub name: String,
    pub namespace: String,
    /// `spec.targetPorts`, in order; empty for the `--endpoints` quick form.
    pub target_ports: Vec<u16>,
    pub app_protocol: AppProtocol,
    /// `spec.selector.matchLabels`, kept for display; a static pool does not select pods.
    pub match_labels: BTreeMap<String, String>,
    pub endpoint_picker_ref: Option<EndpointPickerRef>,
    /// In file order, ranks of one address together.
    pub endpoints: Vec<Endpoint>,
}

/// How the data plane talks to the model servers (`spec.appProtocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum AppProtocol {
    /// HTTP/1.1, the default.
    #[default]
    #[serde(rename = "http")]
    Http,
    /// HTTP/2 over cleartext.
    #[serde(rename = "kubernetes.io/h2c")]
    H2c,
}

/// `spec.endpointPickerRef`: the EPP service a gateway calls for this pool.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointPickerRef {
    #[serde(default)]
    pub group: String,
    #[serde(default = "service_kind")]
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub port: Option<Port>,
    #[serde(default)]
    pub failure_mode: FailureMode,
}

fn service_kind() -> String {
    "Service".to_string()
}

/// What a gateway does when the picker is unreachable; `FailClose` by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum FailureMode {
    FailOpen,
    #[default]
    FailClose,
}

/// A port reference, `{number: 8000}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub number: u16,
}

/// A pool that cannot be used; each variant names where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("{file}: {error}")]
    Read {
        file: String,
        // Not `source`: the message already says it (printed once, not twice).
        error: std::io::Error,
    },
    /// Not YAML of the expected shape (unknown or missing field, wrong type).
    #[error("{file}: field `{field}`: {message}")]
    Decode {
        file: String,
        field: String,
        message: String,
    },
    /// Well-formed, but a value breaks a rule of the InferencePool API or of igw.
    #[error("{file}: field `{field}`: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
}

/// The manifest as written.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PoolFile {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: Spec,
    /// Written by controllers; accepted so a manifest read back from a cluster loads.
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    #[allow(dead_code)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    target_ports: Vec<Port>,
    #[serde(default)]
    selector: Option<LabelSelector>,
    #[serde(default)]
    app_protocol: AppProtocol,
    #[serde(default)]
    endpoint_picker_ref: Option<EndpointPickerRef>,
    /// igw's extension: addresses (`ip` or `ip:port`) instead of selected pods.
    #[serde(default)]
    endpoints: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LabelSelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
}

impl StaticPool {
    /// Reads and validates a pool file.
    pub fn from_file(path: &Path) -> Result<StaticPool, PoolError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| PoolError::Read {
            file: file.clone(),
            error,
        })?;
        StaticPool::from_yaml(&text, &file)
    }

    /// Parses and validates a pool manifest; `file` names it in errors.
    pub fn from_yaml(text: &str, file: &str) -> Result<StaticPool, PoolError> {
        let pool =
            crate::yaml::decode_with_path::<PoolFile>(text).map_err(|(field, message)| {
                PoolError::Decode {
                    file: file.to_string(),
                    field,
                    message,
                }
            })?;
        let invalid = |field: &str, message: String| PoolError::Invalid {
            file: file.to_string(),
            field: field.to_string(),
            message,
        };
        pool.validate()
            .map_err(|(field, message)| invalid(&field, message))
    }

    /// The `--endpoints` quick form: comma-separated `ip:port` addresses, each one
    /// endpoint named `<pool>-<ip>-<port>`.
    pub fn from_endpoints_flag(pool_name: &str, list: &str) -> Result<StaticPool, PoolError> {
        let invalid = |message: String| PoolError::Invalid {
            file: "--endpoints".into(),
            field: "--endpoints".into(),
            message,
        };
        let entries: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect();
        if entries.is_empty() {
            return Err(invalid("no addresses given".into()));
        }
        let endpoints =
            expand(pool_name, &[], &entries).map_err(|(_, message)| invalid(message))?;
        Ok(StaticPool {
            name: pool_name.to_string(),
            namespace: DEFAULT_NAMESPACE.to_string(),
            target_ports: Vec::new(),
            app_protocol: AppProtocol::Http,
            match_labels: BTreeMap::new(),
            endpoint_picker_ref: None,
            endpoints,
        })
    }
}

impl PoolFile {
    /// The CRD's validation rules plus igw's; errors are `(field, message)`.
    fn validate(self) -> Result<StaticPool, (String, String)> {
        let err = |field: &str, message: String| Err((field.to_string(), message));
        if self.api_version != POOL_API_VERSION {
            return err(
                "apiVersion",
                format!(
                    "expected {POOL_API_VERSION:?}, got {:?} (older v1alpha2 pools are not read)",
                    self.api_version
                ),
            );
        }
        if self.kind != POOL_KIND {
            return err(
                "kind",
                format!("expected {POOL_KIND:?}, got {:?}", self.kind),
            );
        }
        let name = self.metadata.name;
        if name.trim().is_empty() {
            return err("metadata.name", "must not be empty".into());
        }
        let spec = self.spec;
        let ports: Vec<u16> = spec.target_ports.iter().map(|p| p.number).collect();
        if ports.is_empty() || ports.len() > MAX_TARGET_PORTS {
            return err(
                "spec.targetPorts",
                format!("needs 1 to {MAX_TARGET_PORTS} entries, has {}", ports.len()),
            );
        }
        for (i, &port) in ports.iter().enumerate() {
            let field = format!("spec.targetPorts[{i}].number");
            if port == 0 {
                return err(&field, "must be in 1..=65535".into());
            }
            if ports[..i].contains(&port) {
                return err(&field, format!("port {port} is listed twice"));
            }
        }
        let match_labels = spec.selector.map(|s| s.match_labels).unwrap_or_default();
        if match_labels.len() > MAX_MATCH_LABELS {
            return err(
                "spec.selector.matchLabels",
                format!(
                    "at most {MAX_MATCH_LABELS} entries, has {}",
                    match_labels.len()
                ),
            );
        }
        if let Some(epp) = &spec.endpoint_picker_ref {
            if epp.name.trim().is_empty() {
                return err("spec.endpointPickerRef.name", "must not be empty".into());
            }
            if epp.kind == "Service" && epp.port.is_none() {
                return err(
                    "spec.endpointPickerRef.port",
                    "required when kind is Service".into(),
                );
            }
            if epp.port.is_some_and(|p| p.number == 0) {
                return err(
                    "spec.endpointPickerRef.port.number",
                    "must be in 1..=65535".into(),
                );
            }
        }
        let Some(addresses) = spec.endpoints else {
            return err(
                "spec.endpoints",
                "required in a pool file: list the model servers' addresses \
                 (spec.selector selects Kubernetes pods, which a file cannot)"
                    .into(),
            );
        };
        if addresses.is_empty() {
            return err("spec.endpoints", "must list at least one address".into());
        }
        let endpoints = expand(&name, &ports, &addresses)?;
        Ok(StaticPool {
            name,
            namespace: self
                .metadata
                .namespace
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
            target_ports: ports,
            app_protocol: spec.app_protocol,
            match_labels,
            endpoint_picker_ref: spec.endpoint_picker_ref,
            endpoints,
        })
    }
}

/// Turns addresses into endpoints: `ip:port` is one endpoint; a bare `ip` is one per
/// target port. Errors name `spec.endpoints[i]`.
fn expand(
    pool: &str,
    ports: &[u16],
    addresses: &[String],
) -> Result<Vec<Endpoint>, (String, String)> {
    let mut out: Vec<Endpoint> = Vec::new();
    for (i, entry) in addresses.iter().enumerate() {
        let field = format!("spec.endpoints[{i}]");
        let mut push = |name: String, address: SocketAddr| {
            if out.iter().any(|e| e.address == address) {
                return Err((field.clone(), format!("{address} is listed twice")));
            }
            out.push(Endpoint { name, address });
            Ok(())
        };
        match parse_address(entry) {
            Some(Address::WithPort(addr)) => {
                if addr.port() == 0 {
                    return Err((field, format!("{entry:?}: port must be in 1..=65535")));
                }
                push(format!("{pool}-{}-{}", addr.ip(), addr.port()), addr)?;
            }
            Some(Address::Ip(ip)) if ports.is_empty() => {
                return Err((
                    field,
                    format!("{ip} needs a port (no targetPorts to expand it with)"),
                ));
            }
            Some(Address::Ip(ip)) => {
                for (rank, &port) in ports.iter().enumerate() {
                    push(
                        format!("{pool}-{ip}-rank-{rank}"),
                        SocketAddr::new(ip, port),
                    )?;
                }
            }
            None => {
                return Err((
                    field,
                    format!(
                        "{entry:?} is not an IP address or IP:port (hostnames are not resolved)"
                    ),
                ));
            }
        }
    }
    Ok(out)
}

enum Address {
    Ip(IpAddr),
    WithPort(SocketAddr),
}

/// `10.0.0.1`, `10.0.0.1:8000`, `::1`, `[::1]`, `[::1]:8000`.
fn parse_address(entry: &str) -> Option<Address> {
    let entry = entry.trim();
    if let Ok(addr) = entry.parse::<SocketAddr>() {
        return Some(Address::WithPort(addr));
    }
    let bare = entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .unwrap_or(entry);
    bare.parse::<IpAddr>().ok().map(Address::Ip)
}

#[cfg(test)]
mod tests;
