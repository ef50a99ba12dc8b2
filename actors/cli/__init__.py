"""The `hutch` command: run the host, chat with it, and look after it, running or not.

Every subcommand reads the configuration the host reads (`HUTCH_*` from the environment or
`.env`, then flags; `actors.config`), and changes go to `hutch.db`, which a running host
reads per message.
"""

from __future__ import annotations


def main() -> None:
    """The console script `hutch`."""
    # Imported here, not at the top: `actors.cli.chat` must stay importable without typer,
    # for `scripts/chat.py` on a bare Python.
    from actors.cli.app import app

    app(prog_name="hutch")
