"""Numbers from environment variables, parsed the same way by the host and the container.

An empty or missing variable means the default; anything else must be a finite number (and
positive or whole where asked); the error names the variable and its value."""

from __future__ import annotations

import math
from collections.abc import Mapping


class EnvNumberError(ValueError):
    """A variable that is not the number it must be; the message names it."""


def env_number(env: Mapping[str, str], name: str, default: float, *, positive: bool = False) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise EnvNumberError(f"{name}={raw!r} is not a number") from None
    # float() takes "inf" and "nan"; as a timeout or an interval either would never end.
    if not math.isfinite(value):
        raise EnvNumberError(f"{name}={raw!r} is not a finite number")
    if positive and value <= 0:
        raise EnvNumberError(f"{name}={raw!r} must be positive")
    return value


def env_whole_number(env: Mapping[str, str], name: str, default: int, *, minimum: int | None = None) -> int:
    if not env.get(name):
        return default
    value = env_number(env, name, default)
    if not value.is_integer():
        raise EnvNumberError(f"{name}={env.get(name)!r} is not a whole number")
    if minimum is not None and value < minimum:
        raise EnvNumberError(f"{name}={env.get(name)!r} must be at least {minimum}")
    return int(value)
