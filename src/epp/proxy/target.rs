//! Which requests the gateway forwards at all, decided before anything is read or
//! routed: the request target must be origin-form (`/path?query`), and the path one of
//! the inference API routes the model servers serve to clients.
//!
//! Everything else is refused here, with a 4xx naming what is wrong: an asterisk-form
//! (`OPTIONS *`), authority-form (`CONNECT host:port`) or absolute-form target can
//! never become an upstream URL, so it must never reach routing, where a URL the
//! gateway cannot build would look like a dead endpoint. And the model servers' admin
//! routes (`/v1/load_lora_adapter`, `/metrics`, `/sleep`, …) are not the clients'
//! business: forwarding them would let any client load adapters onto, or read, every
//! replica. Pure.

use axum::http::Uri;

use crate::epp::error::EppError;

/// The paths forwarded by default: the APIs GIE's and llm-d's request parsers know
/// (gie-facts §1.7, llm-d-facts §1.4) and the other inference routes of vLLM's and
/// SGLang's OpenAI servers. `GET /v1/models` is answered by the gateway itself.
pub const DEFAULT_FORWARD_PATHS: &[&str] = &[
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/conversations",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/images/generations",
    "/v1/completions/render",
    "/v1/chat/completions/render",
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/v1/score",
    "/v1/rerank",
    "/v2/rerank",
    "/rerank",
    "/score",
    "/pooling",
    "/classify",
    "/tokenize",
    "/detokenize",
    "/inference/v1/generate",
    "/generate",
];

/// Which paths the gateway forwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardPaths {
    /// Exactly these (compared without the query, a trailing `/` ignored).
    Only(Vec<String>),
    /// Every path (`--forward-paths '*'`).
    All,
}

impl Default for ForwardPaths {
    fn default() -> ForwardPaths {
        ForwardPaths::Only(
            DEFAULT_FORWARD_PATHS
                .iter()
                .map(|p| p.to_string())
                .collect(),
        )
    }
}

impl ForwardPaths {
    /// Parses `--forward-paths`: `*`, or a comma-separated list of paths that each
    /// start with `/`.
    pub fn parse(text: &str) -> Result<ForwardPaths, String> {
        if text.trim() == "*" {
            return Ok(ForwardPaths::All);
        }
        let mut paths = Vec::new();
        for path in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
                return Err(format!(
                    "`{path}` is not a path (each entry starts with `/` and has no query)"
                ));
            }
            paths.push(path.trim_end_matches('/').to_string());
        }
        if paths.is_empty() {
            return Err("give at least one path, or `*` for every path".into());
        }
        Ok(ForwardPaths::Only(paths))
    }

    fn allows(&self, path: &str) -> bool {
        match self {
            ForwardPaths::All => true,
            ForwardPaths::Only(paths) => {
                let path = path.trim_end_matches('/');
                paths.iter().any(|p| p == path)
            }
        }
    }
}

/// Checks a request target before the gateway reads the body: origin-form, and a path
/// it forwards. Returns the path and query to send upstream.
pub fn check(uri: &Uri, paths: &ForwardPaths) -> Result<String, EppError> {
    let origin_form =
        uri.scheme().is_none() && uri.authority().is_none() && uri.path().starts_with('/');
    if !origin_form {
        return Err(EppError::BadRequest(format!(
            "request target `{}` is not origin-form: send a path such as /v1/completions",
            truncate(&uri.to_string())
        )));
    }
    if !paths.allows(uri.path()) {
        return Err(EppError::NotFound(format!(
            "path `{}` is not an inference API route this gateway forwards",
            truncate(uri.path())
        )));
    }
    Ok(uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string()))
}

/// `/path?query`, nothing else: no scheme, no authority, no `*`.
pub fn origin_form(uri: &Uri) -> bool {
    uri.scheme().is_none() && uri.authority().is_none() && uri.path().starts_with('/')
}

/// At most 200 bytes of client text in an error message.
fn truncate(text: &str) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(text: &str) -> Result<String, u16> {
        let uri: Uri = text.parse().unwrap();
        check(&uri, &ForwardPaths::default()).map_err(|e| e.status())
    }

    #[test]
    fn only_origin_form_inference_routes_pass() {
        assert_eq!(
            target("/v1/completions?x=1"),
            Ok("/v1/completions?x=1".into())
        );
        assert_eq!(
            target("/v1/chat/completions/"),
            Ok("/v1/chat/completions/".into())
        );
        for non_origin in ["*", "http://evil/v1/completions", "10.0.0.1:8000"] {
            assert_eq!(target(non_origin), Err(400), "{non_origin}");
        }
        for admin in [
            "/v1/load_lora_adapter",
            "/metrics",
            "/sleep",
            "/",
            "/v1/completionsX",
        ] {
            assert_eq!(target(admin), Err(404), "{admin}");
        }
    }

    #[test]
    fn the_list_is_configurable() {
        let all = ForwardPaths::parse("*").unwrap();
        assert!(all.allows("/anything"));
        let some = ForwardPaths::parse("/v1/completions, /custom/").unwrap();
        assert!(some.allows("/custom") && some.allows("/v1/completions"));
        assert!(!some.allows("/v1/chat/completions"));
        assert!(ForwardPaths::parse("v1/x").is_err());
        assert!(ForwardPaths::parse(" , ").is_err());
    }
}
