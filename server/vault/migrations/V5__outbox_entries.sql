-- Outbox rows carry the chain entry they stand for, in the chain's canonical encoding
-- (`Entry::canonical_bytes` of medvault-anchor-chain), instead of a kind name and a 32-byte
-- leaf: consent roots, access-log batches and verifying keys then fit without new kinds.
ALTER TABLE anchor_outbox ADD COLUMN entry BYTEA;
UPDATE anchor_outbox SET entry = CASE kind
    WHEN 'record_version' THEN '\x01'::bytea || leaf
    WHEN 'export_manifest' THEN '\x03'::bytea || leaf
END;
-- A row of any other kind leaves `entry` NULL and fails the migration here, before anything
-- is dropped.
ALTER TABLE anchor_outbox ALTER COLUMN entry SET NOT NULL;
ALTER TABLE anchor_outbox DROP COLUMN kind, DROP COLUMN leaf;
