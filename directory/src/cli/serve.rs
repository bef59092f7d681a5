//! `directory serve`: every node knob as a flag with an environment variable.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::dns::{DnsConfig, DnsDomain};
use crate::gossip::{ClusterKey, GossipSettings, Security};
use crate::listener::{HttpLimits, TlsFiles};
use crate::registry::{DEFAULT_NODE_NAME, NodeName, RegistryConfig, ReplicationRules};
use crate::{Config, Server, shutdown_signal};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Options of a directory node. Each default is the embedded default of [`Config`].
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address the HTTP API listens on; port 0 picks a free port (printed in the first log line).
    #[arg(long, env = "DIRECTORY_HTTP_ADDR", default_value = "127.0.0.1:7700")]
    pub http_addr: SocketAddr,
    /// Name of this node, recorded as owner of the instances it accepts; unique per cluster.
    /// Defaults to the host name (lowercased, invalid characters replaced by `-`).
    #[arg(long, env = "DIRECTORY_NODE_NAME", default_value_t = host_node_name())]
    pub node_name: NodeName,
    /// Most live instances accepted; further registrations get 507 capacity_full.
    #[arg(long, env = "DIRECTORY_MAX_INSTANCES", default_value_t = 1_000_000)]
    pub max_instances: usize,
    /// Byte budget of the registry: most estimated bytes of all entries held (names,
    /// address, tags, meta plus a fixed 512 per entry; replicated entries and tombstones
    /// count). Registrations past it get 507 registry_bytes_full; replicated entries past it
    /// are refused, counted and shown by /v1/health. Default 512 MiB.
    #[arg(long, env = "DIRECTORY_MAX_REGISTRY_BYTES", default_value_t = 512 * 1024 * 1024)]
    pub max_registry_bytes: usize,
    /// How long removed instances are remembered as tombstones, on every node; must exceed
    /// the longest lease (1h) plus the lease grace (5s), so a removed instance never returns.
    #[arg(long, env = "DIRECTORY_TOMBSTONE_RETENTION", default_value = "65m")]
    pub tombstone_retention: humantime::Duration,
    /// Largest clock lead accepted from another node: a replicated entry whose version is
    /// further ahead of this node's wall clock is refused (and counted in
    /// directory_replication_clock_ahead_rejected_total); at least 1s.
    #[arg(long, env = "DIRECTORY_MAX_CLOCK_DRIFT", default_value = "1m")]
    pub max_clock_drift: humantime::Duration,
    /// Watch events buffered per watcher (a slower watcher gets a `lagged` event), and the
    /// length of the change history a resumed watch (`Last-Event-ID`, `?index=`) replays
    /// from (an older resume point gets a `reset` event).
    #[arg(long, env = "DIRECTORY_EVENT_BUFFER", default_value = "4096")]
    pub event_buffer: NonZeroUsize,
    /// Cap on the wait of blocking queries (?wait=).
    #[arg(long, env = "DIRECTORY_MAX_WAIT", default_value = "5m")]
    pub max_wait: humantime::Duration,
    /// Wait of a blocking query that gives ?index= without ?wait=.
    #[arg(long, env = "DIRECTORY_DEFAULT_WAIT", default_value = "5m")]
    pub default_wait: humantime::Duration,
    /// Largest request body in bytes; larger bodies get 413.
    #[arg(long, env = "DIRECTORY_BODY_LIMIT", default_value_t = 65_536)]
    pub body_limit: usize,
    /// Interval of keep-alive comments on watch streams (keep it under proxies' idle timeouts).
    #[arg(long, env = "DIRECTORY_SSE_KEEP_ALIVE", default_value = "15s")]
    pub sse_keep_alive: humantime::Duration,
    /// How long shutdown waits for in-flight requests before dropping connections.
    #[arg(long, env = "DIRECTORY_SHUTDOWN_GRACE", default_value = "10s")]
    pub shutdown_grace: humantime::Duration,
    /// Gossip address (UDP for membership, TCP for anti-entropy, same port) when clustering.
    #[arg(long, env = "DIRECTORY_GOSSIP_ADDR", default_value = "127.0.0.1:7701")]
    pub gossip_addr: SocketAddr,
    /// Gossip address other nodes should use to reach this one (NAT, containers); required
    /// when --gossip-addr is 0.0.0.0 or [::]. Defaults to --gossip-addr.
    #[arg(long, env = "DIRECTORY_ADVERTISE_ADDR")]
    pub advertise_addr: Option<SocketAddr>,
    /// Seed node to join, host:port (repeatable, or comma-separated in the environment). A
    /// DNS name may resolve to several nodes (e.g. a Kubernetes headless service). Seeds are
    /// retried until one answers.
    #[arg(long = "join", env = "DIRECTORY_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,
    /// Cluster key: base64 of 32 bytes (`directory keygen`). Encrypts and authenticates all
    /// gossip; enables clustering.
    #[arg(long, env = "DIRECTORY_CLUSTER_KEY", hide_env_values = true)]
    pub cluster_key: Option<ClusterKey>,
    /// Cluster keyring file instead of --cluster-key: one base64 key per line, the first
    /// seals, any opens (`#` comments allowed, at most 8 keys). SIGHUP reloads it: this is
    /// how the key is rotated without downtime (docs/design.md). Enables clustering.
    #[arg(
        long,
        env = "DIRECTORY_CLUSTER_KEYRING",
        conflicts_with = "cluster_key"
    )]
    pub cluster_keyring: Option<PathBuf>,
    /// Enable clustering WITHOUT a cluster key: gossip is neither encrypted nor authenticated,
    /// so anyone who reaches the gossip port can read and inject registrations.
    #[arg(
        long,
        env = "DIRECTORY_INSECURE_NO_CLUSTER_KEY",
        conflicts_with_all = ["cluster_key", "cluster_keyring"]
    )]
    pub insecure_no_cluster_key: bool,
    /// ACL file to enforce on the HTTP API (JSON; create tokens with `directory acl token
    /// create`). Without one the API is open to anyone who reaches it. SIGHUP reloads it.
    #[arg(long, env = "DIRECTORY_ACL_FILE")]
    pub acl_file: Option<PathBuf>,
    /// Longest time a client may take to send a request head (and, with TLS, to finish the
    /// handshake); slower connections are closed. Idle keep-alive connections are closed
    /// after it too.
    #[arg(long, env = "DIRECTORY_HEADER_READ_TIMEOUT", default_value = "10s")]
    pub header_read_timeout: humantime::Duration,
    /// Longest time to answer an ordinary request (503 request_timeout after it); blocking
    /// queries (--max-wait) and watch streams are not limited by it.
    #[arg(long, env = "DIRECTORY_REQUEST_TIMEOUT", default_value = "30s")]
    pub request_timeout: humantime::Duration,
    /// Most HTTP connections open at once; more wait in the kernel's backlog. Each needs a
    /// file descriptor: the node raises its soft open-files limit to the hard one.
    #[arg(long, env = "DIRECTORY_MAX_CONNECTIONS", default_value = "16384")]
    pub max_connections: NonZeroUsize,
    /// Serve the API over HTTPS with this certificate chain (PEM, leaf first); needs
    /// --tls-key. SIGHUP reloads it.
    #[arg(long, env = "DIRECTORY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM).
    #[arg(long, env = "DIRECTORY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA bundle (PEM): mutual TLS.
    #[arg(long, env = "DIRECTORY_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Directory where the registry is persisted (records, tombstones, index; redb) and
    /// restored from at start; registrations and deletions are answered once on disk.
    /// Without it (the default) the registry is in memory only: see docs/design.md for
    /// what a full-cluster restart then loses or brings back.
    #[arg(long, env = "DIRECTORY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Memory budget in bytes of the cache of rendered service lookups (0 disables it).
    #[arg(long, env = "DIRECTORY_LOOKUP_CACHE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub lookup_cache_bytes: usize,
    /// Serve DNS (A, AAAA, SRV of live instances) on this address, UDP and TCP; port 0
    /// picks a free port (logged at start). Off unless given. Port 53 needs privileges
    /// (or CAP_NET_BIND_SERVICE).
    #[arg(long, env = "DIRECTORY_DNS_ADDR")]
    pub dns_addr: Option<SocketAddr>,
    /// Domain the DNS interface answers for: `<service>.service.<domain>`.
    #[arg(long, env = "DIRECTORY_DNS_DOMAIN", default_value = "directory.")]
    pub dns_domain: DnsDomain,
    /// TTL of DNS answers (whole seconds; also how long NXDOMAIN may be cached). Short,
    /// because instances come and go with their leases.
    #[arg(long, env = "DIRECTORY_DNS_TTL", default_value = "5s")]
    pub dns_ttl: humantime::Duration,
    /// Most DNS-over-TCP connections open at once; more wait in the kernel's backlog.
    #[arg(long, env = "DIRECTORY_DNS_MAX_TCP_CONNECTIONS", default_value = "150")]
    pub dns_max_tcp_connections: NonZeroUsize,
    /// Log format.
    #[arg(
        long,
        env = "DIRECTORY_LOG_FORMAT",
        value_enum,
        default_value = "human"
    )]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `directory=debug`).
    #[arg(long, env = "DIRECTORY_LOG", default_value = "info")]
    pub log_filter: String,
}

impl ServeArgs {
    /// The node configuration these options describe.
    pub fn to_config(&self) -> Config {
        let registry = RegistryConfig {
            node: self.node_name.clone(),
            max_instances: self.max_instances,
            max_registry_bytes: self.max_registry_bytes,
            replication: ReplicationRules {
                tombstone_retention: self.tombstone_retention.into(),
                max_clock_drift: self.max_clock_drift.into(),
                ..ReplicationRules::default()
            },
            event_buffer: self.event_buffer,
        };
        Config {
            registry,
            http_addr: self.http_addr,
            max_wait: self.max_wait.into(),
            default_wait: self.default_wait.into(),
            body_limit: self.body_limit,
            sse_keep_alive: self.sse_keep_alive.into(),
            shutdown_grace: self.shutdown_grace.into(),
            lookup_cache_bytes: self.lookup_cache_bytes,
            cluster: self.cluster_settings(),
            acl_file: self.acl_file.clone(),
            http_limits: HttpLimits {
                header_read_timeout: self.header_read_timeout.into(),
                request_timeout: self.request_timeout.into(),
                max_connections: self.max_connections,
            },
            tls: self.tls_files(),
            dns: self.dns_config(),
            data_dir: self.data_dir.clone(),
        }
    }

    fn dns_config(&self) -> Option<DnsConfig> {
        Some(DnsConfig {
            addr: self.dns_addr?,
            domain: self.dns_domain.clone(),
            ttl: self.dns_ttl.into(),
            max_tcp_connections: self.dns_max_tcp_connections,
        })
    }

    fn tls_files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// The cluster settings: `None` (single node) unless a cluster key or the insecure flag
    /// is given.
    fn cluster_settings(&self) -> Option<GossipSettings> {
        let security = match (&self.cluster_key, &self.cluster_keyring) {
            (Some(key), _) => Security::Key(key.clone()),
            (None, Some(path)) => Security::KeyringFile(path.clone()),
            (None, None) if self.insecure_no_cluster_key => Security::Insecure,
            (None, None) => return None,
        };
        Some(GossipSettings {
            bind: self.gossip_addr,
            advertise: self.advertise_addr,
            join: self.join.clone(),
            ..GossipSettings::new(security)
        })
    }

    /// Flags that make no sense together.
    fn check(&self) -> anyhow::Result<()> {
        for seed in &self.join {
            let port = seed
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p != 0) {
                anyhow::bail!(
                    "--join {seed:?} is not host:port (e.g. 10.0.0.5:7701 or directory.ns.svc:7701)"
                );
            }
        }
        if !self.join.is_empty() && self.cluster_settings().is_none() {
            anyhow::bail!(
                "--join needs a cluster key (--cluster-key or --cluster-keyring, see `directory \
                 keygen`) or, to run unencrypted, --insecure-no-cluster-key"
            );
        }
        Ok(())
    }
}

/// The host name as a valid node name (lowercase, `[a-z0-9._-]`, at most 63 characters),
/// or `directory-1` when it cannot be read.
pub fn host_node_name() -> NodeName {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let cleaned: String = raw
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(63)
        .collect();
    NodeName::new(&cleaned)
        .or_else(|_| NodeName::new(DEFAULT_NODE_NAME))
        .unwrap_or_else(|_| unreachable!("the default node name is valid"))
}

/// Runs a node until Ctrl-C or SIGTERM; SIGHUP reloads the ACL file.
pub(super) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format, &args.log_filter)?;
    args.check()?;
    // Installed before the node announces itself, so an early SIGTERM is handled gracefully
    // and an early SIGHUP does not kill the process (its default action).
    let signal = shutdown_signal();
    let mut hangup = Hangup::install()?;
    let server = Server::start(args.to_config()).await?;
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            () = server.cancelled() => break,
            () = hangup.recv() => {
                tracing::info!("SIGHUP received; reloading");
                server.reload().await;
            }
        }
    }
    server.shutdown().await;
    Ok(())
}

/// SIGHUP, on Unix; never fires elsewhere.
struct Hangup {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Hangup {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("cannot listen for SIGHUP")?,
        })
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if self.signal.recv().await.is_some() {
            return;
        }
        std::future::pending::<()>().await;
    }
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_new(filter).with_context(|| format!("invalid --log-filter {filter:?}"))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    let result = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    #[test]
    fn documented_flag_defaults_are_the_embedded_defaults() {
        let cli = Cli::try_parse_from(["directory"]).unwrap();
        let from_flags = cli.serve.to_config();
        let mut embedded = Config::default();
        embedded.registry.node = host_node_name();
        assert_eq!(format!("{from_flags:?}"), format!("{embedded:?}"));
    }

    #[test]
    fn serve_flags_override_defaults_and_bad_values_are_rejected() {
        let cli = Cli::try_parse_from([
            "directory",
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--max-wait",
            "30s",
        ])
        .unwrap();
        let Some(crate::cli::Command::Serve(args)) = cli.command else {
            panic!("expected serve");
        };
        assert_eq!(args.http_addr.port(), 0);
        assert_eq!(
            args.to_config().max_wait,
            std::time::Duration::from_secs(30)
        );
        for bad in [
            &["directory", "--http-addr", "nope"][..],
            &["directory", "--node-name", "Bad Name"],
            &["directory", "--event-buffer", "0"],
            &["directory", "--max-wait", "soon"],
            &["directory", "--log-format", "xml"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
