//! [`Fingerprint`]: the SHA-256 of a peer certificate's public key, used to pin identity.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::names::ValidationError;

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
    fn fingerprints_are_64_hex_digits_normalised_to_lowercase() {
        let upper = "AB".repeat(32);
        assert_eq!(
            Fingerprint::parse(&upper).unwrap().to_string(),
            "ab".repeat(32)
        );
        assert!(Fingerprint::parse(&"ab".repeat(31)).is_err());
        assert!(Fingerprint::parse(&"zz".repeat(32)).is_err());
    }

    proptest! {
        #[test]
        fn fingerprints_round_trip(bytes in any::<[u8; 32]>()) {
            let f = Fingerprint::from_bytes(bytes);
            prop_assert_eq!(Fingerprint::parse(&f.to_string()).unwrap(), f);
        }
    }
}
