"""load_config: defaults < .env < environment < flags; a bad value names its variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from actors import config as config_module
from actors.config import OTHER_PROGRAMS_KEYS, ConfigError, HostConfig, host_keys, load_config
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


# -- strictness: unknown names and malformed lines say where they are -------------------------


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("HUTCH_MAX_CONTAINER", "did you mean HUTCH_MAX_CONTAINERS?"),
        ("HUTCH_MODLE", "did you mean HUTCH_MODEL?"),
        # The names without the prefix are candidates too.
        ("HUTCH_TELEGRAM_TOKEN", "did you mean TELEGRAM_BOT_TOKEN?"),
        # Environment names are case-sensitive: a lower-case one would be ignored.
        ("hutch_log_level", "did you mean HUTCH_LOG_LEVEL?"),
        ("HUTCH_ZZZ", "README.md's Configuration lists the settings"),
    ],
)
def test_an_unknown_name_in_the_environment_is_refused_with_a_guess(name: str, hint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config([], {name: "1"})
    assert str(caught.value) == f"unknown setting {name} in the environment ({hint})"


def test_an_unknown_name_in_the_process_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUTCH_IDLE_TIMOUT", "60")
    with pytest.raises(ConfigError, match=r"HUTCH_IDLE_TIMOUT in the environment \(did you mean HUTCH_IDLE_TIMEOUT\?"):
        load_config([])


def test_an_unknown_name_in_dotenv_names_the_file_and_line() -> None:
    write_dotenv("# settings\nHUTCH_MODEL=claude-opus-4\n\nHUTCH_RUNTIM=docker\n")

    with pytest.raises(ConfigError) as caught:
        load_config([], {})

    assert str(caught.value) == ".env line 4: unknown setting HUTCH_RUNTIM (did you mean HUTCH_RUNTIME?)"


def test_only_hutch_names_are_checked() -> None:
    # `.env` and the environment are shared with other programs; their names are theirs.
    write_dotenv("OTHER_TOOL_TOKEN=x\nDATABASE_URL=postgres://db\n")

    config = load_config([], {"PATH": "/usr/bin", "EDITOR": "vi", "HUTCHINSON": "1"})

    assert config == HostConfig()


@pytest.mark.parametrize("name", sorted(OTHER_PROGRAMS_KEYS))
def test_other_programs_names_pass_in_the_environment_but_not_in_dotenv(name: str) -> None:
    # A shell that starts a runner by hand or runs the scripts holds them; the host ignores them.
    assert load_config([], {name: "/somewhere"}) == HostConfig()

    write_dotenv(f"HUTCH_MODEL=m\n{name}=/somewhere\n")
    with pytest.raises(ConfigError) as caught:
        load_config([], {})
    assert str(caught.value).startswith(f".env line 2: {name} is read by ")
    assert str(caught.value).endswith("not by the host: .env does not reach it")


@pytest.mark.parametrize(
    ("text", "number", "shown"),
    [
        ("HUTCH_MODEL=m\n\n# fine so far\nFOO BAR\n", 4, "FOO BAR"),
        ("HUTCH_MODEL=m\n\n\n   \nFOO BAR\n", 5, "FOO BAR"),
        ("HUTCH_MODEL=m\r\nHUTCH_RUNTIME docker\r\n", 2, "HUTCH_RUNTIME docker"),
        ('HUTCH_MODEL="claude\nHUTCH_RUNTIME=docker\n', 1, 'HUTCH_MODEL="claude'),
        ("=value\n", 1, "=value"),
        # python-dotenv takes a bare name as "no value": the host would have ignored the line.
        ("HUTCH_MODEL=m\nHUTCH_RUNTIME\n", 2, "HUTCH_RUNTIME"),
    ],
)
def test_a_malformed_dotenv_line_is_named_by_number(text: str, number: int, shown: str) -> None:
    write_dotenv(text)

    with pytest.raises(ConfigError) as caught:
        load_config([], {})

    assert str(caught.value) == f".env line {number}: cannot parse {shown!r} (expected KEY=VALUE)"


def test_a_malformed_line_does_not_show_a_secret() -> None:
    write_dotenv("ANTHROPIC_API_KEY='sk-ant-very-secret\n")

    with pytest.raises(ConfigError) as caught:
        load_config([], {})

    assert str(caught.value) == ".env line 1: cannot parse 'ANTHROPIC_API_KEY=...' (expected KEY=VALUE)"


def test_a_long_malformed_line_is_cut_short() -> None:
    write_dotenv("x" * 500 + " y\n")

    with pytest.raises(ConfigError) as caught:
        load_config([], {})

    assert str(caught.value) == f".env line 1: cannot parse '{'x' * 80}...' (expected KEY=VALUE)"


def test_what_dotenv_allows_is_still_read() -> None:
    write_dotenv(
        "# comment\n\n  export HUTCH_MODEL=from-export  # trailing comment\n"
        "HUTCH_ASSISTANT_NAME = 'Andy'\nHUTCH_LOG_LEVEL=\"debug\"\r\n"
    )

    config = load_config([], {})

    assert (config.model, config.assistant_name, config.log_level) == ("from-export", "Andy", "DEBUG")


def test_an_unreadable_dotenv_is_a_config_error() -> None:
    Path(".env").mkdir()
    with pytest.raises(ConfigError, match=r"^\.env: cannot be read \(Is a directory\)$"):
        load_config([], {})


def test_a_dotenv_that_is_not_utf8_is_a_config_error() -> None:
    Path(".env").write_bytes(b"HUTCH_MODEL=caf\xe9\n")
    with pytest.raises(ConfigError, match=r"^\.env: not UTF-8 text"):
        load_config([], {})


# Every setting given, so a name read only when another setting is given is read too.
EVERY_SETTING = {
    "HUTCH_DATA_DIR": "/var/lib/hutch",
    "HUTCH_RUNTIME": "docker",
    "HUTCH_PROVIDER": "mock",
    "HUTCH_MODEL": "claude-opus-4",
    "HUTCH_IDLE_TIMEOUT": "90",
    "HUTCH_MAX_CONTAINERS": "3",
    "TZ": "Europe/Berlin",
    "HUTCH_LOG_LEVEL": "debug",
    "ANTHROPIC_API_KEY": "sk-test",
    "ANTHROPIC_BASE_URL": "http://127.0.0.1:9999",
    "HUTCH_ASSISTANT_NAME": "Andy",
    "HUTCH_SWEEP_INTERVAL": "12",
    "HUTCH_STOP_GRACE": "12",
    "HUTCH_TELEGRAM_OWNER": "1001",
    "HUTCH_DISCORD_OWNER": "2002",
    "HUTCH_UNKNOWN_SENDERS": "pair",
    "HUTCH_AGENT_UIDS": "500000-500099",
    "HUTCH_AGENT_CPUS": "0.5",
    "HUTCH_AGENT_MEMORY_MB": "512",
    "HUTCH_AGENT_PIDS": "128",
    "HUTCH_AGENT_SHM_MB": "4",
    "HUTCH_WEBHOOK_PORT": "8787",
    "TELEGRAM_BOT_TOKEN": "123:abc",
    "HUTCH_TELEGRAM_BASE_URL": "http://127.0.0.1:1/bot",
    "HUTCH_TELEGRAM_WEBHOOK_URL": "https://bot.example.test/tg",
    "HUTCH_TELEGRAM_WEBHOOK_PORT": "9000",
    "DISCORD_BOT_TOKEN": "discord-token",
    "HUTCH_DISCORD_API_BASE": "http://127.0.0.1:2",
    "HUTCH_DISCORD_GATEWAY_URL": "ws://127.0.0.1:3",
}


def test_every_name_the_host_reads_is_known() -> None:
    reads = config_module._Reads(EVERY_SETTING)
    config_module._from_env(reads)

    assert reads.names <= host_keys()
    assert set(EVERY_SETTING) <= host_keys()
    assert load_config([], EVERY_SETTING).webhook_port == 8787  # and all of them pass the check


def test_the_known_names_are_not_other_programs_names() -> None:
    assert host_keys().isdisjoint(OTHER_PROGRAMS_KEYS)


REPO = Path(__file__).resolve().parents[2]


_NAME = re.compile(r"\bHUTCH_[A-Z0-9_]*[A-Z0-9]\b")  # not "HUTCH_AGENT_*", a family in prose


def test_every_hutch_name_in_the_code_is_the_hosts_or_another_programs() -> None:
    """A HUTCH_* name set or read anywhere (the host, the runner, the scripts) or documented as
    a setting (README's tables) must not make the host refuse an environment that holds it.
    Tests' own names never reach it; actors/config.py reads only its own (and its comments
    and the README's prose show misspellings)."""
    code = [REPO / folder for folder in ("actors", "container_runner", "protocol", "scripts")]
    sources = [path for folder in code for path in folder.rglob("*.[ps][yh]") if path.is_file()]
    sources.remove(REPO / "actors" / "config.py")
    texts = [path.read_text(errors="replace") for path in sources]
    texts += [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("|")]

    unknown = {name for text in texts for name in _NAME.findall(text)} - host_keys() - set(OTHER_PROGRAMS_KEYS)

    assert not unknown, f"add these to actors/config.py (a setting, or OTHER_PROGRAMS_KEYS): {sorted(unknown)}"


def test_the_runners_own_names_are_listed_as_another_programs(tmp_path: Path) -> None:
    from container_runner.config import RunnerConfig

    reads = config_module._Reads({"HUTCH_SESSION_DIR": str(tmp_path), "HUTCH_AGENT_DIR": str(tmp_path)})
    RunnerConfig._from_env(reads)

    runner_only = {name for name in reads.names if name.startswith("HUTCH_")} - host_keys()
    assert runner_only
    assert runner_only <= set(OTHER_PROGRAMS_KEYS)


def test_a_stop_grace_past_its_bound_is_refused() -> None:
    with pytest.raises(ConfigError, match="HUTCH_STOP_GRACE='601': at most 600 seconds"):
        load_config([], {"HUTCH_STOP_GRACE": "601"})
    assert load_config([], {"HUTCH_STOP_GRACE": "600"}).stop_grace_s == 600
