"""Is a session's agent dead or stuck? Decided from what it leaves on disk: its `processing`
acks and the mtime of `.heartbeat` (docs/ARCHITECTURE.md, invariant 4).

The reference implementation killed slow but healthy work with a wall-clock limit, and
killed a fresh agent for a dead one's leftover acks; hence a claim counts only against the
agent that made it, and a missing heartbeat only once the agent had time to write one.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

from actors.session.info import SessionSettings
from actors.session.outbound_reader import parse_container_ts
from protocol.rows import ProcessingAck

# `started_at` is taken once the runtime returns, and the container's clock may lag the
# host's: a claim stamped this much earlier is still the new agent's.
_START_SLACK = timedelta(seconds=1)


def claims_since(acks: Mapping[str, ProcessingAck], started_at: datetime) -> dict[str, ProcessingAck]:
    """The `processing` acks made by the agent started at `started_at`; older ones are a
    predecessor's leftovers, which the agent clears when it starts."""
    return {
        key: ack
        for key, ack in acks.items()
        if ack.status == "processing" and parse_container_ts(ack.status_changed) >= started_at - _START_SLACK
    }


def heartbeat_mtime(path: Path) -> float | None:
    """The heartbeat's mtime; a link or anything but a plain file counts as no beat (the agent
    made it, and a link would let it show any file's time)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None  # not started yet, or removed before this agent started
    return st.st_mtime if stat.S_ISREG(st.st_mode) else None


def agent_problem(
    now: datetime,
    started_at: datetime,
    heartbeat: float | None,
    claims: Mapping[str, ProcessingAck],
    settings: SessionSettings,
) -> str | None:
    """Why the agent holding `claims` should be killed, or None while it looks alive.
    `heartbeat` is the mtime of `.heartbeat`, None when there is none."""
    if not claims:
        return None  # an agent with nothing to do is idle, not stuck
    stale = timedelta(seconds=settings.stale_heartbeat_s)
    beat = datetime.fromtimestamp(heartbeat, now.tzinfo) if heartbeat is not None else None
    if beat is None and now - started_at > stale:
        return f"no heartbeat in {stale.total_seconds():.0f} s since it started"
    if beat is not None and now - beat > stale:
        return f"last heartbeat {(now - beat).total_seconds():.0f} s ago"
    oldest = min(parse_container_ts(ack.status_changed) for ack in claims.values())
    if now - oldest > timedelta(seconds=settings.claim_ceiling_s):
        return f"a message has been processing for {(now - oldest).total_seconds():.0f} s"
    return None


def unclaimed_problem(
    now: datetime, started_at: datetime, due_since: datetime | None, settings: SessionSettings
) -> str | None:
    """Why an agent that claims nothing should be killed: work has been due for longer than
    the deadline (counted from its start at the earliest) and it took none of it. A busy agent
    is never judged so: its queue waits for its turn; a half-dead one (its inbox gone, its
    heartbeat still beating) is."""
    if due_since is None:
        return None
    waited = now - max(started_at, due_since)
    if waited > timedelta(seconds=settings.unclaimed_deadline_s):
        return f"work has been due for {waited.total_seconds():.0f} s and the agent took none of it"
    return None
