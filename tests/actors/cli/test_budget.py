"""`hutch budget` against a stopped host: `set` changes only the limits it is given (through
the control operations, holding the data folder's lock), `--none` clears them, `show` reads
what is used of each; a refused change says why in one line."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner, Result

from actors.cli import app as root
from actors.cli.budget import app as budget_app
from actors.pricing import Tokens
from actors.store import budgets, usage
from tests.actors.cli.conftest import Folder, one_error_line

pytestmark = pytest.mark.timeout(60)


def cli() -> typer.Typer:
    """The real `hutch` once `budget` is registered there; until then the same app under the
    same error reporting."""
    if any(group.name == "budget" for group in root.app.registered_groups):
        return root.app
    local = typer.Typer(cls=root.ReportingGroup)
    local.callback()(lambda: None)
    local.add_typer(budget_app, name="budget")
    return local


def hutch_budget(data: Folder, *args: str) -> Result:
    return CliRunner().invoke(cli(), ["budget", *args, "--data-dir", str(data.path)])


def test_set_changes_the_limits_given_and_keeps_the_others(data: Folder) -> None:
    result = hutch_budget(data, "set", "main", "--daily-usd", "2.5", "--monthly-tokens", "1000000")
    assert result.exit_code == 0, result.output
    assert "agent group 'main': $2.50 a day, 1,000,000 tokens a month" in result.output
    assert hutch_budget(data, "set", "main", "--monthly-usd", "40").exit_code == 0
    stored = budgets.get(data.store, data.main.id)
    assert stored is not None
    assert (stored.daily_usd, stored.monthly_usd, stored.daily_tokens, stored.monthly_tokens) == (2.5, 40, None, 1e6)


def test_none_clears_every_limit(data: Folder) -> None:
    hutch_budget(data, "set", "main", "--daily-usd", "1")
    result = hutch_budget(data, "set", "main", "--none")
    assert result.exit_code == 0, result.output
    assert "agent group 'main' has no budget" in result.output
    assert budgets.get(data.store, data.main.id) is None


def test_show_reads_what_is_used(data: Folder) -> None:
    hutch_budget(data, "set", "main", "--daily-tokens", "1000")
    usage.record(data.store, agent_group_id=data.main.id, session_id="s", model="m", tokens=Tokens(input=850))
    result = hutch_budget(data, "show", "main")
    assert result.exit_code == 0, result.output
    assert "daily budget of 1,000 tokens" in result.output
    assert "850 tokens" in result.output and "85%" in result.output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("set", "nobody", "--daily-usd", "1"), "no agent group"),
        (("set", "main"), "give at least one limit"),
        (("show", "nobody"), "no agent group"),
    ],
)
def test_refusals_are_one_line(data: Folder, args: tuple[str, ...], said: str) -> None:
    result = hutch_budget(data, *args)
    assert result.exit_code != 0
    assert said in one_error_line(result)
