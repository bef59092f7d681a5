//! The DNS interface's knobs: listen address, domain, TTL.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

use hickory_server::proto::rr::{LowerName, Name};

/// Default domain the directory answers for: `<service>.service.directory.`. Not a real
/// top-level domain, so it cannot shadow public names; forward it from the system's
/// resolver (dnsmasq, systemd-resolved, CoreDNS) to the node.
pub const DEFAULT_DNS_DOMAIN: &str = "directory.";
/// Default TTL of every answer (5 s): instances come and go with their leases (default
/// 30 s), so resolvers must not cache an answer for long; 0 would defeat caching of hot
/// names entirely. Negative answers (NXDOMAIN) use it too, through the SOA minimum.
pub const DEFAULT_DNS_TTL: Duration = Duration::from_secs(5);
/// How long a DNS-over-TCP connection may stay idle before the node closes it: long enough
/// for a resolver to send its query after connecting, short enough that idle connections do
/// not pile up.
pub const DNS_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default cap on open DNS-over-TCP connections (BIND's `tcp-clients` default). Resolvers
/// use TCP only for truncated answers, so a few hundred is plenty; at the cap, new
/// connections wait in the kernel's backlog.
pub const DEFAULT_DNS_MAX_TCP_CONNECTIONS: usize = 150;

/// The DNS interface of a node (off unless configured: `--dns-addr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Address of both the UDP and the TCP listener. Port 0 picks a free port, the same for
    /// both ([`crate::Server::dns_addr`] tells which).
    pub addr: SocketAddr,
    /// Domain the node answers for. Default [`DEFAULT_DNS_DOMAIN`].
    pub domain: DnsDomain,
    /// TTL of answers, whole seconds. Default [`DEFAULT_DNS_TTL`].
    pub ttl: Duration,
    /// Most DNS-over-TCP connections open at once. Default
    /// [`DEFAULT_DNS_MAX_TCP_CONNECTIONS`].
    pub max_tcp_connections: NonZeroUsize,
}

impl DnsConfig {
    /// The defaults, listening on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            domain: DnsDomain::default(),
            ttl: DEFAULT_DNS_TTL,
            max_tcp_connections: NonZeroUsize::new(DEFAULT_DNS_MAX_TCP_CONNECTIONS)
                .unwrap_or(NonZeroUsize::MIN),
        }
    }

    /// The TTL in whole seconds, as DNS records carry it (saturating).
    pub fn ttl_secs(&self) -> u32 {
        u32::try_from(self.ttl.as_secs()).unwrap_or(u32::MAX)
    }
}

/// A validated, lowercase, fully qualified domain (`directory.`, `svc.example.com.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsDomain(LowerName);

/// Why a domain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsDomainError {
    /// Not a valid DNS name (empty label, label over 63 bytes, name over 255 bytes, a
    /// character outside letters, digits, `-` and `_`). Remedy: e.g. `directory.` or
    /// `svc.example.com.`.
    #[error("invalid DNS domain {value:?}: {reason}")]
    Invalid {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl DnsDomain {
    /// The domain as a name.
    pub fn name(&self) -> &LowerName {
        &self.0
    }
}

impl Default for DnsDomain {
    fn default() -> Self {
        // Safe: the default is a valid one-label domain (tested below).
        DEFAULT_DNS_DOMAIN
            .parse()
            .unwrap_or_else(|_| unreachable!("the default DNS domain is valid"))
    }
}

impl FromStr for DnsDomain {
    type Err = DnsDomainError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| DnsDomainError::Invalid {
            value: value.to_owned(),
            reason,
        };
        let valid_chars = value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if value.trim_end_matches('.').is_empty() || !valid_chars {
            return Err(invalid(
                "use letters, digits, '-' and '_' in dot-separated labels".into(),
            ));
        }
        let mut name = Name::from_ascii(value).map_err(|e| invalid(e.to_string()))?;
        name.set_fqdn(true);
        Ok(Self(LowerName::new(&name)))
    }
}

impl std::fmt::Display for DnsDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_lowercased_fully_qualified_and_validated() {
        assert_eq!(DnsDomain::default().to_string(), "directory.");
        assert_eq!(
            "Svc.Example.COM".parse::<DnsDomain>().unwrap().to_string(),
            "svc.example.com."
        );
        for bad in ["", ".", "a..b", "sp ace.", "é.", &"x".repeat(64)] {
            assert!(bad.parse::<DnsDomain>().is_err(), "{bad:?}");
        }
    }
}
