//! The ShareGPT reader, vLLM's filter and draw, prompt tokenisation and repeat
//! markers, on small inline files and generated samples.

use super::*;

#[test]
fn repeats_are_marked_apart_and_keep_exact_token_ids() {
    for chat in [false, true] {
        let spec = ShareGptSpec {
            path: PathBuf::from(SAMPLE_PATH),
            num_requests: 900,
            output_len: None,
            chat,
            distinct_repeats: true,
        };
        let requests = spec.requests(3).unwrap();
        assert_eq!(requests.len(), 900);
        let distinct: std::collections::HashSet<_> =
            requests.iter().map(|r| r.prompt.flatten()).collect();
        assert_eq!(distinct.len(), 900, "chat {chat}: every prompt differs");
        for r in &requests {
            assert_eq!(r.prompt_tokens, tokens::encode(&r.prompt.flatten()));
        }
        // Without the markers, vLLM's plain oversampling repeats prompts.
        let plain = ShareGptSpec {
            distinct_repeats: false,
            ..spec
        };
        let plain = plain.requests(3).unwrap();
        let distinct: std::collections::HashSet<_> =
            plain.iter().map(|r| r.prompt.flatten()).collect();
        assert!(distinct.len() < 450);
    }
}

#[test]
fn marker_ids_from_cached_pieces_equal_encoding_the_whole_marker() {
    let mut markers = MarkerTokens::default();
    let samples = (1..=3_000).chain([9_999, 10_000, 100_007, 1_000_000, 123_456_789]);
    for n in samples {
        assert_eq!(
            markers.encode(n),
            tokens::encode(&repeat_marker(n)),
            "marker {n}"
        );
    }
}

fn words(n: usize) -> String {
    vec!["word"; n].join(" ")
}

fn entry(turns: &[(&str, String)]) -> serde_json::Value {
    let conv: Vec<_> = turns
        .iter()
        .map(|(f, v)| serde_json::json!({"from": f, "value": v}))
        .collect();
    serde_json::json!({"id": "x", "conversations": conv})
}

fn parse_str(text: &str) -> Result<Vec<Conversation>, WorkloadError> {
    parse(Path::new("data/sg.json"), text.as_bytes())
}

#[test]
fn the_filter_keeps_exactly_what_vllm_keeps() {
    // " word" is one token and the first "word" too: `words(n)` is n tokens.
    assert_eq!(tokens::encode(&words(7)).len(), 7);
    for (turns, kept) in [
        (vec![("human", words(10)), ("gpt", words(10))], true),
        (vec![("human", words(10))], false),
        (vec![], false),
        (vec![("human", words(3)), ("gpt", words(10))], false),
        (vec![("human", words(4)), ("gpt", words(4))], true),
        (vec![("human", words(10)), ("gpt", words(3))], false),
        (vec![("human", words(1024)), ("gpt", words(1024))], true),
        (vec![("human", words(1025)), ("gpt", words(10))], false),
        (vec![("human", words(1000)), ("gpt", words(1049))], false),
        (vec![("human", words(1000)), ("gpt", words(1048))], true),
        // Other roles count as turns; the first two turns are used whatever they are.
        (vec![("system", words(10)), ("bing", words(10))], true),
        (
            vec![
                ("human", words(10)),
                ("gpt", words(10)),
                ("human", words(2000)),
            ],
            true,
        ),
    ] {
        let c: Conversation = serde_json::from_value(entry(&turns)).unwrap();
        let s = filter_stats(std::slice::from_ref(&c));
        assert_eq!(
            s.kept == 1,
            kept,
            "{:?}",
            turns.iter().map(|t| (t.0, t.1.len())).collect::<Vec<_>>()
        );
        let picked = sample_exchanges(&[c], 3, None, 0);
        assert_eq!(picked.picks.len(), if kept { 3 } else { 0 });
    }
    assert!(is_valid_sequence(10, 0, false));
    assert!(!is_valid_sequence(10, 0, true));
}

#[test]
fn loading_tolerates_what_real_files_contain() {
    let text = r#"[
        {"id": "a", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo", "markdown": null}], "model": "x"},
        {"id": 17, "conversations": [{"from": "chatgpt", "value": "v"}]},
        {"conversations": []},
        {"id": "no turns"}
    ]"#;
    let data = parse_str(text).unwrap();
    assert_eq!(data.len(), 4);
    assert_eq!(data[1].id, "17");
    assert_eq!(data[1].conversations[0].from, "chatgpt");
    assert!(data[3].conversations.is_empty());
    assert_eq!(parse_str("[]").unwrap(), vec![]);
}

#[test]
fn malformed_files_name_the_file_and_the_entry() {
    for (text, at) in [
        (r#"[{"conversations": []}, {"conversations": 5}]"#, "[1]"),
        (
            r#"[{"conversations": []}, {"conversations": []}, {"conversations": [{"from": "human"}]}]"#,
            "[2].conversations[0]",
        ),
        (
            r#"[{"conversations": [{"from": "gpt", "value": 3}]}]"#,
            "[0].conversations[0].value",
        ),
        (r#"[{"conversations": []}, {"conversations": [}]"#, "[1]"),
        (r#"{"conversations": []}"#, ""),
        (r#"[] trailing"#, "end"),
        ("", ""),
    ] {
        let err = parse_str(text).unwrap_err().to_string();
        assert!(err.starts_with("data/sg.json: malformed"), "{err}");
        assert!(err.contains(at), "{text} → {err}");
    }
    let missing = load(Path::new("no/such/file.json"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("no/such/file.json"), "{missing}");
}

#[test]
fn sampling_is_seeded_and_oversamples_with_replacement() {
    let data: Vec<Conversation> = (5..25)
        .map(|n| serde_json::from_value(entry(&[("human", words(n)), ("gpt", words(n))])).unwrap())
        .collect();
    let drawn = |n, output_len, seed| -> Vec<Exchange> {
        sample_exchanges(&data, n, output_len, seed)
            .iter()
            .cloned()
            .collect()
    };
    let a = drawn(10, None, 1);
    assert_eq!(a, drawn(10, None, 1));
    assert_ne!(a, drawn(10, None, 2));
    let mut lens: Vec<usize> = a.iter().map(|e| e.prompt_len).collect();
    lens.sort_unstable();
    lens.dedup();
    assert_eq!(lens.len(), 10, "no repeats while unused entries remain");
    let over = drawn(50, None, 1);
    assert_eq!(over.len(), 50);
    assert_eq!(over[..20], drawn(20, None, 1)[..]);
    let fixed = drawn(5, Some(1), 1);
    assert_eq!(
        fixed.len(),
        5,
        "an overridden output skips the minimum check"
    );
}

#[test]
fn tokenising_on_threads_gives_the_serial_exchanges_in_order() {
    let data = parse(Path::new("gen"), generate_sample(3, 1_100).as_bytes()).unwrap();
    let entries: Vec<&Conversation> = data.iter().collect();
    let serial = first_exchanges(&entries, 1);
    assert_eq!(serial.len(), 1_100);
    // 1,100 entries are enough for two threads of at least 512 each.
    for threads in [2, 8] {
        assert_eq!(
            first_exchanges(&entries, threads),
            serial,
            "{threads} threads"
        );
    }
    let ids = serial.iter().flatten().next().unwrap();
    assert_eq!(ids.prompt_ids, tokens::encode(&ids.prompt));
    assert_eq!(ids.prompt_len, ids.prompt_ids.len());
}

#[test]
fn first_exchanges_are_the_files_first_two_turns() {
    let text = generate_sample(5, 200);
    let all = parse(Path::new("gen"), text.as_bytes()).unwrap();
    let heads = parse_first_exchanges(Path::new("gen"), text.as_bytes()).unwrap();
    assert!(
        all.iter().any(|c| c.conversations.len() > 2),
        "the sample has longer ones"
    );
    assert_eq!(all.len(), heads.len());
    for (a, h) in all.iter().zip(&heads) {
        assert_eq!(a.id, h.id);
        assert_eq!(
            h.conversations[..],
            a.conversations[..a.conversations.len().min(2)]
        );
    }
    // A bad first turn is still an error that names it; later turns are not read.
    let bad = r#"[{"id": "x", "conversations": [{"from": "human", "value": 3}]}]"#;
    let err = parse_first_exchanges(Path::new("sg.json"), bad.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sg.json") && err.contains("[0].conversations[0].value"),
        "{err}"
    );
    let late = r#"[{"conversations": [{"value": "a b c d"}, {"value": "e f g h"}, {"value": 3}]}]"#;
    assert_eq!(
        parse_first_exchanges(Path::new("sg.json"), late.as_bytes()).unwrap()[0]
            .conversations
            .len(),
        2
    );
}
