//! Tests of the built-in tokenizer, the chat template and output plans.

use super::plan::{plan_output, word_texts, word_tokens};
use super::*;
use crate::sim::metrics::FinishReason;

#[test]
fn encode_decode_round_trip() {
    for text in [
        "Hello, world!",
        "The quick brown fox jumps over the lazy dog.\n\nÜnïcödé 日本語 🚀",
        "",
        "<|endoftext|> is plain text here",
    ] {
        assert_eq!(decode(&encode(text)), text);
    }
    assert!(encode("<|endoftext|>").len() > 1);
}

#[test]
fn decode_never_panics_on_unknown_ids() {
    let hello = encode("hello");
    let mut ids = hello.clone();
    ids.push(u32::MAX);
    ids.push(4_000_000);
    assert_eq!(decode(&ids), "hello");
    assert_eq!(token_text(u32::MAX), "");
    assert_eq!(token_text(hello[0]), "hello");
}

#[test]
fn token_text_concatenates_to_decode_for_ascii() {
    let ids = encode("Streaming one token at a time works.");
    let joined: String = ids.iter().map(|&t| token_text(t)).collect();
    assert_eq!(joined, "Streaming one token at a time works.");
}

#[test]
fn shared_text_prefix_gives_shared_token_prefix() {
    let system = "You are a helpful assistant. Answer briefly and cite sources.\n";
    let a = encode(&format!("{system}What is the capital of France?"));
    let b = encode(&format!("{system}Explain continuous batching."));
    let head = encode(system);
    assert!(a.starts_with(&head));
    assert!(b.starts_with(&head));
}

#[test]
fn chat_template_has_the_documented_shape() {
    let turns = [
        ChatTurn {
            role: "system",
            content: "Be brief.",
        },
        ChatTurn {
            role: "user",
            content: "Hi",
        },
    ];
    assert_eq!(
        apply_chat_template(&turns),
        "<|start|>system\nBe brief.<|end|>\n<|start|>user\nHi<|end|>\n<|start|>assistant\n"
    );
    assert_eq!(apply_chat_template(&[]), "<|start|>assistant\n");
}

#[test]
fn resent_history_shares_a_token_prefix_with_the_previous_turn() {
    let reply = decode(
        &plan_output(
            word_tokens(),
            OutputMode::Random,
            7,
            &encode("Hi"),
            30,
            true,
        )
        .tokens,
    );
    let first = [
        ChatTurn {
            role: "system",
            content: "You are terse.",
        },
        ChatTurn {
            role: "user",
            content: "What is KV caching?",
        },
    ];
    let second = [
        first[0],
        first[1],
        ChatTurn {
            role: "assistant",
            content: &reply,
        },
        ChatTurn {
            role: "user",
            content: "And prefix caching?",
        },
    ];
    let (t1, t2) = (apply_chat_template(&first), apply_chat_template(&second));
    assert!(t2.starts_with(&t1));
    let (i1, i2) = (encode(&t1), encode(&t2));
    assert!(i2.starts_with(&i1), "{i1:?} is not a prefix of {i2:?}");
    // Adding the assistant's reply keeps the earlier flattening as a prefix.
    assert!(apply_chat_template(&second[..3]).starts_with(&apply_chat_template(&second[..2])));
}

#[test]
fn no_text_has_fewer_tokens_than_its_bytes_allow() {
    assert_eq!(max_token_bytes(), 128);
    for text in [
        " ".repeat(128),
        " ".repeat(1000),
        "-".repeat(999),
        "a".repeat(5000),
        "word ".repeat(300),
    ] {
        let n = encode(&text).len();
        assert!(
            min_tokens(text.len()) <= n && n <= text.len(),
            "{n} for {text:?}"
        );
    }
}

#[test]
fn every_word_is_one_token() {
    let texts: Vec<String> = word_texts().collect();
    for w in &texts {
        assert_eq!(encode(w).len(), 1, "{w:?} is not a single token");
    }
    assert!(texts.len() >= 200);
    assert_eq!(word_tokens().len(), texts.len());
    assert_eq!(encode(" the"), vec![279]);
}

fn prompt() -> Vec<u32> {
    encode("Summarise the history of the printing press in three paragraphs.")
}

#[test]
fn plans_are_deterministic_per_seed_and_prompt() {
    let p = prompt();
    for mode in [OutputMode::Random, OutputMode::Echo] {
        let a = plan_output(word_tokens(), mode, 42, &p, 4096, false);
        // Another request in between must not change anything.
        let _ = plan_output(
            word_tokens(),
            mode,
            42,
            &encode("something else"),
            4096,
            false,
        );
        assert_eq!(plan_output(word_tokens(), mode, 42, &p, 4096, false), a);
    }
    let lens: Vec<usize> = (0..20)
        .map(|s| {
            plan_output(word_tokens(), OutputMode::Random, s, &p, 100_000, false)
                .tokens
                .len()
        })
        .collect();
    assert!(
        lens.iter().any(|&l| l != lens[0]),
        "seed must matter: {lens:?}"
    );
}

#[test]
fn lengths_stay_in_bounds_and_reasons_match() {
    let mut stops = 0;
    let mut lengths = 0;
    for seed in 0..500 {
        for max_tokens in [1, 2, 50, 150, 1000] {
            let plan = plan_output(
                word_tokens(),
                OutputMode::Random,
                seed,
                &prompt(),
                max_tokens,
                false,
            );
            let n = plan.tokens.len();
            assert!(
                (1..=max_tokens).contains(&n),
                "{n} tokens for max {max_tokens}"
            );
            match plan.finish_reason {
                FinishReason::Length => {
                    assert_eq!(n, max_tokens);
                    lengths += 1;
                }
                FinishReason::Stop => {
                    assert!(n < max_tokens);
                    stops += 1;
                }
                FinishReason::Abort => panic!("a plan never aborts"),
            }
        }
    }
    assert!(stops > 0 && lengths > 0);
    let plan = plan_output(word_tokens(), OutputMode::Random, 1, &prompt(), 0, false);
    assert_eq!(plan.tokens.len(), 1);
}

#[test]
fn natural_lengths_look_like_sharegpt() {
    let mut lens: Vec<usize> = (0..2000)
        .map(|s| {
            plan_output(
                word_tokens(),
                OutputMode::Random,
                s,
                &prompt(),
                usize::MAX,
                false,
            )
        })
        .map(|p| p.tokens.len())
        .collect();
    lens.sort_unstable();
    let median = lens[lens.len() / 2];
    assert!((120..=180).contains(&median), "median {median}");
}

#[test]
fn ignore_eos_gives_exactly_max_tokens() {
    for max_tokens in [1, 3, 700, 2000] {
        let plan = plan_output(
            word_tokens(),
            OutputMode::Random,
            9,
            &prompt(),
            max_tokens,
            true,
        );
        assert_eq!(plan.tokens.len(), max_tokens);
        assert_eq!(plan.finish_reason, FinishReason::Length);
    }
}

#[test]
fn echo_repeats_the_prompt_in_order() {
    let p = encode(" one two three");
    let plan = plan_output(word_tokens(), OutputMode::Echo, 0, &p, 7, true);
    let expected: Vec<u32> = p.iter().copied().cycle().take(7).collect();
    assert_eq!(plan.tokens, expected);
    assert_eq!(decode(&plan.tokens), " one two three one two three one");
    let short = plan_output(word_tokens(), OutputMode::Echo, 0, &p, 2, true);
    assert_eq!(short.tokens, p[..2]);
    let empty = plan_output(word_tokens(), OutputMode::Echo, 0, &[], 5, true);
    assert_eq!(empty.tokens.len(), 5);
}

#[test]
fn random_output_decodes_to_words() {
    let plan = plan_output(word_tokens(), OutputMode::Random, 3, &prompt(), 40, true);
    let text = decode(&plan.tokens);
    assert!(text.split_whitespace().count() >= 20, "{text:?}");
    assert!(
        text.chars()
            .all(|c| c.is_ascii_lowercase() || " ,.".contains(c))
    );
}
