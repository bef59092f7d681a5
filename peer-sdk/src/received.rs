//! The receive side: [`Incoming`] messages to settle ([`Message`], [`Nack`]) and the
//! [`DeadLetters`] stream.

use crate::driver::Input;
use crate::proto::{AppOutcome, DeadLetter, Delivery, NackAction};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

/// Received messages; see [`Peer::incoming`].
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

/// Dead letters; see [`Peer::dead_letters`].
#[derive(Debug)]
pub struct DeadLetters {
    rx: broadcast::Receiver<DeadLetter>,
}

impl DeadLetters {
    pub(crate) fn new(rx: broadcast::Receiver<DeadLetter>) -> Self {
        Self { rx }
    }

    /// Next dead letter; `None` after shutdown. Letters missed by a slow reader are skipped
    /// (and logged with their count).
    pub async fn next(&mut self) -> Option<DeadLetter> {
        loop {
            match self.rx.recv().await {
                Ok(dl) => return Some(dl),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("dead letter reader missed {n} letters")
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
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
