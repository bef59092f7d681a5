//! The receive side: [`Incoming`] messages to settle ([`Message`], [`Nack`]) and the
//! [`DeadLetters`] stream.

use crate::input::Input;
use crate::proto::{AppOutcome, DeadLetter, Delivery, NackAction};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::{Notify, mpsc};

/// Received messages; see [`Peer::incoming`](crate::Peer::incoming).
#[derive(Debug, Clone)]
pub struct Incoming {
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>>,
}

impl Incoming {
    pub(crate) fn new(rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>>) -> Self {
        Self { rx }
    }

    /// Next message; `None` after shutdown.
    pub async fn next(&mut self) -> Option<Message> {
        self.rx.lock().await.recv().await
    }
}

/// Dead letters waiting for a reader, held in memory up to a bound; past it they are
/// counted (and, with a store, still kept on disk).
#[derive(Debug)]
pub(crate) struct DeadLetterQueue {
    queue: parking_lot::Mutex<VecDeque<DeadLetter>>,
    notify: Notify,
    dropped: AtomicU64,
    closed: AtomicBool,
    capacity: usize,
}

impl DeadLetterQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queue: parking_lot::Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            capacity: capacity.max(1),
        }
    }

    /// Holds `letter` for a reader, or counts it when the queue is full.
    pub(crate) fn push(&self, letter: DeadLetter) {
        {
            let mut q = self.queue.lock();
            if q.len() >= self.capacity {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(crate::metrics::DEAD_LETTERS_DROPPED_TOTAL).increment(1);
                return;
            }
            q.push_back(letter);
        }
        self.notify.notify_one();
    }

    /// No more letters will come (the peer stopped).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// Dead letters; see [`Peer::dead_letters`](crate::Peer::dead_letters).
#[derive(Debug, Clone)]
pub struct DeadLetters {
    queue: Arc<DeadLetterQueue>,
}

impl DeadLetters {
    pub(crate) fn new(queue: Arc<DeadLetterQueue>) -> Self {
        Self { queue }
    }

    /// Next dead letter; `None` once the peer has stopped and every held letter was taken.
    /// Every `DeadLetters` of a peer takes from one shared queue.
    pub async fn next(&mut self) -> Option<DeadLetter> {
        loop {
            let notified = self.queue.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(dl) = self.queue.queue.lock().pop_front() {
                return Some(dl);
            }
            if self.queue.closed.load(Ordering::Acquire) {
                return None;
            }
            notified.await;
        }
    }

    /// Dead letters not held because the queue was full (`dead_letter_capacity`) since the
    /// peer started; they are also counted in `peer_sdk_dead_letters_dropped_total`. With a
    /// store they are still on disk ([`crate::Store::dead_letters`]).
    pub fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }
}

/// Signals "still working" for one received message; see [`Message::progress_handle`].
#[derive(Debug, Clone)]
pub struct Progress {
    token: crate::proto::DeliveryToken,
    tx: Option<mpsc::UnboundedSender<Input>>,
}

impl Progress {
    /// Same as [`Message::in_progress`]; ignored once the message is settled.
    pub fn signal(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Input::Progress { token: self.token });
        }
    }
}

/// How a handler refuses a message.
#[derive(Debug, Clone)]
pub enum Nack {
    /// Retry later, possibly on another instance.
    Retry(String),
    /// Give up: the sender dead-letters it with this reason.
    DeadLetter(String),
}

/// A received message. Settle it with [`Message::ack`], [`Message::reply`] or
/// [`Message::nack`]; dropping it unsettled counts as `nack(Retry)`.
pub struct Message {
    delivery: Delivery,
    settle: Option<mpsc::UnboundedSender<Input>>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("delivery", &self.delivery)
            .finish()
    }
}

impl Message {
    pub(crate) fn new(delivery: Delivery, settle: mpsc::UnboundedSender<Input>) -> Self {
        Self {
            delivery,
            settle: Some(settle),
        }
    }

    /// Payload.
    pub fn payload(&self) -> &Bytes {
        &self.delivery.payload
    }

    /// Ordering key, if the sender gave one.
    pub fn key(&self) -> Option<&Bytes> {
        self.delivery.key.as_ref()
    }

    /// The topic a published message was published on (see [`crate::Peer::publish`]);
    /// `None` for a message sent to this service directly.
    pub fn topic(&self) -> Option<&str> {
        self.delivery.topic.as_deref()
    }

    /// Sender's service.
    pub fn from_service(&self) -> &str {
        &self.delivery.from_service
    }

    /// Sender's instance.
    pub fn from_instance(&self) -> &str {
        &self.delivery.from_instance
    }

    /// Attempt number of this delivery (1 = first try).
    pub fn attempt(&self) -> u32 {
        self.delivery.attempt
    }

    /// Whether the sender waits for a reply.
    pub fn is_request(&self) -> bool {
        self.delivery.request
    }

    /// Sender-unique message id.
    pub fn id(&self) -> u64 {
        self.delivery.token.id
    }

    /// Tells the sender that this message is still being handled, which restarts the
    /// attempt's ack timeout there: call it more often than the sender's ack timeout and a
    /// slow handler is never retried on another instance (only the deadline still applies).
    /// Cheap (one small frame); does nothing once the message is settled.
    pub fn in_progress(&self) {
        if let Some(tx) = &self.settle {
            let _ = tx.send(Input::Progress {
                token: self.delivery.token,
            });
        }
    }

    /// A handle that signals progress for this message from another task (for example a
    /// timer loop beside a long computation). It outlives the message harmlessly.
    pub fn progress_handle(&self) -> Progress {
        Progress {
            token: self.delivery.token,
            tx: self.settle.clone(),
        }
    }

    fn settle(mut self, outcome: AppOutcome) {
        if let Some(tx) = self.settle.take() {
            let _ = tx.send(Input::Settle {
                token: self.delivery.token,
                outcome,
            });
        }
    }

    /// Processed. On a request this replies with an empty payload.
    pub fn ack(self) {
        self.settle(AppOutcome::Ack);
    }

    /// Processed, with a response (for requests; on a one-way message it is an ack).
    pub fn reply(self, payload: impl Into<Bytes>) {
        self.settle(AppOutcome::Reply(payload.into()));
    }

    /// Refuses the message.
    pub fn nack(self, nack: Nack) {
        let outcome = match nack {
            Nack::Retry(r) => AppOutcome::Nack(NackAction::Retry, r),
            Nack::DeadLetter(r) => AppOutcome::Nack(NackAction::DeadLetter, r),
        };
        self.settle(outcome);
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        if let Some(tx) = self.settle.take() {
            let outcome = AppOutcome::Nack(NackAction::Retry, "handler dropped the message".into());
            let _ = tx.send(Input::Settle {
                token: self.delivery.token,
                outcome,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::DeadLetterReason;

    fn letter(id: u64) -> DeadLetter {
        DeadLetter {
            id,
            service: "s".into(),
            key: None,
            payload: Bytes::new(),
            reason: DeadLetterReason::ShuttingDown,
            attempts: 1,
            last_instance: None,
        }
    }

    #[tokio::test]
    async fn dead_letters_past_the_bound_are_counted_not_lost_silently() {
        let queue = Arc::new(DeadLetterQueue::new(2));
        let mut reader = DeadLetters::new(queue.clone());
        for id in 1..=5 {
            queue.push(letter(id));
        }
        assert_eq!(reader.dropped(), 3);
        assert_eq!(reader.next().await.map(|d| d.id), Some(1));
        assert_eq!(reader.next().await.map(|d| d.id), Some(2));
        let waiting = tokio::spawn(async move { reader.next().await.map(|d| d.id) });
        tokio::task::yield_now().await;
        queue.push(letter(6));
        assert_eq!(waiting.await.unwrap(), Some(6));
        queue.close();
        assert!(DeadLetters::new(queue).next().await.is_none());
    }
}
