"""`hutch hooks`: webhook routes. A route is the last part of `POST /hooks/<route>` on the
host's webhook endpoint (`HUTCH_WEBHOOK_PORT`); a request signed with the route's secret
reaches its agent group, in a session of the route's own.

The secret is made here (`secrets`), sent to whoever carries the request out (the running
host through its control socket, else this command under the data folder's lock:
`actors.cli.control`), and shown once, here; no reply, log line or listing holds it. The
endpoint looks a route up per request, so a change counts from the next one.
"""

from __future__ import annotations

import secrets
import shlex
import sys
from typing import Annotated

import typer
from rich.table import Table

from actors.cli import control
from actors.cli.common import CliError, DataDirOption, HostFlags, console, load, open_central, when
from actors.config import HostConfig
from actors.control.requests import AddWebhookRoute, RemoveWebhookRoute, RotateWebhookSecret
from actors.store import agent_groups, webhook_routes
from protocol.timeutil import utc_now

app = typer.Typer(
    name="hooks", help="Webhook routes: POST /hooks/ROUTE, signed with its secret, reaches an agent group."
)

# token_hex(32): 256 random bits as 64 hex digits, which no shell, form or option parser
# mangles (a URL-safe token can start with '-').
_SECRET_BYTES = 32
SIGNATURE_HEADER = "X-Hub-Signature-256"  # actors.channels.webhook's, without importing aiohttp

RouteArgument = Annotated[
    str, typer.Argument(metavar="ROUTE", help="The route's name: 1 to 64 letters, digits, '-' or '_'.")
]
SecretOption = Annotated[
    str | None,
    typer.Option(
        metavar="SECRET",
        help=f"The secret to sign with ({webhook_routes.MIN_SECRET_LENGTH} to {webhook_routes.MAX_SECRET_LENGTH} "
        "characters); `-` reads it from stdin. A command line can be seen by other users of the machine.",
        show_default="a new random one, shown once",
    ),
]


@app.command("list")
def list_routes(data_dir: DataDirOption = None) -> None:
    """Every webhook route with its agent group and when it was made; never a secret."""
    config = load(HostFlags(data_dir=data_dir))
    now = utc_now()
    with open_central(config) as store:
        routes = webhook_routes.list_all(store)
        names = {group.id: group.name for group in agent_groups.list_all(store)}
    if not routes:
        console().print("no webhook routes: `hutch hooks add ROUTE GROUP` makes one")
        return
    table = Table(title="webhook routes", title_justify="left")
    table.add_column("route", no_wrap=True)
    table.add_column("group", overflow="fold")
    table.add_column("created", overflow="fold")
    for route in routes:
        table.add_row(route.route, names.get(route.agent_group_id, "-"), when(route.created_at, config.timezone, now))
    console().print(table)
    typer.echo(_where(config, "ROUTE"))


@app.command("add")
def add(
    route: RouteArgument,
    group: Annotated[str, typer.Argument(metavar="GROUP", help="The agent group that gets its requests.")],
    data_dir: DataDirOption = None,
    secret: SecretOption = None,
) -> None:
    """Make a webhook route for an agent group, and show its secret, its URL and a signed `curl`."""
    config = load(HostFlags(data_dir=data_dir))
    chosen, made = _secret(secret)
    control.run(config, AddWebhookRoute(route=route, group=group, secret=chosen))
    _how_to_post(config, route, chosen if made else None)


@app.command("rotate")
def rotate(route: RouteArgument, data_dir: DataDirOption = None, secret: SecretOption = None) -> None:
    """Give a route a new secret; the old one is refused from the next request on."""
    config = load(HostFlags(data_dir=data_dir))
    chosen, made = _secret(secret)
    control.run(config, RotateWebhookSecret(route=route, secret=chosen))
    _how_to_post(config, route, chosen if made else None)


@app.command("remove")
def remove(route: RouteArgument, data_dir: DataDirOption = None) -> None:
    """Remove a webhook route: its URL is answered 404 from the next request on."""
    control.run(load(HostFlags(data_dir=data_dir)), RemoveWebhookRoute(route=route))


def _secret(given: str | None) -> tuple[str, bool]:
    """The secret to use, and whether it was made here (and so is shown)."""
    if given is None:
        return secrets.token_hex(_SECRET_BYTES), True
    if given == "-":
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise CliError("no secret on stdin")
        return line, False
    return given, False


def _how_to_post(config: HostConfig, route: str, made: str | None) -> None:
    """The secret (when made here: shown this once), where to post and how to sign."""
    echo = typer.echo
    if made is not None:
        echo(f"secret: {made}")
        echo(f"  (shown only now: give it to the sender; `hutch hooks rotate {route}` makes a new one)")
    echo(_where(config, route))
    echo(f"the sender signs each body as GitHub does: {SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256 of the body>")
    key = shlex.quote(made) if made is not None else '"$SECRET"'
    url = _url(config, route)
    echo("try it" + ("" if made is not None else " (SECRET: the secret you gave)") + ":")
    echo("""  body='{"hello": "hutch"}'""")
    echo(f"""  sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac {key} | sed 's/^.* //')""")
    signed = f'-H "{SIGNATURE_HEADER}: sha256=$sig"'
    echo(f"  curl -i {url} -H 'Content-Type: application/json' {signed} --data \"$body\"")


def _url(config: HostConfig, route: str) -> str:
    port = "PORT" if not config.webhook_port else str(config.webhook_port)
    return f"http://127.0.0.1:{port}/hooks/{route}"


def _where(config: HostConfig, route: str) -> str:
    url = _url(config, route)
    if config.webhook_port is None:
        return f"post to {url} once webhooks are on: set HUTCH_WEBHOOK_PORT (in .env) and restart the host"
    if config.webhook_port == 0:
        return f"post to {url}, PORT the one the host printed at start (HUTCH_WEBHOOK_PORT=0 lets the system choose)"
    return f"post to {url} (loopback only: a reverse proxy forwards to it from outside)"
