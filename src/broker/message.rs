//! A message held by the broker, and the byte accounting that bounds the broker's memory.
//!
//! Guarantee: every [`Message`] alive anywhere in the broker (waiting in a queue, delivered but
//! not yet acknowledged, or delivered but not yet written to its consumer's socket) counts its
//! size once in the broker-wide [`ByteBudget`], and gives it back when the last reference goes.
//! Bodies are [`Bytes`], so fanning a message out to many subscribers never copies the body.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

/// The broker-wide budget of bytes held in messages (`BrokerConfig::max_queued_bytes`).
#[derive(Debug)]
pub struct ByteBudget {
    used: AtomicUsize,
    max: usize,
}

impl ByteBudget {
    /// A budget of `max` bytes, none used.
    pub fn new(max: usize) -> ByteBudget {
        ByteBudget {
            used: AtomicUsize::new(0),
            max,
        }
    }

    /// Bytes currently held by live messages.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Reserves `n` bytes, or returns `false` (reserving nothing) if that would exceed the bound.
    fn try_reserve(&self, n: usize) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = cur.checked_add(n).filter(|&next| next <= self.max) else {
                return false;
            };
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// A message accepted from a `SEND`, shared (via `Arc`) by every queue, subscriber and writer
/// that holds it.
#[derive(Debug)]
pub struct Message {
    /// The broker-assigned `message-id`, stable across redeliveries.
    pub id: String,
    /// The sender's own headers, filtered (no `receipt`, `content-length`, `destination`…) and
    /// with `reply-to` already rewritten to a broker-wide name.
    pub headers: Vec<(String, String)>,
    /// The body, shared and never copied per subscriber.
    pub body: Bytes,
    size: usize,
    budget: Arc<ByteBudget>,
}

impl Message {
    /// Builds a message and charges its size to `budget`; `None` if the budget is exhausted.
    pub fn new(
        id: String,
        headers: Vec<(String, String)>,
        body: Bytes,
        budget: &Arc<ByteBudget>,
    ) -> Option<Arc<Message>> {
        let size = body.len()
            + id.len()
            + headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>();
        if !budget.try_reserve(size) {
            return None;
        }
        Some(Arc::new(Message {
            id,
            headers,
            body,
            size,
            budget: budget.clone(),
        }))
    }

    /// The bytes this message counts against the budget.
    #[cfg(test)]
    pub fn size(&self) -> usize {
        self.size
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        self.budget.release(self.size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_charged_and_released() {
        let budget = Arc::new(ByteBudget::new(100));
        let m = Message::new("m1".into(), vec![], Bytes::from(vec![0u8; 60]), &budget).unwrap();
        assert_eq!(budget.used(), m.size());
        assert!(Message::new("m2".into(), vec![], Bytes::from(vec![0u8; 60]), &budget).is_none());
        let shared = m.clone();
        drop(m);
        assert_eq!(budget.used(), shared.size());
        drop(shared);
        assert_eq!(budget.used(), 0);
        assert!(Message::new("m3".into(), vec![], Bytes::from(vec![0u8; 60]), &budget).is_some());
    }
}
