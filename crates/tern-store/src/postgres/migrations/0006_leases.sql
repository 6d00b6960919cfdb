-- Version 6: leases. A row per lease name, never deleted (a release sets expires_at to 0),
-- so that its epoch — the fencing token — only ever grows.

CREATE TABLE leases (
    name TEXT COLLATE "C" PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    epoch BIGINT NOT NULL
);
