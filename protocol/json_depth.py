"""How deep a JSON text nests, found without recursing: decoders recurse once per level, so
a line of 100k '[' raises RecursionError in them. Used on what strangers send (the local
chat's lines, webhook bodies) before it is decoded."""

from __future__ import annotations

import itertools
import operator
import re
from typing import Final

# A JSON string literal, possessive so that scanning is linear even on a text of quotes and
# backslashes; an unterminated one runs to the end (the text is then not JSON anyway, and
# the decoder says so).
_STRING_LITERAL: Final = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKETS: Final = bytes(sorted(set(range(256)) - set(b"[]{}")))
# An opener becomes 2 and a closer 0: after k brackets, 2 * openers - k = openers - closers,
# the depth there.
_BRACKET_STEPS: Final = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


def nests_deeper(text: bytes, limit: int) -> bool:
    """Whether arrays and objects in `text` nest deeper than `limit`."""
    if text.count(b"[") + text.count(b"{") <= limit:
        return False  # the usual case: too few brackets to nest that deep, strings or not
    steps = _STRING_LITERAL.sub(b"", text).translate(_BRACKET_STEPS, delete=_NOT_BRACKETS)
    # accumulate, map and count run in C, so even a text of brackets costs a few tens of ms.
    depths = map(operator.sub, itertools.accumulate(steps), itertools.count(1))
    return max(depths, default=0) > limit
