CREATE TABLE IF NOT EXISTS accounts (
    sid TEXT PRIMARY KEY,
    parent_sid TEXT,
    friendly_name TEXT NOT NULL,
    auth_token TEXT NOT NULL,
    status TEXT NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS accounts_parent ON accounts(parent_sid);

CREATE TABLE IF NOT EXISTS api_keys (
    sid TEXT PRIMARY KEY,
    account_sid TEXT NOT NULL,
    friendly_name TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS api_keys_account ON api_keys(account_sid);

CREATE TABLE IF NOT EXISTS phone_numbers (
    sid TEXT PRIMARY KEY,
    account_sid TEXT NOT NULL,
    phone_number TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS phone_numbers_account ON phone_numbers(account_sid);

CREATE TABLE IF NOT EXISTS messaging_services (
    sid TEXT PRIMARY KEY,
    account_sid TEXT NOT NULL,
    config TEXT NOT NULL,
    rr_counter INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messaging_services_account ON messaging_services(account_sid);

CREATE TABLE IF NOT EXISTS service_numbers (
    service_sid TEXT NOT NULL,
    number_sid TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (service_sid, number_sid)
);

CREATE TABLE IF NOT EXISTS messages (
    sid TEXT PRIMARY KEY,
    account_sid TEXT NOT NULL,
    messaging_service_sid TEXT,
    direction TEXT NOT NULL,
    from_number TEXT,
    to_number TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    error_code INTEGER,
    num_segments INTEGER NOT NULL,
    num_media INTEGER NOT NULL,
    status_callback TEXT,
    validity_secs INTEGER NOT NULL,
    send_at INTEGER,
    carrier TEXT,
    carrier_message_id TEXT,
    raw_dlr_done_date TEXT,
    provide_feedback INTEGER NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    sent INTEGER
);
CREATE INDEX IF NOT EXISTS messages_account_created ON messages(account_sid, created DESC, sid DESC);
CREATE INDEX IF NOT EXISTS messages_carrier_id ON messages(carrier, carrier_message_id)
    WHERE carrier_message_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_status_updated ON messages(status, updated);

CREATE TABLE IF NOT EXISTS message_events (
    message_sid TEXT NOT NULL,
    status TEXT NOT NULL,
    at INTEGER NOT NULL,
    error_code INTEGER
);
CREATE INDEX IF NOT EXISTS message_events_sid ON message_events(message_sid);

CREATE TABLE IF NOT EXISTS opt_outs (
    account_sid TEXT NOT NULL,
    handset TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (account_sid, handset)
);

CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    run_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    payload TEXT NOT NULL
);
