//! `igw bench` with the pool's own `tokenizer.json` (`pool.tokenizer`, `--tokenizer`):
//! the plan counts every prompt as that tokenizer does, the live replicas count the
//! same tokens (their usage is what a live report records), the virtual run agrees,
//! and a file that is not a tokenizer is refused naming the field or the flag.

use std::process::Command;

use igw::bench::live;
use igw::bench::plan::{StagePlan, plan};
use igw::bench::progress::Progress;
use igw::bench::scenario::{Scenario, from_yaml_str};
use igw::bench::virtual_run;
use igw::bench::workload::PromptText;
use igw::sim::tokens::Tokenizer;

/// A word-level vocabulary with a whitespace pre-tokenizer: one id per word or
/// punctuation run, `[UNK]` for words it lacks. Its counts differ from `cl100k_base`'s.
const TOKENIZER: &str = "testdata/tokenizer/wordlevel.json";

fn scenario(workload: &str, tokenizer: Option<&str>) -> Scenario {
    let tokenizer = tokenizer.map_or(String::new(), |t| format!(", tokenizer: {t}"));
    let yaml = format!(
        "
name: tokenizer
seed: 3
workload: {workload}
load: {{type: constant, stages: [{{rate: 20, duration: 1s}}]}}
pool: {{replicas: 2, speedup: 10{tokenizer}}}
strategies:
- {{router: round-robin}}
"
    );
    from_yaml_str(&yaml, "test.yaml").expect("the scenario is valid")
}

const SYNTHETIC: &str =
    "{type: synthetic, input: {uniform: {min: 40, max: 80}}, output: {fixed: {value: 8}}}";
const SHAREGPT_CHAT: &str =
    "{type: sharegpt, path: testdata/sharegpt/sample.json, chat: true, output_len: 8}";

fn prompt_token_total(plans: &[StagePlan]) -> u64 {
    plans
        .iter()
        .flat_map(|p| &p.requests)
        .map(|p| p.request.prompt_tokens.len() as u64)
        .sum()
}

#[test]
fn the_plan_counts_every_prompt_with_the_pools_tokenizer() {
    let tokenizer = Tokenizer::from_file(TOKENIZER).unwrap();
    for workload in [SYNTHETIC, SHAREGPT_CHAT] {
        let own = plan(&scenario(workload, Some(TOKENIZER))).unwrap();
        let builtin = plan(&scenario(workload, None)).unwrap();
        assert_eq!(own.len(), builtin.len());
        let mut differ = 0;
        for (a, b) in own
            .iter()
            .flat_map(|p| &p.requests)
            .zip(builtin.iter().flat_map(|p| &p.requests))
        {
            // The same traffic, only counted differently.
            assert_eq!(a.at, b.at);
            assert_eq!(a.request.prompt, b.request.prompt);
            assert_eq!(a.request.output_tokens, b.request.output_tokens);
            // As the simulator encodes the body: completions with special tokens,
            // chat through the template without them.
            let expected = match &a.request.prompt {
                PromptText::Text(text) => tokenizer.try_encode(text, true),
                PromptText::Chat(_) => tokenizer.try_encode(&a.request.prompt.flatten(), false),
            };
            assert_eq!(Some(&a.request.prompt_tokens), expected.as_ref());
            differ += usize::from(a.request.prompt_tokens != b.request.prompt_tokens);
        }
        assert!(differ > 0, "{workload}: no prompt was encoded differently");
        // Synthetic text is one word per built-in token, so only the ids differ there;
        // ShareGPT's real text differs in its counts too.
        if workload == SHAREGPT_CHAT {
            assert_ne!(prompt_token_total(&own), prompt_token_total(&builtin));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_replicas_count_the_tokens_the_plan_counted() {
    let s = scenario(SHAREGPT_CHAT, Some(TOKENIZER));
    let plans = plan(&s).unwrap();
    let planned = prompt_token_total(&plans);
    let progress = Progress::hidden();
    // A live report records the prompt tokens the replicas' usage gives.
    let live = live::run(&s, &plans, None, &progress).await.unwrap();
    let r = live.result(0, "round-robin").unwrap();
    assert_eq!(r.summary.failures.count, 0, "{:?}", r.summary.failures);
    assert_eq!(r.summary.successes.count, plans[0].requests.len() as u64);
    assert_eq!(r.summary.successes.prompt_tokens.total, planned);
    let virt = virtual_run::run(&s, &plans, 1, &progress).unwrap();
    let v = virt.result(0, "round-robin").unwrap();
    assert_eq!(v.summary.successes.prompt_tokens.total, planned);
    assert_eq!(
        v.summary.successes.output_tokens.total,
        r.summary.successes.output_tokens.total
    );
}

#[test]
fn a_file_that_is_not_a_tokenizer_is_refused_naming_the_field_and_the_flag() {
    let yaml = "pool: {tokenizer: Cargo.toml}";
    let err = from_yaml_str(yaml, "bad.yaml").unwrap_err().to_string();
    assert!(
        err.starts_with("bad.yaml: pool.tokenizer: Cargo.toml is not a tokenizer.json"),
        "{err}"
    );

    let run = Command::new(env!("CARGO_BIN_EXE_igw"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_BACKTRACE", "1")
        .args([
            "bench",
            "--quiet",
            "--scenario",
            "scenarios/quickstart.yaml",
        ])
        .args(["--tokenizer", "testdata/no-such-tokenizer.json"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("--tokenizer: cannot read testdata/no-such-tokenizer.json"),
        "{stderr}"
    );
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
}
