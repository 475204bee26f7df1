-- `audit db` run for an auditor through the API, as a background job: one at a time, its
-- report (ids and counts, never health data) kept with it. A running job's server refreshes
-- its heartbeat; one silent for 30 s was abandoned by a server that stopped.
CREATE TABLE database_audits (
    id            UUID PRIMARY KEY,
    requested_by  UUID NOT NULL REFERENCES users (id),
    status        TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    report        JSONB,
    failure       TEXT,
    heartbeat_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at   TIMESTAMPTZ,
    CHECK ((status = 'succeeded') = (report IS NOT NULL))
);
CREATE UNIQUE INDEX database_audits_one_running ON database_audits (status)
    WHERE status = 'running';
