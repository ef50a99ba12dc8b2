"""Embedding one session without the host: a program of your own runs a SessionActor.

    python scripts/embed_session.py [--dir FOLDER] "a message" ["another" ...]

It starts a SessionActor on a session folder (created if missing) with the process runtime
and the mock provider, hands it each message, and prints the agent's replies as its own
delivery actor receives them. No Supervisor, no central database, no channel: the session
watches its own folder and answers to whatever actor is given as `delivery`.
"""

from __future__ import annotations

import argparse
import queue
import sys
import tempfile
from pathlib import Path
from typing import Any

import pykka

# Run as a file, `python scripts/...` puts scripts/ on the path, not the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.messages import SendText
from actors.runtime.process import ProcessRuntime
from actors.session import (
    Deliver,
    Delivered,
    Notify,
    SessionActor,
    SessionInfo,
    SessionSettings,
    WriteInbound,
    write_inbound,
)
from protocol.content import ChatIn
from protocol.layout import SessionLayout
from protocol.rows import Routing

ROUTING = Routing(platform_id="me", channel_type="embedded")
REPLY_TIMEOUT_S = 60.0


class PrintingDelivery(pykka.ThreadingActor):
    """Stands in for the host's DeliveryActor: every reply goes to a queue the program reads,
    and is confirmed to the session so it is recorded as delivered."""

    def __init__(self, replies: queue.Queue[str]) -> None:
        super().__init__()
        self._replies = replies

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Deliver):
            text = message.action.text if isinstance(message.action, SendText) else repr(message.action)
            self._replies.put(text)
            message.reply_to.tell(Delivered(message.message_out_id, f"local-{message.message_out_id[:8]}"))
        elif isinstance(message, Notify):
            self._replies.put(f"(notice) {message.text}")
        else:
            return super().on_receive(message)
        return None


def run(folder: Path, messages: list[str]) -> list[str]:
    """Hand each message to a session in `folder` and return the replies, in order."""
    replies: queue.Queue[str] = queue.Queue()
    workspace = folder / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    info = SessionInfo(
        session_id="embedded-session",
        agent_group="embedded",
        layout=SessionLayout(folder / "session"),
        agent_dir=workspace,
    )
    settings = SessionSettings(agent_env={"HUTCH_PROVIDER": "mock"}, stop_timeout_s=5)
    delivery = PrintingDelivery.start(replies)
    session = SessionActor.start(info, ProcessRuntime(), delivery, settings)
    answers: list[str] = []
    try:
        for text in messages:
            request = WriteInbound(content=ChatIn(text=text, sender="me"), routing=ROUTING)
            row = write_inbound(session, request).get(timeout=REPLY_TIMEOUT_S)
            print(f"> {text}   (stored as seq {row.seq})", flush=True)
            answer = replies.get(timeout=REPLY_TIMEOUT_S)
            print(f"< {answer}", flush=True)
            answers.append(answer)
    finally:
        session.stop(timeout=30)
        delivery.stop()
    return answers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("messages", nargs="+", help="what to say to the agent")
    parser.add_argument("--dir", type=Path, help="the folder to keep the session in (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.dir is not None:
        run(args.dir, args.messages)
        return 0
    with tempfile.TemporaryDirectory(prefix="hutch-embed-") as folder:
        run(Path(folder), args.messages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
