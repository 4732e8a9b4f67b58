//! `request_body`: GIE's OpenAI parser over arbitrary bytes as the body of each API
//! path the gateway forwards.
//!
//! Nothing may panic, and a body the parser accepts is a JSON object whose length is
//! the request's `body_len`, whose `model` is non-empty, and whose API is the one the
//! path names; a model-name rewrite header replaces the target model only.

#![no_main]

use igw::epp::parser::{RequestMeta, parse_openai};
use igw::epp::request::ApiKind;
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

const PATHS: [(&str, ApiKind); 4] = [
    ("/v1/completions", ApiKind::Completions),
    ("/v1/chat/completions", ApiKind::ChatCompletions),
    ("/v1/embeddings", ApiKind::Embeddings),
    ("/v1/responses", ApiKind::Responses),
];

fuzz_target!(|data: &[u8]| {
    for (path, api) in PATHS {
        let meta = RequestMeta {
            path,
            request_id: "fuzz".into(),
            model_rewrite: None,
        };
        let Ok(request) = parse_openai(meta, data) else {
            continue;
        };
        assert_eq!(request.body_len, data.len(), "{path}");
        assert!(!request.incoming_model.is_empty(), "{path}");
        assert_eq!(request.target_model, request.incoming_model, "{path}");
        assert_eq!(request.api, api, "{path}");
        // Raw, not a `Value`: a lone UTF-16 surrogate escape (`"\ud83d"`) is valid JSON
        // text that vLLM and GIE accept, but no Rust string can hold it.
        let raw: &RawValue = serde_json::from_slice(data).expect("an accepted body is JSON");
        assert!(
            raw.get().starts_with('{'),
            "{path}: an accepted body is an object"
        );

        let meta = RequestMeta {
            path,
            request_id: "fuzz".into(),
            model_rewrite: Some("rewritten"),
        };
        let rewritten = parse_openai(meta, data).expect("the header changes no verdict");
        assert_eq!(rewritten.target_model, "rewritten", "{path}");
        assert_eq!(rewritten.incoming_model, request.incoming_model, "{path}");
    }
});
