-- Version 4: sticky sender (Twilio's StickySender): the sender of its pool a Messaging
-- Service last used for a recipient, so that later messages to that handset come from the
-- same number. One row per service and handset, deleted with the service.

CREATE TABLE sticky_senders (
    service_sid TEXT COLLATE "C" NOT NULL,
    handset TEXT COLLATE "C" NOT NULL,
    sender TEXT NOT NULL,
    updated BIGINT NOT NULL,
    PRIMARY KEY (service_sid, handset)
);
