//! The JSON lines the tool prints: one per delivery (`listen`) and one per dead letter
//! (`send`, `request`). Bytes appear as UTF-8 text when they are text, else as base64 in a
//! field with a `_base64` suffix, so a script never has to guess.

use base64::Engine;
use peer_sdk::store::{StoredDeadLetter, StoredMessage};
use peer_sdk::{DeadLetter, Message};
use serde::Serialize;

/// Bytes as `(text, base64)`: exactly one is set.
fn text_or_base64(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    }
}

/// One delivery, as `peer listen` logs it.
#[derive(Debug, Serialize)]
pub struct DeliveryLine {
    /// Sender-unique message id.
    pub id: u64,
    /// `service/instance` of the sender.
    pub sender: String,
    /// The instance that handled it.
    pub receiver: String,
    /// The topic it was published on (absent for a direct send).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    /// Attempt number of the delivered copy (1 = first try).
    pub attempt: u32,
}

impl DeliveryLine {
    /// The line for `msg`, handled by `receiver`.
    pub fn new(msg: &Message, receiver: &str) -> Self {
        let (key, key_base64) = match msg.key() {
            Some(k) => text_or_base64(k),
            None => (None, None),
        };
        let (payload, payload_base64) = text_or_base64(msg.payload());
        Self {
            id: msg.id(),
            sender: format!("{}/{}", msg.from_service(), msg.from_instance()),
            receiver: receiver.to_owned(),
            topic: msg.topic().map(str::to_owned),
            key,
            key_base64,
            payload,
            payload_base64,
            attempt: msg.attempt(),
        }
    }
}

/// One dead letter, as `peer send` prints it.
#[derive(Debug, Serialize)]
pub struct DeadLetterLine {
    /// Message id.
    pub id: u64,
    /// Destination service.
    pub destination: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Stable name of the reason (`deadline_exceeded`, `identity_mismatch`, ...).
    pub reason: &'static str,
    /// Stable name of the last failure behind the reason (`no_instances`, ...), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<&'static str>,
    /// The reason for people.
    pub detail: String,
}

impl DeadLetterLine {
    /// The line for `dl`.
    pub fn new(dl: &DeadLetter) -> Self {
        let (key, key_base64) = match &dl.key {
            Some(k) => text_or_base64(k),
            None => (None, None),
        };
        let (payload, payload_base64) = text_or_base64(&dl.payload);
        Self {
            id: dl.id,
            destination: dl.service.clone(),
            key,
            key_base64,
            payload,
            payload_base64,
            attempts: dl.attempts,
            reason: dl.reason.code(),
            cause: dl.reason.last_error().map(|c| c.code()),
            detail: dl.reason.to_string(),
        }
    }
}

/// One message of a store, as `peer outbox list` and `peer dead-letters list` print it.
#[derive(Debug, Serialize)]
pub struct StoredLine {
    /// Message id (stable across restarts and replays).
    pub id: u64,
    /// Destination service.
    pub destination: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    /// A reply is expected.
    pub request: bool,
    /// When it is (or was) given up, RFC 3339.
    pub deadline: String,
    /// Attempts made. Outbox: as recorded when an attempt failed and was retried (a first
    /// attempt cut short by a crash is not counted).
    pub attempts: u32,
    /// The message's own ack timeout in milliseconds, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_timeout_ms: Option<u64>,
    /// The message's own maximum attempts, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Dead letters: stable name of the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Dead letters: stable name of the last failure behind the reason, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<&'static str>,
    /// Dead letters: the reason for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl StoredLine {
    /// The line of an outbox message.
    pub fn message(m: &StoredMessage) -> Self {
        let (key, key_base64) = match &m.key {
            Some(k) => text_or_base64(k),
            None => (None, None),
        };
        let (payload, payload_base64) = text_or_base64(&m.payload);
        Self {
            id: m.id,
            destination: m.service.clone(),
            key,
            key_base64,
            payload,
            payload_base64,
            request: m.request,
            deadline: humantime::format_rfc3339_millis(m.deadline).to_string(),
            attempts: m.attempts,
            ack_timeout_ms: m
                .ack_timeout
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            max_attempts: m.max_attempts.map(std::num::NonZeroU32::get),
            reason: None,
            cause: None,
            detail: None,
        }
    }

    /// The line of a dead letter.
    pub fn dead_letter(d: &StoredDeadLetter) -> Self {
        Self {
            attempts: d.attempts,
            reason: Some(d.reason.code()),
            cause: d.reason.last_error().map(|c| c.code()),
            detail: Some(d.reason.to_string()),
            ..Self::message(&d.message)
        }
    }
}

/// Prints one line on stdout. `Ok(false)` when the reader went away (a closed pipe, as in
/// `peer outbox list | head`): the caller stops printing, which is not an error.
pub fn print_line(line: &str) -> std::io::Result<bool> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out
        .write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
    {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}

/// `value` as one line of JSON (serializing these plain structs cannot fail).
pub fn line(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_stays_text_and_binary_becomes_base64() {
        assert_eq!(text_or_base64(b"k3"), (Some("k3".into()), None));
        assert_eq!(text_or_base64(&[0xff, 0]), (None, Some("/wA=".into())));
    }
}
