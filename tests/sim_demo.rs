//! The README's main command, `igw sim demo`, run in-process: it must start a pool,
//! stream every request through it and report prefix-cache hits on repeats.

use clap::Parser;
use igw::sim::demo::DemoOptions;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    demo: DemoOptions,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_streams_through_every_replica_and_reports_cache_hits() {
    let cli = Cli::parse_from([
        "demo",
        "--replicas",
        "2",
        "--requests",
        "6",
        "--concurrency",
        "2",
        "--max-tokens",
        "4",
        "--speedup",
        "50",
    ]);
    let report = cli.demo.run().await.expect("demo runs");
    assert!(!report.contains("error"), "{report}");
    let rows: Vec<&str> = report
        .lines()
        .filter(|l| l.trim_start().starts_with(char::is_numeric) && l.contains("http://"))
        .collect();
    assert_eq!(rows.len(), 6, "{report}");
    for row in &rows {
        let tokens: u32 = row.split_whitespace().nth(4).unwrap().parse().unwrap();
        assert_eq!(tokens, 4, "{row}");
    }
    // Requests 4 and 5 repeat the system prompt of 0 and 1 on the same replicas.
    let cached: u32 = rows[4].split_whitespace().nth(5).unwrap().parse().unwrap();
    assert!(cached > 0, "{report}");
    assert_eq!(report.matches("prefix_hits").count(), 2, "{report}");
}
