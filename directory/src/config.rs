//! Every knob of a directory node, with its default and why.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use crate::dns::DnsConfig;
use crate::gossip::GossipSettings;
use crate::listener::{HttpLimits, TlsFiles};
use crate::registry::RegistryConfig;

/// Default HTTP listen address: loopback only, so a node started by hand is not exposed
/// to the network until someone decides it should be.
pub const DEFAULT_HTTP_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7700));
/// Default longest blocking query (Consul's limit too): long enough to make polling cheap,
/// short enough that proxies and load balancers do not cut the request first.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(300);
/// Default wait of a blocking query that gives `?index=` but no `?wait=`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Default largest accepted request body (64 KiB): a registration with the maximum 64 tags
/// and 64 meta values of 1 KiB would not fit, but realistic ones fit many times over, and a
/// small cap keeps a flood of large bodies from eating memory. Larger bodies get 413.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
/// Default interval of SSE keep-alive comments, below common idle timeouts of proxies (30-60 s).
pub const DEFAULT_SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Default memory budget of the rendered-lookup cache (16 MiB): unfiltered service lookups
/// are served from JSON rendered once per change, which saves the serialization on the hot
/// path; 16 MiB holds the hot set of most deployments (about 50,000 instances' worth) while
/// keeping a node with 100,000 instances under 100 MB. Services beyond the budget are
/// rendered per request.
pub const DEFAULT_LOOKUP_CACHE_BYTES: usize = 16 * 1024 * 1024;
/// Default grace period for in-flight requests at shutdown before connections are dropped.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Configuration of one directory node. `Config::default()` is the embedded configuration a
/// node starts with when nothing is given; every field is also a CLI flag and environment
/// variable of the `directory` binary.
#[derive(Debug, Clone)]
pub struct Config {
    /// The store's knobs: node name, capacity, watch buffer and the replication rules
    /// (tombstone retention, lease grace). Default [`RegistryConfig::default`].
    pub registry: RegistryConfig,
    /// Address the HTTP API listens on. Port 0 picks a free port ([`crate::Server::http_addr`]
    /// tells which). Default [`DEFAULT_HTTP_ADDR`].
    pub http_addr: SocketAddr,
    /// Cap on `?wait=` of blocking queries; longer requested waits are shortened to it.
    /// Default [`DEFAULT_MAX_WAIT`].
    pub max_wait: Duration,
    /// Wait of a blocking query without `?wait=`. Default [`DEFAULT_WAIT`]; capped by `max_wait`.
    pub default_wait: Duration,
    /// Largest request body in bytes; larger get 413. Default [`DEFAULT_BODY_LIMIT`].
    pub body_limit: usize,
    /// Interval of keep-alive comments on watch streams. Default [`DEFAULT_SSE_KEEP_ALIVE`].
    pub sse_keep_alive: Duration,
    /// How long shutdown waits for in-flight requests. Default [`DEFAULT_SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
    /// Memory budget in bytes of the rendered-lookup cache (0 disables it); approximate
    /// under concurrent fills. Default [`DEFAULT_LOOKUP_CACHE_BYTES`].
    pub lookup_cache_bytes: usize,
    /// Cluster membership and replication. `None` (the default) runs a single node without
    /// gossip; `Some` joins a cluster (see [`GossipSettings`] for each knob).
    pub cluster: Option<GossipSettings>,
    /// ACL file enforced on the HTTP API (format in [`crate::acl::AclFile`]). `None` (the
    /// default) leaves the API open to anyone who can reach it, and the node warns at start.
    pub acl_file: Option<PathBuf>,
    /// Limits of the HTTP listener (header-read and request timeouts, connection cap).
    /// Default [`HttpLimits::default`].
    pub http_limits: HttpLimits,
    /// Serve the API over HTTPS with these PEM files (optionally requiring client
    /// certificates). `None` (the default): plain HTTP.
    pub tls: Option<TlsFiles>,
    /// The DNS interface (A, AAAA, SRV over UDP and TCP). `None` (the default) serves no
    /// DNS: a node opens no port it was not asked to.
    pub dns: Option<DnsConfig>,
    /// Directory where the registry (records, tombstones, change index, clock) is persisted
    /// and restored from at start (see [`crate::persist`]). `None` (the default): the
    /// registry lives in memory only and a node restarts empty.
    pub data_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            registry: RegistryConfig::default(),
            http_addr: DEFAULT_HTTP_ADDR,
            max_wait: DEFAULT_MAX_WAIT,
            default_wait: DEFAULT_WAIT,
            body_limit: DEFAULT_BODY_LIMIT,
            sse_keep_alive: DEFAULT_SSE_KEEP_ALIVE,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            lookup_cache_bytes: DEFAULT_LOOKUP_CACHE_BYTES,
            cluster: None,
            acl_file: None,
            http_limits: HttpLimits::default(),
            tls: None,
            dns: None,
            data_dir: None,
        }
    }
}

impl Config {
    /// For tests: the defaults with every listener on `127.0.0.1:0` and short intervals.
    pub fn for_test() -> Self {
        Self {
            registry: RegistryConfig::for_test(),
            http_addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)),
            sse_keep_alive: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(2),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::DEFAULT_NODE_NAME;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:7700");
        assert_eq!(c.registry.node.as_str(), DEFAULT_NODE_NAME);
        assert_eq!(c.body_limit, 65_536);
        assert_eq!(c.max_wait, Duration::from_secs(300));
        assert_eq!(Config::for_test().http_addr.port(), 0);
    }
}
