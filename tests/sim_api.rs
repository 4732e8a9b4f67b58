//! `igw sim serve`'s drop-in API beyond a single prompt: prompt lists and token-id
//! prompts, `n`, logprobs, `response_format`, tools, the tokenizer endpoints,
//! `/version`, embeddings and `--tokenizer`, each checked for vLLM's shapes over
//! real HTTP against an in-process server.

mod support;

use serde_json::{Value, json};
use support::{MODEL, assert_error, config, get_json, parse_chunks, post, sse, start};

#[tokio::test]
async fn prompt_lists_and_n_give_one_choice_per_sequence_in_vllm_order() {
    let (_sim, url) = start(config()).await;
    let u = format!("{url}/v1/completions");
    let (s, one) = post(&u, json!({"prompt": "the cat", "max_tokens": 4, "seed": 1})).await;
    assert_eq!(s, 200, "{one}");
    let (s, many) = post(
        &u,
        json!({"prompt": ["the cat", "the cat"], "n": 3, "max_tokens": 4, "seed": 1, "ignore_eos": true}),
    )
    .await;
    assert_eq!(s, 200, "{many}");
    let choices = many["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 6);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["finish_reason"], "length");
    }
    // Each prompt's tokens count once; every choice's tokens count.
    let one_prompt = one["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(many["usage"]["prompt_tokens"], 2 * one_prompt);
    assert_eq!(many["usage"]["completion_tokens"], 24);
    assert_eq!(many["usage"]["total_tokens"], 2 * one_prompt + 24);
    // Sequences of one prompt differ; the first keeps the n = 1 output of the seed.
    assert_eq!(choices[0]["text"], one["choices"][0]["text"]);
    assert_ne!(choices[0]["text"], choices[1]["text"]);
    // A list of id lists.
    let (s, ids) = post(&u, json!({"prompt": [[5, 6], [7]], "max_tokens": 2})).await;
    assert_eq!(s, 200, "{ids}");
    assert_eq!(ids["usage"]["prompt_tokens"], 3);

    let (s, e) = post(&u, json!({"prompt": "x", "n": 0})).await;
    assert_error(s, &e, 400, "BadRequestError");
    assert_eq!(e["error"]["message"], "n must be at least 1, got 0.");
    let (s, e) = post(&u, json!({"prompt": "x", "n": 100000})).await;
    assert_error(s, &e, 400, "BadRequestError");
    let (s, e) = post(&u, json!({"prompt": [[1], []]})).await;
    assert_error(s, &e, 400, "BadRequestError");
    let (s, e) = post(&u, json!({"prompt": [999_999_999u32]})).await;
    assert_error(s, &e, 400, "BadRequestError");
    assert_eq!(
        e["error"]["message"],
        "Token id 999999999 is out of vocabulary"
    );
}

#[tokio::test]
async fn streamed_n_interleaves_choices_and_sums_usage() {
    let (_sim, url) = start(config()).await;
    let frames = sse(
        &format!("{url}/v1/chat/completions"),
        json!({"messages": [{"role": "user", "content": "hi"}], "n": 2, "max_tokens": 3,
               "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    let chunks = parse_chunks(&frames);
    for index in 0..2 {
        let mine: Vec<&Value> = chunks
            .iter()
            .filter(|c| c["choices"].get(0).is_some_and(|ch| ch["index"] == index))
            .collect();
        assert_eq!(mine[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(mine.len(), 1 + 3 + 1, "role, tokens, finish");
        assert_eq!(
            mine.last().unwrap()["choices"][0]["finish_reason"],
            "length"
        );
    }
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 6);
}

fn check_top(list: &[Value], want: usize) {
    assert_eq!(list.len(), want);
    let lps: Vec<f64> = list
        .iter()
        .map(|t| t["logprob"].as_f64().unwrap())
        .collect();
    assert!(lps.iter().all(|&x| x <= 0.0));
    assert!(lps.windows(2).all(|w| w[0] >= w[1]), "{lps:?}");
}

#[tokio::test]
async fn logprobs_have_vllm_shapes_and_are_seeded() {
    let (_sim, url) = start(config()).await;
    let body =
        json!({"prompt": "once", "max_tokens": 5, "logprobs": 3, "seed": 9, "ignore_eos": true});
    let (s, r) = post(&format!("{url}/v1/completions"), body.clone()).await;
    assert_eq!(s, 200, "{r}");
    let lp = &r["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), 5);
    let offsets: Vec<u64> = lp["text_offset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(offsets[0], 0);
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
    for (i, top) in lp["top_logprobs"].as_array().unwrap().iter().enumerate() {
        let map = top.as_object().unwrap();
        assert_eq!(map.len(), 3);
        let first = lp["token_logprobs"][i].as_f64().unwrap();
        assert!(first <= 0.0);
        assert!(map.values().all(|v| v.as_f64().unwrap() <= first));
    }
    let (_, again) = post(&format!("{url}/v1/completions"), body).await;
    assert_eq!(again["choices"][0]["logprobs"], *lp);

    let chat = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
                      "logprobs": true, "top_logprobs": 2, "seed": 3});
    let (s, r) = post(&format!("{url}/v1/chat/completions"), chat.clone()).await;
    assert_eq!(s, 200, "{r}");
    let content = r["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert!(!content.is_empty());
    for t in content {
        assert!(t["token"].is_string() && t["bytes"].is_array());
        check_top(t["top_logprobs"].as_array().unwrap(), 2);
    }
    let mut streamed = chat;
    streamed["stream"] = json!(true);
    let chunks = parse_chunks(&sse(&format!("{url}/v1/chat/completions"), streamed).await);
    let streamed_lp: Vec<Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["logprobs"]["content"].as_array().cloned())
        .flatten()
        .collect();
    assert_eq!(streamed_lp, *content);

    let (s, e) = post(
        &format!("{url}/v1/completions"),
        json!({"prompt": "x", "logprobs": 21}),
    )
    .await;
    assert_error(s, &e, 400, "BadRequestError");
    assert_eq!(
        e["error"]["message"],
        "Requested sample logprobs of 21, which is greater than max allowed: 20"
    );
}

#[tokio::test]
async fn response_format_gives_json_shaped_by_the_schema() {
    let (_sim, url) = start(config()).await;
    let schema = json!({"type": "object", "properties": {
        "name": {"type": "string"}, "age": {"type": "integer"}, "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["name", "age", "ok", "tags"]});
    for seed in 0..5 {
        let (s, r) = post(
            &format!("{url}/v1/chat/completions"),
            json!({"messages": [{"role": "user", "content": "a person"}], "seed": seed, "max_tokens": 200,
                   "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}}),
        )
        .await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["choices"][0]["finish_reason"], "stop");
        let v: Value =
            serde_json::from_str(r["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
        assert!(
            v["name"].is_string()
                && v["age"].is_i64()
                && v["ok"].is_boolean()
                && v["tags"].is_array(),
            "{v}"
        );
    }
    let (s, r) = post(
        &format!("{url}/v1/completions"),
        json!({"prompt": "json", "max_tokens": 100, "response_format": {"type": "json_object"}}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let v: Value = serde_json::from_str(r["choices"][0]["text"].as_str().unwrap()).unwrap();
    assert!(v.is_object());
    let (s, e) = post(
        &format!("{url}/v1/completions"),
        json!({"prompt": "x", "response_format": {"type": "yaml"}}),
    )
    .await;
    assert_error(s, &e, 400, "BadRequestError");
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"]}}}])
}

#[tokio::test]
async fn auto_tool_choice_needs_the_flags() {
    let (_sim, url) = start(config()).await;
    let (s, e) = post(
        &format!("{url}/v1/chat/completions"),
        json!({"messages": [{"role": "user", "content": "weather?"}], "tools": weather_tools(), "tool_choice": "auto"}),
    )
    .await;
    assert_error(s, &e, 400, "BadRequestError");
    assert_eq!(
        e["error"]["message"],
        "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set"
    );
    // A named choice needs no flag; a name not among the tools is refused.
    let named = json!({"type": "function", "function": {"name": "get_weather"}});
    let (s, r) = post(
        &format!("{url}/v1/chat/completions"),
        json!({"messages": [{"role": "user", "content": "w"}], "tools": weather_tools(), "tool_choice": named, "max_tokens": 100}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    check_call(&r["choices"][0]["message"]["tool_calls"][0]);
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    let other = json!({"type": "function", "function": {"name": "nope"}});
    let (s, e) = post(
        &format!("{url}/v1/chat/completions"),
        json!({"messages": [{"role": "user", "content": "w"}], "tools": weather_tools(), "tool_choice": other}),
    )
    .await;
    assert_error(s, &e, 400, "BadRequestError");
    let (s, e) = post(
        &format!("{url}/v1/chat/completions"),
        json!({"messages": [{"role": "user", "content": "w"}], "tool_choice": "required"}),
    )
    .await;
    assert_error(s, &e, 400, "BadRequestError");
}

fn check_call(call: &Value) {
    assert!(
        call["id"].as_str().unwrap().starts_with("chatcmpl-tool-"),
        "{call}"
    );
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string() && args["days"].is_i64(), "{args}");
}

#[tokio::test]
async fn auto_tool_choice_with_the_flags_calls_a_tool() {
    let mut c = config();
    c.enable_auto_tool_choice = true;
    c.tool_call_parser = Some("hermes".into());
    let (_sim, url) = start(c).await;
    for choice in [json!("auto"), json!("required")] {
        let (s, r) = post(
            &format!("{url}/v1/chat/completions"),
            json!({"messages": [{"role": "user", "content": "w"}], "tools": weather_tools(),
                   "tool_choice": choice, "max_tokens": 100}),
        )
        .await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
        check_call(&r["choices"][0]["message"]["tool_calls"][0]);
    }
    let chunks = parse_chunks(
        &sse(
            &format!("{url}/v1/chat/completions"),
            json!({"messages": [{"role": "user", "content": "w"}], "tools": weather_tools(),
                   "max_tokens": 100, "stream": true}),
        )
        .await,
    );
    let mut args = String::new();
    let mut name = None;
    for c in &chunks {
        for call in c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(n) = call["function"]["name"].as_str() {
                name = Some(n.to_string());
            }
            args.push_str(call["function"]["arguments"].as_str().unwrap_or_default());
        }
    }
    assert_eq!(name.as_deref(), Some("get_weather"));
    let v: Value = serde_json::from_str(&args).unwrap();
    assert!(v["city"].is_string(), "{v}");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn tokenize_detokenize_render_and_version() {
    let (_sim, url) = start(config()).await;
    let (s, t) = post(
        &format!("{url}/tokenize"),
        json!({"prompt": "hello world", "return_token_strs": true}),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    let ids = t["tokens"].clone();
    assert_eq!(t["count"], ids.as_array().unwrap().len());
    assert!(t["max_model_len"].as_u64().unwrap() > 0);
    assert_eq!(
        t["token_strs"].as_array().unwrap().len(),
        t["count"].as_u64().unwrap() as usize
    );
    let (s, d) = post(&format!("{url}/detokenize"), json!({"tokens": ids})).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d, json!({"prompt": "hello world"}));
    let (_, plain) = post(&format!("{url}/tokenize"), json!({"prompt": "x"})).await;
    assert!(plain["token_strs"].is_null());

    // Render gives the ids the engine counts: the same as usage.prompt_tokens.
    let messages = json!([{"role": "user", "content": "hello there"}]);
    let (s, r) = post(
        &format!("{url}/v1/chat/completions/render"),
        json!({"messages": messages, "max_tokens": 5}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert!(r["request_id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(r["model"], MODEL);
    assert_eq!(r["sampling_params"]["max_tokens"], 5);
    let (_, generated) = post(
        &format!("{url}/v1/chat/completions"),
        json!({"messages": messages, "max_tokens": 5}),
    )
    .await;
    assert_eq!(
        generated["usage"]["prompt_tokens"],
        r["token_ids"].as_array().unwrap().len()
    );
    let (_, tok) = post(&format!("{url}/tokenize"), json!({"messages": messages})).await;
    assert_eq!(tok["tokens"], r["token_ids"]);

    let (s, list) = post(
        &format!("{url}/v1/completions/render"),
        json!({"prompt": ["a b", "c"], "max_tokens": 3}),
    )
    .await;
    assert_eq!(s, 200, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list[0]["request_id"].as_str().unwrap().starts_with("cmpl-"));
    let (_, ab) = post(&format!("{url}/tokenize"), json!({"prompt": "a b"})).await;
    assert_eq!(list[0]["token_ids"], ab["tokens"]);
    let (_, ids) = post(
        &format!("{url}/v1/completions/render"),
        json!({"prompt": [[1, 2]]}),
    )
    .await;
    assert_eq!(ids[0]["token_ids"], json!([1, 2]));

    let (s, v) = get_json(&format!("{url}/version")).await;
    assert_eq!(s, 200);
    assert_eq!(v, json!({"version": "0.26.0"}));

    let (s, e) = post(
        &format!("{url}/tokenize"),
        json!({"prompt": "a", "messages": messages}),
    )
    .await;
    assert_error(s, &e, 400, "BadRequestError");
    let (s, e) = post(&format!("{url}/detokenize"), json!({})).await;
    assert_error(s, &e, 400, "BadRequestError");
}

#[tokio::test]
async fn a_pooling_model_serves_embeddings_and_no_generation() {
    let mut c = config();
    c.runner = igw::sim::server::Runner::Pooling;
    c.embedding_dimensions = 16;
    let (_sim, url) = start(c).await;
    let (s, r) = post(
        &format!("{url}/v1/embeddings"),
        json!({"input": ["hello", "hello", "world"]}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["object"], "list");
    assert!(r["id"].as_str().unwrap().starts_with("embd-"));
    let data = r["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["index"], i);
        assert_eq!(d["object"], "embedding");
        let v: Vec<f64> = d["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(v.len(), 16);
        let norm: f64 = v.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-3, "{norm}");
    }
    assert_eq!(data[0]["embedding"], data[1]["embedding"]);
    assert_ne!(data[0]["embedding"], data[2]["embedding"]);
    let (_, one) = post(&format!("{url}/tokenize"), json!({"prompt": "hello"})).await;
    let hello = one["count"].as_u64().unwrap();
    let (_, w) = post(&format!("{url}/tokenize"), json!({"prompt": "world"})).await;
    let world = w["count"].as_u64().unwrap();
    assert_eq!(r["usage"]["prompt_tokens"], 2 * hello + world);
    assert_eq!(r["usage"]["total_tokens"], 2 * hello + world);
    let (s, ids) = post(
        &format!("{url}/v1/embeddings"),
        json!({"input": [[1, 2, 3], [4]]}),
    )
    .await;
    assert_eq!(s, 200, "{ids}");
    assert_eq!(ids["usage"]["prompt_tokens"], 4);
    let (s, b) = post(
        &format!("{url}/v1/embeddings"),
        json!({"input": "x", "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(s, 200);
    // 16 little-endian f32s are 64 bytes: 88 base64 characters, padded.
    let b64 = b["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(b64.len(), 88);
    assert!(b64.ends_with('='));
    let (s, e) = post(
        &format!("{url}/v1/embeddings"),
        json!({"input": "x", "dimensions": 8}),
    )
    .await;
    assert_error(s, &e, 400, "BadRequestError");
    let (s, _) = post(&format!("{url}/v1/completions"), json!({"prompt": "x"})).await;
    assert_eq!(s, 404);
    let (s, _) = post(
        &format!("{url}/v1/chat/completions"),
        json!({"messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn a_tokenizer_json_gives_its_exact_counts() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/tokenizer/wordlevel.json"
    );
    let mut c = config();
    c.tokenizer = igw::sim::tokens::Tokenizer::from_file(path).expect("test tokenizer loads");
    let (_sim, url) = start(c).await;
    // Whitespace pre-tokenizer, one id per word: five words, one unknown.
    let (s, t) = post(
        &format!("{url}/tokenize"),
        json!({"prompt": "the cat of the zyzzyva"}),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["count"], 5);
    assert_eq!(t["tokens"][0], t["tokens"][3]);
    assert_eq!(t["tokens"][4], 0, "[UNK]");
    let (s, r) = post(
        &format!("{url}/v1/completions"),
        json!({"prompt": "the cat of the zyzzyva", "max_tokens": 6, "ignore_eos": true}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["usage"]["prompt_tokens"], 5);
    assert_eq!(r["usage"]["completion_tokens"], 6);
    // The output is the tokenizer's words, which it encodes back to 6 tokens.
    let text = r["choices"][0]["text"].as_str().unwrap().to_string();
    let (_, back) = post(&format!("{url}/tokenize"), json!({"prompt": text})).await;
    assert_eq!(back["count"], 6, "{text}");
}
