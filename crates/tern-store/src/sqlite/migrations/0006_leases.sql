-- Leases. A row per lease name, never deleted (a release sets expires_at to 0), so that
-- its epoch — the fencing token — only ever grows.
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    epoch INTEGER NOT NULL
);
