"""`python -m actors.main`: run the host until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from actors.channels.base import ChannelError
from actors.config import ConfigError, HostConfig, load_config
from actors.control.server import ControlServerError
from actors.data_folder import DataFolderUnusable, make_data_folder
from actors.data_lock import DataFolderBusy
from actors.host import start_host
from protocol.logs import HOST_FORMAT, setup_logging
from protocol.signals import StopSignals


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"hutch: {exc}", file=sys.stderr)
        return 2
    try:
        # Before logging starts: what it sets up may write into the data folder.
        make_data_folder(config.data_dir)
    except DataFolderUnusable as exc:
        print(f"hutch: {exc}", file=sys.stderr)
        return 1
    setup_logging(config.log_level, HOST_FORMAT, config.log_file)
    signals = StopSignals()
    try:
        return _run(config, signals)
    finally:
        signals.close()  # the handlers and wake-up fd go back as they were, whatever happened


def _run(config: HostConfig, signals: StopSignals) -> int:
    try:
        host = start_host(config)
    except (DataFolderBusy, DataFolderUnusable, ControlServerError) as exc:
        print(f"hutch: {exc}", file=sys.stderr)
        return 1
    except ChannelError as exc:  # one that retrying cannot fix: a token refused, a port taken
        print(f"hutch: {exc}", file=sys.stderr)
        return 1
    # The command beside this interpreter: what `make` installed, whether or not it is on PATH.
    command = Path(sys.executable).with_name("hutch")
    print(f"hutch is running. Chat with it: {command} chat --socket {config.chat_socket}", flush=True)
    if host.control_page is not None:
        print(f"control page: {host.control_page.login_url}", flush=True)
    received = signals.wait()
    logging.getLogger("hutch").info("received %s: shutting down", received.name)
    host.stop()
    logging.getLogger("hutch").info("bye")
    return 0


if __name__ == "__main__":
    sys.exit(main())
