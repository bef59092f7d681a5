//! The driver loop: the one tokio task that owns a [`GossipCore`] and moves its bytes and
//! time. UDP datagrams carry membership and dissemination; anti-entropy runs over the
//! stream transport (`stream`), whose sessions hand each frame to this loop.
//!
//! The loop reacts to one input at a time (cancellation first, then commands, datagrams,
//! local writes, the core's deadline) and after each input drains the core's outputs in a
//! fixed order: transmits, entries to apply, events.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::registry::{
    Entry, MergeOutcome, NodeName, Now, Registry, ReplicationRules, count_from_the_future,
    unix_millis,
};

use super::command::Command;
use super::contact::ClusterContact;
use super::convert::{to_registry, to_wire};
use super::crypto::{DropReason, Opener, Sealer};
use super::keyring::Keyring;
use super::proto::wire::MAX_DATAGRAM;
use super::proto::{DatagramError, GossipCore, GossipEvent, Transmit};
use super::settings::GossipCounters;
use super::stream::initiate_sync;

/// The loop's state: the core, the socket, the envelope and where remote entries go.
/// Built by [`super::Gossip::start`].
pub(super) struct Driver {
    pub(super) core: GossipCore,
    pub(super) udp: Arc<UdpSocket>,
    pub(super) sealer: Sealer,
    pub(super) opener: Opener,
    /// The keys of anti-entropy sessions (`None`: plaintext), shared with the envelope.
    pub(super) keys: Option<Keyring>,
    pub(super) registry: Registry,
    pub(super) node: NodeName,
    pub(super) rules: ReplicationRules,
    pub(super) counters: Arc<GossipCounters>,
    pub(super) contact: Arc<ClusterContact>,
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) tracker: TaskTracker,
    pub(super) cancel: CancellationToken,
    /// The core's `from_the_future` count already exported.
    pub(super) future_exported: u64,
}

impl Driver {
    /// Runs until cancelled, then leaves the cluster and drains the last outputs.
    pub(super) async fn run(
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
                () = sleep => {
                    let now = now();
                    self.core.handle_wall_clock(now, wall_millis());
                    self.core.handle_timeout(now);
                }
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
                self.contact.handle_contact(Instant::now());
                let _ = reply.send(self.core.handle_sync(now(), msg));
            }
        }
    }

    fn handle_datagram(&mut self, packet: &[u8]) {
        self.counters
            .datagrams_received
            .fetch_add(1, Ordering::Relaxed);
        metrics::counter!("directory_gossip_datagrams_received_total").increment(1);
        metrics::counter!("directory_gossip_bytes_received_total").increment(packet.len() as u64);
        match self.opener.open(packet, MAX_DATAGRAM) {
            Ok(plain) => match self.core.handle_datagram(now(), &plain) {
                Ok(()) => self.contact.handle_contact(Instant::now()),
                Err(DatagramError::Malformed) => self.counters.count_drop(DropReason::Malformed),
                Err(DatagramError::Swim) => {}
            },
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
                        self.keys.clone(),
                        self.commands.clone(),
                        self.counters.clone(),
                    ));
                }
            }
        }
        while let Some(entry) = self.core.poll_apply() {
            let key = entry.key.clone();
            match to_registry(entry, &self.node, &self.rules) {
                Ok(entry) => match self.registry.merge_remote(entry, Now::current()) {
                    MergeOutcome::Applied => {
                        metrics::counter!("directory_gossip_entries_applied_total").increment(1);
                    }
                    // Counted and logged by the registry itself; the replica lets go of it
                    // too, or it would hold what the byte budget keeps out of the store.
                    MergeOutcome::Refused => self.core.handle_refused(&key),
                    MergeOutcome::Stale | MergeOutcome::FromTheFuture => {}
                },
                Err(err) => {
                    tracing::warn!(%err, "remote entry refused");
                    self.counters
                        .invalid_entries
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.counters
            .replica_entries
            .store(self.core.replica().len() as u64, Ordering::Relaxed);
        self.export_clock_rejections();
        self.contact.handle_members(self.core.active_members());
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

impl Driver {
    /// Exports remote entries the core refused for a clock too far ahead, and warns.
    fn export_clock_rejections(&mut self) {
        let total = self.core.stats().from_the_future;
        let new = total.saturating_sub(self.future_exported);
        if new == 0 {
            return;
        }
        self.future_exported = total;
        self.counters
            .clock_ahead_rejected
            .fetch_add(new, Ordering::Relaxed);
        for _ in 0..new {
            count_from_the_future();
        }
        tracing::warn!(
            refused = new,
            "remote entries refused: their clock is more than --max-clock-drift ahead of ours"
        );
    }
}

/// The wall clock in Unix milliseconds.
pub(super) fn wall_millis() -> u64 {
    unix_millis(std::time::SystemTime::now())
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
        GossipEvent::Alone => tracing::info!("every other member left; retrying seeds"),
        GossipEvent::Rejoined(id) => {
            tracing::warn!(identity = ?id, "rejoined under a new identity")
        }
    }
}
