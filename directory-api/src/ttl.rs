//! [`Ttl`]: a lease length bounded by [`MIN_TTL`] and [`MAX_TTL`].

use std::fmt;
use std::time::Duration;

use crate::ValidationError;
use crate::newtype::validated_string;

/// Shortest lease a client may ask for: shorter leases turn heartbeats into a load test.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// Longest lease a client may ask for: a dead instance stays visible at most this long.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// Lease used when a registration does not name one.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// A lease length between [`MIN_TTL`] and [`MAX_TTL`]; written like `"10s"` or `"1m 30s"`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ttl(Duration);

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

validated_string!(Ttl, parse: Ttl::parse, serialize: display);

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    proptest! {
        #[test]
        fn ttl_accepts_exactly_the_allowed_range(ms in 0u64..4_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(Ttl::from_duration(d).is_ok(), (1000..=3_600_000).contains(&ms));
        }
    }
}
