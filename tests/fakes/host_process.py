"""`python -m actors.main` as a person runs it (mock provider; the process runtime unless a
test asks for docker), for tests that signal or kill the host: ready once it prints that it
runs; its output collected."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[2]

READY_LINE = "hutch is running"
START_TIMEOUT_S = 60.0


class HostDidNotStartError(AssertionError):
    pass


class HostProcess:
    def __init__(
        self,
        data_dir: Path,
        log: list[str] | None = None,
        *,
        runtime: str = "process",
        env: Mapping[str, str] | None = None,
        provider: str = "mock",
    ) -> None:
        """`env` adds settings (HUTCH_SWEEP_INTERVAL, say) to the ones that make it a test host;
        a provider other than the mock takes what it needs from `env` (ANTHROPIC_BASE_URL, a key)."""
        env_vars = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "HUTCH_"))}
        env_vars.update(env or {})
        env_vars.update(HUTCH_DATA_DIR=str(data_dir), HUTCH_RUNTIME=runtime, HUTCH_PROVIDER=provider)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "actors.main"], cwd=REPO, env=env_vars, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.pid = self.process.pid
        self.log: list[str] = log if log is not None else []
        ready: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(self.process.stdout, ready), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.process.stderr, None), daemon=True).start()
        try:
            ready.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            self.kill()
            raise HostDidNotStartError("the host did not start:\n" + "".join(self.log[-40:])) from None

    def _pump(self, stream: IO[str], ready: queue.Queue[str] | None) -> None:
        for line in stream:
            self.log.append(line)
            if ready is not None and READY_LINE in line:
                ready.put(line)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=90)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
