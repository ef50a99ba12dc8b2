"""RunnerConfig.from_env: what the host passes in; a bad value names its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from container_runner.config import ConfigError, RunnerConfig


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    session, agent = tmp_path / "session", tmp_path / "agent"
    session.mkdir(exist_ok=True)
    agent.mkdir(exist_ok=True)
    return {"HUTCH_SESSION_DIR": str(session), "HUTCH_AGENT_DIR": str(agent), **extra}


def test_defaults(tmp_path: Path) -> None:
    config = RunnerConfig.from_env(_env(tmp_path))
    assert config == RunnerConfig(session_dir=tmp_path / "session", agent_dir=tmp_path / "agent")


def test_intervals_and_timeouts(tmp_path: Path) -> None:
    config = RunnerConfig.from_env(
        _env(
            tmp_path,
            HUTCH_HEARTBEAT_INTERVAL="0.5",
            HUTCH_SAFETY_INTERVAL="12",
            HUTCH_QUESTION_TIMEOUT="60",
            HUTCH_STALL_TIMEOUT="1e1",
            HUTCH_STOP_GRACE="2.5",
        )
    )
    assert config.stop_grace_s == 2.5
    assert (config.heartbeat_interval_s, config.safety_interval_s) == (0.5, 12.0)
    assert (config.question_timeout_s, config.stall_timeout_s) == (60.0, 10.0)


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("HUTCH_HEARTBEAT_INTERVAL", "often", "is not a number"),
        ("HUTCH_HEARTBEAT_INTERVAL", "0", "must be positive"),
        ("HUTCH_SAFETY_INTERVAL", "-5", "must be positive"),
        ("HUTCH_SAFETY_INTERVAL", "inf", "is not a finite number"),
        ("HUTCH_QUESTION_TIMEOUT", "nan", "is not a finite number"),
        ("HUTCH_STALL_TIMEOUT", "never", "is not a number"),
        ("HUTCH_STOP_GRACE", "soon", "is not a number"),
        ("HUTCH_STOP_GRACE", "0", "must be positive"),
        ("HUTCH_PROVIDER", "gpt", "expected 'claude' or 'mock'"),
        ("TZ", "Mars/Olympus_Mons", "is not a known time zone"),
        ("HUTCH_LOG_LEVEL", "loud", "expected DEBUG, INFO"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_variable(
    tmp_path: Path, variable: str, value: str, reason: str
) -> None:
    with pytest.raises(ConfigError, match=reason) as caught:
        RunnerConfig.from_env(_env(tmp_path, **{variable: value}))
    assert str(caught.value).startswith(f"{variable}={value!r}")


@pytest.mark.parametrize("variable", ["HUTCH_SESSION_DIR", "HUTCH_AGENT_DIR"])
def test_the_folders_must_be_set_and_exist(tmp_path: Path, variable: str) -> None:
    env = _env(tmp_path)
    with pytest.raises(ConfigError, match=f"{variable} is not set"):
        RunnerConfig.from_env({key: value for key, value in env.items() if key != variable})
    with pytest.raises(ConfigError, match="is not a folder"):
        RunnerConfig.from_env({**env, variable: str(tmp_path / "missing")})


def test_the_log_level_in_any_case(tmp_path: Path) -> None:
    assert RunnerConfig.from_env(_env(tmp_path, HUTCH_LOG_LEVEL="debug")).log_level == "DEBUG"
