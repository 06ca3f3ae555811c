-- The audit log (电子审计): one row per leaf of this node's RFC 6962 tree, written in the same
-- transaction as the change it records. Append-only: a row can be deleted only below a
-- recorded archive point (audit_archived), whose frontier keeps the tree verifiable. On a
-- deployment with separate roles, the application's role is granted only SELECT and INSERT
-- here (see docs/audit.md).
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    post TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    result TEXT NOT NULL,
    source TEXT NOT NULL,
    request_id TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_log_object ON audit_log (object, seq);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_at ON audit_log (at, seq);

CREATE TABLE audit_counter (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    next BIGINT NOT NULL
);
INSERT INTO audit_counter (id, next) VALUES (1, 0);
CREATE FUNCTION audit_counter_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.next = OLD.next + 1 THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_counter only counts up by one';
END $$;
CREATE TRIGGER audit_counter_forward BEFORE UPDATE OR DELETE ON audit_counter
    FOR EACH ROW EXECUTE FUNCTION audit_counter_forward();

CREATE TABLE audit_archived (
    size BIGINT PRIMARY KEY,
    alg TEXT NOT NULL,
    frontier BYTEA NOT NULL,
    at BIGINT NOT NULL
);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND OLD.seq < (SELECT COALESCE(MAX(size), 0) FROM audit_archived) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE audit_heads (
    size BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    alg TEXT NOT NULL,
    root BYTEA NOT NULL,
    frontier BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    reason TEXT NOT NULL
);
CREATE FUNCTION audit_heads_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_heads is append-only';
END $$;
CREATE TRIGGER audit_heads_append_only BEFORE UPDATE OR DELETE ON audit_heads
    FOR EACH ROW EXECUTE FUNCTION audit_heads_append_only();

-- TRUNCATE skips row triggers: refuse it on the log and the heads too.
CREATE FUNCTION audit_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_no_truncate();
CREATE TRIGGER audit_heads_no_truncate BEFORE TRUNCATE ON audit_heads
    FOR EACH STATEMENT EXECUTE FUNCTION audit_no_truncate();
CREATE TRIGGER audit_counter_no_truncate BEFORE TRUNCATE ON audit_counter
    FOR EACH STATEMENT EXECUTE FUNCTION audit_no_truncate();

CREATE TABLE audit_peer_heads (
    peer TEXT NOT NULL,
    size BIGINT NOT NULL,
    at BIGINT NOT NULL,
    alg TEXT NOT NULL,
    root BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    received_at BIGINT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    PRIMARY KEY (peer, size)
);

CREATE TABLE audit_alarms (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    peer TEXT NOT NULL,
    detail TEXT NOT NULL
);
