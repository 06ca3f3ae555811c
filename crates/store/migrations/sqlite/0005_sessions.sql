-- guoku web portal sessions and second factors, SQLite. Kept in step with
-- ../postgres/0005_sessions.sql.
-- Times are the caller's `now` in unix seconds (the store never reads the clock).

-- Server-side sessions of the web portal. A session is named by a random 256-bit id that
-- only its cookie holds: the table keeps the id's SHA-256, so reading the table does not
-- let anyone act as a user. `stage` is 'second_factor' between a right password and a
-- right code, 'signed_in' afterwards (a new id: the id is rotated at sign-in). A session
-- is live while `now` is before both `idle_until` (moved on by each request, never past
-- `expires_at`) and `expires_at` (the absolute lifetime). `csrf_token` is put in every
-- form of the session and checked on every POST.
CREATE TABLE portal_sessions (
    id_sha256    BLOB    PRIMARY KEY CHECK (length(id_sha256) = 32),
    user_id      INTEGER NOT NULL REFERENCES access_users (id),
    stage        TEXT    NOT NULL CHECK (stage IN ('second_factor', 'signed_in')),
    csrf_token   BLOB    NOT NULL CHECK (length(csrf_token) = 32),
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL CHECK (last_seen_at >= created_at),
    idle_until   INTEGER NOT NULL CHECK (idle_until <= expires_at),
    expires_at   INTEGER NOT NULL CHECK (expires_at > created_at)
) WITHOUT ROWID;
CREATE INDEX portal_sessions_user ON portal_sessions (user_id);
CREATE INDEX portal_sessions_expiry ON portal_sessions (expires_at);

-- A user's TOTP secret (RFC 6238), sealed by the portal (authenticated encryption under
-- the portal's key, bound to the user): the store never holds it in the clear, and no
-- call gives it back unsealed. `last_step` is the last time step a code was accepted for
-- (0: none yet); a code is accepted only for a later step, so none is used twice.
CREATE TABLE portal_totp (
    user_id     INTEGER PRIMARY KEY REFERENCES access_users (id),
    sealed      BLOB    NOT NULL CHECK (length(sealed) BETWEEN 1 AND 512),
    enrolled_at INTEGER NOT NULL,
    last_step   INTEGER NOT NULL CHECK (last_step >= 0)
);
