//! Tests of the datastore: health transitions, staleness, candidates and pool
//! averages, shared load counters, and endpoint-set changes.

use super::*;

const MS: Duration = Duration::from_millis(1);

fn endpoint(i: u16) -> Endpoint {
    Endpoint {
        name: format!("e{i}"),
        address: format!("127.0.0.1:{}", 8000 + i).parse().unwrap(),
    }
}

fn store(n: u16) -> Datastore {
    Datastore::new(
        "pool",
        (0..n).map(endpoint).collect(),
        DEFAULT_STALENESS_THRESHOLD,
    )
}

fn metrics(queue: u64, kv: f64, at: Duration) -> EndpointMetrics {
    EndpointMetrics {
        waiting_queue_size: queue,
        running_requests: queue * 2,
        kv_cache_usage: kv,
        updated_at: at,
        ..EndpointMetrics::default()
    }
}

fn ok(store: &Datastore, i: usize, m: EndpointMetrics) -> ScrapeOutcome {
    ScrapeOutcome {
        endpoint: store.snapshot().endpoints[i].endpoint.clone(),
        result: Ok(m),
        timed_out: false,
    }
}

fn failed(store: &Datastore, i: usize, error: &str) -> ScrapeOutcome {
    ScrapeOutcome {
        endpoint: store.snapshot().endpoints[i].endpoint.clone(),
        result: Err(error.to_string()),
        timed_out: false,
    }
}

fn health(store: &Datastore) -> Vec<Health> {
    store
        .snapshot()
        .endpoints
        .iter()
        .map(|e| e.health)
        .collect()
}

fn moves(transitions: &[Transition]) -> Vec<(String, Health, Health)> {
    transitions
        .iter()
        .map(|t| (t.endpoint.name.clone(), t.from, t.to))
        .collect()
}

#[test]
fn endpoints_start_pending_and_are_not_candidates() {
    let ds = store(2);
    let snap = ds.snapshot();
    assert_eq!(health(&ds), [Health::Pending, Health::Pending]);
    assert!(snap.candidates(Duration::ZERO).is_empty());
    assert_eq!(snap.ready_endpoints(Duration::ZERO), 0);
    assert_eq!(snap.average_queue_size(Duration::ZERO), 0.0);
    assert_eq!((snap.pool.as_str(), snap.version), ("pool", 0));
}

#[test]
fn health_follows_scrapes_and_transitions_are_reported_once() {
    use Health::*;
    let ds = store(2);
    let t = Duration::from_millis;

    let changes = ds.publish(
        vec![ok(&ds, 0, metrics(1, 0.5, t(0))), failed(&ds, 1, "refused")],
        t(0),
    );
    assert_eq!(
        moves(&changes),
        [
            ("e0".into(), Pending, Healthy),
            ("e1".into(), Pending, Unhealthy)
        ]
    );
    assert_eq!(changes[1].error.as_deref(), Some("refused"));

    // Same outcomes again: no transitions to log.
    let changes = ds.publish(
        vec![
            ok(&ds, 0, metrics(2, 0.5, t(50))),
            failed(&ds, 1, "refused"),
        ],
        t(50),
    );
    assert!(changes.is_empty());

    // e0 fails (keeping its last metrics for display), e1 recovers.
    let changes = ds.publish(
        vec![
            failed(&ds, 0, "HTTP 500"),
            ok(&ds, 1, metrics(0, 0.1, t(100))),
        ],
        t(100),
    );
    assert_eq!(
        moves(&changes),
        [
            ("e0".into(), Healthy, Unhealthy),
            ("e1".into(), Unhealthy, Healthy)
        ]
    );
    let snap = ds.snapshot();
    assert_eq!(snap.endpoints[0].last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(
        snap.endpoints[0]
            .metrics
            .as_ref()
            .unwrap()
            .waiting_queue_size,
        2
    );
    assert_eq!(snap.endpoints[1].last_error, None);
    let names: Vec<_> = snap
        .candidates(t(100))
        .iter()
        .map(|c| c.endpoint.name.clone())
        .collect();
    assert_eq!(names, ["e1"]);
    assert_eq!(snap.version, 3);
}

#[test]
fn stale_metrics_make_an_endpoint_unhealthy_until_metrics_return() {
    let ds = store(1);
    let threshold = DEFAULT_STALENESS_THRESHOLD;
    ds.publish(
        vec![ok(&ds, 0, metrics(1, 0.2, Duration::ZERO))],
        Duration::ZERO,
    );

    // Readers stop routing to it as soon as its metrics are too old...
    let snap = ds.snapshot();
    assert_eq!(snap.candidates(threshold).len(), 1);
    assert!(snap.candidates(threshold + MS).is_empty());

    // ...and a publish without news for it marks it unhealthy, once.
    let later = threshold + 500 * MS;
    let changes = ds.publish(Vec::new(), later);
    assert_eq!(
        moves(&changes),
        [("e0".into(), Health::Healthy, Health::Unhealthy)]
    );
    assert!(
        changes[0]
            .error
            .as_ref()
            .unwrap()
            .starts_with("metrics are stale")
    );
    assert!(ds.publish(Vec::new(), later + MS).is_empty());

    let changes = ds.publish(vec![ok(&ds, 0, metrics(1, 0.2, later))], later);
    assert_eq!(
        moves(&changes),
        [("e0".into(), Health::Unhealthy, Health::Healthy)]
    );
    assert_eq!(ds.snapshot().candidates(later).len(), 1);
}

#[test]
fn candidates_copy_load_and_fresh_metrics_reset_the_sent_count() {
    let ds = store(1);
    ds.publish(
        vec![ok(&ds, 0, metrics(3, 0.3, Duration::ZERO))],
        Duration::ZERO,
    );
    let old = ds.snapshot();
    let load = old.endpoints[0].load.clone();
    let guard = load.start_request(40);
    let _second = load.start_request(7);
    drop(guard);

    let c = &old.candidates(Duration::ZERO)[0];
    assert_eq!((c.in_flight, c.sent_since_scrape), (1, 2));
    assert_eq!(c.in_flight_tokens, 7);
    assert_eq!(c.metrics.as_ref().unwrap().waiting_queue_size, 3);

    // The next scrape starts after both requests, so its metrics cover them.
    load.scrape_started();
    ds.publish(vec![ok(&ds, 0, metrics(5, 0.3, 50 * MS))], 50 * MS);
    let c = &ds.snapshot().candidates(50 * MS)[0];
    assert_eq!((c.in_flight, c.sent_since_scrape), (1, 0));
    assert_eq!(c.metrics.as_ref().unwrap().waiting_queue_size, 5);
    // The old snapshot is unchanged but shares the counters.
    assert_eq!(
        old.endpoints[0]
            .metrics
            .as_ref()
            .unwrap()
            .waiting_queue_size,
        3
    );
    assert_eq!(old.candidates(Duration::ZERO)[0].sent_since_scrape, 0);
}

#[test]
fn pool_averages_count_routable_endpoints_only() {
    let ds = store(3);
    let now = 10 * MS;
    ds.publish(
        vec![
            ok(&ds, 0, metrics(2, 0.2, now)),
            ok(&ds, 1, metrics(4, 0.6, now)),
            failed(&ds, 2, "timeout"),
        ],
        now,
    );
    let snap = ds.snapshot();
    assert_eq!(snap.ready_endpoints(now), 2);
    assert!((snap.average_kv_cache_utilization(now) - 0.4).abs() < 1e-12);
    assert_eq!(snap.average_queue_size(now), 3.0);
    assert_eq!(snap.average_running_requests(now), 6.0);
    assert_eq!(snap.get("e2").unwrap().health, Health::Unhealthy);
    assert!(snap.get("nope").is_none());
}

#[test]
fn endpoint_set_changes_keep_known_endpoints() {
    let ds = store(2);
    ds.publish(
        vec![ok(&ds, 1, metrics(1, 0.1, Duration::ZERO))],
        Duration::ZERO,
    );
    let kept_load = ds.snapshot().endpoints[1].load.clone();

    ds.set_endpoints(vec![endpoint(1), endpoint(7)]);
    let snap = ds.snapshot();
    let names: Vec<_> = snap
        .endpoints
        .iter()
        .map(|e| e.endpoint.name.as_str())
        .collect();
    assert_eq!(names, ["e1", "e7"]);
    assert!(Arc::ptr_eq(&snap.endpoints[0].load, &kept_load));
    assert_eq!(snap.endpoints[0].health, Health::Healthy);
    assert_eq!(snap.endpoints[1].health, Health::Pending);

    // An outcome for a removed endpoint is ignored.
    let gone = ScrapeOutcome {
        endpoint: Arc::new(endpoint(0)),
        result: Err("late".into()),
        timed_out: false,
    };
    assert!(ds.publish(vec![gone], Duration::ZERO).is_empty());
}

#[test]
fn a_timed_out_scrape_keeps_a_busy_endpoint_routable_until_its_metrics_go_stale() {
    let s = store(1);
    s.publish(
        vec![ok(&s, 0, metrics(1, 0.1, Duration::ZERO))],
        Duration::ZERO,
    );
    let slow = |s: &Datastore| ScrapeOutcome {
        timed_out: true,
        ..failed(s, 0, "scrape timed out after 1s")
    };
    // One second on, the scrape timed out: still routable on 1 s-old metrics.
    let t = Duration::from_secs(1);
    assert!(s.publish(vec![slow(&s)], t).is_empty(), "no health change");
    let snap = s.snapshot();
    assert_eq!(snap.candidates(t).len(), 1);
    assert_eq!(
        snap.endpoints[0].last_error.as_deref(),
        Some("scrape timed out after 1s")
    );
    // Past the 2 s staleness threshold a timeout no longer counts as busy.
    let t = Duration::from_millis(2_500);
    s.publish(vec![slow(&s)], t);
    assert_eq!(health(&s), vec![Health::Unhealthy]);
    assert!(s.snapshot().candidates(t).is_empty());
    // A refusal takes it out at once, however fresh its metrics.
    let s = store(1);
    s.publish(
        vec![ok(&s, 0, metrics(1, 0.1, Duration::ZERO))],
        Duration::ZERO,
    );
    s.publish(vec![failed(&s, 0, "connection refused")], 10 * MS);
    assert_eq!(health(&s), vec![Health::Unhealthy]);
}
