//! A tolerant parser for the JSON dialect written by Java's fastjson 1.x, plus a
//! lenient serde `Deserializer` over the parsed [`Value`].
//!
//! Java brokers and NameServers encode bodies with plain `JSON.toJSONString`, which
//! is not always valid JSON:
//! - non-String map keys are written unquoted: `{"brokerAddrs":{0:"a:10911"}}`;
//! - `Map<MessageQueue, X>` keys are written as inline objects:
//!   `{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{...}}}`;
//! - non-finite doubles come out as `null` (and some writers emit `NaN`/`Infinity`).
//!
//! The parser therefore keeps objects as ordered `(key, value)` pairs where a key may
//! be any value, accepts unquoted identifier/number keys, single-quoted strings,
//! `NaN`/`Infinity`/`-Infinity`, trailing (and doubled) commas and `/* */`/`//`
//! comments, and bounds nesting to [`MAX_DEPTH`]. It never panics on any input.
//!
//! The deserializer coerces like fastjson does when it binds to Java types: numbers
//! from strings, strings from numbers/booleans, booleans from `"true"`/`"1"`, `null`
//! to the type's zero, and a string holding JSON to an object/list.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};

use crate::error::{RemotingError, Result};

/// Deepest nesting of arrays/objects accepted (deeper input is an error, not a stack
/// overflow).
pub const MAX_DEPTH: usize = 512;

/// A parsed fastjson value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    /// Entries in source order. Keys are usually `String`, but fastjson writes
    /// `Number` keys for `Map<Long/Integer, _>` and `Object` keys for
    /// `Map<MessageQueue, _>`.
    Object(Vec<(Value, Value)>),
}

/// A numeric literal. Integers are stored as integers (no allocation); anything
/// else keeps its literal text so no precision is lost (Java BigDecimal, huge
/// longs). Always one of: an integer, a decimal float, `NaN`, `Infinity`, `-Infinity`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Number(Repr);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Repr {
    I(i64),
    U(u64),
    /// Validated non-integer literal (sign `+` and Java type suffixes removed).
    Text(Box<str>),
}

impl Number {
    pub fn as_i64(&self) -> Option<i64> {
        match &self.0 {
            Repr::I(i) => Some(*i),
            Repr::U(u) => i64::try_from(*u).ok(),
            Repr::Text(_) => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match &self.0 {
            Repr::I(i) => u64::try_from(*i).ok(),
            Repr::U(u) => Some(*u),
            Repr::Text(_) => None,
        }
    }

    /// Always succeeds: NaN/±Infinity included; huge integers lose precision.
    pub fn as_f64(&self) -> f64 {
        match &self.0 {
            Repr::I(i) => *i as f64,
            Repr::U(u) => *u as f64,
            Repr::Text(t) => match &**t {
                "NaN" => f64::NAN,
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                s => s.parse().unwrap_or(f64::NAN),
            },
        }
    }

    pub fn is_integer(&self) -> bool {
        !matches!(self.0, Repr::Text(_))
    }

    /// Validates a literal (without suffix); `None` if it is not a number.
    fn from_literal(lit: &str) -> Option<Number> {
        let lit = lit.strip_prefix('+').unwrap_or(lit);
        if let Ok(i) = lit.parse::<i64>() {
            return Some(Number(Repr::I(i)));
        }
        if let Ok(u) = lit.parse::<u64>() {
            return Some(Number(Repr::U(u)));
        }
        match lit {
            "NaN" | "Infinity" | "-Infinity" => {}
            _ => {
                let body = lit.strip_prefix('-').unwrap_or(lit);
                // Rust's float parser also accepts "inf"/"nan"/"infinity"; only
                // digit literals are numbers here.
                if !body
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_digit() || b == b'.')
                    || !body.bytes().all(|b| {
                        b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')
                    })
                    || lit.parse::<f64>().is_err()
                {
                    return None;
                }
            }
        }
        Some(Number(Repr::Text(lit.into())))
    }

    /// Parses a number held in a string (trimmed; `NaN`/`Infinity` accepted).
    pub fn parse(s: &str) -> Option<Number> {
        Number::from_literal(s.trim())
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::I(i) => write!(f, "{i}"),
            Repr::U(u) => write!(f, "{u}"),
            Repr::Text(t) => f.write_str(t),
        }
    }
}

impl From<i64> for Number {
    fn from(v: i64) -> Self {
        Number(Repr::I(v))
    }
}

impl From<u64> for Number {
    fn from(v: u64) -> Self {
        i64::try_from(v).map_or(Number(Repr::U(v)), |i| Number(Repr::I(i)))
    }
}

impl Value {
    /// The value of the first entry whose key is the string `key` (objects only).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(entries) => entries.iter().find_map(|(k, v)| match k {
                Value::String(s) if s == key => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn entries(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Object(e) => Some(e),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Text form used when a Java `String` is bound to a non-string value (and for
    /// non-string map keys in [`Value::to_json`]): strings as-is, numbers as written,
    /// booleans/null as their words, objects/arrays as compact standard JSON.
    pub fn to_text(&self) -> String {
        match self {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => "null".to_string(),
            Value::Array(_) | Value::Object(_) => self.to_compact_json(),
        }
    }

    /// Standard JSON text: non-string keys are quoted with their [`Value::to_text`];
    /// non-finite numbers become `null`.
    pub fn to_compact_json(&self) -> String {
        let mut out = String::new();
        self.write_compact(&mut out);
        out
    }

    fn write_compact(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => {
                if n.as_f64().is_finite() {
                    out.push_str(&n.to_string())
                } else {
                    out.push_str("null")
                }
            }
            Value::String(s) => crate::jsonw::write_str(out, s, false),
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_compact(out);
                }
                out.push(']');
            }
            Value::Object(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    crate::jsonw::write_str(out, &k.to_text(), false);
                    out.push(':');
                    v.write_compact(out);
                }
                out.push('}');
            }
        }
    }

    /// Converts to a `serde_json::Value` (lossy where standard JSON cannot express the
    /// fastjson form: non-string keys become their text, NaN/Infinity become null,
    /// duplicate keys keep the last value).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    i.into()
                } else if let Some(u) = n.as_u64() {
                    u.into()
                } else {
                    serde_json::Number::from_f64(n.as_f64())
                        .map_or(serde_json::Value::Null, serde_json::Value::Number)
                }
            }
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(Value::to_json).collect()),
            Value::Object(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_text(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => Value::Number(
                n.as_i64()
                    .map(Number::from)
                    .or_else(|| n.as_u64().map(Number::from))
                    .or_else(|| Number::parse(&n.to_string()))
                    .unwrap_or(Number(Repr::Text("NaN".into()))),
            ),
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(a) => Value::Array(a.into_iter().map(Value::from).collect()),
            serde_json::Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| (Value::String(k), Value::from(v)))
                    .collect(),
            ),
        }
    }
}

// ---------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------

/// Parses fastjson text. Errors carry the byte offset; no input panics.
pub fn parse(input: &str) -> Result<Value> {
    let mut p = Parser {
        src: input,
        b: input.as_bytes(),
        pos: 0,
    };
    // A UTF-8 BOM is tolerated, as Java readers often strip it.
    if input.starts_with('\u{feff}') {
        p.pos = '\u{feff}'.len_utf8();
    }
    p.skip_ws()?;
    if p.pos >= p.b.len() {
        return Err(p.err("empty input"));
    }
    let v = p.parse_value()?;
    p.skip_ws()?;
    if p.pos < p.b.len() {
        return Err(p.err("trailing characters after the value"));
    }
    Ok(v)
}

/// Parses bytes as fastjson text; invalid UTF-8 is replaced (as Java's
/// `new String(bytes, UTF_8)` does).
pub fn parse_bytes(input: &[u8]) -> Result<Value> {
    parse(&String::from_utf8_lossy(input))
}

struct Parser<'a> {
    src: &'a str,
    b: &'a [u8],
    pos: usize,
}

/// An open container while parsing.
enum Frame {
    Array(Vec<Value>),
    /// `key` is `Some` between a key's `:` and its value.
    Object {
        entries: Vec<(Value, Value)>,
        key: Option<Value>,
    },
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'$' | b'-' | b'.') || c >= 0x80
}

impl<'a> Parser<'a> {
    fn err(&self, reason: &str) -> RemotingError {
        RemotingError::malformed(format_args!(
            "fastjson parse error at byte {}: {}",
            self.pos, reason
        ))
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn skip_ws(&mut self) -> Result<()> {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => self.pos += 1,
                b'/' if self.b.get(self.pos + 1) == Some(&b'*') => {
                    match self.src[self.pos + 2..].find("*/") {
                        Some(end) => self.pos += 2 + end + 2,
                        None => return Err(self.err("unterminated comment")),
                    }
                }
                b'/' if self.b.get(self.pos + 1) == Some(&b'/') => {
                    match self.src[self.pos..].find('\n') {
                        Some(end) => self.pos += end + 1,
                        None => self.pos = self.b.len(),
                    }
                }
                _ => break,
            }
        }
        Ok(())
    }

    /// Parses one value. Iterative (explicit stack of open containers), so nesting
    /// depth costs heap, not call stack; depth is capped at [`MAX_DEPTH`].
    fn parse_value(&mut self) -> Result<Value> {
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            // Phase A: at the start of a slot (top level, array element, object key
            // or object value) either open a container or read a scalar.
            self.skip_ws()?;
            let in_key = matches!(stack.last(), Some(Frame::Object { key: None, .. }));
            let in_array = matches!(stack.last(), Some(Frame::Array(_)));
            let mut value = match self.peek() {
                None if stack.is_empty() => return Err(self.err("unexpected end of input")),
                None if in_array => return Err(self.err("unterminated array")),
                None => return Err(self.err("unterminated object")),
                // Extra commas (`[,1,,2]`, `{,"a":1}`) are skipped, as fastjson does.
                Some(b',') if in_key || in_array => {
                    self.pos += 1;
                    continue;
                }
                Some(b'}') if in_key => {
                    self.pos += 1;
                    match stack.pop() {
                        Some(Frame::Object { entries, .. }) => Value::Object(entries),
                        _ => return Err(self.err("internal: object frame expected")),
                    }
                }
                Some(b']') if in_array => {
                    self.pos += 1;
                    match stack.pop() {
                        Some(Frame::Array(items)) => Value::Array(items),
                        _ => return Err(self.err("internal: array frame expected")),
                    }
                }
                Some(c @ (b'{' | b'[')) => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(self.err("nesting deeper than 512 levels"));
                    }
                    self.pos += 1;
                    stack.push(if c == b'{' {
                        Frame::Object {
                            entries: Vec::new(),
                            key: None,
                        }
                    } else {
                        Frame::Array(Vec::new())
                    });
                    continue;
                }
                Some(_) if in_key => self.parse_scalar_key()?,
                Some(_) => self.parse_scalar()?,
            };
            // Phase B: hand the finished value to its parent; a parent that is
            // thereby closed becomes the next value to hand up.
            loop {
                match stack.last_mut() {
                    None => return Ok(value),
                    Some(Frame::Array(items)) => {
                        items.push(value);
                        self.skip_ws()?;
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                break;
                            }
                            Some(b']') => {
                                self.pos += 1;
                                match stack.pop() {
                                    Some(Frame::Array(items)) => value = Value::Array(items),
                                    _ => return Err(self.err("internal: array frame expected")),
                                }
                            }
                            None => return Err(self.err("unterminated array")),
                            Some(_) => return Err(self.err("expected ',' or ']' in array")),
                        }
                    }
                    Some(Frame::Object { entries, key }) => match key.take() {
                        None => {
                            *key = Some(value);
                            self.skip_ws()?;
                            if self.peek() != Some(b':') {
                                return Err(self.err("expected ':' after object key"));
                            }
                            self.pos += 1;
                            break;
                        }
                        Some(k) => {
                            entries.push((k, value));
                            self.skip_ws()?;
                            match self.peek() {
                                Some(b',') => {
                                    self.pos += 1;
                                    break;
                                }
                                Some(b'}') => {
                                    self.pos += 1;
                                    match stack.pop() {
                                        Some(Frame::Object { entries, .. }) => {
                                            value = Value::Object(entries)
                                        }
                                        _ => {
                                            return Err(self.err("internal: object frame expected"));
                                        }
                                    }
                                }
                                None => return Err(self.err("unterminated object")),
                                Some(_) => return Err(self.err("expected ',' or '}' in object")),
                            }
                        }
                    },
                }
            }
        }
    }

    /// A string, number or literal word in value position.
    fn parse_scalar(&mut self) -> Result<Value> {
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => Ok(Value::String(self.parse_string(q)?)),
            Some(c) if c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.') => {
                Ok(Value::Number(self.parse_number()?))
            }
            Some(c) if is_ident_byte(c) => {
                let start = self.pos;
                let word = self.ident();
                match word {
                    "null" | "undefined" => Ok(Value::Null),
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    "NaN" | "Infinity" => Ok(Value::Number(Number(Repr::Text(word.into())))),
                    _ => {
                        self.pos = start;
                        Err(self.err("unexpected bare word"))
                    }
                }
            }
            None => Err(self.err("unexpected end of input")),
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn ident(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(is_ident_byte) {
            self.pos += 1;
        }
        // Stops only at ASCII bytes, so the slice is on char boundaries.
        &self.src[start..self.pos]
    }

    /// A non-container object key: quoted string, number (fastjson's unquoted
    /// `Map<Long, _>` keys) or bare identifier.
    fn parse_scalar_key(&mut self) -> Result<Value> {
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => Ok(Value::String(self.parse_string(q)?)),
            Some(c) if c.is_ascii_digit() || matches!(c, b'-' | b'+') => {
                // `-1` is a number key; `-foo`-style words are identifiers.
                let save = self.pos;
                match self.parse_number() {
                    Ok(n) => Ok(Value::Number(n)),
                    Err(_) => {
                        self.pos = save;
                        self.ident_key()
                    }
                }
            }
            Some(c) if is_ident_byte(c) => self.ident_key(),
            None => Err(self.err("unexpected end of input in object")),
            Some(_) => Err(self.err("unexpected character where an object key was expected")),
        }
    }

    fn ident_key(&mut self) -> Result<Value> {
        let word = self.ident();
        Ok(match word {
            "" => return Err(self.err("empty object key")),
            "null" => Value::Null,
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            w => Value::String(w.to_string()),
        })
    }

    fn parse_number(&mut self) -> Result<Number> {
        let start = self.pos;
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.pos += 1;
        }
        if matches!(self.peek(), Some(b'I' | b'N')) {
            let word = self.ident();
            let lit = &self.src[start..self.pos];
            return match word {
                "Infinity" | "NaN" => {
                    Number::from_literal(lit).ok_or_else(|| self.err("invalid number"))
                }
                _ => Err(self.err("invalid number")),
            };
        }
        while let Some(c) = self.peek() {
            let exp_sign = matches!(c, b'+' | b'-')
                && self.pos > start
                && matches!(self.b.get(self.pos - 1), Some(b'e' | b'E'));
            if c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E') || exp_sign {
                self.pos += 1;
            } else {
                break;
            }
        }
        let lit = &self.src[start..self.pos];
        // Java type suffixes (fastjson accepts `1L`, `1.5F`, ...).
        if matches!(
            self.peek(),
            Some(b'L' | b'l' | b'S' | b's' | b'B' | b'b' | b'F' | b'f' | b'D' | b'd')
        ) && !self.b.get(self.pos + 1).copied().is_some_and(is_ident_byte)
        {
            self.pos += 1;
        }
        Number::from_literal(lit).ok_or_else(|| {
            self.pos = start;
            self.err("invalid number")
        })
    }

    fn parse_string(&mut self, quote: u8) -> Result<String> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(c) = self.peek() {
                if c == quote || c == b'\\' {
                    break;
                }
                self.pos += 1;
            }
            // Quote and backslash are ASCII: slice boundaries are char boundaries.
            out.push_str(&self.src[start..self.pos]);
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(_) => {
                    self.pos += 1; // backslash
                    self.parse_escape(&mut out)?;
                }
            }
        }
    }

    fn hex(&mut self, n: usize) -> Option<u32> {
        let s = self.src.get(self.pos..self.pos + n)?;
        let v = u32::from_str_radix(s, 16).ok()?;
        if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.pos += n;
        Some(v)
    }

    fn parse_escape(&mut self, out: &mut String) -> Result<()> {
        let Some(c) = self.peek() else {
            return Err(self.err("unterminated escape"));
        };
        self.pos += 1;
        match c {
            b'"' => out.push('"'),
            b'\'' => out.push('\''),
            b'\\' => out.push('\\'),
            b'/' => out.push('/'),
            b'b' => out.push('\u{8}'),
            b'f' | b'F' => out.push('\u{c}'),
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'v' => out.push('\u{b}'),
            b'0'..=b'7' => out.push(char::from(c - b'0')),
            b'x' => match self.hex(2) {
                Some(v) => out.push(char::from_u32(v).unwrap_or('\u{fffd}')),
                None => return Err(self.err("invalid \\x escape")),
            },
            b'u' => {
                let Some(hi) = self.hex(4) else {
                    return Err(self.err("invalid \\u escape"));
                };
                let ch = if (0xD800..0xDC00).contains(&hi) {
                    // Surrogate pair; a lone surrogate becomes U+FFFD.
                    let save = self.pos;
                    if self.src.get(self.pos..self.pos + 2) == Some("\\u") {
                        self.pos += 2;
                        match self.hex(4) {
                            Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                                char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                            }
                            _ => {
                                self.pos = save;
                                None
                            }
                        }
                    } else {
                        None
                    }
                } else {
                    char::from_u32(hi)
                };
                out.push(ch.unwrap_or('\u{fffd}'));
            }
            _ => {
                // Unknown escape: keep the character (fastjson is equally forgiving).
                // Step back to re-read it as a full UTF-8 char.
                self.pos -= 1;
                let ch = self.src[self.pos..].chars().next().unwrap_or('\u{fffd}');
                self.pos += ch.len_utf8();
                out.push(ch);
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// Lenient deserializer
// ---------------------------------------------------------------------------------

/// Deserializes a typed value from a parsed fastjson [`Value`], coercing leniently.
pub fn from_value<T: DeserializeOwned>(v: &Value) -> Result<T> {
    T::deserialize(De(v)).map_err(|e| {
        RemotingError::malformed(format_args!(
            "cannot read {}: {}",
            short_type_name::<T>(),
            e.0
        ))
    })
}

/// Parses fastjson bytes and deserializes them.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    from_value(&parse_bytes(bytes)?)
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    // Keep the last path segment of the outer type for readable messages.
    let outer = full.split('<').next().unwrap_or(full);
    outer.rsplit("::").next().unwrap_or(outer)
}

/// Error of the lenient deserializer (converted to `RemotingError::Malformed`).
#[derive(Debug)]
pub struct DeError(String);

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError(msg.to_string())
    }
}

/// Deserializer over a borrowed [`Value`]. Strings are handed out as transient
/// (`visit_str`) so a value parsed on the fly from a JSON-holding string can be used.
#[derive(Clone, Copy)]
pub struct De<'a>(pub &'a Value);

enum IntLike {
    I(i64),
    U(u64),
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn number_to_int(n: &Number) -> Option<IntLike> {
    if let Some(i) = n.as_i64() {
        return Some(IntLike::I(i));
    }
    if let Some(u) = n.as_u64() {
        return Some(IntLike::U(u));
    }
    // fastjson casts decimals to integers by truncation (BigDecimal.intValue()).
    let f = n.as_f64();
    if f.is_finite() && f >= i64::MIN as f64 && f < i64::MAX as f64 {
        Some(IntLike::I(f.trunc() as i64))
    } else {
        None
    }
}

fn int_of(v: &Value) -> Result<IntLike, DeError> {
    match v {
        Value::Null => Ok(IntLike::I(0)),
        Value::Bool(b) => Ok(IntLike::I(i64::from(*b))),
        Value::Number(n) => {
            number_to_int(n).ok_or_else(|| DeError(format!("number {n} is not an integer")))
        }
        Value::String(s) if s.trim().is_empty() => Ok(IntLike::I(0)),
        Value::String(s) => Number::parse(s)
            .as_ref()
            .and_then(number_to_int)
            .ok_or_else(|| DeError(format!("string {:?} is not an integer", truncate(s)))),
        other => Err(DeError(format!(
            "expected an integer, found {}",
            kind(other)
        ))),
    }
}

fn float_of(v: &Value) -> Result<f64, DeError> {
    match v {
        // fastjson writes NaN/Infinity as null; read it back as 0.
        Value::Null => Ok(0.0),
        Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => Ok(n.as_f64()),
        Value::String(s) if s.trim().is_empty() => Ok(0.0),
        Value::String(s) => Number::parse(s)
            .map(|n| n.as_f64())
            .ok_or_else(|| DeError(format!("string {:?} is not a number", truncate(s)))),
        other => Err(DeError(format!("expected a number, found {}", kind(other)))),
    }
}

/// Lenient boolean: `true`/`false` (any case), `1`/`0`, numbers (non-zero = true).
pub fn parse_bool_lenient(s: &str) -> Option<bool> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("true") || t == "1" {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") || t == "0" || t.is_empty() {
        Some(false)
    } else {
        None
    }
}

fn bool_of(v: &Value) -> Result<bool, DeError> {
    match v {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => Ok(n.as_f64() != 0.0),
        Value::String(s) => parse_bool_lenient(s)
            .ok_or_else(|| DeError(format!("string {:?} is not a boolean", truncate(s)))),
        other => Err(DeError(format!(
            "expected a boolean, found {}",
            kind(other)
        ))),
    }
}

fn truncate(s: &str) -> String {
    if s.len() <= 64 {
        s.to_string()
    } else {
        let mut end = 64;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    }
}

/// A string that holds JSON, bound to a structured type: fastjson parses it.
fn reparse(s: &str) -> Result<Value, DeError> {
    match parse(s) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => Ok(v),
        _ => Err(DeError(format!(
            "expected an object or array, found string {:?}",
            truncate(s)
        ))),
    }
}

struct Seq<'a>(std::slice::Iter<'a, Value>);

impl<'de, 'a> SeqAccess<'de> for Seq<'a> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.0.next() {
            Some(v) => seed.deserialize(De(v)).map(Some),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Map<'a> {
    iter: std::slice::Iter<'a, (Value, Value)>,
    value: Option<&'a Value>,
}

impl<'de, 'a> MapAccess<'de> for Map<'a> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(KeyDe(k)).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(v) => seed.deserialize(De(v)),
            None => Err(DeError("map value requested before its key".into())),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

fn visit_object<'de, V: Visitor<'de>>(
    entries: &[(Value, Value)],
    visitor: V,
) -> Result<V::Value, DeError> {
    visitor.visit_map(Map {
        iter: entries.iter(),
        value: None,
    })
}

macro_rules! de_int {
    ($($m:ident),*) => {$(
        fn $m<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            match int_of(self.0)? {
                IntLike::I(i) => visitor.visit_i64(i),
                IntLike::U(u) => visitor.visit_u64(u),
            }
        }
    )*};
}

impl<'de, 'a> Deserializer<'de> for De<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else {
                    visitor.visit_f64(n.as_f64())
                }
            }
            Value::String(s) => visitor.visit_str(s),
            Value::Array(items) => visitor.visit_seq(Seq(items.iter())),
            Value::Object(entries) => visit_object(entries, visitor),
        }
    }

    de_int!(
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64
    );

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_f64(float_of(self.0)?)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_f64(float_of(self.0)?)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_bool(bool_of(self.0)?)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::String(s) if s.chars().count() == 1 => {
                visitor.visit_char(s.chars().next().unwrap_or_default())
            }
            other => Err(DeError(format!("expected a char, found {}", kind(other)))),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::String(s) => visitor.visit_str(s),
            // A non-optional Java String bound to null: read as empty.
            Value::Null => visitor.visit_str(""),
            other => visitor.visit_string(other.to_text()),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::String(s) => visitor.visit_bytes(s.as_bytes()),
            Value::Array(items) => visitor.visit_seq(Seq(items.iter())),
            other => Err(DeError(format!("expected bytes, found {}", kind(other)))),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Seq(items.iter())),
            Value::Null => visitor.visit_seq(Seq([].iter())),
            Value::String(s) => {
                let v = reparse(s)?;
                De(&v).deserialize_seq(visitor)
            }
            other => Err(DeError(format!("expected an array, found {}", kind(other)))),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Object(entries) => visit_object(entries, visitor),
            Value::Null => visit_object(&[], visitor),
            Value::String(s) => {
                let v = reparse(s)?;
                De(&v).deserialize_map(visitor)
            }
            other => Err(DeError(format!(
                "expected an object, found {}",
                kind(other)
            ))),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            // fastjson reads an integer as the enum ordinal.
            Value::Number(n) => match n.as_u64().and_then(|u| u32::try_from(u).ok()) {
                Some(idx) => visitor.visit_enum(idx.into_deserializer()),
                None => Err(DeError(format!("invalid enum ordinal {n}"))),
            },
            other => Err(DeError(format!(
                "expected an enum name, found {}",
                kind(other)
            ))),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

/// Deserializer for map keys: string-like targets get the key's text (so
/// `BTreeMap<String, _>` and `serde_json::Value` accept number/object keys), while
/// typed targets (`i64`, a `MessageQueue` struct) read the key value itself.
struct KeyDe<'a>(&'a Value);

macro_rules! key_delegate {
    ($($m:ident),*) => {$(
        fn $m<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            De(self.0).$m(visitor)
        }
    )*};
}

impl<'de, 'a> Deserializer<'de> for KeyDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::String(s) => visitor.visit_str(s),
            other => visitor.visit_string(other.to_text()),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    key_delegate!(
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_ignored_any
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        De(self.0).deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        De(self.0).deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        De(self.0).deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        De(self.0).deserialize_struct(name, fields, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        De(self.0).deserialize_enum(name, variants, visitor)
    }
}

/// serde helper for `Map<K, V>` bodies whose keys are not strings (fastjson inline
/// object keys such as `MessageQueue`): reads them as ordered `(K, V)` pairs.
/// Also accepts the array-of-pairs form that `Vec<(K, V)>` serializes to.
pub fn deserialize_entries<'de, D, K, V>(deserializer: D) -> Result<Vec<(K, V)>, D::Error>
where
    D: Deserializer<'de>,
    K: serde::Deserialize<'de>,
    V: serde::Deserialize<'de>,
{
    struct EntriesVisitor<K, V>(std::marker::PhantomData<(K, V)>);

    impl<'de, K, V> Visitor<'de> for EntriesVisitor<K, V>
    where
        K: serde::Deserialize<'de>,
        V: serde::Deserialize<'de>,
    {
        type Value = Vec<(K, V)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map or a list of [key, value] pairs")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
            while let Some((k, v)) = map.next_entry()? {
                out.push((k, v));
            }
            Ok(out)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(pair) = seq.next_element::<(K, V)>()? {
                out.push(pair);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_any(EntriesVisitor(std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fastjson_quirks() {
        let v = parse(r#"{0:"a",1:'b',"x":[1,2,],"q":NaN,"r":-Infinity,n:null,}"#).unwrap();
        let e = v.entries().unwrap();
        assert_eq!(e[0].0, Value::Number(Number::from(0i64)));
        assert_eq!(e[1].1, Value::String("b".into()));
        assert_eq!(
            v.get("x").unwrap(),
            &Value::Array(vec![
                Value::Number(Number::from(1i64)),
                Value::Number(Number::from(2i64))
            ])
        );
        assert!(
            v.get("q")
                .map(|q| matches!(q, Value::Number(n) if n.as_f64().is_nan()))
                .unwrap()
        );
        assert!(v.get("n").unwrap().is_null());
    }

    #[test]
    fn inline_object_keys() {
        let v = parse(r#"{{"brokerName":"b","queueId":0,"topic":"T"}:{"x":1}}"#).unwrap();
        let e = v.entries().unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0.get("brokerName").and_then(Value::as_str), Some("b"));
    }

    #[test]
    fn depth_is_bounded() {
        let ok = "[".repeat(512) + &"]".repeat(512);
        assert!(parse(&ok).is_ok());
        let deep = "[".repeat(513) + &"]".repeat(513);
        assert!(parse(&deep).is_err());
        let deep_keys = "{".repeat(600);
        assert!(parse(&deep_keys).is_err());
        let deep_inline_keys = "{".repeat(513) + "1:1" + &"}".repeat(513);
        assert!(parse(&deep_inline_keys).is_err());
    }

    #[test]
    fn max_depth_values_are_usable_on_a_small_stack() {
        // Everything that walks a parsed value must cope with MAX_DEPTH nesting on
        // a tokio-sized (2 MiB) stack, in debug builds too.
        let handle = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let nested = "[".repeat(511) + &"]".repeat(511);
                let body = format!(r#"{{"topicName":"T","deep":{nested}}}"#);
                let v = parse(&body).unwrap();
                let _ = v.to_json();
                let _ = v.to_compact_json();
                let _ = v.clone() == v;
                let tc = crate::body::TopicConfig::from_body(body.as_bytes());
                drop(v);
                tc.map(|t| t.topic_name)
            })
            .unwrap();
        let res = handle.join().expect("no stack overflow");
        assert_eq!(res.unwrap(), "T");
    }

    #[test]
    fn escapes_and_surrogates() {
        let v = parse(r#""a\u00e9\ud83d\ude00\ud800x\/\x41""#).unwrap();
        assert_eq!(v.as_str(), Some("aé😀\u{fffd}x/A"));
    }

    #[test]
    fn numbers() {
        assert_eq!(parse("12L").unwrap(), Value::Number(Number::from(12i64)));
        assert_eq!(
            parse("18446744073709551615").unwrap(),
            Value::Number(Number::parse("18446744073709551615").unwrap())
        );
        assert!(parse("1.2.3").is_err());
        assert!(parse("-").is_err());
        assert!(parse("+").is_err());
        assert!(Number::parse("inf").is_none());
        assert!(Number::parse("nan").is_none());
        assert_eq!(Number::parse(" 42 ").unwrap().as_i64(), Some(42));
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "", "   ", "{", "[1,", "{\"a\"}", "{\"a\":}", "\"abc", "tru", "{a:1} x", "/*",
        ] {
            assert!(parse(s).is_err(), "{s:?} should fail");
        }
    }

    #[test]
    fn lenient_deserialize() {
        #[derive(serde::Deserialize, Debug, Default)]
        #[serde(default, rename_all = "camelCase")]
        struct S {
            a: i32,
            b: bool,
            c: String,
            d: f64,
            e: Option<String>,
            m: std::collections::BTreeMap<i64, String>,
        }
        let v =
            parse(r#"{"a":"7","b":"1","c":12.50,"d":null,"e":null,"m":{"0":"x",1:"y"},"zz":{}}"#)
                .unwrap();
        let s: S = from_value(&v).unwrap();
        assert_eq!(s.a, 7);
        assert!(s.b);
        assert_eq!(s.c, "12.50");
        assert_eq!(s.d, 0.0);
        assert_eq!(s.e, None);
        assert_eq!(s.m.get(&0).map(String::as_str), Some("x"));
        assert_eq!(s.m.get(&1).map(String::as_str), Some("y"));
    }
}
