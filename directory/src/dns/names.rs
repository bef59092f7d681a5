//! What a query name asks for, read without I/O.
//!
//! Under the domain (default `directory.`):
//! - `<service>.service.<domain>`: the service's instances (A, AAAA, SRV);
//! - `<tag>.<service>.service.<domain>`: those with the tag;
//! - `_<service>._tcp.service.<domain>`: the RFC 2782 form (SRV);
//! - `<hex>.addr.<domain>`: the IP address written in hex (8 digits for IPv4, 32 for IPv6),
//!   the target of SRV records for instances registered with an IP address.
//!
//! Service names may contain dots, so `a.b.service.<domain>` is the service `a.b` when it
//! has live instances, and else the tag `a` of the service `b`: the caller tries each
//! [`QueryName::candidates`] in order.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_server::proto::rr::{LowerName, Name};

use crate::registry::ServiceName;

/// Label that introduces service names.
const SERVICE_LABEL: &str = "service";
/// Label that introduces hex-encoded addresses.
const ADDR_LABEL: &str = "addr";

/// One reading of a service name: which service, which tag, and whether only SRV answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceQuery {
    /// The service.
    pub service: ServiceName,
    /// Only instances with this tag.
    pub tag: Option<String>,
    /// The `_<service>._tcp` form: SRV records only.
    pub srv_only: bool,
}

/// What a name under the domain asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryName {
    /// The domain itself (SOA).
    Apex,
    /// A service, read in one or more ways (most specific first).
    Service(Vec<ServiceQuery>),
    /// An address target of an SRV record.
    Addr(IpAddr),
    /// A name under the domain that names nothing.
    Unknown,
}

impl QueryName {
    /// Reads `name`, or `None` when it is outside `domain`.
    pub fn parse(name: &LowerName, domain: &LowerName) -> Option<Self> {
        if !domain.zone_of(name) {
            return None;
        }
        let depth = domain.iter().count();
        let labels: Vec<String> = name
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        let relative = &labels[..labels.len().saturating_sub(depth)];
        Some(Self::from_relative(relative))
    }

    /// The candidate readings of a service name, or none for other names.
    pub fn candidates(&self) -> &[ServiceQuery] {
        match self {
            Self::Service(list) => list,
            _ => &[],
        }
    }

    fn from_relative(labels: &[String]) -> Self {
        match labels {
            [] => Self::Apex,
            [hex, last] if last == ADDR_LABEL => decode_addr(hex).map_or(Self::Unknown, Self::Addr),
            [prefix @ .., last] if last == SERVICE_LABEL && !prefix.is_empty() => {
                service_readings(prefix)
            }
            _ => Self::Unknown,
        }
    }
}

/// The readings of the labels before `service`.
fn service_readings(prefix: &[String]) -> QueryName {
    if let [service, proto] = prefix
        && proto == "_tcp"
        && let Some(name) = service.strip_prefix('_')
    {
        return rfc2782(name);
    }
    let mut readings = Vec::new();
    if let Ok(service) = ServiceName::new(&prefix.join(".")) {
        readings.push(plain(service, None));
    }
    if let [tag, rest @ ..] = prefix
        && !rest.is_empty()
        && let Ok(service) = ServiceName::new(&rest.join("."))
    {
        readings.push(plain(service, Some(tag.clone())));
    }
    if readings.is_empty() {
        return QueryName::Unknown;
    }
    QueryName::Service(readings)
}

fn rfc2782(service: &str) -> QueryName {
    match ServiceName::new(service) {
        Ok(service) => QueryName::Service(vec![ServiceQuery {
            service,
            tag: None,
            srv_only: true,
        }]),
        Err(_) => QueryName::Unknown,
    }
}

fn plain(service: ServiceName, tag: Option<String>) -> ServiceQuery {
    ServiceQuery {
        service,
        tag,
        srv_only: false,
    }
}

/// `ip` as the label of its `addr` name: lowercase hex of its octets.
pub fn encode_addr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => hex::encode(v4.octets()),
        IpAddr::V6(v6) => hex::encode(v6.octets()),
    }
}

fn decode_addr(label: &str) -> Option<IpAddr> {
    let bytes = hex::decode(label).ok()?;
    if let Ok(v4) = <[u8; 4]>::try_from(bytes.as_slice()) {
        return Some(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    let v6 = <[u8; 16]>::try_from(bytes.as_slice()).ok()?;
    Some(IpAddr::V6(Ipv6Addr::from(v6)))
}

/// The `addr` name of `ip` under `domain`.
pub fn addr_name(ip: IpAddr, domain: &LowerName) -> Option<Name> {
    Name::from_labels([encode_addr(ip).as_bytes(), ADDR_LABEL.as_bytes()])
        .ok()?
        .append_name(domain)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str) -> Option<QueryName> {
        let domain: LowerName = "directory.".parse().unwrap();
        QueryName::parse(&name.parse().unwrap(), &domain)
    }

    fn reading(service: &str, tag: Option<&str>, srv_only: bool) -> ServiceQuery {
        ServiceQuery {
            service: ServiceName::new(service).unwrap(),
            tag: tag.map(str::to_owned),
            srv_only,
        }
    }

    #[test]
    fn service_tag_and_rfc2782_names_are_read() {
        assert_eq!(
            parse("orders.service.directory."),
            Some(QueryName::Service(vec![reading("orders", None, false)]))
        );
        assert_eq!(
            parse("_orders._tcp.service.directory."),
            Some(QueryName::Service(vec![reading("orders", None, true)]))
        );
        assert_eq!(
            parse("v2.orders.service.directory."),
            Some(QueryName::Service(vec![
                reading("v2.orders", None, false),
                reading("orders", Some("v2"), false),
            ]))
        );
    }

    #[test]
    fn other_names_are_apex_unknown_or_outside() {
        assert_eq!(parse("directory."), Some(QueryName::Apex));
        for unknown in [
            "service.directory.",
            "x.y.directory.",
            "_x.service.directory.",
            "zz.addr.directory.",
        ] {
            assert_eq!(parse(unknown), Some(QueryName::Unknown), "{unknown}");
        }
        assert_eq!(parse("example.com."), None);
    }

    #[test]
    fn addr_names_round_trip_both_families() {
        let domain: LowerName = "directory.".parse().unwrap();
        for ip in ["10.0.0.7", "2001:db8::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            let name = addr_name(ip, &domain).unwrap();
            assert_eq!(
                QueryName::parse(&LowerName::new(&name), &domain),
                Some(QueryName::Addr(ip))
            );
        }
        assert_eq!(encode_addr("10.0.0.7".parse().unwrap()), "0a000007");
    }
}
