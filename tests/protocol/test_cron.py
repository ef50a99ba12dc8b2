from __future__ import annotations

import pytest

from protocol.cron import CronError, check_cron


@pytest.mark.parametrize("expression", ["0 9 * * 1-5", "*/15 * * * *", "0 9 * * MON", "30 8 1 * *"])
def test_good_expressions_pass(expression: str) -> None:
    check_cron(expression)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("61 * * * *", "Bad minute"),
        ("* * *", "Wrong number of fields"),
        ("0 0 31 2 *", "Bad day-of-month"),
        ("every day", ""),
        ("", "Wrong number of fields"),
    ],
)
def test_bad_expressions_raise_a_cron_error_that_quotes_them(expression: str, reason: str) -> None:
    with pytest.raises(CronError, match="is not a valid cron expression") as caught:
        check_cron(expression)
    assert str(caught.value).startswith(f"{expression!r} ")
    assert reason in str(caught.value)


def test_a_cron_error_is_a_value_error() -> None:
    assert issubclass(CronError, ValueError)
