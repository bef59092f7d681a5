//! A fast hasher for the core's integer-keyed maps (message ids, sessions, link ids).
//!
//! Keys are generated locally or are sender-chosen ids inside one sender's window, so
//! HashDoS resistance is not needed; SipHash showed up as ~10% of the send path.

use std::hash::{BuildHasherDefault, Hasher};

/// Multiply-rotate hasher (the FxHash scheme).
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(buf));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(SEED);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
}

/// `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FastHasher>>;
/// `HashSet` with [`FastHasher`].
pub type FastSet<K> = std::collections::HashSet<K, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread_over_buckets() {
        // hashbrown picks the bucket from the low bits: sequential ids must not collide there.
        let mut low_bits = FastSet::default();
        for id in 0u64..1024 {
            let mut h = FastHasher::default();
            h.write_u64(id);
            low_bits.insert(h.finish() & 1023);
        }
        assert_eq!(low_bits.len(), 1024);
    }
}
