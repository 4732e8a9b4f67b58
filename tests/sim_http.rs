//! `igw sim serve` over HTTP, the API surface: response shapes, the exact SSE
//! sequences, models and LoRA endpoints, and every bad-input error, checked against
//! vLLM's wire format (sim-facts §1.3, §1.5, §2.6).
//!
//! Real replicas run in-process on 127.0.0.1:0, 1000× faster than real time; tests
//! await responses and never sleep.

mod support;

use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn completion_has_vllm_shape_and_usage() {
    let (_sim, url) = start(config()).await;
    let (status, body) = post(
        &format!("{url}/v1/completions"),
        json!({"model": MODEL, "prompt": "Hello there", "max_tokens": 16}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["model"], MODEL);
    assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert!(choice["text"].is_string());
    assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()));
    let u = &body["usage"];
    let (p, c) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
    );
    assert!(p > 0 && (1..=16).contains(&c), "{u}");
    assert_eq!(u["total_tokens"].as_u64().unwrap(), p + c);
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 0);
}

#[tokio::test]
async fn prompt_as_token_ids_and_ignore_eos_give_exactly_max_tokens() {
    let (_sim, url) = start(config()).await;
    let (status, body) = post(
        &format!("{url}/v1/completions"),
        json!({"prompt": [101, 102, 103, 104], "max_tokens": 9, "ignore_eos": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], MODEL, "no model means the base model");
    assert_eq!(body["usage"]["prompt_tokens"], 4);
    assert_eq!(body["usage"]["completion_tokens"], 9);
    assert_eq!(body["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn a_repeated_long_prompt_hits_the_prefix_cache() {
    let (_sim, url) = start(config()).await;
    let prompt = "The quick brown fox jumps over the lazy dog. ".repeat(40);
    let req = json!({"model": MODEL, "prompt": prompt, "max_tokens": 4});
    let (_, first) = post(&format!("{url}/v1/completions"), req.clone()).await;
    let (status, second) = post(&format!("{url}/v1/completions"), req).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    let prompt_tokens = second["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(cached > 0 && cached < prompt_tokens, "{second}");
    assert_eq!(cached % 16, 0, "block-granular");
}

#[tokio::test]
async fn chat_completion_has_vllm_shape() {
    let (_sim, url) = start(config()).await;
    let (status, body) = post(
        &format!("{url}/v1/chat/completions"),
        json!({"model": MODEL, "max_completion_tokens": 12, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(choice["message"]["content"].is_string());
    assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()));
    let c = body["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&c));
    assert!(body["usage"]["prompt_tokens_details"]["cached_tokens"].is_u64());
}

#[tokio::test]
async fn completion_stream_sends_one_chunk_per_token_then_done() {
    let (_sim, url) = start(config()).await;
    for include_usage in [false, true] {
        let mut req = json!({"prompt": "Stream me", "max_tokens": 7, "ignore_eos": true,
                             "stream": true});
        if include_usage {
            req["stream_options"] = json!({"include_usage": true});
        }
        let chunks = parse_chunks(&sse(&format!("{url}/v1/completions"), req).await);
        let expected = 7 + 1 + usize::from(include_usage);
        assert_eq!(chunks.len(), expected, "{chunks:?}");
        let id = chunks[0]["id"].as_str().unwrap();
        assert!(id.starts_with("cmpl-"));
        for c in &chunks[..7] {
            assert_eq!(c["object"], "text_completion");
            assert_eq!(c["id"], id);
            assert!(c["choices"][0]["text"].is_string());
            assert!(c["choices"][0]["finish_reason"].is_null());
            assert!(c.get("usage").is_none());
        }
        assert_eq!(chunks[7]["choices"][0]["finish_reason"], "length");
        assert_eq!(chunks[7]["choices"][0]["text"], "");
        if include_usage {
            let u = &chunks[8];
            assert_eq!(u["choices"], json!([]));
            assert_eq!(u["usage"]["completion_tokens"], 7);
            assert!(u["usage"]["prompt_tokens_details"]["cached_tokens"].is_u64());
        }
    }
}

#[tokio::test]
async fn chat_stream_starts_with_the_role_and_ends_with_done() {
    let (_sim, url) = start(config()).await;
    for include_usage in [false, true] {
        let req = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5,
                         "ignore_eos": true, "stream": true,
                         "stream_options": {"include_usage": include_usage}});
        let chunks = parse_chunks(&sse(&format!("{url}/v1/chat/completions"), req).await);
        assert_eq!(
            chunks.len(),
            1 + 5 + 1 + usize::from(include_usage),
            "{chunks:?}"
        );
        assert!(
            chunks
                .iter()
                .all(|c| c["object"] == "chat.completion.chunk")
        );
        assert!(chunks[0]["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        for c in &chunks[1..6] {
            let delta = c["choices"][0]["delta"].as_object().unwrap();
            assert_eq!(delta.len(), 1, "content only: {c}");
            assert!(delta["content"].is_string());
            assert!(c["choices"][0]["finish_reason"].is_null());
        }
        assert_eq!(chunks[6]["choices"][0]["delta"], json!({}));
        assert_eq!(chunks[6]["choices"][0]["finish_reason"], "length");
        if include_usage {
            assert_eq!(chunks[7]["choices"], json!([]));
            assert_eq!(chunks[7]["usage"]["completion_tokens"], 5);
            let u = &chunks[7]["usage"];
            assert_eq!(
                u["total_tokens"].as_u64(),
                Some(u["prompt_tokens"].as_u64().unwrap() + 5)
            );
        }
    }
}

#[tokio::test]
async fn models_list_base_and_adapters_and_follow_load_and_unload() {
    let mut c = config();
    c.served_model_names = vec![MODEL.into(), "alias".into()];
    let (_sim, url) = start(c).await;
    let client = reqwest::Client::new();
    let ids = |list: &Value| -> Vec<String> {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    let list: Value = client
        .get(format!("{url}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["object"], "list");
    assert_eq!(ids(&list), vec![MODEL, "alias", "sql-lora"]);
    let base = &list["data"][1];
    assert_eq!(base["object"], "model");
    assert_eq!(base["owned_by"], "vllm");
    assert_eq!(base["root"], MODEL);
    assert!(base["parent"].is_null());
    assert_eq!(base["max_model_len"], 8192);
    let lora = &list["data"][2];
    assert_eq!(lora["root"], "/adapters/sql");
    assert_eq!(lora["parent"], MODEL);

    let load = json!({"lora_name": "chat-lora", "lora_path": "/adapters/chat"});
    let resp = client
        .post(format!("{url}/v1/load_lora_adapter"))
        .json(&load)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("chat-lora"));
    let (status, body) = post(&format!("{url}/v1/load_lora_adapter"), load).await;
    assert_error(status, &body, 400, "InvalidUserInput");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already")
    );
    let (status, body) = post(
        &format!("{url}/v1/load_lora_adapter"),
        json!({"lora_name": "x"}),
    )
    .await;
    assert_error(status, &body, 400, "InvalidUserInput");

    let list: Value = reqwest::get(format!("{url}/v1/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&list), vec![MODEL, "alias", "sql-lora", "chat-lora"]);

    // Adapter and alias requests run and echo the name they used.
    for model in ["chat-lora", "sql-lora", "alias"] {
        let (status, body) = post(
            &format!("{url}/v1/chat/completions"),
            json!({"model": model, "messages": [{"role": "user", "content": "q"}],
                   "max_tokens": 3}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["model"], model);
    }

    let unload = json!({"lora_name": "chat-lora"});
    let (status, _) = post(&format!("{url}/v1/unload_lora_adapter"), unload.clone()).await;
    assert_eq!(status, 200);
    let (status, body) = post(&format!("{url}/v1/unload_lora_adapter"), unload).await;
    assert_error(status, &body, 404, "NotFoundError");
    let (status, body) = post(
        &format!("{url}/v1/completions"),
        json!({"model": "chat-lora", "prompt": "q"}),
    )
    .await;
    assert_error(status, &body, 404, "NotFoundError");
    let list: Value = reqwest::get(format!("{url}/v1/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&list), vec![MODEL, "alias", "sql-lora"]);
}

#[tokio::test]
async fn bad_input_gets_vllm_errors() {
    let mut c = config();
    c.max_body_bytes = 4096;
    let (_sim, url) = start(c).await;
    let cmpl = format!("{url}/v1/completions");
    let chat = format!("{url}/v1/chat/completions");
    // (endpoint, body, status, type, param)
    let cases: Vec<(&str, Value, u16, &str, Option<&str>)> = vec![
        (
            &cmpl,
            json!({"model": MODEL}),
            400,
            "BadRequestError",
            Some("prompt"),
        ),
        (
            &chat,
            json!({"model": MODEL}),
            400,
            "BadRequestError",
            Some("messages"),
        ),
        (
            &chat,
            json!({"messages": []}),
            400,
            "BadRequestError",
            Some("messages"),
        ),
        (
            &cmpl,
            json!({"prompt": {"a": 1}}),
            400,
            "BadRequestError",
            Some("prompt"),
        ),
        (
            &chat,
            json!({"messages": "hi"}),
            400,
            "BadRequestError",
            Some("messages"),
        ),
        (
            &chat,
            json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
            400,
            "BadRequestError",
            Some("messages"),
        ),
        (
            &cmpl,
            json!({"prompt": "x", "max_tokens": "ten"}),
            400,
            "BadRequestError",
            Some("max_tokens"),
        ),
        (
            &cmpl,
            json!({"prompt": "x", "max_tokens": 0}),
            400,
            "BadRequestError",
            Some("max_tokens"),
        ),
        (
            &chat,
            json!({"messages": [{"role": "user", "content": "x"}],
                       "max_completion_tokens": -3}),
            400,
            "BadRequestError",
            Some("max_completion_tokens"),
        ),
        (
            &cmpl,
            // A list mixing texts and token ids is no prompt vLLM accepts.
            json!({"prompt": ["a", [1, 2]]}),
            400,
            "BadRequestError",
            Some("prompt"),
        ),
        (
            &cmpl,
            json!({"prompt": ""}),
            400,
            "BadRequestError",
            Some("prompt"),
        ),
        (
            &cmpl,
            json!({"prompt": "x", "stream_options": {"include_usage": true}}),
            400,
            "BadRequestError",
            Some("stream_options"),
        ),
        (
            &cmpl,
            json!({"model": "gpt-9", "prompt": "x"}),
            404,
            "NotFoundError",
            Some("model"),
        ),
        (
            &chat,
            json!({"model": "gpt-9", "messages": []}),
            404,
            "NotFoundError",
            Some("model"),
        ),
    ];
    for (endpoint, body, status, kind, param) in cases {
        let (got, resp) = post(endpoint, body.clone()).await;
        assert_error(got, &resp, status, kind);
        assert_eq!(resp["error"]["param"].as_str(), param, "{body} -> {resp}");
    }
    let (_, resp) = post(&cmpl, json!({"model": "gpt-9", "prompt": "x"})).await;
    assert_eq!(
        resp["error"]["message"],
        "The model `gpt-9` does not exist."
    );

    // Over the context window: vLLM's message, with the numbers.
    let (status, resp) = post(&cmpl, json!({"prompt": [1, 2, 3], "max_tokens": 8190})).await;
    assert_error(status, &resp, 400, "BadRequestError");
    assert_eq!(
        resp["error"]["message"],
        "This model's maximum context length is 8192 tokens. However, you requested 8193 \
         tokens (3 in the messages, 8190 in the completion). Please reduce the length of the \
         messages or completion."
    );

    // Malformed JSON, and a body over the limit.
    let client = reqwest::Client::new();
    let resp = client
        .post(&cmpl)
        .header("content-type", "application/json")
        .body("{\"prompt\": ")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_error(status, &body, 400, "BadRequestError");
    assert!(body["error"]["param"].is_null());
    let big = json!({"prompt": "x".repeat(8192)});
    let (status, body) = post(&cmpl, big).await;
    assert_error(status, &body, 413, "BadRequestError");

    // Unknown routes and wrong methods answer in the same shape.
    let (status, body) = post(&format!("{url}/v1/embeddings"), json!({})).await;
    assert_error(status, &body, 404, "NotFoundError");
    let resp = client.get(&cmpl).send().await.unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_error(status, &body, 405, "APIError");
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let (_sim, url) = start(config()).await;
    let (status, body) = post(
        &format!("{url}/v1/chat/completions"),
        json!({"messages": [{"role": "user", "content": "x", "cache_control": {"a": 1}}],
               "max_tokens": 2, "temperature": 0.7, "top_p": 0.9, "n": 1, "stop": ["\n"],
               "user": "u", "seed": 42, "x_gateway_objective": "critical", "stream_options": {},
               "kv_transfer_params": null}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
