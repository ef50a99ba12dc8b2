"""`python -m container_runner`: what runs inside every agent container."""

from __future__ import annotations

import logging
import sys

from container_runner.config import ConfigError, RunnerConfig
from container_runner.lifecycle import Lifecycle
from container_runner.system import RunnerSystem
from protocol.logs import AGENT_FORMAT, setup_logging
from protocol.signals import StopSignals

log = logging.getLogger("container_runner")

# The exit status of a runner that lost one of its actors: the host sees it exit and starts
# the agent again, rather than trusting a heartbeat from a runner that no longer works.
LOST_AN_ACTOR = 1


def main() -> int:
    try:
        config = RunnerConfig.from_env()
    except ConfigError as exc:
        print(f"container_runner: {exc}", file=sys.stderr)
        return 2
    # No time in our lines: the host logs each one again with its own (protocol.logs).
    setup_logging(config.log_level, AGENT_FORMAT)
    signals = StopSignals()
    # An actor that dies wakes us on the signals' socket: whichever thread it died in, and
    # even before we wait, the main thread notices at once.
    lifecycle = Lifecycle(on_lost=signals.wake)
    system = RunnerSystem(config, lifecycle)
    exit_code, grace_s = LOST_AN_ACTOR, 0.0
    try:
        system.start()
        received = signals.wait_or_wake()
        if received is None:
            log.error("runner: lost %s; exiting for the host to start the agent again", lifecycle.lost_actor)
        else:
            log.info("received %s, stopping", received.name)
            exit_code, grace_s = 0, config.stop_grace_s
    except Exception:
        log.exception("runner: could not start")
    finally:
        # A dying runner does not wait for the turn in flight: it is left claimed and the
        # next start runs it again.
        system.stop(grace_s=grace_s)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
