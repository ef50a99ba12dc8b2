"""Whether this machine gives enough inotify instances for the agents the host may run.

Each agent's inbox watches its session folder with one inotify instance, and instances are
counted per user (`fs.inotify.max_user_instances`, often 128), shared with everything else
that user runs. An agent that cannot get one falls back to polling; the host says so up
front rather than leaving it to be found in the agents' logs."""

from __future__ import annotations

from pathlib import Path

LIMIT_FILE = Path("/proc/sys/fs/inotify/max_user_instances")
# The host's own watcher, and room for the rest of the user's programs.
_HEADROOM = 8


def inotify_shortfall(max_agents: int, limit_file: Path = LIMIT_FILE) -> str | None:
    """A warning when the limit is below what `max_agents` agents and the host need."""
    try:
        limit = int(limit_file.read_text().strip())
    except (OSError, ValueError):
        return None  # not Linux, or not readable: nothing to say
    needed = max_agents + _HEADROOM
    if limit >= needed:
        return None
    return (
        f"fs.inotify.max_user_instances is {limit}, but {max_agents} agents and the host need about {needed}; "
        f"agents past the limit poll instead of being woken (raise it: sysctl fs.inotify.max_user_instances={needed})"
    )
