//! llm-d Router's endpoints file, the file its `file-discovery` plugin reads to run
//! without Kubernetes (llm-d-facts §1.2; llm-d's `docs/discovery.md`):
//!
//! ```yaml
//! endpoints:
//! - name: vllm-0            # required; the endpoint's name
//!   namespace: inference    # optional, "default"
//!   address: "10.0.0.1"     # required, an IP literal
//!   port: "8000"            # required, 1-65535 (a string there; a number is taken too)
//!   labels: {model: llama}  # optional
//! ```
//!
//! YAML or JSON, at most [`MAX_FILE_BYTES`]. Where llm-d applies a file entry by entry
//! (a bad entry halfway leaves the first half applied), this validates the whole file
//! first: a file is taken whole or not at all, so a broken edit keeps the endpoints
//! the last good one gave. An entry repeated (same namespace and name) is taken from
//! its last occurrence, as there. `metricsHost` is read but igw scrapes the serving
//! address, and says so.
//!
//! Reading and validating only; [`super::source`] watches the file.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::Deserialize;

use super::pool_file::{DEFAULT_NAMESPACE, PoolError};
use crate::epp::endpoint::Endpoint;

/// The largest endpoints file read, bytes (llm-d's limit).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The endpoints a file lists, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointsFile {
    pub endpoints: Vec<FileEndpoint>,
}

/// One entry of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEndpoint {
    pub namespace: String,
    pub endpoint: Endpoint,
    pub labels: BTreeMap<String, String>,
    /// `metricsHost` when it names another address than the serving one.
    pub metrics_host: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    endpoints: Vec<WireEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WireEntry {
    name: String,
    #[serde(default)]
    namespace: String,
    address: String,
    port: WirePort,
    #[serde(default)]
    metrics_host: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// llm-d's port is a string; a YAML number is what users type, so both are taken.
#[derive(Deserialize)]
#[serde(untagged)]
enum WirePort {
    Text(String),
    Number(i64),
}

impl EndpointsFile {
    /// Reads and validates the file at `path`; errors name it and the field.
    pub fn read(path: &Path) -> Result<EndpointsFile, PoolError> {
        let file = path.display().to_string();
        let read = |error| PoolError::Read {
            file: file.clone(),
            error,
        };
        let len = std::fs::metadata(path).map_err(read)?.len();
        if len > MAX_FILE_BYTES {
            return Err(PoolError::Invalid {
                file,
                field: ".".into(),
                message: format!("{len} bytes; an endpoints file may have at most 1 MiB"),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        EndpointsFile::parse(&text, &file)
    }

    /// Parses and validates the file's text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<EndpointsFile, PoolError> {
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(PoolError::Invalid {
                file: file.to_string(),
                field: ".".into(),
                message: format!(
                    "{} bytes; an endpoints file may have at most 1 MiB",
                    text.len()
                ),
            });
        }
        let wire = crate::yaml::decode_with_path::<Wire>(text).map_err(|(field, message)| {
            PoolError::Decode {
                file: file.to_string(),
                field,
                message,
            }
        })?;
        validate(wire).map_err(|(field, message)| PoolError::Invalid {
            file: file.to_string(),
            field,
            message,
        })
    }
}

fn validate(wire: Wire) -> Result<EndpointsFile, (String, String)> {
    let mut endpoints: Vec<FileEndpoint> = Vec::new();
    // (namespace, name) → index in `endpoints`; name → its namespace.
    let mut at: HashMap<(String, String), usize> = HashMap::new();
    let mut namespace_of: HashMap<String, String> = HashMap::new();
    for (i, e) in wire.endpoints.into_iter().enumerate() {
        let field = |f: &str| format!("endpoints[{i}].{f}");
        if e.name.trim().is_empty() {
            return Err((field("name"), "an endpoint needs a name".into()));
        }
        let ip: IpAddr = e.address.trim().parse().map_err(|_| {
            (
                field("address"),
                format!("`{}` is not an IP address", e.address),
            )
        })?;
        let port = match &e.port {
            WirePort::Text(t) => t.trim().parse::<i64>().ok(),
            WirePort::Number(n) => Some(*n),
        }
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| {
            let shown = match &e.port {
                WirePort::Text(t) => format!("`{t}`"),
                WirePort::Number(n) => n.to_string(),
            };
            (field("port"), format!("{shown} is not a port in 1-65535"))
        })?;
        let namespace = match e.namespace.trim() {
            "" => DEFAULT_NAMESPACE.to_string(),
            ns => ns.to_string(),
        };
        match namespace_of.get(&e.name) {
            Some(other) if *other != namespace => {
                return Err((
                    field("name"),
                    format!(
                        "`{}` is also an endpoint in namespace `{other}`; igw names endpoints by name alone, so give them distinct names",
                        e.name
                    ),
                ));
            }
            _ => {
                namespace_of.insert(e.name.clone(), namespace.clone());
            }
        }
        let address = SocketAddr::new(ip, port as u16);
        let metrics_host = Some(e.metrics_host.trim().to_string())
            .filter(|h| !h.is_empty() && *h != address.to_string());
        let entry = FileEndpoint {
            namespace: namespace.clone(),
            endpoint: Endpoint {
                name: e.name.clone(),
                address,
            },
            labels: e.labels,
            metrics_host,
        };
        match at.get(&(namespace.clone(), e.name.clone())) {
            // The last occurrence wins, in the first one's place.
            Some(&j) => endpoints[j] = entry,
            None => {
                at.insert((namespace, e.name), endpoints.len());
                endpoints.push(entry);
            }
        }
    }
    Ok(EndpointsFile { endpoints })
}

#[cfg(test)]
#[path = "endpoints_file_tests.rs"]
mod tests;
