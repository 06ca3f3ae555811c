-- guoku web portal sessions and second factors, PostgreSQL. Kept in step with
-- ../sqlite/0005_sessions.sql, which explains the tables.

CREATE TABLE portal_sessions (
    id_sha256    BYTEA  PRIMARY KEY CHECK (length(id_sha256) = 32),
    user_id      BIGINT NOT NULL REFERENCES access_users (id),
    stage        TEXT   NOT NULL CHECK (stage IN ('second_factor', 'signed_in')),
    csrf_token   BYTEA  NOT NULL CHECK (length(csrf_token) = 32),
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL CHECK (last_seen_at >= created_at),
    idle_until   BIGINT NOT NULL CHECK (idle_until <= expires_at),
    expires_at   BIGINT NOT NULL CHECK (expires_at > created_at)
);
CREATE INDEX portal_sessions_user ON portal_sessions (user_id);
CREATE INDEX portal_sessions_expiry ON portal_sessions (expires_at);

CREATE TABLE portal_totp (
    user_id     BIGINT PRIMARY KEY REFERENCES access_users (id),
    sealed      BYTEA  NOT NULL CHECK (length(sealed) BETWEEN 1 AND 512),
    enrolled_at BIGINT NOT NULL,
    last_step   BIGINT NOT NULL CHECK (last_step >= 0)
);
