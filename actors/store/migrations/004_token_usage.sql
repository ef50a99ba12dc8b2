-- What the agents' model calls used, as the credential proxy read it from each response:
-- one row per UTC day, agent group, session and model, added to per response
-- (docs/ARCHITECTURE.md, "Token accounting"). Money is not stored: it is worked out from
-- the price table when shown, so a corrected price corrects the past too.
CREATE TABLE token_usage (
    day                    TEXT NOT NULL CHECK (day GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
    agent_group_id         TEXT NOT NULL REFERENCES agent_groups(id) ON DELETE CASCADE,
    -- No reference: what a session cost stays counted after the session is gone.
    session_id             TEXT NOT NULL,
    model                  TEXT NOT NULL,
    requests               INTEGER NOT NULL DEFAULT 0 CHECK (requests >= 0),
    input_tokens           INTEGER NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens          INTEGER NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cache_read_tokens      INTEGER NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0),
    cache_write_tokens     INTEGER NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0),
    -- The part of cache_write_tokens written with the one-hour lifetime, billed at 2x input
    -- rather than 1.25x.
    cache_write_1h_tokens  INTEGER NOT NULL DEFAULT 0 CHECK (cache_write_1h_tokens >= 0),
    PRIMARY KEY (day, agent_group_id, session_id, model)
);

-- "What did this group use since ...": budgets and /cost ask it per group.
CREATE INDEX token_usage_by_group ON token_usage (agent_group_id, day);
