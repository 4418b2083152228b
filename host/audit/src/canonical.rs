//! Canonical JSON: the JSON Canonicalization Scheme (JCS) of
//! [RFC 8785](https://www.rfc-editor.org/rfc/rfc8785).
//!
//! An audit entry's hash is taken over bytes, and the same entry must give
//! the same bytes whoever writes it and whatever JSON library reads it back:
//! a `serde_json::Value` has no single serialization otherwise (key order,
//! whitespace, `1.0` vs `1`, `\u00e9` vs `é`). JCS fixes each choice:
//!
//! * no whitespace between tokens (RFC 8785 §3.2.1);
//! * object members sorted by their names compared as arrays of UTF-16 code
//!   units, recursively (§3.2.3) — so `"\u{e9}"` sorts before `"😀"` even
//!   though UTF-8 byte order would agree here and differ elsewhere;
//! * strings as ECMAScript's `JSON.stringify` writes them (§3.2.2.2): `"`
//!   and `\` escaped, the control characters below U+0020 written as `\b`,
//!   `\t`, `\n`, `\f`, `\r` or `\u00xx` (lower-case hex), everything else
//!   as its UTF-8 bytes;
//! * numbers as IEEE-754 doubles printed by ECMAScript's
//!   `Number.prototype.toString` (§3.2.2.3): the shortest digits that read
//!   back to the same double, in plain notation for magnitudes in
//!   `[1e-6, 1e21)` and exponent notation (`1e+21`, `5e-324`) outside it;
//!   `-0` prints as `0`. NaN and infinities have no JSON form and are
//!   refused ([`CanonicalError::NonFinite`]).
//!
//! Integers are doubles too under JCS: an integer of magnitude above 2^53
//! prints as the double nearest to it. The audit log refuses such integers
//! when an entry is written ([`crate::entry::check_details`]) so that what
//! is read back equals what was written; this module, which must also
//! canonicalize what it reads, follows the RFC.
//!
//! The code is this crate's own. `tests` checks it against the RFC's
//! examples and its Appendix B number table, and against vectors produced
//! by an ECMAScript engine (`tests/fixtures/`, made by
//! `tests/fixtures/make-vectors.mjs`).

use serde_json::{Map, Number, Value};
use std::fmt::Write as _;

/// The deepest nesting of arrays and objects [`to_string`] accepts.
///
/// Recursion is bounded so that a hostile value cannot exhaust the stack,
/// and kept below `serde_json`'s parser limit (128) so that everything the
/// log writes can be read back.
pub const MAX_DEPTH: usize = 100;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// NaN or an infinity: JSON has no such numbers (RFC 8785 §3.2.2.3).
    #[error("{0} is not a finite number and has no JSON form")]
    NonFinite(String),
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    #[error("arrays and objects nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// The canonical (RFC 8785) serialization of `value`.
pub fn to_string(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write_value(value, &mut out, 0)?;
    Ok(out)
}

/// The canonical serialization of `value`, as bytes.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    to_string(value).map(String::into_bytes)
}

fn write_value(value: &Value, out: &mut String, depth: usize) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            if depth >= MAX_DEPTH {
                return Err(CanonicalError::TooDeep);
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out, depth + 1)?;
            }
            out.push(']');
        }
        Value::Object(members) => {
            if depth >= MAX_DEPTH {
                return Err(CanonicalError::TooDeep);
            }
            write_object(members, out, depth)?;
        }
    }
    Ok(())
}

fn write_object(
    members: &Map<String, Value>,
    out: &mut String,
    depth: usize,
) -> Result<(), CanonicalError> {
    // Sort by UTF-16 code units (RFC 8785 §3.2.3). Names are unique in a
    // `Map`, so the order is total.
    let mut sorted: Vec<(Vec<u16>, &String, &Value)> = members
        .iter()
        .map(|(k, v)| (k.encode_utf16().collect(), k, v))
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    out.push('{');
    for (i, (_, name, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(name, out);
        out.push(':');
        write_value(v, out, depth + 1)?;
    }
    out.push('}');
    Ok(())
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(n: &Number, out: &mut String) -> Result<(), CanonicalError> {
    // Every JSON number is a double under JCS; an integer is converted to
    // the nearest one (exact up to 2^53).
    let v = if let Some(u) = n.as_u64() {
        u as f64
    } else if let Some(i) = n.as_i64() {
        i as f64
    } else {
        n.as_f64()
            .ok_or_else(|| CanonicalError::NonFinite(n.to_string()))?
    };
    out.push_str(&number_to_string(v)?);
    Ok(())
}

/// `v` as ECMAScript's `Number.prototype.toString` prints it (ECMA-262,
/// Number::toString, radix 10), which is what RFC 8785 §3.2.2.3 asks for.
///
/// With `k` the number of shortest round-trip decimal digits `d1…dk` and
/// `n` the position of the decimal point (`v = 0.d1…dk × 10^n`):
///
/// * `k ≤ n ≤ 21`: the digits and `n - k` zeros (`1e20` → `100000000000000000000`);
/// * `0 < n ≤ 21`: the digits with a point after the `n`th (`4.5`);
/// * `-6 < n ≤ 0`: `0.`, `-n` zeros, the digits (`0.000001`);
/// * otherwise exponent form `d1[.d2…dk]e±(n-1)` (`1e+21`, `1e-7`).
pub fn number_to_string(v: f64) -> Result<String, CanonicalError> {
    if !v.is_finite() {
        return Err(CanonicalError::NonFinite(v.to_string()));
    }
    if v == 0.0 {
        // Both +0 and -0.
        return Ok("0".to_owned());
    }
    // Rust's `{:e}` prints the shortest digits that round-trip, as
    // `d[.ddd]e[-]x`: that gives k. When two k-digit strings are equally
    // short and equally near `v` (`v` lies exactly half-way), ECMAScript
    // takes the even one and Rust's shortest mode need not; Rust's
    // fixed-precision mode is exact and rounds half to even, so the digits
    // come from it (e.g. 1424953923781206.25 → `…206.2`, RFC 8785
    // Appendix B). The nearest k-digit decimal round-trips whenever any
    // k-digit decimal does.
    let (shortest, _) = split_sci(&format!("{:e}", v.abs()));
    let (digits, exponent) = split_sci(&format!("{:.*e}", shortest.len() - 1, v.abs()));
    // (The nearest k-digit decimal never ends in 0: a shorter one would
    // then round-trip.)
    let k = digits.len() as i32;
    let n = exponent + 1;

    let mut out = String::with_capacity(k as usize + 8);
    if v < 0.0 {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = n - 1;
        let _ = write!(
            out,
            "e{}{}",
            if e < 0 { '-' } else { '+' },
            e.unsigned_abs()
        );
    }
    Ok(out)
}

/// The digits (without the point) and the exponent of Rust's `{:e}` output.
fn split_sci(sci: &str) -> (String, i32) {
    let (mantissa, exponent) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exponent = exponent.parse().expect("`{:e}` exponent is an integer");
    (mantissa.chars().filter(|c| *c != '.').collect(), exponent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(json_text: &str) -> String {
        to_string(&serde_json::from_str(json_text).unwrap()).unwrap()
    }

    /// RFC 8785 §3.2.2 (the "values" example): whitespace, number forms,
    /// string escapes and literals.
    #[test]
    fn rfc8785_values_example() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            canon(input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    /// RFC 8785 §3.2.3: property names sorted by UTF-16 code units, which
    /// puts U+1F600 (a surrogate pair, 0xD83D…) before U+FB33.
    #[test]
    fn rfc8785_sorting_example() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let text = canon(input);
        let order = [
            "\"\\r\"",
            "\"1\"",
            "\"\u{80}\"",
            "\"\u{f6}\"",
            "\"\u{20ac}\"",
            "\"\u{1f600}\"",
            "\"\u{fb33}\"",
        ];
        let positions: Vec<usize> = order.iter().map(|n| text.find(n).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(
            text,
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
             \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
             \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
    }

    /// RFC 8785 Appendix B: IEEE-754 bit patterns and their canonical text.
    #[test]
    fn rfc8785_appendix_b_numbers() {
        let table: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for &(bits, want) in table {
            let v = f64::from_bits(bits);
            assert_eq!(number_to_string(v).unwrap(), want, "{bits:#018x}");
        }
    }

    /// RFC 8785 Appendix B's NaN and Infinity rows: refused, not printed.
    #[test]
    fn non_finite_numbers_are_refused() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(
                number_to_string(v),
                Err(CanonicalError::NonFinite(_))
            ));
        }
        assert_eq!(
            f64::from_bits(0x7fffffffffffffff).is_nan(),
            number_to_string(f64::from_bits(0x7fffffffffffffff)).is_err()
        );
    }

    #[test]
    fn control_characters_and_non_ascii() {
        let v = json!("\u{0}\u{1f}\u{7f}\u{2028}\u{8}\u{c}é😀");
        assert_eq!(
            to_string(&v).unwrap(),
            "\"\\u0000\\u001f\u{7f}\u{2028}\\b\\f\u{e9}\u{1f600}\""
        );
    }

    #[test]
    fn nested_structures_sort_at_every_level_and_keep_array_order() {
        let v = json!({"b": [3, {"z": 1, "a": [true, null]}, "x"], "a": {}, "": []});
        assert_eq!(
            to_string(&v).unwrap(),
            r#"{"":[],"a":{},"b":[3,{"a":[true,null],"z":1},"x"]}"#
        );
    }

    #[test]
    fn integers_are_doubles() {
        assert_eq!(to_string(&json!(u64::MAX)).unwrap(), "18446744073709552000");
        assert_eq!(to_string(&json!(i64::MIN)).unwrap(), "-9223372036854776000");
        assert_eq!(to_string(&json!(-7)).unwrap(), "-7");
        assert_eq!(to_string(&json!(5.0)).unwrap(), "5");
        assert_eq!(to_string(&json!(-0.0)).unwrap(), "0");
    }

    #[test]
    fn nesting_deeper_than_the_cap_is_refused() {
        let mut v = json!(1);
        for _ in 0..MAX_DEPTH {
            v = json!([v]);
        }
        assert!(to_string(&v).is_ok());
        let v = json!({ "k": v });
        assert_eq!(to_string(&v), Err(CanonicalError::TooDeep));
    }

    /// The canonical text of a double reads back (with `serde_json`'s
    /// `float_roundtrip`) as the same double, so an entry's recomputed hash
    /// never differs from the one written. Sweeps bit patterns across the
    /// whole range, subnormals included.
    #[test]
    fn floats_parse_back_to_the_same_double() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut checked = 0;
        for _ in 0..200_000 {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let bits = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
            let v = f64::from_bits(bits);
            if !v.is_finite() {
                continue;
            }
            let text = number_to_string(v).unwrap();
            let back: f64 = serde_json::from_str::<Value>(&text)
                .unwrap()
                .as_f64()
                .unwrap();
            assert_eq!(back.to_bits(), if v == 0.0 { 0 } else { bits }, "{text}");
            checked += 1;
        }
        assert!(checked > 190_000);
    }

    /// Vectors printed by an ECMAScript engine (`make-vectors.mjs`): numbers
    /// by `Number.prototype.toString`, documents by `JSON.stringify` with
    /// keys sorted by JavaScript's default (UTF-16) order.
    #[test]
    fn ecmascript_engine_vectors() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let numbers = std::fs::read_to_string(dir.join("es-numbers.txt")).unwrap();
        let mut n = 0;
        for line in numbers.lines() {
            let (bits, want) = line.split_once(' ').unwrap();
            let v = f64::from_bits(u64::from_str_radix(bits, 16).unwrap());
            assert_eq!(number_to_string(v).unwrap(), want, "{bits}");
            n += 1;
        }
        assert!(n >= 10_000, "{n} number vectors");
        let docs = std::fs::read_to_string(dir.join("es-documents.txt")).unwrap();
        let mut n = 0;
        let mut lines = docs.lines();
        while let (Some(input), Some(want)) = (lines.next(), lines.next()) {
            assert_eq!(canon(input), want, "{input}");
            n += 1;
        }
        assert!(n >= 200, "{n} document vectors");
    }
}
