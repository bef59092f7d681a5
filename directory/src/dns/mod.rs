//! The DNS interface: the registry's live instances as A, AAAA and SRV records, over UDP
//! and TCP (`--dns-addr`, off by default).
//!
//! Layout:
//! - `config` — [`DnsConfig`] (address, domain, TTL) and [`DnsDomain`];
//! - `names` — what a query name asks for (service, tag, RFC 2782 form, address target);
//! - `answer` — [`answer`], the response as a pure function of the question and a
//!   [`Catalog`] (the registry as the asker may read it): testable without sockets;
//! - `server` — [`DnsServer`]: hickory-server's UDP listener around [`DnsHandler`], which
//!   calls `answer`; `tcp` — our DNS-over-TCP accept loop (capped connections, idle
//!   timeout) around the same handler.
//!
//! Access: DNS carries no token, so with an ACL file the anonymous rules decide what is
//! visible; a service they may not read answers NXDOMAIN, as an unknown one does.

mod answer;
mod config;
mod names;
mod server;
mod tcp;

pub use answer::{Answer, Catalog, ReadableCatalog, Zone, answer};
pub use config::{
    DEFAULT_DNS_DOMAIN, DEFAULT_DNS_MAX_TCP_CONNECTIONS, DEFAULT_DNS_TTL, DNS_TCP_IDLE_TIMEOUT,
    DnsConfig, DnsDomain, DnsDomainError,
};
pub use server::{DnsHandler, DnsServer, DnsStartError, MAX_UDP_PAYLOAD};
