//! `RemotingCommand` and its two header encodings (`RP/RemotingCommand.java`,
//! `RocketMQSerializable.java`).
//!
//! A frame after the 4-byte total length (which [`crate::FrameCodec`] strips, like
//! Netty's `LengthFieldBasedFrameDecoder`) is:
//! `int32 (serializeType << 24 | headerLen) | header | body`.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

use crate::codes::{FERRY_REMOTING_VERSION, LanguageCode, SerializeType};
use crate::error::{RemotingError, Result};
use crate::fastjson::{self, Value};
use crate::headers::CommandHeader;
use crate::jsonw;

/// Flag bit 0 (`RPC_TYPE`): set on responses.
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1 (`RPC_ONEWAY`): set on requests that expect no response.
pub const FLAG_ONEWAY: i32 = 2;

/// Largest header length expressible in the 24-bit header-length field.
pub const MAX_HEADER_LENGTH: usize = 0x00FF_FFFF;

/// One RocketMQ remoting request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    /// Request code (requests) or response code (responses).
    pub code: i32,
    pub language: LanguageCode,
    /// Sender's `MQVersion` ordinal; NameServers switch the route dialect on it.
    pub version: i32,
    /// Request id; a response echoes its request's opaque.
    pub opaque: i32,
    /// Bit 0 = response, bit 1 = oneway.
    pub flag: i32,
    /// Error text on responses. Empty remarks decode as `None` (the binary header
    /// cannot tell them apart).
    pub remark: Option<String>,
    /// Flattened custom header fields, ACL fields, etc. Values that Java would hold
    /// as `null` (JSON `null`) are dropped; empty binary strings are kept as `""`.
    pub ext_fields: BTreeMap<String, String>,
    /// Header encoding used on the wire (decoded per frame; chosen when encoding).
    pub serialize_type: SerializeType,
    pub body: Bytes,
}

impl Default for RemotingCommand {
    fn default() -> Self {
        RemotingCommand {
            code: 0,
            language: LanguageCode::Java,
            version: FERRY_REMOTING_VERSION,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields: BTreeMap::new(),
            serialize_type: SerializeType::Json,
            body: Bytes::new(),
        }
    }
}

impl RemotingCommand {
    /// A request with Ferry's defaults: JSON header, language JAVA, version
    /// [`FERRY_REMOTING_VERSION`], opaque 0 (the client assigns it).
    pub fn request(code: impl Into<i32>) -> Self {
        RemotingCommand {
            code: code.into(),
            ..Default::default()
        }
    }

    /// A request carrying a typed header.
    pub fn request_with_header<H: CommandHeader>(code: impl Into<i32>, header: &H) -> Self {
        Self::request(code).with_header(header)
    }

    /// A response (flag bit 0 set). Use [`RemotingCommand::respond_to`] to echo a
    /// request's opaque.
    pub fn response(code: impl Into<i32>, remark: Option<String>) -> Self {
        RemotingCommand {
            code: code.into(),
            flag: FLAG_RESPONSE,
            remark: remark.filter(|r| !r.is_empty()),
            ..Default::default()
        }
    }

    /// The response to `self`: same opaque, response flag, JSON header (Java servers
    /// answer in their own configured type, JSON by default, not the request's).
    pub fn respond_to(&self, code: impl Into<i32>, remark: Option<String>) -> Self {
        let mut r = Self::response(code, remark);
        r.opaque = self.opaque;
        r
    }

    /// Java's answer to an unknown request code (`NettyRemotingAbstract`):
    /// REQUEST_CODE_NOT_SUPPORTED with remark `" request type <code> not supported"`.
    pub fn not_supported_response(&self) -> Self {
        self.respond_to(
            crate::codes::ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
            Some(format!(" request type {} not supported", self.code)),
        )
    }

    pub fn with_header<H: CommandHeader>(mut self, header: &H) -> Self {
        self.ext_fields.extend(header.to_ext_fields());
        self
    }

    pub fn with_ext_field(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.ext_fields.insert(key.into(), value.into());
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        let r = remark.into();
        self.remark = (!r.is_empty()).then_some(r);
        self
    }

    pub fn with_opaque(mut self, opaque: i32) -> Self {
        self.opaque = opaque;
        self
    }

    pub fn with_version(mut self, version: i32) -> Self {
        self.version = version;
        self
    }

    pub fn with_language(mut self, language: LanguageCode) -> Self {
        self.language = language;
        self
    }

    pub fn with_serialize_type(mut self, t: SerializeType) -> Self {
        self.serialize_type = t;
        self
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    pub fn mark_response(&mut self) {
        self.flag |= FLAG_RESPONSE;
    }

    pub fn mark_oneway(&mut self) {
        self.flag |= FLAG_ONEWAY;
    }

    /// Reads a typed header from `ext_fields` (lenient, see [`crate::headers`]).
    pub fn read_header<H: CommandHeader>(&self) -> Result<H> {
        H::from_ext_fields(&self.ext_fields)
    }

    /// The ext field `key`, if present.
    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields.get(key).map(String::as_str)
    }

    // ---------------------------------------------------------------- encoding

    /// Encodes the header in `self.serialize_type`.
    pub fn encode_header(&self) -> Result<Vec<u8>> {
        let header = match self.serialize_type {
            SerializeType::Json => self.encode_json_header().into_bytes(),
            SerializeType::RocketMq => self.encode_binary_header()?,
        };
        if header.len() > MAX_HEADER_LENGTH {
            return Err(RemotingError::unencodable(format_args!(
                "header of {} bytes exceeds the 24-bit length field",
                header.len()
            )));
        }
        Ok(header)
    }

    /// fastjson-style header with canonical Java field names in fastjson's sorted
    /// order. Always includes `serializeTypeCurrentRPC` (Rust RocketMQ peers drop
    /// connections without it); omits `remark`/`extFields` when absent, like Java.
    pub fn encode_json_header(&self) -> String {
        let mut out = String::with_capacity(128 + self.ext_fields.len() * 32);
        let mut first = true;
        out.push('{');
        jsonw::write_field(&mut out, &mut first, "code");
        out.push_str(&self.code.to_string());
        if !self.ext_fields.is_empty() {
            jsonw::write_field(&mut out, &mut first, "extFields");
            out.push('{');
            let mut f = true;
            for (k, v) in &self.ext_fields {
                jsonw::write_str_key(&mut out, &mut f, k, false);
                jsonw::write_str(&mut out, v, false);
            }
            out.push('}');
        }
        jsonw::write_field(&mut out, &mut first, "flag");
        out.push_str(&self.flag.to_string());
        jsonw::write_field(&mut out, &mut first, "language");
        jsonw::write_str(&mut out, self.language.name(), false);
        jsonw::write_field(&mut out, &mut first, "opaque");
        out.push_str(&self.opaque.to_string());
        if let Some(remark) = &self.remark {
            jsonw::write_field(&mut out, &mut first, "remark");
            jsonw::write_str(&mut out, remark, false);
        }
        jsonw::write_field(&mut out, &mut first, "serializeTypeCurrentRPC");
        jsonw::write_str(&mut out, SerializeType::Json.name(), false);
        jsonw::write_field(&mut out, &mut first, "version");
        out.push_str(&self.version.to_string());
        out.push('}');
        out
    }

    /// `RocketMQSerializable.rocketMQProtocolEncode`. Refuses what Java would
    /// silently truncate: codes/versions outside int16, keys longer than 32767 bytes.
    pub fn encode_binary_header(&self) -> Result<Vec<u8>> {
        let code = i16::try_from(self.code).map_err(|_| {
            RemotingError::unencodable(format_args!(
                "code {} does not fit the binary header's int16; use a JSON header",
                self.code
            ))
        })?;
        let version = i16::try_from(self.version).map_err(|_| {
            RemotingError::unencodable(format_args!(
                "version {} does not fit the binary header's int16",
                self.version
            ))
        })?;
        let remark = self.remark.as_deref().unwrap_or("").as_bytes();
        let mut ext = Vec::new();
        for (k, v) in &self.ext_fields {
            let klen = i16::try_from(k.len()).map_err(|_| {
                RemotingError::unencodable(format_args!(
                    "ext field key of {} bytes exceeds 32767",
                    k.len()
                ))
            })?;
            let vlen = i32::try_from(v.len())
                .map_err(|_| RemotingError::unencodable("ext field value too long"))?;
            ext.extend_from_slice(&klen.to_be_bytes());
            ext.extend_from_slice(k.as_bytes());
            ext.extend_from_slice(&vlen.to_be_bytes());
            ext.extend_from_slice(v.as_bytes());
        }
        let too_long = |_| RemotingError::unencodable("binary header section too long");
        let remark_len = i32::try_from(remark.len()).map_err(too_long)?;
        let ext_len = i32::try_from(ext.len()).map_err(too_long)?;
        let mut out = Vec::with_capacity(21 + remark.len() + ext.len());
        out.extend_from_slice(&code.to_be_bytes());
        out.push(self.language.code());
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&self.opaque.to_be_bytes());
        out.extend_from_slice(&self.flag.to_be_bytes());
        out.extend_from_slice(&remark_len.to_be_bytes());
        out.extend_from_slice(remark);
        out.extend_from_slice(&ext_len.to_be_bytes());
        out.extend_from_slice(&ext);
        Ok(out)
    }

    /// Appends the whole frame (with its 4-byte total-length prefix) to `dst`.
    /// Returns the frame length including the prefix.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<usize> {
        let header = self.encode_header()?;
        let total = 4usize
            .checked_add(header.len())
            .and_then(|n| n.checked_add(self.body.len()))
            .filter(|n| *n <= i32::MAX as usize)
            .ok_or_else(|| RemotingError::unencodable("frame longer than i32::MAX"))?;
        dst.reserve(total + 4);
        dst.put_i32(total as i32);
        dst.put_u32(((self.serialize_type.code() as u32) << 24) | header.len() as u32);
        dst.put_slice(&header);
        dst.put_slice(&self.body);
        Ok(total + 4)
    }

    /// The whole frame as bytes (with the total-length prefix).
    pub fn to_frame(&self) -> Result<Bytes> {
        let mut buf = BytesMut::new();
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }

    // ---------------------------------------------------------------- decoding

    /// Decodes a frame *without* its total-length prefix (what Netty's frame decoder
    /// hands to `RemotingCommand.decode`). The body is a zero-copy slice of `frame`.
    pub fn decode(frame: Bytes) -> Result<Self> {
        if frame.len() < 4 {
            return Err(RemotingError::malformed(format_args!(
                "frame of {} bytes has no header-length field",
                frame.len()
            )));
        }
        let field = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let header_len = (field & 0x00FF_FFFF) as usize;
        let type_byte = (field >> 24) as u8;
        if header_len > frame.len() - 4 {
            return Err(RemotingError::malformed(format_args!(
                "header length {} exceeds frame length {}",
                header_len,
                frame.len() - 4
            )));
        }
        let serialize_type = SerializeType::from_code(type_byte).ok_or_else(|| {
            RemotingError::malformed(format_args!("unknown serialize type {type_byte}"))
        })?;
        let header = &frame[4..4 + header_len];
        let mut cmd = match serialize_type {
            SerializeType::Json => Self::decode_json_header(header)?,
            SerializeType::RocketMq => Self::decode_binary_header(header)?,
        };
        cmd.serialize_type = serialize_type;
        cmd.body = frame.slice(4 + header_len..);
        Ok(cmd)
    }

    /// Decodes a JSON header leniently, as fastjson does on a Java NameServer:
    /// unknown fields ignored, missing ones defaulted, `serializeTypeCurrentRPC`
    /// optional, numbers accepted as strings and vice versa, `language` as name or
    /// ordinal, field names matched ignoring case and `_`/`-` (fastjson smart match).
    pub fn decode_json_header(header: &[u8]) -> Result<Self> {
        let value = fastjson::parse_bytes(header)?;
        let Value::Object(entries) = value else {
            return Err(RemotingError::malformed("JSON header is not an object"));
        };
        let mut cmd = RemotingCommand {
            version: 0,
            ..Default::default()
        };
        for (k, v) in &entries {
            let Value::String(key) = k else { continue };
            let norm: String = key
                .chars()
                .filter(|c| *c != '_' && *c != '-')
                .map(|c| c.to_ascii_lowercase())
                .collect();
            match norm.as_str() {
                "code" => cmd.code = header_int(v, "code")?,
                "version" => cmd.version = header_int(v, "version")?,
                "opaque" => cmd.opaque = header_int(v, "opaque")?,
                "flag" => cmd.flag = header_int(v, "flag")?,
                "language" => cmd.language = header_language(v),
                "remark" => {
                    cmd.remark = match v {
                        Value::Null => None,
                        other => Some(other.to_text()).filter(|r| !r.is_empty()),
                    }
                }
                "extfields" => match v {
                    Value::Null => {}
                    Value::Object(fields) => {
                        for (fk, fv) in fields {
                            if !fv.is_null() {
                                cmd.ext_fields.insert(fk.to_text(), fv.to_text());
                            }
                        }
                    }
                    _ => {
                        return Err(RemotingError::malformed(
                            "JSON header extFields is not an object",
                        ));
                    }
                },
                _ => {}
            }
        }
        Ok(cmd)
    }

    /// `RocketMQSerializable.rocketMQProtocolDecode`, bounds-checked against the
    /// header slice. Code and version are signed int16 (Java `short`).
    pub fn decode_binary_header(header: &[u8]) -> Result<Self> {
        let mut r = Reader { b: header, pos: 0 };
        let code = r.i16()? as i32;
        let language = LanguageCode::from_code(r.u8()?);
        let version = r.i16()? as i32;
        let opaque = r.i32()?;
        let flag = r.i32()?;
        let remark_len = r.len_i32("remark")?;
        let remark = r.string(remark_len)?;
        let mut ext_fields = BTreeMap::new();
        // Java ignores a non-positive extFields length.
        let ext_len = r.i32()?;
        if ext_len > 0 {
            let ext_len = ext_len as usize;
            if ext_len > r.remaining() {
                return Err(RemotingError::malformed(format_args!(
                    "binary header extFields length {ext_len} exceeds the {} bytes left",
                    r.remaining()
                )));
            }
            let end = r.pos + ext_len;
            while r.pos < end {
                // Java writes `(short) len`; reading unsigned also accepts keys
                // 32768..65535 bytes long that Java itself would fail on.
                let klen = r.u16()? as usize;
                let key = r.string_within(klen, end)?;
                let vlen = r.len_i32("ext value")?;
                let value = r.string_within(vlen, end)?;
                ext_fields.insert(key, value);
            }
        }
        // Bytes after the ext fields are ignored (the header length frames the body).
        Ok(RemotingCommand {
            code,
            language,
            version,
            opaque,
            flag,
            remark: Some(remark).filter(|r| !r.is_empty()),
            ext_fields,
            serialize_type: SerializeType::RocketMq,
            body: Bytes::new(),
        })
    }
}

fn header_int(v: &Value, field: &str) -> Result<i32> {
    let parsed = match v {
        Value::Null => Some(0),
        Value::Bool(b) => Some(i32::from(*b)),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| {
                let f = n.as_f64();
                f.is_finite().then_some(f.trunc() as i64)
            })
            .and_then(|i| i32::try_from(i).ok()),
        Value::String(s) => fastjson::Number::parse(s)
            .and_then(|n| n.as_i64())
            .and_then(|i| i32::try_from(i).ok()),
        _ => None,
    };
    parsed.ok_or_else(|| {
        RemotingError::malformed(format_args!("JSON header field {field} is not an int32"))
    })
}

fn header_language(v: &Value) -> LanguageCode {
    match v {
        Value::String(s) => LanguageCode::from_name(s)
            .or_else(|| s.trim().parse::<u8>().ok().map(LanguageCode::from_code))
            .unwrap_or(LanguageCode::Other),
        Value::Number(n) => n
            .as_u64()
            .and_then(|u| u8::try_from(u).ok())
            .map_or(LanguageCode::Other, LanguageCode::from_code),
        _ => LanguageCode::Java,
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if n > self.remaining() {
            return Err(RemotingError::malformed(format_args!(
                "binary header truncated: need {n} bytes at offset {}, have {}",
                self.pos,
                self.remaining()
            )));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn i16(&mut self) -> Result<i16> {
        let s = self.take(2)?;
        Ok(i16::from_be_bytes([s[0], s[1]]))
    }

    fn u16(&mut self) -> Result<u16> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    fn i32(&mut self) -> Result<i32> {
        let s = self.take(4)?;
        Ok(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn len_i32(&mut self, what: &str) -> Result<usize> {
        let n = self.i32()?;
        usize::try_from(n).map_err(|_| {
            RemotingError::malformed(format_args!("binary header {what} length {n} is negative"))
        })
    }

    fn string(&mut self, len: usize) -> Result<String> {
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    fn string_within(&mut self, len: usize, end: usize) -> Result<String> {
        if len > end.saturating_sub(self.pos) {
            return Err(RemotingError::malformed(
                "binary header ext field overruns the extFields section",
            ));
        }
        self.string(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::RequestCode;

    #[test]
    fn json_header_shape() {
        let cmd = RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC)
            .with_ext_field("topic", "TopicTest")
            .with_opaque(3);
        assert_eq!(
            cmd.encode_json_header(),
            r#"{"code":105,"extFields":{"topic":"TopicTest"},"flag":0,"language":"JAVA","opaque":3,"serializeTypeCurrentRPC":"JSON","version":479}"#
        );
    }

    #[test]
    fn lenient_json_header() {
        let h = br#"{"Code":"105","language":"GO","opaque":7.0,"flag":0,"remark":"","extFields":{"topic":"T","n":5,"b":true,"z":null},"unknown":[1,2]}"#;
        let cmd = RemotingCommand::decode_json_header(h).unwrap();
        assert_eq!(cmd.code, 105);
        assert_eq!(cmd.language, LanguageCode::Go);
        assert_eq!(cmd.opaque, 7);
        assert_eq!(cmd.version, 0);
        assert_eq!(cmd.remark, None);
        assert_eq!(cmd.ext("n"), Some("5"));
        assert_eq!(cmd.ext("b"), Some("true"));
        assert_eq!(cmd.ext("z"), None);
        let lang_num = RemotingCommand::decode_json_header(br#"{"language":12}"#).unwrap();
        assert_eq!(lang_num.language, LanguageCode::Rust);
        let lang_odd = RemotingCommand::decode_json_header(br#"{"language":"KOTLIN"}"#).unwrap();
        assert_eq!(lang_odd.language, LanguageCode::Other);
        assert!(RemotingCommand::decode_json_header(br#"{"code":99999999999}"#).is_err());
        assert!(RemotingCommand::decode_json_header(b"[1]").is_err());
    }

    #[test]
    fn not_supported_like_java() {
        let req = RemotingCommand::request(999).with_opaque(77);
        let resp = req.not_supported_response();
        assert!(resp.is_response());
        assert_eq!(resp.opaque, 77);
        assert_eq!(resp.code, 3);
        assert_eq!(
            resp.remark.as_deref(),
            Some(" request type 999 not supported")
        );
    }

    #[test]
    fn binary_rejects_wide_code() {
        let cmd = RemotingCommand::request(RequestCode::POP_MESSAGE)
            .with_serialize_type(SerializeType::RocketMq);
        assert!(matches!(
            cmd.encode_header(),
            Err(RemotingError::Unencodable { .. })
        ));
        // JSON carries it fine.
        let cmd = cmd.with_serialize_type(SerializeType::Json);
        let frame = cmd.to_frame().unwrap();
        assert_eq!(
            RemotingCommand::decode(frame.slice(4..)).unwrap().code,
            200050
        );
    }

    #[test]
    fn binary_negative_code_and_version() {
        let mut cmd = RemotingCommand::response(-3, None);
        cmd.version = -2;
        cmd.serialize_type = SerializeType::RocketMq;
        let frame = cmd.to_frame().unwrap();
        let back = RemotingCommand::decode(frame.slice(4..)).unwrap();
        assert_eq!(back.code, -3);
        assert_eq!(back.version, -2);
    }
}
