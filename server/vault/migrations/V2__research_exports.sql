-- Research consent and anonymized exports (MISSION.md decision 7).

-- Hospitals are members of the consortium; insurers, research institutes and government agencies
-- are data recipients that patients may consent to.
ALTER TABLE organizations
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'hospital'
        CHECK (kind IN ('hospital', 'insurer', 'research', 'government'));

-- A grant goes to a doctor (scopes read and write) or to a recipient organization (scope
-- research, bit 4), never both.
ALTER TABLE grants ALTER COLUMN grantee_id DROP NOT NULL;
ALTER TABLE grants ADD COLUMN grantee_organization_id UUID REFERENCES organizations (id);
ALTER TABLE grants ADD CONSTRAINT grants_one_grantee CHECK (
    (grantee_id IS NOT NULL AND grantee_organization_id IS NULL AND scope & 4 = 0)
    OR (grantee_id IS NULL AND grantee_organization_id IS NOT NULL AND scope = 4));
CREATE INDEX grants_by_grantee_organization ON grants (grantee_organization_id, patient_id)
    WHERE revoked_at IS NULL;

-- The most detail and the least anonymity an export requested by a recipient role may ask for,
-- set by an admin. A role without a ceiling cannot export.
CREATE TABLE export_ceilings (
    role        TEXT PRIMARY KEY CHECK (role IN ('insurer', 'researcher', 'government')),
    ceiling     JSONB NOT NULL,
    set_by      UUID NOT NULL REFERENCES users (id),
    set_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One requested export and its progress. The files live in the server's export directory; the
-- manifest (anonymized counts and hashes, no health data) is kept here for the recipient and the
-- auditor.
CREATE TABLE export_jobs (
    id               UUID PRIMARY KEY,
    requested_by     UUID NOT NULL REFERENCES users (id),
    organization_id  UUID NOT NULL REFERENCES organizations (id),
    policy           JSONB NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    progress_done    BIGINT NOT NULL DEFAULT 0,
    progress_total   BIGINT NOT NULL DEFAULT 0,
    failure          TEXT,
    manifest         JSONB,
    manifest_sha3    BYTEA,
    anchor_outbox_id BIGINT REFERENCES anchor_outbox (id),
    -- Refreshed while the job's server works on it; an unfinished job whose heartbeat stopped
    -- was abandoned by a server that stopped, and no longer blocks its organization.
    heartbeat_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at      TIMESTAMPTZ,
    CHECK ((status = 'succeeded') = (manifest IS NOT NULL))
);
CREATE INDEX export_jobs_by_organization ON export_jobs (organization_id, id);
-- One unfinished export per recipient organization at a time.
CREATE UNIQUE INDEX export_jobs_one_unfinished ON export_jobs (organization_id)
    WHERE status IN ('queued', 'running');
