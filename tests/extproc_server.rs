//! The shared gRPC serving of `epp::extproc` over real TCP on 127.0.0.1:0: the health
//! service's statuses, plain and over TLS (a self-signed certificate and a cert
//! directory, the client trusting exactly the served certificate), startup errors, and
//! the drain at shutdown.
//!
//! Waits are on observable state (a reply, a refused connection) under a deadline;
//! nothing sleeps to let things happen.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use igw::epp::extproc::{
    GrpcServer, GrpcServing, HealthNames, HealthReporter, ServeError, Tls, health, serve_health,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const DEADLINE: Duration = Duration::from_secs(10);

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    (l, addr.to_string())
}

async fn check(client: &mut HealthClient<Channel>, service: &str) -> Result<ServingStatus, Code> {
    client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status())
        .map_err(|s| s.code())
}

async fn plain_client(addr: &str) -> HealthClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    HealthClient::new(channel)
}

/// Readiness names start NOT_SERVING, liveness SERVING; `set_ready` flips readiness.
async fn assert_flips(client: &mut HealthClient<Channel>, reporter: &HealthReporter) {
    for name in [
        "readiness",
        "",
        "envoy.service.ext_proc.v3.ExternalProcessor",
    ] {
        assert_eq!(
            check(client, name).await,
            Ok(ServingStatus::NotServing),
            "{name:?}"
        );
    }
    assert_eq!(check(client, "liveness").await, Ok(ServingStatus::Serving));
    assert_eq!(check(client, "no-such-service").await, Err(Code::NotFound));
    reporter.set_ready(true).await;
    for name in [
        "readiness",
        "",
        "envoy.service.ext_proc.v3.ExternalProcessor",
    ] {
        assert_eq!(
            check(client, name).await,
            Ok(ServingStatus::Serving),
            "{name:?}"
        );
    }
    reporter.set_live(false).await;
    assert_eq!(
        check(client, "liveness").await,
        Ok(ServingStatus::NotServing)
    );
}

#[tokio::test]
async fn plain_health_reports_not_serving_then_serving() {
    let (l, addr) = listener().await;
    let (reporter, service) = health(HealthNames::epp()).await;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve_health(l, service, async {
        let _ = stopped.await;
    }));
    let mut client = plain_client(&addr).await;
    assert_flips(&mut client, &reporter).await;
    assert_eq!(
        check(&mut client, "inference-extension").await,
        Ok(ServingStatus::Serving)
    );
    let _ = stop.send(());
    server.await.expect("join").expect("serve");
}

/// Serves the health service over TLS from `tls`; returns a client trusting the served
/// certificate for `localhost`.
async fn tls_health(tls: Tls) -> (HealthClient<Channel>, HealthReporter, oneshot::Sender<()>) {
    let (l, addr) = listener().await;
    let (reporter, service) = health(HealthNames::gie()).await;
    let serving = GrpcServing {
        tls,
        ..GrpcServing::default()
    };
    let server = GrpcServer::new(&serving, service.into_routes()).expect("TLS identity loads");
    let pem = server
        .certificate_pem()
        .expect("a TLS server has a certificate")
        .to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve(l, async {
        let _ = stopped.await;
    }));
    let port = addr.rsplit(':').next().unwrap().to_string();
    let channel = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(pem))
                .domain_name("localhost"),
        )
        .expect("client TLS config")
        .connect()
        .await
        .expect("TLS connect");
    (HealthClient::new(channel), reporter, stop)
}

#[tokio::test]
async fn self_signed_tls_health_reports_not_serving_then_serving() {
    let (mut client, reporter, _stop) = tls_health(Tls::SelfSigned).await;
    assert_flips(&mut client, &reporter).await;
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("igw-extproc-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test]
async fn cert_dir_tls_health_reports_not_serving_then_serving() {
    let dir = temp_dir("certs");
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join("tls.crt"), made.cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), made.signing_key.serialize_pem()).unwrap();
    let (mut client, reporter, _stop) = tls_health(Tls::CertDir(dir.clone())).await;
    assert_flips(&mut client, &reporter).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn bad_cert_dirs_fail_at_startup_naming_the_file() {
    let serving = |dir: &PathBuf| GrpcServing {
        tls: Tls::CertDir(dir.clone()),
        ..GrpcServing::default()
    };
    let empty = temp_dir("empty");
    let (_, service) = health(HealthNames::gie()).await;
    let Err(err) = GrpcServer::new(&serving(&empty), service.into_routes()) else {
        panic!("a missing tls.crt must fail");
    };
    assert!(matches!(err, ServeError::ReadTls { .. }), "{err}");
    assert!(err.to_string().contains("tls.crt"), "{err}");

    let garbage = temp_dir("garbage");
    std::fs::write(garbage.join("tls.crt"), "not a certificate").unwrap();
    std::fs::write(garbage.join("tls.key"), "not a key").unwrap();
    let (_, service) = health(HealthNames::gie()).await;
    let Err(err) = GrpcServer::new(&serving(&garbage), service.into_routes()) else {
        panic!("garbage PEM must fail");
    };
    assert!(matches!(err, ServeError::BadTls { .. }), "{err}");
    assert!(
        err.to_string().contains(&garbage.display().to_string()),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(empty);
    let _ = std::fs::remove_dir_all(garbage);
}

#[tokio::test]
async fn shutdown_refuses_new_connections_and_ends_open_streams_after_the_drain() {
    let (l, addr) = listener().await;
    let (reporter, service) = health(HealthNames::gie()).await;
    let serving = GrpcServing {
        drain_timeout: Duration::from_secs(2),
        ..GrpcServing::default()
    };
    let server = GrpcServer::new(&serving, service.into_routes()).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(server.serve(l, async {
        let _ = stopped.await;
    }));
    let mut client = plain_client(&addr).await;
    let mut watch = client
        .watch(HealthCheckRequest {
            service: "readiness".into(),
        })
        .await
        .expect("watch starts")
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::NotServing);

    let _ = stop.send(());
    let start = Instant::now();
    while tokio::net::TcpStream::connect(&addr).await.is_ok() {
        assert!(start.elapsed() < DEADLINE, "the listener never closed");
        tokio::task::yield_now().await;
    }
    // The stream opened before shutdown is still served during the drain...
    reporter.set_ready(true).await;
    let update = watch
        .message()
        .await
        .expect("still open")
        .expect("an update");
    assert_eq!(update.status(), ServingStatus::Serving);
    // ...and ended with UNAVAILABLE when the drain timeout passes.
    let end = watch.message().await.expect_err("ended by the drain");
    assert_eq!(end.code(), Code::Unavailable, "{end}");
    tokio::time::timeout(DEADLINE, server)
        .await
        .expect("serve returns after the drain")
        .expect("join")
        .expect("serve");
}
