//! The one tokio task that owns a [`GossipCore`], and its transports: UDP datagrams for
//! membership and dissemination, TCP streams with length-delimited, sealed frames for
//! anti-entropy.
//!
//! The driver task reacts to one input at a time (cancellation first, then commands,
//! datagrams, local writes, anti-entropy frames, the core's deadline) and after each input
//! drains the core's outputs in a fixed order: transmits, entries to apply, events.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::registry::{Entry, NodeName, Registry};

use super::config::GossipConfig;
use super::convert::{to_registry, to_wire};
use super::core::{GossipCore, GossipEvent, MemberView, Transmit};
use super::crypto::{ClusterKey, DropReason, Opener, Sealer};
use super::identity::NodeIdentity;
use super::stream::{initiate_sync, serve_sync};
use super::wire::{MAX_DATAGRAM, SyncMsg};

/// How often seed names are resolved again (DNS may change, e.g. a headless service).
const SEED_RESOLVE_INTERVAL: Duration = Duration::from_secs(5);

/// Whether gossip is encrypted.
#[derive(Clone, Debug)]
pub enum Security {
    /// Every packet and frame sealed with the cluster key.
    Key(ClusterKey),
    /// Plaintext, only when explicitly allowed (`--insecure-no-cluster-key`).
    Insecure,
}

impl Security {
    pub(super) fn key(&self) -> Option<&ClusterKey> {
        match self {
            Self::Key(k) => Some(k),
            Self::Insecure => None,
        }
    }
}

/// Everything needed to start the gossip layer of one node.
#[derive(Clone, Debug)]
pub struct GossipSettings {
    /// UDP and TCP address to bind (`--gossip-addr`).
    pub bind: SocketAddr,
    /// Address other members use to reach us (`--advertise-addr`); defaults to the bound
    /// address, and is required when binding to an unspecified IP.
    pub advertise: Option<SocketAddr>,
    /// Seeds as `host:port` (`--join`, repeatable); names may resolve to several addresses.
    pub join: Vec<String>,
    /// Encryption.
    pub security: Security,
    /// Protocol knobs (`gossip.lease_grace` is the extra time a non-owner keeps a record
    /// past its lease; see docs/design.md).
    pub gossip: GossipConfig,
}

/// Default gossip address (UDP and TCP): loopback, like the HTTP default, so a node started
/// by hand is not exposed until someone decides it should be.
pub const DEFAULT_GOSSIP_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    7701,
));

impl GossipSettings {
    /// Defaults: bind [`DEFAULT_GOSSIP_ADDR`], advertise it, no seeds, LAN preset.
    pub fn new(security: Security) -> Self {
        Self {
            bind: DEFAULT_GOSSIP_ADDR,
            advertise: None,
            join: Vec::new(),
            security,
            gossip: GossipConfig::lan(),
        }
    }

    /// For tests: `127.0.0.1:0` and the test preset (fast anti-entropy and join retries).
    pub fn for_test(security: Security) -> Self {
        Self {
            bind: SocketAddr::V4(std::net::SocketAddrV4::new(
                std::net::Ipv4Addr::LOCALHOST,
                0,
            )),
            gossip: GossipConfig::for_test(),
            ..Self::new(security)
        }
    }
}

/// Why the gossip layer did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GossipStartError {
    /// The UDP or TCP socket could not be bound (address in use, permission). Nothing runs.
    #[error("cannot bind the gossip address {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Bound to an unspecified IP (0.0.0.0 or ::) without an advertise address: peers would
    /// not know where to reach us. Set `--advertise-addr`.
    #[error("gossip bound to {0}; set --advertise-addr to an address peers can reach")]
    NeedAdvertise(SocketAddr),
    /// The gossip settings are inconsistent.
    #[error(transparent)]
    Config(#[from] super::config::GossipConfigError),
}

/// Counters of dropped and handled traffic (also exported to `/metrics`).
#[derive(Debug, Default)]
pub struct GossipCounters {
    /// Datagrams received (before any check).
    pub datagrams_received: AtomicU64,
    /// Datagrams and frames dropped, any reason.
    pub dropped: AtomicU64,
    /// Of those, dropped for failing authentication (wrong key, tampering).
    pub unauthenticated: AtomicU64,
    /// Of those, replays.
    pub replayed: AtomicU64,
    /// Remote entries refused because they did not validate.
    pub invalid_entries: AtomicU64,
    /// Anti-entropy sessions completed (either side).
    pub syncs_completed: AtomicU64,
}

impl GossipCounters {
    pub(super) fn count_drop(&self, reason: DropReason) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        match reason {
            DropReason::Unauthenticated => self.unauthenticated.fetch_add(1, Ordering::Relaxed),
            DropReason::Replayed => self.replayed.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        metrics::counter!("directory_gossip_dropped_packets_total", "reason" => reason.label())
            .increment(1);
    }
}

pub(super) enum Command {
    Members(oneshot::Sender<Vec<MemberView>>),
    Seeds(Vec<SocketAddr>),
    AclHash(Option<[u8; 8]>),
    Sync(SyncMsg, oneshot::Sender<Option<SyncMsg>>),
}

/// A running gossip layer. Dropping it does not stop the task: call [`Self::shutdown`].
pub struct Gossip {
    local_addr: SocketAddr,
    advertise: SocketAddr,
    commands: mpsc::Sender<Command>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    counters: Arc<GossipCounters>,
}

impl Gossip {
    /// Binds the sockets and starts the driver. `writes` is the registry's replication
    /// hook (every local write); remote entries are merged into `registry`.
    pub async fn start(
        settings: GossipSettings,
        registry: Registry,
        writes: mpsc::UnboundedReceiver<Entry>,
    ) -> Result<Self, GossipStartError> {
        settings.gossip.validate()?;
        let (udp, tcp) = bind(settings.bind).await?;
        let local_addr = udp.local_addr().map_err(|source| GossipStartError::Bind {
            addr: settings.bind,
            source,
        })?;
        let advertise = advertise_addr(settings.advertise, local_addr)?;
        if settings.security.key().is_none() {
            tracing::warn!(
                "gossip runs WITHOUT encryption or authentication (--insecure-no-cluster-key)"
            );
        }
        let node = registry.config().node.clone();
        let identity = NodeIdentity::new(advertise, node.as_str(), generation_now());
        let mut gossip = settings.gossip.clone();
        gossip.rng_seed = rand::random();
        let core = GossipCore::new(identity, gossip, Instant::now().into_std())?;
        let (commands_tx, commands_rx) = mpsc::channel(256);
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let counters = Arc::new(GossipCounters::default());
        let udp = Arc::new(udp);
        let driver = Driver {
            core,
            udp: udp.clone(),
            sealer: Sealer::new(settings.security.key()),
            opener: Opener::new(settings.security.key()),
            security: settings.security.clone(),
            registry,
            node,
            lease_grace: settings.gossip.lease_grace,
            counters: counters.clone(),
            commands: commands_tx.clone(),
            tracker: tracker.clone(),
            cancel: cancel.clone(),
        };
        tracker.spawn(driver.run(commands_rx, writes));
        tracker.spawn(serve_sync(
            tcp,
            settings.security.clone(),
            commands_tx.clone(),
            counters.clone(),
            cancel.clone(),
            tracker.clone(),
        ));
        tracker.spawn(resolve_seeds(
            settings.join.clone(),
            commands_tx.clone(),
            cancel.clone(),
        ));
        Ok(Self {
            local_addr,
            advertise,
            commands: commands_tx,
            cancel,
            tracker,
            counters,
        })
    }

    /// The bound gossip address (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address advertised to other members.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.advertise
    }

    /// Traffic counters.
    pub fn counters(&self) -> &GossipCounters {
        &self.counters
    }

    /// Tells the cluster the short hash of the ACL file this node enforces (shown in every
    /// member's view); call at start and after each reload.
    pub async fn set_acl_hash(&self, hash: Option<[u8; 8]>) {
        // An error means the gossip layer has stopped: nobody is left to tell.
        let _ = self.commands.send(Command::AclHash(hash)).await;
    }

    /// Every known member, this node first. Empty once shut down.
    pub async fn members(&self) -> Vec<MemberView> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Members(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Leaves the cluster gracefully (members see this node as "left") and stops every
    /// gossip task.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for Gossip {
    fn drop(&mut self) {
        // Without a graceful `shutdown`, still stop every task (no leave announcement).
        self.cancel.cancel();
    }
}

/// The address other nodes should use: `advertise` if set, else the bound address unless
/// that is a wildcard (which peers cannot dial).
fn advertise_addr(
    advertise: Option<SocketAddr>,
    local_addr: SocketAddr,
) -> Result<SocketAddr, GossipStartError> {
    match advertise {
        Some(a) => Ok(a),
        None if local_addr.ip().is_unspecified() => {
            Err(GossipStartError::NeedAdvertise(local_addr))
        }
        None => Ok(local_addr),
    }
}

/// This incarnation's generation: wall-clock milliseconds, so a restarted node outranks
/// its previous life (0 if the clock reads before 1970).
fn generation_now() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(0)
}

async fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), GossipStartError> {
    let err = |source| GossipStartError::Bind { addr, source };
    // With port 0 the UDP port is picked first; the TCP port must match it, which may
    // fail if another process holds it: try a few times.
    let attempts = if addr.port() == 0 { 8 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(addr).await.map_err(err)?;
        let port = udp.local_addr().map_err(err)?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(err(
        last.unwrap_or_else(|| std::io::Error::other("bind failed"))
    ))
}

struct Driver {
    core: GossipCore,
    udp: Arc<UdpSocket>,
    sealer: Sealer,
    opener: Opener,
    security: Security,
    registry: Registry,
    node: NodeName,
    lease_grace: Duration,
    counters: Arc<GossipCounters>,
    commands: mpsc::Sender<Command>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut writes: mpsc::UnboundedReceiver<Entry>,
    ) {
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        loop {
            let deadline = self.core.poll_timeout().map(Instant::from_std);
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break,
                Some(cmd) = commands.recv() => self.handle_command(cmd),
                res = self.udp.recv_from(&mut buf) => match res {
                    Ok((len, _from)) => self.handle_datagram(&buf[..len]),
                    Err(err) => tracing::debug!(%err, "gossip recv failed"),
                },
                Some(entry) = writes.recv() => {
                    self.core.handle_local_write(now(), to_wire(&entry));
                }
                () = sleep => self.core.handle_timeout(now()),
            }
            self.drain().await;
        }
        self.core.leave(now());
        self.drain().await;
    }

    fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::Members(reply) => {
                let _ = reply.send(self.core.members(now()));
            }
            Command::Seeds(seeds) => self.core.set_seeds(seeds),
            Command::AclHash(hash) => self.core.set_acl_hash(hash),
            Command::Sync(msg, reply) => {
                let _ = reply.send(self.core.handle_sync(now(), msg));
            }
        }
    }

    fn handle_datagram(&mut self, packet: &[u8]) {
        self.counters
            .datagrams_received
            .fetch_add(1, Ordering::Relaxed);
        match self.opener.open(packet, MAX_DATAGRAM) {
            Ok(plain) => {
                if let Err(super::core::DatagramError::Malformed) =
                    self.core.handle_datagram(now(), &plain)
                {
                    self.counters.count_drop(DropReason::Malformed);
                }
            }
            Err(reason) => self.counters.count_drop(reason),
        }
    }

    async fn drain(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            match t {
                Transmit::Datagram { to, payload } => {
                    let packet = self.sealer.seal(&payload);
                    metrics::counter!("directory_gossip_datagrams_sent_total").increment(1);
                    metrics::counter!("directory_gossip_bytes_sent_total")
                        .increment(packet.len() as u64);
                    if let Err(err) = self.udp.send_to(&packet, to).await {
                        tracing::debug!(%err, %to, "gossip send failed");
                    }
                }
                Transmit::Sync { to, msg } => {
                    self.tracker.spawn(initiate_sync(
                        to,
                        msg,
                        self.security.clone(),
                        self.commands.clone(),
                        self.counters.clone(),
                    ));
                }
            }
        }
        while let Some(entry) = self.core.poll_apply() {
            match to_registry(entry, &self.node, self.lease_grace) {
                Ok(entry) => {
                    self.registry.merge_remote(entry, Instant::now());
                    metrics::counter!("directory_gossip_entries_applied_total").increment(1);
                }
                Err(err) => {
                    tracing::warn!(%err, "remote entry refused");
                    self.counters
                        .invalid_entries
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let mut membership_changed = false;
        while let Some(event) = self.core.poll_event() {
            log_event(&event);
            membership_changed = true;
        }
        if membership_changed {
            #[allow(clippy::cast_precision_loss)] // member counts are far below 2^52
            metrics::gauge!("directory_gossip_members_alive")
                .set((self.core.active_members() + 1) as f64);
        }
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

fn log_event(event: &GossipEvent) {
    match event {
        GossipEvent::MemberUp(id) => tracing::info!(member = ?id, "member up"),
        GossipEvent::MemberDown(id) => {
            metrics::counter!("directory_gossip_members_failed_total").increment(1);
            tracing::warn!(member = ?id, "member declared dead");
        }
        GossipEvent::MemberLeft(id) => tracing::info!(member = ?id, "member left"),
        GossipEvent::Joined => tracing::info!("joined the cluster"),
        GossipEvent::Isolated => tracing::warn!("no live member left; retrying seeds"),
        GossipEvent::Rejoined(id) => {
            tracing::warn!(identity = ?id, "rejoined under a new identity")
        }
    }
}

async fn resolve_seeds(
    join: Vec<String>,
    commands: mpsc::Sender<Command>,
    cancel: CancellationToken,
) {
    if join.is_empty() {
        return;
    }
    loop {
        let mut seeds = Vec::new();
        for name in &join {
            match tokio::net::lookup_host(name.as_str()).await {
                Ok(addrs) => seeds.extend(addrs),
                Err(err) => tracing::warn!(seed = %name, %err, "cannot resolve seed"),
            }
        }
        seeds.sort();
        seeds.dedup();
        if commands.send(Command::Seeds(seeds)).await.is_err() {
            return;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(SEED_RESOLVE_INTERVAL) => {}
        }
    }
}
