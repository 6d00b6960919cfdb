-- Sticky sender (Twilio's StickySender): the sender of its pool a Messaging Service last
-- used for a recipient, so that later messages to that handset come from the same number.
-- One row per service and handset, deleted with the service.
CREATE TABLE IF NOT EXISTS sticky_senders (
    service_sid TEXT NOT NULL,
    handset TEXT NOT NULL,
    sender TEXT NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (service_sid, handset)
);
