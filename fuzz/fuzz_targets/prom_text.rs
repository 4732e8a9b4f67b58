//! `prom_text`: the Prometheus text parser and the metric extraction of a scrape, over
//! arbitrary bytes read as the scraper reads a body (lossy UTF-8), in both formats.
//!
//! Nothing may panic, and:
//! - every error names a line of the text, and every label of a sample can be looked
//!   up by its name and matches its own unescaped value;
//! - `parse_selected` only skips lines: what it yields is a subsequence of a full
//!   parse, and the samples carrying a selected name are exactly the full parse's;
//! - an extraction that succeeds, with any built-in engine mapping (vLLM's is the
//!   default), reports a KV usage that is finite and within 0..=1.

#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use igw::epp::metric_mapping::{BUILTIN_ENGINES, MetricMapping, extract_format};
use igw::epp::prom_text::{Format, ParseError, Sample, parse_format, parse_selected};
use libfuzzer_sys::fuzz_target;

/// The names vLLM's mapping reads (its current and older KV gauge included).
static SELECTED: LazyLock<Vec<String>> = LazyLock::new(|| {
    [
        "vllm:num_requests_waiting",
        "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
        "vllm:lora_requests_info",
        "vllm:cache_config_info",
    ]
    .map(String::from)
    .to_vec()
});

static MAPPINGS: LazyLock<Vec<MetricMapping>> = LazyLock::new(|| {
    BUILTIN_ENGINES
        .iter()
        .map(|engine| MetricMapping::builtin(engine).expect("a built-in engine"))
        .collect()
});

/// A parser item in comparable form: a sample's fields (the value by its bits, so NaN
/// equals itself) or the error.
#[derive(Debug, PartialEq)]
enum Item<'a> {
    Sample(&'a str, &'a str, u64, Option<i64>),
    Error(ParseError),
}

fn item<'a>(result: Result<Sample<'a>, ParseError>) -> Item<'a> {
    match result {
        Ok(s) => Item::Sample(s.name, s.labels.raw(), s.value.to_bits(), s.timestamp_ms),
        Err(e) => Item::Error(e),
    }
}

fn check(text: &str, format: Format) {
    // The parser counts a line per `\n`-separated piece.
    let lines = text.split('\n').count();
    let mut full = Vec::new();
    for result in parse_format(text, format) {
        match &result {
            Ok(sample) => {
                for label in sample.labels.iter() {
                    assert!(label.value.matches(&label.value.get()), "{label:?}");
                    assert!(sample.labels.get(label.name).is_some(), "{label:?}");
                }
                let _ = sample.labels.to_string();
            }
            Err(e) => {
                assert!((1..=lines).contains(&e.line), "{e} of {lines} lines");
                let _ = e.to_string();
            }
        }
        full.push(item(result));
    }

    let selected: Vec<Item<'_>> = parse_selected(text, format, &SELECTED).map(item).collect();
    let mut rest = full.iter();
    for wanted in &selected {
        assert!(
            rest.any(|i| i == wanted),
            "parse_selected yielded {wanted:?}, which a full parse does not (in order)"
        );
    }
    let is_selected =
        |i: &&Item<'_>| matches!(i, Item::Sample(name, ..) if SELECTED.iter().any(|n| n == name));
    let full_samples: Vec<&Item<'_>> = full.iter().filter(is_selected).collect();
    let selected_samples: Vec<&Item<'_>> = selected.iter().filter(is_selected).collect();
    assert_eq!(full_samples, selected_samples);

    for mapping in MAPPINGS.iter() {
        match extract_format(text, format, mapping, Duration::ZERO) {
            Ok(m) => assert!(
                m.kv_cache_usage.is_finite() && (0.0..=1.0).contains(&m.kv_cache_usage),
                "{}: KV usage {}",
                mapping.engine(),
                m.kv_cache_usage
            ),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check(&text, Format::Prometheus);
    check(&text, Format::OpenMetrics);
});
