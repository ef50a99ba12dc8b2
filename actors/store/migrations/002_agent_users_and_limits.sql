-- Agents no longer share the host's uid: each agent group's folder belongs to a uid of its
-- own, kept here by folder (the folder is what the uid owns on disk). A row outlives its
-- agent group on purpose: a uid that owned files is never handed to another folder.
CREATE TABLE agent_uids (
    folder       TEXT PRIMARY KEY,
    uid          INTEGER NOT NULL UNIQUE CHECK (uid > 0),
    assigned_at  TEXT NOT NULL
);

-- What one agent group's agents may use; NULL: the host's default (HUTCH_AGENT_*).
ALTER TABLE agent_groups ADD COLUMN cpus REAL CHECK (cpus IS NULL OR cpus > 0);
ALTER TABLE agent_groups ADD COLUMN memory_mb INTEGER CHECK (memory_mb IS NULL OR memory_mb >= 64);
ALTER TABLE agent_groups ADD COLUMN pids INTEGER CHECK (pids IS NULL OR pids >= 16);
ALTER TABLE agent_groups ADD COLUMN shm_mb INTEGER CHECK (shm_mb IS NULL OR shm_mb >= 1);
