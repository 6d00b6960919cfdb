-- Version 8: no per-message status history table. Nothing read it: a message's row keeps
-- when it was created, sent and last changed, and `route_attempts` every carrier it was
-- tried on, when and why. Writing one more row (and two index entries) at every step of
-- every message cost a quarter of the insert statement's time and as much again on each
-- transition.
DROP TABLE IF EXISTS message_events;
