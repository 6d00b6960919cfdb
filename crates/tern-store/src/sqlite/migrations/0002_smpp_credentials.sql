-- SMPP credentials: the logins customers bind to Tern's SMPP server with. A bind names
-- only a system_id, so it is unique across all accounts. password_hash is an argon2id
-- PHC string.
CREATE TABLE IF NOT EXISTS smpp_credentials (
    sid TEXT PRIMARY KEY,
    account_sid TEXT NOT NULL,
    system_id TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    friendly_name TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS smpp_credentials_account ON smpp_credentials(account_sid, created, sid);
