from __future__ import annotations

from collections.abc import Iterator

import pykka
import pytest

from tests.fakes.fake_messages_api import FakeMessagesAPI


@pytest.fixture(autouse=True)
def _stop_all_actors() -> Iterator[None]:
    """Every test leaves no actor behind, even when it fails halfway."""
    yield
    pykka.ActorRegistry.stop_all(block=True, timeout=10)


@pytest.fixture
def api() -> Iterator[FakeMessagesAPI]:
    """A fake Messages API on loopback (tests/fakes/fake_messages_api.py), for any test that
    talks to the model; one with a responder of its own starts its own."""
    with FakeMessagesAPI() as server:
        yield server
