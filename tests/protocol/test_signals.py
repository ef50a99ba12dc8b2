"""StopSignals: the main thread wakes for SIGTERM even when another thread takes it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(30)

CHILD = """
import signal, threading
from protocol.signals import StopSignals

signals = StopSignals()
threading.Thread(target=threading.Event().wait, daemon=True).start()  # may take SIGTERM
# The main thread refuses SIGTERM, so the kernel must hand it to the other thread: the case
# in which a main thread blocked in Event.wait() never woke.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
print("ready", flush=True)
print(signals.wait().name, flush=True)
"""


def test_the_main_thread_wakes_for_a_signal_another_thread_took() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGTERM)
        assert child.stdout.readline().strip() == "SIGTERM"
        assert child.wait(timeout=10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
