from __future__ import annotations

import pytest

from protocol.envnum import EnvNumberError, env_number, env_whole_number


@pytest.mark.parametrize(("raw", "expected"), [("1.5", 1.5), ("-2", -2.0), ("1e3", 1000.0), (" 7 ", 7.0)])
def test_numbers(raw: str, expected: float) -> None:
    assert env_number({"X": raw}, "X", 9.0) == expected


@pytest.mark.parametrize("env", [{}, {"X": ""}])
def test_missing_or_empty_means_the_default(env: dict[str, str]) -> None:
    assert env_number(env, "X", 9.5) == 9.5
    assert env_whole_number(env, "X", 3) == 3


@pytest.mark.parametrize(
    ("raw", "positive", "message"),
    [
        ("soon", False, "HUTCH_T='soon' is not a number"),
        ("inf", False, "HUTCH_T='inf' is not a finite number"),
        ("-inf", False, "HUTCH_T='-inf' is not a finite number"),
        ("nan", True, "HUTCH_T='nan' is not a finite number"),
        ("0", True, "HUTCH_T='0' must be positive"),
        ("-1", True, "HUTCH_T='-1' must be positive"),
    ],
)
def test_bad_numbers_name_the_variable(raw: str, positive: bool, message: str) -> None:
    with pytest.raises(EnvNumberError) as caught:
        env_number({"HUTCH_T": raw}, "HUTCH_T", 1.0, positive=positive)
    assert str(caught.value) == message


def test_whole_numbers() -> None:
    assert env_whole_number({"N": "4"}, "N", 1) == 4
    assert env_whole_number({"N": "1e2"}, "N", 1) == 100
    assert env_whole_number({"N": "0"}, "N", 1, minimum=0) == 0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("2.5", "N='2.5' is not a whole number"),
        ("many", "N='many' is not a number"),
        ("nan", "N='nan' is not a finite number"),
        ("0", "N='0' must be at least 1"),
    ],
)
def test_bad_whole_numbers_name_the_variable(raw: str, message: str) -> None:
    with pytest.raises(EnvNumberError) as caught:
        env_whole_number({"N": raw}, "N", 5, minimum=1)
    assert str(caught.value) == message


def test_an_env_number_error_is_a_value_error() -> None:
    assert issubclass(EnvNumberError, ValueError)
