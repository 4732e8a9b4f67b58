//! The clients users point at an OpenAI server, unmodified, against `igw sim serve` and
//! through `igw epp run`'s gateway: the official `openai` Python client
//! (`tests/clients/openai_check.py`: completions, chat, streaming with usage, batched
//! prompts, n=2, logprobs, errors as the client's exception classes with JSON bodies)
//! and inference-perf 0.7 (a ShareGPT run with zero failures and no token-count
//! mismatch, the simulator and inference-perf counting with the same tokenizer.json).
//!
//! Both come from PyPI into `target/clients-venv` (made on first use, as `.ci/run`
//! does; inference-perf needs Python 3.12). Never skipped: a missing Python or a failed
//! install fails the test saying what to install.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::epp::{MODEL, picker, replicas, sim_config};
use support::venv;

/// Pinned, so a new client release cannot change what these tests mean.
const PACKAGES: [&str; 2] = ["openai==3.51.0", "inference-perf==0.7.0"];
/// The longest a client run may take before the test fails.
const CLIENT_DEADLINE: Duration = Duration::from_secs(300);
/// The gateway's body cap in these tests, bytes: small enough for the 413 check.
const GATEWAY_MAX_BODY: usize = 64 << 10;

const HOW: &str = "make it with `python3.12 -m venv target/clients-venv && \
     target/clients-venv/bin/pip install openai==3.51.0 inference-perf==0.7.0` (as .ci/run does)";

fn clients_venv() -> PathBuf {
    let python = venv::python_at_least(3, 12).unwrap_or_else(|| {
        panic!("inference-perf 0.7 needs Python 3.12 or newer and none was found; {HOW}")
    });
    venv::ensure(
        "clients-venv",
        &python,
        &PACKAGES,
        |v| {
            venv::runs(
                &v.join("bin/python"),
                &[
                    "-c",
                    "import openai, inference_perf; assert openai.__version__ == '3.51.0'",
                ],
            )
        },
        HOW,
    )
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `program args` to its end under [`CLIENT_DEADLINE`]; its stdout and stderr.
/// Async, so the in-process servers it talks to keep serving meanwhile.
async fn run(program: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(CLIENT_DEADLINE, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{program:?} {args:?} ran past {CLIENT_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("cannot run {program:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_client_against_the_simulator_and_through_the_gateway() {
    let venv = clients_venv();
    let sims = replicas(2, sim_config(Default::default(), 100.0)).await;
    let p = picker(sims.addrs(), |o| o.max_body_bytes = GATEWAY_MAX_BODY).await;
    p.wait_healthy(sims.addrs()).await;
    let script = root().join("tests/clients/openai_check.py");
    let script = script.to_str().unwrap();
    let sim_url = sims.base_urls()[0].clone();
    for (side, url) in [("sim", sim_url.as_str()), ("gateway", p.gateway.as_str())] {
        let (ok, stdout, stderr) =
            run(&venv.join("bin/python"), &[script, url, MODEL, side], &[]).await;
        assert!(
            ok && stdout.contains("all checks passed"),
            "openai client against the {side}:\n{stdout}\n{stderr}"
        );
    }
}

/// The test tokenizer, `testdata/tokenizer/wordlevel.json`.
fn tokenizer_json() -> PathBuf {
    root().join("testdata/tokenizer/wordlevel.json")
}

/// A directory `transformers` loads as a tokenizer (it cannot download one here):
/// the test tokenizer as `tokenizer.json` and a minimal `tokenizer_config.json`.
fn tokenizer_dir(dir: &Path) -> PathBuf {
    let tok = dir.join("tokenizer");
    std::fs::create_dir_all(&tok).unwrap();
    std::fs::copy(tokenizer_json(), tok.join("tokenizer.json")).unwrap();
    std::fs::write(
        tok.join("tokenizer_config.json"),
        r#"{"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]"}"#,
    )
    .unwrap();
    tok
}

/// inference-perf's config: a ShareGPT run, 20 requests 4 at a time, streamed, counting
/// tokens with the tokenizer in `tokenizer`.
fn inference_perf_config(base_url: &str, tokenizer: &Path, out: &Path) -> String {
    let data = root().join("testdata/sharegpt/sample.json");
    format!(
        "api:\n  type: completion\n  streaming: true\n\
         data:\n  type: shareGPT\n  path: {data}\n\
         load:\n  type: concurrent\n  stages:\n  - num_requests: 20\n    concurrency_level: 4\n\
         server:\n  type: vllm\n  model_name: {MODEL}\n  base_url: {base_url}\n  ignore_eos: true\n\
         tokenizer:\n  pretrained_model_name_or_path: {tokenizer}\n\
         report:\n  request_lifecycle:\n    summary: true\n    per_stage: false\n    per_request: false\n\
         storage:\n  local_storage:\n    path: {out}\n",
        data = data.display(),
        tokenizer = tokenizer.display(),
        out = out.display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inference_perf_runs_clean_against_the_simulator_and_the_gateway() {
    let venv = clients_venv();
    let mut config = sim_config(Default::default(), 100.0);
    config.tokenizer =
        igw::sim::tokens::Tokenizer::from_file(tokenizer_json()).expect("the test tokenizer loads");
    let sims = replicas(2, config).await;
    let p = picker(sims.addrs(), |_| {}).await;
    p.wait_healthy(sims.addrs()).await;
    let sim_url = sims.base_urls()[0].clone();
    for (side, url) in [("sim", sim_url.as_str()), ("gateway", p.gateway.as_str())] {
        let dir =
            std::env::temp_dir().join(format!("igw-inference-perf-{}-{side}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config.yaml");
        let tokenizer = tokenizer_dir(&dir);
        std::fs::write(
            &config,
            inference_perf_config(url, &tokenizer, &dir.join("out")),
        )
        .unwrap();
        let (ok, stdout, stderr) = run(
            &venv.join("bin/inference-perf"),
            &["-c", config.to_str().unwrap()],
            &[("HF_HUB_OFFLINE", "1")],
        )
        .await;
        assert!(ok, "inference-perf against the {side}:\n{stdout}\n{stderr}");
        let summary = dir.join("out/summary_lifecycle_metrics.json");
        let summary: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&summary).unwrap_or_else(|e| panic!("{}: {e}", summary.display())),
        )
        .expect("inference-perf's summary is JSON");
        assert_eq!(summary["successes"]["count"], 20, "{side}: {summary}");
        assert_eq!(summary["failures"]["count"], 0, "{side}: {summary}");
        // Both sides count with one tokenizer, so they agree on every request.
        assert_eq!(
            summary["successes"]["token_count_mismatches"], 0,
            "{side}: {summary}"
        );
        let said = format!("{stdout}{stderr}");
        assert!(
            !said.contains("token count disagrees"),
            "{side}: inference-perf warned of a token mismatch:\n{said}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
