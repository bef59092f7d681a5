//! [`Tags`] and [`Meta`]: the free-form labels an instance carries, bounded in count and size
//! and packed into one allocation each.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// Most tags one instance may carry.
pub const MAX_TAGS: usize = 64;
/// Most meta keys one instance may carry.
pub const MAX_META_KEYS: usize = 64;
/// Longest tag or meta value, in characters (at most 4 KiB of UTF-8).
pub const MAX_VALUE_LEN: usize = 1024;
/// Longest meta key, in bytes.
pub const MAX_META_KEY_LEN: usize = 128;

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
        if tags.len() > MAX_TAGS {
            // Counted before duplicates are dropped, as the document's `maxItems` counts.
            return Err(ValidationError::Tags(format!("more than {MAX_TAGS} tags")));
        }
        let mut out: Vec<String> = Vec::with_capacity(tags.len());
        for tag in tags {
            if tag.is_empty() || tag.chars().count() > MAX_VALUE_LEN || has_control_chars(&tag) {
                return Err(ValidationError::Tags(format!(
                    "each tag must be 1 to {MAX_VALUE_LEN} characters without control characters"
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
            if v.chars().count() > MAX_VALUE_LEN || has_control_chars(v) {
                return Err(ValidationError::Meta(format!(
                    "value of {k:?} must be at most {MAX_VALUE_LEN} characters without control characters"
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    proptest! {
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
