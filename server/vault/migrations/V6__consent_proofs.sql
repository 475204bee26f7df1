-- Consent proofs (MISSION.md decisions 4 and 5): every grant is a leaf of its hospital's consent
-- tree, every doctor's access opens with a Groth16 proof against that tree's root, and the proof
-- stays as evidence. Field elements are stored as their 32 canonical little-endian bytes.

-- The commitment to a doctor's grantee secret; the secret itself never reaches the server.
CREATE TABLE grantee_keys (
    user_id        UUID PRIMARY KEY REFERENCES users (id),
    commitment     BYTEA NOT NULL CHECK (length(commitment) = 32),
    registered_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One consent tree per hospital: its depth, how many leaves it holds, and its current state.
CREATE TABLE consent_trees (
    hospital_id  UUID PRIMARY KEY REFERENCES organizations (id),
    depth        INTEGER NOT NULL CHECK (depth >= 1),
    leaf_count   BIGINT NOT NULL CHECK (leaf_count >= 0),
    sequence     BIGINT NOT NULL CHECK (sequence >= 0),
    root         BYTEA NOT NULL CHECK (length(root) = 32)
);

-- Every leaf ever appended, in tree order. A leaf is never moved; revoking it zeroes `leaf` and
-- records the change that did.
CREATE TABLE consent_leaves (
    hospital_id         UUID NOT NULL REFERENCES consent_trees (hospital_id),
    leaf_index          BIGINT NOT NULL CHECK (leaf_index >= 0),
    grant_id            UUID NOT NULL REFERENCES grants (id),
    grantee_commitment  BYTEA NOT NULL CHECK (length(grantee_commitment) = 32),
    salt                BYTEA NOT NULL CHECK (length(salt) = 32),
    leaf                BYTEA NOT NULL CHECK (length(leaf) = 32),
    added_sequence      BIGINT NOT NULL,
    revoked_sequence    BIGINT,
    PRIMARY KEY (hospital_id, leaf_index)
);
-- A grant has one live leaf; a key rotation zeroes it and appends the grant's new one.
CREATE UNIQUE INDEX consent_leaves_live ON consent_leaves (grant_id)
    WHERE revoked_sequence IS NULL;

-- Every root a tree has had, with when it became current, whom the change touched (a key
-- rotation touches all of a doctor's patients: `patient_id` NULL) and its outbox entry.
CREATE TABLE consent_roots (
    hospital_id      UUID NOT NULL REFERENCES consent_trees (hospital_id),
    sequence         BIGINT NOT NULL CHECK (sequence >= 1),
    root             BYTEA NOT NULL CHECK (length(root) = 32),
    recorded_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    grantee_id       UUID,
    patient_id       UUID,
    anchor_outbox_id BIGINT NOT NULL REFERENCES anchor_outbox (id),
    PRIMARY KEY (hospital_id, sequence)
);
CREATE INDEX consent_roots_by_root ON consent_roots (hospital_id, root);

-- The verifying keys this server has verified proofs with, each anchored as a VerifyingKey entry.
-- The key is public; it is kept so that an auditor can check old proofs with the key of their day.
CREATE TABLE consent_verifying_keys (
    key_sha3          BYTEA PRIMARY KEY CHECK (length(key_sha3) = 32),
    depth             INTEGER NOT NULL,
    verifying_key     BYTEA NOT NULL,
    anchor_outbox_id  BIGINT NOT NULL REFERENCES anchor_outbox (id),
    first_used_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Single-use challenges, bound to the bearer session they were issued to.
CREATE TABLE consent_challenges (
    challenge       BYTEA PRIMARY KEY CHECK (length(challenge) = 32),
    session_sha256  BYTEA NOT NULL REFERENCES sessions (token_sha256),
    patient_id      UUID NOT NULL,
    scope           INTEGER NOT NULL CHECK (scope > 0),
    issued_at       TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    used_at         TIMESTAMPTZ
);
CREATE INDEX consent_challenges_expired ON consent_challenges (expires_at);

-- A consent session: what one verified proof opened, for one bearer session, patient and scope.
-- The proof and its public inputs are kept as the evidence an auditor checks.
CREATE TABLE consent_sessions (
    id               UUID PRIMARY KEY,
    session_sha256   BYTEA NOT NULL REFERENCES sessions (token_sha256),
    doctor_id        UUID NOT NULL REFERENCES users (id),
    patient_id       UUID NOT NULL REFERENCES users (id),
    hospital_id      UUID NOT NULL,
    grant_id         UUID NOT NULL REFERENCES grants (id),
    scope            INTEGER NOT NULL CHECK (scope > 0),
    opened_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at       TIMESTAMPTZ NOT NULL,
    ended_at         TIMESTAMPTZ,
    root_sequence    BIGINT NOT NULL,
    verifying_key_sha3 BYTEA NOT NULL REFERENCES consent_verifying_keys (key_sha3),
    public_inputs    BYTEA NOT NULL,
    proof            BYTEA NOT NULL,
    FOREIGN KEY (hospital_id, root_sequence) REFERENCES consent_roots (hospital_id, sequence)
);
CREATE INDEX consent_sessions_open ON consent_sessions (session_sha256, patient_id)
    WHERE ended_at IS NULL;
CREATE INDEX consent_sessions_by_grant ON consent_sessions (grant_id) WHERE ended_at IS NULL;

-- An allowed doctor access names the consent session it used; an opened session names its log line.
ALTER TABLE access_log ADD COLUMN consent_session_id UUID REFERENCES consent_sessions (id);
