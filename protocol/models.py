"""Which Claude model agents use by default, and what each model supports, in one place both
sides read: the host (the default it hands agents, `/model` and `hutch groups set` checking a
name) and the agent (which request features to send).

The default is the newest Sonnet the installed `anthropic` SDK names (`anthropic.types.Model`);
a test holds the two together, so an SDK upgrade that names a newer Sonnet fails until the
default moves. The API is the authority on what a model accepts; this table is what hutch
relies on without asking it (the proxy forwards only `/v1/messages` and `count_tokens`, so an
agent cannot read `/v1/models`' capabilities)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

DEFAULT_MODEL: Final = "claude-sonnet-5-5"

# How a model takes extended thinking: `adaptive` (the model decides; `thinking: {"type":
# "adaptive"}`, from the 4.6 generation on, and the only form the 5 family accepts), `enabled`
# (a caller-set `budget_tokens`, 4.5 and older), or `none` (unknown: send no `thinking`).
Thinking = Literal["adaptive", "enabled", "none"]


@dataclass(frozen=True)
class ModelFeatures:
    thinking: Thinking
    # The API's context editing (`context_management` with `clear_tool_uses_20250919`, beta
    # `context-management-2025-06-27`).
    clear_tool_uses: bool
    # Server-side compaction (`compact_20260112`), from the 4.6 generation on.
    compaction: bool
    # Input tokens the model takes (the API's standard window, without betas).
    context_window: int


# What a model nobody here knows gets: nothing the API could refuse, and the smallest window.
UNKNOWN_FEATURES: Final = ModelFeatures("none", clear_tool_uses=False, compaction=False, context_window=200_000)

_GEN_5: Final = ModelFeatures(thinking="adaptive", clear_tool_uses=True, compaction=True, context_window=1_000_000)
_GEN_4_6: Final = ModelFeatures(thinking="adaptive", clear_tool_uses=True, compaction=True, context_window=200_000)
_GEN_4_5: Final = ModelFeatures(thinking="enabled", clear_tool_uses=True, compaction=False, context_window=200_000)

# Every id the installed SDK names (a test checks the two lists are the same).
KNOWN_MODELS: Final[dict[str, ModelFeatures]] = {
    "claude-fable-5-2": _GEN_5,
    "claude-mythos-5-2": _GEN_5,
    "claude-haiku-5-5": _GEN_5,
    "claude-sonnet-5-5": _GEN_5,
    "claude-fable-5-1": _GEN_5,
    "claude-opus-5-5": _GEN_5,
    "claude-mythos-5-1": _GEN_5,
    "claude-sonnet-5": _GEN_5,
    "claude-fable-5": _GEN_5,
    "claude-mythos-5": _GEN_5,
    "claude-opus-5": _GEN_5,
    "claude-opus-4-8": _GEN_4_6,
    "claude-opus-4-7": _GEN_4_6,
    "claude-mythos-preview": _GEN_5,
    "claude-opus-4-6": _GEN_4_6,
    "claude-sonnet-4-6": _GEN_4_6,
    "claude-haiku-4-5": _GEN_4_5,
    "claude-haiku-4-5-20251001": _GEN_4_5,
    "claude-opus-4-5": _GEN_4_5,
    "claude-opus-4-5-20251101": _GEN_4_5,
}

# `claude-<family>-<major>[-<minor>][-<yyyymmdd>]`, the form every current id has.
_VERSIONED: Final = re.compile(r"^claude-([a-z]+)-(\d+)(?:-(\d{1,2}))?(?:-(\d{8}))?$")
# What `/model` and `hutch groups set` take at all: an API model id's characters.
_MODEL_NAME: Final = re.compile(r"^claude-[a-z0-9][a-z0-9._@:-]{0,98}$")


def version(model: str) -> tuple[str, int, int] | None:
    """(family, major, minor) of a versioned id: `claude-sonnet-5-5` -> ("sonnet", 5, 5)."""
    match = _VERSIONED.fullmatch(model)
    if match is None:
        return None
    return match[1], int(match[2]), int(match[3] or 0)


def features(model: str) -> ModelFeatures:
    """What `model` supports: from the table, else by its generation (a dated or newer id of
    a known family), else nothing optional."""
    known = KNOWN_MODELS.get(model)
    if known is not None:
        return known
    parsed = version(model)
    if parsed is None:
        return UNKNOWN_FEATURES
    _family, major, minor = parsed
    if major >= 5:
        return _GEN_5
    if (major, minor) >= (4, 6):
        return _GEN_4_6
    if (major, minor) >= (4, 5):
        return _GEN_4_5
    return UNKNOWN_FEATURES


class UnusableModelError(ValueError):
    """A name that cannot be a Claude model id; the text says why."""


def check_model(name: str) -> tuple[str, str | None]:
    """The model id to store for `name`, and a warning when it is not one this version knows
    (the API decides then: an unknown model fails the next turn with the API's reason).
    UnusableModelError when it cannot be a model id at all."""
    model = name.strip()
    if model in KNOWN_MODELS:
        return model, None
    if not _MODEL_NAME.fullmatch(model):
        raise UnusableModelError(f"{name!r} is not a Claude model id (as {DEFAULT_MODEL} is)")
    return model, f"{model} is not a model this version of hutch knows; the API will say if it does not exist"
