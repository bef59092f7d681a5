//! [`Fingerprint`]: the SHA-256 of a peer certificate's public key, used to pin identity.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::ValidationError;
use crate::newtype::validated_string;

/// SHA-256 of a peer certificate's SubjectPublicKeyInfo DER, written as 64 lowercase hex
/// digits. Upper-case input is accepted and normalised. Every 32-byte value is a valid
/// fingerprint, so the digest is public.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

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

    /// The fingerprint of a SubjectPublicKeyInfo in DER form.
    pub fn of_spki(spki_der: &[u8]) -> Self {
        Self(Sha256::digest(spki_der).into())
    }

    /// Last labels of [`server_name`](Self::server_name).
    pub const PIN_SUFFIX: &'static str = "pin.peer";

    /// The TLS server name that carries this pin when a peer dials an instance:
    /// `<32 hex>.<32 hex>.pin.peer` (a 64-character label would not be a valid DNS name).
    pub fn server_name(&self) -> String {
        let hex = self.to_string();
        format!("{}.{}.{}", &hex[..32], &hex[32..], Self::PIN_SUFFIX)
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

validated_string!(Fingerprint, parse: Fingerprint::parse, serialize: display);

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
