//! What the replicas themselves report after a live stage, read the way a Prometheus
//! server would: `GET /metrics` on each simulator, parsed as Prometheus text.

use std::net::SocketAddr;

use crate::epp::prom_text;

/// vLLM's preemption counter (sim-facts §2.1).
const PREEMPTIONS: &str = "vllm:num_preemptions_total";

/// Each replica's `vllm:num_preemptions_total` (summed over its label sets), in
/// `addrs` order. The pool starts cold for every job, so this is the stage's count.
pub async fn preemptions(
    client: &reqwest::Client,
    addrs: &[SocketAddr],
) -> anyhow::Result<Vec<u64>> {
    let mut counts = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let url = format!("http://{addr}/metrics");
        let text = client
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| anyhow::anyhow!("{url}: {e}"))?
            .text()
            .await
            .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        counts.push(counter(&text).ok_or_else(|| anyhow::anyhow!("{url}: no {PREEMPTIONS}"))?);
    }
    Ok(counts)
}

/// The sum of [`PREEMPTIONS`] over its samples in `text`; `None` if it has none.
/// Malformed lines are skipped: one bad line must not hide the rest.
fn counter(text: &str) -> Option<u64> {
    let values: Vec<f64> = prom_text::parse(text)
        .filter_map(Result::ok)
        .filter(|s| s.name == PREEMPTIONS && s.value.is_finite() && s.value >= 0.0)
        .map(|s| s.value)
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>().round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_is_summed_over_label_sets_and_bad_lines_are_skipped() {
        let text = "\
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine=\"0\",model_name=\"m\"} 3
vllm:num_preemptions_total{engine=\"1\",model_name=\"m\"} 4
vllm:num_preemptions_total{engine=\"2\" garbage
vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 9
";
        assert_eq!(counter(text), Some(7));
    }

    #[test]
    fn a_missing_counter_is_none_not_zero() {
        assert_eq!(counter("vllm:num_requests_running 1\n"), None);
        assert_eq!(counter(""), None);
    }
}
