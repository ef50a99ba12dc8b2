"""`python -m actors.main`: run the host until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from actors.config import ConfigError, load_config
from actors.host import start_host
from protocol.logs import HOST_FORMAT, setup_logging


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"hutch: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, HOST_FORMAT)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("hutch").info("received %s: shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    host = start_host(config)
    print(f"hutch is running. Chat with it: python scripts/chat.py --socket {config.chat_socket}", flush=True)
    stop.wait()
    host.stop()
    logging.getLogger("hutch").info("bye")
    return 0


if __name__ == "__main__":
    sys.exit(main())
