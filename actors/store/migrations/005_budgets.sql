-- A daily and a monthly limit per agent group, in USD and/or tokens (docs/ARCHITECTURE.md,
-- "Budgets"). NULL: no such limit. A group with no row, or a row of NULLs, has no budget.
-- Periods are UTC: a day from 00:00, a month from its first day.
CREATE TABLE budgets (
    agent_group_id  TEXT PRIMARY KEY REFERENCES agent_groups(id) ON DELETE CASCADE,
    daily_usd       REAL CHECK (daily_usd IS NULL OR daily_usd >= 0),
    monthly_usd     REAL CHECK (monthly_usd IS NULL OR monthly_usd >= 0),
    daily_tokens    INTEGER CHECK (daily_tokens IS NULL OR daily_tokens >= 0),
    monthly_tokens  INTEGER CHECK (monthly_tokens IS NULL OR monthly_tokens >= 0),
    updated_at      TEXT NOT NULL
);

-- Which notices the owner was sent, so each is sent once per group, period and level
-- (80: nearly spent; 100: spent, the agents wait). `period_start` is the UTC day, or the
-- first day of the month, the notice was about: a new period starts afresh.
CREATE TABLE budget_notices (
    agent_group_id  TEXT NOT NULL REFERENCES agent_groups(id) ON DELETE CASCADE,
    period          TEXT NOT NULL CHECK (period IN ('day', 'month')),
    period_start    TEXT NOT NULL CHECK (period_start GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
    level           INTEGER NOT NULL CHECK (level IN (80, 100)),
    sent_at         TEXT NOT NULL,
    PRIMARY KEY (agent_group_id, period, period_start, level)
);
