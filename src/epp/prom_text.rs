//! A small streaming parser of the Prometheus text exposition format, in both flavours
//! model servers serve: format 0.0.4 (vLLM, SGLang, Triton through Python's or Go's
//! client) and OpenMetrics 1.0 (`# EOF`, float-second timestamps, exemplars).
//!
//! The picker scrapes every endpoint every 50 ms (gie-facts §2.2), so the parser
//! borrows from the scraped text and allocates nothing: [`parse`] yields one
//! [`Sample`] per sample line, whose name and [`Labels`] are slices of the input and
//! whose label values are unescaped only when asked ([`LabelValue::matches`] compares
//! without unescaping at all). Metric names follow `[a-zA-Z_:][a-zA-Z0-9_:]*`, so vLLM's
//! `vllm:` names are read (the `prometheus-parse` crate drops them, rust-ecosystem §3).
//!
//! The text is untrusted. Nothing here panics on any input: a malformed line is
//! reported as a [`ParseError`] carrying its line number and skipped, and the lines
//! after it are still read. `# HELP` and other comments are ignored; `# TYPE` sets the
//! [`MetricType`] of the samples that follow; `# EOF` ends the input.
//!
//! Fuzzing: the tests feed thousands of seeded random and mutated texts. For a longer
//! run, a `cargo fuzz` target needs only `for _ in parse(&String::from_utf8_lossy(data)) {}`
//! in a separate fuzz crate (libfuzzer-sys stays out of this crate's dependencies).

use std::borrow::Cow;
use std::fmt;

/// Which flavour of the text format a body is in; it decides how timestamps read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: timestamps are integer milliseconds.
    #[default]
    Prometheus,
    /// `application/openmetrics-text`: timestamps are (fractional) seconds.
    OpenMetrics,
}

impl Format {
    /// The flavour a response's `Content-Type` announces; anything but OpenMetrics
    /// is read as 0.0.4.
    pub fn from_content_type(content_type: &str) -> Format {
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}

/// A family's type from its `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    /// `untyped`, `unknown`, or no `# TYPE` line for the sample's family.
    Unknown,
}

impl MetricType {
    fn from_token(token: &str) -> Option<MetricType> {
        Some(match token {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "untyped" | "unknown" => MetricType::Unknown,
            _ => return None,
        })
    }
}

/// One sample line, borrowed from the scraped text.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub labels: Labels<'a>,
    pub value: f64,
    /// Milliseconds since the Unix epoch, when the line carries a timestamp.
    pub timestamp_ms: Option<i64>,
    /// The type of the family this sample belongs to (from the last `# TYPE`).
    pub kind: MetricType,
}

/// The label set of a sample: the text between its braces, already validated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Labels<'a> {
    raw: &'a str,
}

impl<'a> Labels<'a> {
    /// The labels in the order they were written.
    pub fn iter(&self) -> LabelIter<'a> {
        LabelIter {
            raw: self.raw,
            pos: 0,
        }
    }

    /// The value of label `name`, if present (the first one, if repeated).
    pub fn get(&self, name: &str) -> Option<LabelValue<'a>> {
        self.iter().find(|l| l.name == name).map(|l| l.value)
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The escaped text between the braces.
    pub fn raw(&self) -> &'a str {
        self.raw
    }
}

/// One `name="value"` pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label<'a> {
    pub name: &'a str,
    pub value: LabelValue<'a>,
}

/// A label value as written, unescaped on demand (`\\`, `\"`, `\n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabelValue<'a> {
    raw: &'a str,
    escaped: bool,
}

impl<'a> LabelValue<'a> {
    /// The value, borrowed unless it contains escapes.
    pub fn get(&self) -> Cow<'a, str> {
        if self.escaped {
            Cow::Owned(self.chars().collect())
        } else {
            Cow::Borrowed(self.raw)
        }
    }

    /// Whether the unescaped value equals `s`, without allocating.
    pub fn matches(&self, s: &str) -> bool {
        if !self.escaped {
            return self.raw == s;
        }
        self.chars().eq(s.chars())
    }

    /// The unescaped characters.
    pub fn chars(&self) -> impl Iterator<Item = char> + 'a {
        let mut inner = self.raw.chars();
        std::iter::from_fn(move || match inner.next()? {
            '\\' => match inner.next()? {
                'n' => Some('\n'),
                other => Some(other),
            },
            c => Some(c),
        })
    }

    /// The value as written, escapes included.
    pub fn raw(&self) -> &'a str {
        self.raw
    }
}

/// Iterates over a validated label set.
#[derive(Clone, Debug)]
pub struct LabelIter<'a> {
    raw: &'a str,
    pos: usize,
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = Label<'a>;

    fn next(&mut self) -> Option<Label<'a>> {
        // The set was validated when its line was read, so an error cannot occur here;
        // should it, iteration simply ends.
        match lex_label(self.raw, self.pos) {
            Ok(LabelStep::Label(label, next)) => {
                self.pos = next;
                Some(label)
            }
            Ok(LabelStep::End(_)) | Err(_) => {
                self.pos = self.raw.len();
                None
            }
        }
    }
}

/// A malformed line: where it is and what is wrong with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ParseError {
    /// 1-based line number in the scraped text.
    pub line: usize,
    pub kind: ParseErrorKind,
}

/// What is wrong with a malformed line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("invalid metric name")]
    InvalidName,
    #[error("invalid label name")]
    InvalidLabelName,
    #[error("expected `=` after a label name")]
    ExpectedEquals,
    #[error("expected `\"` to open a label value")]
    ExpectedQuote,
    #[error("invalid escape sequence in a label value")]
    InvalidEscape,
    #[error("label value not terminated")]
    UnterminatedValue,
    #[error("expected `,` or `}}` after a label value")]
    ExpectedSeparator,
    #[error("label set not terminated")]
    UnterminatedLabels,
    #[error("missing sample value")]
    MissingValue,
    #[error("invalid sample value")]
    InvalidValue,
    #[error("invalid timestamp")]
    InvalidTimestamp,
    #[error("unexpected text after the sample")]
    TrailingText,
    #[error("malformed `# TYPE` line")]
    InvalidType,
}

/// Parses 0.0.4 text; see [`parse_format`].
pub fn parse(text: &str) -> Parser<'_> {
    parse_format(text, Format::Prometheus)
}

/// An iterator over the samples of `text`, yielding an error (and moving on) for
/// each malformed line.
pub fn parse_format(text: &str, format: Format) -> Parser<'_> {
    Parser {
        rest: Some(text),
        line: 0,
        format,
        family: None,
        only: None,
    }
}

/// Like [`parse_format`], but yields only samples named in `names`: other sample lines
/// are skipped after their name is read, the rest unvalidated (lines that do not start
/// with a valid name are still reported). A scrape needs a handful of vLLM's ~400
/// series, so this is about three times faster than a full parse.
pub fn parse_selected<'a>(text: &'a str, format: Format, names: &'a [String]) -> Parser<'a> {
    Parser {
        only: Some(names),
        ..parse_format(text, format)
    }
}

/// The streaming parser; see [`parse_format`].
#[derive(Clone, Debug)]
pub struct Parser<'a> {
    /// Text not yet read; `None` once the input or `# EOF` is reached.
    rest: Option<&'a str>,
    /// Number of the line last read, 1-based.
    line: usize,
    format: Format,
    /// The family named by the last `# TYPE` line.
    family: Option<(&'a str, MetricType)>,
    /// If set, the only sample names to read.
    only: Option<&'a [String]>,
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Sample<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.rest?;
            let (line, tail) = match rest.split_once('\n') {
                Some((line, tail)) => (line, Some(tail)),
                None => (rest, None),
            };
            self.rest = tail;
            self.line += 1;
            let line = line.strip_suffix('\r').unwrap_or(line);
            let line = line.trim_start_matches([' ', '\t']);
            let result = if line.is_empty() {
                continue;
            } else if let Some(comment) = line.strip_prefix('#') {
                match self.comment(comment) {
                    Ok(()) => continue,
                    Err(kind) => Err(kind),
                }
            } else if self.skipped(line) {
                continue;
            } else {
                self.sample(line)
            };
            let line = self.line;
            return Some(result.map_err(|kind| ParseError { line, kind }));
        }
    }
}

impl<'a> Parser<'a> {
    fn comment(&mut self, comment: &'a str) -> Result<(), ParseErrorKind> {
        let mut words = comment.split([' ', '\t']).filter(|w| !w.is_empty());
        match words.next() {
            Some("EOF") => self.rest = None,
            Some("TYPE") => {
                let name = words.next().ok_or(ParseErrorKind::InvalidType)?;
                let kind = words.next().and_then(MetricType::from_token);
                match kind {
                    Some(kind) if is_metric_name(name) && words.next().is_none() => {
                        self.family = Some((name, kind));
                    }
                    _ => return Err(ParseErrorKind::InvalidType),
                }
            }
            // `# HELP` and free comments carry nothing the picker uses.
            _ => {}
        }
        Ok(())
    }

    /// Whether a sample line is for a name [`parse_selected`] was not asked for.
    fn skipped(&self, line: &str) -> bool {
        let Some(only) = self.only else {
            return false;
        };
        let end = line
            .bytes()
            .position(|b| !is_name_byte(b))
            .unwrap_or(line.len());
        let name = slice(line, 0, end);
        // A line that does not even start with a name is still parsed, so that garbage
        // is reported rather than silently skipped.
        is_metric_name(name) && !only.iter().any(|n| n == name)
    }

    fn sample(&self, line: &'a str) -> Result<Sample<'a>, ParseErrorKind> {
        let bytes = line.as_bytes();
        let name_end = bytes
            .iter()
            .position(|&b| !is_name_byte(b))
            .unwrap_or(bytes.len());
        let name = slice(line, 0, name_end);
        if !is_metric_name(name) {
            return Err(ParseErrorKind::InvalidName);
        }
        // Go's parser allows blanks between the name and its label set.
        let mut pos = name_end;
        while matches!(bytes.get(pos), Some(b' ' | b'\t')) {
            pos += 1;
        }
        let mut labels = Labels::default();
        if bytes.get(pos) == Some(&b'{') {
            let close = scan_labels(line, pos + 1)?;
            labels = Labels {
                raw: slice(line, pos + 1, close),
            };
            pos = close + 1;
        } else if pos == name_end {
            // Either the end of the line (no value) or a character no name may hold.
            return Err(match bytes.get(pos) {
                None => ParseErrorKind::MissingValue,
                Some(_) => ParseErrorKind::InvalidName,
            });
        }
        let mut fields = slice(line, pos, line.len())
            .split([' ', '\t'])
            .filter(|f| !f.is_empty());
        let value = parse_value(fields.next().ok_or(ParseErrorKind::MissingValue)?)?;
        let mut timestamp_ms = None;
        let mut next = fields.next();
        if let Some(token) = next.filter(|t| !t.starts_with('#')) {
            timestamp_ms = Some(self.parse_timestamp(token)?);
            next = fields.next();
        }
        // An OpenMetrics exemplar (` # {trace_id="…"} 1.0`) may follow; it is ignored.
        if next.is_some_and(|t| !t.starts_with('#')) {
            return Err(ParseErrorKind::TrailingText);
        }
        Ok(Sample {
            name,
            labels,
            value,
            timestamp_ms,
            kind: self.kind_of(name),
        })
    }

    fn parse_timestamp(&self, token: &str) -> Result<i64, ParseErrorKind> {
        match self.format {
            Format::Prometheus => token
                .parse::<i64>()
                .map_err(|_| ParseErrorKind::InvalidTimestamp),
            Format::OpenMetrics => {
                let seconds: f64 = token
                    .parse()
                    .map_err(|_| ParseErrorKind::InvalidTimestamp)?;
                if !seconds.is_finite() {
                    return Err(ParseErrorKind::InvalidTimestamp);
                }
                // `as` saturates, so an absurd timestamp cannot overflow.
                Ok((seconds * 1000.0).round() as i64)
            }
        }
    }

    /// The type of the family `name` belongs to: the last `# TYPE` family, if `name`
    /// is it or it plus one of the sample suffixes the formats define.
    fn kind_of(&self, name: &str) -> MetricType {
        const SUFFIXES: [&str; 9] = [
            "", "_total", "_bucket", "_count", "_sum", "_created", "_info", "_gcount", "_gsum",
        ];
        match self.family {
            Some((family, kind))
                if name
                    .strip_prefix(family)
                    .is_some_and(|suffix| SUFFIXES.contains(&suffix)) =>
            {
                kind
            }
            _ => MetricType::Unknown,
        }
    }
}

/// `NaN`, `+Inf`, `-Inf` and decimal floats with optional exponents. Rust's float
/// syntax accepts the same spellings Go's `ParseFloat` does for these (case-insensitive
/// `inf`, `infinity`, `nan`), except hexadecimal floats, which no exporter writes.
fn parse_value(token: &str) -> Result<f64, ParseErrorKind> {
    token.parse().map_err(|_| ParseErrorKind::InvalidValue)
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(is_name_byte)
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `s[start..end]`, or `""` if that is not a valid range. Every index passed here is at
/// an ASCII byte or an end, so the fallback never triggers; it keeps the parser
/// panic-free by construction.
fn slice(s: &str, start: usize, end: usize) -> &str {
    s.get(start..end).unwrap_or("")
}

/// Validates the label set starting at `start` (just after `{`) and returns the index
/// of its closing `}`.
fn scan_labels(line: &str, start: usize) -> Result<usize, ParseErrorKind> {
    let mut pos = start;
    loop {
        match lex_label(line, pos)? {
            LabelStep::Label(_, next) => pos = next,
            LabelStep::End(at) if line.as_bytes().get(at) == Some(&b'}') => return Ok(at),
            LabelStep::End(_) => return Err(ParseErrorKind::UnterminatedLabels),
        }
    }
}

enum LabelStep<'a> {
    /// A label, and where the next one starts.
    Label(Label<'a>, usize),
    /// No more labels: the index of the `}` (or the end of the text).
    End(usize),
}

/// Reads one `name="value"` (and its trailing `,`) at `pos`, or finds the end of the
/// set. Shared by line validation (which stops at `}`) and [`LabelIter`] (which runs
/// over the text between the braces, so stops at its end).
fn lex_label(s: &str, pos: usize) -> Result<LabelStep<'_>, ParseErrorKind> {
    let bytes = s.as_bytes();
    let skip_ws = |mut i: usize| {
        while matches!(bytes.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        i
    };
    let mut i = skip_ws(pos);
    match bytes.get(i) {
        None | Some(b'}') => return Ok(LabelStep::End(i)),
        Some(_) => {}
    }
    let name_start = i;
    while bytes
        .get(i)
        .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_')
    {
        i += 1;
    }
    let name = slice(s, name_start, i);
    if !is_label_name(name) {
        return Err(ParseErrorKind::InvalidLabelName);
    }
    i = skip_ws(i);
    if bytes.get(i) != Some(&b'=') {
        return Err(ParseErrorKind::ExpectedEquals);
    }
    i = skip_ws(i + 1);
    if bytes.get(i) != Some(&b'"') {
        return Err(ParseErrorKind::ExpectedQuote);
    }
    i += 1;
    let value_start = i;
    let mut escaped = false;
    loop {
        match bytes.get(i) {
            None => return Err(ParseErrorKind::UnterminatedValue),
            Some(b'"') => break,
            Some(b'\\') => {
                if !matches!(bytes.get(i + 1), Some(b'\\' | b'"' | b'n')) {
                    return Err(ParseErrorKind::InvalidEscape);
                }
                escaped = true;
                i += 2;
            }
            Some(_) => i += 1,
        }
    }
    let value = LabelValue {
        raw: slice(s, value_start, i),
        escaped,
    };
    i = skip_ws(i + 1);
    match bytes.get(i) {
        Some(b',') => i += 1,
        None | Some(b'}') => {}
        Some(_) => return Err(ParseErrorKind::ExpectedSeparator),
    }
    Ok(LabelStep::Label(Label { name, value }, i))
}

impl fmt::Display for Labels<'_> {
    /// The set in canonical form, `{a="x",b="y"}`, escapes kept; empty for no labels.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, label) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}=\"{}\"", label.name, label.value.raw)?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests;
