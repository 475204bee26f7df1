-- Failed logins per account (the username as typed, known or not, so that a lock says nothing
-- about whether the account exists) and per client address, shared by every server of the
-- deployment. See server/src/vault/login_throttle.rs.
CREATE TABLE login_throttle (
    scope            TEXT NOT NULL CHECK (scope IN ('account', 'address')),
    subject          TEXT NOT NULL,
    failures         INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    last_failure_at  TIMESTAMPTZ,
    locked_until     TIMESTAMPTZ,
    PRIMARY KEY (scope, subject)
);
CREATE INDEX login_throttle_last_failure ON login_throttle (last_failure_at);

-- A value derived from the master key (an HMAC under it, revealing nothing of the key), written
-- at the first start: every later start checks its key against it before serving, so a wrong or
-- newly generated key is refused instead of sealing new data that the right key cannot open.
CREATE TABLE master_key_check (
    singleton    BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    check_value  BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
