//! The answer to one DNS question: a pure function of the question, the zone settings and
//! a [`Catalog`] (the registry as the asker may see it). No sockets, no clock.
//!
//! - A/AAAA on a service name: the instances registered with an IPv4/IPv6 address
//!   (instances registered under a host name appear only in SRV answers).
//! - SRV: one record per instance (priority 1, weight 1, its port); the target is the
//!   instance's `<hex>.addr.<domain>` name, with its A/AAAA in the additional section, or
//!   its host name as registered.
//! - Instances registered through the Consul API whose TTL check is critical are left out,
//!   as Consul's DNS does (their lease may outlive the check by
//!   `DeregisterCriticalServiceAfter`).
//! - A service without live (readable) instances, or any other name under the domain that
//!   names nothing: NXDOMAIN, with the SOA whose minimum is the TTL (negative caching).
//! - A known name with no records of the asked type: NOERROR and no answers (NODATA).
//! - A name outside the domain: REFUSED (the node is no recursive resolver).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::names::{QueryName, ServiceQuery, addr_name};
use crate::acl::Access;
use crate::registry::{CheckStatus, status_at};
use crate::registry::{Filter, Record as Instance, Registry, ServiceName};

/// Live instances as the asker may see them.
pub trait Catalog {
    /// The live instances of `service` passing `filter` (sorted by instance id); empty when
    /// the service is unknown or may not be read.
    fn instances(&self, service: &ServiceName, filter: &Filter) -> Vec<Arc<Instance>>;
}

/// The registry as one request may read it at one time: services its access may not read
/// look unknown, instances whose Consul TTL check is critical at `now` are left out.
pub struct ReadableCatalog<'a> {
    /// The node's registry.
    pub registry: &'a Registry,
    /// What the asker may read.
    pub access: &'a Access,
    /// Wall-clock time of the question (the check status depends on it).
    pub now: SystemTime,
}

impl Catalog for ReadableCatalog<'_> {
    fn instances(&self, service: &ServiceName, filter: &Filter) -> Vec<Arc<Instance>> {
        if !self.access.can_read(service.as_str()) {
            return Vec::new();
        }
        let mut instances = self.registry.lookup(service, filter).instances;
        instances.retain(|i| status_at(i, self.now).0 != CheckStatus::Critical);
        instances
    }
}

/// The zone settings an answer depends on.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The domain answered for.
    pub domain: LowerName,
    /// TTL of every record, and the SOA minimum.
    pub ttl: u32,
}

/// A response, before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// NOERROR, NXDOMAIN or REFUSED.
    pub code: ResponseCode,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section (the SOA of negative answers).
    pub authority: Vec<Record>,
    /// The additional section (addresses of SRV targets).
    pub additionals: Vec<Record>,
}

impl Answer {
    pub(super) fn code(code: ResponseCode) -> Self {
        Self {
            code,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

/// The answer to `name`/`qtype` from `catalog`.
pub fn answer(name: &LowerName, qtype: RecordType, zone: &Zone, catalog: &impl Catalog) -> Answer {
    let Some(query) = QueryName::parse(name, &zone.domain) else {
        return Answer::code(ResponseCode::Refused);
    };
    let mut answer = match &query {
        QueryName::Apex => apex(qtype, zone),
        QueryName::Addr(ip) => addresses(name, qtype, [*ip], zone),
        QueryName::Service(_) => match first_known(query.candidates(), catalog) {
            Some((q, found)) => service(name, qtype, q, &found, zone),
            None => Answer::code(ResponseCode::NXDomain),
        },
        QueryName::Unknown => Answer::code(ResponseCode::NXDomain),
    };
    if answer.answers.is_empty() {
        answer.authority.push(soa(zone));
    }
    answer
}

/// The first reading with live instances, and those instances.
fn first_known<'q>(
    readings: &'q [ServiceQuery],
    catalog: &impl Catalog,
) -> Option<(&'q ServiceQuery, Vec<Arc<Instance>>)> {
    readings.iter().find_map(|q| {
        let filter = Filter {
            tags: q.tag.iter().cloned().collect(),
            meta: Vec::new(),
        };
        let found = catalog.instances(&q.service, &filter);
        (!found.is_empty()).then_some((q, found))
    })
}

fn apex(qtype: RecordType, zone: &Zone) -> Answer {
    let mut answer = Answer::code(ResponseCode::NoError);
    if matches!(qtype, RecordType::SOA | RecordType::ANY) {
        answer.answers.push(soa(zone));
    }
    answer
}

fn service(
    name: &LowerName,
    qtype: RecordType,
    query: &ServiceQuery,
    found: &[Arc<Instance>],
    zone: &Zone,
) -> Answer {
    let wants_srv = matches!(qtype, RecordType::SRV | RecordType::ANY);
    if wants_srv {
        return srv(name, found, zone);
    }
    if query.srv_only {
        return Answer::code(ResponseCode::NoError);
    }
    addresses(name, qtype, found.iter().filter_map(|i| ip_of(i)), zone)
}

/// A/AAAA records of `ips` that match `qtype` (both for ANY), without duplicates.
fn addresses(
    name: &LowerName,
    qtype: RecordType,
    ips: impl IntoIterator<Item = IpAddr>,
    zone: &Zone,
) -> Answer {
    let mut seen = Vec::new();
    let mut answer = Answer::code(ResponseCode::NoError);
    for ip in ips {
        let wanted = match ip {
            IpAddr::V4(_) => matches!(qtype, RecordType::A | RecordType::ANY),
            IpAddr::V6(_) => matches!(qtype, RecordType::AAAA | RecordType::ANY),
        };
        if wanted && !seen.contains(&ip) {
            seen.push(ip);
            answer
                .answers
                .push(address_record(plain(name), ip, zone.ttl));
        }
    }
    answer
}

fn srv(name: &LowerName, found: &[Arc<Instance>], zone: &Zone) -> Answer {
    let mut answer = Answer::code(ResponseCode::NoError);
    for instance in found {
        let (target, ip) = match ip_of(instance) {
            Some(ip) => (addr_name(ip, &zone.domain), Some(ip)),
            None => (host_name(instance.address.host()), None),
        };
        let Some(target) = target else { continue };
        let rdata = SRV::new(1, 1, instance.address.port(), target.clone());
        answer
            .answers
            .push(record(plain(name), zone.ttl, RData::SRV(rdata)));
        if let Some(ip) = ip {
            answer
                .additionals
                .push(address_record(target, ip, zone.ttl));
        }
    }
    answer
}

fn ip_of(instance: &Instance) -> Option<IpAddr> {
    instance.address.host().parse().ok()
}

fn host_name(host: &str) -> Option<Name> {
    let mut name = Name::from_ascii(host).ok()?;
    name.set_fqdn(true);
    Some(name)
}

fn address_record(name: Name, ip: IpAddr, ttl: u32) -> Record {
    let rdata = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    record(name, ttl, rdata)
}

fn soa(zone: &Zone) -> Record {
    let origin = plain(&zone.domain);
    let label = |l: &str| Name::from_labels([l.as_bytes()]).and_then(|n| n.append_name(&origin));
    // Safe fallback: `ns`/`hostmaster` under a valid domain only fail past 255 bytes.
    let mname = label("ns").unwrap_or_else(|_| origin.clone());
    let rname = label("hostmaster").unwrap_or_else(|_| origin.clone());
    let ttl = i32::try_from(zone.ttl).unwrap_or(i32::MAX);
    let rdata = SOA::new(mname, rname, 1, ttl, ttl, ttl, zone.ttl);
    record(origin, zone.ttl, RData::SOA(rdata))
}

fn plain(name: &LowerName) -> Name {
    Name::from(name.clone())
}

fn record(name: Name, ttl: u32, rdata: RData) -> Record {
    Record::from_rdata(name, ttl, rdata)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Address, InstanceId, Meta, Now, Registration, RegistryConfig, Tags};
    use crate::registry::{CHECK_TTL_META, STATUS_META};

    fn zone() -> Zone {
        Zone {
            domain: "directory.".parse().unwrap(),
            ttl: 5,
        }
    }

    fn registry(instances: &[(&str, &str, &str, &[&str])]) -> Registry {
        let registry = Registry::new(RegistryConfig::for_test());
        add(&registry, instances, &[]);
        registry
    }

    fn add(registry: &Registry, instances: &[(&str, &str, &str, &[&str])], meta: &[(&str, &str)]) {
        for (service, instance, address, tags) in instances {
            let mut registration = Registration::new(Address::new(address).unwrap());
            registration.tags = Tags::new(tags.iter().map(|t| t.to_string()).collect()).unwrap();
            let meta = meta.iter().map(|(k, v)| (k.to_string(), v.to_string()));
            registration.meta = Meta::new(meta.collect()).unwrap();
            let (service, instance) = (
                ServiceName::new(service).unwrap(),
                InstanceId::new(instance).unwrap(),
            );
            registry
                .register(&service, &instance, registration, Now::current())
                .unwrap();
        }
    }

    fn ask(registry: &Registry, access: &Access, name: &str, qtype: RecordType) -> Answer {
        let now = SystemTime::now();
        let catalog = ReadableCatalog {
            registry,
            access,
            now,
        };
        answer(&name.parse().unwrap(), qtype, &zone(), &catalog)
    }

    fn rdata(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| r.data.to_string()).collect()
    }

    fn sample() -> Registry {
        registry(&[
            ("web", "w1", "10.0.0.1:80", &["v2"]),
            ("web", "w2", "10.0.0.2:8080", &[]),
            ("web", "w3", "[2001:db8::1]:80", &["v2"]),
            ("web", "w4", "web.example.com:443", &[]),
            ("web", "w5", "10.0.0.1:81", &[]),
        ])
    }

    #[test]
    fn a_and_aaaa_answer_the_ip_instances_of_a_service_once_each() {
        let registry = sample();
        let open = Access::open();
        let a = ask(&registry, &open, "web.service.directory.", RecordType::A);
        assert_eq!(a.code, ResponseCode::NoError);
        assert_eq!(rdata(&a.answers), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(a.answers[0].ttl, 5);
        let aaaa = ask(&registry, &open, "WEB.service.directory.", RecordType::AAAA);
        assert_eq!(rdata(&aaaa.answers), ["2001:db8::1"]);
        let tagged = ask(&registry, &open, "v2.web.service.directory.", RecordType::A);
        assert_eq!(rdata(&tagged.answers), ["10.0.0.1"]);
    }

    #[test]
    fn srv_names_each_instance_with_its_port_and_the_target_address_as_additional() {
        let registry = sample();
        let srv = ask(
            &registry,
            &Access::open(),
            "_web._tcp.service.directory.",
            RecordType::SRV,
        );
        assert_eq!(
            rdata(&srv.answers),
            [
                "1 1 80 0a000001.addr.directory.",
                "1 1 8080 0a000002.addr.directory.",
                "1 1 80 20010db8000000000000000000000001.addr.directory.",
                "1 1 443 web.example.com.",
                "1 1 81 0a000001.addr.directory.",
            ]
        );
        assert_eq!(srv.additionals.len(), 4);
        assert_eq!(
            srv.additionals[0].name.to_string(),
            "0a000001.addr.directory."
        );
        let tagged = ask(
            &registry,
            &Access::open(),
            "v2.web.service.directory.",
            RecordType::SRV,
        );
        assert_eq!(tagged.answers.len(), 2);
        let addr = ask(
            &registry,
            &Access::open(),
            "0a000002.addr.directory.",
            RecordType::A,
        );
        assert_eq!(rdata(&addr.answers), ["10.0.0.2"]);
    }

    #[test]
    fn unknown_expired_and_unreadable_services_are_nxdomain_with_the_soa() {
        let registry = sample();
        let open = Access::open();
        for name in [
            "nope.service.directory.",
            "v9.web.service.directory.",
            "x.directory.",
        ] {
            let answer = ask(&registry, &open, name, RecordType::A);
            assert_eq!(answer.code, ResponseCode::NXDomain, "{name}");
            assert!(answer.answers.is_empty());
            assert_eq!(answer.authority[0].record_type(), RecordType::SOA);
        }
        let anonymous = Access::anonymous(Arc::new(crate::acl::RuleSet::new(Vec::new())));
        let hidden = ask(
            &registry,
            &anonymous,
            "web.service.directory.",
            RecordType::A,
        );
        assert_eq!(hidden.code, ResponseCode::NXDomain);
    }

    #[test]
    fn instances_whose_consul_check_is_critical_are_left_out() {
        let registry = sample();
        let check = |status| [(CHECK_TTL_META, "30s"), (STATUS_META, status)];
        add(
            &registry,
            &[("web", "w6", "10.0.0.6:80", &[])],
            &check("critical"),
        );
        add(
            &registry,
            &[("web", "w7", "10.0.0.7:80", &[])],
            &check("passing"),
        );
        add(
            &registry,
            &[("db", "d1", "10.0.1.1:5432", &[])],
            &check("critical"),
        );
        let open = Access::open();
        let a = ask(&registry, &open, "web.service.directory.", RecordType::A);
        assert_eq!(rdata(&a.answers), ["10.0.0.1", "10.0.0.2", "10.0.0.7"]);
        let db = ask(&registry, &open, "db.service.directory.", RecordType::A);
        assert_eq!(db.code, ResponseCode::NXDomain);
    }

    #[test]
    fn other_types_get_nodata_and_other_domains_are_refused() {
        let registry = sample();
        let open = Access::open();
        let txt = ask(&registry, &open, "web.service.directory.", RecordType::TXT);
        assert_eq!((txt.code, txt.answers.len()), (ResponseCode::NoError, 0));
        let srv_only = ask(
            &registry,
            &open,
            "_web._tcp.service.directory.",
            RecordType::A,
        );
        assert_eq!(
            (srv_only.code, srv_only.answers.len()),
            (ResponseCode::NoError, 0)
        );
        let soa = ask(&registry, &open, "directory.", RecordType::SOA);
        assert_eq!(soa.answers[0].record_type(), RecordType::SOA);
        let outside = ask(&registry, &open, "example.com.", RecordType::A);
        assert_eq!(outside.code, ResponseCode::Refused);
    }

    proptest::proptest! {
        /// Any name a packet can carry, under the domain or not, with any type, gets an
        /// answer without a panic, and every answer record is named under the domain or is
        /// the asked name.
        #[test]
        fn any_name_and_type_gets_an_answer_without_panicking(
            labels in proptest::collection::vec("[a-z0-9_.-]{1,20}", 0..6),
            under_domain in proptest::bool::ANY,
            qtype in 0u16..300,
        ) {
            let registry = sample();
            let mut text = labels.join(".");
            if under_domain {
                text.push_str(".service.directory.");
            }
            let Ok(name) = text.parse::<LowerName>() else { return Ok(()) };
            let catalog = ReadableCatalog {
                registry: &registry,
                access: &Access::open(),
                now: SystemTime::now(),
            };
            let answer = answer(&name, RecordType::from(qtype), &zone(), &catalog);
            for record in &answer.answers {
                proptest::prop_assert!(LowerName::new(&record.name) == name
                    || zone().domain.zone_of(&LowerName::new(&record.name)));
            }
        }
    }
}
