-- Version 5: the Super Network's route attempts: every carrier tried for an outbound
-- message, when, with what result and why. Append-only; deleted with the message. The
-- second index finds the message of a receipt for an attempt it was later resent from.

CREATE TABLE route_attempts (
    id BIGSERIAL PRIMARY KEY,
    message_sid TEXT COLLATE "C" NOT NULL,
    carrier TEXT COLLATE "C" NOT NULL,
    prefix TEXT NOT NULL,
    at BIGINT NOT NULL,
    result TEXT NOT NULL CHECK (result IN ('accepted', 'refused', 'retryable', 'resent')),
    carrier_message_id TEXT COLLATE "C",
    error_code BIGINT,
    reason TEXT NOT NULL
);
CREATE INDEX route_attempts_message ON route_attempts (message_sid, id);
CREATE INDEX route_attempts_carrier_id ON route_attempts (carrier, carrier_message_id)
    WHERE carrier_message_id IS NOT NULL;
