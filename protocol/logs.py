"""Logging, set up the same way by the host and by every agent: one line per record, on
stderr.

An agent's lines are read by the host, which logs each one again under its own time and the
session's tag (`hutch.agent: [tag] ...`); so an agent's own format carries no time of its own,
and its lines do not show two."""

from __future__ import annotations

import logging
import sys

HOST_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
AGENT_FORMAT = "%(levelname)s %(name)s: %(message)s"


def level_name(level: str) -> str:
    """The standard level that `level` names, in any case (`debug` -> `DEBUG`); ValueError
    for anything else."""
    name = level.strip().upper()
    if not isinstance(logging.getLevelNamesMapping().get(name), int):
        raise ValueError(f"{level!r} is not a log level: expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return name


def setup_logging(level: str, log_format: str) -> None:
    """Log records of `level` and above to stderr in `log_format` (HOST_FORMAT or AGENT_FORMAT)."""
    logging.basicConfig(level=level_name(level), format=log_format, stream=sys.stderr)
    # The channel libraries' HTTP client logs a line per request at INFO (a long poll every
    # 30 s): worth seeing only when something is wrong.
    logging.getLogger("httpx").setLevel(logging.WARNING)
