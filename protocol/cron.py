"""Cron expressions for recurring tasks: one check, so the agent's tool and the host agree
on what a valid recurrence is."""

from __future__ import annotations

from datetime import UTC, datetime

from cronsim import CronSim, CronSimError


class CronError(ValueError):
    """An expression cronsim cannot use; the message quotes it and says why."""


def check_cron(expression: str) -> None:
    """Raise CronError unless `expression` is a valid five-field cron expression.

    Validity does not depend on the time zone the series runs in, so none is asked for."""
    try:
        CronSim(expression, datetime.now(UTC))
    except CronSimError as exc:
        raise CronError(f"{expression!r} is not a valid cron expression: {exc}") from None
