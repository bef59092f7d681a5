//! The store quota of a durable peer: bytes of accepted, unresolved messages
//! ([`crate::proto::message_cost`] each). `send` takes room before a message is handed to
//! the core; the driver gives it back as the core reports resolved messages.

use crate::config::WhenFull;
use crate::error::SendError;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Room left in the store, as semaphore permits of one byte.
#[derive(Debug)]
pub(crate) struct Quota {
    room: Arc<Semaphore>,
    max: u64,
    when_full: WhenFull,
    /// Bytes already used beyond the quota at start (a lowered quota); freed bytes repay
    /// this before they become room.
    debt: parking_lot::Mutex<u64>,
}

impl Quota {
    /// A quota of `max` bytes of which `used` are taken by what the store already holds.
    pub(crate) fn new(max: u64, used: u64, when_full: WhenFull) -> Self {
        let max = max.min(Semaphore::MAX_PERMITS as u64);
        let free = max.saturating_sub(used);
        Self {
            room: Arc::new(Semaphore::new(usize::try_from(free).unwrap_or(usize::MAX))),
            max,
            when_full,
            debt: parking_lot::Mutex::new(used.saturating_sub(max)),
        }
    }

    /// Takes `cost` bytes: waits for room or fails, as configured.
    pub(crate) async fn take(&self, cost: u64) -> Result<(), SendError> {
        let full = || SendError::StoreFull {
            needed: cost,
            quota: self.max,
        };
        let n = u32::try_from(cost).map_err(|_| full())?;
        if cost > self.max {
            return Err(full());
        }
        let permit = match self.when_full {
            WhenFull::Wait => self
                .room
                .acquire_many(n)
                .await
                .map_err(|_| SendError::ShutDown)?,
            _ => self.room.try_acquire_many(n).map_err(|_| full())?,
        };
        permit.forget();
        Ok(())
    }

    /// Gives back `bytes` (resolved messages, or a message that was never handed over).
    pub(crate) fn give_back(&self, bytes: u64) {
        let bytes = {
            let mut debt = self.debt.lock();
            let repaid = bytes.min(*debt);
            *debt -= repaid;
            bytes - repaid
        };
        if bytes > 0 {
            self.room
                .add_permits(usize::try_from(bytes).unwrap_or(usize::MAX));
        }
    }

    /// Bytes taken and not given back (messages accepted, or being accepted, and unresolved).
    pub(crate) fn used(&self) -> u64 {
        let free = u64::try_from(self.room.available_permits()).unwrap_or(u64::MAX);
        self.max.saturating_sub(free) + *self.debt.lock()
    }

    /// Wakes every waiter with an error (the peer stopped).
    pub(crate) fn close(&self) {
        self.room.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_quota_fails_or_waits_as_configured_and_debt_is_repaid_first() {
        let q = Quota::new(100, 0, WhenFull::Fail);
        q.take(80).await.unwrap();
        assert!(matches!(
            q.take(30).await,
            Err(SendError::StoreFull {
                needed: 30,
                quota: 100
            })
        ));
        q.give_back(80);
        q.take(30).await.unwrap();

        let q = Arc::new(Quota::new(100, 150, WhenFull::Wait));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.take(10).await }
        });
        q.give_back(50);
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "the debt of 50 is repaid before any room frees"
        );
        q.give_back(10);
        waiter.await.unwrap().unwrap();
    }
}
