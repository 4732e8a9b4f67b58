//! What `response_format`, `tools` and `tool_choice` make of a request's output, with
//! vLLM's checks and messages: `"auto"` needs `--enable-auto-tool-choice` (and a
//! parser); a named tool must be among `tools`; `tool_choice` needs `tools`.
//!
//! With tools and a choice that calls one, the output is that tool's call, its
//! arguments shaped by the function's `parameters`. `auto` always calls a tool (the
//! simulated model is eager); which one is a seeded pick. Nothing here does I/O.

use serde_json::Value;

use super::config::SimServerConfig;
use super::error::ApiError;
use super::job::{Shape, splitmix};

/// The shape `response_format` asks for.
pub fn response_shape(format: Option<&Value>) -> Result<Shape, ApiError> {
    let Some(format) = format else {
        return Ok(Shape::Free);
    };
    let bad = |m: String| ApiError::bad_request(m).with_param("response_format");
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(Shape::Free),
        Some("json_object") => Ok(Shape::Json(None)),
        Some("json_schema") => {
            let Some(spec) = format.get("json_schema").filter(|v| v.is_object()) else {
                return Err(bad(
                    "`json_schema` must be set when `type` is `json_schema`.".into(),
                ));
            };
            let schema = spec
                .get("schema")
                .or_else(|| spec.get("json_schema"))
                .cloned();
            Ok(Shape::Json(schema))
        }
        Some(other) => Err(bad(format!(
            "response_format type `{other}` is not supported; use `text`, `json_object` or \
             `json_schema`."
        ))),
        None => Err(bad("response_format needs a `type`.".into())),
    }
}

/// The tool call a request asks for, if any (`None`: no tool is called).
pub fn tool_shape(
    config: &SimServerConfig,
    tools: Option<&Value>,
    choice: Option<&Value>,
    seed: Option<i64>,
) -> Result<Option<Shape>, ApiError> {
    let bad = |m: &str, param: &str| ApiError::bad_request(m.to_string()).with_param(param);
    let functions: Vec<&Value> = match tools {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|t| t.get("function").unwrap_or(&Value::Null))
            .collect(),
        Some(_) => return Err(bad("`tools` must be a list of tools.", "tools")),
    };
    if functions
        .iter()
        .any(|f| f.get("name").and_then(Value::as_str).is_none())
    {
        return Err(bad("Every tool needs a `function` with a `name`.", "tools"));
    }
    let choice = match choice {
        None | Some(Value::Null) if functions.is_empty() => return Ok(None),
        // vLLM's default with tools: auto.
        None | Some(Value::Null) => "auto".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => match o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
        {
            Some(name) => format!("function:{name}"),
            None => {
                return Err(bad(
                    "A named `tool_choice` needs `function.name`.",
                    "tool_choice",
                ));
            }
        },
        Some(_) => {
            return Err(bad(
                "`tool_choice` must be a string or an object.",
                "tool_choice",
            ));
        }
    };
    if functions.is_empty() && choice != "none" {
        return Err(bad(
            "When using `tool_choice`, `tools` must be set.",
            "tool_choice",
        ));
    }
    let pick = |seed: Option<i64>| {
        let s = seed.map_or_else(rand::random::<u64>, |s| splitmix(s as u64));
        functions[(s % functions.len() as u64) as usize]
    };
    let (function, finish_as_tool_calls, content_null) = match choice.as_str() {
        "none" => return Ok(None),
        "auto" => {
            if !config.enable_auto_tool_choice || config.tool_call_parser.is_none() {
                return Err(bad(
                    "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set",
                    "tool_choice",
                ));
            }
            (pick(seed), true, true)
        }
        "required" => (pick(seed), true, false),
        named => match named.strip_prefix("function:") {
            Some(name) => match functions.iter().find(|f| f["name"] == name) {
                Some(f) => (*f, false, false),
                None => {
                    return Err(bad(
                        &format!("Tool '{name}' has not been passed in `tools`."),
                        "tool_choice",
                    ));
                }
            },
            None => {
                return Err(bad(
                    &format!("Invalid value for `tool_choice`: `{named}`."),
                    "tool_choice",
                ));
            }
        },
    };
    Ok(Some(Shape::Tool {
        name: function["name"].as_str().unwrap_or_default().to_string(),
        parameters: function.get("parameters").cloned(),
        finish_as_tool_calls,
        content_null,
    }))
}
