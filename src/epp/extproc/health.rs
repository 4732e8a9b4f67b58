//! The gRPC Health Checking service (`grpc.health.v1.Health`, tonic-health) on its own
//! listener, with the service names GIE's EPP and BBR answer for (gie-facts §1.9).
//!
//! Liveness-type names report SERVING from the start; readiness-type names start
//! NOT_SERVING and follow [`HealthReporter::set_ready`], which the host calls once it
//! can take traffic. A name never registered answers gRPC `NOT_FOUND` (GIE answers
//! SERVICE_UNKNOWN only under leader election). Served in plain text, as kubelet's gRPC
//! probes and Envoy's health checker of the ext_proc cluster expect.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthService;

use super::server::{GrpcServer, GrpcServing, ServeError};

/// The ext_proc service's name, which Envoy's `grpc_health_check.service_name` asks for.
pub const EXT_PROC_SERVICE: &str = "envoy.service.ext_proc.v3.ExternalProcessor";
/// The EPP's extra readiness name.
pub const INFERENCE_EXTENSION_SERVICE: &str = "inference-extension";

/// Which names the health service answers for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthNames {
    /// SERVING while the process runs.
    pub liveness: Vec<String>,
    /// SERVING only after [`HealthReporter::set_ready`]`(true)`.
    pub readiness: Vec<String>,
}

impl HealthNames {
    /// GIE's names: `liveness`; `readiness`, `""` and the ext_proc service.
    pub fn gie() -> HealthNames {
        HealthNames {
            liveness: vec!["liveness".into()],
            readiness: vec!["readiness".into(), String::new(), EXT_PROC_SERVICE.into()],
        }
    }

    /// The EPP's: GIE's plus `inference-extension`.
    pub fn epp() -> HealthNames {
        let mut names = HealthNames::gie();
        names.readiness.push(INFERENCE_EXTENSION_SERVICE.into());
        names
    }
}

/// The host's handle on the statuses served.
#[derive(Clone)]
pub struct HealthReporter {
    inner: tonic_health::server::HealthReporter,
    names: Arc<HealthNames>,
}

fn status(serving: bool) -> ServingStatus {
    if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

impl HealthReporter {
    /// Flips every readiness-type name.
    pub async fn set_ready(&self, ready: bool) {
        for name in &self.names.readiness {
            self.inner.set_service_status(name, status(ready)).await;
        }
    }

    /// Another health service answering from these statuses: to serve health on a
    /// second port too (Envoy health-checks the ext_proc port itself).
    pub fn service(&self) -> Health {
        Health {
            service: HealthServer::new(HealthService::from_health_reporter(self.inner.clone())),
        }
    }

    /// Flips every liveness-type name.
    pub async fn set_live(&self, live: bool) {
        for name in &self.names.liveness {
            self.inner.set_service_status(name, status(live)).await;
        }
    }
}

/// The health service, ready for [`serve_health`].
pub struct Health {
    service: HealthServer<HealthService>,
}

impl Health {
    /// The service as routes, to serve some other way than [`serve_health`] (over TLS,
    /// or next to other services).
    pub fn into_routes(self) -> Routes {
        Routes::new(self.service)
    }

    /// `routes` with this health service beside them.
    pub fn add_to(self, routes: Routes) -> Routes {
        routes.add_service(self.service)
    }
}

/// A health service answering for `names` (liveness SERVING, readiness NOT_SERVING),
/// and the reporter that flips them.
pub async fn health(names: HealthNames) -> (HealthReporter, Health) {
    let inner = tonic_health::server::HealthReporter::new();
    let reporter = HealthReporter {
        inner: inner.clone(),
        names: Arc::new(names),
    };
    // tonic-health starts `""` as SERVING; GIE counts it as readiness.
    reporter.set_live(true).await;
    reporter.set_ready(false).await;
    let service = HealthServer::new(HealthService::from_health_reporter(inner));
    (reporter, Health { service })
}

/// Serves `health` in plain text on `listener` until `shutdown` completes. Checks are
/// unary and quick, so the drain is short.
pub async fn serve_health<F>(
    listener: TcpListener,
    health: Health,
    shutdown: F,
) -> Result<(), ServeError>
where
    F: Future<Output = ()> + Send,
{
    let serving = GrpcServing {
        drain_timeout: Duration::from_secs(1),
        ..GrpcServing::default()
    };
    GrpcServer::new(&serving, health.into_routes())?
        .serve(listener, shutdown)
        .await
}
