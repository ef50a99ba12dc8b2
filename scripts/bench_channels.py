"""What a channel adds to a round trip, in milliseconds: a person's message in, the agent's
reply accepted by the platform, through each channel of one running host, against the
local chat socket of the same host (the baseline).

(a) baseline: the local chat: a line on `cli.sock`, the reply line back.
(b) Telegram: an update the fake Bot API hands to python-telegram-bot's long poll, the
    reply's `sendMessage` the fake accepts.
(c) Discord: a MESSAGE_CREATE the fake gateway dispatches to discord.py, the reply's
    `POST /channels/<id>/messages` the fake accepts.

Each channel's chat is its owner's direct chat, its agent already warm (one message first).

    python scripts/bench_channels.py [--n N] [--dir DIR]

The host runs in this process with the mock provider and the process runtime; the fake
servers (tests/fakes/) listen on loopback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Run as a file, `python scripts/...` puts scripts/ on the path, not the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_machine import print_table

from actors.config import HostConfig
from actors.host import session_settings, start_host
from tests.fakes.chat_client import ChatClient
from tests.fakes.fake_discord import ALICE, DM_CHANNEL_ID, FakeDiscord, message
from tests.fakes.fake_telegram import FakeTelegram, private_chat, user

TELEGRAM_OWNER = user(77, "Olive", "Owner")
WAIT_S = 30.0


def _timed(n: int, round_trip: Callable[[str], None]) -> list[float]:
    """`round_trip(text)` once to warm the agent, then n times, each timed alone (ms)."""
    round_trip("warm-up")
    samples = []
    for i in range(n):
        start = time.perf_counter_ns()
        round_trip(f"ping {i}")
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def _local_chat(socket_path: Path) -> tuple[ChatClient, Callable[[str], None]]:
    chat = ChatClient(socket_path, sender="bench")

    def round_trip(text: str) -> None:
        chat.send(text)
        reply = chat.next_message(timeout=WAIT_S)
        if not str(reply.get("text", "")).startswith(f"mock: {text}"):
            raise SystemExit(f"bench_channels: the local chat answered {reply!r}")

    return chat, round_trip


def _telegram(fake: FakeTelegram) -> Callable[[str], None]:
    chat = private_chat(TELEGRAM_OWNER)

    def round_trip(text: str) -> None:
        fake.push_text(chat, TELEGRAM_OWNER, text)
        fake.wait_until(
            lambda: any(
                str(call.params.get("text", "")).startswith(f"mock: {text}")
                for call in fake.calls("sendMessage")
                if call.failure is None
            ),
            WAIT_S,
        )

    return round_trip


def _discord(fake: FakeDiscord) -> Callable[[str], None]:
    path = f"/channels/{DM_CHANNEL_ID}/messages"

    def round_trip(text: str) -> None:
        fake.dispatch("MESSAGE_CREATE", message(text, channel_id=DM_CHANNEL_ID, in_guild=False, author=ALICE))
        fake.wait_until(
            lambda: any(
                str(call.body.get("content") or "").startswith(f"mock: {text}")
                for call in fake.calls_to("POST", path)
                if call.failed_with is None
            ),
            WAIT_S,
        )

    return round_trip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="round trips per channel")
    parser.add_argument("--dir", type=Path, default=None, help="where the data folder goes (its disk's fsync counts)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp, FakeTelegram() as telegram, FakeDiscord() as discord:
        config = HostConfig(
            data_dir=Path(tmp) / "data",
            runtime="process",
            provider="mock",
            log_level="WARNING",
            telegram_bot_token=telegram.token,
            telegram_base_url=telegram.base_url,
            telegram_owner=str(TELEGRAM_OWNER["id"]),
            discord_bot_token=discord.token,
            discord_api_base=discord.api_base,
            discord_gateway_url=discord.gateway_url,
            discord_owner=ALICE["id"],
        )
        # The send pace guards against a flooding agent; a benchmark's hundreds of replies
        # in seconds would meet it, and it is not what is measured.
        settings = dataclasses.replace(session_settings(config, "mock"), send_burst=10 * args.n + 10)
        host = start_host(config, settings=settings)
        try:
            chat, local_round_trip = _local_chat(config.chat_socket)
            try:
                rows = [
                    ("(a) baseline: the local chat socket", _timed(args.n, local_round_trip)),
                    ("(b) Telegram, long polling", _timed(args.n, _telegram(telegram))),
                    ("(c) Discord, gateway and REST", _timed(args.n, _discord(discord))),
                ]
            finally:
                chat.close()
        finally:
            host.stop()
    print_table("round trip", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
