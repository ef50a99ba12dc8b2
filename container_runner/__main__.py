"""`python -m container_runner`: what runs inside every agent container."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from container_runner.config import ConfigError, RunnerConfig
from container_runner.system import RunnerSystem
from protocol.logs import AGENT_FORMAT, setup_logging


def main() -> int:
    try:
        config = RunnerConfig.from_env()
    except ConfigError as exc:
        print(f"container_runner: {exc}", file=sys.stderr)
        return 2
    # No time in our lines: the host logs each one again with its own (protocol.logs).
    setup_logging(config.log_level, AGENT_FORMAT)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("container_runner").info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    system = RunnerSystem(config)
    system.start()
    try:
        stop.wait()
    finally:
        system.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
