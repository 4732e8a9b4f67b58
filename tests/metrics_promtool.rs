//! Both servers' `/metrics` as scrapers read them, checked by Prometheus's own
//! `promtool check metrics` (Debian's `prometheus` package; `.ci/run` installs it):
//! the gateway's page is clean but for the warnings llm-d's canonical `llm_d_epp_*`
//! names draw from promtool (it reads `_d_` as an abbreviated unit), and the
//! simulator's draws only the warnings real vLLM's names do (`vllm:` holds a colon).
//! The page is Prometheus text 0.0.4 unless the scraper asks for OpenMetrics.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::epp::{picker, replicas, short_request, sim_config};

/// promtool's complaints about `text`, one per line.
fn promtool(text: &str) -> Vec<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is needed ({e}): `apt-get install prometheus` (as .ci/run does)")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .map(str::to_string)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[tokio::test]
async fn both_pages_pass_promtool() {
    let sim = replicas(1, sim_config(Default::default(), 100.0)).await;
    let p = picker(sim.addrs(), |_| {}).await;
    p.wait_healthy(sim.addrs()).await;
    assert_eq!(p.send(&short_request("one"), None).await.status, 200);
    assert_eq!(p.send_raw(b"{not json".to_vec()).await.status, 400);

    let resp = p
        .client
        .get(format!("{}/metrics", p.admin))
        .send()
        .await
        .unwrap();
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    assert!(!text.contains("# EOF"));
    for line in text.lines().filter(|l| l.starts_with("# HELP ")) {
        assert!(
            line.ends_with('.') && !line.ends_with(".."),
            "HELP must end in one period: {line}"
        );
    }
    let complaints: Vec<String> = promtool(&text)
        .into_iter()
        .filter(|l| !(l.starts_with("llm_d_epp_") && l.ends_with("abbreviated units")))
        .collect();
    assert!(
        complaints.is_empty(),
        "promtool on the gateway: {complaints:#?}"
    );

    let open = p
        .client
        .get(format!("{}/metrics", p.admin))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(
        open.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(open.text().await.unwrap().ends_with("# EOF\n"));

    let sim_text = reqwest::get(format!("{}/metrics", sim.base_urls()[0]))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let complaints: Vec<String> = promtool(&sim_text)
        .into_iter()
        .filter(|l| !l.starts_with("vllm:"))
        .collect();
    assert!(
        complaints.is_empty(),
        "promtool on the simulator: {complaints:#?}"
    );
}
