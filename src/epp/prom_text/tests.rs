//! Tests of the text-format parser: a table of edge cases, the simulator's golden
//! exposition read and written back, and seeded random and mutated inputs that must
//! never make it panic.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;
use crate::sim::metrics::{EngineGauges, EngineMetrics, ReplicaInfo, render_prometheus};

const GOLDEN: &str = include_str!("../../../testdata/sim/metrics.golden.txt");

/// One sample as owned values, for comparisons: name, unescaped labels, value bits,
/// timestamp.
type Owned = (String, Vec<(String, String)>, u64, Option<i64>);

/// What a table case expects: name, labels, value, timestamp; or the error.
type Expected = Result<
    (
        &'static str,
        &'static [(&'static str, &'static str)],
        f64,
        Option<i64>,
    ),
    ParseErrorKind,
>;

fn owned(s: &Sample<'_>) -> Owned {
    let labels = s
        .labels
        .iter()
        .map(|l| (l.name.to_string(), l.value.get().into_owned()))
        .collect();
    (
        s.name.to_string(),
        labels,
        s.value.to_bits(),
        s.timestamp_ms,
    )
}

/// Parses `text` (one line) and compares with `expected`: the sample, or the error.
fn check(text: &str, expected: Expected) {
    check_format(text, Format::Prometheus, expected)
}

fn check_format(text: &str, format: Format, expected: Expected) {
    let got: Vec<_> = parse_format(text, format).collect();
    assert_eq!(got.len(), 1, "{text:?}: {got:?}");
    match (&got[0], expected) {
        (Ok(s), Ok((name, labels, value, ts))) => {
            let want: Owned = (
                name.to_string(),
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                value.to_bits(),
                ts,
            );
            assert_eq!(owned(s), want, "{text:?}");
        }
        (Err(e), Err(kind)) => assert_eq!(e.kind, kind, "{text:?}"),
        (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn sample_lines() {
    use ParseErrorKind::*;
    let cases: &[(&str, Expected)] = &[
        ("up 1", Ok(("up", &[], 1.0, None))),
        (
            "vllm:num_requests_waiting 3.0",
            Ok(("vllm:num_requests_waiting", &[], 3.0, None)),
        ),
        (":leading_colon 2", Ok((":leading_colon", &[], 2.0, None))),
        ("_x{} 2", Ok(("_x", &[], 2.0, None))),
        ("a{b=\"c\"} 1e-05", Ok(("a", &[("b", "c")], 1e-5, None))),
        ("a{b=\"c\",} 1.7e+09", Ok(("a", &[("b", "c")], 1.7e9, None))),
        (
            "a { b = \"c\" , d=\"\" } 4",
            Ok(("a", &[("b", "c"), ("d", "")], 4.0, None)),
        ),
        (
            "a{ b = \"c\" , d=\"\" }  4  ",
            Ok(("a", &[("b", "c"), ("d", "")], 4.0, None)),
        ),
        ("a{b=\"c\"}4", Ok(("a", &[("b", "c")], 4.0, None))),
        ("\t  indented 5", Ok(("indented", &[], 5.0, None))),
        ("crlf 6\r", Ok(("crlf", &[], 6.0, None))),
        // Escapes, and the characters that break regex parsers inside quotes.
        (
            r#"a{p="x\\y\"z\nw"} 1"#,
            Ok(("a", &[("p", "x\\y\"z\nw")], 1.0, None)),
        ),
        (
            r#"a{p="}",q=","} 1"#,
            Ok(("a", &[("p", "}"), ("q", ",")], 1.0, None)),
        ),
        (
            r#"a{p="{ } = #"} 1"#,
            Ok(("a", &[("p", "{ } = #")], 1.0, None)),
        ),
        (
            "a{p=\"héllo ✓\"} 1",
            Ok(("a", &[("p", "héllo ✓")], 1.0, None)),
        ),
        // Special values.
        ("a NaN", Ok(("a", &[], f64::NAN, None))),
        ("a +Inf", Ok(("a", &[], f64::INFINITY, None))),
        ("a -Inf", Ok(("a", &[], f64::NEG_INFINITY, None))),
        ("a -0.5E3", Ok(("a", &[], -500.0, None))),
        ("a .5", Ok(("a", &[], 0.5, None))),
        // Timestamps (0.0.4: integer milliseconds).
        (
            "a 1 1712345678901",
            Ok(("a", &[], 1.0, Some(1712345678901))),
        ),
        ("a 1 -5", Ok(("a", &[], 1.0, Some(-5)))),
        ("a 1 1.5", Err(InvalidTimestamp)),
        ("a 1 x", Err(InvalidTimestamp)),
        ("a 1 2 3", Err(TrailingText)),
        // OpenMetrics exemplars are skipped.
        (
            "a_bucket{le=\"1\"} 3 # {id=\"x\"} 0.5",
            Ok(("a_bucket", &[("le", "1")], 3.0, None)),
        ),
        // Malformed lines.
        ("a", Err(MissingValue)),
        ("a{b=\"c\"}", Err(MissingValue)),
        ("a{b=\"c\"} ", Err(MissingValue)),
        ("a one", Err(InvalidValue)),
        ("a 1,5", Err(InvalidValue)),
        ("a 0x1p3", Err(InvalidValue)),
        ("9a 1", Err(InvalidName)),
        ("a-b 1", Err(InvalidName)),
        ("a.b 1", Err(InvalidName)),
        ("{b=\"c\"} 1", Err(InvalidName)),
        ("a{9=\"c\"} 1", Err(InvalidLabelName)),
        ("a{b:c=\"d\"} 1", Err(ExpectedEquals)),
        ("a{b} 1", Err(ExpectedEquals)),
        ("a{b=c} 1", Err(ExpectedQuote)),
        ("a{b='c'} 1", Err(ExpectedQuote)),
        (r#"a{b="\t"} 1"#, Err(InvalidEscape)),
        (r#"a{b="c\"} 1"#, Err(UnterminatedValue)),
        ("a{b=\"c\" d=\"e\"} 1", Err(ExpectedSeparator)),
        ("a{b=\"c\"", Err(UnterminatedLabels)),
        ("a{b=\"c\",,} 1", Err(InvalidLabelName)),
        ("a{", Err(UnterminatedLabels)),
    ];
    for (text, expected) in cases {
        check(text, *expected);
    }
}

#[test]
fn openmetrics_timestamps_are_seconds() {
    let om = Format::OpenMetrics;
    check_format(
        "a 1 1712345678.9",
        om,
        Ok(("a", &[], 1.0, Some(1712345678900))),
    );
    check_format("a 1 17", om, Ok(("a", &[], 1.0, Some(17000))));
    check_format("a 1 NaN", om, Err(ParseErrorKind::InvalidTimestamp));
    assert_eq!(
        Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        om
    );
    assert_eq!(
        Format::from_content_type("text/plain; version=0.0.4"),
        Format::Prometheus
    );
}

#[test]
fn comments_types_and_eof() {
    let text = "# HELP a Some help with \\ and \"quotes\".\n\
                # TYPE a counter\n\
                a_total 1\n\
                #  a free comment\n\
                \n\
                # TYPE h histogram\n\
                h_bucket{le=\"+Inf\"} 2\n\
                h_count 2\n\
                other 3\n\
                # TYPE bad\n\
                # TYPE x nonsense\n\
                # TYPE 1x gauge\n\
                # EOF\n\
                after_eof 4\n";
    let items: Vec<_> = parse(text).collect();
    let kinds: Vec<_> = items
        .iter()
        .map(|r| {
            r.as_ref()
                .map(|s| (s.name, s.kind))
                .map_err(|e| (e.line, e.kind))
        })
        .collect();
    use MetricType::*;
    let invalid = ParseErrorKind::InvalidType;
    assert_eq!(
        kinds,
        vec![
            Ok(("a_total", Counter)),
            Ok(("h_bucket", Histogram)),
            Ok(("h_count", Histogram)),
            Ok(("other", Unknown)),
            Err((10, invalid)),
            Err((11, invalid)),
            Err((12, invalid)),
        ]
    );
}

#[test]
fn a_bad_line_is_reported_and_skipped() {
    let text = "good 1\nbad{x=\"y\"\n\nalso_good{x=\"y\"} 3\n";
    let items: Vec<_> = parse(text).collect();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].as_ref().map(|s| s.value), Ok(1.0));
    let err = items[1].unwrap_err();
    assert_eq!(
        (err.line, err.kind),
        (2, ParseErrorKind::UnterminatedLabels)
    );
    assert_eq!(err.to_string(), "line 2: label set not terminated");
    assert_eq!(items[2].as_ref().map(|s| s.value), Ok(3.0));
}

#[test]
fn selected_parse_skips_other_names_unvalidated() {
    let text = "a 1\nb{bad 2\nc{x=\"y\"} 3\n<html>\na{ 4\n";
    let names = ["a".to_string(), "c".to_string()];
    let got: Vec<_> = parse_selected(text, Format::Prometheus, &names)
        .map(|r| r.map(|s| (s.name, s.value)).map_err(|e| (e.line, e.kind)))
        .collect();
    assert_eq!(
        got,
        [
            Ok(("a", 1.0)),
            Ok(("c", 3.0)),
            Err((4, ParseErrorKind::InvalidName)),
            Err((5, ParseErrorKind::InvalidLabelName)),
        ]
    );
}

#[test]
fn label_values_unescape_lazily() {
    let text = r#"a{plain="abc",esc="a\"b\\c\nd"} 1"#;
    let s = parse(text).next().unwrap().unwrap();
    let plain = s.labels.get("plain").unwrap();
    let esc = s.labels.get("esc").unwrap();
    assert!(matches!(plain.get(), Cow::Borrowed("abc")));
    assert!(matches!(esc.get(), Cow::Owned(_)));
    assert_eq!(esc.get(), "a\"b\\c\nd");
    assert_eq!(esc.raw(), r#"a\"b\\c\nd"#);
    assert!(esc.matches("a\"b\\c\nd"));
    assert!(!esc.matches("a\"b\\c\n"));
    assert!(plain.matches("abc") && !plain.matches("ab"));
    assert!(s.labels.get("missing").is_none());
    assert_eq!(s.labels.to_string(), r#"{plain="abc",esc="a\"b\\c\nd"}"#);
}

/// Writes samples back in canonical text form.
fn write(samples: &[Sample<'_>]) -> String {
    let mut out = String::new();
    for s in samples {
        out.push_str(&format!("{}{} {:?}", s.name, s.labels, s.value));
        if let Some(ts) = s.timestamp_ms {
            out.push_str(&format!(" {ts}"));
        }
        out.push('\n');
    }
    out
}

#[test]
fn golden_exposition_round_trips() {
    let samples: Vec<Sample<'_>> = parse(GOLDEN).map(|r| r.expect("golden parses")).collect();
    let sample_lines = GOLDEN
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    assert_eq!(samples.len(), sample_lines);

    let find = |name: &str| samples.iter().find(|s| s.name == name).expect(name);
    assert_eq!(find("vllm:num_requests_running").value, 3.0);
    assert_eq!(find("vllm:num_requests_waiting").value, 1.0);
    assert_eq!(find("vllm:kv_cache_usage_perc").value, 0.125);
    assert_eq!(find("vllm:kv_cache_usage_perc").kind, MetricType::Gauge);
    assert_eq!(find("vllm:prompt_tokens_total").kind, MetricType::Counter);
    let lora = find("vllm:lora_requests_info");
    assert_eq!(lora.value, 1.7450000005e9);
    assert!(
        lora.labels
            .get("running_lora_adapters")
            .unwrap()
            .matches("sql-lora,tweet-summary")
    );
    let cache = find("vllm:cache_config_info");
    assert!(cache.labels.get("num_gpu_blocks").unwrap().matches("27000"));
    let inf = samples
        .iter()
        .find(|s| s.labels.get("le").is_some_and(|v| v.matches("+Inf")))
        .expect("an +Inf bucket");
    assert_eq!(inf.kind, MetricType::Histogram);

    let written = write(&samples);
    let again: Vec<Owned> = parse(&written).map(|r| owned(&r.unwrap())).collect();
    let first: Vec<Owned> = samples.iter().map(owned).collect();
    assert_eq!(again, first);
}

#[test]
fn renderer_escapes_read_back_exactly() {
    let model = "we\"ird\\model\nname}{,=#";
    let info = ReplicaInfo {
        model_name: model.to_string(),
        engine: 3,
        block_size: 16,
        num_gpu_blocks: 100,
        enable_prefix_caching: true,
        max_loras: 1,
    };
    let metrics = EngineMetrics::new(4096);
    let gauges = EngineGauges {
        num_requests_waiting: 7,
        running_lora_adapters: vec!["a\"b".into(), "c".into()],
        ..EngineGauges::default()
    };
    let mut text = String::new();
    render_prometheus(&mut text, &info, &metrics, &gauges, 1.0e9);
    let mut seen = 0;
    for sample in parse(&text) {
        let sample = sample.expect("renderer output parses");
        if let Some(name) = sample.labels.get("model_name") {
            assert!(name.matches(model));
            assert_eq!(name.get(), model);
            seen += 1;
        }
        if sample.name == "vllm:num_requests_waiting" {
            assert_eq!(sample.value, 7.0);
        }
        if sample.name == "vllm:lora_requests_info" {
            let running = sample.labels.get("running_lora_adapters").unwrap();
            assert_eq!(running.get(), "a\"b,c");
        }
    }
    assert!(seen > 100, "{seen} samples with a model_name");
}

/// Consumes every item; the assertion is that nothing panics.
fn drain(text: &str) -> usize {
    let mut n = 0;
    let names = ["a".to_string(), "vllm:num_requests_waiting".to_string()];
    for format in [Format::Prometheus, Format::OpenMetrics] {
        let selected = parse_selected(text, format, &names);
        for item in parse_format(text, format).chain(selected) {
            if let Ok(s) = item {
                n += s.labels.iter().count();
                for l in s.labels.iter() {
                    let _ = l.value.get();
                    let _ = l.value.matches("x");
                }
            }
            n += 1;
        }
    }
    n
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x1_9e7);
    // Bytes weighted towards the format's punctuation, so inputs get deep into lines.
    const ALPHABET: &[u8] = b"{}\"\\=, \t\n#:_aZ09.eE+-InfNa\r";
    for _ in 0..5_000 {
        let len = rng.random_range(0..200);
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if rng.random_bool(0.7) {
                    ALPHABET[rng.random_range(0..ALPHABET.len())]
                } else {
                    rng.random()
                }
            })
            .collect();
        drain(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn mutated_valid_text_never_panics() {
    let mut rng = StdRng::seed_from_u64(42);
    let base = GOLDEN.as_bytes();
    for _ in 0..2_000 {
        // A window of the golden text, then a few byte flips, inserts and deletions.
        let start = rng.random_range(0..base.len());
        let end = (start + rng.random_range(1..600)).min(base.len());
        let mut bytes = base[start..end].to_vec();
        for _ in 0..rng.random_range(1..8) {
            let at = rng.random_range(0..=bytes.len());
            match rng.random_range(0..3) {
                0 if at < bytes.len() => bytes[at] = rng.random(),
                1 => bytes.insert(at, rng.random()),
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        drain(&String::from_utf8_lossy(&bytes));
    }
}
