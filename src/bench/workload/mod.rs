//! What requests a benchmark sends: prompts, their token ids, how many tokens to ask
//! for, which LoRA adapter, and which conversation turn each belongs to.
//!
//! A [`Workload`] is a seeded, deterministic stream of [`WorkloadRequest`]s built from
//! a [`WorkloadSpec`] (one kind per file: [`sharegpt`], [`synthetic`],
//! [`shared_prefix`], [`sessions`]) plus an optional [`lora`] traffic split. The same
//! spec and seed always give the same requests, byte for byte. This module decides
//! *what* is sent, never *when* (arrivals) or *where* (routing), and does no I/O except
//! reading a ShareGPT file when a spec names one.

pub mod lora;
pub mod sessions;
pub mod shared_prefix;
pub mod sharegpt;
pub mod synthetic;
mod text;
pub mod trace;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::sim::tokens::{self, ChatTurn};

pub use lora::{LoraAssigner, LoraWeight};
pub use sessions::SessionsSpec;
pub use shared_prefix::SharedPrefixSpec;
pub use sharegpt::ShareGptSpec;
pub use synthetic::{LengthDist, SyntheticSpec};
pub use trace::{Trace, TraceSpec};

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

/// The prompt as it goes on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromptText {
    /// `/v1/completions` `prompt`.
    Text(String),
    /// `/v1/chat/completions` `messages`.
    Chat(Vec<ChatMessage>),
}

impl PromptText {
    /// The text the model sees: plain text as is, chat through
    /// [`tokens::apply_chat_template`] (the simulator's own template).
    pub fn flatten(&self) -> String {
        match self {
            PromptText::Text(text) => text.clone(),
            PromptText::Chat(messages) => {
                let turns: Vec<ChatTurn<'_>> = messages
                    .iter()
                    .map(|m| ChatTurn {
                        role: &m.role,
                        content: &m.content,
                    })
                    .collect();
                tokens::apply_chat_template(&turns)
            }
        }
    }
}

/// Which conversation a request belongs to; turn 0 is the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionTurn {
    pub session: u64,
    pub turn: usize,
}

/// One request a benchmark sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadRequest {
    pub prompt: PromptText,
    /// `cl100k_base` ids of [`PromptText::flatten`], as the simulator tokenises it
    /// (the pool's own tokenizer's once the plan is made, see
    /// [`retokenize`](crate::bench::retokenize)).
    pub prompt_tokens: Vec<u32>,
    /// Tokens to ask for (`max_tokens`), ≥ 1.
    pub output_tokens: usize,
    /// LoRA adapter to name as the model, if any.
    pub lora: Option<String>,
    /// Set for multi-turn sessions: turn `k` must be sent after turn `k − 1` completes.
    pub session: Option<SessionTurn>,
}

impl WorkloadRequest {
    /// A request whose token ids are computed from `prompt`.
    pub fn new(prompt: PromptText, output_tokens: usize) -> WorkloadRequest {
        let prompt_tokens = tokens::encode(&prompt.flatten());
        WorkloadRequest::with_tokens(prompt, prompt_tokens, output_tokens)
    }

    /// A request whose token ids are already known; they must be
    /// `tokens::encode(&prompt.flatten())`.
    pub(crate) fn with_tokens(
        prompt: PromptText,
        prompt_tokens: Vec<u32>,
        output_tokens: usize,
    ) -> WorkloadRequest {
        WorkloadRequest {
            prompt,
            prompt_tokens,
            output_tokens: output_tokens.max(1),
            lora: None,
            session: None,
        }
    }
}

/// Why a workload cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("cannot read {}{}: {error}", path.display(), where_relative(path))]
    Io {
        path: PathBuf,
        // Not `source`: the message already says it (printed once, not twice).
        error: std::io::Error,
    },
    /// The file is not ShareGPT's format; `at` names the entry (`[12].conversations`).
    #[error("{}: malformed ShareGPT data at {at}: {message}", path.display())]
    Malformed {
        path: PathBuf,
        at: String,
        message: String,
    },
    /// A trace file's row that cannot be read; `line` is 1-based.
    #[error("{}:{line}: {message}", path.display())]
    BadTrace {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: no conversation survives the filter ({what})", path.display())]
    NoUsableEntries { path: PathBuf, what: &'static str },
    #[error("invalid workload: {0}")]
    Invalid(String),
}

/// For a relative path that could not be read, what it was relative to (and, for the
/// bundled ShareGPT sample, where it lives), so a run started from another directory
/// says why it failed.
fn where_relative(path: &std::path::Path) -> String {
    if !path.is_relative() {
        return String::new();
    }
    let cwd = std::env::current_dir().map_or_else(|_| "?".into(), |d| d.display().to_string());
    let sample = match path == std::path::Path::new(sharegpt::SAMPLE_PATH) {
        true => {
            "; the bundled sample is in the igw repository, so run from its root or \
                 set workload.path"
        }
        false => "",
    };
    format!(" (relative to the working directory {cwd}{sample})")
}

/// What to send, as a scenario file states it (`type` selects the kind).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkloadSpec {
    #[serde(rename = "sharegpt")]
    ShareGpt(ShareGptSpec),
    Synthetic(SyntheticSpec),
    SharedPrefix(SharedPrefixSpec),
    Sessions(SessionsSpec),
    Trace(TraceSpec),
}

enum Source {
    /// Built up front (ShareGPT samples, sessions).
    List(std::vec::IntoIter<WorkloadRequest>),
    Synthetic(synthetic::Generator),
    SharedPrefix(shared_prefix::Generator),
}

/// Mixed into the scenario's seed for the adapter draws, so adding a LoRA split does
/// not change the prompts.
pub const LORA_STREAM: u64 = 0x4c6f_5241;

/// A seeded stream of requests; finite or endless as the spec says.
pub struct Workload {
    source: Source,
    lora: Option<LoraAssigner>,
}

impl Workload {
    /// Builds the stream. `lora_split` empty means no adapter is named. The seed fixes
    /// everything: lengths, text, order, adapters.
    pub fn new(
        spec: &WorkloadSpec,
        lora_split: &[LoraWeight],
        seed: u64,
    ) -> Result<Workload, WorkloadError> {
        let source = match spec {
            WorkloadSpec::ShareGpt(s) => Source::List(s.requests(seed)?.into_iter()),
            WorkloadSpec::Sessions(s) => Source::List(s.requests(seed)?.into_iter()),
            WorkloadSpec::Trace(s) => Source::List(s.requests(seed)?.into_iter()),
            WorkloadSpec::Synthetic(s) => Source::Synthetic(s.generator(seed)?),
            WorkloadSpec::SharedPrefix(s) => Source::SharedPrefix(s.generator(seed)?),
        };
        let lora = if lora_split.is_empty() {
            None
        } else {
            // A different stream from the workload's own, so adding a split does not
            // change the prompts.
            Some(LoraAssigner::new(lora_split, seed ^ LORA_STREAM)?)
        };
        Ok(Workload { source, lora })
    }
}

impl Iterator for Workload {
    type Item = WorkloadRequest;

    fn next(&mut self) -> Option<WorkloadRequest> {
        let mut request = match &mut self.source {
            Source::List(it) => it.next()?,
            Source::Synthetic(g) => g.next()?,
            Source::SharedPrefix(g) => g.next()?,
        };
        if let Some(assigner) = &mut self.lora {
            request.lora = Some(assigner.assign(request.session).to_string());
        }
        Some(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(spec: &WorkloadSpec, lora: &[LoraWeight], seed: u64, n: usize) -> Vec<WorkloadRequest> {
        Workload::new(spec, lora, seed).unwrap().take(n).collect()
    }

    fn specs() -> Vec<WorkloadSpec> {
        let json = [
            r#"{"type":"sharegpt","path":"testdata/sharegpt/sample.json","num_requests":50}"#,
            r#"{"type":"synthetic","input":{"log_normal":{"mean":200,"std_dev":150,"min":4,"max":1024}},"output":{"fixed":{"value":64}}}"#,
            r#"{"type":"shared_prefix","num_groups":3,"num_prompts_per_group":4,"system_prompt_len":50,"question_len":10,"output_len":20}"#,
            r#"{"type":"sharegpt","path":"testdata/sharegpt/sample.json","num_requests":30,"output_len":16,"chat":true}"#,
            r#"{"type":"synthetic","input":{"uniform":{"min":4,"max":64}},"output":{"normal":{"mean":50,"std_dev":10,"min":1,"max":100}},"num_requests":40,"chat":true}"#,
            r#"{"type":"sessions","num_sessions":5}"#,
            r#"{"type":"sessions","num_sessions":5,"source":{"sharegpt":{"path":"testdata/sharegpt/sample.json"}}}"#,
        ];
        json.iter()
            .map(|j| serde_json::from_str(j).unwrap_or_else(|e| panic!("{j}: {e}")))
            .collect()
    }

    #[test]
    fn every_workload_is_deterministic_per_seed() {
        let lora = [LoraWeight {
            name: "a".into(),
            split: 1.0,
        }];
        for spec in specs() {
            let a = take(&spec, &lora, 7, 40);
            assert!(!a.is_empty(), "{spec:?}");
            assert_eq!(a, take(&spec, &lora, 7, 40), "{spec:?}");
            assert_ne!(a, take(&spec, &lora, 8, 40), "seed must matter: {spec:?}");
            for r in &a {
                assert_eq!(r.prompt_tokens, tokens::encode(&r.prompt.flatten()));
                assert!(r.output_tokens >= 1);
                assert_eq!(r.lora.as_deref(), Some("a"));
            }
        }
    }

    #[test]
    fn a_lora_split_does_not_change_the_prompts() {
        let lora = [
            LoraWeight {
                name: "a".into(),
                split: 0.5,
            },
            LoraWeight {
                name: "b".into(),
                split: 0.5,
            },
        ];
        for spec in specs() {
            let with: Vec<_> = take(&spec, &lora, 3, 20)
                .into_iter()
                .map(|r| r.prompt_tokens)
                .collect();
            let without: Vec<_> = take(&spec, &[], 3, 20)
                .into_iter()
                .map(|r| r.prompt_tokens)
                .collect();
            assert_eq!(with, without);
        }
    }

    #[test]
    fn bad_workloads_are_errors_that_say_why() {
        let dir = std::env::temp_dir().join(format!("igw-workload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short.json");
        std::fs::write(
            &short,
            r#"[{"id":"a","conversations":[{"from":"human","value":"hi"},{"from":"gpt","value":"yo"}]}]"#,
        )
        .unwrap();
        let one = [LoraWeight {
            name: "a".into(),
            split: 1.0,
        }];
        for (json, lora, want) in [
            (
                format!(r#"{{"type":"sharegpt","path":"{}"}}"#, short.display()),
                &[][..],
                "short.json: no conversation survives",
            ),
            (
                r#"{"type":"sharegpt","path":"no/such.json"}"#.to_string(),
                &[][..],
                "cannot read no/such.json",
            ),
            (
                r#"{"type":"shared_prefix","num_groups":0,"num_prompts_per_group":1,"system_prompt_len":1,"question_len":1,"output_len":1}"#.to_string(),
                &[][..],
                "num_groups",
            ),
            (
                r#"{"type":"synthetic","input":{"uniform":{"min":9,"max":1}},"output":{"fixed":{"value":1}}}"#.to_string(),
                &[][..],
                "synthetic input: min is above max",
            ),
            (
                r#"{"type":"sessions","num_sessions":1}"#.to_string(),
                &[LoraWeight {
                    name: "a".into(),
                    split: -1.0,
                }][..],
                "lora_traffic_split",
            ),
        ] {
            let spec: WorkloadSpec = serde_json::from_str(&json).unwrap();
            let err = Workload::new(&spec, lora, 0).err().map(|e| e.to_string());
            assert!(err.as_deref().is_some_and(|e| e.contains(want)), "{json}: {err:?}");
        }
        assert!(Workload::new(&specs()[0], &one, 0).is_ok());
        assert!(serde_json::from_str::<WorkloadSpec>(r#"{"type":"nope"}"#).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unreadable_relative_path_says_what_it_was_relative_to() {
        let missing = |path: &str| {
            let spec: WorkloadSpec =
                serde_json::from_value(serde_json::json!({"type": "sharegpt", "path": path}))
                    .unwrap();
            match Workload::new(&spec, &[], 1) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{path} does not exist"),
            }
        };
        let cwd = std::env::current_dir().unwrap().display().to_string();
        let relative = missing("no/such/file.json");
        assert!(
            relative.starts_with(&format!(
                "cannot read no/such/file.json (relative to the working directory {cwd}): "
            )),
            "{relative}"
        );
        let absolute = missing("/no/such/file.json");
        assert!(
            absolute.starts_with("cannot read /no/such/file.json: "),
            "{absolute}"
        );
    }
}
