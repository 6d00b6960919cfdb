-- Version 2: SMPP credentials, the logins customers bind to Tern's SMPP server with. A
-- bind names only a system_id, so it is unique across all accounts (compared bytewise,
-- as SMPP servers compare it). password_hash is an argon2id PHC string.

CREATE TABLE smpp_credentials (
    sid TEXT COLLATE "C" PRIMARY KEY,
    account_sid TEXT COLLATE "C" NOT NULL,
    system_id TEXT COLLATE "C" NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    friendly_name TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX smpp_credentials_account ON smpp_credentials (account_sid, created, sid);
