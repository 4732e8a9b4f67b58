//! Durations written as Go writes them (`50ms`, `2s`, `1m30s`), since GIE's flags and
//! configuration parameters are (gie-facts §5.1, §8.1).
//!
//! Pure text conversion: no clock, no I/O, so the scheduler's plugins may use it.

use std::time::Duration;

use serde::Deserialize;

/// Parses a Go duration (`time.ParseDuration`): decimal numbers with optional
/// fractions, each followed by a unit `ns`, `us` (`µs`), `ms`, `s`, `m` or `h`, as in
/// `1m30s` or `1.5s`; a bare `0` is zero. Negative durations are rejected.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let err = || format!("invalid duration {text:?} (expected e.g. 50ms, 2s, 1m30s)");
    let s = text.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(err());
    }
    // Integer nanoseconds, so `250us` is exactly 250 µs (no float rounding).
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let (whole, frac) = match rest[..number_len].split_once('.') {
            Some((w, f)) => (w, f),
            None => (&rest[..number_len], ""),
        };
        if whole.is_empty() && frac.is_empty() || frac.contains('.') || frac.len() > 18 {
            return Err(err());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| err())?
        };
        let frac_value: u128 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| err())?
        };
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_nanos: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        let scale = 10u128.pow(frac.len() as u32);
        let nanos = whole
            .checked_mul(unit_nanos)
            .and_then(|n| n.checked_add(frac_value * unit_nanos / scale))
            .ok_or_else(err)?;
        total = total.checked_add(nanos).ok_or_else(err)?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| err())?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Writes a duration the way Go prints short ones: `50ms`, `2s`, `1.5s`.
pub fn format_go_duration(d: Duration) -> String {
    if d.is_zero() {
        "0s".to_string()
    } else if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_nanos().is_multiple_of(1_000_000) && d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// `#[serde(deserialize_with = "deserialize_go_duration")]` for Go duration strings.
pub fn deserialize_go_duration<'de, D>(de: D) -> Result<Duration, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text = String::deserialize(de)?;
    parse_go_duration(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("50ms", Ok(ms(50))),
            ("2s", Ok(ms(2000))),
            ("1.5s", Ok(ms(1500))),
            ("1m30s", Ok(ms(90_000))),
            ("1h", Ok(ms(3_600_000))),
            ("250us", Ok(Duration::from_micros(250))),
            ("250µs", Ok(Duration::from_micros(250))),
            ("10ns", Ok(Duration::from_nanos(10))),
            ("0", Ok(Duration::ZERO)),
            ("+3s", Ok(ms(3000))),
            ("", Err(())),
            ("5", Err(())),
            ("-1s", Err(())),
            ("1d", Err(())),
            ("ms", Err(())),
            ("1..2s", Err(())),
            ("1e3s", Err(())),
        ] {
            assert_eq!(parse_go_duration(text).map_err(|_| ()), want, "{text:?}");
        }
        for d in [ms(0), ms(50), ms(2000), ms(1500)] {
            assert_eq!(parse_go_duration(&format_go_duration(d)), Ok(d));
        }
    }
}
