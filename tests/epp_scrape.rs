//! The picker's scrape loop over real HTTP: scripted metrics servers on 127.0.0.1:0
//! that turn good, garbage, erroring, unreachable, hung and good again, and the real
//! simulator in-process.
//!
//! Rounds are driven by calling `scrape_once()` directly; the loop test waits on the
//! scraper's round counter. Nothing sleeps: the only waits are on responses and on
//! the scrape timeout itself.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use igw::epp::clock::TokioClock;
use igw::epp::datastore::{Datastore, Health, PoolSnapshot};
use igw::epp::endpoint::Endpoint;
use igw::epp::metric_mapping::MetricMapping;
use igw::epp::scrape::{ScrapeConfig, Scraper};
use igw::sim::server::{Listen, spawn};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What a scripted server answers on `/metrics`.
#[derive(Clone, Debug)]
enum Reply {
    Metrics(String),
    Status(u16),
    /// Never answers.
    Hang,
}

/// A server's current reply, and how many requests it has had.
#[derive(Debug)]
struct Scripted {
    reply: Mutex<Reply>,
    hits: AtomicUsize,
}

type Script = Arc<Scripted>;

fn script(reply: Reply) -> Script {
    Arc::new(Scripted {
        reply: Mutex::new(reply),
        hits: AtomicUsize::new(0),
    })
}

fn vllm_text(queue: u32, running: u32, kv: f64) -> Reply {
    Reply::Metrics(format!(
        "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{{model_name=\"m\"}} {queue}.0\n\
         vllm:num_requests_running{{model_name=\"m\"}} {running}.0\n\
         vllm:kv_cache_usage_perc{{model_name=\"m\"}} {kv}\n"
    ))
}

/// A listener that can be re-bound on the same port right after the last one closed.
fn bind(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.bind(addr).expect("bind");
    socket.listen(64).expect("listen")
}

struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Server {
    fn start(listener: TcpListener, script: Script) -> Server {
        let addr = listener.local_addr().expect("address");
        let app = Router::new().route(
            "/metrics",
            get(move || {
                script.hits.fetch_add(1, Ordering::Relaxed);
                let reply = script.reply.lock().expect("script").clone();
                async move {
                    match reply {
                        Reply::Metrics(text) => (StatusCode::OK, text),
                        Reply::Status(code) => (
                            StatusCode::from_u16(code).expect("status"),
                            "error".to_string(),
                        ),
                        Reply::Hang => std::future::pending().await,
                    }
                }
            }),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .expect("server runs");
        });
        Server { addr, stop, task }
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        self.task.await.expect("server task");
    }
}

fn endpoint(name: &str, addr: SocketAddr) -> Endpoint {
    Endpoint {
        name: name.to_string(),
        address: addr,
    }
}

/// A scraper whose rounds wait for every scrape (the interval is long) unless
/// `interval` says otherwise; `run()` is not used here, so nothing ticks.
fn scraper(
    endpoints: Vec<Endpoint>,
    interval: Duration,
    timeout: Duration,
) -> (Arc<Datastore>, Scraper) {
    let ds = Arc::new(Datastore::new("pool", endpoints, Duration::from_secs(2)));
    let config = ScrapeConfig {
        interval,
        timeout,
        ..ScrapeConfig::default()
    };
    let mapping = Arc::new(MetricMapping::builtin("vllm").expect("vllm"));
    let s = Scraper::new(ds.clone(), mapping, Arc::new(TokioClock::new()), config);
    (ds, s)
}

fn state<'a>(snap: &'a PoolSnapshot, name: &str) -> &'a igw::epp::datastore::EndpointState {
    snap.get(name).expect("endpoint in the pool")
}

fn moves(report: &igw::epp::scrape::RoundReport) -> Vec<(String, Health, Health)> {
    report
        .transitions
        .iter()
        .map(|t| (t.endpoint.name.clone(), t.from, t.to))
        .collect()
}

#[tokio::test]
async fn endpoints_go_unhealthy_and_recover_with_their_metrics() {
    use Health::*;
    let flaky = script(vllm_text(2, 1, 0.25));
    let steady = script(vllm_text(0, 4, 0.5));
    let server = Server::start(bind("127.0.0.1:0".parse().unwrap()), flaky.clone());
    let addr = server.addr;
    let other = Server::start(bind("127.0.0.1:0".parse().unwrap()), steady);
    let (ds, mut scraper) = scraper(
        vec![endpoint("flaky", addr), endpoint("steady", other.addr)],
        Duration::from_secs(30),
        Duration::from_secs(5),
    );

    let set = |reply: Reply| *flaky.reply.lock().unwrap() = reply;
    let mut version = ds.snapshot().version;
    let mut round = async |scraper: &mut Scraper| {
        let report = scraper.scrape_once().await;
        let snap = ds.snapshot();
        // One snapshot per round, however many endpoints.
        assert_eq!(snap.version, version + 1);
        version = snap.version;
        assert_eq!(state(&snap, "steady").health, Healthy);
        (report, snap)
    };

    // Good metrics: both healthy, values as served.
    let (report, snap) = round(&mut scraper).await;
    assert_eq!(
        moves(&report),
        [
            ("flaky".into(), Pending, Healthy),
            ("steady".into(), Pending, Healthy)
        ]
    );
    let m = state(&snap, "flaky").metrics.clone().unwrap();
    assert_eq!(
        (m.waiting_queue_size, m.running_requests, m.kv_cache_usage),
        (2, 1, 0.25)
    );
    assert_eq!(snap.candidates(m.updated_at).len(), 2);

    // Garbage: unhealthy, with the extraction error; the transition is reported once.
    set(Reply::Metrics("<html>maintenance</html>\n".into()));
    let (report, snap) = round(&mut scraper).await;
    assert_eq!(moves(&report), [("flaky".into(), Healthy, Unhealthy)]);
    let error = state(&snap, "flaky").last_error.clone().unwrap();
    assert!(
        error.contains("vllm:num_requests_waiting") && error.contains("not found"),
        "{error}"
    );
    assert_eq!(snap.candidates(m.updated_at).len(), 1);

    // Non-200: still unhealthy, no new transition, the error updated.
    set(Reply::Status(500));
    let (report, snap) = round(&mut scraper).await;
    assert!(report.transitions.is_empty());
    let error = state(&snap, "flaky").last_error.clone().unwrap();
    assert!(error.contains("HTTP 500"), "{error}");

    // Server gone: connection refused.
    server.shutdown().await;
    let (report, snap) = round(&mut scraper).await;
    assert!(report.transitions.is_empty());
    let error = state(&snap, "flaky").last_error.clone().unwrap();
    assert!(error.to_lowercase().contains("connect"), "{error}");
    // The last good metrics are kept for display.
    assert_eq!(
        state(&snap, "flaky")
            .metrics
            .as_ref()
            .unwrap()
            .waiting_queue_size,
        2
    );

    // Back on the same address with fresh metrics: healthy again.
    set(vllm_text(0, 3, 0.125));
    let server = Server::start(bind(addr), flaky.clone());
    let (report, snap) = round(&mut scraper).await;
    assert_eq!(moves(&report), [("flaky".into(), Unhealthy, Healthy)]);
    let flaky_state = state(&snap, "flaky");
    assert_eq!(flaky_state.last_error, None);
    let m = flaky_state.metrics.clone().unwrap();
    assert_eq!(
        (m.waiting_queue_size, m.running_requests, m.kv_cache_usage),
        (0, 3, 0.125)
    );

    server.shutdown().await;
    other.shutdown().await;
}

#[tokio::test]
async fn a_hung_endpoint_neither_delays_the_round_nor_stays_healthy() {
    let hung = script(Reply::Hang);
    let good = script(vllm_text(1, 1, 0.1));
    let slow = Server::start(bind("127.0.0.1:0".parse().unwrap()), hung.clone());
    let fast = Server::start(bind("127.0.0.1:0".parse().unwrap()), good.clone());
    // Rounds end after 200 ms; a scrape may take 1.5 s.
    let (ds, mut scraper) = scraper(
        vec![endpoint("slow", slow.addr), endpoint("fast", fast.addr)],
        Duration::from_millis(200),
        Duration::from_millis(1500),
    );

    // Rounds go on while the hung scrape runs: the fast endpoint turns healthy (and is
    // scraped round after round) before the slow one has an outcome.
    let mut report = scraper.scrape_once().await;
    assert!(report.pending >= 1, "{report:?}");
    let mut fast_healthy_while_slow_pending = false;
    let mut rounds = 1;
    while report.pending > 0 {
        let snap = ds.snapshot();
        if state(&snap, "slow").health == Health::Pending
            && state(&snap, "fast").health == Health::Healthy
        {
            fast_healthy_while_slow_pending = true;
        }
        report = scraper.scrape_once().await;
        rounds += 1;
    }
    assert!(fast_healthy_while_slow_pending);
    assert!(rounds > 2, "{rounds} rounds");
    // Not scraped again while its scrape was running; it failed at its timeout.
    assert_eq!(hung.hits.load(Ordering::Relaxed), 1);
    assert!(good.hits.load(Ordering::Relaxed) >= 2);
    let snap = ds.snapshot();
    let slow_state = state(&snap, "slow");
    assert_eq!(slow_state.health, Health::Unhealthy);
    let error = slow_state.last_error.clone().unwrap_or_default();
    assert!(error.contains("timed out"), "{error}");
    assert_eq!(state(&snap, "fast").health, Health::Healthy);

    // The hung connection is still open server-side; aborting the server task drops it.
    slow.task.abort();
    fast.shutdown().await;
}

#[tokio::test]
async fn the_loop_scrapes_the_simulator_until_shutdown() {
    let mut config = support::config();
    config.engine.max_loras = 3;
    let model = config.model.clone();
    let sim = spawn(config, Listen::local(2))
        .await
        .expect("simulator starts");
    let endpoints = sim
        .addrs()
        .iter()
        .enumerate()
        .map(|(i, &a)| endpoint(&format!("sim-rank-{i}"), a))
        .collect();
    let (ds, scraper) = scraper(endpoints, Duration::from_millis(20), Duration::from_secs(5));
    let mut rounds = scraper.subscribe_rounds();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(scraper.run(async {
        let _ = stopped.await;
    }));

    let waited = tokio::time::timeout(Duration::from_secs(60), rounds.wait_for(|&n| n >= 2)).await;
    assert!(matches!(waited, Ok(Ok(_))), "the loop runs rounds");
    let snap = ds.snapshot();
    for e in &snap.endpoints {
        assert_eq!(
            e.health,
            Health::Healthy,
            "{}: {:?}",
            e.endpoint.name,
            e.last_error
        );
        let m = e.metrics.as_ref().expect("metrics");
        assert_eq!((m.waiting_queue_size, m.running_requests), (0, 0));
        assert_eq!(m.kv_cache_usage, 0.0);
        assert_eq!(m.max_active_adapters, 3);
        assert_eq!(m.served_model.as_deref(), Some(model.as_str()));
        assert!(m.cache_block_size.is_some_and(|b| b > 0));
        assert!(m.cache_num_blocks.is_some_and(|b| b > 0));
    }

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the loop stops on shutdown")
        .expect("loop task");
    sim.shutdown().await.expect("simulator stops");
}
