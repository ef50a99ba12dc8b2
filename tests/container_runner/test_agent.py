from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from container_runner.agent import AgentActor
from container_runner.formatting import Formatter
from container_runner.lifecycle import Lifecycle
from container_runner.messages import AgentIdle, Beat, ConnectInbox, Finish, TakeFollowUps, Work, WriteMessage
from container_runner.providers.base import FollowUps, ProviderError, TurnResult
from container_runner.tools.base import ToolBox, ToolCall, ToolOutcome
from container_runner.turn import TurnContext
from protocol.content import ChatIn, ChatOut, TaskIn, encode_content
from protocol.layout import SessionLayout
from protocol.rows import MessageIn, MessageOut
from tests.fakes.actors import RecorderActor, received, wait_for

pytestmark = pytest.mark.timeout(30)


class ScriptedProvider:
    """Answers with `text`, or raises `error`; records prompts and can call a tool first."""

    def __init__(self, text: str = "hello back", error: Exception | None = None, tool: str | None = None) -> None:
        self.text = text
        self.error = error
        self.tool = tool
        self.prompts: list[str] = []
        self.follow_ups: list[str | None] = []
        self.cleared = 0

    def run(self, prompt: str, tools: ToolBox, follow_ups: FollowUps, images: Sequence[Path] = ()) -> TurnResult:
        self.prompts.append(prompt)
        if self.tool:
            tools.run(ToolCall("t1", self.tool, {}))
        self.follow_ups.append(follow_ups())
        if self.error:
            raise self.error
        return TurnResult(self.text)

    def clear(self) -> None:
        self.cleared += 1


class EchoTool:
    name = "echo"

    def definition(self) -> dict[str, Any]:
        return {"name": "echo", "input_schema": {"type": "object"}}

    def run(self, arguments: dict[str, Any]) -> ToolOutcome:
        return ToolOutcome("echoed")


def _chat(seq: int, text: str, sender_id: str = "u1", role: str | None = None) -> MessageIn:
    return MessageIn(
        id=f"m{seq}",
        seq=seq,
        kind="chat",
        timestamp="2026-11-25T10:00:00.000000Z",
        platform_id="chat-9",
        channel_type="cli",
        content=encode_content(ChatIn(text=text, sender="Ann", sender_id=sender_id, sender_role=role)),  # type: ignore[arg-type]
    )


def _outbox_reply(message: Any) -> Any:
    if isinstance(message, WriteMessage) or (isinstance(message, Finish) and message.reply is not None):
        return MessageOut(id="o", seq=99, timestamp="", kind="chat", content="{}")
    return None


class GatedProvider:
    """Holds the turn until the test opens `gate`, then answers, or raises `error`."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.follow_ups: list[str | None] = []

    def run(self, prompt: str, tools: ToolBox, follow_ups: FollowUps, images: Sequence[Path] = ()) -> TurnResult:
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        self.follow_ups.append(follow_ups())
        if self.error:
            raise self.error
        return TurnResult("late answer")

    def clear(self) -> None:
        pass


def _start(
    tmp_path: Path,
    provider: ScriptedProvider | GatedProvider,
    follow_ups: tuple[MessageIn, ...] = (),
    lifecycle: Lifecycle | None = None,
) -> dict[str, Any]:
    outbox = RecorderActor.start(_outbox_reply)
    heartbeat = RecorderActor.start()
    served = iter([follow_ups])
    inbox: Any = RecorderActor.start(lambda m: next(served, ()) if isinstance(m, TakeFollowUps) else None)
    agent = AgentActor.start(
        provider,
        ToolBox([EchoTool()]),
        Formatter(SessionLayout(tmp_path), "UTC"),
        TurnContext(),
        outbox,
        heartbeat,
        lifecycle=lifecycle,
    )
    agent.tell(ConnectInbox(inbox))
    return {"agent": agent, "outbox": outbox, "heartbeat": heartbeat, "inbox": inbox}


def _written(outbox: Any) -> list[WriteMessage]:
    """Every row the agent had written: its own writes and the replies that end a batch."""
    writes = [
        m if isinstance(m, WriteMessage) else m.reply for m in received(outbox) if isinstance(m, WriteMessage | Finish)
    ]
    return [m for m in writes if m is not None]


def _finished(outbox: Any) -> list[tuple[tuple[str, ...], str]]:
    return [(m.message_ids, m.status) for m in received(outbox) if isinstance(m, Finish)]


def _text(message: WriteMessage) -> str:
    assert isinstance(message.content, ChatOut)
    return message.content.text


def test_a_batch_becomes_a_reply_and_a_completed_ack_in_one_finish(tmp_path: Path) -> None:
    provider = ScriptedProvider()
    actors = _start(tmp_path, provider)
    actors["agent"].tell(Work((_chat(2, "hi"),)))
    wait_for(actors["inbox"], AgentIdle)
    # One message to the outbox ends the batch, so the reply and the ack share a commit.
    (finish,) = [m for m in received(actors["outbox"]) if isinstance(m, Finish | WriteMessage)]
    assert isinstance(finish, Finish)
    assert (finish.message_ids, finish.status) == (("m2",), "completed")
    reply = finish.reply
    assert reply is not None and reply.content == ChatOut(text="hello back")
    assert reply.routing.platform_id == "chat-9" and reply.in_reply_to == "m2"
    assert provider.prompts == ['<message id="2" sender="Ann" time="2026-11-25 10:00 UTC">hi</message>']


def test_tool_only_turn_is_still_completed(tmp_path: Path) -> None:
    provider = ScriptedProvider(text="", tool="echo")
    actors = _start(tmp_path, provider)
    actors["agent"].tell(Work((_chat(2, "do it quietly"),)))
    wait_for(actors["inbox"], AgentIdle)
    assert _written(actors["outbox"]) == []
    assert (("m2",), "completed") in _finished(actors["outbox"])
    assert len([m for m in received(actors["heartbeat"]) if isinstance(m, Beat)]) >= 3


@pytest.mark.parametrize(
    ("error", "expected"),
    [(ProviderError("the model is overloaded"), "overloaded"), (RuntimeError("boom"), "RuntimeError")],
)
def test_errors_become_an_error_reply_and_the_agent_lives_on(tmp_path: Path, error: Exception, expected: str) -> None:
    provider = ScriptedProvider(error=error)
    actors = _start(tmp_path, provider)
    actors["agent"].tell(Work((_chat(2, "hi"),)))
    wait_for(actors["inbox"], AgentIdle)
    (reply,) = _written(actors["outbox"])
    assert expected in _text(reply)
    assert (("m2",), "failed") in _finished(actors["outbox"])
    provider.error = None
    actors["agent"].tell(Work((_chat(4, "again"),)))
    wait_for(actors["inbox"], AgentIdle, count=2)
    assert (("m4",), "completed") in _finished(actors["outbox"])


def test_follow_ups_join_the_running_query_and_are_acked_with_it(tmp_path: Path) -> None:
    provider = ScriptedProvider()
    actors = _start(tmp_path, provider, follow_ups=(_chat(4, "and also"),))
    actors["agent"].tell(Work((_chat(2, "first"),)))
    wait_for(actors["inbox"], AgentIdle)
    assert provider.follow_ups[0] is not None and "and also" in provider.follow_ups[0]
    assert (("m2", "m4"), "completed") in _finished(actors["outbox"])


def test_clear_is_for_owners_and_admins_as_the_host_says(tmp_path: Path) -> None:
    provider = ScriptedProvider()
    actors = _start(tmp_path, provider)
    actors["agent"].tell(Work((_chat(2, "/clear", role="member"),)))
    actors["agent"].tell(Work((_chat(4, "/clear"),)))  # no role: not from the host's routing
    actors["agent"].tell(Work((_chat(6, "/clear", role="admin"),)))
    actors["agent"].tell(Work((_chat(8, "/clear", role="owner"),)))
    wait_for(actors["inbox"], AgentIdle, count=4)
    texts = [_text(m) for m in _written(actors["outbox"])]
    refused = "Only the chat's owner or an admin can clear this conversation."
    cleared = "Conversation cleared. Starting afresh."
    assert texts == [refused, refused, cleared, cleared]
    assert provider.cleared == 2 and provider.prompts == []


def test_platform_commands_are_dropped_and_others_reach_the_model(tmp_path: Path) -> None:
    provider = ScriptedProvider()
    actors = _start(tmp_path, provider)
    actors["agent"].tell(Work((_chat(2, "/help"),)))
    actors["agent"].tell(Work((_chat(4, "/weather Paris"),)))
    wait_for(actors["inbox"], AgentIdle, count=2)
    assert len(provider.prompts) == 1 and "/weather Paris" in provider.prompts[0]
    assert (("m2",), "completed") in _finished(actors["outbox"])


def test_a_task_is_answered_where_it_was_scheduled(tmp_path: Path) -> None:
    provider = ScriptedProvider()
    actors = _start(tmp_path, provider)
    task = MessageIn(
        id="t1",
        seq=6,
        kind="task",
        timestamp="2026-11-25T10:00:00.000000Z",
        platform_id="chat-7",
        channel_type="cli",
        content=encode_content(TaskIn(prompt="remind me")),
    )
    actors["agent"].tell(Work((task,)))
    wait_for(actors["inbox"], AgentIdle)
    (reply,) = _written(actors["outbox"])
    assert reply.routing.platform_id == "chat-7"


def test_a_stop_waits_for_the_turn_in_flight_which_completes(tmp_path: Path) -> None:
    provider = GatedProvider()
    lifecycle = Lifecycle()
    actors = _start(tmp_path, provider, lifecycle=lifecycle)
    actors["agent"].tell(Work((_chat(2, "slow one"),)))
    assert provider.entered.wait(10)
    lifecycle.drain()  # what RunnerSystem.stop does first
    stopped = actors["agent"].stop(block=False)
    provider.gate.set()
    stopped.get(timeout=10)
    (finish,) = [m for m in received(actors["outbox"]) if isinstance(m, Finish)]
    assert (finish.message_ids, finish.status) == (("m2",), "completed")
    assert finish.reply is not None and _text(finish.reply) == "late answer"


def test_a_model_call_failing_while_stopping_is_no_reply_and_stays_claimed(tmp_path: Path) -> None:
    """The host going closes its credential proxy last; whatever cut a model call during a
    stop, the person is never told "something went wrong" for a shutdown: the turn is left
    claimed for the next start."""
    provider = GatedProvider(ProviderError("The model API could not be reached"))
    lifecycle = Lifecycle()
    actors = _start(tmp_path, provider, lifecycle=lifecycle)
    actors["agent"].tell(Work((_chat(2, "hi"),)))
    assert provider.entered.wait(10)
    lifecycle.drain()  # a stop began; the grace has not run out
    provider.gate.set()
    actors["agent"].ask(ConnectInbox(actors["inbox"]))  # handled after the turn: a barrier
    assert _finished(actors["outbox"]) == []
    assert _written(actors["outbox"]) == []


def test_a_batch_handed_over_after_the_drain_is_left_claimed(tmp_path: Path) -> None:
    provider = ScriptedProvider()
    lifecycle = Lifecycle()
    actors = _start(tmp_path, provider, lifecycle=lifecycle)
    lifecycle.drain()
    actors["agent"].tell(Work((_chat(2, "too late"),)))
    actors["agent"].ask(ConnectInbox(actors["inbox"]))  # handled after the Work: a barrier
    assert provider.prompts == []
    assert _finished(actors["outbox"]) == []
    assert not [m for m in received(actors["inbox"]) if isinstance(m, AgentIdle)]


@pytest.mark.parametrize("error", [None, RuntimeError("the inbox went away")])
def test_a_turn_past_the_grace_period_writes_nothing(tmp_path: Path, error: Exception | None) -> None:
    provider = GatedProvider(error)
    lifecycle = Lifecycle()
    actors = _start(tmp_path, provider, lifecycle=lifecycle)
    actors["agent"].tell(Work((_chat(2, "hi"),)))
    assert provider.entered.wait(10)
    lifecycle.abandon()
    provider.gate.set()
    actors["agent"].ask(ConnectInbox(actors["inbox"]))  # handled after the turn: a barrier
    # No reply (an error one least of all) and no ack: the row stays `processing`.
    assert _finished(actors["outbox"]) == []
    assert _written(actors["outbox"]) == []


def test_a_stopped_inbox_means_no_follow_ups_not_a_failed_turn(tmp_path: Path) -> None:
    provider = ScriptedProvider()
    actors = _start(tmp_path, provider)
    actors["inbox"].stop()
    actors["agent"].tell(Work((_chat(2, "hi"),)))
    (finish,) = wait_for(actors["outbox"], Finish)
    assert (finish.message_ids, finish.status) == (("m2",), "completed")
    assert provider.follow_ups == [None]
