"""protocol/json_depth.py: nesting measured without recursing, strings not counted."""

from __future__ import annotations

import pytest

from protocol.json_depth import nests_deeper

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("text", "limit", "deeper"),
    [
        (b'{"a": [1, {"b": 2}]}', 3, False),
        (b'{"a": [1, {"b": 2}]}', 2, True),
        (b'{"a": "[[[[[[[[[[[[[[[["}', 2, False),  # brackets in a string are no nesting
        (b'{"a": "\\"[[[[[[[[[["}', 2, False),  # nor after an escaped quote
        (b"[]" * 1000, 1, False),  # many, but side by side
    ],
)
def test_depth_is_counted_outside_strings(text: bytes, limit: int, deeper: bool) -> None:
    assert nests_deeper(text, limit) is deeper


def test_a_hundred_thousand_openers_are_measured_not_recursed() -> None:
    assert nests_deeper(b"[" * 100_000, 64)
