"""`hutch hooks` with no host running: routes made, listed, rotated and removed by the
command itself under the data folder's lock (tests/integration/test_cli_control.py posts to
a running host's endpoint through one). A secret is shown once, when it is made, and never
listed."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from actors.channels.webhook import SIGNATURE_HEADER, signature
from actors.store import webhook_routes
from tests.actors.cli.conftest import Folder, hutch, one_error_line

pytestmark = pytest.mark.timeout(60)

PORT = {"HUTCH_WEBHOOK_PORT": "8787"}


def ok(data: Folder, *args: str, env: dict[str, str] | None = None, answers: str | None = None) -> str:
    result = hutch(*args, "--data-dir", str(data.path), env=env, answers=answers)
    assert result.exit_code == 0, result.output
    return result.stdout


def _secret_shown(said: str) -> str:
    (line,) = [line for line in said.splitlines() if line.startswith("secret: ")]
    return line.removeprefix("secret: ")


def test_add_makes_a_strong_secret_and_says_how_to_post(data: Folder) -> None:
    said = ok(data, "hooks", "add", "github", "main", env=PORT)
    assert said.startswith("webhook route 'github' added for 'main'")
    secret = _secret_shown(said)
    route = webhook_routes.get(data.store, "github")
    assert route is not None
    assert (route.secret, route.agent_group_id) == (secret, data.main.id)
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    assert "http://127.0.0.1:8787/hooks/github" in said
    assert SIGNATURE_HEADER in said
    assert "curl" in said
    assert said.count(secret) == 2  # on its line, and in the example's signing command


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the example signs with openssl")
def test_the_printed_example_signs_as_the_endpoint_checks(data: Folder) -> None:
    said = ok(data, "hooks", "add", "github", "main", env=PORT)
    secret = _secret_shown(said)
    body_line, sig_line = [line.strip() for line in said.splitlines() if line.strip().startswith(("body=", "sig="))]
    script = f'{body_line}\n{sig_line}\nprintf \'%s\\n%s\' "$body" "$sig"'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, timeout=10).stdout
    body, sig = out.split("\n")
    assert f"sha256={sig}" == signature(secret, body.encode())


def test_each_new_secret_is_different(data: Folder) -> None:
    first = _secret_shown(ok(data, "hooks", "add", "one", "main"))
    second = _secret_shown(ok(data, "hooks", "add", "two", "main"))
    assert first != second


def test_a_secret_given_is_kept_and_not_shown_back(data: Folder) -> None:
    given = "a-secret-the-sender-already-has"
    said = ok(data, "hooks", "add", "ci", "main", "--secret", given)
    assert given not in said
    assert '-hmac "$SECRET"' in said
    route = webhook_routes.get(data.store, "ci")
    assert route is not None
    assert route.secret == given


def test_a_secret_can_come_from_stdin(data: Folder) -> None:
    given = "read-from-standard-input"
    said = ok(data, "hooks", "add", "ci", "main", "--secret", "-", answers=given + "\n")
    assert given not in said
    route = webhook_routes.get(data.store, "ci")
    assert route is not None
    assert route.secret == given
    nothing = hutch("hooks", "rotate", "ci", "--secret", "-", "--data-dir", str(data.path), answers="")
    assert one_error_line(nothing) == "hutch: no secret on stdin"


def test_list_shows_route_group_and_when_never_a_secret(data: Folder) -> None:
    assert "no webhook routes" in ok(data, "hooks", "list")
    secret = _secret_shown(ok(data, "hooks", "add", "github", "main"))
    listed = ok(data, "hooks", "list", env=PORT)
    assert "github" in listed
    assert "main" in listed
    assert secret not in listed
    assert "http://127.0.0.1:8787/hooks/ROUTE" in listed


def test_without_a_webhook_port_the_command_says_how_to_turn_webhooks_on(data: Folder) -> None:
    said = ok(data, "hooks", "add", "github", "main")
    assert "set HUTCH_WEBHOOK_PORT" in said
    assert "http://127.0.0.1:PORT/hooks/github" in said


def test_rotate_gives_a_new_secret_and_keeps_the_route(data: Folder) -> None:
    old = _secret_shown(ok(data, "hooks", "add", "github", "main"))
    said = ok(data, "hooks", "rotate", "github")
    assert "has a new secret" in said
    new = _secret_shown(said)
    assert new != old
    route = webhook_routes.get(data.store, "github")
    assert route is not None
    assert (route.secret, route.agent_group_id) == (new, data.main.id)


def test_remove_takes_the_route_away(data: Folder) -> None:
    ok(data, "hooks", "add", "github", "main")
    assert "removed" in ok(data, "hooks", "remove", "github")
    assert webhook_routes.list_all(data.store) == []


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (("add", "a/b", "main"), "hutch: webhook route 'a/b': 1 to 64 letters, digits, '-' or '_'"),
        (("add", "github", "nobody"), "hutch: no agent group 'nobody'"),
        (("add", "github", "main", "--secret", "short"), "hutch: a webhook secret is at least 16 characters"),
        (("rotate", "nope"), "hutch: no webhook route 'nope'"),
        (("remove", "nope"), "hutch: no webhook route 'nope'"),
    ],
)
def test_a_refused_change_is_one_line_and_writes_nothing(data: Folder, args: tuple[str, ...], why: str) -> None:
    result = hutch("hooks", *args, "--data-dir", str(data.path))
    assert one_error_line(result).startswith(why)
    assert "secret: " not in result.stdout  # nothing made, nothing shown
    assert webhook_routes.list_all(data.store) == []


def test_adding_a_route_that_exists_is_refused_and_keeps_its_secret(data: Folder) -> None:
    secret = _secret_shown(ok(data, "hooks", "add", "github", "main"))
    result = hutch("hooks", "add", "github", "main", "--data-dir", str(data.path))
    assert "already a webhook route 'github'" in one_error_line(result)
    assert "hutch hooks rotate github" in result.stderr
    route = webhook_routes.get(data.store, "github")
    assert route is not None
    assert route.secret == secret
