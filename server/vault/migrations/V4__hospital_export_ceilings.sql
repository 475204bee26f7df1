-- An export ceiling belongs to the hospital whose admin set it and bounds exports of that
-- hospital's patients only: one row per (hospital, recipient role) instead of one per role for
-- the whole deployment, where one hospital's admin overwrote the rules another had set.
--
-- A deployment-wide row becomes the ceiling of the hospital of the admin who last set it
-- (`set_by`): that is the one hospital whose admin chose those rules. It is not copied to the
-- other hospitals, which would put their patients under rules their admins never set (the very
-- fault this fixes); until their admins set ceilings of their own, their patients are left out
-- of that role's exports. A row whose setter belongs to no hospital has no owner and is dropped.
ALTER TABLE export_ceilings ADD COLUMN organization_id UUID REFERENCES organizations (id);

UPDATE export_ceilings c SET organization_id = u.organization_id
FROM users u JOIN organizations o ON o.id = u.organization_id AND o.kind = 'hospital'
WHERE u.id = c.set_by;

DELETE FROM export_ceilings WHERE organization_id IS NULL;

ALTER TABLE export_ceilings ALTER COLUMN organization_id SET NOT NULL;
ALTER TABLE export_ceilings DROP CONSTRAINT export_ceilings_pkey;
ALTER TABLE export_ceilings ADD PRIMARY KEY (organization_id, role);

-- The hospitals an export drew on, each with the ceiling its patients were exported under, or
-- none if the hospital had set no ceiling for the role and its patients were left out. Written
-- when the job succeeds; NULL for jobs that failed or ran before this migration.
ALTER TABLE export_jobs ADD COLUMN hospitals JSONB;
