//! The engine's side of per-sender pacing: [`tern_domain::pacing::Pacer`] behind a lock,
//! and the note a route job carries while it waits for the slot it was given.
//!
//! The schedule is in this node's memory. In a region of several nodes each paces the
//! messages it routes, so a sender whose traffic is spread over `n` nodes may send up to
//! `n` times its rate; a node that runs a job waiting for a slot another node gave honors
//! that slot, which keeps its own later grants behind it. After a restart the schedule
//! starts empty and is rebuilt the same way, as deferred jobs come due.

use std::sync::Mutex;

use serde::Deserialize;
use tern_domain::pacing::{Pacer, RateError, Reservation, SenderRates};

use crate::config::MessagingConfig;

/// At most this many senders have a schedule in memory (a few MB); see [`Pacer`] for
/// which one is given up when all are busy.
const MAX_PACED_SENDERS: usize = 100_000;

/// A route job's payload while its message waits in `queued` for a sender's slot.
#[derive(Debug, Deserialize)]
struct HeldSlot {
    /// The slot (µs since the epoch) reserved for the message.
    slot_us: i64,
}

/// What a route worker does with a `queued` message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Submit it now.
    Go,
    /// Put the job back until `run_at` (ms), carrying `payload`.
    Wait { run_at: i64, payload: String },
    /// The sender has no slot before the message's validity period ends.
    Expired,
}

pub(crate) struct Pacing {
    pacer: Mutex<Pacer>,
}

impl Pacing {
    pub(crate) fn new(c: &MessagingConfig) -> Result<Pacing, RateError> {
        let rates = SenderRates::new(
            c.sender_mps_long_code,
            c.sender_mps_toll_free,
            c.sender_mps_short_code,
        )?;
        Ok(Pacing {
            pacer: Mutex::new(Pacer::new(rates, MAX_PACED_SENDERS)),
        })
    }

    /// Decides whether a message from `sender` whose route job carries `payload` may go to
    /// a carrier at `now` (ms), reserving the sender's next slot if it has none yet, as long
    /// as that slot is before `expires_at` (ms).
    pub(crate) fn admit(
        &self,
        sender: &str,
        payload: &str,
        now: i64,
        expires_at: i64,
    ) -> Admission {
        let now_us = now.saturating_mul(1000);
        let mut pacer = self.pacer.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(HeldSlot { slot_us }) = serde_json::from_str::<HeldSlot>(payload) {
            if slot_us <= now_us {
                pacer.honor(sender, slot_us, now_us);
                return Admission::Go;
            }
            // Due early (another node's clock): wait for the same slot.
            return Admission::Wait {
                run_at: ceil_ms(slot_us),
                payload: payload.to_owned(),
            };
        }
        let reservation = pacer.reserve(sender, now_us, expires_at.saturating_mul(1000));
        metrics::gauge!("tern_paced_senders").set(pacer.len() as f64);
        match reservation {
            Reservation::Now => Admission::Go,
            Reservation::At(slot_us) => Admission::Wait {
                run_at: ceil_ms(slot_us),
                payload: held(slot_us),
            },
            Reservation::TooLate(_) => Admission::Expired,
        }
    }
}

/// The payload of a job holding `slot_us` ([`HeldSlot`]).
fn held(slot_us: i64) -> String {
    serde_json::json!({ "slot_us": slot_us }).to_string()
}

/// The first millisecond at or after `us`, so a job never runs before its slot.
fn ceil_ms(us: i64) -> i64 {
    us.div_euclid(1000) + i64::from(us.rem_euclid(1000) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacing(long_code: f64) -> Pacing {
        Pacing::new(&MessagingConfig {
            sender_mps_long_code: long_code,
            ..MessagingConfig::default()
        })
        .unwrap()
    }

    const FROM: &str = "+14155550100";

    #[test]
    fn a_waiting_job_carries_its_slot_and_goes_when_it_comes() {
        let p = pacing(4.0);
        assert_eq!(p.admit(FROM, "", 1_000, 60_000), Admission::Go);
        let Admission::Wait { run_at, payload } = p.admit(FROM, "", 1_000, 60_000) else {
            panic!("the second message in the same instant waits");
        };
        assert_eq!(run_at, 1_250);
        // Due early, it waits for the same slot; due on time, it goes.
        assert_eq!(
            p.admit(FROM, &payload, 1_100, 60_000),
            Admission::Wait {
                run_at: 1_250,
                payload: payload.clone()
            }
        );
        assert_eq!(p.admit(FROM, &payload, 1_250, 60_000), Admission::Go);
        // Its slot was the last one given: the next message queues behind it.
        assert!(matches!(
            p.admit(FROM, "", 1_250, 60_000),
            Admission::Wait { run_at: 1_500, .. }
        ));
    }

    #[test]
    fn a_slot_after_expiry_fails_the_message() {
        let p = pacing(1.0);
        assert_eq!(p.admit(FROM, "", 0, 1_500), Admission::Go);
        assert!(matches!(
            p.admit(FROM, "", 0, 1_500),
            Admission::Wait { run_at: 1_000, .. }
        ));
        assert_eq!(p.admit(FROM, "", 0, 1_500), Admission::Expired);
    }

    #[test]
    fn a_slot_given_elsewhere_is_honored() {
        let p = pacing(1.0);
        assert_eq!(
            p.admit(FROM, &held(5_000_000), 5_000, 60_000),
            Admission::Go
        );
        assert!(matches!(
            p.admit(FROM, "", 5_000, 60_000),
            Admission::Wait { run_at: 6_000, .. }
        ));
    }

    #[test]
    fn unpaced_senders_always_go_and_bad_rates_are_refused() {
        let p = pacing(0.0);
        for _ in 0..10 {
            assert_eq!(p.admit(FROM, "", 0, 0), Admission::Go);
        }
        assert!(
            Pacing::new(&MessagingConfig {
                sender_mps_toll_free: -1.0,
                ..MessagingConfig::default()
            })
            .is_err()
        );
    }

    #[test]
    fn milliseconds_round_up() {
        assert_eq!(ceil_ms(1_000), 1);
        assert_eq!(ceil_ms(1_001), 2);
        assert_eq!(ceil_ms(0), 0);
        assert_eq!(ceil_ms(-1), 0);
    }
}
