from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.store.db import Store, open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """An empty central DB (hutch.db) of the test's own; a test module may seed its own."""
    with open_store(tmp_path / "hutch.db") as opened:
        yield opened
