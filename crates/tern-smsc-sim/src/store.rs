//! What the simulator remembers of the messages it accepted, for `query_sm`, `cancel_sm`
//! and `replace_sm`.
//!
//! Ids are issued in sequence, so the memory is a ring: the record of id `n` sits at
//! `n - first`. Pushing beyond the capacity forgets the oldest id. A record holds the
//! outcome drawn at submission and when it takes effect, so the state is computed when
//! asked (no timer per message): `ENROUTE` before the receipt is due, the final state after.

use std::collections::VecDeque;

use tern_smpp::ReceiptStat;
use tern_smpp::pdu::MessageState;

use crate::config::MessageIdFormat;

#[derive(Debug, Clone, Copy)]
struct Record {
    /// Wall-clock submission time, ms since the Unix epoch.
    submitted_unix_ms: i64,
    /// Monotonic submission time, ms since the simulator started.
    submitted_ms: u64,
    /// Submission → final state.
    delay_ms: u32,
    state: MessageState,
    err: u16,
    /// Set by `cancel_sm`: ms since the simulator started.
    cancelled_ms: Option<u64>,
}

/// The answer to `query_sm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub state: MessageState,
    /// Wall-clock time the state became final, ms since the Unix epoch.
    pub final_unix_ms: Option<i64>,
    pub err: u16,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Done,
    /// The message is already final.
    Final,
    Unknown,
}

#[derive(Debug)]
pub(crate) struct Store {
    format: MessageIdFormat,
    capacity: usize,
    /// Id of `records[0]`.
    first: u64,
    records: VecDeque<Record>,
}

impl Store {
    pub fn new(format: MessageIdFormat, capacity: usize, first: u64) -> Self {
        Store {
            format,
            capacity: capacity.max(1),
            first,
            records: VecDeque::new(),
        }
    }

    pub fn format_id(&self, number: u64) -> String {
        format_id(self.format, number)
    }

    /// Remembers a new message; returns its number.
    pub fn insert(
        &mut self,
        now_ms: u64,
        unix_ms: i64,
        delay_ms: u32,
        stat: &ReceiptStat,
        err: u16,
    ) -> u64 {
        if self.records.len() >= self.capacity {
            self.records.pop_front();
            self.first += 1;
        }
        let number = self.first + self.records.len() as u64;
        self.records.push_back(Record {
            submitted_unix_ms: unix_ms,
            submitted_ms: now_ms,
            delay_ms,
            state: stat.message_state().unwrap_or(MessageState::Unknown),
            err,
            cancelled_ms: None,
        });
        number
    }

    fn parse(&self, id: &str) -> Option<u64> {
        let id = id.trim();
        match self.format {
            MessageIdFormat::Hex => u64::from_str_radix(id.trim_start_matches("0x"), 16).ok(),
            MessageIdFormat::Decimal => id.parse().ok(),
        }
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut Record> {
        let n = self.parse(id)?;
        let i = usize::try_from(n.checked_sub(self.first)?).ok()?;
        self.records.get_mut(i)
    }

    pub fn query(&mut self, id: &str, now_ms: u64) -> Option<Status> {
        let r = *self.get_mut(id)?;
        let base = r.submitted_unix_ms - r.submitted_ms as i64;
        if let Some(at) = r.cancelled_ms {
            return Some(Status {
                state: MessageState::Deleted,
                final_unix_ms: Some(base + at as i64),
                err: 0,
            });
        }
        let done_ms = r.submitted_ms + u64::from(r.delay_ms);
        Some(if now_ms >= done_ms {
            Status {
                state: r.state,
                final_unix_ms: Some(r.submitted_unix_ms + i64::from(r.delay_ms)),
                err: r.err,
            }
        } else {
            Status {
                state: MessageState::Enroute,
                final_unix_ms: None,
                err: 0,
            }
        })
    }

    /// Whether the message `number` was cancelled (its receipt is then not sent).
    pub fn is_cancelled(&self, number: u64) -> bool {
        number
            .checked_sub(self.first)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.records.get(i))
            .is_some_and(|r| r.cancelled_ms.is_some())
    }

    pub fn cancel(&mut self, id: &str, now_ms: u64) -> Change {
        match self.get_mut(id) {
            None => Change::Unknown,
            Some(r) if r.cancelled_ms.is_some() => Change::Final,
            Some(r) if now_ms >= r.submitted_ms + u64::from(r.delay_ms) => Change::Final,
            Some(r) => {
                r.cancelled_ms = Some(now_ms);
                Change::Done
            }
        }
    }

    /// `replace_sm`: allowed while the message is en route (the receipt keeps the text of
    /// the original submission).
    pub fn replace(&mut self, id: &str, now_ms: u64) -> Change {
        match self.get_mut(id) {
            None => Change::Unknown,
            Some(r)
                if r.cancelled_ms.is_some() || now_ms >= r.submitted_ms + u64::from(r.delay_ms) =>
            {
                Change::Final
            }
            Some(_) => Change::Done,
        }
    }
}

pub(crate) fn format_id(format: MessageIdFormat, number: u64) -> String {
    match format {
        MessageIdFormat::Hex => format!("{number:x}"),
        MessageIdFormat::Decimal => number.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_the_clock_and_old_ids_are_forgotten() {
        let mut s = Store::new(MessageIdFormat::Hex, 2, 0x10);
        let a = s.insert(0, 1_000, 100, &ReceiptStat::Delivered, 0);
        let id = s.format_id(a);
        assert_eq!(id, "10");
        assert_eq!(s.query(&id, 50).unwrap().state, MessageState::Enroute);
        let done = s.query(&id, 100).unwrap();
        assert_eq!(done.state, MessageState::Delivered);
        assert_eq!(done.final_unix_ms, Some(1_100));
        let b = s.insert(0, 1_000, 100, &ReceiptStat::Undeliverable, 5);
        assert_eq!(s.cancel(&s.format_id(b), 10), Change::Done);
        assert!(s.is_cancelled(b));
        assert_eq!(
            s.query(&s.format_id(b), 500).unwrap().state,
            MessageState::Deleted
        );
        assert_eq!(s.cancel(&id, 500), Change::Final);
        s.insert(0, 0, 0, &ReceiptStat::Delivered, 0);
        assert_eq!(s.query(&id, 500), None, "evicted");
        assert_eq!(s.query("zz", 0), None);
        assert_eq!(s.query("ffffffffffffffff", 0), None);
    }
}
