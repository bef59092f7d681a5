//! The encryption envelope of every gossip datagram and stream frame.
//!
//! Sealed format: `0xE1 | session (16) | counter (8, big endian) | XChaCha20-Poly1305
//! ciphertext + 16-byte tag`; the 25 header bytes are the associated data and, with the
//! counter, the 24-byte nonce. `session` is random per sender (per process start for UDP,
//! per connection for streams) and `counter` increases per packet, so a nonce never repeats
//! under one key. The receiver keeps, per session, a 64-packet sliding window and drops
//! replays. Without a cluster key (only when explicitly allowed) the envelope is `0x50 |
//! plaintext`; a node holding a key never accepts it, and a node without a key never accepts
//! sealed packets.
//!
//! Keys come from a [`Keyring`]: the sealer uses its primary key, the opener tries every
//! key in it (primary first), so the cluster key can be rotated without downtime.

use std::collections::HashMap;

use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{Aead, Payload};
use rand::RngExt as _;

use super::keyring::Keyring;

const SEALED_MAGIC: u8 = 0xE1;
const PLAIN_MAGIC: u8 = 0x50;
const SESSION_LEN: usize = 16;
const HEADER_LEN: usize = 1 + SESSION_LEN + 8;
const TAG_LEN: usize = 16;
/// Bytes the sealed envelope adds around a payload.
pub const SEALED_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// How many sender sessions a receiver tracks for replay protection before it forgets the
/// least recently seen one (a node restart opens a new session).
pub const MAX_TRACKED_SESSIONS: usize = 4096;
const REPLAY_WINDOW: u64 = 64;

/// Why a received packet was dropped (each reason is a `/metrics` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum DropReason {
    /// Larger than the transport's limit.
    #[error("oversized")]
    Oversized,
    /// Shorter than the envelope header and tag.
    #[error("truncated")]
    Truncated,
    /// Neither envelope magic byte: garbage or another protocol.
    #[error("garbage")]
    Garbage,
    /// The tag did not verify: wrong key, tampered or corrupted.
    #[error("unauthenticated")]
    Unauthenticated,
    /// A packet already received (or too old for the replay window).
    #[error("replayed")]
    Replayed,
    /// Plaintext received while we hold a key, or sealed received without a key.
    #[error("security_mismatch")]
    SecurityMismatch,
    /// The decrypted payload did not decode (bad version or shape).
    #[error("malformed")]
    Malformed,
}

impl DropReason {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Oversized => "oversized",
            Self::Truncated => "truncated",
            Self::Garbage => "garbage",
            Self::Unauthenticated => "unauthenticated",
            Self::Replayed => "replayed",
            Self::SecurityMismatch => "security_mismatch",
            Self::Malformed => "malformed",
        }
    }
}

/// Seals outgoing payloads for one sender session.
pub struct Sealer {
    keys: Option<Keyring>,
    session: [u8; SESSION_LEN],
    counter: u64,
}

impl Sealer {
    /// A new session sealing with the ring's primary key (as it is at each packet);
    /// `None` means insecure (plaintext) mode.
    pub fn new(keys: Option<Keyring>) -> Self {
        let mut session = [0u8; SESSION_LEN];
        rand::rng().fill(&mut session);
        Self {
            keys,
            session,
            counter: 0,
        }
    }

    /// Bytes this sealer adds to a payload.
    pub fn overhead(&self) -> usize {
        if self.keys.is_some() {
            SEALED_OVERHEAD
        } else {
            1
        }
    }

    /// Seals one payload.
    pub fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let Some(keys) = &self.keys else {
            let mut out = Vec::with_capacity(plaintext.len() + 1);
            out.push(PLAIN_MAGIC);
            out.extend_from_slice(plaintext);
            return out;
        };
        self.counter += 1;
        let mut out = Vec::with_capacity(plaintext.len() + SEALED_OVERHEAD);
        out.push(SEALED_MAGIC);
        out.extend_from_slice(&self.session);
        out.extend_from_slice(&self.counter.to_be_bytes());
        let nonce = nonce(&self.session, self.counter);
        let payload = Payload {
            msg: plaintext,
            aad: &out[..HEADER_LEN],
        };
        // Encryption only fails for payloads beyond ChaCha20's 256 GiB limit; ours are
        // bounded by MAX_FRAME, so an empty vector (dropped by the receiver) is unreachable.
        let sealed = keys
            .ciphers()
            .primary()
            .encrypt(&nonce, payload)
            .unwrap_or_default();
        out.extend_from_slice(&sealed);
        out
    }
}

fn nonce(session: &[u8; SESSION_LEN], counter: u64) -> XNonce {
    let mut n = [0u8; 24];
    n[..SESSION_LEN].copy_from_slice(session);
    n[SESSION_LEN..].copy_from_slice(&counter.to_be_bytes());
    n.into()
}

/// Sliding replay window of one sender session.
#[derive(Default)]
struct ReplayWindow {
    highest: u64,
    seen: u64,
    last_use: u64,
}

impl ReplayWindow {
    /// Returns whether `counter` is new, and records it.
    fn accept(&mut self, counter: u64) -> bool {
        if counter == 0 {
            return false;
        }
        if counter > self.highest {
            let shift = counter - self.highest;
            self.seen = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = counter;
            return true;
        }
        let back = self.highest - counter;
        if back >= REPLAY_WINDOW || self.seen & (1 << back) != 0 {
            return false;
        }
        self.seen |= 1 << back;
        true
    }
}

/// Opens incoming payloads and remembers which packets it has seen.
pub struct Opener {
    keys: Option<Keyring>,
    sessions: HashMap<[u8; SESSION_LEN], ReplayWindow>,
    max_sessions: usize,
    clock: u64,
}

impl Opener {
    /// An opener accepting any key of the ring (as it is at each packet); `None` means
    /// insecure (plaintext) mode.
    pub fn new(keys: Option<Keyring>) -> Self {
        Self {
            keys,
            sessions: HashMap::new(),
            max_sessions: MAX_TRACKED_SESSIONS,
            clock: 0,
        }
    }

    /// Opens one packet of at most `limit` bytes; any failure drops it.
    pub fn open(&mut self, packet: &[u8], limit: usize) -> Result<Vec<u8>, DropReason> {
        if packet.len() > limit {
            return Err(DropReason::Oversized);
        }
        let (&magic, rest) = packet.split_first().ok_or(DropReason::Truncated)?;
        match (magic, &self.keys) {
            (PLAIN_MAGIC, None) => Ok(rest.to_vec()),
            (SEALED_MAGIC, Some(_)) => self.open_sealed(packet),
            (PLAIN_MAGIC | SEALED_MAGIC, _) => Err(DropReason::SecurityMismatch),
            _ => Err(DropReason::Garbage),
        }
    }

    fn open_sealed(&mut self, packet: &[u8]) -> Result<Vec<u8>, DropReason> {
        if packet.len() < SEALED_OVERHEAD {
            return Err(DropReason::Truncated);
        }
        let mut session = [0u8; SESSION_LEN];
        session.copy_from_slice(&packet[1..=SESSION_LEN]);
        let mut counter_bytes = [0u8; 8];
        counter_bytes.copy_from_slice(&packet[1 + SESSION_LEN..HEADER_LEN]);
        let counter = u64::from_be_bytes(counter_bytes);
        let Some(keys) = &self.keys else {
            return Err(DropReason::SecurityMismatch);
        };
        let nonce = nonce(&session, counter);
        let plaintext = keys
            .ciphers()
            .all()
            .iter()
            .find_map(|cipher| {
                let payload = Payload {
                    msg: &packet[HEADER_LEN..],
                    aad: &packet[..HEADER_LEN],
                };
                cipher.decrypt(&nonce, payload).ok()
            })
            .ok_or(DropReason::Unauthenticated)?;
        // Only authenticated packets touch the replay state, so forged packets cannot
        // evict real sessions.
        if !self.window(session).accept(counter) {
            return Err(DropReason::Replayed);
        }
        Ok(plaintext)
    }

    fn window(&mut self, session: [u8; SESSION_LEN]) -> &mut ReplayWindow {
        self.clock += 1;
        if !self.sessions.contains_key(&session) && self.sessions.len() >= self.max_sessions {
            let oldest = self
                .sessions
                .iter()
                .min_by_key(|(_, w)| w.last_use)
                .map(|(s, _)| *s);
            if let Some(oldest) = oldest {
                self.sessions.remove(&oldest);
            }
        }
        let window = self.sessions.entry(session).or_default();
        window.last_use = self.clock;
        window
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::key::ClusterKey;
    use crate::gossip::keyring::Keys;

    fn pair() -> (Sealer, Opener) {
        let key = Keyring::from(ClusterKey::generate());
        (Sealer::new(Some(key.clone())), Opener::new(Some(key)))
    }

    #[test]
    fn sealed_packets_open_once() {
        let (mut sealer, mut opener) = pair();
        let packet = sealer.seal(b"hello");
        assert_eq!(packet.len(), 5 + SEALED_OVERHEAD);
        assert_eq!(opener.open(&packet, 1400).unwrap(), b"hello");
        assert_eq!(opener.open(&packet, 1400), Err(DropReason::Replayed));
    }

    #[test]
    fn reordered_packets_within_the_window_are_accepted() {
        let (mut sealer, mut opener) = pair();
        let packets: Vec<_> = (0..10).map(|i| sealer.seal(&[i])).collect();
        for p in packets.iter().rev() {
            assert!(opener.open(p, 1400).is_ok());
        }
        let old: Vec<_> = (0..70).map(|i| sealer.seal(&[i])).collect();
        assert!(opener.open(&old[69], 1400).is_ok());
        assert_eq!(opener.open(&old[0], 1400), Err(DropReason::Replayed));
    }

    #[test]
    fn wrong_key_tampering_truncation_and_garbage_are_dropped() {
        let (mut sealer, _) = pair();
        let mut other = Opener::new(Some(ClusterKey::generate().into()));
        let packet = sealer.seal(b"secret");
        assert_eq!(other.open(&packet, 1400), Err(DropReason::Unauthenticated));
        let (mut sealer, mut opener) = pair();
        let mut packet = sealer.seal(b"secret");
        let last = packet.len() - 1;
        packet[last] ^= 1;
        assert_eq!(opener.open(&packet, 1400), Err(DropReason::Unauthenticated));
        assert_eq!(opener.open(&packet[..10], 1400), Err(DropReason::Truncated));
        assert_eq!(opener.open(&[], 1400), Err(DropReason::Truncated));
        assert_eq!(opener.open(b"GET / HTTP", 1400), Err(DropReason::Garbage));
        assert_eq!(opener.open(&[0xE1; 2000], 1400), Err(DropReason::Oversized));
    }

    #[test]
    fn plaintext_and_sealed_modes_never_mix() {
        let (mut sealer, _) = pair();
        let mut plain_opener = Opener::new(None);
        assert_eq!(
            plain_opener.open(&sealer.seal(b"x"), 1400),
            Err(DropReason::SecurityMismatch)
        );
        let mut plain = Sealer::new(None);
        let (_, mut opener) = pair();
        assert_eq!(
            opener.open(&plain.seal(b"x"), 1400),
            Err(DropReason::SecurityMismatch)
        );
        assert_eq!(plain_opener.open(&plain.seal(b"x"), 1400).unwrap(), b"x");
    }

    #[test]
    fn session_table_is_bounded() {
        let key = Keyring::from(ClusterKey::generate());
        let mut opener = Opener::new(Some(key.clone()));
        opener.max_sessions = 8;
        for _ in 0..20 {
            let mut s = Sealer::new(Some(key.clone()));
            assert!(opener.open(&s.seal(b"x"), 1400).is_ok());
        }
        assert_eq!(opener.sessions.len(), 8);
    }

    #[test]
    fn a_ring_opens_with_any_of_its_keys_and_seals_with_the_primary() {
        let (old, new) = (ClusterKey::generate(), ClusterKey::generate());
        let ring = Keyring::new(&Keys::new(old.clone(), vec![new.clone()]).unwrap());
        let mut from_old = Sealer::new(Some(old.clone().into()));
        let mut from_new = Sealer::new(Some(new.clone().into()));
        let mut opener = Opener::new(Some(ring.clone()));
        assert_eq!(opener.open(&from_old.seal(b"a"), 1400).unwrap(), b"a");
        assert_eq!(opener.open(&from_new.seal(b"b"), 1400).unwrap(), b"b");
        // The ring seals with its primary (old): a node holding only `old` opens it.
        let mut sealer = Sealer::new(Some(ring.clone()));
        let mut old_only = Opener::new(Some(old.clone().into()));
        assert!(old_only.open(&sealer.seal(b"c"), 1400).is_ok());
        // Promote `new` live: the same sealer now seals with it.
        ring.replace(&Keys::new(new.clone(), vec![old]).unwrap());
        assert_eq!(
            old_only.open(&sealer.seal(b"d"), 1400),
            Err(DropReason::Unauthenticated)
        );
        let mut new_only = Opener::new(Some(new.into()));
        assert!(new_only.open(&sealer.seal(b"e"), 1400).is_ok());
    }

    #[test]
    fn a_frame_sealed_with_a_key_outside_the_ring_is_rejected_and_counted() {
        let ring =
            Keyring::new(&Keys::new(ClusterKey::generate(), vec![ClusterKey::generate()]).unwrap());
        let mut opener = Opener::new(Some(ring));
        let mut stranger = Sealer::new(Some(ClusterKey::generate().into()));
        let counters = super::super::settings::GossipCounters::default();
        for _ in 0..3 {
            let reason = opener.open(&stranger.seal(b"x"), 1400).unwrap_err();
            assert_eq!(reason, DropReason::Unauthenticated);
            counters.count_drop(reason);
        }
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(load(&counters.unauthenticated), 3);
        assert_eq!(load(&counters.dropped), 3);
        assert!(
            opener.sessions.is_empty(),
            "forged frames leave no replay state"
        );
    }
}
