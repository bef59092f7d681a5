//! Wire frames and their codec (see `docs/protocol.md`).
//!
//! Every frame is `len: u32 BE` followed by `len` bytes of body; the body starts with a
//! one-byte frame type. Decoding is strict: a frame must be consumed exactly, strings
//! must be UTF-8, flags must be known, and `len` must not exceed the negotiated maximum.
//! Any violation is a [`ProtocolError`] carrying a stable [`ErrorCode`], never a panic.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Version of the wire protocol spoken by this build (sent in [`Frame::Hello`]).
pub const PROTOCOL_VERSION: u8 = 2;

/// Oldest version this build still accepts in a [`Frame::Hello`]. A version 1 sender is
/// served as before; it is never sent a frame type it does not know ([`Frame::Progress`]).
pub const MIN_PROTOCOL_VERSION: u8 = 1;

/// First version whose senders understand [`Frame::Progress`].
pub const PROGRESS_VERSION: u8 = 2;

/// Default maximum size of one frame body in bytes (1 MiB + header room): large enough for
/// a 1 MiB payload, small enough that a hostile peer cannot make us buffer much.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 1024 * 1024 + 1024;

/// Maximum number of message ids carried by one [`Frame::Ack`].
pub const MAX_ACK_IDS: usize = 4096;

/// Maximum length of the ordering key in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Size of the length prefix in bytes.
pub const LEN_PREFIX: usize = 4;

const TYPE_HELLO: u8 = 0x01;
const TYPE_MESSAGE: u8 = 0x02;
const TYPE_ACK: u8 = 0x03;
const TYPE_NACK: u8 = 0x04;
const TYPE_REPLY: u8 = 0x05;
const TYPE_CLOSE: u8 = 0x06;
const TYPE_PROGRESS: u8 = 0x07;

const FLAG_REQUEST: u8 = 0b0000_0001;
const FLAG_HAS_KEY: u8 = 0b0000_0010;
const FLAG_HAS_TOPIC: u8 = 0b0000_0100;
const KNOWN_FLAGS: u8 = FLAG_REQUEST | FLAG_HAS_KEY | FLAG_HAS_TOPIC;

/// Stable protocol error codes. Also used as QUIC application close codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Normal close, no error.
    NoError,
    /// The peer speaks a protocol version this build does not.
    UnsupportedVersion,
    /// A frame's length prefix exceeds the maximum frame size.
    FrameTooLarge,
    /// A frame is truncated, has trailing bytes, invalid UTF-8 or unknown flags.
    MalformedFrame,
    /// The frame type byte is unknown.
    UnknownFrameType,
    /// A valid frame arrived where it is not allowed (e.g. a message before hello).
    UnexpectedFrame,
    /// The sender's certificate does not match a registered instance.
    UnauthorizedSender,
    /// The peer is shutting down.
    ShuttingDown,
}

impl ErrorCode {
    /// Numeric value on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::NoError => 0,
            Self::UnsupportedVersion => 1,
            Self::FrameTooLarge => 2,
            Self::MalformedFrame => 3,
            Self::UnknownFrameType => 4,
            Self::UnexpectedFrame => 5,
            Self::UnauthorizedSender => 6,
            Self::ShuttingDown => 7,
        }
    }

    /// Parses a numeric code; unknown values are `None`.
    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            0 => Self::NoError,
            1 => Self::UnsupportedVersion,
            2 => Self::FrameTooLarge,
            3 => Self::MalformedFrame,
            4 => Self::UnknownFrameType,
            5 => Self::UnexpectedFrame,
            6 => Self::UnauthorizedSender,
            7 => Self::ShuttingDown,
            _ => return None,
        })
    }
}

/// A violation of the wire protocol by the remote side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protocol error {code:?}: {detail}")]
pub struct ProtocolError {
    /// Stable code, sent to the peer when closing.
    pub code: ErrorCode,
    /// Human-readable detail for logs.
    pub detail: &'static str,
}

impl ProtocolError {
    pub(crate) fn new(code: ErrorCode, detail: &'static str) -> Self {
        Self { code, detail }
    }
    fn malformed(detail: &'static str) -> Self {
        Self::new(ErrorCode::MalformedFrame, detail)
    }
}

/// What a receiver should do with a message its handler refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackAction {
    /// Try again later (possibly on another instance).
    Retry,
    /// Do not retry: move the message to the sender's dead letters.
    DeadLetter,
}

/// One frame of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// First frame on every stream, from the dialer.
    Hello {
        /// Protocol version of the sender.
        version: u8,
        /// Random id of the sender's process incarnation (dedup key with message ids).
        session: u64,
        /// Sender's service name.
        service: String,
        /// Sender's instance name.
        instance: String,
    },
    /// An application message.
    Message {
        /// Sender-unique message id.
        id: u64,
        /// 1 for the first attempt, incremented on every retry.
        attempt: u32,
        /// The sender expects a [`Frame::Reply`].
        request: bool,
        /// Ordering key, if any.
        key: Option<Bytes>,
        /// The topic of a published message (at most 255 bytes); `None` for a direct send.
        /// Sent only when present (flag bit 2), so direct messages are unchanged on the wire.
        topic: Option<String>,
        /// Application payload.
        payload: Bytes,
    },
    /// Acknowledges messages (batched).
    Ack {
        /// Acknowledged message ids.
        ids: Vec<u64>,
    },
    /// Negative acknowledgement of one message.
    Nack {
        /// Message id.
        id: u64,
        /// What the sender should do.
        action: NackAction,
        /// Reason given by the handler.
        reason: String,
    },
    /// Response to a request; also acknowledges it.
    Reply {
        /// Id of the request.
        id: u64,
        /// Response payload.
        payload: Bytes,
    },
    /// The receiver is still handling a message: the sender restarts that attempt's ack
    /// timeout instead of retrying elsewhere (protocol version 2).
    Progress {
        /// Message id.
        id: u64,
    },
    /// The sender is about to close the stream for the given reason.
    Close {
        /// Raw error code (see [`ErrorCode`]).
        code: u16,
        /// Human-readable reason.
        reason: String,
    },
}

impl Frame {
    /// Appends the encoded frame (length prefix included) to `out`.
    ///
    /// Callers must keep strings and keys within the documented limits; the encoder
    /// truncates nothing and the peer will reject oversize frames.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u32(0);
        match self {
            Frame::Hello {
                version,
                session,
                service,
                instance,
            } => {
                out.put_u8(TYPE_HELLO);
                out.put_u8(*version);
                out.put_u64(*session);
                put_str8(out, service);
                put_str8(out, instance);
            }
            Frame::Message {
                id,
                attempt,
                request,
                key,
                topic,
                payload,
            } => {
                out.put_u8(TYPE_MESSAGE);
                out.put_u64(*id);
                out.put_u32(*attempt);
                let mut flags = 0;
                if *request {
                    flags |= FLAG_REQUEST;
                }
                if key.is_some() {
                    flags |= FLAG_HAS_KEY;
                }
                if topic.is_some() {
                    flags |= FLAG_HAS_TOPIC;
                }
                out.put_u8(flags);
                if let Some(key) = key {
                    out.put_u16(len_u16(key.len()));
                    out.put_slice(key);
                }
                if let Some(topic) = topic {
                    put_str8(out, topic);
                }
                out.put_u32(len_u32(payload.len()));
                out.put_slice(payload);
            }
            Frame::Ack { ids } => {
                out.put_u8(TYPE_ACK);
                out.put_u16(len_u16(ids.len()));
                for id in ids {
                    out.put_u64(*id);
                }
            }
            Frame::Nack { id, action, reason } => {
                out.put_u8(TYPE_NACK);
                out.put_u64(*id);
                out.put_u8(match action {
                    NackAction::Retry => 0,
                    NackAction::DeadLetter => 1,
                });
                put_str16(out, reason);
            }
            Frame::Reply { id, payload } => {
                out.put_u8(TYPE_REPLY);
                out.put_u64(*id);
                out.put_u32(len_u32(payload.len()));
                out.put_slice(payload);
            }
            Frame::Progress { id } => {
                out.put_u8(TYPE_PROGRESS);
                out.put_u64(*id);
            }
            Frame::Close { code, reason } => {
                out.put_u8(TYPE_CLOSE);
                out.put_u16(*code);
                put_str16(out, reason);
            }
        }
        // The length prefix was reserved at `start` above, so this range is in bounds.
        let body_len = len_u32(out.len() - start - LEN_PREFIX);
        out[start..start + LEN_PREFIX].copy_from_slice(&body_len.to_be_bytes());
    }

    /// Encodes into a fresh buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

fn len_u16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Longest prefix of `s` of at most `max` bytes that ends on a character boundary (so a
/// truncated reason is still valid UTF-8 for the peer's strict decoder).
fn prefix_within(s: &str, max: usize) -> &[u8] {
    let mut n = s.len().min(max);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s.as_bytes()[..n]
}

fn put_str8(out: &mut BytesMut, s: &str) {
    let bytes = prefix_within(s, u8::MAX as usize);
    out.put_u8(bytes.len() as u8);
    out.put_slice(bytes);
}

fn put_str16(out: &mut BytesMut, s: &str) {
    let bytes = prefix_within(s, u16::MAX as usize);
    out.put_u16(bytes.len() as u16);
    out.put_slice(bytes);
}

/// Incremental, strict frame decoder.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_frame_size: u32,
}

impl Decoder {
    /// A decoder that rejects frames whose body exceeds `max_frame_size` bytes.
    pub fn new(max_frame_size: u32) -> Self {
        Self { max_frame_size }
    }

    /// Takes one complete frame off the front of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed (nothing is consumed), and an error
    /// as soon as the length prefix or the body is invalid. After an error the stream is
    /// unusable and must be closed with the error's code.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        if buf.len() < LEN_PREFIX {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if len > self.max_frame_size {
            return Err(ProtocolError::new(
                ErrorCode::FrameTooLarge,
                "length prefix above maximum frame size",
            ));
        }
        if len == 0 {
            return Err(ProtocolError::malformed("empty frame"));
        }
        let total = LEN_PREFIX + len as usize;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        buf.advance(LEN_PREFIX);
        let body = buf.split_to(len as usize).freeze();
        decode_body(body).map(Some)
    }
}

/// Decodes exactly one frame body (without the length prefix).
pub fn decode_body(mut body: Bytes) -> Result<Frame, ProtocolError> {
    let kind = take_u8(&mut body)?;
    let frame = match kind {
        TYPE_HELLO => decode_hello(&mut body)?,
        TYPE_MESSAGE => decode_message(&mut body)?,
        TYPE_ACK => decode_ack(&mut body)?,
        TYPE_NACK => decode_nack(&mut body)?,
        TYPE_REPLY => Frame::Reply {
            id: take_u64(&mut body)?,
            payload: take_bytes32(&mut body)?,
        },
        TYPE_CLOSE => Frame::Close {
            code: take_u16(&mut body)?,
            reason: take_str16(&mut body)?,
        },
        TYPE_PROGRESS => Frame::Progress {
            id: take_u64(&mut body)?,
        },
        _ => {
            return Err(ProtocolError::new(
                ErrorCode::UnknownFrameType,
                "unknown frame type",
            ));
        }
    };
    if body.has_remaining() {
        return Err(ProtocolError::malformed("trailing bytes after frame"));
    }
    Ok(frame)
}

fn decode_hello(body: &mut Bytes) -> Result<Frame, ProtocolError> {
    let version = take_u8(body)?;
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
        return Err(ProtocolError::new(
            ErrorCode::UnsupportedVersion,
            "unsupported protocol version",
        ));
    }
    Ok(Frame::Hello {
        version,
        session: take_u64(body)?,
        service: take_str8(body)?,
        instance: take_str8(body)?,
    })
}

fn decode_message(body: &mut Bytes) -> Result<Frame, ProtocolError> {
    let id = take_u64(body)?;
    let attempt = take_u32(body)?;
    let flags = take_u8(body)?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(ProtocolError::malformed("unknown message flags"));
    }
    let key = if flags & FLAG_HAS_KEY != 0 {
        let n = take_u16(body)? as usize;
        if n > MAX_KEY_LEN {
            return Err(ProtocolError::malformed("ordering key too long"));
        }
        Some(take_exact(body, n)?)
    } else {
        None
    };
    let topic = if flags & FLAG_HAS_TOPIC != 0 {
        Some(take_str8(body)?)
    } else {
        None
    };
    let payload = take_bytes32(body)?;
    Ok(Frame::Message {
        id,
        attempt,
        request: flags & FLAG_REQUEST != 0,
        key,
        topic,
        payload,
    })
}

fn decode_ack(body: &mut Bytes) -> Result<Frame, ProtocolError> {
    let n = take_u16(body)? as usize;
    if n == 0 || n > MAX_ACK_IDS {
        return Err(ProtocolError::malformed("ack id count out of range"));
    }
    if body.remaining() < n * 8 {
        return Err(ProtocolError::malformed("truncated ack"));
    }
    Ok(Frame::Ack {
        ids: (0..n).map(|_| body.get_u64()).collect(),
    })
}

fn decode_nack(body: &mut Bytes) -> Result<Frame, ProtocolError> {
    let id = take_u64(body)?;
    let action = match take_u8(body)? {
        0 => NackAction::Retry,
        1 => NackAction::DeadLetter,
        _ => return Err(ProtocolError::malformed("unknown nack action")),
    };
    Ok(Frame::Nack {
        id,
        action,
        reason: take_str16(body)?,
    })
}

fn need(body: &Bytes, n: usize) -> Result<(), ProtocolError> {
    if body.remaining() < n {
        return Err(ProtocolError::malformed("truncated frame"));
    }
    Ok(())
}

fn take_u8(body: &mut Bytes) -> Result<u8, ProtocolError> {
    need(body, 1)?;
    Ok(body.get_u8())
}

fn take_u16(body: &mut Bytes) -> Result<u16, ProtocolError> {
    need(body, 2)?;
    Ok(body.get_u16())
}

fn take_u32(body: &mut Bytes) -> Result<u32, ProtocolError> {
    need(body, 4)?;
    Ok(body.get_u32())
}

fn take_u64(body: &mut Bytes) -> Result<u64, ProtocolError> {
    need(body, 8)?;
    Ok(body.get_u64())
}

fn take_exact(body: &mut Bytes, n: usize) -> Result<Bytes, ProtocolError> {
    need(body, n)?;
    Ok(body.split_to(n))
}

fn take_bytes32(body: &mut Bytes) -> Result<Bytes, ProtocolError> {
    let n = take_u32(body)? as usize;
    take_exact(body, n)
}

fn take_string(bytes: Bytes) -> Result<String, ProtocolError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtocolError::malformed("string is not UTF-8"))
}

fn take_str8(body: &mut Bytes) -> Result<String, ProtocolError> {
    let n = take_u8(body)? as usize;
    take_string(take_exact(body, n)?)
}

fn take_str16(body: &mut Bytes) -> Result<String, ProtocolError> {
    let n = take_u16(body)? as usize;
    take_string(take_exact(body, n)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>, ProtocolError> {
        let dec = Decoder::new(DEFAULT_MAX_FRAME_SIZE);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(f) = dec.decode(&mut buf)? {
            out.push(f);
        }
        Ok(out)
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from);
        prop_oneof![
            (any::<u64>(), "[a-z0-9.-]{0,40}", "[a-z0-9.-]{0,40}").prop_map(
                |(session, service, instance)| {
                    Frame::Hello {
                        version: PROTOCOL_VERSION,
                        session,
                        service,
                        instance,
                    }
                }
            ),
            (
                any::<u64>(),
                any::<u32>(),
                any::<bool>(),
                proptest::option::of(bytes()),
                proptest::option::of("[a-z0-9_.-]{0,255}"),
                bytes()
            )
                .prop_map(|(id, attempt, request, key, topic, payload)| {
                    Frame::Message {
                        id,
                        attempt,
                        request,
                        key,
                        topic,
                        payload,
                    }
                }),
            proptest::collection::vec(any::<u64>(), 1..50).prop_map(|ids| Frame::Ack { ids }),
            (any::<u64>(), any::<bool>(), ".{0,20}").prop_map(|(id, dl, reason)| Frame::Nack {
                id,
                action: if dl {
                    NackAction::DeadLetter
                } else {
                    NackAction::Retry
                },
                reason
            }),
            (any::<u64>(), bytes()).prop_map(|(id, payload)| Frame::Reply { id, payload }),
            (any::<u16>(), ".{0,20}").prop_map(|(code, reason)| Frame::Close { code, reason }),
            any::<u64>().prop_map(|id| Frame::Progress { id }),
        ]
    }

    proptest! {
        #[test]
        fn every_frame_round_trips(frames in proptest::collection::vec(arb_frame(), 1..8)) {
            let mut buf = BytesMut::new();
            for f in &frames {
                f.encode(&mut buf);
            }
            prop_assert_eq!(decode_all(&buf).unwrap(), frames);
        }

        #[test]
        fn every_truncation_waits_for_more_bytes(frame in arb_frame(), cut in any::<prop::sample::Index>()) {
            let bytes = frame.to_bytes();
            let cut = cut.index(bytes.len());
            let dec = Decoder::new(DEFAULT_MAX_FRAME_SIZE);
            let mut buf = BytesMut::from(&bytes[..cut]);
            prop_assert_eq!(dec.decode(&mut buf).unwrap(), None);
            prop_assert_eq!(buf.len(), cut);
        }

        #[test]
        fn garbage_never_panics(garbage in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_all(&garbage);
        }

        #[test]
        fn a_body_shortened_inside_its_prefix_is_malformed(frame in arb_frame(), cut in 1usize..8) {
            let bytes = frame.to_bytes();
            let body_len = bytes.len() - LEN_PREFIX;
            prop_assume!(body_len > cut);
            let body = bytes.slice(LEN_PREFIX..bytes.len() - cut);
            let err = decode_body(body).unwrap_err();
            prop_assert_eq!(err.code, ErrorCode::MalformedFrame);
        }
    }

    #[test]
    fn oversized_length_prefix_is_rejected_before_buffering() {
        let dec = Decoder::new(1024);
        let mut buf = BytesMut::from(&[0u8, 0, 0x04, 0x01, TYPE_MESSAGE][..]);
        assert_eq!(
            dec.decode(&mut buf).unwrap_err().code,
            ErrorCode::FrameTooLarge
        );
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut bytes = BytesMut::new();
        Frame::Reply {
            id: 1,
            payload: Bytes::from_static(b"x"),
        }
        .encode(&mut bytes);
        bytes.put_u8(0xFF);
        let len = (bytes.len() - LEN_PREFIX) as u32;
        bytes[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            decode_all(&bytes).unwrap_err().code,
            ErrorCode::MalformedFrame
        );
    }

    #[test]
    fn unknown_type_version_and_flags_have_their_own_codes() {
        assert_eq!(
            decode_body(Bytes::from_static(&[0x7F])).unwrap_err().code,
            ErrorCode::UnknownFrameType
        );
        let hello = Frame::Hello {
            version: PROTOCOL_VERSION,
            session: 1,
            service: "a".into(),
            instance: "b".into(),
        };
        let mut raw = hello.to_bytes().to_vec();
        raw[LEN_PREFIX + 1] = 99;
        assert_eq!(
            decode_all(&raw).unwrap_err().code,
            ErrorCode::UnsupportedVersion
        );
        let msg = Frame::Message {
            id: 1,
            attempt: 1,
            request: false,
            key: None,
            topic: None,
            payload: Bytes::new(),
        };
        let mut raw = msg.to_bytes().to_vec();
        raw[LEN_PREFIX + 1 + 8 + 4] = 0x80;
        assert_eq!(
            decode_all(&raw).unwrap_err().code,
            ErrorCode::MalformedFrame
        );
    }

    #[test]
    fn empty_and_zero_count_frames_are_malformed() {
        assert_eq!(
            decode_all(&[0, 0, 0, 0]).unwrap_err().code,
            ErrorCode::MalformedFrame
        );
        assert_eq!(
            decode_all(&[0, 0, 0, 3, TYPE_ACK, 0, 0]).unwrap_err().code,
            ErrorCode::MalformedFrame
        );
    }

    #[test]
    fn invalid_utf8_is_malformed() {
        let raw = [0, 0, 0, 5, TYPE_CLOSE, 0, 0, 0, 1];
        let mut raw = raw.to_vec();
        raw.push(0xFF);
        raw[3] = 6;
        assert_eq!(
            decode_all(&raw).unwrap_err().code,
            ErrorCode::MalformedFrame
        );
    }

    #[test]
    fn overlong_reason_is_truncated_on_a_character_boundary() {
        let reason = "é".repeat(40_000);
        let frame = Frame::Nack {
            id: 1,
            action: NackAction::Retry,
            reason,
        };
        let decoded = decode_all(&frame.to_bytes()).unwrap();
        let [Frame::Nack { reason, .. }] = &decoded[..] else {
            panic!("{decoded:?}")
        };
        assert_eq!(reason.len(), 65_534);
    }

    #[test]
    fn version_1_hellos_are_still_accepted() {
        let hello = Frame::Hello {
            version: MIN_PROTOCOL_VERSION,
            session: 1,
            service: "a".into(),
            instance: "b".into(),
        };
        assert_eq!(decode_all(&hello.to_bytes()).unwrap(), vec![hello]);
    }

    /// The close codes of docs/protocol.md, pinned: a renumbering breaks interoperability.
    #[test]
    fn error_codes_have_their_documented_values_and_unknown_ones_parse_to_none() {
        let table = [
            (ErrorCode::NoError, 0),
            (ErrorCode::UnsupportedVersion, 1),
            (ErrorCode::FrameTooLarge, 2),
            (ErrorCode::MalformedFrame, 3),
            (ErrorCode::UnknownFrameType, 4),
            (ErrorCode::UnexpectedFrame, 5),
            (ErrorCode::UnauthorizedSender, 6),
            (ErrorCode::ShuttingDown, 7),
        ];
        for (code, value) in table {
            assert_eq!(code.to_u16(), value, "{code:?}");
            assert_eq!(ErrorCode::from_u16(value), Some(code), "{value}");
        }
        for unknown in [8, 9, 255, 256, u16::MAX] {
            assert_eq!(ErrorCode::from_u16(unknown), None, "{unknown}");
        }
    }
}
