//! Metric selectors as GIE's engine specs write them: a PromQL instant-vector selector
//! with equality matchers only, `name{label=value,...}`, values quoted or bare
//! (gie-facts §2.2). Parsed once when a spec is compiled; it does no I/O.

use std::fmt;
use std::str::FromStr;

use crate::epp::prom_text::Labels;

/// `name{label="value",...}`: a metric name and equality matchers. Values may be
/// double-quoted (with `\\`, `\"`, `\n` escapes), single-quoted or bare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

impl Selector {
    /// Whether a series carries every matcher. As in PromQL, `label=""` also matches
    /// a series without that label.
    pub fn matches(&self, labels: &Labels<'_>) -> bool {
        self.labels.iter().all(|(k, v)| match labels.get(k) {
            Some(value) => value.matches(v),
            None => v.is_empty(),
        })
    }
}

impl FromStr for Selector {
    type Err = String;

    fn from_str(spec: &str) -> Result<Selector, String> {
        let spec = spec.trim();
        let (name, rest) = match spec.find('{') {
            Some(i) => (spec[..i].trim_end(), Some(&spec[i + 1..])),
            None => (spec, None),
        };
        if !is_metric_name(name) {
            return Err(format!("invalid metric name {name:?}"));
        }
        let mut labels = Vec::new();
        if let Some(rest) = rest {
            let body = rest
                .trim_end()
                .strip_suffix('}')
                .ok_or_else(|| format!("label set in {spec:?} is not closed by `}}`"))?;
            let mut chars = body.chars().peekable();
            loop {
                let label: String = take_while(&mut chars, |c| c != '=' && c != '!' && c != ',');
                let label = label.trim().to_string();
                match chars.next() {
                    None if label.is_empty() => break,
                    Some(',') if label.is_empty() => continue,
                    Some('=') if chars.peek() != Some(&'~') => {}
                    Some('=' | '!') => {
                        return Err(format!("only `=` matchers are supported, in {spec:?}"));
                    }
                    _ => return Err(format!("expected `label=value` in {spec:?}")),
                }
                if !is_label_name(&label) {
                    return Err(format!("invalid label name {label:?} in {spec:?}"));
                }
                skip_spaces(&mut chars);
                let value = match chars.peek() {
                    Some(&q @ ('"' | '\'')) => {
                        chars.next();
                        quoted(&mut chars, q)
                            .ok_or_else(|| format!("unterminated value in {spec:?}"))?
                    }
                    _ => take_while(&mut chars, |c| c != ',').trim().to_string(),
                };
                labels.push((label, value));
                skip_spaces(&mut chars);
                match chars.next() {
                    None => break,
                    Some(',') => {}
                    Some(c) => return Err(format!("unexpected {c:?} in {spec:?}")),
                }
            }
        }
        Ok(Selector {
            name: name.to_string(),
            labels,
        })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.labels.is_empty() {
            let pairs: Vec<String> = self
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            write!(f, "{{{}}}", pairs.join(","))?;
        }
        Ok(())
    }
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

fn take_while(chars: &mut Chars<'_>, keep: impl Fn(char) -> bool) -> String {
    let mut out = String::new();
    while let Some(&c) = chars.peek().filter(|&&c| keep(c)) {
        out.push(c);
        chars.next();
    }
    out
}

fn skip_spaces(chars: &mut Chars<'_>) {
    while chars.next_if(|c| c.is_whitespace()).is_some() {}
}

/// The rest of a quoted value after its opening quote `q`; `None` if unterminated.
fn quoted(chars: &mut Chars<'_>, q: char) -> Option<String> {
    let mut out = String::new();
    loop {
        match chars.next()? {
            c if c == q => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                c => out.push(c),
            },
            c => out.push(c),
        }
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
