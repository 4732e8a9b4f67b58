//! A stage's recorder for all its requests and one per LoRA adapter: inference-perf
//! writes an `adapter_<name>_lifecycle_metrics.json` per adapter over the requests
//! that named it (its `per_adapter` report, on by default), so a multi-adapter run
//! shows which adapters routing helped.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::{RequestSample, Slo, StageRecorder, StageSummary};

/// All requests, and the requests of each adapter by name.
#[derive(Debug)]
pub struct StageRecorders {
    pub all: StageRecorder,
    pub by_adapter: BTreeMap<String, StageRecorder>,
    slo: Slo,
}

/// A run's summary: all requests, and each adapter's (by name).
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub all: StageSummary,
    pub by_adapter: BTreeMap<String, StageSummary>,
}

impl StageRecorders {
    pub fn new(slo: Slo) -> StageRecorders {
        StageRecorders {
            all: StageRecorder::new(slo.clone()),
            by_adapter: BTreeMap::new(),
            slo,
        }
    }

    /// The recorder of `adapter`, created empty on first use.
    pub fn adapter(&mut self, adapter: &str) -> &mut StageRecorder {
        if !self.by_adapter.contains_key(adapter) {
            let recorder = StageRecorder::new(self.slo.clone());
            self.by_adapter.insert(adapter.to_string(), recorder);
        }
        self.by_adapter
            .get_mut(adapter)
            .expect("inserted just above")
    }

    /// Records one request, also under its adapter if it named one.
    pub fn record(&mut self, sample: &RequestSample, adapter: Option<&str>) {
        self.all.record(sample);
        if let Some(name) = adapter {
            self.adapter(name).record(sample);
        }
    }

    /// Records one inter-token gap, also under the request's adapter.
    pub fn record_itl(&mut self, gap: Duration, adapter: Option<&str>) {
        self.all.record_itl(gap);
        if let Some(name) = adapter {
            self.adapter(name).record_itl(gap);
        }
    }

    /// Adds gaps recorded elsewhere for `adapter`'s requests only (`all` gets its
    /// own, complete histogram through `self.all`).
    pub fn add_adapter_itl(&mut self, adapter: &str, gaps: &Histogram<u64>) {
        self.adapter(adapter).add_itl(gaps);
    }

    /// Appends a later stage (see [`StageRecorder::append`]), adapter by adapter.
    pub fn append(&mut self, next: &StageRecorders) {
        self.all.append(&next.all);
        for (name, recorder) in &next.by_adapter {
            self.adapter(name).append(recorder);
        }
    }

    /// The summaries of appended stages.
    pub fn run_summary(&self) -> RunSummary {
        RunSummary {
            all: self.all.run_summary(),
            by_adapter: self
                .by_adapter
                .iter()
                .map(|(name, r)| (name.clone(), r.run_summary()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sent_ms: u64, out: u64) -> RequestSample {
        let ms = Duration::from_millis;
        RequestSample {
            scheduled: ms(sent_ms),
            sent: ms(sent_ms),
            first_token: Some(ms(sent_ms + 100)),
            done: ms(sent_ms + 1_000),
            prompt_tokens: 10,
            output_tokens: out,
            cached_tokens: 0,
            error: None,
        }
    }

    #[test]
    fn requests_count_in_all_and_under_their_adapter() {
        let mut stage = StageRecorders::new(Slo::default());
        stage.record(&sample(0, 10), None);
        stage.record(&sample(0, 20), Some("sql-lora"));
        stage.record_itl(Duration::from_millis(5), Some("sql-lora"));
        stage.record_itl(Duration::from_millis(9), None);
        let mut next = StageRecorders::new(Slo::default());
        next.record(&sample(0, 40), Some("chat-lora"));
        next.record(&sample(0, 80), Some("sql-lora"));
        let mut run = StageRecorders::new(Slo::default());
        run.append(&stage);
        run.append(&next);

        let s = run.run_summary();
        assert_eq!(s.all.successes.output_tokens.total, 150);
        let names: Vec<&str> = s.by_adapter.keys().map(String::as_str).collect();
        assert_eq!(names, ["chat-lora", "sql-lora"]);
        let sql = &s.by_adapter["sql-lora"];
        assert_eq!(sql.successes.count, 2);
        assert_eq!(sql.successes.output_tokens.total, 100);
        assert_eq!(s.by_adapter["chat-lora"].successes.output_tokens.total, 40);
        // The adapter's ITL holds its own gaps only; all requests' holds both.
        let itl = |r: &StageSummary| r.successes.latency.inter_token_latency.max;
        assert!((itl(sql) - 0.005).abs() < 1e-5);
        assert!((itl(&s.all) - 0.009).abs() < 1e-5);
    }
}
