//! Validated newtypes for everything a client can put into the registry.
//!
//! Each type is parsed once, at the edge (HTTP body, CLI flag, network frame), and is valid
//! by construction afterwards. Deserialization goes through the same parser, so a replicated
//! entry from another node cannot smuggle in an invalid value either.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest service name, instance id or node name, in bytes.
pub const MAX_NAME_LEN: usize = 63;
/// Most tags one instance may carry.
pub const MAX_TAGS: usize = 64;
/// Most meta keys one instance may carry.
pub const MAX_META_KEYS: usize = 64;
/// Longest tag or meta value, in bytes (1 KiB).
pub const MAX_VALUE_LEN: usize = 1024;
/// Longest meta key, in bytes.
pub const MAX_META_KEY_LEN: usize = 128;
/// Shortest lease a client may ask for: shorter leases turn heartbeats into a load test.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// Longest lease a client may ask for: a dead instance stays visible at most this long.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// Lease used when a registration does not name one.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// Longest host part of an address (the DNS limit).
const MAX_HOST_LEN: usize = 253;

/// Why a value was rejected. Nothing is changed by a rejected value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The service name is not `[a-z0-9][a-z0-9._-]{0,62}`. Remedy: rename the service.
    #[error("invalid service name {0:?}: must match [a-z0-9][a-z0-9._-]{{0,62}}")]
    ServiceName(String),
    /// The instance id is not `[a-z0-9][a-z0-9._-]{0,62}`. Remedy: pick another id.
    #[error("invalid instance id {0:?}: must match [a-z0-9][a-z0-9._-]{{0,62}}")]
    InstanceId(String),
    /// The node name is not `[a-z0-9][a-z0-9._-]{0,62}`. Remedy: fix the node's configuration.
    #[error("invalid node name {0:?}: must match [a-z0-9][a-z0-9._-]{{0,62}}")]
    NodeName(String),
    /// The address is not `host:port` (IPv4, `[IPv6]` or DNS name, port 1-65535).
    #[error("invalid address {value:?}: {reason}")]
    Address {
        /// The rejected input.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The TTL is unparsable or outside 1s..=1h.
    #[error("invalid ttl {0:?}: must be a duration like \"10s\" between 1s and 1h")]
    Ttl(String),
    /// Too many tags, an empty tag, a tag over 1 KiB or one with control characters.
    #[error("invalid tags: {0}")]
    Tags(String),
    /// Too many meta keys, or a key/value that is empty, too long or has bad characters.
    #[error("invalid meta: {0}")]
    Meta(String),
    /// The fingerprint is not 64 hex digits (a SHA-256).
    #[error(
        "invalid fingerprint {0:?}: must be 64 hex digits (SHA-256 of the certificate's SubjectPublicKeyInfo)"
    )]
    Fingerprint(String),
}

impl ValidationError {
    /// Stable snake_case code used in HTTP error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ServiceName(_) => "invalid_service_name",
            Self::InstanceId(_) => "invalid_instance_id",
            Self::NodeName(_) => "invalid_node_name",
            Self::Address { .. } => "invalid_address",
            Self::Ttl(_) => "invalid_ttl",
            Self::Tags(_) => "invalid_tags",
            Self::Meta(_) => "invalid_meta",
            Self::Fingerprint(_) => "invalid_fingerprint",
        }
    }
}

/// `[a-z0-9][a-z0-9._-]{0,62}`.
fn is_valid_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    bytes.len() <= MAX_NAME_LEN
        && (first.is_ascii_lowercase() || first.is_ascii_digit())
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// Declares a cheap-to-clone validated name type (`Arc<str>` inside).
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $variant:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(Arc<str>);

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl $name {
            /// Parses and validates `value`.
            pub fn new(value: &str) -> Result<Self, ValidationError> {
                if is_valid_name(value) {
                    Ok(Self(Arc::from(value)))
                } else {
                    Err(ValidationError::$variant(value.to_owned()))
                }
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(&s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A service name such as `orders`: `[a-z0-9][a-z0-9._-]{0,62}`.
    ServiceName,
    ServiceName
);
name_type!(
    /// An instance id, unique within its service: `[a-z0-9][a-z0-9._-]{0,62}`.
    InstanceId,
    InstanceId
);
name_type!(
    /// The name of a directory node: `[a-z0-9][a-z0-9._-]{0,62}`.
    NodeName,
    NodeName
);

impl NodeName {
    /// A stable 64-bit id for this node (FNV-1a of the name), used to break ties between
    /// versions written at the same hybrid-logical-clock instant. Stable across builds and
    /// platforms, unlike `std`'s hasher.
    pub fn id(&self) -> u64 {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        self.0
            .bytes()
            .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
    }
}

/// A network address `host:port`: IPv4, bracketed IPv6 (`[::1]:7000`) or a DNS name.
#[derive(Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Address {
    text: Arc<str>,
    port: u16,
}

impl Address {
    /// Parses `host:port`.
    pub fn new(value: &str) -> Result<Self, ValidationError> {
        let err = |reason| ValidationError::Address {
            value: value.to_owned(),
            reason,
        };
        let (host, port) = split_host_port(value).map_err(err)?;
        validate_host(host).map_err(err)?;
        let port = parse_port(port).map_err(err)?;
        Ok(Self {
            text: Arc::from(value),
            port,
        })
    }

    /// The host part, without IPv6 brackets.
    pub fn host(&self) -> &str {
        let host = &self.text[..self.text.len() - self.port_len() - 1];
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address as written, `host:port`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn port_len(&self) -> usize {
        // Safe: `text` ends with the decimal port it was parsed from (no leading zeros
        // beyond what was written), so its length is the suffix after the last ':'.
        self.text.rsplit(':').next().map_or(0, str::len)
    }
}

fn split_host_port(value: &str) -> Result<(&str, &str), &'static str> {
    if let Some(rest) = value.strip_prefix('[') {
        let (host, port) = rest
            .split_once("]:")
            .ok_or("IPv6 addresses must be written [addr]:port")?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| "not a valid IPv6 address inside brackets")?;
        return Ok((host, port));
    }
    let (host, port) = value.rsplit_once(':').ok_or("missing :port")?;
    if host.contains(':') {
        return Err("IPv6 addresses must be written [addr]:port");
    }
    Ok((host, port))
}

fn validate_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("empty host");
    }
    if host.contains(':') || host.parse::<Ipv4Addr>().is_ok() {
        return Ok(()); // IPv6 (already parsed) or IPv4
    }
    if host.len() > MAX_HOST_LEN {
        return Err("host name longer than 253 characters");
    }
    let all_digits_and_dots = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if all_digits_and_dots {
        return Err("not a valid IPv4 address");
    }
    host.trim_end_matches('.')
        .split('.')
        .all(is_valid_dns_label)
        .then_some(())
        .ok_or("host is neither an IP address nor a valid DNS name")
}

fn is_valid_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn parse_port(port: &str) -> Result<u16, &'static str> {
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("port must be a number between 1 and 65535");
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err("port must be a number between 1 and 65535"),
        Ok(p) => Ok(p),
    }
}

impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl FromStr for Address {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for Address {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<Address> for String {
    fn from(a: Address) -> String {
        a.text.to_string()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

/// A lease length between [`MIN_TTL`] and [`MAX_TTL`]; written like `"10s"` or `"1m 30s"`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Ttl(Duration);

impl Serialize for Ttl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Ttl {
    /// Validates a duration.
    pub fn from_duration(d: Duration) -> Result<Self, ValidationError> {
        if (MIN_TTL..=MAX_TTL).contains(&d) {
            Ok(Self(d))
        } else {
            Err(ValidationError::Ttl(
                humantime::format_duration(d).to_string(),
            ))
        }
    }

    /// Parses a humantime duration such as `"10s"`.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let d = humantime::parse_duration(s).map_err(|_| ValidationError::Ttl(s.to_owned()))?;
        Self::from_duration(d).map_err(|_| ValidationError::Ttl(s.to_owned()))
    }

    /// The lease length.
    pub fn duration(self) -> Duration {
        self.0
    }
}

impl Default for Ttl {
    fn default() -> Self {
        Self(DEFAULT_TTL)
    }
}

impl FromStr for Ttl {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Ttl {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Ttl> for String {
    fn from(t: Ttl) -> String {
        t.to_string()
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl fmt::Debug for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ttl({self})")
    }
}

fn has_control_chars(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Separator of the packed tag and meta storage. Tags, meta keys and meta values never
/// contain control characters (validated), so it cannot occur inside them.
const SEP: char = '\n';

/// Up to [`MAX_TAGS`] distinct tags, each 1..=1024 bytes without control characters.
/// Duplicates are dropped (first occurrence kept); order is otherwise preserved.
/// Packed into one allocation (tags joined by a separator): a `Vec<String>` cost an
/// allocation per tag, which dominated the memory of small records.
#[derive(Clone, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct Tags(Box<str>);

impl Serialize for Tags {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl Tags {
    /// Validates a list of tags.
    pub fn new(tags: Vec<String>) -> Result<Self, ValidationError> {
        let mut out: Vec<String> = Vec::with_capacity(tags.len().min(MAX_TAGS));
        for tag in tags {
            if tag.is_empty() || tag.len() > MAX_VALUE_LEN || has_control_chars(&tag) {
                return Err(ValidationError::Tags(format!(
                    "each tag must be 1 to {MAX_VALUE_LEN} bytes without control characters"
                )));
            }
            if !out.contains(&tag) {
                out.push(tag);
            }
            if out.len() > MAX_TAGS {
                return Err(ValidationError::Tags(format!("more than {MAX_TAGS} tags")));
            }
        }
        Ok(Self(out.join(&SEP.to_string()).into_boxed_str()))
    }

    /// The tags, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        // An empty string splits into one empty item; no tag is empty, so filter it out.
        self.0.split(SEP).filter(|t| !t.is_empty())
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are no tags.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tags as owned strings.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_owned).collect()
    }

    /// Whether every tag in `wanted` is present.
    pub fn contains_all<S: AsRef<str>>(&self, wanted: &[S]) -> bool {
        wanted.iter().all(|w| self.iter().any(|t| t == w.as_ref()))
    }
}

impl TryFrom<Vec<String>> for Tags {
    type Error = ValidationError;
    fn try_from(v: Vec<String>) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}

impl fmt::Debug for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Up to [`MAX_META_KEYS`] string pairs. Keys are 1..=128 bytes of `[A-Za-z0-9._-]` (so a
/// `key:value` filter is unambiguous); values are up to 1024 bytes without control characters.
/// Packed, sorted by key, into one allocation (a `BTreeMap` node costs ~550 bytes even for
/// one pair, and a string per key and value adds an allocation each).
#[derive(Clone, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "BTreeMap<String, String>")]
pub struct Meta(Box<str>);

impl Meta {
    /// Validates a map.
    pub fn new(map: BTreeMap<String, String>) -> Result<Self, ValidationError> {
        if map.len() > MAX_META_KEYS {
            return Err(ValidationError::Meta(format!(
                "more than {MAX_META_KEYS} keys"
            )));
        }
        for (k, v) in &map {
            validate_meta_key(k)?;
            if v.len() > MAX_VALUE_LEN || has_control_chars(v) {
                return Err(ValidationError::Meta(format!(
                    "value of {k:?} must be at most {MAX_VALUE_LEN} bytes without control characters"
                )));
            }
        }
        // BTreeMap iterates in key order, so the packed pairs are sorted.
        let packed: Vec<&str> = map
            .iter()
            .flat_map(|(k, v)| [k.as_str(), v.as_str()])
            .collect();
        Ok(Self(packed.join(&SEP.to_string()).into_boxed_str()))
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut parts = (!self.0.is_empty())
            .then(|| self.0.split(SEP))
            .into_iter()
            .flatten();
        std::iter::from_fn(move || Some((parts.next()?, parts.next()?)))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Meta {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

fn validate_meta_key(k: &str) -> Result<(), ValidationError> {
    let ok = !k.is_empty()
        && k.len() <= MAX_META_KEY_LEN
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::Meta(format!(
            "key {k:?} must be 1 to {MAX_META_KEY_LEN} characters of [A-Za-z0-9._-]"
        )))
    }
}

impl TryFrom<BTreeMap<String, String>> for Meta {
    type Error = ValidationError;
    fn try_from(m: BTreeMap<String, String>) -> Result<Self, Self::Error> {
        Self::new(m)
    }
}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// SHA-256 of a peer certificate's SubjectPublicKeyInfo DER, as 64 lowercase hex digits.
/// Upper-case input is accepted and normalised.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Fingerprint([u8; 32]);

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Fingerprint {
    /// Parses 64 hex digits.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let err = || ValidationError::Fingerprint(s.to_owned());
        if s.len() != 64 {
            return Err(err());
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or_else(err)?;
            let lo = hex_value(pair[1]).ok_or_else(err)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Self(out))
    }

    /// Wraps raw digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl FromStr for Fingerprint {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Fingerprint> for String {
    fn from(f: Fingerprint) -> String {
        f.to_string()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_follow_the_documented_pattern() {
        assert!(ServiceName::new("orders").is_ok());
        assert!(ServiceName::new("0rders.v2_x-y").is_ok());
        assert!(ServiceName::new(&"a".repeat(63)).is_ok());
        for bad in [
            "",
            "Orders",
            "-orders",
            ".x",
            "_x",
            "a b",
            "ä",
            &"a".repeat(64),
            "a/b",
        ] {
            assert_eq!(
                ServiceName::new(bad).unwrap_err().code(),
                "invalid_service_name",
                "{bad:?}"
            );
        }
        assert_eq!(
            InstanceId::new("X").unwrap_err().code(),
            "invalid_instance_id"
        );
    }

    #[test]
    fn addresses_accept_ipv4_ipv6_and_dns_names() {
        let a = Address::new("10.0.0.5:7000").unwrap();
        assert_eq!((a.host(), a.port()), ("10.0.0.5", 7000));
        let a = Address::new("[::1]:443").unwrap();
        assert_eq!((a.host(), a.port()), ("::1", 443));
        let a = Address::new("orders.svc.local:65535").unwrap();
        assert_eq!((a.host(), a.port()), ("orders.svc.local", 65535));
        assert!(Address::new("localhost:1").is_ok());
    }

    #[test]
    fn addresses_without_a_valid_host_or_port_are_rejected() {
        for bad in [
            "",
            "host",
            ":80",
            "host:",
            "host:0",
            "host:65536",
            "host:-1",
            "host:+80",
            "::1:80",
            "[::1]",
            "[zz]:80",
            "999.1.1.1:80",
            "1.2.3:80",
            "a..b:80",
            "-a:80",
            "a_b:80",
            "host:80:80",
            "ho st:80",
        ] {
            let err = Address::new(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_address", "{bad:?}");
        }
    }

    #[test]
    fn ttl_must_lie_between_one_second_and_one_hour() {
        assert_eq!(
            Ttl::parse("10s").unwrap().duration(),
            Duration::from_secs(10)
        );
        assert_eq!(Ttl::parse("1h").unwrap().duration(), MAX_TTL);
        assert_eq!(Ttl::parse("1s").unwrap().duration(), MIN_TTL);
        for bad in ["999ms", "1h 1s", "0s", "ten", "", "-5s"] {
            assert_eq!(
                Ttl::parse(bad).unwrap_err().code(),
                "invalid_ttl",
                "{bad:?}"
            );
        }
        assert_eq!(Ttl::default().duration(), DEFAULT_TTL);
        assert_eq!(Ttl::parse("90s").unwrap().to_string(), "1m 30s");
    }

    #[test]
    fn tags_are_limited_in_count_and_size() {
        let ok: Vec<String> = (0..MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert!(Tags::new(ok.clone()).is_ok());
        let mut too_many = ok;
        too_many.push("one-more".into());
        assert!(Tags::new(too_many).is_err());
        assert!(Tags::new(vec!["x".repeat(MAX_VALUE_LEN + 1)]).is_err());
        assert!(Tags::new(vec![String::new()]).is_err());
        assert!(Tags::new(vec!["a\nb".into()]).is_err());
        let deduped = Tags::new(vec!["a".into(), "b".into(), "a".into()]).unwrap();
        assert_eq!(deduped.to_vec(), ["a", "b"]);
        assert!(Tags::default().iter().next().is_none());
        assert!(deduped.contains_all(&["b", "a"]));
        assert!(!deduped.contains_all(&["c"]));
    }

    #[test]
    fn meta_is_limited_in_keys_and_value_size() {
        let ok: BTreeMap<_, _> = (0..MAX_META_KEYS)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();
        assert!(Meta::new(ok.clone()).is_ok());
        let mut too_many = ok;
        too_many.insert("extra".into(), "v".into());
        assert!(Meta::new(too_many).is_err());
        let big = BTreeMap::from([("k".to_string(), "v".repeat(MAX_VALUE_LEN + 1))]);
        assert!(Meta::new(big).is_err());
        let colon = BTreeMap::from([("a:b".to_string(), "v".to_string())]);
        assert!(Meta::new(colon).is_err());
        let empty_values = BTreeMap::from([
            ("a".to_string(), String::new()),
            ("b".to_string(), String::new()),
        ]);
        let m = Meta::new(empty_values).unwrap();
        assert_eq!(m.iter().collect::<Vec<_>>(), [("a", ""), ("b", "")]);
        assert_eq!((m.get("b"), m.get("c"), m.len()), (Some(""), None, 2));
        assert!(Meta::default().iter().next().is_none());
    }

    #[test]
    fn fingerprints_are_64_hex_digits_normalised_to_lowercase() {
        let upper = "AB".repeat(32);
        assert_eq!(
            Fingerprint::parse(&upper).unwrap().to_string(),
            "ab".repeat(32)
        );
        assert!(Fingerprint::parse(&"ab".repeat(31)).is_err());
        assert!(Fingerprint::parse(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn deserialization_validates_like_parsing() {
        assert!(serde_json::from_str::<ServiceName>("\"Bad\"").is_err());
        assert!(serde_json::from_str::<Address>("\"nohost\"").is_err());
        assert!(serde_json::from_str::<Ttl>("\"2h\"").is_err());
        let ttl: Ttl = serde_json::from_str("\"15s\"").unwrap();
        assert_eq!(serde_json::to_string(&ttl).unwrap(), "\"15s\"");
    }

    #[test]
    fn node_ids_are_stable() {
        let a = NodeName::new("node-a").unwrap();
        assert_eq!(a.id(), NodeName::new("node-a").unwrap().id());
        assert_ne!(a.id(), NodeName::new("node-b").unwrap().id());
    }

    proptest! {
        #[test]
        fn valid_names_are_accepted_and_round_trip(s in "[a-z0-9][a-z0-9._-]{0,62}") {
            let n = ServiceName::new(&s).unwrap();
            prop_assert_eq!(n.as_str(), s.as_str());
            let json = serde_json::to_string(&n).unwrap();
            prop_assert_eq!(serde_json::from_str::<ServiceName>(&json).unwrap(), n);
        }

        #[test]
        fn name_validation_matches_the_pattern(s in "\\PC{0,70}") {
            let expected = !s.is_empty()
                && s.len() <= 63
                && s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c));
            prop_assert_eq!(InstanceId::new(&s).is_ok(), expected);
        }

        #[test]
        fn address_parsing_never_panics_and_round_trips(s in "\\PC{0,40}") {
            if let Ok(a) = Address::new(&s) {
                prop_assert_eq!(a.as_str(), s.as_str());
                prop_assert!(a.port() > 0);
                prop_assert!(!a.host().is_empty());
            }
        }

        #[test]
        fn ipv4_socket_addresses_are_accepted(ip in any::<[u8; 4]>(), port in 1u16..) {
            let s = format!("{}.{}.{}.{}:{port}", ip[0], ip[1], ip[2], ip[3]);
            let a = Address::new(&s).unwrap();
            prop_assert_eq!(a.port(), port);
        }

        #[test]
        fn ttl_accepts_exactly_the_allowed_range(ms in 0u64..4_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(Ttl::from_duration(d).is_ok(), (1000..=3_600_000).contains(&ms));
        }

        #[test]
        fn fingerprints_round_trip(bytes in any::<[u8; 32]>()) {
            let f = Fingerprint::from_bytes(bytes);
            prop_assert_eq!(Fingerprint::parse(&f.to_string()).unwrap(), f);
        }

        #[test]
        fn tags_and_meta_never_panic(tags in proptest::collection::vec("\\PC{0,8}", 0..70),
                                     meta in proptest::collection::btree_map("\\PC{0,6}", "\\PC{0,6}", 0..70)) {
            if let Ok(t) = Tags::new(tags.clone()) {
                prop_assert!(t.len() <= MAX_TAGS);
                let mut expected: Vec<String> = Vec::new();
                for tag in tags {
                    if !expected.contains(&tag) {
                        expected.push(tag);
                    }
                }
                prop_assert_eq!(t.to_vec(), expected);
                let json = serde_json::to_string(&t).unwrap();
                prop_assert_eq!(serde_json::from_str::<Tags>(&json).unwrap(), t);
            }
            if let Ok(m) = Meta::new(meta.clone()) {
                prop_assert!(m.len() <= MAX_META_KEYS);
                for (k, v) in &meta {
                    prop_assert_eq!(m.get(k), Some(v.as_str()));
                }
                let json = serde_json::to_string(&m).unwrap();
                prop_assert_eq!(serde_json::from_str::<Meta>(&json).unwrap(), m);
            }
        }
    }
}
