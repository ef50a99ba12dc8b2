"""`python -m container_runner`: what runs inside every agent container."""

from __future__ import annotations

import logging
import sys

from container_runner.config import ConfigError, RunnerConfig
from container_runner.system import RunnerSystem
from protocol.logs import AGENT_FORMAT, setup_logging
from protocol.signals import StopSignals


def main() -> int:
    try:
        config = RunnerConfig.from_env()
    except ConfigError as exc:
        print(f"container_runner: {exc}", file=sys.stderr)
        return 2
    # No time in our lines: the host logs each one again with its own (protocol.logs).
    setup_logging(config.log_level, AGENT_FORMAT)
    signals = StopSignals()
    system = RunnerSystem(config)
    system.start()
    try:
        received = signals.wait()
        logging.getLogger("container_runner").info("received %s, stopping", received.name)
    finally:
        system.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
