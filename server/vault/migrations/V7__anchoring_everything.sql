-- Entries the chain refused (by its rules, not for being unreachable) keep the reason and are
-- not submitted again; an operator sees them with their reason.
ALTER TABLE anchor_outbox ADD COLUMN chain_refusal TEXT;
DROP INDEX anchor_outbox_pending;
CREATE INDEX anchor_outbox_pending ON anchor_outbox (id)
    WHERE anchored_height IS NULL AND chain_refusal IS NULL;

-- The chain this database anchors on, by the hash of its genesis block, recorded the first
-- time anything is anchored: a server configured for another chain refuses to start.
CREATE TABLE anchor_chain (
    only_row    BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    chain_id    BYTEA NOT NULL CHECK (length(chain_id) = 32),
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The access log is anchored in batches: every few seconds (or every 10,000 lines) the
-- anchoring worker seals the lines not yet in a batch under one RFC 9162 Merkle root, whose
-- first leaf binds the batch to its number and to the previous batch's root, and queues the
-- root as an AccessLogBatch entry in the same transaction. Each sealed line keeps its leaf, so
-- that an audit names the lines edited since.
CREATE TABLE access_log_batches (
    number            BIGINT PRIMARY KEY CHECK (number >= 1),
    root              BYTEA NOT NULL CHECK (length(root) = 32),
    line_count        INTEGER NOT NULL CHECK (line_count >= 1),
    first_line        BIGINT NOT NULL,
    last_line         BIGINT NOT NULL,
    sealed_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    anchor_outbox_id  BIGINT NOT NULL REFERENCES anchor_outbox (id)
);
ALTER TABLE access_log
    ADD COLUMN batch_number BIGINT REFERENCES access_log_batches (number),
    ADD COLUMN sealed_leaf BYTEA CHECK (length(sealed_leaf) = 32),
    ADD CHECK ((batch_number IS NULL) = (sealed_leaf IS NULL));
CREATE INDEX access_log_unsealed ON access_log (id) WHERE batch_number IS NULL;
CREATE INDEX access_log_by_batch ON access_log (batch_number, id) WHERE batch_number IS NOT NULL;

-- A patient's pseudonym in record-version leaves: a keyed hash of the patient's id under a key
-- derived from the master key, so it reveals nothing without that key, kept so that an auditor
-- can recompute every leaf from what the database holds without any key. Set when a patient
-- is created; patients created before this migration get theirs when a server next opens the
-- vault with the master key. It outlives an erasure, as the anchors do.
ALTER TABLE users ADD COLUMN anchor_pseudonym BYTEA UNIQUE
    CHECK (anchor_pseudonym IS NULL OR (length(anchor_pseudonym) = 32 AND role = 'patient'));

-- Patients erased at their request (the right to be forgotten): the data key is deleted from
-- patient_keys, so every version and profile is unreadable, while the rows and their anchors
-- stay and `audit db` reports them as erased.
CREATE TABLE patient_erasures (
    patient_id  UUID PRIMARY KEY REFERENCES users (id),
    erased_by   UUID NOT NULL REFERENCES users (id),
    erased_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
