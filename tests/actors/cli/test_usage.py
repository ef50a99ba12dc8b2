"""`hutch usage`: tokens and cost per agent group and UTC day, read from hutch.db alone."""

from __future__ import annotations

from datetime import timedelta

import pytest
import typer
from typer.testing import CliRunner, Result

from actors.cli import app as root
from actors.cli.usage import usage
from actors.pricing import PRICES_FILE, Tokens
from actors.store import agent_groups
from actors.store import usage as recorded
from protocol.timeutil import utc_now
from tests.actors.cli.conftest import Folder, one_error_line

pytestmark = pytest.mark.timeout(60)

SONNET = "claude-sonnet-4-6"  # $3 / $15 per million


def cli() -> typer.Typer:
    """The real `hutch` once `usage` is registered there; until then the same command under
    the same error reporting."""
    if any(command.name == "usage" for command in root.app.registered_commands):
        return root.app
    local = typer.Typer(cls=root.ReportingGroup)
    local.callback()(lambda: None)
    local.command("usage")(usage)
    return local


def hutch_usage(data: Folder, *args: str) -> Result:
    return CliRunner().invoke(cli(), ["usage", "--data-dir", str(data.path), *args])


def table_rows(output: str) -> list[list[str]]:
    """The cells of each body row (rich draws the header with ┃, the body with │)."""
    return [[cell.strip() for cell in line.strip("│ ").split("│")] for line in output.splitlines() if "│" in line]


def day(days_ago: int) -> str:
    return (utc_now().date() - timedelta(days=days_ago)).isoformat()


def add(data: Folder, group_id: str, when: str, model: str = SONNET, **tokens: int) -> None:
    recorded.record(
        data.store, agent_group_id=group_id, session_id=data.local.id, model=model, tokens=Tokens(**tokens), day=when
    )


def test_with_nothing_recorded_it_says_so(data: Folder) -> None:
    result = hutch_usage(data)
    assert (result.exit_code, result.stdout.strip()) == (0, "no usage recorded yet")


def test_a_row_per_group_and_day_with_tokens_cost_and_totals(data: Folder) -> None:
    work = agent_groups.create(data.store, name="work", folder="work")
    add(data, data.main.id, day(1), input=1_000_000, output=100_000, cache_read=2_000_000, cache_write=40_000)
    add(data, data.main.id, day(1), input=1_000_000)  # a second answer the same day
    add(data, work.id, day(1), output=2000)
    add(data, data.main.id, day(0), input=1234)
    result = hutch_usage(data)
    assert result.exit_code == 0, result.output
    assert table_rows(result.stdout) == [
        # day, group, requests, input, output, cache read, cache write, cost
        [day(1), "main", "2", "2,000,000", "100,000", "2,000,000", "40,000", "$8.25"],
        [day(1), "work", "1", "0", "2,000", "0", "0", "$0.03"],
        [day(0), "main", "1", "1,234", "0", "0", "0", "$0.0037"],
        ["total", "", "4", "2,001,234", "102,000", "2,000,000", "40,000", "$8.28"],
    ]
    assert "(UTC days)" in result.stdout


def test_one_group_and_a_shorter_window(data: Folder) -> None:
    work = agent_groups.create(data.store, name="work", folder="work")
    add(data, data.main.id, day(0), input=10)
    add(data, work.id, day(0), input=20)
    add(data, work.id, day(5), input=40)
    rows = table_rows(hutch_usage(data, "--group", "work").stdout)
    assert [row[:4] for row in rows] == [
        [day(5), "work", "1", "40"],
        [day(0), "work", "1", "20"],
        ["total", "", "2", "60"],
    ]
    rows = table_rows(hutch_usage(data, "--group", "work", "--days", "2").stdout)
    assert [row[:4] for row in rows] == [[day(0), "work", "1", "20"], ["total", "", "1", "20"]]


def test_a_window_with_nothing_in_it_says_so(data: Folder) -> None:
    add(data, data.main.id, day(40), input=10)
    result = hutch_usage(data)
    assert (result.exit_code, result.stdout.strip()) == (0, "no usage in the last 30 days")


def test_a_model_without_a_price_shows_an_unknown_cost(data: Folder) -> None:
    add(data, data.main.id, day(0), model="claude-experimental-9", input=10)
    add(data, data.main.id, day(0), model=recorded.UNKNOWN_MODEL)
    add(data, data.main.id, day(1), input=1_000_000)
    result = hutch_usage(data)
    rows = table_rows(result.stdout)
    assert [row[-1] for row in rows] == ["$3.00", "?", "$3.00 + ?"]
    assert "?: a model without a price" in result.stdout


def test_prices_toml_prices_a_model(data: Folder) -> None:
    add(data, data.main.id, day(0), model="claude-experimental-9", input=1_000_000, output=1_000_000)
    (data.path / PRICES_FILE).write_text("[models.claude-experimental]\ninput = 1\noutput = 2\n")
    assert table_rows(hutch_usage(data).stdout)[0][-1] == "$3.00"


def test_a_bad_prices_file_is_one_error_line(data: Folder) -> None:
    (data.path / PRICES_FILE).write_text("[models.claude-x]\ninput = 1\n")
    line = one_error_line(hutch_usage(data))
    assert line == f"hutch: {data.path / PRICES_FILE}: [models.claude-x] Object missing required field `output`"


def test_an_unknown_group_is_one_error_line(data: Folder) -> None:
    assert one_error_line(hutch_usage(data, "--group", "nope")) == (
        "hutch: no agent group named 'nope' (`hutch groups list` shows them)"
    )


@pytest.mark.parametrize("days", ["0", "-3", "many"])
def test_days_must_be_a_positive_count(data: Folder, days: str) -> None:
    result = hutch_usage(data, "--days", days)
    assert result.exit_code == 2
    assert "--days" in result.output


def test_without_a_data_folder_it_says_so() -> None:
    result = CliRunner().invoke(cli(), ["usage", "--data-dir", "/nonexistent/hutch-data"])
    assert "no data folder at /nonexistent/hutch-data" in one_error_line(result)
