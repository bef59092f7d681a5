//! [`Gossip`]: the public handle of a node's gossip layer. Starting it binds the sockets and
//! spawns the driver loop, the anti-entropy listener and the seed resolver; the handle asks
//! the loop for the member list and shuts everything down.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::registry::{Entry, Registry};

use super::command::Command;
use super::contact::ClusterContact;
use super::convert::to_wire;
use super::crypto::{Opener, Sealer};
use super::driver::Driver;
use super::keyring::{Keyring, KeyringError, Keys};
use super::proto::{GossipCore, MemberView, NodeIdentity};
use super::seeds::resolve_seeds;
use super::settings::{GossipCounters, GossipSettings, GossipStartError};
use super::stream::serve_sync;

/// A running gossip layer. Dropping it does not stop the task: call [`Self::shutdown`].
pub struct Gossip {
    local_addr: SocketAddr,
    advertise: SocketAddr,
    commands: mpsc::Sender<Command>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    counters: Arc<GossipCounters>,
    keyring: Option<Keyring>,
    contact: Arc<ClusterContact>,
}

impl Gossip {
    /// Binds the sockets and starts the driver. `writes` is the registry's replication
    /// hook (every local write); remote entries are merged into `registry`.
    pub async fn start(
        settings: GossipSettings,
        registry: Registry,
        mut writes: mpsc::UnboundedReceiver<Entry>,
    ) -> Result<Self, GossipStartError> {
        settings.gossip.validate()?;
        let (udp, tcp) = bind(settings.bind).await?;
        let local_addr = udp.local_addr().map_err(|source| GossipStartError::Bind {
            addr: settings.bind,
            source,
        })?;
        let advertise = advertise_addr(settings.advertise, local_addr)?;
        let keyring = start_keyring(&settings)?;
        let node = registry.config().node.clone();
        let rules = registry.config().replication;
        let identity = NodeIdentity::new(advertise, node.as_str(), generation_now());
        let mut gossip = settings.gossip.clone();
        gossip.rng_seed = rand::random();
        let now = Instant::now().into_std();
        let mut core = GossipCore::new(identity, gossip, rules, now, super::driver::wall_millis())?;
        // What the registry restored from its data directory is held before any remote
        // copy arrives, so the owner-generation rule never buries a restored record.
        while let Ok(entry) = writes.try_recv() {
            core.handle_local_write(now, to_wire(&entry));
        }
        let (commands_tx, commands_rx) = mpsc::channel(256);
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let counters = Arc::new(GossipCounters::default());
        let contact = Arc::new(ClusterContact::clustered(Instant::now()));
        let udp = Arc::new(udp);
        let driver = Driver {
            core,
            udp: udp.clone(),
            sealer: Sealer::new(keyring.clone()),
            opener: Opener::new(keyring.clone()),
            keys: keyring.clone(),
            registry,
            node,
            rules,
            counters: counters.clone(),
            contact: contact.clone(),
            commands: commands_tx.clone(),
            tracker: tracker.clone(),
            cancel: cancel.clone(),
            future_exported: 0,
        };
        tracker.spawn(driver.run(commands_rx, writes));
        tracker.spawn(serve_sync(
            tcp,
            keyring.clone(),
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
            keyring,
            contact,
        })
    }

    /// Reads the keyring file (`--cluster-keyring`) again and puts its keys in force for
    /// the next packet; what SIGHUP does. `Ok(None)` when the node has no keyring file; on
    /// error the previous keys stay in force.
    pub fn reload_keyring(&self) -> Result<Option<Keys>, KeyringError> {
        match &self.keyring {
            Some(ring) if ring.path().is_some() => ring.reload().map(Some),
            _ => Ok(None),
        }
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

    /// When this node last heard from another member, and whether it sees itself isolated.
    pub fn contact(&self) -> &Arc<ClusterContact> {
        &self.contact
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

/// Loads the starting keys and says how gossip is protected.
fn start_keyring(settings: &GossipSettings) -> Result<Option<Keyring>, GossipStartError> {
    match settings.security.keyring()? {
        Some((ring, keys)) => {
            tracing::info!(primary_key = %keys.primary_id(), keys = keys.len(), "gossip keyring loaded");
            Ok(Some(ring))
        }
        None => {
            tracing::warn!(
                "gossip runs WITHOUT encryption or authentication (--insecure-no-cluster-key)"
            );
            Ok(None)
        }
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
