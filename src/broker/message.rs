//! A message held by the broker, and the byte accounting that bounds the broker's memory.
//!
//! Guarantees:
//! - Every [`Message`] alive anywhere in the broker (waiting in a queue, delivered but not yet
//!   acknowledged, or delivered but not yet written to its consumer's socket) counts its size,
//!   plus the bookkeeping of one queue slot or delivery, once in the broker-wide [`ByteBudget`],
//!   and gives it back when the last reference goes.
//! - Bodies are [`Bytes`], so fanning a message out to many subscribers never copies the body;
//!   what each further copy does cost (its place in a consumer's channel, its unacknowledged
//!   record) is charged as a [`Charge`] of its own, held as long as that copy lives.

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

    /// Reserves `parts.iter().sum()` bytes at once and hands them out as one [`Charge`] per
    /// part, or returns `None` (reserving nothing) if that would exceed the bound.
    pub fn charge_all(self: &Arc<Self>, parts: &[usize]) -> Option<Vec<Charge>> {
        let total = parts.iter().try_fold(0usize, |a, &n| a.checked_add(n))?;
        if !self.try_reserve(total) {
            return None;
        }
        Some(
            parts
                .iter()
                .map(|&bytes| Charge {
                    budget: self.clone(),
                    bytes,
                })
                .collect(),
        )
    }
}

/// Bytes reserved in a [`ByteBudget`], given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<ByteBudget>,
    bytes: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// What a message costs beyond its bytes: the struct and its `Arc`, and one queue slot or
/// delivery (channel slot, unacknowledged record) with allocator slack.
pub const MESSAGE_OVERHEAD: usize = std::mem::size_of::<Message>() + 256;
/// What each header costs beyond its bytes (two `String`s).
const HEADER_OVERHEAD: usize = std::mem::size_of::<(String, String)>();

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
        let size = MESSAGE_OVERHEAD
            + body.len()
            + id.len()
            + headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + HEADER_OVERHEAD)
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

    /// The budget this message is charged to (its copies are charged there too).
    pub fn budget(&self) -> &Arc<ByteBudget> {
        &self.budget
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
        let budget = Arc::new(ByteBudget::new(MESSAGE_OVERHEAD + 100));
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

    #[test]
    fn charges_are_all_or_nothing_and_released_one_by_one() {
        let budget = Arc::new(ByteBudget::new(100));
        assert!(budget.charge_all(&[60, 60]).is_none());
        assert_eq!(budget.used(), 0);
        let mut charges = budget.charge_all(&[30, 30, 40]).unwrap();
        assert_eq!(budget.used(), 100);
        charges.pop();
        assert_eq!(budget.used(), 60);
        drop(charges);
        assert_eq!(budget.used(), 0);
    }
}
