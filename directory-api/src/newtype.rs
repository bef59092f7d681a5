//! The one way to write a validated string newtype.
//!
//! A validated type has exactly one parser, `fn(&str) -> Result<Self, ValidationError>`.
//! [`validated_string!`] derives from it everything else that turns text into the type or
//! back: `FromStr`, `TryFrom<String>`, `TryFrom<&str>`, `From<T> for String`, and serde (so
//! JSON bodies, CLI flags and replicated entries all pass through the same check). The type
//! itself provides `Display` (its canonical text).

/// Implements the string conversions and serde for a validated type.
///
/// `serialize: as_str` writes `self.as_str()` (types that keep their text);
/// `serialize: display` writes the `Display` form (types stored in another shape).
macro_rules! validated_string {
    ($name:ident, parse: $parse:path, serialize: $how:ident) => {
        $crate::newtype::validated_string!(@serialize $how $name);

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                $parse(&text).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $parse(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = $crate::ValidationError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                $parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::ValidationError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                $parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.to_string()
            }
        }
    };
    (@serialize as_str $name:ident) => {
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
    (@serialize display $name:ident) => {
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    };
}

pub(crate) use validated_string;

/// A validated type that keeps its text in `self.0` (an `Arc<str>` or `String`): the
/// conversions of [`validated_string!`], `Display` as the text and `Debug` as a quoted
/// string.
macro_rules! text_type {
    ($name:ident) => {
        $crate::newtype::validated_string!($name, parse: $name::new, serialize: as_str);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&*self.0, f)
            }
        }
    };
}

pub(crate) use text_type;
