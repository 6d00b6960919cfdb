//! What the simulator remembers of the messages it accepted, for `query_sm`, `cancel_sm`
//! and `replace_sm`.
//!
//! Ids are issued in sequence, so the memory is a ring: the record of sequence number `n`
//! sits at `n - first`. Pushing beyond the capacity forgets the oldest. A record holds the
//! outcome drawn at submission and when it takes effect, so the state is computed when
//! asked (no timer per message): `ENROUTE` before the receipt is due, the final state after.
//!
//! An id is `sequence << 4 | message_state`: the outcome travels in the id itself. So a
//! `query_sm` for an id this simulator no longer remembers — evicted, or issued before a
//! restart (sequences start from the clock, so lives never overlap) — still gets its final
//! state, as a real carrier's would after *Tern* crashed and lost the receipt; only the
//! done date and `err` are unknown then.

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
    /// Sequence number of `records[0]`.
    first: u64,
    records: VecDeque<Record>,
}

impl Store {
    /// `first` is the first sequence number; it must exceed every earlier life's.
    pub fn new(format: MessageIdFormat, capacity: usize, first: u64) -> Self {
        let first = first.min(MAX_SEQUENCE);
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

    /// Remembers a new message; returns its id number (sequence and final state).
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
        let sequence = self.first + self.records.len() as u64;
        let state = stat.message_state().unwrap_or(MessageState::Unknown);
        self.records.push_back(Record {
            submitted_unix_ms: unix_ms,
            submitted_ms: now_ms,
            delay_ms,
            state,
            err,
            cancelled_ms: None,
        });
        sequence << STATE_BITS | u64::from(state.as_u8())
    }

    fn parse(&self, id: &str) -> Option<u64> {
        let id = id.trim();
        match self.format {
            MessageIdFormat::Hex => u64::from_str_radix(id.trim_start_matches("0x"), 16).ok(),
            MessageIdFormat::Decimal => id.parse().ok(),
        }
    }

    fn record(&mut self, number: u64) -> Option<&mut Record> {
        let i = usize::try_from((number >> STATE_BITS).checked_sub(self.first)?).ok()?;
        self.records.get_mut(i)
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut Record> {
        let n = self.parse(id)?;
        self.record(n)
    }

    pub fn query(&mut self, id: &str, now_ms: u64) -> Option<Status> {
        let number = self.parse(id)?;
        let Some(r) = self.record(number).copied() else {
            return self.forgotten(number);
        };
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

    /// The state of an id issued earlier than anything remembered, read from the id. Ids
    /// this simulator cannot have issued (a sequence from no plausible clock, from the
    /// future, or a state that is not final) stay unknown.
    fn forgotten(&self, number: u64) -> Option<Status> {
        let sequence = number >> STATE_BITS;
        if !(EARLIEST_SEQUENCE..self.first).contains(&sequence) {
            return None;
        }
        let state = MessageState::from_u8(u8::try_from(number & STATE_MASK).ok()?)?;
        state.is_final().then_some(Status {
            state,
            final_unix_ms: None,
            err: 0,
        })
    }

    /// Whether the message `number` was cancelled (its receipt is then not sent).
    pub fn is_cancelled(&self, number: u64) -> bool {
        (number >> STATE_BITS)
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

/// Low bits of an id holding its `message_state`.
const STATE_BITS: u32 = 4;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;
/// Sequences start at the clock in ms shifted left 8 (`Smsc::start`); this is 2020-01-01
/// so shifted, the floor below which a number is no id of ours.
const EARLIEST_SEQUENCE: u64 = 1_577_836_800_000 << 8;
/// The largest sequence that still leaves room for the state bits.
const MAX_SEQUENCE: u64 = u64::MAX >> STATE_BITS;

/// The first sequence number of a simulator started at `unix_ms`: later than any earlier
/// life's, leaving 256 ids per millisecond of the previous life's run.
pub(crate) fn first_sequence(unix_ms: i64) -> u64 {
    u64::try_from(unix_ms).unwrap_or(0) << 8
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
        let start = first_sequence(1_800_000_000_000);
        let mut s = Store::new(MessageIdFormat::Hex, 2, start);
        let a = s.insert(0, 1_000, 100, &ReceiptStat::Delivered, 0);
        let id = s.format_id(a);
        assert_eq!(a >> STATE_BITS, start);
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
        // Evicted: the state still comes from the id, without its date.
        let old = s.query(&id, 500).unwrap();
        assert_eq!(
            (old.state, old.final_unix_ms),
            (MessageState::Delivered, None)
        );
        assert_eq!(s.cancel(&id, 500), Change::Unknown);
        assert_eq!(s.query("zz", 0), None);
        assert_eq!(s.query("ffffffffffffffff", 0), None, "from the future");
        assert_eq!(s.query("12", 0), None, "from no plausible clock");
    }

    #[test]
    fn a_restarted_simulator_answers_for_its_earlier_life() {
        let mut first = Store::new(
            MessageIdFormat::Decimal,
            10,
            first_sequence(1_800_000_000_000),
        );
        let n = first.insert(0, 0, 10, &ReceiptStat::Delivered, 0);
        let delivered = first.format_id(n);
        let n = first.insert(0, 0, 10, &ReceiptStat::Undeliverable, 1);
        let undeliv = first.format_id(n);
        let mut second = Store::new(
            MessageIdFormat::Decimal,
            10,
            first_sequence(1_800_000_060_000),
        );
        assert_eq!(
            second.query(&delivered, 0).unwrap().state,
            MessageState::Delivered
        );
        assert_eq!(
            second.query(&undeliv, 0).unwrap().state,
            MessageState::Undeliverable
        );
    }
}
