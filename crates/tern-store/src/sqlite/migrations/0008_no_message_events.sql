-- No per-message status history table. Nothing read it: a message's row keeps when it was
-- created, sent and last changed, and `route_attempts` every carrier it was tried on, when
-- and why; writing it cost a row at every step of every message.
DROP TABLE IF EXISTS message_events;
