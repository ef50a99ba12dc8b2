"""The price table: family matching, every model the SDK names priced, and prices.toml."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest
from anthropic.types import Model

from actors.pricing import DEFAULT_PRICES, PRICES_FILE, Price, PricesError, PriceTable, Tokens, load_prices


def sdk_models() -> list[str]:
    """The model ids the installed SDK's `Model` names (a Literal beside plain `str`)."""
    names: list[str] = []
    for member in get_args(Model):
        names.extend(arg for arg in get_args(member) if isinstance(arg, str))
    return names


def is_claude_4_or_later(model: str) -> bool:
    # Older ids put the generation first (claude-3-5-sonnet, claude-2.1, claude-instant-1.2);
    # from Claude 4 on the family comes first and the version after it.
    return model.startswith("claude-") and not re.match(r"claude-(\d|instant)", model)


def test_the_sdk_names_models() -> None:
    assert len(sdk_models()) >= 10  # the Literal is read, not silently empty


@pytest.mark.parametrize("model", [m for m in sdk_models() if is_claude_4_or_later(m)])
def test_every_current_model_the_sdk_names_has_a_price(model: str) -> None:
    price = PriceTable(DEFAULT_PRICES).price_of(model)
    assert price is not None, f"{model} has no price: add it to actors/pricing.py"
    assert price.input > 0
    assert price.output > price.input


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("claude-opus-4-5", "claude-opus-4-5"),
        ("claude-opus-4-5-20251101", "claude-opus-4-5"),
        ("claude-opus-4-1-20250805", "claude-opus-4"),  # 4.1 kept Opus 4's price
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("claude-opus-4-8", "claude-opus-4-8"),
        ("claude-opus-5-5", "claude-opus-5-5"),
        ("claude-opus-5", "claude-opus-5"),
        ("claude-sonnet-4-6", "claude-sonnet-4"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4"),
        ("claude-sonnet-5-5", "claude-sonnet-5-5"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("claude-3-haiku-20240307", "claude-3-haiku"),
        ("claude-opus-4-5@20251101", "claude-opus-4-5"),  # a Vertex-style version
        # A dated snapshot of Mythos 5 is not Mythos 5.2: a key ends at a boundary only.
        ("claude-mythos-5-20260609", "claude-mythos-5"),
        ("claude-mythos-5-2", "claude-mythos-5-2"),
    ],
)
def test_a_model_gets_its_longest_family(model: str, family: str) -> None:
    assert PriceTable(DEFAULT_PRICES).price_of(model) == DEFAULT_PRICES[family]


@pytest.mark.parametrize("model", ["unknown", "gpt-4o", "claude-opusx-4-5", "claude-opus", "", "claude-opus-45"])
def test_a_model_no_key_fits_has_no_price(model: str) -> None:
    table = PriceTable(DEFAULT_PRICES)
    assert table.price_of(model) is None
    assert table.cost(model, Tokens(input=1000)) is None


def test_prices_of_the_families_named_in_the_brief() -> None:
    table = PriceTable(DEFAULT_PRICES)
    expected = {
        "claude-opus-4-5": (5, 25),
        "claude-opus-4-1": (15, 75),
        "claude-sonnet-4-6": (3, 15),
        "claude-haiku-4-5": (1, 5),
        "claude-3-5-haiku": (0.8, 4),
        "claude-3-haiku": (0.25, 1.25),
    }
    for model, (input_price, output_price) in expected.items():
        price = table.price_of(model)
        assert price is not None
        assert (price.input, price.output) == (input_price, output_price), model


def test_cost_counts_each_kind_of_token_at_its_rate() -> None:
    price = Price.standard(3, 15)  # Sonnet 4
    assert (price.cache_read, price.cache_write_5m, price.cache_write_1h) == pytest.approx((0.3, 3.75, 6.0))
    tokens = Tokens(input=1_000_000, output=100_000, cache_read=2_000_000, cache_write=400_000, cache_write_1h=100_000)
    # 3 + 1.5 + 0.6 + 300k x 3.75/M + 100k x 6/M
    assert price.cost(tokens) == pytest.approx(3 + 1.5 + 0.6 + 1.125 + 0.6)


def test_more_one_hour_writes_than_writes_are_capped() -> None:
    price = Price.standard(1, 5)
    assert price.cost(Tokens(cache_write=10, cache_write_1h=1_000)) == pytest.approx(10 * 2 / 1_000_000)


def test_without_a_prices_file_the_defaults_apply(tmp_path: Path) -> None:
    assert load_prices(tmp_path).entries == DEFAULT_PRICES


def test_the_prices_file_overrides_and_extends(tmp_path: Path) -> None:
    (tmp_path / PRICES_FILE).write_text(
        """
        [models.claude-sonnet-4]
        input = 2.5
        output = 12

        [models.claude-sonnet-4-6]
        input = 1
        output = 2
        cache_read = 0.05
        cache_write_5m = 1.1
        cache_write_1h = 1.7

        [models."my-proxy-model"]
        input = 0
        output = 0.5
        """
    )
    table = load_prices(tmp_path)
    assert table.price_of("claude-sonnet-4-5") == Price(
        input=2.5, output=12, cache_read=0.25, cache_write_5m=3.125, cache_write_1h=5.0
    )
    assert table.price_of("claude-sonnet-4-6-20260101") == Price(
        input=1, output=2, cache_read=0.05, cache_write_5m=1.1, cache_write_1h=1.7
    )
    assert table.price_of("my-proxy-model") == Price.standard(0, 0.5)
    # Everything else keeps its default.
    assert table.price_of("claude-opus-4-5") == DEFAULT_PRICES["claude-opus-4-5"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[models.claude-x\ninput = 1", "not valid TOML"),
        ("[models.claude-x]\ninput = 1", "[models.claude-x] Object missing required field `output`"),
        ("[models.claude-x]\ninput = 1\noutput = -2", ">= 0"),
        ('[models.claude-x]\ninput = "3"\noutput = 15', "[models.claude-x] Expected `float`, got `str` - at `$.input`"),
        ("models = 3", "Expected `object`, got `int` - at `$.models`"),
        ("[models]\nclaude-x = 3", "[models.claude-x] Expected `object`, got `int`"),
        ("[models.claude-x]\ninput = true\noutput = 15", "got `bool`"),
        ("[models.claude-x]\ninput = nan\noutput = 15", ">= 0"),
        ("[models.claude-x]\ninput = 3\noutput = 15\ncache_raed = 0.3", "unknown field `cache_raed`"),
        ("[model.claude-x]\ninput = 3\noutput = 15", "unknown field `model`"),
        ('[models."claude x"]\ninput = 3\noutput = 15', "matching regex"),
        ("[models.claude-x]\ninput = 3\noutput = 1e9", "<= 10000"),
    ],
)
def test_a_bad_prices_file_is_one_error_naming_the_file(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / PRICES_FILE
    path.write_text(text)
    with pytest.raises(PricesError) as caught:
        load_prices(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert says in message
    assert "\n" not in message


def test_a_prices_file_that_is_not_text_is_an_error(tmp_path: Path) -> None:
    (tmp_path / PRICES_FILE).write_bytes(b"\xff\xfe[models]")
    with pytest.raises(PricesError, match="not UTF-8"):
        load_prices(tmp_path)


def test_an_unreadable_prices_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / PRICES_FILE).mkdir()  # a folder where the file should be: unreadable as one
    with pytest.raises(PricesError, match="cannot be read"):
        load_prices(tmp_path)


@pytest.mark.timeout(30)
def test_a_bad_prices_file_stops_the_host_at_start_with_one_line(tmp_path: Path) -> None:
    from actors.config import HostConfig
    from actors.data_lock import DataFolderLock
    from actors.host import Host
    from tests.fakes.runtime import FakeRuntime

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / PRICES_FILE).write_text("[models.claude-x]\ninput = 3\n")
    config = HostConfig(data_dir=data_dir, runtime="process", provider="mock", sweep_interval_s=3600)
    with pytest.raises(SystemExit) as caught:
        Host.start(config, runtime=FakeRuntime(), channels=[])
    assert str(caught.value) == (
        f"hutch: {data_dir.absolute() / PRICES_FILE}: [models.claude-x] Object missing required field `output`"
    )
    DataFolderLock.acquire(data_dir).release()  # what it had started was stopped again
