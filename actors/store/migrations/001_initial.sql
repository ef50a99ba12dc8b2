-- The first central schema: who the agents are, which chats exist, how they are wired
-- together, the live sessions that result, and questions waiting on a person's answer.

CREATE TABLE agent_groups (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    folder      TEXT NOT NULL UNIQUE,  -- directory under data/groups/
    model       TEXT,                  -- NULL: the host's default model
    created_at  TEXT NOT NULL
);

CREATE TABLE messaging_groups (
    id             TEXT PRIMARY KEY,
    channel_type   TEXT NOT NULL,
    platform_id    TEXT NOT NULL,
    name           TEXT,
    is_group       INTEGER NOT NULL DEFAULT 0,
    admin_user_id  TEXT,
    created_at     TEXT NOT NULL,
    UNIQUE (channel_type, platform_id)
);

CREATE TABLE messaging_group_agents (
    id                  TEXT PRIMARY KEY,
    messaging_group_id  TEXT NOT NULL REFERENCES messaging_groups(id) ON DELETE CASCADE,
    agent_group_id      TEXT NOT NULL REFERENCES agent_groups(id) ON DELETE CASCADE,
    -- 'always' | 'mention' | 'prefix:<text>' | 'regex:<pattern>'; checked in Python too,
    -- where the regex can actually be compiled.
    trigger_rule        TEXT NOT NULL DEFAULT 'always'
                        CHECK (trigger_rule IN ('always', 'mention')
                               OR (trigger_rule GLOB 'prefix:?*')
                               OR (trigger_rule GLOB 'regex:?*')),
    session_mode        TEXT NOT NULL CHECK (session_mode IN ('shared', 'per-thread', 'agent-shared')),
    priority            INTEGER NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL,
    UNIQUE (messaging_group_id, agent_group_id)
);

-- The UNIQUE above already indexes by messaging group; this one serves "where is agent X wired".
CREATE INDEX messaging_group_agents_by_agent ON messaging_group_agents (agent_group_id);

CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY,
    agent_group_id      TEXT NOT NULL REFERENCES agent_groups(id) ON DELETE CASCADE,
    -- SET NULL: an agent-shared session outlives any one chat it was reached from.
    messaging_group_id  TEXT REFERENCES messaging_groups(id) ON DELETE SET NULL,
    thread_id           TEXT,
    session_key         TEXT NOT NULL UNIQUE,
    status              TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')),
    created_at          TEXT NOT NULL,
    last_active_at      TEXT NOT NULL
);

CREATE INDEX sessions_by_agent ON sessions (agent_group_id);
CREATE INDEX sessions_by_messaging_group ON sessions (messaging_group_id);
CREATE INDEX sessions_by_status ON sessions (status);

CREATE TABLE pending_questions (
    id              TEXT PRIMARY KEY,
    session_id      TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    message_out_id  TEXT NOT NULL,
    question        TEXT NOT NULL,
    options         TEXT NOT NULL,  -- JSON list of strings
    platform_id     TEXT,
    channel_type    TEXT,
    thread_id       TEXT,
    status          TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'answered', 'expired')),
    answer          TEXT,
    created_at      TEXT NOT NULL,
    answered_at     TEXT
);

CREATE INDEX pending_questions_by_session ON pending_questions (session_id, status);
CREATE INDEX pending_questions_by_platform ON pending_questions (channel_type, platform_id, status);
