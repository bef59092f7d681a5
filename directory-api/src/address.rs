//! [`Address`]: a validated `host:port` for IPv4, bracketed IPv6 or a DNS name.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::ValidationError;
use crate::newtype::validated_string;

/// Longest host part of an address (the DNS limit).
const MAX_HOST_LEN: usize = 253;

/// A network address `host:port`: IPv4, bracketed IPv6 (`[::1]:7000`) or a DNS name.
#[derive(Clone, PartialEq, Eq, Hash)]
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

validated_string!(Address, parse: Address::new, serialize: as_str);

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    proptest! {
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
    }
}
