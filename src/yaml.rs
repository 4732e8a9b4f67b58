//! YAML files as users read their errors: every loader (picker configuration,
//! objectives, pool file, scenario, latency profile) renders parse errors here, in
//! words meant for the person who wrote the file rather than the parser library's
//! (no "use from_str_multiple", no `Nodes { nodes: 250001 }`), tells an empty file
//! from a broken one, and finds the line a semantic error is about.
//!
//! Pure text: no I/O.

use std::borrow::Cow;

use serde_saphyr::{Error, MessageFormatter, UserMessageFormatter};

/// The message for a YAML parse or schema error, with its line and a snippet of the
/// file.
pub fn error_text(e: &Error) -> String {
    let text = e.render_with_formatter(&Messages);
    // The caller prefixes the file; a second "error:" would only repeat the first.
    match text.strip_prefix("error: ") {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

/// serde-saphyr's user-facing wording, with the library-facing phrases replaced.
struct Messages;

impl MessageFormatter for Messages {
    fn format_message<'a>(&self, err: &'a Error) -> Cow<'a, str> {
        match err {
            Error::MultipleDocuments { .. } => Cow::Borrowed(
                "the file holds more than one YAML document (a `---` line starts another); \
                 give one",
            ),
            Error::Budget { .. } => Cow::Borrowed(
                "the file is too large or too deeply nested to be a configuration file",
            ),
            Error::Eof { .. } => Cow::Borrowed("the file ends in the middle of a value"),
            _ => UserMessageFormatter.format_message(err),
        }
    }
}

/// Decodes `text` as a `T`; on failure, the path of the field it failed at (`.` for
/// the document itself, `spec.targetPorts[1]` deeper) and the message.
pub fn decode_with_path<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, (String, String)> {
    let mut field = String::new();
    serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
            field = e.path().to_string();
            e.into_inner()
        })
    })
    .map_err(|e| {
        let field = if field.is_empty() { ".".into() } else { field };
        (field, error_text(&e))
    })
}

/// Whether `text` holds nothing but blank lines and comments.
pub fn is_blank(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#') || l == "---")
}

/// The 1-based line of the `occurrence`-th (0-based) line whose content, after any
/// list dash, is `key: value` (quotes around the value allowed), if there is one.
pub fn line_of(text: &str, key: &str, value: &str, occurrence: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let l = line.trim_start().trim_start_matches('-').trim();
            let Some(rest) = l.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
                return false;
            };
            let v = rest.split(" #").next().unwrap_or(rest).trim();
            v.trim_matches(|c| c == '"' || c == '\'') == value
        })
        .nth(occurrence)
        .map(|(i, _)| i + 1)
}

/// The 1-based line, at or after `from`, whose content starts with `key:`.
pub fn line_of_key_after(text: &str, key: &str, from: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, line)| {
            let l = line.trim_start().trim_start_matches('-').trim_start();
            l.strip_prefix(key).is_some_and(|r| r.starts_with(':'))
        })
        .map(|(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Doc {
        a: u32,
    }

    fn err(text: &str) -> String {
        error_text(&serde_saphyr::from_str::<Doc>(text).unwrap_err())
    }

    #[test]
    fn library_phrases_become_plain_words() {
        let two = err("a: 1\n---\na: 2\n");
        assert!(two.contains("more than one YAML document"), "{two}");
        assert!(!two.contains("from_str_multiple"), "{two}");
        let big = format!("a: {}{}\n", "[".repeat(5000), "]".repeat(5000));
        let big = err(&big);
        assert!(!big.contains("Nodes {") && !big.contains("budget"), "{big}");
    }

    #[test]
    fn blank_files_and_lines_are_found() {
        assert!(is_blank("") && is_blank("\n# only a comment\n  \n---\n"));
        assert!(!is_blank("a: 1"));
        let text = "plugins:\n- type: queue-scorer\n- name: \"p\"\n  type: x\n  parameters:\n    blockSize: -4\n- name: p\n";
        assert_eq!(line_of(text, "type", "queue-scorer", 0), Some(2));
        assert_eq!(line_of(text, "name", "p", 0), Some(3));
        assert_eq!(line_of(text, "name", "p", 1), Some(7));
        assert_eq!(line_of_key_after(text, "blockSize", 3), Some(6));
        assert_eq!(line_of(text, "name", "q", 0), None);
    }
}
