//! What the core asks the store to do (durable peers), and what waits for it.
//!
//! The core numbers its writes. An output that must not be seen before a write is durable
//! (a message's acceptance, a receiver's ack or reply) is held with that write's number
//! and released by [`super::Core::handle_persisted`] once the driver reports that every
//! write up to it is committed. Reads (`Load`, `Lookup`) are answered by
//! [`super::Core::handle_loaded`] and [`super::Core::handle_lookup`].

use super::{DeadLetter, LinkId, SendRequest, Transmit};
use bytes::Bytes;
use std::collections::VecDeque;

/// Fixed per-message overhead counted against the store quota (record header, keys,
/// deadline, index entries), on top of the variable-length fields.
pub const MESSAGE_OVERHEAD: u64 = 64;

/// The quota cost of a message: its service name, ordering key and payload, plus
/// [`MESSAGE_OVERHEAD`]. The one definition used by the core, the peer and the store.
pub fn message_cost(service_len: usize, key_len: usize, payload_len: usize) -> u64 {
    (service_len + key_len + payload_len) as u64 + MESSAGE_OVERHEAD
}

/// A store operation; the driver executes them in the order they are polled. `Put`,
/// `Attempted`, `Resolve` and `Complete` are writes (numbered from 1 in the order they are
/// polled, see [`StoreOp::is_write`]); `Load` and `Lookup` are reads that see every write
/// polled before them.
#[derive(Debug, Clone)]
pub enum StoreOp {
    /// Persist newly accepted message `id`.
    Put {
        /// Message id.
        id: u64,
        /// The message.
        req: SendRequest,
    },
    /// Attempt `attempts` of message `id` of `service` failed and it will be retried:
    /// record the count, so that after a restart the message keeps counting towards its
    /// maximum (a first attempt is not written: one write per message on the fast path, so
    /// after a crash the stored count can be one short).
    Attempted {
        /// Destination service.
        service: String,
        /// Message id.
        id: u64,
        /// Attempts made so far.
        attempts: u32,
    },
    /// Message `id` of `service` is resolved: delete it; with a dead letter, keep that.
    Resolve {
        /// Destination service.
        service: String,
        /// Message id.
        id: u64,
        /// The dead letter to keep, if it was given up.
        dead: Option<Box<DeadLetter>>,
    },
    /// Receiver: the delivery (`session`, `id`) was handled; `reply` for a request.
    Complete {
        /// Sender session.
        session: u64,
        /// Message id.
        id: u64,
        /// Reply of a request.
        reply: Option<Bytes>,
    },
    /// Read up to `max` outbox messages of `service` with an id above `after`, in id order.
    Load {
        /// Destination service.
        service: String,
        /// Exclusive lower bound of the ids.
        after: u64,
        /// Most messages to return.
        max: usize,
    },
    /// Receiver: is (`session`, `id`) recorded as handled?
    Lookup {
        /// Sender session.
        session: u64,
        /// Message id.
        id: u64,
    },
}

impl StoreOp {
    /// Whether this operation is a numbered write (the rest are reads).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Self::Put { .. }
                | Self::Attempted { .. }
                | Self::Resolve { .. }
                | Self::Complete { .. }
        )
    }
}

/// A message read back from the store ([`StoreOp::Load`]'s answer).
#[derive(Debug, Clone)]
pub struct LoadedMessage {
    /// Message id.
    pub id: u64,
    /// The message, with its persisted per-message options.
    pub req: SendRequest,
    /// Attempts recorded before the restart (see [`StoreOp::Attempted`]).
    pub attempts: u32,
}

/// An output held until a write is durable.
#[derive(Debug)]
pub(super) enum Gated {
    /// Report the acceptance of a message.
    Accepted(u64),
    /// Acknowledge a one-way delivery on a link.
    Ack(LinkId, u64),
    /// Send a frame (a reply).
    Transmit(Transmit),
}

/// Store operations to execute and outputs waiting for them.
#[derive(Debug)]
pub(super) struct Persist {
    pub(super) durable: bool,
    ops: VecDeque<StoreOp>,
    writes: u64,
    committed: u64,
    gated: VecDeque<(u64, Gated)>,
    /// Quota bytes of messages resolved since the last [`super::Core::take_freed`].
    pub(super) freed: u64,
}

impl Persist {
    pub(super) fn new(durable: bool) -> Self {
        Self {
            durable,
            ops: VecDeque::new(),
            writes: 0,
            committed: 0,
            gated: VecDeque::new(),
            freed: 0,
        }
    }

    /// Queues a write; returns its number.
    pub(super) fn write(&mut self, op: StoreOp) -> u64 {
        self.ops.push_back(op);
        self.writes += 1;
        self.writes
    }

    /// Queues a read.
    pub(super) fn read(&mut self, op: StoreOp) {
        self.ops.push_back(op);
    }

    /// Holds `output` until write `seq` is durable.
    pub(super) fn after(&mut self, seq: u64, output: Gated) {
        if seq <= self.committed {
            self.gated.push_front((seq, output));
        } else {
            self.gated.push_back((seq, output));
        }
    }

    pub(super) fn poll(&mut self) -> Option<StoreOp> {
        self.ops.pop_front()
    }

    /// Every write up to `seq` is durable; returns the outputs that may now go out.
    pub(super) fn committed(&mut self, seq: u64) -> Vec<Gated> {
        self.committed = self.committed.max(seq.min(self.writes));
        let mut out = Vec::new();
        while self
            .gated
            .front()
            .is_some_and(|(s, _)| *s <= self.committed)
        {
            if let Some((_, g)) = self.gated.pop_front() {
                out.push(g);
            }
        }
        out
    }

    /// Outputs still waiting for a write.
    pub(super) fn waiting(&self) -> usize {
        self.gated.len()
    }
}
