-- The audit log (电子审计): one row per leaf of this node's RFC 6962 tree, written in the same
-- transaction as the change it records. Append-only: a row can be deleted only below a
-- recorded archive point (audit_archived), whose frontier keeps the tree verifiable.
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,      -- the leaf index, from 0, without gaps
    at INTEGER NOT NULL,          -- seconds since the Unix epoch (UTC)
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

-- The next leaf index; its row is locked by every appending transaction.
CREATE TABLE audit_counter (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    next INTEGER NOT NULL
);
INSERT INTO audit_counter (id, next) VALUES (1, 0);
CREATE TRIGGER audit_counter_forward BEFORE UPDATE ON audit_counter
    WHEN NEW.next <> OLD.next + 1 OR NEW.id <> OLD.id
    BEGIN SELECT RAISE(ABORT, 'audit_counter only counts up by one'); END;
CREATE TRIGGER audit_counter_no_delete BEFORE DELETE ON audit_counter
    BEGIN SELECT RAISE(ABORT, 'audit_counter stays'); END;

-- Archived prefixes: leaves below `size` may leave the online store; `frontier` holds the
-- roots of the complete subtrees of the first `size` leaves.
CREATE TABLE audit_archived (
    size INTEGER PRIMARY KEY,
    alg TEXT NOT NULL,
    frontier BLOB NOT NULL,
    at INTEGER NOT NULL
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    WHEN OLD.seq >= (SELECT COALESCE(MAX(size), 0) FROM audit_archived)
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- This node's signed tree heads.
CREATE TABLE audit_heads (
    size INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    alg TEXT NOT NULL,
    root BLOB NOT NULL,
    frontier BLOB NOT NULL,
    signature BLOB NOT NULL,      -- DER of the business seal's signature over the statement
    reason TEXT NOT NULL
);
CREATE TRIGGER audit_heads_no_update BEFORE UPDATE ON audit_heads
    BEGIN SELECT RAISE(ABORT, 'audit_heads is append-only'); END;
CREATE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads
    BEGIN SELECT RAISE(ABORT, 'audit_heads is append-only'); END;

-- Signed tree heads received from the other parties, and what checking them found.
CREATE TABLE audit_peer_heads (
    peer TEXT NOT NULL,
    size INTEGER NOT NULL,
    at INTEGER NOT NULL,
    alg TEXT NOT NULL,
    root BLOB NOT NULL,
    signature BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',  -- pending | consistent | inconsistent
    PRIMARY KEY (peer, size)
);

-- Alarms: a party's heads that do not agree with each other, or a log that does not verify.
CREATE TABLE audit_alarms (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    peer TEXT NOT NULL,
    detail TEXT NOT NULL
);
