"""One channel future for a message several sessions take."""

from __future__ import annotations

from typing import Any

import pykka
import pytest

from actors.stored import split

pytestmark = pytest.mark.timeout(10)


def test_the_channel_hears_once_every_session_has_committed() -> None:
    outer: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
    first, second = split(outer, 2)
    second.set("row-b")
    with pytest.raises(pykka.Timeout):
        outer.get(timeout=0)
    first.set("row-a")
    assert outer.get(timeout=1) == "row-a"


def test_the_first_failure_is_what_the_channel_hears() -> None:
    outer: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
    first, second = split(outer, 2)
    first.set("row-a")
    error = ValueError("the session's folder cannot be set up")
    second.set_exception((ValueError, error, None))
    with pytest.raises(ValueError, match="cannot be set up"):
        outer.get(timeout=1)


def test_a_single_part_is_the_channels_future_in_effect() -> None:
    outer: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
    (only,) = split(outer, 1)
    only.set("row")
    assert outer.get(timeout=1) == "row" and only.get(timeout=1) == "row"
