-- Tern's PostgreSQL schema, version 1. Times are milliseconds since the Unix epoch
-- (BIGINT). SIDs are compared bytewise (COLLATE "C") so that ordering by sid matches
-- the SQLite store whatever the database's default collation is.

CREATE TABLE accounts (
    sid TEXT COLLATE "C" PRIMARY KEY,
    parent_sid TEXT COLLATE "C",
    friendly_name TEXT NOT NULL,
    auth_token TEXT NOT NULL,
    status TEXT NOT NULL,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
);
CREATE INDEX accounts_parent ON accounts (parent_sid, created, sid);
CREATE INDEX accounts_top_level ON accounts (created, sid) WHERE parent_sid IS NULL;

CREATE TABLE api_keys (
    sid TEXT COLLATE "C" PRIMARY KEY,
    account_sid TEXT COLLATE "C" NOT NULL,
    friendly_name TEXT NOT NULL,
    secret_hash BYTEA NOT NULL,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
);
CREATE INDEX api_keys_account ON api_keys (account_sid);

CREATE TABLE phone_numbers (
    sid TEXT COLLATE "C" PRIMARY KEY,
    account_sid TEXT COLLATE "C" NOT NULL,
    phone_number TEXT NOT NULL UNIQUE,
    config JSONB NOT NULL,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
);
CREATE INDEX phone_numbers_account ON phone_numbers (account_sid);

CREATE TABLE messaging_services (
    sid TEXT COLLATE "C" PRIMARY KEY,
    account_sid TEXT COLLATE "C" NOT NULL,
    config JSONB NOT NULL,
    rr_counter BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
);
CREATE INDEX messaging_services_account ON messaging_services (account_sid);

CREATE TABLE service_numbers (
    service_sid TEXT COLLATE "C" NOT NULL,
    number_sid TEXT COLLATE "C" NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (service_sid, number_sid)
);
CREATE INDEX service_numbers_number ON service_numbers (number_sid);

CREATE TABLE messages (
    sid TEXT COLLATE "C" PRIMARY KEY,
    account_sid TEXT COLLATE "C" NOT NULL,
    messaging_service_sid TEXT COLLATE "C",
    direction TEXT NOT NULL,
    from_number TEXT,
    to_number TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    error_code BIGINT,
    num_segments BIGINT NOT NULL,
    num_media BIGINT NOT NULL,
    status_callback TEXT,
    validity_secs BIGINT NOT NULL,
    send_at BIGINT,
    carrier TEXT,
    carrier_message_id TEXT,
    raw_dlr_done_date TEXT,
    provide_feedback BOOLEAN NOT NULL,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    sent BIGINT
);
CREATE INDEX messages_account_created ON messages (account_sid, created DESC, sid DESC);
CREATE INDEX messages_carrier_id ON messages (carrier, carrier_message_id)
    WHERE carrier_message_id IS NOT NULL;
CREATE INDEX messages_status_updated ON messages (status, updated);

CREATE TABLE message_events (
    id BIGSERIAL PRIMARY KEY,
    message_sid TEXT COLLATE "C" NOT NULL,
    status TEXT NOT NULL,
    at BIGINT NOT NULL,
    error_code BIGINT
);
CREATE INDEX message_events_sid ON message_events (message_sid);

CREATE TABLE opt_outs (
    account_sid TEXT COLLATE "C" NOT NULL,
    handset TEXT NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (account_sid, handset)
);

CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT COLLATE "C" NOT NULL,
    run_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    payload TEXT NOT NULL
);
