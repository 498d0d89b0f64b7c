//! Minimal JSON text writing shared by the header and route encoders. Hand-written
//! (not serde_json) because we need fastjson's unquoted integer keys, a fixed field
//! order and optional ASCII-only escaping (fastjson `BrowserCompatible`).

use std::fmt::Write as _;

/// Appends `s` as a JSON string literal. `ascii_only` escapes every non-ASCII char
/// as `\uXXXX` (UTF-16 units), like fastjson's `BrowserCompatible` feature.
pub(crate) fn write_str(out: &mut String, s: &str, ascii_only: bool) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ascii_only && !c.is_ascii() => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{:04x}", unit);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `"name":` (field names are ASCII identifiers chosen by us).
pub(crate) fn write_field(out: &mut String, first: &mut bool, name: &str) {
    if !*first {
        out.push(',');
    }
    *first = false;
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
}

/// Appends an integer. With `browser_safe`, integers outside JavaScript's safe range
/// are written as strings, as fastjson `BrowserCompatible` does.
pub(crate) fn write_i64(out: &mut String, v: i64, browser_safe: bool) {
    const MAX_SAFE: i64 = 9_007_199_254_740_991;
    if browser_safe && !(-MAX_SAFE..=MAX_SAFE).contains(&v) {
        let _ = write!(out, "\"{v}\"");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Appends an integer map key: unquoted (`0:`) for fastjson's legacy output, quoted
/// (`"0":`) for standard JSON.
pub(crate) fn write_int_key(out: &mut String, first: &mut bool, key: i64, quoted: bool) {
    if !*first {
        out.push(',');
    }
    *first = false;
    if quoted {
        let _ = write!(out, "\"{key}\":");
    } else {
        let _ = write!(out, "{key}:");
    }
}

/// Appends a string map key.
pub(crate) fn write_str_key(out: &mut String, first: &mut bool, key: &str, ascii_only: bool) {
    if !*first {
        out.push(',');
    }
    *first = false;
    write_str(out, key, ascii_only);
    out.push(':');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let mut s = String::new();
        write_str(&mut s, "a\"\\\n\u{1}é😀", false);
        assert_eq!(s, "\"a\\\"\\\\\\n\\u0001é😀\"");
        let mut s = String::new();
        write_str(&mut s, "é😀", true);
        assert_eq!(s, "\"\\u00e9\\ud83d\\ude00\"");
        let mut s = String::new();
        write_i64(&mut s, 9_007_199_254_740_992, true);
        assert_eq!(s, "\"9007199254740992\"");
    }
}
