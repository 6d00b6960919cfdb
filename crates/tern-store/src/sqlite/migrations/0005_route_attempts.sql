-- The Super Network's route attempts: every carrier tried for an outbound message, when,
-- with what result and why. Append-only; deleted with the message. The index finds the
-- message of a receipt for an attempt the message was later resent from.
CREATE TABLE IF NOT EXISTS route_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_sid TEXT NOT NULL,
    carrier TEXT NOT NULL,
    prefix TEXT NOT NULL,
    at INTEGER NOT NULL,
    result TEXT NOT NULL CHECK (result IN ('accepted', 'refused', 'retryable', 'resent')),
    carrier_message_id TEXT,
    error_code INTEGER,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS route_attempts_message ON route_attempts (message_sid, id);
CREATE INDEX IF NOT EXISTS route_attempts_carrier_id ON route_attempts (carrier, carrier_message_id)
    WHERE carrier_message_id IS NOT NULL;
