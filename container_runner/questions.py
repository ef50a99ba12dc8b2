"""Where `ask_user_question` waits for its answer, which the InboxActor finds as a `system`
row. A plain thread-safe board: the waiting happens inside a tool call on the agent's
thread, and the answer arrives on the inbox's thread."""

from __future__ import annotations

import threading


class QuestionBoard:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, threading.Event] = {}
        self._answers: dict[str, str] = {}

    def open(self, question_id: str) -> None:
        with self._lock:
            self._waiting[question_id] = threading.Event()

    def answer(self, question_id: str, answer: str) -> bool:
        """Hand an answer to its waiter; False when nobody waits for it (any more)."""
        with self._lock:
            event = self._waiting.get(question_id)
            if event is None:
                return False
            self._answers[question_id] = answer
        event.set()
        return True

    def wait(self, question_id: str, timeout_s: float) -> str | None:
        with self._lock:
            event = self._waiting.get(question_id)
        if event is None:
            raise KeyError(question_id)
        event.wait(timeout_s)
        with self._lock:
            self._waiting.pop(question_id, None)
            return self._answers.pop(question_id, None)
