//! Message statuses and directions, spelled as the 2010-04-01 API spells them.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    Queued,
    Accepted,
    Scheduled,
    Sending,
    Sent,
    Delivered,
    Undelivered,
    Failed,
    Canceled,
    Receiving,
    Received,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 11] = [
        MessageStatus::Queued,
        MessageStatus::Accepted,
        MessageStatus::Scheduled,
        MessageStatus::Sending,
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Undelivered,
        MessageStatus::Failed,
        MessageStatus::Canceled,
        MessageStatus::Receiving,
        MessageStatus::Received,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Accepted => "accepted",
            MessageStatus::Scheduled => "scheduled",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Undelivered => "undelivered",
            MessageStatus::Failed => "failed",
            MessageStatus::Canceled => "canceled",
            MessageStatus::Receiving => "receiving",
            MessageStatus::Received => "received",
        }
    }

    pub fn parse(s: &str) -> Option<MessageStatus> {
        MessageStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A final status: nothing follows it.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            MessageStatus::Delivered
                | MessageStatus::Undelivered
                | MessageStatus::Failed
                | MessageStatus::Canceled
                | MessageStatus::Received
        )
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Inbound,
    OutboundApi,
    OutboundReply,
}

impl Direction {
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::OutboundApi => "outbound-api",
            Direction::OutboundReply => "outbound-reply",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        [
            Direction::Inbound,
            Direction::OutboundApi,
            Direction::OutboundReply,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for st in MessageStatus::ALL {
            assert_eq!(MessageStatus::parse(st.as_str()), Some(st));
        }
        assert_eq!(MessageStatus::parse("read"), None);
    }
}
