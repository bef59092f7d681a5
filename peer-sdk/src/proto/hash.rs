//! The hasher of the core's integer-keyed maps (message ids, sessions, link ids).
//!
//! Keys are generated locally or are sender-chosen ids inside one sender's window, so
//! HashDoS resistance is not needed; SipHash showed up as ~10% of the send path. FxHash
//! (rustc-hash) is the fast multiply-based hasher rustc itself uses.

/// `HashMap` with FxHash.
pub type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;
/// `HashSet` with FxHash.
pub type FastSet<K> = rustc_hash::FxHashSet<K>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher as _;

    #[test]
    fn sequential_ids_spread_over_buckets() {
        // hashbrown picks the bucket from the low bits: sequential ids must spread there at
        // least as well as a random function would (which fills ~63% of 1,024 buckets with
        // 1,024 keys); an identity-like hash that kept only high bits would fill a handful.
        let build = rustc_hash::FxBuildHasher;
        let low_bits: FastSet<u64> = (0u64..1024).map(|id| build.hash_one(id) & 1023).collect();
        assert!(low_bits.len() >= 700, "{} of 1024 buckets", low_bits.len());
    }
}
