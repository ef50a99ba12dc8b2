"""A platform that keeps failing for far longer than a few retries: the reply still arrives,
once, when it is back. A reviewer lost a reply to a 45 s outage, when the host gave up
after five attempts (30 s at the defaults); the host now keeps trying for about a day, at
least once a minute (actors/session/info.py). Here the times are scaled down: a 0.05 s base
and a 0.2 s cap stand for 2 s and 60 s."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.fake_telegram import Failure, FakeTelegram, private_chat, user
from tests.integration.channel_support import (
    chat_layout,
    delivered,
    host_config,
    log_lines,
    reply_rows,
    running_host,
    wait_on_folder,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

OWNER = user(77, "Olive", "Owner")
OWNER_CHAT = private_chat(OWNER)
# Far past the five attempts that used to lose the reply.
FAILURES = 40


def test_a_reply_outlasts_a_long_outage_and_arrives_once(data_dir: Path) -> None:
    with FakeTelegram() as fake:
        config = host_config(
            data_dir, telegram_bot_token=fake.token, telegram_base_url=fake.base_url, telegram_owner="77"
        )
        with log_lines() as lines, running_host(config, delivery_retry_base_s=0.05, delivery_max_backoff_s=0.2) as host:
            fake.fail("sendMessage", Failure.server_error(502), times=FAILURES)
            fake.push_text(OWNER_CHAT, OWNER, "through the outage")
            fake.wait_until(
                lambda: any(
                    str(call.params.get("text", "")).startswith("mock: through the outage")
                    for call in fake.calls("sendMessage")
                    if call.failure is None
                ),
                timeout=60,
            )
            layout = chat_layout(host, "telegram", "77")
            (row,) = reply_rows(layout, "mock: through the outage")
            delivery = wait_on_folder(layout.root, lambda: delivered(layout, row.id))
            assert delivery.attempts == FAILURES + 1
            accepted = [
                call
                for call in fake.calls("sendMessage")
                if call.failure is None and str(call.params.get("text", "")).startswith("mock: through the outage")
            ]
            assert len(accepted) == 1
            # Logged at the first tries, then one in thirty: not a line per try for a day.
            tries = [line.split("(attempt ")[1].split(")")[0] for line in lines.matching("failed (attempt")]
            assert tries == ["1", "2", "3", "30"], tries
