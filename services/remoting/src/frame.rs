//! Length-prefixed framing, as Netty's
//! `LengthFieldBasedFrameDecoder(maxFrameLength, 0, 4, 0, 4)` + `NettyEncoder`.

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::command::{MAX_HEADER_LENGTH, RemotingCommand};
use crate::error::{RemotingError, Result};

/// Netty's default `com.rocketmq.remoting.frameMaxLength`: 16 MiB, counting the
/// 4-byte length prefix (so the largest total-length value is 16 MiB − 4).
pub const DEFAULT_MAX_FRAME_LENGTH: usize = 16 * 1024 * 1024;

/// Frames `RemotingCommand`s on a byte stream.
///
/// Decoding checks the declared length against the limit as soon as the 4-byte
/// prefix is buffered, and never reserves buffer space for the claimed length: a
/// peer announcing 2 GiB costs us 4 bytes, not 2 GiB. A decode error means the
/// stream is out of sync; close the connection (Java does the same).
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame_length: usize,
    max_header_length: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec {
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            max_header_length: MAX_HEADER_LENGTH,
        }
    }
}

impl FrameCodec {
    pub fn new() -> Self {
        Self::default()
    }

    /// `max` counts the 4-byte length prefix, as Netty does.
    pub fn with_max_frame_length(max: usize) -> Self {
        FrameCodec {
            max_frame_length: max,
            ..Self::default()
        }
    }

    /// Also caps the header length (default: the 24-bit field's maximum, as Java).
    /// Real headers are a few KiB; a server facing untrusted clients can set e.g.
    /// 64 KiB so a JSON header cannot make the parser build a huge value tree.
    /// Checked as soon as the 8 length bytes are buffered.
    pub fn max_header_length(mut self, max: usize) -> Self {
        self.max_header_length = max.min(MAX_HEADER_LENGTH);
        self
    }

    pub fn max_frame_length(&self) -> usize {
        self.max_frame_length
    }

    /// Validates a total-length prefix; returns the whole frame length (prefix
    /// included) it announces.
    fn frame_len(&self, total: i32) -> Result<usize> {
        if total < 0 {
            return Err(RemotingError::malformed(format_args!(
                "negative frame length {total}"
            )));
        }
        let frame_len = total as u64 + 4;
        if frame_len > self.max_frame_length as u64 {
            return Err(RemotingError::FrameTooLarge {
                len: frame_len,
                max: self.max_frame_length as u64,
            });
        }
        if total < 4 {
            return Err(RemotingError::malformed(format_args!(
                "frame length {total} is shorter than the 4-byte header-length field"
            )));
        }
        Ok(frame_len as usize)
    }
}

impl Decoder for FrameCodec {
    type Item = RemotingCommand;
    type Error = RemotingError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RemotingCommand>> {
        if src.len() < 4 {
            return Ok(None);
        }
        let total = i32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        let frame_len = self.frame_len(total)?;
        if src.len() >= 8 {
            // Header checks as early as possible, before waiting for the body.
            let header_len = u32::from_be_bytes([0, src[5], src[6], src[7]]) as usize;
            if header_len > frame_len - 8 {
                return Err(RemotingError::malformed(format_args!(
                    "header length {header_len} exceeds frame length {}",
                    frame_len - 8
                )));
            }
            if header_len > self.max_header_length {
                return Err(RemotingError::malformed(format_args!(
                    "header length {header_len} exceeds the {}-byte header limit",
                    self.max_header_length
                )));
            }
        }
        if src.len() < frame_len {
            // Deliberately no `src.reserve(frame_len)`: the claimed length is
            // untrusted; the buffer grows only with bytes actually received.
            return Ok(None);
        }
        let mut frame = src.split_to(frame_len).freeze();
        frame.advance(4);
        RemotingCommand::decode(frame).map(Some)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<RemotingCommand>> {
        match self.decode(src)? {
            Some(cmd) => Ok(Some(cmd)),
            None if src.is_empty() => Ok(None),
            None => Err(RemotingError::malformed(format_args!(
                "stream ended inside a frame ({} bytes buffered)",
                src.len()
            ))),
        }
    }
}

impl Encoder<&RemotingCommand> for FrameCodec {
    type Error = RemotingError;

    fn encode(&mut self, cmd: &RemotingCommand, dst: &mut BytesMut) -> Result<()> {
        // Encode into a scratch buffer first so an oversized frame leaves `dst`
        // untouched (the peer would reject it anyway and close the connection).
        let mut frame = BytesMut::new();
        let len = cmd.encode(&mut frame)?;
        if len > self.max_frame_length {
            return Err(RemotingError::FrameTooLarge {
                len: len as u64,
                max: self.max_frame_length as u64,
            });
        }
        dst.extend_from_slice(&frame);
        Ok(())
    }
}

impl Encoder<RemotingCommand> for FrameCodec {
    type Error = RemotingError;

    fn encode(&mut self, cmd: RemotingCommand, dst: &mut BytesMut) -> Result<()> {
        <Self as Encoder<&RemotingCommand>>::encode(self, &cmd, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_oversized_before_buffering() {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&0x7fff_ffffi32.to_be_bytes()[..]);
        let cap = buf.capacity();
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(err, RemotingError::FrameTooLarge { .. }), "{err}");
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn limit_counts_prefix() {
        let max = 64;
        let mut codec = FrameCodec::with_max_frame_length(max);
        // total = max - 4 is allowed (waits for data) ...
        let mut buf = BytesMut::from(&((max as i32) - 4).to_be_bytes()[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        // ... total = max - 3 is not.
        let mut buf = BytesMut::from(&((max as i32) - 3).to_be_bytes()[..]);
        assert_eq!(
            codec.decode(&mut buf).unwrap_err(),
            RemotingError::FrameTooLarge {
                len: max as u64 + 1,
                max: max as u64
            }
        );
    }

    #[test]
    fn short_and_negative_lengths() {
        let mut codec = FrameCodec::new();
        for total in [-1i32, 0, 3] {
            let mut buf = BytesMut::from(&total.to_be_bytes()[..]);
            assert!(matches!(
                codec.decode(&mut buf),
                Err(RemotingError::Malformed { .. })
            ));
        }
    }

    #[test]
    fn header_limit_checked_early() {
        let mut codec = FrameCodec::new().max_header_length(100);
        // total 1000, header 101: rejected with only 8 bytes buffered.
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&1000i32.to_be_bytes());
        buf.extend_from_slice(&101u32.to_be_bytes());
        assert!(matches!(
            codec.decode(&mut buf),
            Err(RemotingError::Malformed { .. })
        ));
        // header longer than the frame, also early.
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&10i32.to_be_bytes());
        buf.extend_from_slice(&(1u32 << 24 | 7).to_be_bytes());
        assert!(matches!(
            FrameCodec::new().decode(&mut buf),
            Err(RemotingError::Malformed { .. })
        ));
    }

    #[test]
    fn eof_inside_frame() {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&[0u8, 0, 0, 10, 0][..]);
        assert!(codec.decode_eof(&mut buf).is_err());
        let mut empty = BytesMut::new();
        assert_eq!(codec.decode_eof(&mut empty).unwrap(), None);
    }
}
