//! The message lifecycle as a pure state machine.
//!
//! ```text
//! outbound:  scheduled ─┐
//!            accepted ──┼─► queued ─┬─────────────┬─► sent ─► delivered | undelivered
//!                       │           └─► sending ──┘
//!                       └───────────────────────────────► failed (from any non-final state)
//!            scheduled ─► canceled
//! inbound:   receiving ─► received | failed
//! ```
//! Transitions only move forward: every state has a rank and a move must raise it. A
//! delivery receipt may overtake the carrier's acceptance (a receipt before `submit_sm_resp`),
//! so `sending` may go straight to `delivered` or `undelivered`. The engine no longer
//! writes `sending` (a message goes from `queued` to the submission's outcome in one
//! step); messages written as `sending` by earlier versions still move on from it.

use tern_types::MessageStatus;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a message cannot move from {from} to {to}")]
pub struct LifecycleError {
    pub from: MessageStatus,
    pub to: MessageStatus,
}

fn rank(s: MessageStatus) -> u8 {
    use MessageStatus::*;
    match s {
        Scheduled => 0,
        Accepted => 1,
        Queued => 2,
        Sending => 3,
        Sent => 4,
        Receiving => 0,
        Delivered | Undelivered | Failed | Canceled | Received => 5,
    }
}

/// Whether `from → to` is a legal, forward transition.
pub fn check_transition(from: MessageStatus, to: MessageStatus) -> Result<(), LifecycleError> {
    use MessageStatus::*;
    let inbound = |s| matches!(s, Receiving | Received);
    let allowed = !from.is_terminal()
        && rank(to) > rank(from)
        && (inbound(from) == inbound(to) || (from == Receiving && to == Failed))
        && match to {
            // Only a message that has not been handed to a carrier can be canceled.
            Canceled => matches!(from, Scheduled | Accepted | Queued),
            // A receipt speaks of a message a carrier has (or may have) taken.
            Delivered | Undelivered => matches!(from, Sending | Sent),
            Sent => matches!(from, Queued | Sending),
            Received => from == Receiving,
            Receiving | Scheduled => false,
            _ => true,
        };
    if allowed {
        Ok(())
    } else {
        Err(LifecycleError { from, to })
    }
}

/// The status a new outbound message starts in.
pub fn initial_status(with_service: bool, scheduled: bool) -> MessageStatus {
    match (scheduled, with_service) {
        (true, _) => MessageStatus::Scheduled,
        (false, true) => MessageStatus::Accepted,
        (false, false) => MessageStatus::Queued,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MessageStatus::*;
    use proptest::prelude::*;

    #[test]
    fn the_outbound_happy_path_is_legal() {
        for (a, b) in [
            (Accepted, Queued),
            (Queued, Sending),
            (Sending, Sent),
            (Queued, Sent),
            (Sent, Delivered),
        ] {
            assert_eq!(check_transition(a, b), Ok(()), "{a} -> {b}");
        }
        assert_eq!(check_transition(Scheduled, Queued), Ok(()));
        assert_eq!(check_transition(Receiving, Received), Ok(()));
        assert_eq!(check_transition(Sending, Delivered), Ok(()));
    }

    #[test]
    fn nothing_moves_backwards_or_out_of_a_final_state() {
        assert!(check_transition(Sent, Sending).is_err());
        assert!(check_transition(Delivered, Undelivered).is_err());
        assert!(check_transition(Failed, Queued).is_err());
        assert!(check_transition(Sending, Canceled).is_err());
        assert!(check_transition(Queued, Delivered).is_err());
        assert!(check_transition(Queued, Received).is_err());
        assert!(check_transition(Receiving, Sent).is_err());
    }

    #[test]
    fn initial_statuses_follow_twilio() {
        assert_eq!(initial_status(false, false), Queued);
        assert_eq!(initial_status(true, false), Accepted);
        assert_eq!(initial_status(true, true), Scheduled);
    }

    fn status() -> impl Strategy<Value = MessageStatus> {
        proptest::sample::select(MessageStatus::ALL.to_vec())
    }

    proptest! {
        /// Any sequence of attempted transitions, applying only the legal ones, reaches a
        /// final state in at most five steps and never revisits a state.
        #[test]
        fn legal_paths_are_short_and_acyclic(start in status(), attempts in proptest::collection::vec(status(), 0..40)) {
            let mut cur = start;
            let mut seen = vec![cur];
            for next in attempts {
                if check_transition(cur, next).is_ok() {
                    prop_assert!(!seen.contains(&next));
                    cur = next;
                    seen.push(cur);
                }
            }
            prop_assert!(seen.len() <= 6);
        }

        #[test]
        fn final_states_have_no_exit(to in status()) {
            for from in MessageStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
                prop_assert!(check_transition(from, to).is_err());
            }
        }
    }
}
