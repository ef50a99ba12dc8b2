"""The default model is the newest Sonnet the installed SDK names, and the feature table
covers exactly the models it names."""

from __future__ import annotations

from typing import get_args

import pytest
from anthropic.types import Model

from protocol.models import (
    DEFAULT_MODEL,
    KNOWN_MODELS,
    UNKNOWN_FEATURES,
    UnusableModelError,
    check_model,
    features,
    version,
)


def _sdk_models() -> list[str]:
    literal, _str = get_args(Model)
    return list(get_args(literal))


def test_the_default_is_the_newest_sonnet_the_sdk_names() -> None:
    named = _sdk_models()
    assert DEFAULT_MODEL in named
    sonnets = [(parsed[1], parsed[2], model) for model in named if (parsed := version(model)) and parsed[0] == "sonnet"]
    assert max(sonnets)[2] == DEFAULT_MODEL


def test_the_feature_table_names_exactly_the_sdks_models() -> None:
    assert sorted(KNOWN_MODELS) == sorted(_sdk_models())


@pytest.mark.parametrize(
    ("model", "thinking", "compaction", "window"),
    [
        ("claude-sonnet-5-5", "adaptive", True, 1_000_000),
        ("claude-sonnet-4-6", "adaptive", True, 200_000),
        ("claude-haiku-4-5-20251001", "enabled", False, 200_000),
        ("claude-sonnet-6-1-20270101", "adaptive", True, 1_000_000),  # newer than the table: by generation
        ("claude-sonnet-4-5", "enabled", False, 200_000),
    ],
)
def test_features_come_from_the_table_or_the_generation(
    model: str, thinking: str, compaction: bool, window: int
) -> None:
    found = features(model)
    assert (found.thinking, found.compaction, found.context_window) == (thinking, compaction, window)
    assert found.clear_tool_uses


def test_a_model_of_no_known_generation_gets_nothing_optional() -> None:
    assert features("claude-3-haiku-20240307") == UNKNOWN_FEATURES
    assert features("claude-custom") == UNKNOWN_FEATURES


def test_check_model_knows_warns_or_refuses() -> None:
    assert check_model(" claude-opus-5-5 ") == ("claude-opus-5-5", None)
    model, warning = check_model("claude-sonnet-9")
    assert model == "claude-sonnet-9"
    assert warning is not None and "does not exist" in warning
    for bad in ("gpt-5", "claude-", "claude-a b", "claude-" + "x" * 120, ""):
        with pytest.raises(UnusableModelError):
            check_model(bad)
