-- Who may talk to an agent, and when an agent answers in a group (docs/ARCHITECTURE.md,
-- "Who may talk to an agent").

-- What happens to a sender the chat does not know: dropped, or offered a pairing code.
ALTER TABLE messaging_groups ADD COLUMN unknown_senders TEXT NOT NULL DEFAULT 'drop'
    CHECK (unknown_senders IN ('drop', 'pair'));

-- A chat's people and their roles; the channel's owner (configured) needs no row.
CREATE TABLE members (
    messaging_group_id  TEXT NOT NULL REFERENCES messaging_groups(id) ON DELETE CASCADE,
    user_id             TEXT NOT NULL,
    role                TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    name                TEXT,
    added_at            TEXT NOT NULL,
    PRIMARY KEY (messaging_group_id, user_id)
);

-- The one admin a chat had becomes a member with that role.
INSERT INTO members (messaging_group_id, user_id, role, name, added_at)
    SELECT id, admin_user_id, 'admin', NULL, created_at FROM messaging_groups WHERE admin_user_id IS NOT NULL;
ALTER TABLE messaging_groups DROP COLUMN admin_user_id;

-- A stranger's request to talk to an agent, decided by the owner.
CREATE TABLE pairing_requests (
    code                TEXT PRIMARY KEY,
    messaging_group_id  TEXT NOT NULL REFERENCES messaging_groups(id) ON DELETE CASCADE,
    user_id             TEXT NOT NULL,
    user_name           TEXT,
    status              TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'refused')),
    created_at          TEXT NOT NULL,
    decided_at          TEXT
);
CREATE UNIQUE INDEX pairing_requests_one_open ON pairing_requests (messaging_group_id, user_id)
    WHERE status = 'pending';

-- The wiring's trigger rules as the reference has them, and what a message that does not
-- trigger becomes (context for the next turn, or nothing). SQLite cannot change a CHECK in
-- place, so the table is made again; 'regex:' rules become 'pattern:'.
CREATE TABLE messaging_group_agents_new (
    id                  TEXT PRIMARY KEY,
    messaging_group_id  TEXT NOT NULL REFERENCES messaging_groups(id) ON DELETE CASCADE,
    agent_group_id      TEXT NOT NULL REFERENCES agent_groups(id) ON DELETE CASCADE,
    trigger_rule        TEXT NOT NULL DEFAULT 'always'
                        CHECK (trigger_rule IN ('always', 'mention', 'mention-sticky')
                               OR (trigger_rule GLOB 'pattern:?*')
                               OR (trigger_rule GLOB 'sender-scope:?*')
                               OR (trigger_rule GLOB 'prefix:?*')),
    untriggered         TEXT NOT NULL DEFAULT 'context' CHECK (untriggered IN ('context', 'drop')),
    session_mode        TEXT NOT NULL CHECK (session_mode IN ('shared', 'per-thread', 'agent-shared')),
    priority            INTEGER NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL,
    UNIQUE (messaging_group_id, agent_group_id)
);
INSERT INTO messaging_group_agents_new
    (id, messaging_group_id, agent_group_id, trigger_rule, untriggered, session_mode, priority, created_at)
    SELECT id, messaging_group_id, agent_group_id,
           CASE WHEN trigger_rule GLOB 'regex:*' THEN 'pattern:' || substr(trigger_rule, 7) ELSE trigger_rule END,
           'context', session_mode, priority, created_at
    FROM messaging_group_agents;
DROP TABLE messaging_group_agents;
ALTER TABLE messaging_group_agents_new RENAME TO messaging_group_agents;
CREATE INDEX messaging_group_agents_by_agent ON messaging_group_agents (agent_group_id);

-- mention-sticky: the threads (or chats: thread '') where a wiring was mentioned.
CREATE TABLE sticky_threads (
    wiring_id   TEXT NOT NULL REFERENCES messaging_group_agents(id) ON DELETE CASCADE,
    thread_key  TEXT NOT NULL,
    since       TEXT NOT NULL,
    PRIMARY KEY (wiring_id, thread_key)
);

-- Webhooks into agents: POST /hooks/<route>, signed with the route's secret.
CREATE TABLE webhook_routes (
    route           TEXT PRIMARY KEY CHECK (length(route) BETWEEN 1 AND 64 AND route NOT GLOB '*[^A-Za-z0-9_-]*'),
    secret          TEXT NOT NULL CHECK (length(secret) >= 16),
    agent_group_id  TEXT NOT NULL REFERENCES agent_groups(id) ON DELETE CASCADE,
    created_at      TEXT NOT NULL
);
