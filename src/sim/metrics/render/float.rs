//! Floats spelled as Python's `prometheus_client` spells them, without allocating.

use std::fmt::{self, Write};

/// Writes `v` as `prometheus_client.utils.floatToGoString` does: Python's `repr`
/// (shortest round-trip digits, `.0` on integers, exponent below 1e-4 and from 1e16),
/// except that positive values from 1e6 up switch to an exponent as Go would
/// (`1234567.0` → `1.234567e+06`).
pub(crate) fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    let mut buf = StackStr::default();
    let abs = v.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Rust writes `1e-5` / `1.5e16`; Python writes `1e-05` / `1.5e+16`.
        let _ = write!(buf, "{v:e}");
        let s = buf.as_str();
        let (mantissa, exp) = s.split_once('e').unwrap_or((s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        out.push_str(mantissa);
        out.push('e');
        out.push(sign);
        if digits.len() < 2 {
            out.push('0');
        }
        out.push_str(digits);
        return;
    }
    // Rust's Display never uses an exponent and prints integers without a dot.
    let _ = write!(buf, "{v}");
    let s = buf.as_str();
    let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
    if v > 0.0 && int.len() > 6 {
        // floatToGoString: `d.ddd…` from all digits, trailing '0' and '.' stripped,
        // then `e+` and the exponent in at least two digits.
        let mut mantissa = StackStr::default();
        let _ = write!(mantissa, "{}.{}{}", &int[..1], &int[1..], frac);
        out.push_str(mantissa.as_str().trim_end_matches(['0', '.']));
        let _ = write!(out, "e+{:02}", int.len() - 1);
        return;
    }
    out.push_str(int);
    out.push('.');
    out.push_str(frac);
}

/// A fixed buffer for formatting one float without allocating. Rust's shortest
/// round-trip output is at most ~25 bytes in the ranges used above.
struct StackStr {
    buf: [u8; 64],
    len: usize,
}

impl Default for StackStr {
    fn default() -> StackStr {
        StackStr {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl StackStr {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
