"""load_config: defaults < .env < environment < flags; a bad value names its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.config import ConfigError, HostConfig, load_config
from actors.host import session_settings
from actors.runtime.base import AgentLimits
from actors.store.agent_uids import UidRange

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`.env` is read from the working directory; start every test in an empty one."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def write_dotenv(text: str) -> None:
    Path(".env").write_text(text)


def test_defaults() -> None:
    config = load_config([], {})

    assert config == HostConfig()
    assert config.data_dir == Path("data")
    assert config.runtime == "auto"
    assert config.provider == "claude"
    assert config.max_containers == 5
    assert config.idle_timeout_s == 1800.0
    assert config.timezone == "UTC"
    assert config.log_level == "INFO"
    assert config.api_key is None
    assert config.sweep_interval_s == 30.0


def test_derived_paths() -> None:
    config = load_config(["--data-dir", "/srv/hutch"], {})

    assert config.sessions_dir == Path("/srv/hutch/sessions")
    assert config.groups_dir == Path("/srv/hutch/groups")
    assert config.central_db == Path("/srv/hutch/hutch.db")
    assert config.chat_socket == Path("/srv/hutch/cli.sock")


def test_the_environment() -> None:
    config = load_config(
        [],
        {
            "HUTCH_DATA_DIR": "/var/lib/hutch",
            "HUTCH_RUNTIME": "docker",
            "HUTCH_PROVIDER": "mock",
            "HUTCH_MODEL": "claude-opus-4",
            "HUTCH_IDLE_TIMEOUT": "90.5",
            "HUTCH_MAX_CONTAINERS": "3",
            "TZ": "Europe/Berlin",
            "HUTCH_LOG_LEVEL": "debug",
            "ANTHROPIC_API_KEY": "sk-test",
            "ANTHROPIC_BASE_URL": "http://127.0.0.1:9999",
            "HUTCH_ASSISTANT_NAME": "Andy",
            "HUTCH_SWEEP_INTERVAL": "12",
            "HUTCH_STOP_GRACE": "12.5",
            "HUTCH_TELEGRAM_OWNER": "1001",
            "HUTCH_DISCORD_OWNER": " 2002 ",
            "HUTCH_UNKNOWN_SENDERS": "pair",
            "HUTCH_AGENT_UIDS": "500000-500099",
            "HUTCH_AGENT_CPUS": "0.5",
            "HUTCH_AGENT_MEMORY_MB": "512",
            "HUTCH_AGENT_PIDS": "128",
            "HUTCH_AGENT_SHM_MB": "4",
        },
    )

    assert config == HostConfig(
        data_dir=Path("/var/lib/hutch"),
        runtime="docker",
        provider="mock",
        model="claude-opus-4",
        idle_timeout_s=90.5,
        max_containers=3,
        timezone="Europe/Berlin",
        log_level="DEBUG",
        api_key="sk-test",
        base_url="http://127.0.0.1:9999",
        assistant_name="Andy",
        sweep_interval_s=12.0,
        stop_grace_s=12.5,
        telegram_owner="1001",
        discord_owner="2002",
        unknown_senders="pair",
        agent_uids=UidRange(500_000, 500_099),
        agent_limits=AgentLimits(cpus=0.5, memory_mb=512, pids=128, shm_mb=4),
    )


def test_empty_variables_mean_the_default() -> None:
    config = load_config([], {"HUTCH_RUNTIME": "", "HUTCH_MAX_CONTAINERS": "", "ANTHROPIC_API_KEY": ""})

    assert config == HostConfig()


def test_the_process_environment_is_the_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUTCH_PROVIDER", "mock")
    monkeypatch.setenv("HUTCH_MAX_CONTAINERS", "9")

    config = load_config([])

    assert config.provider == "mock"
    assert config.max_containers == 9


def test_a_dotenv_file_in_the_working_directory() -> None:
    write_dotenv("# local settings\nHUTCH_MODEL=from-dotenv\nHUTCH_MAX_CONTAINERS=7\nANTHROPIC_API_KEY='sk-dotenv'\n")

    config = load_config([], {})

    assert config.model == "from-dotenv"
    assert config.max_containers == 7
    assert config.api_key == "sk-dotenv"


def test_the_environment_beats_dotenv_and_flags_beat_both() -> None:
    write_dotenv("HUTCH_MODEL=from-dotenv\nHUTCH_MAX_CONTAINERS=7\nHUTCH_RUNTIME=docker\nTZ=Asia/Tokyo\n")
    env = {"HUTCH_MODEL": "from-env", "HUTCH_MAX_CONTAINERS": "4"}

    config = load_config(["--max-containers", "2"], env)

    assert config.model == "from-env"  # env over .env
    assert config.max_containers == 2  # flag over env
    assert config.runtime == "docker"  # only in .env
    assert config.timezone == "Asia/Tokyo"


def test_every_flag_overrides() -> None:
    env = {"HUTCH_RUNTIME": "docker", "HUTCH_PROVIDER": "claude", "TZ": "UTC", "HUTCH_LOG_LEVEL": "ERROR"}

    config = load_config(
        [
            "--data-dir", "elsewhere", "--runtime", "process", "--provider", "mock", "--model", "m",
            "--idle-timeout", "5", "--max-containers", "1", "--timezone", "America/New_York",
            "--log-level", "warning",
        ],
        env,
    )  # fmt: skip

    assert config == HostConfig(
        data_dir=Path("elsewhere"),
        runtime="process",
        provider="mock",
        model="m",
        idle_timeout_s=5.0,
        max_containers=1,
        timezone="America/New_York",
        log_level="WARNING",
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HUTCH_RUNTIME", "podman"),
        ("HUTCH_PROVIDER", "gpt"),
        ("HUTCH_MAX_CONTAINERS", "many"),
        ("HUTCH_MAX_CONTAINERS", "0"),
        ("HUTCH_MAX_CONTAINERS", "2.5"),
        ("HUTCH_MAX_CONTAINERS", "nan"),
        ("HUTCH_IDLE_TIMEOUT", "soon"),
        ("HUTCH_IDLE_TIMEOUT", "-1"),
        ("HUTCH_IDLE_TIMEOUT", "inf"),
        ("HUTCH_SWEEP_INTERVAL", "0"),
        ("HUTCH_SWEEP_INTERVAL", "often"),
        ("HUTCH_LOG_LEVEL", "loud"),
        ("TZ", "Mars/Olympus_Mons"),
        ("TZ", "../../etc/passwd"),
        ("HUTCH_STOP_GRACE", "0"),
        ("HUTCH_UNKNOWN_SENDERS", "welcome"),
        ("HUTCH_WEBHOOK_PORT", "70000"),
        ("HUTCH_TELEGRAM_WEBHOOK_URL", "http://example.test/hook"),
        ("HUTCH_TELEGRAM_WEBHOOK_PORT", "99999"),
        ("HUTCH_WEBHOOK_PORT", "-1"),
        ("HUTCH_WEBHOOK_PORT", "http"),
        ("HUTCH_AGENT_UIDS", "1000"),
        ("HUTCH_AGENT_UIDS", "0-99"),
        ("HUTCH_AGENT_UIDS", "9-5"),
        ("HUTCH_AGENT_CPUS", "0"),
        ("HUTCH_AGENT_CPUS", "5000"),
        ("HUTCH_AGENT_MEMORY_MB", "10"),
        ("HUTCH_AGENT_PIDS", "1"),
        ("HUTCH_AGENT_SHM_MB", "0"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_config([], {variable: value})


def test_a_bad_value_in_dotenv_is_reported_too() -> None:
    write_dotenv("HUTCH_RUNTIME=kubernetes\n")

    with pytest.raises(ConfigError, match="HUTCH_RUNTIME"):
        load_config([], {})


def test_a_bad_flag_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="HUTCH_MAX_CONTAINERS"):
        load_config(["--max-containers", "0"], {})
    with pytest.raises(ConfigError, match="TZ"):
        load_config(["--timezone", "Nowhere/Special"], {})


def test_a_bad_environment_value_is_reported_even_when_a_flag_replaces_it() -> None:
    # The environment is checked on its own first: a bad value there is reported even when
    # a flag would have replaced it, so a broken .env never goes unnoticed.
    with pytest.raises(ConfigError, match="HUTCH_RUNTIME"):
        load_config(["--runtime", "process"], {"HUTCH_RUNTIME": "podman"})


def test_an_unknown_choice_on_the_command_line_is_refused_by_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_config(["--runtime", "podman"], {})
    assert "--runtime" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("HUTCH_IDLE_TIMEOUT", "soon", "HUTCH_IDLE_TIMEOUT='soon' is not a number"),
        ("HUTCH_IDLE_TIMEOUT", "inf", "HUTCH_IDLE_TIMEOUT='inf' is not a finite number"),
        ("HUTCH_IDLE_TIMEOUT", "0", "HUTCH_IDLE_TIMEOUT='0' must be positive"),
        ("HUTCH_SWEEP_INTERVAL", "nan", "HUTCH_SWEEP_INTERVAL='nan' is not a finite number"),
        ("HUTCH_MAX_CONTAINERS", "2.5", "HUTCH_MAX_CONTAINERS='2.5' is not a whole number"),
        ("HUTCH_MAX_CONTAINERS", "0", "HUTCH_MAX_CONTAINERS='0' must be at least 1"),
        ("HUTCH_AGENT_SHM_MB", "0", "HUTCH_AGENT_SHM_MB='0' must be at least 1"),
        ("HUTCH_AGENT_UIDS", "x", "HUTCH_AGENT_UIDS: 'x' is not a uid range like 1000000-1099999"),
    ],
)
def test_numbers_from_the_environment_say_what_is_wrong(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config([], {variable: value})
    assert str(caught.value) == message


@pytest.mark.parametrize(("flag", "value"), [("--idle-timeout", "0"), ("--max-containers", "0")])
def test_flags_are_checked_too(flag: str, value: str) -> None:
    with pytest.raises(ConfigError, match="HUTCH_"):
        load_config([flag, value], {})


def test_the_stop_grace_reaches_the_runner_and_the_host_waits_a_little_longer() -> None:
    config = load_config([], {"HUTCH_STOP_GRACE": "12"})
    settings = session_settings(config, "mock")
    assert settings.stop_grace_s == 12.0
    assert settings.stop_timeout_s == 17.0  # the kill comes only after the runner's own deadline


def test_owners_are_named_per_channel() -> None:
    assert load_config([], {}).owners == {}
    assert load_config([], {"HUTCH_TELEGRAM_OWNER": "1001"}).owners == {"telegram": "1001"}


def test_the_webhook_endpoint_is_off_unless_a_port_is_given() -> None:
    assert load_config([], {}).webhook_port is None
    assert load_config([], {"HUTCH_WEBHOOK_PORT": "8787"}).webhook_port == 8787


def test_telegram_polls_unless_a_webhook_url_is_given() -> None:
    assert load_config([], {}).telegram_webhook_url is None
    config = load_config(
        [], {"HUTCH_TELEGRAM_WEBHOOK_URL": "https://bot.example.test/tg", "HUTCH_TELEGRAM_WEBHOOK_PORT": "9000"}
    )
    assert (config.telegram_webhook_url, config.telegram_webhook_port) == ("https://bot.example.test/tg", 9000)
