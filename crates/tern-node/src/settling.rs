//! Submissions a carrier has accepted whose `sent` transition is not committed yet.
//!
//! A carrier's receipt can overtake that commit (the store commits in groups, so by a few
//! milliseconds under load). A receipt for a submission this node is settling waits for
//! the commit here instead of polling the store, which used to cost two lookups and a
//! 50 ms sleep per miss. Receipts that arrive on another node, or before the carrier's
//! answer reached the submitting task, still poll.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

type Key = (String, String);

#[derive(Debug, Default)]
pub(crate) struct Settling {
    /// By (carrier, carrier's message id): told `true` once the transition is done.
    pending: Mutex<HashMap<Key, watch::Receiver<bool>>>,
}

/// Held while a submission's transition is written; dropping it releases the waiters.
pub(crate) struct Settle<'a> {
    settling: &'a Settling,
    key: Key,
    done: watch::Sender<bool>,
}

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        self.settling.lock().remove(&self.key);
        self.done.send_replace(true);
    }
}

impl Settling {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, watch::Receiver<bool>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `carrier`'s message `id` as being settled until the guard is dropped.
    pub(crate) fn begin(&self, carrier: &str, id: &str) -> Settle<'_> {
        let key = (carrier.to_owned(), id.to_owned());
        let (done, rx) = watch::channel(false);
        self.lock().insert(key.clone(), rx);
        Settle {
            settling: self,
            key,
            done,
        }
    }

    /// Waits (at most `limit`) until `carrier`'s message `id` is no longer being settled;
    /// returns at once if it is not.
    pub(crate) async fn settled(&self, carrier: &str, id: &str, limit: Duration) {
        let rx = self
            .lock()
            .get(&(carrier.to_owned(), id.to_owned()))
            .cloned();
        if let Some(mut rx) = rx {
            // A closed channel (the guard is gone) is as good as done.
            let _ = tokio::time::timeout(limit, rx.wait_for(|done| *done)).await;
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_waiter_is_released_when_the_settle_ends() {
        let s = Arc::new(Settling::default());
        // Nothing settling: no wait.
        tokio::time::timeout(
            Duration::from_secs(1),
            s.settled("a", "1", Duration::from_secs(60)),
        )
        .await
        .unwrap();
        let guard = s.begin("a", "1");
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.settled("a", "1", Duration::from_secs(60)).await })
        };
        // Another id is not held up.
        s.settled("a", "2", Duration::from_secs(60)).await;
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(guard);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_after_its_limit() {
        let s = Settling::default();
        let _guard = s.begin("a", "1");
        s.settled("a", "1", Duration::from_secs(2)).await;
        assert_eq!(s.len(), 1);
    }
}
