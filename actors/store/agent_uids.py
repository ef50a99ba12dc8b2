"""Which uid each agent group folder's agents run as, when the host runs as root.

A uid is bound to a folder, not to an agent group row: the folder is what the uid owns on
disk, so a group deleted and made again on the same folder gets its files and uid back, and
a uid that once owned files is never given to another folder (docs/ARCHITECTURE.md, "Who an
agent runs as").

An agent runs as the uid and the gid of the same number, so a number that is a uid with an
account or a gid with a group (gid 27 is `sudo` on Debian) is never given: it would hand the
agent someone's files or rights. And a range must start at `FIRST_AGENT_UID` or above: below
it are the system's own accounts and groups (SYS_UID_MAX and SYS_GID_MAX in /etc/login.defs
are 999 by default), which a package may add after the host gave the number out."""

from __future__ import annotations

import grp
import pwd
from dataclasses import dataclass

from actors.store.db import Store, StoreError
from protocol.timeutil import now_ts

# The least uid (and gid) a range may start at; below it are the system's.
FIRST_AGENT_UID = 1000


class UidRangeExhaustedError(StoreError):
    """Every uid of the configured range is taken."""


@dataclass(frozen=True)
class UidRange:
    """`first`..`last`, both included: the uids the host may give agent groups."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not (0 < self.first <= self.last < 2**32 - 1):
            raise ValueError(f"uid range {self.first}-{self.last}: expected 0 < first <= last < 4294967295")
        if self.first < FIRST_AGENT_UID:
            raise ValueError(
                f"uid range {self.first}-{self.last} starts below {FIRST_AGENT_UID}, among the system's own users "
                f"and groups; start it at {FIRST_AGENT_UID} or above (the default is 1000000-1099999)"
            )

    @classmethod
    def parse(cls, text: str) -> UidRange:
        """`"1000000-1099999"`; ValueError naming the text otherwise."""
        first, sep, last = text.strip().partition("-")
        if not sep or not first.strip().isdigit() or not last.strip().isdigit():
            raise ValueError(f"{text!r} is not a uid range like 1000000-1099999")
        return cls(int(first), int(last))

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, int) and self.first <= uid <= self.last

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


def uid_for_folder(store: Store, folder: str, uids: UidRange) -> int:
    """The folder's uid: the one it has if it lies in `uids`, else the lowest free one,
    recorded. A number that is a uid with an account or a gid with a group on this machine
    is skipped: the agent runs as both, and their files are someone's."""
    with store.transaction() as conn:
        row = conn.execute("SELECT uid FROM agent_uids WHERE folder = ?", (folder,)).fetchone()
        if row is not None and row[0] in uids:
            return int(row[0])
        taken = {
            int(uid)
            for (uid,) in conn.execute("SELECT uid FROM agent_uids WHERE uid BETWEEN ? AND ?", (uids.first, uids.last))
        }
        uid = _first_free(uids, taken)
        if row is None:
            conn.execute("INSERT INTO agent_uids (folder, uid, assigned_at) VALUES (?, ?, ?)", (folder, uid, now_ts()))
        else:  # the range changed: the folder moves to a uid of the new one
            conn.execute("UPDATE agent_uids SET uid = ?, assigned_at = ? WHERE folder = ?", (uid, now_ts(), folder))
        return uid


def _first_free(uids: UidRange, taken: set[int]) -> int:
    for uid in range(uids.first, uids.last + 1):
        if uid not in taken and not _in_use(uid):
            return uid
    raise UidRangeExhaustedError(f"every uid in {uids} is taken; widen HUTCH_AGENT_UIDS")


def _in_use(number: int) -> bool:
    """Whether the machine knows `number` as a user's uid or a group's gid."""
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(number)
        except KeyError:
            continue
        return True
    return False
