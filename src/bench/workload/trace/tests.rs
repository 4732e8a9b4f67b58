//! Reading traces in every format, the prompts built from their blocks, and the
//! replay window over a trace repeated end to end.

use std::path::PathBuf;

use super::*;
use crate::sim::tokens;

/// Writes `text` to a fresh file named `name` in a directory of this test's own.
fn file(test: &str, name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("igw-trace-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn spec(path: PathBuf) -> TraceSpec {
    TraceSpec {
        path,
        block_tokens: MOONCAKE_BLOCK_TOKENS,
        chat: false,
        num_requests: None,
    }
}

const MOONCAKE: &str = r#"{"timestamp": 0, "input_length": 655, "output_length": 52, "hash_ids": [46, 47]}
{"timestamp": 10535, "input_length": 672, "output_length": 26, "hash_ids": [46, 47]}

{"timestamp": 3052, "input_length": 2287, "output_length": 316, "hash_ids": [0, 42, 43, 44, 45]}
{"timestamp": 27482, "input_length": 100, "output_length": 0}
"#;

#[test]
fn mooncake_lines_are_read_in_arrival_order_in_seconds() {
    let trace = spec(file("mooncake", "t.jsonl", MOONCAKE)).read().unwrap();
    let at: Vec<f64> = trace.entries.iter().map(|e| e.at).collect();
    assert_eq!(at, [0.0, 3.052, 10.535, 27.482]);
    assert_eq!(trace.entries[1].blocks, [0, 42, 43, 44, 45]);
    assert_eq!(trace.entries[1].input_tokens, 2287);
    assert_eq!(trace.entries[3].blocks, Vec::<u64>::new());
    // Four requests over 27.482 s plus one mean gap: 4 / 36.64 s.
    let period = 27.482 * 4.0 / 3.0;
    assert!((trace.period().unwrap() - period).abs() < 1e-9);
    assert!((trace.native_rate().unwrap() - 4.0 / period).abs() < 1e-9);
}

#[test]
fn csv_traces_are_read_by_their_column_names() {
    let azure = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
                 2023-11-16 18:15:46.6805900,374,44\n\
                 2023-11-16 18:15:50.9951690,396,109\n\
                 2023-11-17 00:00:00.5000000,879,2\n";
    let t = spec(file("csv", "azure.csv", azure)).read().unwrap();
    let at: Vec<f64> = t.entries.iter().map(|e| e.at).collect();
    assert!((at[1] - 4.314_579).abs() < 1e-5, "{at:?}");
    // Across midnight: 5 h 44 min 13.8194100 s after the first.
    assert!((at[2] - 20_653.819_41).abs() < 1e-5, "{at:?}");
    assert_eq!(
        (t.entries[0].input_tokens, t.entries[0].output_tokens),
        (374, 44)
    );

    let burst = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n\
                 5,ChatGPT,472,18,490,Conversation log\n\
                 45,GPT-4,1087,0,1087,Conversation log\n";
    let t = spec(file("csv", "burst.csv", burst)).read().unwrap();
    assert_eq!(t.entries[1].at, 40.0);
    assert_eq!(t.entries[1].input_tokens, 1087);
    assert_eq!(t.entries[1].output_tokens, 0);

    let vidur = "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,100,10\n0.25,\"200\",20\n";
    let t = spec(file("csv", "vidur.csv", vidur)).read().unwrap();
    assert_eq!(t.entries[1].at, 0.25);
    assert_eq!(t.entries[1].input_tokens, 200);
}

#[test]
fn bad_traces_name_the_file_line_and_field() {
    let cases = [
        (
            "a.jsonl",
            "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1}\n{\"timestamp\": 1}\n",
            "a.jsonl:2: missing field `input_length`",
        ),
        (
            "b.csv",
            "when,ContextTokens,GeneratedTokens\n1,2,3\n",
            "b.csv:1: no arrival time column: the header needs one of TIMESTAMP, Timestamp, \
             arrived_at (it has when, ContextTokens, GeneratedTokens)",
        ),
        (
            "c.csv",
            "Timestamp,Request tokens,Response tokens\n1,20,3\n2,many,3\n",
            "c.csv:3: Request tokens: \"many\" is not a token count",
        ),
        (
            "d.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-13-01 00:00:00,1,1\n",
            "d.csv:2: TIMESTAMP: \"2023-13-01 00:00:00\" is not a time",
        ),
        (
            "e.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n1,2\n",
            "e.csv:2: 2 fields, no GeneratedTokens",
        ),
        ("f.jsonl", "\n\n", "f.jsonl: the trace has no requests"),
    ];
    for (name, text, want) in cases {
        let err = spec(file("bad", name, text))
            .read()
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{name}: {err}");
    }
    let missing = spec(PathBuf::from("/no/such/trace.jsonl")).read();
    assert!(
        missing
            .unwrap_err()
            .to_string()
            .starts_with("cannot read /no/such/trace.jsonl")
    );
}

#[test]
fn shared_hash_ids_share_exactly_their_blocks_of_prompt() {
    let s = TraceSpec {
        block_tokens: 16,
        ..spec(file("blocks", "t.jsonl", MOONCAKE))
    };
    let reqs = s.requests(7).unwrap();
    let counts: Vec<usize> = reqs.iter().map(|r| r.prompt_tokens.len()).collect();
    assert_eq!(counts, [655, 2287, 672, 100]);
    // An output of 0 is asked for as 1.
    assert_eq!(reqs[3].output_tokens, 1);
    for r in &reqs {
        assert_eq!(r.prompt_tokens, tokens::encode(&r.prompt.flatten()));
    }
    // Requests 0 and 2 both start with blocks 46 and 47 (2 × 16 tokens), then differ.
    let (a, b) = (&reqs[0].prompt_tokens, &reqs[2].prompt_tokens);
    let shared = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    assert!((32..36).contains(&shared), "{shared}");
    // Request 1's first block is its own id (0), not 46: no common start.
    let other = reqs[1]
        .prompt_tokens
        .iter()
        .zip(a)
        .take_while(|(x, y)| x == y);
    assert!(other.count() < 4);
    // The seed fixes the text; another seed gives other words.
    assert_eq!(reqs, s.requests(7).unwrap());
    assert_ne!(
        reqs[0].prompt_tokens,
        s.requests(8).unwrap()[0].prompt_tokens
    );
}

#[test]
fn num_requests_keeps_the_first_requests_in_arrival_order() {
    let s = TraceSpec {
        num_requests: Some(2),
        ..spec(file("first", "t.jsonl", MOONCAKE))
    };
    let lens: Vec<usize> = s
        .requests(1)
        .unwrap()
        .iter()
        .map(|r| r.prompt_tokens.len())
        .collect();
    assert_eq!(lens, [655, 2287]);
    let none = TraceSpec {
        num_requests: Some(0),
        ..s
    };
    let err = none.read().unwrap_err().to_string();
    assert!(err.contains("num_requests must be at least 1"), "{err}");
}

#[test]
fn chat_traces_send_one_user_message() {
    let s = TraceSpec {
        chat: true,
        ..spec(file("chat", "t.jsonl", MOONCAKE))
    };
    let r = &s.requests(1).unwrap()[0];
    assert!(matches!(&r.prompt, PromptText::Chat(m) if m.len() == 1 && m[0].role == "user"));
    assert_eq!(r.prompt_tokens, tokens::encode(&r.prompt.flatten()));
}

#[test]
fn a_window_replays_the_trace_end_to_end() {
    let trace = Trace {
        path: PathBuf::from("t"),
        entries: [0.0, 1.0, 3.0]
            .into_iter()
            .map(|at| TraceEntry {
                at,
                input_tokens: 1,
                output_tokens: 1,
                blocks: Vec::new(),
            })
            .collect(),
    };
    // Span 3 s, mean gap 1.5 s: the pass repeats every 4.5 s.
    assert_eq!(trace.period(), Some(4.5));
    assert_eq!(trace.window(0.0, 3.0), [(0.0, 0), (1.0, 1)]);
    assert_eq!(
        trace.window(2.0, 4.0),
        [(1.0, 2), (2.5, 0), (3.5, 1)],
        "wraps at 4.5 s"
    );
    assert_eq!(trace.window(9.0, 1.0), [(0.0, 0)], "third pass");
    let alone = Trace {
        entries: trace.entries[..1].to_vec(),
        ..trace.clone()
    };
    assert_eq!(alone.period(), None);
    assert!(alone.window(0.0, 10.0).is_empty());
}

#[test]
fn times_parse_as_seconds_or_utc_dates() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    assert_eq!(days_from_civil(2024, 2, 29), 19_782);
    assert_eq!(parse_time("12.5"), Some(12.5));
    assert_eq!(parse_time("1970-01-02 00:00:01"), Some(86_401.0));
    assert_eq!(parse_time("1970-01-01T00:01:00.25Z"), Some(60.25));
    for bad in [
        "-1",
        "NaN",
        "yesterday",
        "2023-11-16",
        "2023-11-16 25:00:00",
    ] {
        assert_eq!(parse_time(bad), None, "{bad}");
    }
}
