-- The record vault. Nothing in these tables is plaintext health data: personal and medical
-- details and record contents are AEAD ciphertexts; what stays in the clear is the metadata the
-- server needs to route, authorize and version (ids, roles, times, versions, hashes).

CREATE TABLE organizations (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id               UUID PRIMARY KEY,
    organization_id  UUID NOT NULL REFERENCES organizations (id),
    username         TEXT NOT NULL UNIQUE,
    role             TEXT NOT NULL CHECK (role IN
                       ('admin', 'doctor', 'patient', 'insurer', 'researcher', 'government', 'auditor')),
    password_hash    TEXT NOT NULL,
    -- Staff only: a patient's name lives encrypted in patient_profile_versions.
    display_name     TEXT,
    specialty        TEXT,
    created_by       UUID REFERENCES users (id),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (role <> 'patient' OR (display_name IS NULL AND specialty IS NULL))
);
CREATE INDEX users_by_role ON users (role, id);
CREATE INDEX users_by_organization ON users (organization_id, role, id);

-- Bearer tokens are stored only as their SHA-256 digest.
CREATE TABLE sessions (
    token_sha256  BYTEA PRIMARY KEY,
    user_id       UUID NOT NULL REFERENCES users (id),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL,
    revoked_at    TIMESTAMPTZ
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Each patient's data key, wrapped by the master key. Deleting the row erases the patient.
CREATE TABLE patient_keys (
    patient_id   UUID PRIMARY KEY REFERENCES users (id),
    wrapped_key  BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE patient_profile_versions (
    patient_id   UUID NOT NULL REFERENCES users (id),
    version      INTEGER NOT NULL CHECK (version >= 1),
    ciphertext   BYTEA NOT NULL,
    author_id    UUID NOT NULL REFERENCES users (id),
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (patient_id, version)
);

CREATE TABLE records (
    id               UUID PRIMARY KEY,
    patient_id       UUID NOT NULL REFERENCES users (id),
    current_version  INTEGER NOT NULL CHECK (current_version >= 1),
    deleted          BOOLEAN NOT NULL DEFAULT false,
    created_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX records_by_patient ON records (patient_id, id) WHERE NOT deleted;

-- Versions are appended, never changed. A tombstone (operation 'delete') has no ciphertext.
CREATE TABLE record_versions (
    record_id          UUID NOT NULL REFERENCES records (id),
    version            INTEGER NOT NULL CHECK (version >= 1),
    operation          TEXT NOT NULL CHECK (operation IN ('create', 'update', 'delete')),
    ciphertext         BYTEA,
    ciphertext_sha3    BYTEA NOT NULL,
    author_id          UUID NOT NULL REFERENCES users (id),
    created_at         TIMESTAMPTZ NOT NULL,
    anchor_leaf        BYTEA NOT NULL,
    PRIMARY KEY (record_id, version),
    CHECK ((operation = 'delete') = (ciphertext IS NULL))
);

-- The per-version content key, wrapped by the patient's data key. Crypto-shredding a version
-- deletes its row here: the ciphertext and its anchored hash stay, unreadable.
CREATE TABLE record_version_keys (
    record_id    UUID NOT NULL,
    version      INTEGER NOT NULL,
    wrapped_key  BYTEA NOT NULL,
    PRIMARY KEY (record_id, version),
    FOREIGN KEY (record_id, version) REFERENCES record_versions (record_id, version)
);

-- Leaves waiting to be anchored on the chain.
CREATE TABLE anchor_outbox (
    id               BIGSERIAL PRIMARY KEY,
    kind             TEXT NOT NULL,
    leaf             BYTEA NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    anchored_height  BIGINT
);
CREATE INDEX anchor_outbox_pending ON anchor_outbox (id) WHERE anchored_height IS NULL;

-- A patient's consent to a grantee. Scope is a bit mask: 1 read, 2 write.
CREATE TABLE grants (
    id          UUID PRIMARY KEY,
    patient_id  UUID NOT NULL REFERENCES users (id),
    grantee_id  UUID NOT NULL REFERENCES users (id),
    scope       INTEGER NOT NULL CHECK (scope > 0),
    expires_at  TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX grants_by_patient ON grants (patient_id, grantee_id) WHERE revoked_at IS NULL;
CREATE INDEX grants_by_grantee ON grants (grantee_id, patient_id) WHERE revoked_at IS NULL;

-- Every read and write of health data, allowed or refused. Appended only.
CREATE TABLE access_log (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor_id    UUID NOT NULL REFERENCES users (id),
    actor_role  TEXT NOT NULL,
    action      TEXT NOT NULL,
    -- Not foreign keys: a refused request may name ids that do not exist.
    patient_id  UUID,
    record_id   UUID,
    outcome     TEXT NOT NULL CHECK (outcome IN ('allowed', 'denied')),
    reason      TEXT
);
CREATE INDEX access_log_by_patient ON access_log (patient_id, id);
